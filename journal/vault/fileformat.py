"""The artifact file format: the header, and the AES-256-GCM framing of its chunks (STREAM).

All integers big-endian::

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

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from journal.vault.errors import CorruptArtifactError, VaultError, WrongKeyError
from journal.vault.files import read_full
from journal.vault.keys import (
    KDF_KEY_FILE,
    KDF_SCRYPT,
    KEY_ID_SIZE,
    SCRYPT_BLOCK,
    Kdf,
    Key,
    check_scrypt_params,
)

MAGIC = b"OSUVAULT"
VERSION = 1
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
CHECK_SIZE = 8
DEFAULT_CHUNK_SIZE = 1 << 20
# Bounds the memory a (possibly hostile) header can make a reader allocate.
MAX_CHUNK_SIZE = 16 << 20
MAX_COUNTER = 0xFFFFFFFF
_FIXED = struct.Struct(f">8sB{KEY_ID_SIZE}s{NONCE_PREFIX_SIZE}sIB")


@dataclass(frozen=True)
class Header:
    """The parsed artifact header; ``raw`` is authenticated with every chunk."""

    version: int
    key_id: str
    nonce_prefix: bytes
    chunk_size: int
    kdf: Kdf
    raw: bytes = field(repr=False)


def build_header(key: Key, nonce_prefix: bytes, chunk_size: int) -> bytes:
    """Serialise a header for a new artifact, check bytes included."""
    body = _FIXED.pack(MAGIC, VERSION, bytes.fromhex(key.key_id), nonce_prefix, chunk_size, key.kdf.kind)
    body += key.kdf.params()
    return body + hashlib.sha256(body).digest()[:CHECK_SIZE]


def _read_exact(f: BinaryIO, size: int, path: Path, what: str) -> bytes:
    """Read exactly ``size`` header bytes or report the file as truncated."""
    data = read_full(f, size)
    if len(data) != size:
        raise CorruptArtifactError(
            f"artifact {path} is truncated inside its {what}; the file is incomplete: "
            "restore it from a copy or take the dump again"
        )
    return data


def parse_header(f: BinaryIO, path: Path) -> Header:
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
    kdf_block = _read_exact(f, SCRYPT_BLOCK.size, path, "header") if kind == KDF_SCRYPT else b""
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
    salt, n, r, p = SCRYPT_BLOCK.unpack(block)
    problem = check_scrypt_params(n, r, p)
    if problem:
        raise CorruptArtifactError(f"artifact {path} has unusable scrypt parameters: {problem}")
    return Kdf(KDF_SCRYPT, salt, n, r, p)


def open_artifact(path: Path) -> BinaryIO:
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
    with open_artifact(path) as f:
        return parse_header(f, path)


def check_key(header: Header, key: Key, path: Path) -> None:
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
    check_key(header, key, path)
    return key


def check_chunk_size(chunk_size: int) -> None:
    """Reject chunk sizes a reader would refuse, before writing anything."""
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise VaultError(f"chunk size must be between 1 and {MAX_CHUNK_SIZE}, got {chunk_size}")


def nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    """STREAM nonce; refuses to wrap the counter, which would reuse nonces."""
    if counter > MAX_COUNTER:
        raise VaultError(
            f"artifact would need more than {MAX_COUNTER + 1} chunks (counter overflow); use a larger chunk size"
        )
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


def encrypt_chunk(aead: AESGCM, header: bytes, prefix: bytes, counter: int, plain: bytes, last: bool) -> bytes:
    """One chunk's record: ciphertext and tag, bound to its position, to being last or not, and to the header."""
    return aead.encrypt(nonce(prefix, counter, last), plain, header)


def _corrupt(path: Path, counter: int, offset: int, reason: str) -> CorruptArtifactError:
    """One wording for every chunk failure: which artifact, which chunk, what to do."""
    return CorruptArtifactError(
        f"artifact {path} is damaged: chunk {counter} (at byte {offset}) {reason}; "
        "do not use it: restore it from a copy or take the dump again"
    )


def decrypt_chunk(
    aead: AESGCM, header: Header, record: bytes, counter: int, last: bool, where: tuple[Path, int]
) -> bytes:
    """Authenticate and decrypt one chunk, explaining truncation and trailing data."""
    path, offset = where
    if len(record) < TAG_SIZE:
        raise _corrupt(path, counter, offset, "is cut short: the file is truncated")
    prefix = header.nonce_prefix
    try:
        return aead.decrypt(nonce(prefix, counter, last), record, header.raw)
    except InvalidTag:
        pass
    # Diagnose only; never returns the plaintext of a chunk in the wrong position.
    try:
        aead.decrypt(nonce(prefix, counter, not last), record, header.raw)
    except InvalidTag:
        raise _corrupt(path, counter, offset, "failed authentication") from None
    if last:
        raise _corrupt(path, counter, offset, "is not the final chunk: the file is truncated")
    raise _corrupt(path, counter, offset, "is the final chunk but data follows it")
