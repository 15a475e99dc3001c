"""The target's checks table by table as each import ends (table marks) against one pass after the import.

    python -m scripts.bench.marks [--rounds 2]

Two lab MariaDB servers in a temporary directory; a database of 4 tables of 200,000 rows each (a
secondary key, ~300 bytes a row), streamed as one stream (``mysql.dump_streamed``: vault and import at
once) with and without marks, alternately. Per run: the seconds until the data is in (dump, vault and
import ended) and the seconds the checks take after that (what the dump step waits for). Both sides'
checksums are compared, so a run that checked less cannot pass.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from journal import vault
from scripts.lab.mariadb import MariaDB, free_port
from services.infra import mysql
from services.infra.settings import DBEndpoint
from upgrade.hosts import LocalHost

DB = "marks"
TABLES = [f"t{i}" for i in range(4)]
ROWS = 200_000


def _endpoint(server: MariaDB) -> DBEndpoint:
    return DBEndpoint(address="127.0.0.1", port=server.port, admin_user="root", admin_password="")


def _seed(src: MariaDB) -> None:
    src.execute(f"CREATE DATABASE {DB}")
    for t in TABLES:
        src.execute(f"CREATE TABLE {t} (id INT PRIMARY KEY, a VARCHAR(64), b TEXT, KEY (a)) ENGINE=InnoDB", db=DB)
        for k in range(0, ROWS, 50_000):
            src.execute(f"INSERT INTO {t} SELECT seq, MD5(seq), REPEAT(MD5(seq), 8) FROM seq_{k + 1}_to_{k + 50_000}",
                        db=DB)


def measure(work: Path, rounds: int) -> list[tuple[int, bool, float, float, float]]:
    """(round, marks, seconds until the data is in, seconds of checks after it, 1-min load at the start)."""
    src, dst = MariaDB(work / "source", free_port()), MariaDB(work / "target", free_port())
    src.start()
    dst.start()
    try:
        s, t = _endpoint(src), _endpoint(dst)
        _seed(src)
        expected = mysql.checksums(s, DB, TABLES)
        key = vault.generate_key_file(work / "bench.key")
        out = []
        for rnd in range(1, rounds + 1):
            for marks in (True, False):
                mysql.recreate_db(t, DB, "utf8mb4", "utf8mb4_general_ci")
                load = os.getloadavg()[0]
                checks = mysql.TableChecks(t, DB) if marks else None
                artifact = work / "stream.osuv"
                started = time.monotonic()
                mysql.dump_streamed((LocalHost("source"), s), (LocalHost("target"), t), "mysqldump", "mysql", DB,
                                    str(artifact), key, tables=tuple(TABLES),
                                    table_done=checks.done if checks else None)
                moved = time.monotonic()
                sums = checks.finish(TABLES) if checks else mysql.checksums(t, DB, TABLES)
                ended = time.monotonic()
                if sums != expected:
                    raise RuntimeError(f"round {rnd} (marks {marks}): the target differs from the source")
                artifact.unlink()
                out.append((rnd, marks, moved - started, ended - moved, load))
        return out
    finally:
        src.stop()
        dst.stop()


def render(rows: list[tuple[int, bool, float, float, float]]) -> str:
    lines = ["| round | target's checks | data in (s) | checks after the data (s) | total (s) | load 1-min |",
             "|---:|---|---:|---:|---:|---:|"]
    for rnd, marks, data, after, load in rows:
        lines.append(f"| {rnd} | {'table by table (marks)' if marks else 'one pass after'} | {data:.1f} | "
                     f"{after:.2f} | {data + after:.1f} | {load:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench.marks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="osu-marks-"))
    try:
        print(render(measure(work, a.rounds)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
