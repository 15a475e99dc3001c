"""Streaming encryption and decryption: from a pipe (a dump's stdout) into an artifact written
atomically, and from an artifact into a pipe (an import's stdin), chunk by chunk.

Dumps are far larger than memory, so memory stays at two chunks; the plaintext's size and sha256
are computed on the way, for the journal to record and ``verify_artifact`` to check later.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from journal.vault.errors import CorruptArtifactError, VaultError
from journal.vault.fileformat import (
    DEFAULT_CHUNK_SIZE,
    NONCE_PREFIX_SIZE,
    TAG_SIZE,
    Header,
    build_header,
    check_chunk_size,
    check_key,
    decrypt_chunk,
    encrypt_chunk,
    open_artifact,
    parse_header,
)
from journal.vault.files import fsync_dir, read_full, write_fd, write_stream
from journal.vault.keys import Key
from journal.vault.tee import Tee


@dataclass
class StreamStats:
    """Plaintext facts the journal records, to verify an artifact later."""

    bytes: int
    sha256: str
    #: the vault's own time: hashing, encryption or decryption, its writes and fsyncs — not the
    #: time spent waiting for the stream's producer or consumer (reported as the tool's overhead)
    seconds: float = field(default=0.0, compare=False)


def _chunks(src: BinaryIO, size: int) -> Iterator[tuple[bytes, bool]]:
    """Yield (block, is_last); one block of lookahead tells whether a full block is last.

    An empty stream yields one empty last block, which is exactly STREAM's empty
    final chunk on the writing side and a detectably truncated file on the reading side.
    """
    current = read_full(src, size)
    while True:
        if len(current) < size:
            yield current, True
            return
        following = read_full(src, size)
        if not following:
            yield current, True
            return
        yield current, False
        current = following


def _open_part(part: Path) -> int:
    """Create the private temporary file, replacing a stale one from a dead run."""
    try:
        part.unlink(missing_ok=True)
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(part, flags, 0o600)
    except OSError as exc:
        raise VaultError(
            f"cannot create {part}: {exc.strerror}; check that the vault directory {part.parent} exists and is writable"
        ) from None
    os.fchmod(fd, 0o600)
    return fd


def _encrypt_to_fd(src: BinaryIO, fd: int, key: Key, chunk_size: int, tee: Tee | None) -> StreamStats:
    """Write header and chunks to ``fd``; the STREAM logic of the writing side. *tee* gets every
    plaintext chunk before it is encrypted (its own thread consumes it)."""
    prefix = secrets.token_bytes(NONCE_PREFIX_SIZE)
    header = build_header(key, prefix, chunk_size)
    aead = AESGCM(key.key)
    digest = hashlib.sha256()
    total = 0
    own = 0.0
    write_fd(fd, header)
    for counter, (plain, last) in enumerate(_chunks(src, chunk_size)):
        if tee is not None:
            tee.put(plain)
        t = time.monotonic()
        digest.update(plain)
        total += len(plain)
        write_fd(fd, encrypt_chunk(aead, header, prefix, counter, plain, last))
        own += time.monotonic() - t
    return StreamStats(bytes=total, sha256=digest.hexdigest(), seconds=own)


def _is_disk_full(exc: BaseException) -> bool:
    """Disk full and quota exceeded both mean: free space or write elsewhere."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def encrypt_stream(src: BinaryIO, dst_path: str | Path, key: Key, chunk_size: int = DEFAULT_CHUNK_SIZE,
                   tee: Tee | None = None) -> StreamStats:
    """Encrypt ``src`` into ``dst_path`` atomically; a failed run leaves no file behind. *tee*: a second
    consumer of the plaintext (see ``journal.vault.tee``); its owner finishes or aborts it."""
    check_chunk_size(chunk_size)
    dst = Path(dst_path)
    part = dst.with_name(dst.name + ".part")
    fd = _open_part(part)
    try:
        stats = _encrypt_to_fd(src, fd, key, chunk_size, tee)
        t = time.monotonic()
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(part, dst)
        fsync_dir(dst.parent)
        stats.seconds += time.monotonic() - t
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        part.unlink(missing_ok=True)
        if _is_disk_full(exc):
            raise VaultError(
                f"no space left while writing {dst}: the disk holding {dst.parent} is full; "
                "free space there or choose another vault directory, then run the step again"
            ) from exc
        raise
    return stats


def _decrypt_records(f: BinaryIO, header: Header, key: Key, dst: BinaryIO | None, path: Path) -> StreamStats:
    """Read, check and emit chunk after chunk; memory stays at two chunks."""
    aead = AESGCM(key.key)
    digest = hashlib.sha256()
    total = 0
    own = 0.0
    offset = len(header.raw)
    record_size = header.chunk_size + TAG_SIZE
    for counter, (record, last) in enumerate(_chunks(f, record_size)):
        t = time.monotonic()
        plain = decrypt_chunk(aead, header, record, counter, last, (path, offset))
        offset += len(record)
        digest.update(plain)
        total += len(plain)
        own += time.monotonic() - t
        if dst is not None:
            write_stream(dst, plain)
    if dst is not None and hasattr(dst, "flush"):
        dst.flush()
    return StreamStats(bytes=total, sha256=digest.hexdigest(), seconds=own)


def decrypt_stream(path: str | Path, key: Key, dst: BinaryIO | None) -> StreamStats:
    """Decrypt an artifact to ``dst`` chunk by chunk (None: verify only).

    Chunks before a damaged one have already reached ``dst`` when the error is
    raised; callers that must not touch anything call ``verify_artifact`` first.
    """
    path = Path(path)
    with open_artifact(path) as f:
        header = parse_header(f, path)
        check_key(header, key, path)
        return _decrypt_records(f, header, key, dst, path)


def verify_artifact(
    path: str | Path,
    key: Key,
    expected_bytes: int | None = None,
    expected_sha256: str | None = None,
) -> StreamStats:
    """Check an artifact end to end, and against what the journal recorded for it."""
    path = Path(path)
    started = time.monotonic()
    stats = decrypt_stream(path, key, None)
    stats.seconds = time.monotonic() - started  # all of it is the check: reading the file too
    if expected_bytes is not None and stats.bytes != expected_bytes:
        raise CorruptArtifactError(
            f"artifact {path} decrypts to {stats.bytes} bytes but {expected_bytes} were "
            "recorded; it is not the recorded dump: restore it from a copy or dump again"
        )
    if expected_sha256 is not None and stats.sha256 != expected_sha256.lower():
        raise CorruptArtifactError(
            f"artifact {path} decrypts to sha256 {stats.sha256} but {expected_sha256} was "
            "recorded; it is not the recorded dump: restore it from a copy or dump again"
        )
    return stats


def encrypt_bytes(data: bytes, path: str | Path, key: Key, chunk_size: int = DEFAULT_CHUNK_SIZE) -> StreamStats:
    """Encrypt a small in-memory payload (e.g. a config tarball) via the stream code."""
    return encrypt_stream(io.BytesIO(data), path, key, chunk_size)


def decrypt_bytes(path: str | Path, key: Key) -> bytes:
    """Decrypt a small artifact into memory; fully verified before it is returned."""
    out = io.BytesIO()
    decrypt_stream(path, key, out)
    return out.getvalue()
