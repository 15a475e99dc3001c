"""`make bench`: run every benchmark and write BENCHMARKS.md (numbers are measured, never asserted)."""

from __future__ import annotations

import argparse
import importlib
import platform
import re
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ("scripts.bench.journal", "scripts.bench.vault", "scripts.bench.keys", "scripts.bench.compress",
            "scripts.bench.computes", "scripts.bench.window")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def splice(document: str, section: str) -> str:
    """``document`` with the section of the same ``## `` heading replaced by ``section`` (appended
    if it has none): ``--only`` re-measures one section and keeps every other one's numbers."""
    title = section.split("\n", 1)[0].strip()
    parts = re.split(r"(?m)^(?=## )", document)
    for i, part in enumerate(parts[1:], 1):
        if part.split("\n", 1)[0].strip() == title:
            parts[i] = section.rstrip("\n") + "\n\n"
            return "".join(parts).rstrip("\n") + "\n"
    return document.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", help="run one section (journal, vault, computes, window) and update it in place "
                    "in --out, keeping the other sections as they are")
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--splice", type=Path, metavar="FILE", help="measure nothing: put the section printed earlier "
                    "by a section's own module (e.g. python -m scripts.bench.window > FILE) into --out in place")
    a = ap.parse_args()
    if a.splice:
        a.out.write_text(splice(a.out.read_text(), a.splice.read_text()))
        print(f"wrote {a.out}")
        return 0
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
    if a.only and a.out.exists():
        document = a.out.read_text()
        for section in parts[5:]:
            document = splice(document, section)
        a.out.write_text(document)
    else:
        a.out.write_text("\n".join(parts))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
