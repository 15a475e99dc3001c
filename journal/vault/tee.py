"""A second consumer of a stream the vault encrypts: every plaintext chunk also goes, through a
bounded queue and its own thread, to a writer (an import's stdin), so a dump is read once and
consumed twice while it is written.

Memory stays bounded: at most ``depth`` chunks wait for the slower consumer, and the faster one
blocks on the queue instead of buffering more. A consumer that fails stops the producer at its
next chunk with the consumer's own error.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any

from journal.vault.files import write_stream

#: chunks waiting for the second consumer (each DEFAULT_CHUNK_SIZE): bounds the memory per stream
DEFAULT_DEPTH = 4
_END: Any = object()  # the end of the stream (None: aborted)


class Tee:
    """Hands chunks to *dst* (any writer with ``write``, and ``close`` called at the end) in a thread."""

    def __init__(self, dst: Any, depth: int = DEFAULT_DEPTH) -> None:
        self.dst = dst
        self.q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="vault-tee", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        chunk: Any = None
        try:
            while True:
                chunk = self.q.get()
                if chunk is None:  # aborted: drop the rest, close nothing (the owner kills the consumer)
                    return
                if chunk is _END:
                    self.dst.close()  # may fail too: what a buffered writer still held goes out here
                    return
                write_stream(self.dst, chunk)
        except BaseException as exc:  # reported to the producer at its next put or at finish
            self.error = exc
            if chunk is not _END:  # the end already taken: nothing more comes, and finish waits on us
                self._drain()

    def _drain(self) -> None:
        """Keep the queue moving after a failure, so a producer blocked on a full queue wakes up."""
        while True:
            if self.q.get() in (None, _END):
                return

    def put(self, chunk: bytes) -> None:
        if self.error is not None:
            raise self.error
        if chunk:
            self.q.put(chunk)

    def finish(self) -> None:
        """End of the stream: close the consumer's input once every chunk reached it; its error, if any."""
        self.q.put(_END)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Stop handing chunks on (the producer failed); never blocks on a stuck consumer."""
        # a consumer stuck in a write is killed by its owner; the thread is a daemon
        with contextlib.suppress(queue.Full):
            self.q.put(None, timeout=5)
