"""Secondary indexes after the data: a nova-like database imported as dumped, and through ``DeferKeys``.

    python -m scripts.bench.keys [--size-mb 1024]

Two lab MariaDB servers; on the source a database shaped like nova's grown history (``instances``
with an 8 KiB ``user_data`` and nova's seven secondary keys on ``uuid``, host, project, task state,
``deleted``; ``instance_actions`` and ``instance_actions_events`` tied by foreign keys, as nova's);
its dump (the tool's options) in a file; then the same dump imported into a fresh database twice
per round, (a) as dumped (InnoDB maintains every index row by row: ``DISABLE KEYS`` is MyISAM-only)
and (b) through ``services.infra.deferkeys.DeferKeys`` (the trailing plain keys added after the
rows, one sorted build each). Both copies must equal the source (row counts, CHECKSUM TABLE and
SHOW CREATE TABLE of every table), so a fast but wrong import cannot pass as a result.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from scripts.lab.mariadb import MariaDB, free_port
from services.infra.deferkeys import DeferKeys
from services.infra.mysql import DUMP_OPTIONS
from upgrade import tables

DB = "keysbench"
BATCH = 2000
SCHEMA = """
CREATE TABLE instances (
  id INT NOT NULL AUTO_INCREMENT, created_at DATETIME, updated_at DATETIME, deleted INT DEFAULT 0,
  uuid VARCHAR(36) NOT NULL, host VARCHAR(255), node VARCHAR(255), project_id VARCHAR(255),
  vm_state VARCHAR(255), task_state VARCHAR(255), user_data MEDIUMTEXT,
  PRIMARY KEY (id), UNIQUE KEY uniq_instances0uuid (uuid),
  KEY instances_project_id_deleted_idx (project_id, deleted), KEY instances_host_deleted_idx (host, deleted),
  KEY instances_task_state_updated_at_idx (task_state, updated_at),
  KEY instances_deleted_created_at_idx (deleted, created_at), KEY instances_uuid_deleted_idx (uuid, deleted),
  KEY instances_host_node_deleted_idx (host, node, deleted), KEY instances_project_id_idx (project_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;
CREATE TABLE instance_actions (
  id INT NOT NULL AUTO_INCREMENT, created_at DATETIME, action VARCHAR(255), instance_uuid VARCHAR(36),
  request_id VARCHAR(255), user_id VARCHAR(255), project_id VARCHAR(255), start_time DATETIME, deleted INT,
  PRIMARY KEY (id), KEY instance_uuid_idx (instance_uuid), KEY request_id_idx (request_id),
  KEY instance_actions_instance_uuid_updated_at_idx (instance_uuid, created_at),
  CONSTRAINT fk_instance_actions_instance_uuid FOREIGN KEY (instance_uuid) REFERENCES instances (uuid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;
CREATE TABLE instance_actions_events (
  id INT NOT NULL AUTO_INCREMENT, created_at DATETIME, event VARCHAR(255), action_id INT,
  start_time DATETIME, finish_time DATETIME, result VARCHAR(255), host VARCHAR(255), deleted INT,
  PRIMARY KEY (id), KEY action_id (action_id), KEY instance_actions_events_host_idx (host),
  CONSTRAINT instance_actions_events_ibfk_1 FOREIGN KEY (action_id) REFERENCES instance_actions (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;
"""


def grow(server: MariaDB, size_mb: int) -> int:
    """Fill the database to about *size_mb* MiB (8 KiB of user_data per instance, 3 actions each, 2 events
    per action), batch by batch, each its own commit (the lab's 16 MiB redo log). Returns the instances."""
    server.execute(f"DROP DATABASE IF EXISTS {DB}")
    server.execute(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    conn = server.connect(DB)
    n = size_mb * 2**20 // (10 * 1024)  # ~10 KiB per instance with its actions and indexes
    with conn.cursor() as cur:
        for stmt in SCHEMA.split(";"):
            if stmt.strip():
                cur.execute(stmt)
        for start in range(0, n, BATCH):
            rows = min(BATCH, n - start)
            cur.execute(
                "INSERT INTO instances (created_at, updated_at, deleted, uuid, host, node, project_id, vm_state, "
                "task_state, user_data) SELECT NOW() - INTERVAL seq MINUTE, NOW(), seq, UUID(), "
                "CONCAT('compute-', seq % 97), CONCAT('node-', seq % 97), MD5(seq % 331), 'deleted', NULL, "
                f"REPEAT(TO_BASE64(RANDOM_BYTES(768)), 8) FROM seq_{start + 1}_to_{start + rows}")
            cur.execute(
                "INSERT INTO instance_actions (created_at, action, instance_uuid, request_id, user_id, project_id, "
                "start_time, deleted) SELECT i.created_at, a.action, i.uuid, CONCAT('req-', UUID()), "
                "MD5(MOD(i.id, 53)), "
                "i.project_id, i.created_at, 0 FROM instances i JOIN (SELECT 'create' AS action UNION ALL "
                "SELECT 'stop' UNION ALL SELECT 'start') a WHERE i.id > %s AND i.id <= %s", (start, start + rows))
            cur.execute("SELECT COALESCE(MAX(action_id), 0) FROM instance_actions_events")
            after = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO instance_actions_events (created_at, event, action_id, start_time, finish_time, "
                "result, host, deleted) SELECT a.created_at, e.event, a.id, a.start_time, a.start_time, 'Success', "
                "CONCAT('compute-', MOD(a.id, 97)), 0 FROM instance_actions a JOIN (SELECT 'compute__do_build' AS "
                "event UNION ALL SELECT 'conductor_schedule') e WHERE a.id > %s", (after,))
    conn.close()
    return n


def _size_mb(server: MariaDB) -> float:
    server.execute("ANALYZE TABLE instances, instance_actions, instance_actions_events", db=DB)
    rows = server.execute("SELECT SUM(data_length + index_length) FROM information_schema.tables "
                          "WHERE table_schema=%s", args=(DB,))
    return float(rows[0][0]) / 2**20


def _shape(server: MariaDB, db: str) -> dict[str, tuple[object, str]]:
    """Per table: (row count and checksum, SHOW CREATE TABLE): what both imports must reproduce."""
    sums = server.checksums(db)
    return {t: (sums[t], server.execute(f"SHOW CREATE TABLE `{db}`.`{t}`")[0][1]) for t in sums}


def _import(target: MariaDB, dump: Path, defer: bool) -> tuple[float, int]:
    """Seconds to import *dump* into a fresh database (through DeferKeys if *defer*), keys it deferred."""
    target.execute(f"DROP DATABASE IF EXISTS {DB}")
    target.execute(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    proc = subprocess.Popen([*target._client("mariadb"), DB], stdin=subprocess.PIPE)
    sink = DeferKeys(proc.stdin) if defer else proc.stdin
    t0 = time.perf_counter()
    with dump.open("rb") as f:
        while chunk := f.read(1 << 20):
            sink.write(chunk)
    sink.close()
    if proc.wait() != 0:
        raise SystemExit(f"import failed (exit {proc.returncode})")
    return time.perf_counter() - t0, sink.deferred if defer else 0


def run(size_mb: int = 1024, rounds: int = 2) -> str:
    base = Path(tempfile.mkdtemp(prefix="osu-keys-", dir="/work" if Path("/work").is_dir() else None))
    src, dst = MariaDB(base / "src", free_port()), MariaDB(base / "dst", free_port())
    try:
        for s in (src, dst):
            s.start()
        t0 = time.perf_counter()
        instances = grow(src, size_mb)
        grown = time.perf_counter() - t0
        dump = base / "dump.sql"
        with dump.open("wb") as f:
            subprocess.run([*src._client("mariadb-dump"), *DUMP_OPTIONS, DB], stdout=f, check=True)
        want = _shape(src, DB)
        times: dict[bool, list[float]] = {False: [], True: []}
        deferred = 0
        for _ in range(rounds):
            for defer in (False, True):
                seconds, n = _import(dst, dump, defer)
                got = _shape(dst, DB)
                if got != want:
                    raise SystemExit(f"import {'with' if defer else 'without'} deferred keys differs from the "
                                     f"source: {sorted(t for t in want if want[t] != got.get(t))}")
                times[defer].append(seconds)
                deferred = max(deferred, n)
        size, dumped = _size_mb(src), dump.stat().st_size / 1e6
    finally:
        for s in (src, dst):
            s.stop()
        shutil.rmtree(base, ignore_errors=True)
    a, b = statistics.median(times[False]), statistics.median(times[True])
    rows = [("as dumped (indexes maintained row by row)", f"{a:.1f}", " / ".join(f"{x:.1f}" for x in times[False]),
             "1.00"),
            (f"secondary keys after the rows ({deferred} keys)", f"{b:.1f}",
             " / ".join(f"{x:.1f}" for x in times[True]), f"{b / a:.2f}")]
    return "\n".join([
        "## Import: secondary indexes after the data", "",
        f"A nova-like database of {size:.0f} MiB (InnoDB data + index; {instances:,} instances, 3 actions each, 2 "
        f"events per action; grown in {grown:.0f} s), its dump {dumped:.1f} MB of SQL, imported into a fresh "
        f"database of a second lab server (64 MiB buffer pool), {rounds} round(s), each checked equal to the "
        "source (row counts, CHECKSUM TABLE, SHOW CREATE TABLE):", "",
        *tables.markdown(("import", "median (s)", "rounds (s)", "ratio"), rows), ""])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    print(run(a.size_mb, a.rounds))
