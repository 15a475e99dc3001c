"""Would zstd before encryption help? Its cost and gain on the dumps the vault writes, measured.

    python -m scripts.bench.compress [--size-mb 1024]

Two samples of ``--size-mb`` MiB of dump text: (1) the real dump (the tool's options) of the nova-like
database ``scripts.bench.keys`` grows (8 KiB base64 ``user_data`` per instance, as ``scripts/bench/grow``
makes for the window benchmark: 1 KiB of random bytes base64-encoded and repeated 8 times, so it
compresses far better than a real cloud-init payload that is gzipped already), and (2) ``--hex-blob``
text of random bytes (the vault benchmark's LONGBLOB rows: incompressible data, hex-encoded). For each:
``zstd -1`` and ``-3`` on one thread (the ``zstd`` program: the same library the ``zstandard`` package
binds), the vault's own encryption of the same bytes (AES-256-GCM, ``vault.encrypt_stream``), and the
rates the dump actually flows at in the benchmarks (the raw pipe), to say what share of a core
compressing would take and what disk it would save. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from journal import vault
from scripts.bench import keys
from scripts.lab.mariadb import MariaDB, free_port
from services.infra.mysql import DUMP_OPTIONS
from upgrade import tables

LEVELS = (1, 3)


def _nova_sample(base: Path, size_mb: int) -> Path:
    server = MariaDB(base / "src", free_port())
    try:
        server.start()
        keys.grow(server, size_mb)
        dump = base / "nova.sql"
        with dump.open("wb") as f:
            subprocess.run([*server._client("mariadb-dump"), *DUMP_OPTIONS, keys.DB], stdout=f, check=True)
        return dump
    finally:
        server.stop()


def _hex_sample(base: Path, size_mb: int) -> Path:
    path = base / "blobs.hex"
    with path.open("wb") as f:
        for _ in range(size_mb * 2):  # 512 KiB of random bytes -> 1 MiB of hex, per round
            f.write(os.urandom(1 << 19).hex().encode())
    return path


def _zstd(path: Path, level: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = subprocess.run(["zstd", f"-{level}", "-T1", "-c", "-q", str(path)], stdout=subprocess.PIPE, check=True)
    return time.perf_counter() - t0, len(out.stdout)


def _encrypt(path: Path, base: Path) -> float:
    key = vault.Key.from_bytes(os.urandom(32))
    t0 = time.perf_counter()
    with path.open("rb") as f:
        vault.encrypt_stream(f, base / "enc.vault", key)
    seconds = time.perf_counter() - t0
    (base / "enc.vault").unlink()
    return seconds


def run(size_mb: int = 1024) -> str:
    base = Path(tempfile.mkdtemp(prefix="osu-zstd-", dir="/work" if Path("/work").is_dir() else None))
    rows = []
    try:
        for name, make in (("nova-like dump (grown instances, actions, events)", _nova_sample),
                           ("--hex-blob dump of random BLOBs", _hex_sample)):
            sample = make(base, size_mb)
            size = sample.stat().st_size
            enc = _encrypt(sample, base)
            rows.append((name, f"{size / 1e6:.0f}", "AES-256-GCM (the vault today)", f"{enc:.1f}",
                         f"{size / enc / 1e6:.0f}", "1.00"))
            for level in LEVELS:
                seconds, packed = _zstd(sample, level)
                rows.append((name, f"{size / 1e6:.0f}", f"zstd -{level}, one thread", f"{seconds:.1f}",
                             f"{size / seconds / 1e6:.0f}", f"{packed / size:.2f}"))
            sample.unlink()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return "\n".join([
        "## Vault: zstd before encryption?", "",
        f"Samples of about {size_mb} MiB of dump text, each compressed by `zstd` and encrypted by the vault on one "
        "core (`python -m scripts.bench.compress`; the 1-GiB-class nova sample is the `scripts.bench.keys` database):",
        "", *tables.markdown(("sample", "MB", "pass", "seconds", "MB/s", "size after"), rows, right=(1, 3, 4, 5)),
        ""])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    a = ap.parse_args()
    print(run(a.size_mb))
