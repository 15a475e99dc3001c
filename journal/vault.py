"""Encrypted artifact vault: streaming AES-256-GCM in the STREAM construction.

Database dumps hold every credential of a cloud, so they only ever touch disk
encrypted, and they are far larger than memory, so they are processed in
fixed-size chunks.  The format (all integers big-endian)::

    header = magic "OSUVAULT" | version u8 (=1) | key id (16) | nonce prefix (7)
             | chunk size u32 | kdf kind u8 (0 key file, 1 scrypt)
             | [scrypt only: salt (16) | n u32 | r u32 | p u32]
             | header check (8) = sha256(all preceding header bytes)[:8]
    chunks = AES-256-GCM(chunk plaintext) + 16-byte tag, repeated

Every chunk except the last holds exactly ``chunk size`` plaintext bytes, so a
reader knows the boundaries without length fields.  Chunk ``i`` uses the nonce
``prefix | u32 i | last flag`` and the whole header as associated data: an
edited, dropped, reordered, truncated or appended chunk and any header edit all
fail authentication.  The header check is not a security measure (the header is
authenticated as associated data); it only lets accidental damage in the key-id
field be reported as a damaged file instead of as "wrong key".
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import secrets
import struct
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from journal import private

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "KDF_KEY_FILE",
    "KDF_SCRYPT",
    "CorruptArtifactError",
    "Header",
    "Kdf",
    "Key",
    "KeyFileError",
    "StreamStats",
    "VaultError",
    "WrongKeyError",
    "decrypt_bytes",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_stream",
    "generate_key_file",
    "key_for_artifact",
    "read_header",
    "verify_artifact",
]

MAGIC = b"OSUVAULT"
VERSION = 1
KEY_SIZE = 32
KEY_ID_SIZE = 16
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
SALT_SIZE = 16
CHECK_SIZE = 8
DEFAULT_CHUNK_SIZE = 1 << 20
# Bounds the memory a (possibly hostile) header can make a reader allocate.
MAX_CHUNK_SIZE = 16 << 20
MAX_COUNTER = 0xFFFFFFFF
KDF_KEY_FILE = 0
KDF_SCRYPT = 1
# scrypt uses 128 * n * r bytes; cap what a header may demand at 1 GiB.
MAX_SCRYPT_MEMORY = 1 << 30
MAX_SCRYPT_P = 16
_KEY_ID_LABEL = b"openstack-upgrade key id"
_FIXED = struct.Struct(f">8sB{KEY_ID_SIZE}s{NONCE_PREFIX_SIZE}sIB")
_SCRYPT = struct.Struct(f">{SALT_SIZE}sIII")
_KEY_FILE_READ_LIMIT = 256


class VaultError(Exception):
    """User-facing message naming the artifact path (or key file) and the fix."""


class WrongKeyError(VaultError):
    """The key (or passphrase) is not the one the artifact was encrypted with."""


class CorruptArtifactError(VaultError):
    """The artifact was altered, truncated or damaged; nothing in it can be trusted."""


class KeyFileError(VaultError):
    """The key file is missing, unsafe (permissions) or malformed."""


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class Kdf:
    """How a key was obtained; written to the header so a passphrase can be re-derived."""

    kind: int = KDF_KEY_FILE
    salt: bytes = b""
    n: int = 0
    r: int = 0
    p: int = 0

    def to_bytes(self) -> bytes:
        """Serialise the KDF block of the header."""
        block = bytes([self.kind])
        if self.kind == KDF_SCRYPT:
            block += _SCRYPT.pack(self.salt, self.n, self.r, self.p)
        return block


def _key_id(key: bytes) -> str:
    """Public fingerprint of a key, so a wrong key is refused before any work starts."""
    return hashlib.sha256(_KEY_ID_LABEL + key).digest()[:KEY_ID_SIZE].hex()


def _check_scrypt_params(n: int, r: int, p: int) -> str | None:
    """Return why the scrypt parameters are unusable, or None; bounds memory and time."""
    if n < 2 or n & (n - 1):
        return f"scrypt n must be a power of two >= 2, got {n}"
    if r < 1 or p < 1 or p > MAX_SCRYPT_P:
        return f"scrypt r must be >= 1 and p in 1..{MAX_SCRYPT_P}, got r={r} p={p}"
    if 128 * n * r > MAX_SCRYPT_MEMORY:
        return f"scrypt n={n} r={r} would need more than {MAX_SCRYPT_MEMORY >> 20} MiB"
    return None


@dataclass(frozen=True)
class Key:
    """A 32-byte AES-256 key with its public id; ``repr`` never shows the key itself."""

    key: bytes = field(repr=False)
    key_id: str
    kdf: Kdf = Kdf()

    def __post_init__(self) -> None:
        """Refuse keys of the wrong size early, where the cause is still obvious."""
        if len(self.key) != KEY_SIZE:
            raise VaultError(f"a vault key must be {KEY_SIZE} bytes, got {len(self.key)}")

    @classmethod
    def from_bytes(cls, key: bytes, kdf: Kdf | None = None) -> Key:
        """Build a key and derive its id, so ids are always computed one way."""
        return cls(key=bytes(key), key_id=_key_id(key), kdf=kdf or Kdf())

    @classmethod
    def from_file(cls, path: str | Path) -> Key:
        """Load a key file (32 raw bytes or 64 hex chars), refusing one others can read."""
        path = Path(path)
        data = _read_key_file(path)
        return cls.from_bytes(_parse_key_file(path, data))

    @classmethod
    def from_passphrase(
        cls,
        passphrase: str,
        salt: bytes | None = None,
        n: int = 2**15,
        r: int = 8,
        p: int = 1,
    ) -> Key:
        """Derive a key with scrypt; a random salt unless re-deriving from a header."""
        if not passphrase:
            raise VaultError("the passphrase is empty; enter the passphrase used for the dumps")
        salt = secrets.token_bytes(SALT_SIZE) if salt is None else bytes(salt)
        if len(salt) != SALT_SIZE:
            raise VaultError(f"scrypt salt must be {SALT_SIZE} bytes, got {len(salt)}")
        problem = _check_scrypt_params(n, r, p)
        if problem:
            raise VaultError(f"cannot derive a key from the passphrase: {problem}")
        # NFC so the same passphrase typed on different systems gives the same key.
        secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
        key = Scrypt(salt=salt, length=KEY_SIZE, n=n, r=r, p=p).derive(secret)
        return cls.from_bytes(key, Kdf(KDF_SCRYPT, salt, n, r, p))


def _read_key_file(path: Path) -> bytes:
    """Read a key file: ours, private, not a symbolic link — checked on the opened file (no check/use race)."""
    try:
        fd = private.open_file(path, os.O_RDONLY, "key file")
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} does not exist; pass the key file the dumps were made with, "
            "or create a new one with `upgrade keygen`"
        ) from None
    except private.PrivatePathError as exc:
        raise KeyFileError(f"{exc} (the key unlocks every dump)") from None
    try:
        return _read_limited(fd, _KEY_FILE_READ_LIMIT)
    finally:
        os.close(fd)


def _read_limited(fd: int, limit: int) -> bytes:
    """Read at most ``limit`` bytes, so a huge file given by mistake is not slurped."""
    parts: list[bytes] = []
    total = 0
    while total < limit:
        piece = os.read(fd, limit - total)
        if not piece:
            break
        parts.append(piece)
        total += len(piece)
    return b"".join(parts)


def _parse_key_file(path: Path, data: bytes) -> bytes:
    """Accept 32 raw bytes or 64 hex characters with an optional trailing newline."""
    if len(data) == KEY_SIZE:
        return data
    text = data[:-1] if data.endswith(b"\n") else data
    text = text[:-1] if text.endswith(b"\r") else text
    if len(text) == 2 * KEY_SIZE:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise KeyFileError(
                f"key file {path} holds {len(text)} characters but they are not hex; "
                "it must hold 64 hex characters (as written by `upgrade keygen`) or 32 raw bytes"
            ) from None
    size = f"{len(data)}" if len(data) < _KEY_FILE_READ_LIMIT else f"at least {len(data)}"
    raise KeyFileError(
        f"key file {path} has the wrong length ({size} bytes); it must hold 64 hex characters "
        "(as written by `upgrade keygen`) or 32 raw bytes: check that this is the key file"
    )


def generate_key_file(path: str | Path) -> Key:
    """Create a new random key file (hex, mode 0600); never overwrites, a lost key loses dumps."""
    path = Path(path)
    key = secrets.token_bytes(KEY_SIZE)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"key file {path} already exists; it may be the only key to existing dumps, "
            "so it is never overwritten: choose another path or move the old file away"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        _write_fd(fd, key.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    _fsync_dir(path.parent)
    return Key.from_bytes(key)


# ------------------------------------------------------------------------- header


@dataclass(frozen=True)
class Header:
    """The parsed artifact header; ``raw`` is authenticated with every chunk."""

    version: int
    key_id: str
    nonce_prefix: bytes
    chunk_size: int
    kdf: Kdf
    raw: bytes = field(repr=False)


def _build_header(key: Key, nonce_prefix: bytes, chunk_size: int) -> bytes:
    """Serialise a header for a new artifact, check bytes included."""
    body = _FIXED.pack(MAGIC, VERSION, bytes.fromhex(key.key_id), nonce_prefix, chunk_size, key.kdf.kind)
    if key.kdf.kind == KDF_SCRYPT:
        body += _SCRYPT.pack(key.kdf.salt, key.kdf.n, key.kdf.r, key.kdf.p)
    return body + hashlib.sha256(body).digest()[:CHECK_SIZE]


def _read_exact(f: BinaryIO, size: int, path: Path, what: str) -> bytes:
    """Read exactly ``size`` header bytes or report the file as truncated."""
    data = _read_full(f, size)
    if len(data) != size:
        raise CorruptArtifactError(
            f"artifact {path} is truncated inside its {what}; the file is incomplete: "
            "restore it from a copy or take the dump again"
        )
    return data


def _parse_header(f: BinaryIO, path: Path) -> Header:
    """Parse and check the header at the current position of ``f``."""
    fixed = _read_exact(f, _FIXED.size, path, "header")
    magic, version, key_id, prefix, chunk_size, kind = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise CorruptArtifactError(
            f"artifact {path} is not a vault artifact (bad magic bytes); "
            "check the path, or the file is damaged: restore it from a copy"
        )
    if version != VERSION:
        raise CorruptArtifactError(
            f"artifact {path} has format version {version}, this tool reads version "
            f"{VERSION}; the file is damaged or was written by another release of this tool"
        )
    kdf_block = _read_exact(f, _SCRYPT.size, path, "header") if kind == KDF_SCRYPT else b""
    check = _read_exact(f, CHECK_SIZE, path, "header")
    if hashlib.sha256(fixed + kdf_block).digest()[:CHECK_SIZE] != check:
        raise CorruptArtifactError(
            f"artifact {path} has a damaged header (header check failed); "
            "restore the file from a copy or take the dump again"
        )
    kdf = _parse_kdf(kind, kdf_block, path)
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise CorruptArtifactError(f"artifact {path} declares an invalid chunk size {chunk_size}")
    raw = fixed + kdf_block + check
    return Header(version, key_id.hex(), prefix, chunk_size, kdf, raw)


def _parse_kdf(kind: int, block: bytes, path: Path) -> Kdf:
    """Decode the KDF block, bounding scrypt parameters a hostile header could inflate."""
    if kind == KDF_KEY_FILE:
        return Kdf()
    if kind != KDF_SCRYPT:
        raise CorruptArtifactError(f"artifact {path} names an unknown key derivation ({kind})")
    salt, n, r, p = _SCRYPT.unpack(block)
    problem = _check_scrypt_params(n, r, p)
    if problem:
        raise CorruptArtifactError(f"artifact {path} has unusable scrypt parameters: {problem}")
    return Kdf(KDF_SCRYPT, salt, n, r, p)


def _open_artifact(path: Path) -> BinaryIO:
    """Open an artifact for reading with a message that names it when that fails."""
    try:
        # never through a symbolic link: an artifact is a file of the tool's own private vault directory
        return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")
    except FileNotFoundError:
        raise VaultError(f"artifact {path} does not exist; check the vault directory and the journal") from None
    except OSError as exc:
        raise VaultError(f"cannot open artifact {path}: {exc.strerror}") from None


def read_header(path: str | Path) -> Header:
    """Parse only the header, e.g. to learn the key id or scrypt salt before decrypting."""
    path = Path(path)
    with _open_artifact(path) as f:
        return _parse_header(f, path)


def _check_key(header: Header, key: Key, path: Path) -> None:
    """Refuse a wrong key by id, before any work, with both ids for the operator."""
    if header.key_id == key.key_id:
        return
    if header.kdf.kind == KDF_SCRYPT and key.kdf.kind != KDF_SCRYPT:
        hint = "it was encrypted with a passphrase: give the passphrase instead of a key file"
    elif header.kdf.kind == KDF_KEY_FILE and key.kdf.kind == KDF_SCRYPT:
        hint = "it was encrypted with a key file: give that key file instead of a passphrase"
    elif key.kdf.kind == KDF_SCRYPT:
        hint = "the passphrase is wrong: enter the one used when the dump was made"
    else:
        hint = "use the key file the dump was made with"
    raise WrongKeyError(
        f"wrong key for artifact {path}: it needs key id {header.key_id}, the given key has id {key.key_id}; {hint}"
    )


def key_for_artifact(path: str | Path, key_file: Path | None, passphrase: str | None) -> Key:
    """Load the key for an artifact (passphrase: salt and params from its header), checked by id."""
    path = Path(path)
    if (key_file is None) == (passphrase is None):
        raise VaultError(f"to read artifact {path} give exactly one of a key file or a passphrase")
    header = read_header(path)
    if key_file is not None:
        key = Key.from_file(key_file)
    elif header.kdf.kind != KDF_SCRYPT:
        raise WrongKeyError(
            f"artifact {path} was encrypted with a key file (key id {header.key_id}), "
            "not a passphrase: give that key file"
        )
    else:
        kdf = header.kdf
        key = Key.from_passphrase(passphrase or "", kdf.salt, kdf.n, kdf.r, kdf.p)
    _check_key(header, key, path)
    return key


# ------------------------------------------------------------------------ streams


@dataclass
class StreamStats:
    """Plaintext facts the journal records, to verify an artifact later."""

    bytes: int
    sha256: str
    #: the vault's own time: hashing, encryption or decryption, its writes and fsyncs — not the
    #: time spent waiting for the stream's producer or consumer (reported as the tool's overhead)
    seconds: float = field(default=0.0, compare=False)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    """STREAM nonce; refuses to wrap the counter, which would reuse nonces."""
    if counter > MAX_COUNTER:
        raise VaultError(
            f"artifact would need more than {MAX_COUNTER + 1} chunks (counter overflow); use a larger chunk size"
        )
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


def _read_full(src: BinaryIO, size: int) -> bytes:
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


def _chunks(src: BinaryIO, size: int) -> Iterator[tuple[bytes, bool]]:
    """Yield (block, is_last); one block of lookahead tells whether a full block is last.

    An empty stream yields one empty last block, which is exactly STREAM's empty
    final chunk on the writing side and a detectably truncated file on the reading side.
    """
    current = _read_full(src, size)
    while True:
        if len(current) < size:
            yield current, True
            return
        following = _read_full(src, size)
        if not following:
            yield current, True
            return
        yield current, False
        current = following


def _write_fd(fd: int, data: bytes) -> None:
    """os.write the whole buffer; a write may be partial."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_stream(dst: BinaryIO, data: bytes) -> None:
    """Write all of ``data`` to a file object, looping over partial raw writes."""
    view = memoryview(data)
    while view:
        written = dst.write(view)
        # None: a writer that does not report a count (buffered ones write everything).
        view = view[len(view) if written is None else written :]


