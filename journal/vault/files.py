"""Whole reads and writes on file descriptors, pipes and file objects, and durable directory entries.

Shared by the key files (``keys``), the artifact header (``fileformat``) and the chunk streams
(``stream``): a pipe's short read is not the end of it, and a write may be partial.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from journal.vault.errors import VaultError


def read_full(src: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes unless the stream ends first; a pipe's short read is not the end."""
    parts: list[bytes] = []
    need = size
    while need > 0:
        piece = src.read(need)
        if piece is None:
            raise VaultError("the input stream is non-blocking; vault streams must block")
        if not piece:
            break
        parts.append(piece)
        need -= len(piece)
    return b"".join(parts)


def write_fd(fd: int, data: bytes) -> None:
    """os.write the whole buffer; a write may be partial."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_stream(dst: BinaryIO, data: bytes) -> None:
    """Write all of ``data`` to a file object, looping over partial raw writes."""
    view = memoryview(data)
    while view:
        written = dst.write(view)
        # None: a writer that does not report a count (buffered ones write everything).
        view = view[len(view) if written is None else written :]


def fsync_dir(directory: Path) -> None:
    """Make a create/rename durable: the directory entry must reach the disk too."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
