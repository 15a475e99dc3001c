"""Journal benchmark: durable event latency and how fast a resume decides where to continue.

Targets: p50 <= 5 ms per durable event; resume decides where to continue in <= 200 ms with
100,000 events in the journal and <= 1 s with 1,000,000 (results decoded lazily: only each step's
last ``done``); the hash-chain walk is `journal verify`'s, measured beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from journal.redact import Redactor
from journal.store import Journal
from journal.vault import Key
from statemachine.replay import replay_rows
from upgrade import tables

STEPS = ["stop_source", "dump_source", "stop_target", "backup_target", "install_config", "import_db",
         "upgrade_schema", "fix_ownership", "start_target", "verify"]


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def durable_pairs(directory: Path, pairs: int) -> list[float]:
    """Seconds per intent+done pair, each event committed with synchronous=FULL."""
    j = Journal(directory, Redactor(["bench-secret"]), key=Key.from_bytes(os.urandom(32)))
    run = j.create_run({"upgrade": {"services": ["keystone"]}}, "0" * 64, None, "2025.2", "2026.1", None)
    out = []
    for i in range(pairs):
        t0 = time.perf_counter()
        j.append(run, "keystone", "intent", step=f"keystone.s{i}", from_state="a", to_state="b", host="target",
                 command="keystone-manage db_sync")
        j.append(run, "keystone", "done", step=f"keystone.s{i}", from_state="a", to_state="b", host="target",
                 result={"seconds": 1.0, "revisions_after": ["742c857f1dfb", "c88cdce8f248"]})
        out.append(time.perf_counter() - t0)
    j.close()
    return out


def resume_decision(directory: Path, events: int) -> tuple[float, float]:
    """Fill a journal with *events* events, then time open + replay (what resume does first)."""
    j = Journal(directory, Redactor(), key=Key.from_bytes(os.urandom(32)))
    run = j.create_run({"upgrade": {"services": ["keystone"]}}, "0" * 64, None, "2025.2", "2026.1", None)
    j.db.conn.execute("PRAGMA synchronous=OFF")  # filling only; the measured part reopens with FULL
    with j._tx():
        for i in range(events // 2):
            step = f"svc{i % 50}.{STEPS[i % len(STEPS)]}"
            for kind in ("intent", "done"):
                j.db.conn.execute(
                    "INSERT INTO events (run, ts, machine, step, kind, result, prev_hash, hash) "
                    "VALUES (?, 0, ?, ?, ?, ?, '', '')",
                    (run, f"svc{i % 50}", step, kind, '{"seconds": 1.0}' if kind == "done" else None))
    j.close()
    t0 = time.perf_counter()
    j = Journal(directory, Redactor(), create=False)
    view = replay_rows(j.step_rows(run))  # what resume and revert read first (Runner.view)
    decided = time.perf_counter() - t0
    assert len(view.machines) == 50
    j.close()
    t0 = time.perf_counter()
    j = Journal(directory, Redactor(), create=False)
    j.verify_chain()  # (the filler rows are not chained: this only measures the walk)
    walk = time.perf_counter() - t0
    return decided, walk


def run(pairs: int = 500, events: int = 100_000, most: int = 1_000_000) -> str:
    with tempfile.TemporaryDirectory(prefix="osu-bench-") as tmp:
        lat = durable_pairs(Path(tmp) / "lat", pairs)
        decided, walk = resume_decision(Path(tmp) / "big", events)
        decided_most, walk_most = resume_decision(Path(tmp) / "most", most) if most else (0.0, 0.0)
    per_event = [x / 2 for x in lat]
    rows = [
        ("durable event (intent or done), p50", f"{_pct(per_event, 50) * 1000:.2f} ms", "<= 5 ms"),
        ("durable event, p99", f"{_pct(per_event, 99) * 1000:.2f} ms", ""),
        ("intent+done pair, p50 / p99", f"{_pct(lat, 50) * 1000:.2f} / {_pct(lat, 99) * 1000:.2f} ms", ""),
        ("intent+done pair, mean", f"{statistics.mean(lat) * 1000:.2f} ms", ""),
        (f"resume decision at {events:,} events (open + replay)", f"{decided * 1000:.0f} ms", "<= 200 ms"),
        (f"hash-chain walk at {events:,} events", f"{walk * 1000:.0f} ms", ""),
    ]
    if most:
        rows += [(f"resume decision at {most:,} events (open + replay)", f"{decided_most * 1000:.0f} ms", "<= 1000 ms"),
                 (f"hash-chain walk at {most:,} events", f"{walk_most * 1000:.0f} ms", "")]
    out = ["## Journal: durable events and resume start-up", "",
           f"{pairs} intent+done pairs on this machine's disk (WAL, synchronous=FULL, fsync per commit); "
           f"a synthetic journal of {events:,} events for the resume decision.", "",
           *tables.markdown(("measure", "result", "target"), rows)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=500)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--most", type=int, default=1_000_000, help="the larger journal (0: none)")
    a = ap.parse_args()
    print(run(a.pairs, a.events, a.most))
