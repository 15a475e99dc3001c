"""Vault keys: a 32-byte AES-256 key from a key file or from a passphrase (scrypt), and its public id.

The id is a keyed fingerprint written into every artifact's header, so a wrong key is refused by id
before any work starts; the key itself never appears in a ``repr``, a log or an error.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from journal import private
from journal.vault.errors import KeyFileError, VaultError
from journal.vault.files import fsync_dir, write_fd

KEY_SIZE = 32
KEY_ID_SIZE = 16
SALT_SIZE = 16
KDF_KEY_FILE = 0
KDF_SCRYPT = 1
# scrypt uses 128 * n * r bytes; cap what a header may demand at 1 GiB.
MAX_SCRYPT_MEMORY = 1 << 30
MAX_SCRYPT_P = 16
#: the scrypt parameters as the header stores them after the KDF kind: salt, n, r, p
SCRYPT_BLOCK = struct.Struct(f">{SALT_SIZE}sIII")
_KEY_ID_LABEL = b"openstack-upgrade key id"
_KEY_FILE_READ_LIMIT = 256


@dataclass(frozen=True)
class Kdf:
    """How a key was obtained; written to the header so a passphrase can be re-derived."""

    kind: int = KDF_KEY_FILE
    salt: bytes = b""
    n: int = 0
    r: int = 0
    p: int = 0

    def params(self) -> bytes:
        """The header's block after the KDF kind: the scrypt parameters, nothing for a key file."""
        return SCRYPT_BLOCK.pack(self.salt, self.n, self.r, self.p) if self.kind == KDF_SCRYPT else b""


def key_id(key: bytes) -> str:
    """Public fingerprint of a key, so a wrong key is refused before any work starts."""
    return hashlib.sha256(_KEY_ID_LABEL + key).digest()[:KEY_ID_SIZE].hex()


def check_scrypt_params(n: int, r: int, p: int) -> str | None:
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
        return cls(key=bytes(key), key_id=key_id(key), kdf=kdf or Kdf())

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
        problem = check_scrypt_params(n, r, p)
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
        write_fd(fd, key.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    fsync_dir(path.parent)
    return Key.from_bytes(key)
