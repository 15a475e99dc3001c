"""Journal benchmark: durable event latency and how fast a resume decides where to continue.

Targets: p50 <= 5 ms per durable event; resume decides where to continue in <= 200 ms with
100,000 events in the journal and <= 1 s with 1,000,000: the seal check `upgrade resume` and `revert`
run before any work (``Journal.authenticate``: runs, artifacts, the sealed marks, the head and every
event a decision reads, never the whole chain) and the decision itself (one read per step and kind
through the marks, results decoded lazily: only each step's last ``done``). Beside it, the walk of
the whole seal (hash chain and every MAC) that `journal verify` runs: it reads every event, so it
grows with the journal.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from journal import seal
from journal.chain import row_hash
from journal.redact import Redactor
from journal.store import Journal
from journal.vault import Key
from statemachine.replay import replay_rows
from upgrade import tables

#: how many times the resume decision is timed (its median is reported)
TRIALS = 5
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


def _fill(directory: Path, events: int, key: Key) -> str:
    """A sealed journal of *events* events (intent+done pairs over 50 machines), chained, MACed and marked as
    ``Journal.append`` writes them, in one transaction (filling only: the measured part reopens it)."""
    j = Journal(directory, Redactor(), key=key)
    run = j.create_run({"upgrade": {"services": ["keystone"]}}, "0" * 64, None, "2025.2", "2026.1", None)
    j.db.conn.execute("PRAGMA synchronous=OFF")
    mac = seal.mac_key(key.key)
    with j._tx() as conn:
        seq, prev = conn.execute("SELECT seq, hash FROM head WHERE id=1").fetchone()
        batch = []
        marks: dict[tuple[str, str, str, str], tuple[int, int]] = {}
        for i in range(events // 2):
            machine = f"svc{i % 50}"
            step = f"{machine}.{STEPS[(i // 50) % len(STEPS)]}"
            for kind in ("intent", "done"):
                seq += 1
                row = {"seq": seq, "run": run, "ts": float(i), "mono": float(i), "boot": None, "machine": machine,
                       "step": step, "kind": kind, "from_state": None, "to_state": None, "host": "target",
                       "command": None, "rc": None, "output": None,
                       "result": '{"seconds": 1.0}' if kind == "done" else None, "prev_hash": prev}
                row["hash"] = prev = row_hash(row)
                row["mac"] = seal.event_mac(mac, row["hash"])
                batch.append(tuple(row.values()))
                group = (run, machine, step, kind)
                marks[group] = (marks[group][0] + 1 if group in marks else 1, seq)
        conn.executemany(f"INSERT INTO events ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", batch)
        sealed = []
        for group, (count, last) in marks.items():
            mark = dict(zip(seal.MARK_COLUMNS, (*group, count, last), strict=True))
            sealed.append((*mark.values(), seal.row_mac(mac, "marks", mark)))
        conn.executemany("INSERT INTO marks VALUES (?, ?, ?, ?, ?, ?, ?)", sealed)
        j._seal_run(run)
        j._seal_head(seq, prev)
    j.close()
    return run


def resume_decision(directory: Path, events: int) -> tuple[float, float, float]:
    """Fill a sealed journal with *events* events, then time what `upgrade resume` does before any step:
    open, the seal check (``Journal.authenticate``) and replay (where every machine stands:
    ``Runner.view``), the replay alone, and the whole seal's walk (what `journal verify` checks)."""
    key = Key.from_bytes(os.urandom(32))
    run = _fill(directory, events, key)
    decided, replayed = [], []
    for _ in range(TRIALS):  # the median of a few: one reading on a shared machine says little
        t0 = time.perf_counter()
        j = Journal(directory, Redactor(), create=False)
        verdict = j.authenticate(key)  # what resume and revert check first ...
        t1 = time.perf_counter()
        view = replay_rows(j.step_rows(run))  # ... and read (Runner.view)
        t2 = time.perf_counter()
        decided.append(t2 - t0)
        replayed.append(t2 - t1)
        assert verdict.fault is None and verdict.events == events, verdict
        assert len(view.machines) == 50 and all(len(m.committed) == len(STEPS) for m in view.machines.values())
        j.close()
    t0 = time.perf_counter()
    j = Journal(directory, Redactor(), create=False, key=key)
    verdict = j.verify()
    walk = time.perf_counter() - t0
    assert verdict.fault is None and verdict.events == events and verdict.authenticated, verdict
    j.close()
    return statistics.median(decided), statistics.median(replayed), walk


