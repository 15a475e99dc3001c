"""The benchmark's CPU clock reads real work: a child that burns a known amount of CPU is seen burning it,
and the whole machine at least as much (``scripts/bench/cpuclock.py``)."""

from __future__ import annotations

import subprocess
import sys
import time

from scripts.bench import cpuclock

#: the child waits for a line, then spins until its own CPU time reaches SPIN seconds, says so, and waits again
CHILD = """
import os, sys
sys.stdin.readline()
while sum(os.times()[:2]) < {spin}:
    pass
print("done", flush=True)
sys.stdin.readline()
"""
SPIN = 0.5


def test_a_child_burning_cpu_is_counted() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(spin=SPIN)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        with cpuclock.CpuClock([child.pid]) as clock:
            start = time.time()
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline() == "done\n"
            end = time.time()
            seen = cpuclock.process_cpu(child.pid)
        burned = clock.process(child.pid, start, end)
        machine = clock.machine(start, end)
    finally:
        child.stdin.close()
        child.wait()
    assert seen is not None and seen >= SPIN
    # the samples straddle the window's ends (every 0.1 s): what lies between them is interpolated
    assert burned is not None and SPIN * 0.6 <= burned <= seen + 0.05, (burned, seen)
    assert machine >= burned * 0.9, (machine, burned)
    assert cpuclock.process_cpu(child.pid) is None  # reaped: gone from /proc


def test_a_process_gone_midway_has_no_reading() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
    with cpuclock.CpuClock([child.pid]) as clock:
        start = time.time()
        child.stdin.close()
        child.wait()
        reaped = len(clock.times)
        while len(clock.times) <= reaped:  # a sample taken after the exit
            clock._stop.wait(0.01)
        end = time.time()
    assert clock.process(child.pid, start, end) is None
    assert clock.machine(start, end) >= 0
