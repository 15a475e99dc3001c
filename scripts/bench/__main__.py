"""`make bench`: run every benchmark and write BENCHMARKS.md (numbers are measured, never asserted)."""

from __future__ import annotations

import argparse
import importlib
import platform
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ("scripts.bench.journal", "scripts.bench.vault", "scripts.bench.computes")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", help="run one section (journal, vault, computes)")
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    a = ap.parse_args()
    parts = ["# Benchmarks", "", f"Measured by `make bench` on {time.strftime('%Y-%m-%d')}: {machine()}.",
             "Numbers are measurements of one run on that machine, not guarantees; tests never assert timings.", ""]
    for name in SECTIONS:
        if a.only and not name.endswith(a.only):
            continue
        t0 = time.monotonic()
        mod = importlib.import_module(name)
        section = mod.run()
        parts.append(section)
        print(section, flush=True)
        print(f"({name} took {time.monotonic() - t0:.0f} s)", flush=True)
    a.out.write_text("\n".join(parts))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
