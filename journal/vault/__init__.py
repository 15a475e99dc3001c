"""Encrypted artifact vault: streaming AES-256-GCM in the STREAM construction.

Database dumps hold every credential of a cloud, so they only ever touch disk encrypted, and they
are far larger than memory, so they are processed in fixed-size chunks. Three rooms:

- ``keys``: the key (a key file or a passphrase through scrypt), its public id, ``upgrade keygen``'s file;
- ``fileformat``: the header and the framing of each chunk (nonces, tags, what a damaged file says);
- ``stream``: pipes and files in and out, atomically written, with the plaintext's size and sha256;
  ``tee`` hands the same plaintext to a second consumer (an import) while it is written.

``errors`` holds their errors and ``files`` the whole reads and writes they share. Callers use the
names below (``from journal import vault``; ``vault.encrypt_stream(...)``).
"""

from __future__ import annotations

from journal.vault.errors import CorruptArtifactError, KeyFileError, VaultError, WrongKeyError
from journal.vault.fileformat import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    TAG_SIZE,
    Header,
    key_for_artifact,
    read_header,
)
from journal.vault.keys import KDF_KEY_FILE, KDF_SCRYPT, KEY_SIZE, Kdf, Key, generate_key_file
from journal.vault.stream import (
    StreamStats,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    verify_artifact,
)
from journal.vault.tee import Tee

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "KDF_KEY_FILE",
    "KDF_SCRYPT",
    "KEY_SIZE",
    "MAX_CHUNK_SIZE",
    "TAG_SIZE",
    "CorruptArtifactError",
    "Header",
    "Kdf",
    "Key",
    "KeyFileError",
    "StreamStats",
    "Tee",
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