def run(pairs: int = 500, events: int = 100_000, most: int = 1_000_000) -> str:
    with tempfile.TemporaryDirectory(prefix="osu-bench-") as tmp:
        lat = durable_pairs(Path(tmp) / "lat", pairs)
        decided, replayed, walk = resume_decision(Path(tmp) / "big", events)
        decided_most, replayed_most, walk_most = resume_decision(Path(tmp) / "most", most) if most else (0, 0, 0)
    per_event = [x / 2 for x in lat]
    rows = [
        ("durable event (intent or done), p50", f"{_pct(per_event, 50) * 1000:.2f} ms", "<= 5 ms"),
        ("durable event, p99", f"{_pct(per_event, 99) * 1000:.2f} ms", ""),
        ("intent+done pair, p50 / p99", f"{_pct(lat, 50) * 1000:.2f} / {_pct(lat, 99) * 1000:.2f} ms", ""),
        ("intent+done pair, mean", f"{statistics.mean(lat) * 1000:.2f} ms", ""),
        (f"resume decision at {events:,} events (open + seal check + replay), median of {TRIALS}",
         f"{decided * 1000:.0f} ms", "<= 200 ms"),
        ("  of which the replay (through the marks)", f"{replayed * 1000:.0f} ms", ""),
        (f"`journal verify` at {events:,} events (the whole chain + every MAC)", f"{walk * 1000:.0f} ms", ""),
    ]
    if most:
        rows += [(f"resume decision at {most:,} events (open + seal check + replay), median of {TRIALS}",
                  f"{decided_most * 1000:.0f} ms", "<= 1000 ms"),
                 ("  of which the replay (through the marks)", f"{replayed_most * 1000:.0f} ms", ""),
                 (f"`journal verify` at {most:,} events (the whole chain + every MAC)", f"{walk_most * 1000:.0f} ms",
                  "")]
    out = ["## Journal: durable events and resume start-up", "",
           f"{pairs} intent+done pairs on this machine's disk (WAL, synchronous=FULL, fsync per commit); "
           f"a synthetic journal of {events:,} events for the resume decision"
           + (f", then one of {most:,}" if most else "") + " (chained, sealed and marked as `Journal.append` writes "
           "them; 50 machines of 10 steps, each step's intent and done written again and again).", "",
           *tables.markdown(("measure", "result", "target"), rows), "",
           "The resume decision includes the seal check `upgrade resume` and `revert` run before any work "
           "(`Journal.authenticate`): every run's, artifact's and mark's MAC (a mark: per run, machine, step and "
           "kind, its number of events and the seq of the last, journal format 3), the marks' counts summing to "
           "the events the head seals, `COUNT`/`MIN`/`MAX` of the events' seq against the head, the last event and "
           "the head's MAC, then every event a decision reads (the last of each mark, every note) against its "
           "hash, MAC and mark. Then the replay reads the same rows through the marks (each checked once per "
           "process) and decodes only each step's last `done`: both grow with the number of steps, not of "
           "events. `journal verify` still walks the whole chain and every MAC (and checks the marks against the "
           "events walked)."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=500)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--most", type=int, default=1_000_000, help="the larger journal (0: none)")
    a = ap.parse_args()
    print(run(a.pairs, a.events, a.most))
