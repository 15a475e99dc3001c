"""The run lock: one `run`/`resume`/`revert` per journal at a time.

An ``fcntl`` lock on ``<journal>/lock``; the holder writes who it is (pid, host, since) into the
file so that the second process can say exactly who holds it. The kernel drops the lock when
the holder dies, even by SIGKILL, so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from journal.errors import BusyError


class LockHeld(BusyError):
    """Another process holds the journal; the message names it and what to do."""


class RunLock:
    def __init__(self, journal_dir: str | Path) -> None:
        self.path = Path(journal_dir) / "lock"
        self._fd: int | None = None

    def acquire(self, verb: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)  # never through a link
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeld(
                f"another `upgrade` holds the journal {self.path.parent}: {holder} — "
                "wait for it to finish, or stop that process first; two runs must never act at once"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "verb": verb,
                                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, OSError):
        info = {}
    if not info:
        return "a process that has not written its name yet"
    return (f"`upgrade {info.get('verb', '?')}` pid {info.get('pid')} on host {info.get('host')} "
            f"since {info.get('since')}")