def _fsync_dir(directory: Path) -> None:
    """Make a create/rename durable: the directory entry must reach the disk too."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_chunk_size(chunk_size: int) -> None:
    """Reject chunk sizes a reader would refuse, before writing anything."""
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise VaultError(f"chunk size must be between 1 and {MAX_CHUNK_SIZE}, got {chunk_size}")


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


def _encrypt_to_fd(src: BinaryIO, fd: int, key: Key, chunk_size: int) -> StreamStats:
    """Write header and chunks to ``fd``; the STREAM logic of the writing side."""
    prefix = secrets.token_bytes(NONCE_PREFIX_SIZE)
    header = _build_header(key, prefix, chunk_size)
    aead = AESGCM(key.key)
    digest = hashlib.sha256()
    total = 0
    own = 0.0
    _write_fd(fd, header)
    for counter, (plain, last) in enumerate(_chunks(src, chunk_size)):
        t = time.monotonic()
        nonce = _nonce(prefix, counter, last)
        digest.update(plain)
        total += len(plain)
        _write_fd(fd, aead.encrypt(nonce, plain, header))
        own += time.monotonic() - t
    return StreamStats(bytes=total, sha256=digest.hexdigest(), seconds=own)


def _is_disk_full(exc: BaseException) -> bool:
    """Disk full and quota exceeded both mean: free space or write elsewhere."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def encrypt_stream(src: BinaryIO, dst_path: str | Path, key: Key, chunk_size: int = DEFAULT_CHUNK_SIZE) -> StreamStats:
    """Encrypt ``src`` into ``dst_path`` atomically; a failed run leaves no file behind."""
    _check_chunk_size(chunk_size)
    dst = Path(dst_path)
    part = dst.with_name(dst.name + ".part")
    fd = _open_part(part)
    try:
        stats = _encrypt_to_fd(src, fd, key, chunk_size)
        t = time.monotonic()
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(part, dst)
        _fsync_dir(dst.parent)
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


