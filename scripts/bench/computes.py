"""Compute phase benchmark: restarting the agents of 1, 10 and 50 compute hosts over real SSH.

Target (issue #4): with a pool of P, N hosts take within 1.2x of the ideal ceil(N/P) x the time
of one host. Measured on the multi-host lab (``scripts/lab/hosts.py``, no controllers): each
compute host is a network namespace with its own sshd and the lab's ``nova-compute`` stand-in
under the lab supervisor; the tool's real runner, journal, SSH hosts (ControlMaster) and compute
machines (``restart`` then ``verify``) run inside the deploy host, as in a real run. Each
measurement is a fresh process, so it includes opening every SSH connection.

    python -m scripts.bench.computes            # the Markdown section (needs root)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.bench import cpuclock
from scripts.lab import hosts as hostlab
from scripts.lab.hostplan import CONTROL
from upgrade import tables

REPO = Path(__file__).resolve().parents[2]
CASES = ((1, 1), (1, 10), (10, 1), (10, 10), (50, 1), (50, 10))
UNITS = ("nova-compute",)


def measure(lab_dir: Path, n: int, pool: int) -> dict:
    """One compute phase, in this process (which must run inside the deploy host's namespace)."""
    from dataclasses import dataclass, field

    from journal.store import Journal
    from journal.vault import Key
    from services.fleet import compute
    from services.infra.settings import ServiceControl
    from statemachine.runner import ParallelGroup, Runner
    from upgrade.hosts import HostSpec, connect

    @dataclass
    class Ctx:
        results: dict = field(default_factory=dict)

    lab = hostlab.Lab.load(lab_dir)
    names = [f"compute{i}" for i in range(1, n + 1)]
    control = ServiceControl("template", tuple(CONTROL))
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "journal", key=Key.from_bytes(os.urandom(32)))
        run_id = journal.create_run({}, "bench", None, "2025.2", "2026.1", None)
        machines = [compute.machine(compute.ComputeSettings(h, UNITS, control),
                                    connect(HostSpec(f"ssh://root@{lab.hosts[h]}", alias=h,
                                                     ssh_config=str(lab.ssh_config)), f"compute:{h}"))
                    for h in names]
        runner = Runner(journal, run_id, machines, Ctx(),
                        groups=[ParallelGroup(frozenset(m.name for m in machines), pool)])
        t0 = time.perf_counter()
        runner.forward()
        took = time.perf_counter() - t0
        events = journal.events(run_id)
        journal.close()
    first = {m: min(e.ts for e in events if e.machine == m and e.kind == "intent") for m in {e.machine for e in events}}
    last = {m: max(e.ts for e in events if e.machine == m and e.kind == "done") for m in first}
    per_host = [last[m] - first[m] for m in first]
    import resource

    cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    return {"n": n, "pool": pool, "seconds": took, "per_host_median": statistics.median(per_host), "tool_cpu": cpu}


def _measure_in_deploy(lab: hostlab.Lab, n: int, pool: int) -> dict:
    busy0, total0 = cpuclock.machine_times()
    res = subprocess.run(lab.in_deploy([sys.executable, "-m", "scripts.bench.computes", "--measure", str(lab.dir),
                                        str(n), str(pool)]), cwd=REPO, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise RuntimeError(f"measurement {n} hosts / pool {pool} failed:\n{res.stderr[-3000:]}")
    busy1, total1 = cpuclock.machine_times()
    return {**json.loads(res.stdout.strip().splitlines()[-1]),
            "cpu_busy": (busy1 - busy0) / max(0.01, total1 - total0)}


def run() -> str:
    with tempfile.TemporaryDirectory(prefix="osu-bench-") as tmp:
        lab_dir = Path(tmp) / "lab"
        t0 = time.monotonic()
        hostlab.up(lab_dir, computes=max(n for n, _ in CASES), controllers=False)
        up_seconds = time.monotonic() - t0
        try:
            lab = hostlab.Lab.load(lab_dir)
            _measure_in_deploy(lab, 1, 1)  # warm caches (python bytecode on the hosts, page cache)
            singles = [_measure_in_deploy(lab, 1, 1)["seconds"] for _ in range(3)]
            single = statistics.median(singles)
            rows = [_measure_in_deploy(lab, n, pool) for n, pool in CASES]
        finally:
            hostlab.down(lab_dir)
    lines = ["## Compute phase (issue #4: multi-host lab, parallel compute restarts)", "",
             f"Lab: {max(n for n, _ in CASES)} compute hosts (network namespaces, one sshd each), up in "
             f"{up_seconds:.1f} s. Per host: `restart` ({', '.join(UNITS)}: status, stop, start through the lab "
             "supervisor over SSH) then `verify` (status until running), each step journaled. One host alone: "
             f"{single:.2f} s (median of 3, connection included). Ideal = ceil(N/pool) x one host; target: "
             "within 1.2x.", "",
             *tables.markdown(("hosts", "pool", "phase (s)", "ideal (s)", "ratio", "median per host (s)",
                               "CPU busy (all cores)", "tool CPU (s)"),
                              [(str(r["n"]), str(r["pool"]), f"{r['seconds']:.2f}", f"{ideal:.2f}",
                                f"{r['seconds'] / ideal:.2f}x", f"{r['per_host_median']:.2f}", f"{r['cpu_busy']:.0%}",
                                f"{r['tool_cpu']:.1f}")
                               for r, ideal in ((r, math.ceil(r["n"] / r["pool"]) * single) for r in rows)],
                              right=range(8))]
    lines += ["", f"Machine: {os.cpu_count()} cores, shared by every host of the lab and the tool; CPU busy is "
              "machine-wide during the phase (anything else running on the machine counts too). Every remote "
              "command is a short process on the host (the lab supervisor is a Python program, ~40 ms of CPU per "
              "call), so once the pool keeps the cores busy (CPU busy column) the hosts compete for CPU and each "
              "one takes longer than alone (median per host column): the ratio to the ideal then measures the "
              "machine, not the runner, whose overhead is the pool-1 rows. Tool CPU is what the tool's process "
              "and its ssh clients used (python start-up included; the backgrounded ssh masters' handshakes are not "
              "counted); on real compute hosts, each with "
              "its own CPUs, only that part is shared.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--measure", nargs=3, metavar=("LAB", "N", "POOL"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.measure:
        print(json.dumps(measure(Path(a.measure[0]), int(a.measure[1]), int(a.measure[2]))))
        return 0
    print(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
