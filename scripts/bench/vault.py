"""Benchmark of the vault path: throughput and memory of dump -> vault -> import, next to a raw pipe.

    python -m scripts.bench.vault [--size-mb 1024]

Two lab MariaDB servers in a temporary directory; a database of LONGBLOB rows generated inside
the source server; then, per size, (a) the raw ``mariadb-dump | mariadb`` shell pipe between the
servers (the fastest a dump can move, nothing on disk) and (b) the tool's ``dump_to_vault`` then
``import_from_vault`` in a child Python process, whose peak RSS is the tool's memory. Both copies
are checked by row count and CHECKSUM TABLE, so a fast but wrong run cannot pass as a result.

The generator (``generate_blob_db``) and the child (``run_tool``) are shared with
``tests/test_vault_mysql.py``, which streams a smaller database through the same child and checks
that it arrives intact: one piece of code; its memory and speed are measured here only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.lab.mariadb import MariaDB, free_port

REPO = Path(__file__).resolve().parents[2]
#: 64 KiB per row: big enough that the server does the work, small enough for 16 MiB packets.
BLOB_BYTES = 64 * 1024
#: Rows per INSERT ... SELECT (8 MiB): each statement commits, so the lab's 16 MiB redo log and
#: 64 MiB buffer pool never hold a huge transaction.
BATCH_ROWS = 128
TABLE = "blobs"
SEED_TABLE = "blob_seed"
BENCH_DB = "vaultbench"
#: Stated targets; the table says whether a run met them.
RSS_LIMIT_MB = 100
SMALL_MB = 100
# The worker is started through this tiny interpreter: on Linux a child inherits the parent's
# RSS high-water mark across fork+exec (the kernel folds the old mm's peak into ru_maxrss at
# exec), so a worker forked straight from pytest or this benchmark would report *their* peak.
# The launcher is a fresh ~10 MB process, so the worker's ru_maxrss is its own.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def _ident(name: str) -> str:
    """Backtick-quote a name; benchmark names are constants, this keeps them safe regardless."""
    return "`" + name.replace("`", "``") + "`"


def generate_blob_db(server: MariaDB, db: str, size_mb: int, table: str = TABLE) -> int:
    """Create or grow ``db.blobs`` to at least ``size_mb`` MiB of LONGBLOB data; returns its row count.

    The data is made inside the server (sending a gigabyte from Python would take longer than
    what is measured): ``RANDOM_BYTES`` fills a seed table of ``BATCH_ROWS`` rows once, then
    each ``INSERT ... SELECT`` copies the seed into the next id range and commits, so the lab's
    16 MiB redo log and 64 MiB buffer pool never hold a big transaction. It deliberately does
    not double ``blobs`` into itself: a self-referencing INSERT ... SELECT materialises a BLOB
    temp table in the server's tmpdir, and the lab servers share /tmp, where every starting
    mariadbd deletes all ``#sql*`` files (ERROR 6 "Error on delete of /tmp/#sql-temptable...").
    Every copied row gets fresh random first 16 bytes, so rows mixed up by an import change the
    checksum. Growing an existing table lets a caller measure 100 MB and then the full size
    without generating the first 100 MB twice.
    """
    target = max(1, math.ceil(size_mb * 2**20 / BLOB_BYTES))
    server.execute(f"CREATE DATABASE IF NOT EXISTS {_ident(db)} CHARACTER SET utf8mb4")
    conn = server.connect(db)
    try:
        with conn.cursor() as cur:
            for made in (SEED_TABLE, table):
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {_ident(made)} (id BIGINT UNSIGNED NOT NULL PRIMARY KEY,"
                    " data LONGBLOB NOT NULL) ENGINE=InnoDB"
                )
            cur.execute(f"SELECT COUNT(*) FROM {_ident(SEED_TABLE)}")
            if cur.fetchone()[0] != BATCH_ROWS:
                cur.execute(f"DELETE FROM {_ident(SEED_TABLE)}")
                cur.execute(
                    f"INSERT INTO {_ident(SEED_TABLE)} (id, data) SELECT seq,"
                    f" REPEAT(RANDOM_BYTES(1024), {BLOB_BYTES // 1024}) FROM seq_1_to_{BATCH_ROWS}"
                )
            cur.execute(f"SELECT COUNT(*), COALESCE(MAX(id), 0) FROM {_ident(table)}")
            rows, top = cur.fetchone()
            if rows != top:
                raise RuntimeError(f"{db}.{table} has {rows} rows but max id {top}: not made by this generator")
            while rows < target:
                k = min(BATCH_ROWS, target - rows)
                cur.execute(
                    f"INSERT INTO {_ident(table)} (id, data) SELECT id + %s,"
                    f" CONCAT(RANDOM_BYTES(16), SUBSTRING(data, 17)) FROM {_ident(SEED_TABLE)} WHERE id <= %s",
                    (rows, k),
                )
                rows += k
            return int(rows)
    finally:
        conn.close()


def write_key_file(directory: Path) -> Path:
    """A fresh vault key file (0600) as `upgrade keygen` writes it; the worker loads it by path."""
    from journal.vault import generate_key_file

    path = directory / "bench.key"
    generate_key_file(path)
    return path


def run_tool(
    source_port: int,
    target_port: int,
    db: str,
    artifact: Path,
    key_file: Path,
    target_flavor: str = "mariadb",
    timeout: float = 1800,
    streams: int = 0,
) -> dict[str, Any]:
    """Dump ``db`` from source into ``artifact`` and import it into target, in a child process.

    A child, because its peak RSS must be the tool's alone (not pytest's, not this benchmark's).
    The target database must already exist (the upgrade creates it with the source's charset).
    Returns the child's JSON: plaintext bytes and sha256, seconds of each half, ru_maxrss and
    VmHWM in KiB. *streams* 0: the whole dump into the vault, then verified and imported from it (the
    path before the streamed import); n >= 1: the streamed path of the dump step (``dump_streamed``), the
    database cut by table into n streams, each read once into its artifact and the target at the same
    time, then read back whole (its ``dump_s`` is everything, ``import_s`` 0).
    """
    spec = {
        "source_port": source_port,
        "target_port": target_port,
        "db": db,
        "artifact": str(artifact),
        "key_file": str(key_file),
        "target_flavor": target_flavor,
        "streams": streams,
    }
    proc = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "scripts.bench.vault", "--worker"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"vault worker failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker() -> None:
    """Child side of ``run_tool``: only the tool's modules are loaded, then one dump and one import."""
    import resource

    from journal import vault
    from services.infra import mysql
    from services.infra.settings import DBEndpoint
    from upgrade.hosts import LocalHost

    spec = json.loads(sys.stdin.read())
    key = vault.Key.from_file(spec["key_file"])
    source = DBEndpoint(address="127.0.0.1", port=spec["source_port"], admin_user="root", admin_password="")
    target = DBEndpoint(
        address="127.0.0.1",
        port=spec["target_port"],
        admin_user="root",
        admin_password="",
        flavor=spec["target_flavor"],
    )
    started = time.perf_counter()
    if spec.get("streams"):
        stats = _streamed(spec, source, target, key)
        dumped = imported = time.perf_counter()
    else:
        stats = mysql.dump_to_vault(LocalHost("source"), source, "mysqldump", spec["db"], spec["artifact"], key)
        dumped = time.perf_counter()
        mysql.import_from_vault(
            LocalHost("target"), target, "mysql", spec["db"], spec["artifact"], key, stats.bytes, stats.sha256
        )
        imported = time.perf_counter()
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    print(
        json.dumps(
            {
                "bytes": stats.bytes,
                "sha256": stats.sha256,
                "dump_s": dumped - started,
                "import_s": imported - dumped,
                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "vm_hwm_kib": int(match.group(1)) if match else None,
            }
        )
    )


def _streamed(spec: dict[str, Any], source: Any, target: Any, key: Any) -> Any:
    """The dump step's streams (services/steps/dumps.py) without a journal: cut by table, each stream
    read once into its artifact and the target's mysql, each artifact read back whole as it ends."""
    from concurrent.futures import ThreadPoolExecutor

    from journal import vault
    from services.infra import mysql
    from services.steps.dumps import cut_by_table
    from upgrade.hosts import LocalHost

    db = spec["db"]
    tables = mysql.tables_of(source, db)
    n = min(int(spec["streams"]), len(tables.sizes))
    streams = cut_by_table(tables.sizes, n) if n > 1 else [()]
    children = mysql.Children()

    def one(k: int) -> Any:
        path = f"{spec['artifact']}.{k + 1}"
        stats = mysql.dump_streamed((LocalHost("source"), source), (LocalHost("target"), target), "mysqldump",
                                    "mysql", db, path, key, tables=streams[k], objects=k == 0, children=children)
        vault.verify_artifact(path, key, stats.bytes, stats.sha256)
        Path(path).unlink()
        return stats

    with ThreadPoolExecutor(max_workers=len(streams)) as pool:
        results = list(pool.map(one, range(len(streams))))
    return vault.StreamStats(sum(r.bytes for r in results), "", sum(r.seconds for r in results))


def _client_file(directory: Path, server: MariaDB) -> Path:
    """A 0600 [client] file like the tool's, so the raw pipe connects exactly as the tool does."""
    path = directory / f"client-{server.port}.cnf"
    path.write_text(f"[client]\nuser=root\npassword=\nhost=127.0.0.1\nport={server.port}\nprotocol=TCP\n")
    path.chmod(0o600)
    return path


def raw_pipe(work: Path, source: MariaDB, target: MariaDB, db: str) -> float:
    """Seconds of ``mariadb-dump | mariadb`` with the tool's dump options: the baseline to beat."""
    from services.infra.mysql import DUMP_OPTIONS

    src_cnf = _client_file(work, source)
    dst_cnf = _client_file(work, target)
    dump = shlex.join(["mariadb-dump", f"--defaults-extra-file={src_cnf}", *DUMP_OPTIONS, db])
    load = shlex.join(["mariadb", f"--defaults-extra-file={dst_cnf}", db])
    started = time.perf_counter()
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{dump} | {load}"], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"raw pipe failed (rc {proc.returncode}): {proc.stderr.strip()}")
    return elapsed


def recreate_like(source: MariaDB, target: MariaDB, db: str) -> None:
    """Drop and create ``db`` on target with the source's charset, as the upgrade's import step does."""
    charset, collation = source.execute(
        "SELECT default_character_set_name, default_collation_name FROM information_schema.schemata"
        " WHERE schema_name = %s",
        args=(db,),
    )[0]
    target.execute(f"DROP DATABASE IF EXISTS {_ident(db)}")
    target.execute(f"CREATE DATABASE {_ident(db)} CHARACTER SET {charset} COLLATE {collation}")


#: the benchmark database is this many tables of equal size, so that parallel streams have tables to share
TABLES = 4
#: the tool's variants, by ``run_tool``'s *streams*: 0 the path before the streamed import, n >= 1 n streams
VARIANTS = {0: "tool, dump into the vault, then verify and import (before)", 1: "tool, streamed, 1 stream",
            2: "tool, streamed, 2 streams by table", 4: "tool, streamed, 4 streams by table"}


@dataclass
class Measurement:
    """One size: what the raw pipe and each of the tool's variants achieved on the same data."""

    size_mb: int
    rows: int
    plain_bytes: int
    raw_s: float
    tools: dict[int, dict[str, Any]]

    def seconds(self, streams: int) -> float:
        """Wall time of a variant: dump and import (streamed: both at once, artifacts read back included)."""
        return float(self.tools[streams]["dump_s"] + self.tools[streams]["import_s"])

    def ratio(self, streams: int) -> float:
        """A variant's throughput over the raw pipe's (same bytes: raw seconds over the variant's)."""
        return self.raw_s / self.seconds(streams)

    def rss_mb(self, streams: int) -> float:
        """A variant's peak RSS in MiB (ru_maxrss of the child)."""
        return float(self.tools[streams]["maxrss_kib"]) / 1024


def measure(work: Path, source: MariaDB, target: MariaDB, db: str, size_mb: int, key_file: Path) -> Measurement:
    """Grow the source DB to ``size_mb`` in TABLES tables, then time the raw pipe and every variant of the
    tool on it; each copy checked by row counts and CHECKSUM TABLE."""
    rows = sum(generate_blob_db(source, db, max(1, size_mb // TABLES), f"{TABLE}{k}") for k in range(1, TABLES + 1))
    expected = source.checksums(db)
    recreate_like(source, target, db)
    raw_s = raw_pipe(work, source, target, db)
    if target.checksums(db) != expected:
        raise RuntimeError(f"raw pipe copy of {db} ({size_mb} MB) differs from the source")
    tools = {}
    for streams in VARIANTS:
        recreate_like(source, target, db)
        artifact = work / f"{db}-{size_mb}.vault"
        tools[streams] = run_tool(source.port, target.port, db, artifact, key_file, streams=streams)
        if target.checksums(db) != expected:
            raise RuntimeError(f"tool copy of {db} ({size_mb} MB, {VARIANTS[streams]}) differs from the source")
        artifact.unlink(missing_ok=True)
    return Measurement(size_mb, rows, int(tools[0]["bytes"]), raw_s, tools)


def render(results: list[Measurement]) -> str:
    """The Markdown section: per size the raw pipe and every variant side by side, then the targets."""
    # here, not at the top: the measured child (run_tool) imports this module and loads only what the tool does
    from upgrade import tables

    rows = []
    for m in results:
        rows.append((str(m.size_mb), "raw pipe, mariadb-dump into mariadb", f"{m.raw_s:.1f}",
                     f"{m.plain_bytes / 1e6 / m.raw_s:.1f}", "1.00", ""))
        rows += [(str(m.size_mb), name, f"{m.seconds(n):.1f}", f"{m.plain_bytes / 1e6 / m.seconds(n):.1f}",
                  f"{m.ratio(n):.2f}", f"{m.rss_mb(n):.1f}") for n, name in VARIANTS.items()]
    lines = [
        "## Vault throughput and memory",
        "",
        "Target: the tool's dump -> vault -> import reaches >= 1.0 of the throughput of a raw "
        "`mariadb-dump | mariadb` pipe between the same two servers (parallel streams may beat it), and its "
        f"peak RSS is flat in the database size (under {RSS_LIMIT_MB} MB). Throughput is plaintext dump bytes "
        "(`--hex-blob`: twice the BLOB bytes) over wall seconds. The database holds the given MiB of "
        f"{BLOB_BYTES // 1024} KiB LONGBLOB rows in {TABLES} tables of equal size plus an "
        f"{BATCH_ROWS * BLOB_BYTES >> 20} MiB seed table they are copied from. The streamed variants are the "
        "dump step's path: each stream read once into its own artifact and into the target's `mysql` at the same "
        "time, each artifact read back whole (authenticated, size and sha256) before it counts.",
        "",
        *tables.markdown(("DB size (MiB of BLOBs)", "path", "seconds", "MB/s", "vs raw pipe", "peak RSS (MiB)"),
                         rows, right=(0, 2, 3, 4, 5)),
    ]
    best = max((m.ratio(n), n, m.size_mb) for m in results for n in VARIANTS if n)
    rss = [m.rss_mb(n) for m in results for n in VARIANTS]
    lines += [
        "",
        f"- best streamed ratio: {best[0]:.2f} ({VARIANTS[best[1]]}, {best[2]} MiB); >= 1.0: "
        + ("met" if best[0] >= 1.0 else "NOT met"),
        f"- peak RSS under {RSS_LIMIT_MB} MB: " + ("met" if max(rss) < RSS_LIMIT_MB else "NOT met")
        + f" (highest {max(rss):.1f} MiB)",
    ]
    if len(results) == 1:
        lines.append(f"- one size only ({results[0].size_mb} MiB): run with a larger `--size-mb` to see RSS "
                     "against size")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def lab_servers(base: Path) -> Iterator[tuple[MariaDB, MariaDB]]:
    """Two lab servers under ``base``, stopped at the end whatever happens."""
    source = MariaDB(base / "db-source", free_port())
    target = MariaDB(base / "db-target", free_port())
    try:
        source.start()
        target.start()
        yield source, target
    finally:
        source.stop()
        target.stop()


def run(size_mb: int = 1024, small: bool = True) -> str:
    """Measure 100 MB (unless not *small*) and ``size_mb`` (once if equal or smaller) and return the Markdown
    section."""
    if size_mb < 1:
        raise ValueError(f"size_mb must be >= 1, got {size_mb}")
    sizes = sorted({min(SMALL_MB, size_mb), size_mb}) if small else [size_mb]
    base = Path(tempfile.mkdtemp(prefix="osu-bench-vault-"))
    try:
        with lab_servers(base) as (source, target):
            key_file = write_key_file(base)
            results = [measure(base, source, target, BENCH_DB, size, key_file) for size in sizes]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return render(results)


def main(argv: list[str] | None = None) -> int:
    """Command line: print the Markdown section (or act as the measured child with --worker)."""
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.vault", description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="database size in MiB of BLOB data")
    parser.add_argument("--no-small", action="store_true", help=f"skip the {SMALL_MB} MB size")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker()
        return 0
    sys.stdout.write(run(args.size_mb, not args.no_small))
    return 0


if __name__ == "__main__":
    sys.exit(main())