def _corrupt(path: Path, counter: int, offset: int, reason: str) -> CorruptArtifactError:
    """One wording for every chunk failure: which artifact, which chunk, what to do."""
    return CorruptArtifactError(
        f"artifact {path} is damaged: chunk {counter} (at byte {offset}) {reason}; "
        "do not use it: restore it from a copy or take the dump again"
    )


def _decrypt_chunk(
    aead: AESGCM, header: Header, record: bytes, counter: int, last: bool, where: tuple[Path, int]
) -> bytes:
    """Authenticate and decrypt one chunk, explaining truncation and trailing data."""
    path, offset = where
    if len(record) < TAG_SIZE:
        raise _corrupt(path, counter, offset, "is cut short: the file is truncated")
    prefix = header.nonce_prefix
    try:
        return aead.decrypt(_nonce(prefix, counter, last), record, header.raw)
    except InvalidTag:
        pass
    # Diagnose only; never returns the plaintext of a chunk in the wrong position.
    try:
        aead.decrypt(_nonce(prefix, counter, not last), record, header.raw)
    except InvalidTag:
        raise _corrupt(path, counter, offset, "failed authentication") from None
    if last:
        raise _corrupt(path, counter, offset, "is not the final chunk: the file is truncated")
    raise _corrupt(path, counter, offset, "is the final chunk but data follows it")


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
        plain = _decrypt_chunk(aead, header, record, counter, last, (path, offset))
        offset += len(record)
        digest.update(plain)
        total += len(plain)
        own += time.monotonic() - t
        if dst is not None:
            _write_stream(dst, plain)
    if dst is not None and hasattr(dst, "flush"):
        dst.flush()
    return StreamStats(bytes=total, sha256=digest.hexdigest(), seconds=own)


def decrypt_stream(path: str | Path, key: Key, dst: BinaryIO | None) -> StreamStats:
    """Decrypt an artifact to ``dst`` chunk by chunk (None: verify only).

    Chunks before a damaged one have already reached ``dst`` when the error is
    raised; callers that must not touch anything call ``verify_artifact`` first.
    """
    path = Path(path)
    with _open_artifact(path) as f:
        header = _parse_header(f, path)
        _check_key(header, key, path)
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
