"""Tests of the encrypted artifact vault on real files, pipes and filesystems (no mocks)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from journal.vault import (
    CorruptArtifactError,
    Key,
    KeyFileError,
    VaultError,
    WrongKeyError,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    generate_key_file,
    key_for_artifact,
    read_header,
    verify_artifact,
)
from journal.vault.fileformat import nonce as _nonce

REPO = Path(__file__).resolve().parents[1]
CHUNK = 64
RECORD = CHUNK + 16
FAST_SCRYPT = {"n": 2**10, "r": 8, "p": 1}


@pytest.fixture
def key(tmp_path: Path) -> Key:
    """A fresh key from a real key file, as `upgrade keygen` would make it."""
    return generate_key_file(tmp_path / "dump.key")


def _mode(path: Path) -> int:
    """Permission bits of a file."""
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
def test_round_trip_small_chunks(tmp_path: Path, key: Key, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "a.vault"
    stats = encrypt_stream(io.BytesIO(data), path, key, chunk_size=CHUNK)
    assert stats.bytes == size
    assert stats.sha256 == hashlib.sha256(data).hexdigest()
    assert _mode(path) == 0o600
    assert not path.with_name("a.vault.part").exists()
    out = io.BytesIO()
    assert decrypt_stream(path, key, out) == stats
    assert out.getvalue() == data
    header = read_header(path)
    chunks = max(1, -(-size // CHUNK))
    assert path.stat().st_size == len(header.raw) + size + 16 * chunks


def test_round_trip_5mb_default_chunk(tmp_path: Path, key: Key) -> None:
    data = os.urandom(5_000_000)
    path = tmp_path / "big.vault"
    stats = encrypt_bytes(data, path, key)
    assert (stats.bytes, stats.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert read_header(path).chunk_size == 1 << 20
    assert _mode(path) == 0o600
    assert decrypt_bytes(path, key) == data
    assert verify_artifact(path, key, len(data), stats.sha256.upper()) == stats


def test_ciphertext_does_not_contain_plaintext(tmp_path: Path, key: Key) -> None:
    secret = b"nova_db_password=hunter2-" * 100
    path = tmp_path / "a.vault"
    encrypt_bytes(secret, path, key, chunk_size=CHUNK)
    assert b"hunter2" not in path.read_bytes()


def test_same_plaintext_encrypts_differently(tmp_path: Path, key: Key) -> None:
    encrypt_bytes(b"x" * 200, tmp_path / "a", key, chunk_size=CHUNK)
    encrypt_bytes(b"x" * 200, tmp_path / "b", key, chunk_size=CHUNK)
    assert (tmp_path / "a").read_bytes() != (tmp_path / "b").read_bytes()


def test_stale_part_file_is_replaced(tmp_path: Path, key: Key) -> None:
    path = tmp_path / "a.vault"
    stale = tmp_path / "a.vault.part"
    stale.write_bytes(b"left over by a killed run")
    stale.chmod(0o644)
    encrypt_bytes(b"hello", path, key)
    assert not stale.exists()
    assert decrypt_bytes(path, key) == b"hello"


def test_existing_artifact_is_replaced_atomically(tmp_path: Path, key: Key) -> None:
    path = tmp_path / "a.vault"
    encrypt_bytes(b"old", path, key)
    encrypt_bytes(b"new", path, key)
    assert decrypt_bytes(path, key) == b"new"


def test_verify_artifact_mismatch(tmp_path: Path, key: Key) -> None:
    path = tmp_path / "a.vault"
    stats = encrypt_bytes(b"dump", path, key)
    with pytest.raises(CorruptArtifactError, match=str(path)):
        verify_artifact(path, key, expected_bytes=stats.bytes + 1)
    with pytest.raises(CorruptArtifactError, match=str(path)):
        verify_artifact(path, key, expected_sha256=hashlib.sha256(b"other").hexdigest())


def test_invalid_chunk_size_refused(tmp_path: Path, key: Key) -> None:
    with pytest.raises(VaultError, match="chunk size"):
        encrypt_bytes(b"x", tmp_path / "a", key, chunk_size=0)
    assert not (tmp_path / "a.part").exists()


def test_missing_artifact(tmp_path: Path, key: Key) -> None:
    path = tmp_path / "nope.vault"
    with pytest.raises(VaultError, match=str(path)):
        decrypt_stream(path, key, None)


def test_counter_overflow_raises() -> None:
    assert len(_nonce(b"\0" * 7, 0xFFFFFFFF, True)) == 12
    with pytest.raises(VaultError, match="overflow"):
        _nonce(b"\0" * 7, 0x1_0000_0000, False)


# -------------------------------------------------------------------- tampering


@pytest.fixture
def artifact(tmp_path: Path, key: Key) -> tuple[Path, bytes, int]:
    """An artifact of 5 full chunks and a short last one; returns path, bytes, header length."""
    path = tmp_path / "glance.sql.vault"
    encrypt_bytes(os.urandom(5 * CHUNK + 10), path, key, chunk_size=CHUNK)
    return path, path.read_bytes(), len(read_header(path).raw)


def _flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :]


def _chunk(data: bytes, h: int, i: int) -> bytes:
    return data[h + i * RECORD : h + (i + 1) * RECORD]


TAMPERINGS: dict[str, Callable[[bytes, int], bytes]] = {
    "header magic": lambda d, h: _flip(d, 0),
    "header version": lambda d, h: _flip(d, 8),
    "header key id": lambda d, h: _flip(d, 12),
    "header nonce prefix": lambda d, h: _flip(d, 27),
    "header chunk size": lambda d, h: _flip(d, 35),
    "header kdf kind": lambda d, h: _flip(d, 36),
    "header check": lambda d, h: _flip(d, h - 1),
    "chunk body": lambda d, h: _flip(d, h + 2 * RECORD + 5),
    "chunk tag": lambda d, h: _flip(d, h + 3 * RECORD - 1),
    "last chunk tag": lambda d, h: _flip(d, len(d) - 1),
    "drop middle chunk": lambda d, h: d[: h + 2 * RECORD] + d[h + 3 * RECORD :],
    "swap chunks": lambda d, h: d[: h + RECORD] + _chunk(d, h, 2) + _chunk(d, h, 1) + d[h + 3 * RECORD :],
    "truncate mid chunk": lambda d, h: d[: h + 2 * RECORD + 30],
    "truncate at chunk boundary": lambda d, h: d[: h + 5 * RECORD],
    "truncate to header": lambda d, h: d[:h],
    "truncate inside header": lambda d, h: d[: h - 3],
    "append bytes": lambda d, h: d + b"\0",
    "append copied chunk": lambda d, h: d + _chunk(d, h, 1),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_tampering_is_refused(artifact: tuple[Path, bytes, int], key: Key, name: str) -> None:
    path, data, h = artifact
    assert h == 45
    path.write_bytes(TAMPERINGS[name](data, h))
    with pytest.raises(CorruptArtifactError) as exc:
        decrypt_stream(path, key, None)
    assert str(path) in str(exc.value)


def test_every_header_bit_is_protected(artifact: tuple[Path, bytes, int], key: Key) -> None:
    path, data, h = artifact
    for pos in range(h):
        for bit in range(8):
            path.write_bytes(data[:pos] + bytes([data[pos] ^ (1 << bit)]) + data[pos + 1 :])
            with pytest.raises(CorruptArtifactError):
                decrypt_stream(path, key, None)


def test_corrupt_message_names_chunk(artifact: tuple[Path, bytes, int], key: Key) -> None:
    path, data, h = artifact
    path.write_bytes(_flip(data, h + 2 * RECORD + 5))
    with pytest.raises(CorruptArtifactError, match="chunk 2"):
        decrypt_stream(path, key, None)
    path.write_bytes(data[: h + 5 * RECORD])
    with pytest.raises(CorruptArtifactError, match="chunk 4 .*truncated"):
        decrypt_stream(path, key, None)


@pytest.mark.parametrize("size", [0, CHUNK, 3 * CHUNK])
def test_exact_multiple_appended_or_truncated(tmp_path: Path, key: Key, size: int) -> None:
    """Plaintexts filling whole chunks: the last chunk is full-size and has no tell-tale length."""
    path = tmp_path / "a.vault"
    encrypt_bytes(os.urandom(size), path, key, chunk_size=CHUNK)
    data, h = path.read_bytes(), len(read_header(path).raw)
    cases = [data + data[h:], data + data[-RECORD:]]
    if size:
        cases.append(data[: len(data) - RECORD])
    for tampered in cases:
        path.write_bytes(tampered)
        with pytest.raises(CorruptArtifactError, match=str(path)):
            decrypt_stream(path, key, None)


def test_chunk_from_other_artifact_refused(tmp_path: Path, key: Key) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    encrypt_bytes(b"A" * 3 * CHUNK, a, key, chunk_size=CHUNK)
    encrypt_bytes(b"B" * 3 * CHUNK, b, key, chunk_size=CHUNK)
    da, db = a.read_bytes(), b.read_bytes()
    h = len(read_header(a).raw)
    a.write_bytes(da[: h + RECORD] + db[h + RECORD : h + 2 * RECORD] + da[h + 2 * RECORD :])
    with pytest.raises(CorruptArtifactError, match="chunk 1"):
        decrypt_stream(a, key, None)


def test_not_a_vault_file(tmp_path: Path, key: Key) -> None:
    path = tmp_path / "dump.sql"
    path.write_bytes(b"-- MySQL dump 10.13\n" * 10)
    with pytest.raises(CorruptArtifactError, match="not a vault artifact"):
        decrypt_stream(path, key, None)


# ------------------------------------------------------------------------- keys


def test_wrong_key_names_both_ids(tmp_path: Path, key: Key) -> None:
    path = tmp_path / "a.vault"
    encrypt_bytes(b"secret", path, key)
    other = generate_key_file(tmp_path / "other.key")
    with pytest.raises(WrongKeyError) as exc:
        decrypt_stream(path, other, io.BytesIO())
    message = str(exc.value)
    assert key.key_id in message and other.key_id in message and str(path) in message
    with pytest.raises(WrongKeyError):
        key_for_artifact(path, tmp_path / "other.key", None)
    assert key_for_artifact(path, tmp_path / "dump.key", None) == key


def test_wrong_key_writes_nothing(tmp_path: Path, key: Key) -> None:
    path = tmp_path / "a.vault"
    encrypt_bytes(b"secret" * 100, path, key, chunk_size=CHUNK)
    out = io.BytesIO()
    with pytest.raises(WrongKeyError):
        decrypt_stream(path, Key.from_bytes(os.urandom(32)), out)
    assert out.getvalue() == b""


def test_passphrase_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a.vault"
    data = os.urandom(1000)
    encrypt_bytes(data, path, Key.from_passphrase("correct horse", **FAST_SCRYPT), chunk_size=CHUNK)
    header = read_header(path)
    assert header.kdf.n == 2**10 and len(header.kdf.salt) == 16
    key = key_for_artifact(path, None, "correct horse")
    assert key.key_id == header.key_id
    assert decrypt_bytes(path, key) == data


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "a.vault"
    encrypt_bytes(b"x", path, Key.from_passphrase("right", **FAST_SCRYPT))
    with pytest.raises(WrongKeyError, match="passphrase"):
        key_for_artifact(path, None, "wrong")


def test_passphrase_for_key_file_artifact(tmp_path: Path, key: Key) -> None:
    path = tmp_path / "a.vault"
    encrypt_bytes(b"x", path, key)
    with pytest.raises(WrongKeyError, match="key file"):
        key_for_artifact(path, None, "anything")
    with pytest.raises(VaultError, match="exactly one"):
        key_for_artifact(path, None, None)


def test_passphrase_salt_is_random() -> None:
    a = Key.from_passphrase("same", **FAST_SCRYPT)
    b = Key.from_passphrase("same", **FAST_SCRYPT)
    assert a.key_id != b.key_id
    assert Key.from_passphrase("same", salt=a.kdf.salt, **FAST_SCRYPT) == a


def test_key_file_world_readable(tmp_path: Path, key: Key) -> None:
    path = tmp_path / "dump.key"
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match=f"chmod 600 {path}"):
        Key.from_file(path)
    path.chmod(0o600)
    assert Key.from_file(path) == key


def test_key_file_group_writable(tmp_path: Path, key: Key) -> None:
    path = tmp_path / "dump.key"
    path.chmod(0o620)
    with pytest.raises(KeyFileError, match="chmod 600"):
        Key.from_file(path)


@pytest.mark.parametrize("content", [b"", b"abc", b"0" * 63, b"0" * 65 + b"\n", b"z" * 64, b"\0" * 33])
def test_key_file_wrong_content(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=str(path)):
        Key.from_file(path)


def test_key_file_raw_and_hex(tmp_path: Path) -> None:
    raw = os.urandom(32)
    for name, content in [("raw", raw), ("hex", raw.hex().encode()), ("hexnl", raw.hex().encode() + b"\n")]:
        path = tmp_path / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, content)
        os.close(fd)
        assert Key.from_file(path).key == raw


def test_key_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "missing.key"
    with pytest.raises(KeyFileError, match="does not exist"):
        Key.from_file(path)


def test_generate_key_file(tmp_path: Path) -> None:
    path = tmp_path / "dump.key"
    key = generate_key_file(path)
    assert _mode(path) == 0o600
    content = path.read_bytes()
    assert content == key.key.hex().encode() + b"\n"
    assert Key.from_file(path) == key
    with pytest.raises(KeyFileError, match=str(path)):
        generate_key_file(path)
    assert path.read_bytes() == content


def test_key_repr_hides_key(key: Key) -> None:
    assert key.key.hex() not in repr(key)
    assert key.key.hex() not in str(key)
    assert repr(key.key) not in repr(key)
    assert key.key_id in repr(key)
    passphrase_key = Key.from_passphrase("pw", **FAST_SCRYPT)
    assert passphrase_key.key.hex() not in repr(passphrase_key)


# ------------------------------------------------------- streams and failures


def test_encrypt_from_real_pipe(tmp_path: Path, key: Key) -> None:
    path = tmp_path / "pipe.vault"
    # bufsize=0: a raw pipe whose reads come back short, as mysqldump's stdout does.
    proc = subprocess.Popen(["head", "-c", "3000000", "/dev/urandom"], stdout=subprocess.PIPE, bufsize=0)
    try:
        stats = encrypt_stream(proc.stdout, path, key)  # type: ignore[arg-type]
    finally:
        assert proc.wait() == 0
    assert stats.bytes == 3_000_000
    assert verify_artifact(path, key, 3_000_000, stats.sha256) == stats


class _DyingSource:
    """A source that delivers some chunks, then fails like a dead mysqldump or ssh."""

    def __init__(self, chunks: int, exc: BaseException) -> None:
        self.left = chunks
        self.exc = exc

    def read(self, n: int) -> bytes:
        if self.left == 0:
            raise self.exc
        self.left -= 1
        return b"x" * n


@pytest.mark.parametrize("exc", [OSError("connection reset"), RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_mid_stream_leaves_nothing(tmp_path: Path, key: Key, exc: BaseException) -> None:
    path = tmp_path / "a.vault"
    with pytest.raises(type(exc)) as raised:
        encrypt_stream(_DyingSource(5, exc), path, key, chunk_size=CHUNK)  # type: ignore[arg-type]
    assert raised.value is exc
    assert not path.exists()
    assert not (tmp_path / "a.vault.part").exists()
    assert os.listdir(tmp_path) == ["dump.key"]


def test_disk_full(tmp_path: Path, key: Key) -> None:
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a 1 MiB tmpfs (needs root): {mounted.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        path = mount_point / "a.vault"
        with pytest.raises(VaultError, match="no space") as exc:
            encrypt_bytes(os.urandom(3_000_000), path, key)
        assert str(mount_point) in str(exc.value)
        assert os.listdir(mount_point) == []
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, subprocess, sys
    from journal.vault import Key, decrypt_stream, encrypt_stream
    key = Key.from_bytes(b"k" * 32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    proc = subprocess.Popen(["head", "-c", "200000000", "/dev/zero"], stdout=subprocess.PIPE)
    enc = encrypt_stream(proc.stdout, sys.argv[1], key)
    assert proc.wait() == 0
    with open("/dev/null", "wb") as null:
        dec = decrypt_stream(sys.argv[1], key, null)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(before, after, enc.bytes, dec.bytes, enc.sha256 == dec.sha256)
    """
)


def test_memory_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.vault"
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    before_kb, after_kb, enc_bytes, dec_bytes, same = result.stdout.split()
    assert int(enc_bytes) == int(dec_bytes) == 200_000_000
    assert same == "True"
    growth_mb = (int(after_kb) - int(before_kb)) / 1024
    assert growth_mb < 100, f"peak RSS grew by {growth_mb:.1f} MB"
