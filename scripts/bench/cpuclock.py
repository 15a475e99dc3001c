"""The CPU a maintenance window costs: the whole machine's busy time and given processes' own, sampled.

A window's wall seconds cannot fall below the CPU work done in it divided by the cores: on a machine whose
cores are all busy, running services side by side only shares them. ``time`` and ``wait4`` count only the
processes they reap, not the services a lab detaches or the database servers, so the window's work is read
where everything is counted: ``/proc/stat`` (every core's busy jiffies), sampled in a thread every
``EVERY`` seconds and interpolated to the window's own start and end (the journal's or the script's
timestamps). Processes named by pid (the database servers) are sampled from ``/proc/PID/stat`` the same
way. The sampler's own cost (a few reads every 0.1 s) is part of what it measures, well under 1 % of a core.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Iterable
from types import TracebackType

from scripts.lab.proc import stat_fields

EVERY = 0.1
TICK = os.sysconf("SC_CLK_TCK")


def machine_times() -> tuple[float, float]:
    """(busy, total) core-seconds of the machine since boot, from ``/proc/stat``: busy is user, nice, system,
    irq, softirq and steal; idle and I/O wait are not work (guest time is already inside user)."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:9]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return busy / TICK, (busy + v[3] + v[4]) / TICK


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system: ``proc(5)`` fields 14 and 15) of *pid*'s own threads, its children not
    counted; None once it is gone."""
    try:
        fields = stat_fields(pid)
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


class CpuClock:
    """Samples the machine's busy core-seconds (and *pids*' CPU) while it is entered."""

    def __init__(self, pids: Iterable[int] = (), every: float = EVERY) -> None:
        self.pids = tuple(pids)
        self.every = every
        self.times: list[float] = []
        self.busy: list[float] = []
        self.procs: dict[int, list[float | None]] = {p: [] for p in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, name="cpuclock", daemon=True)

    def _sample(self) -> None:
        now, busy = time.time(), machine_times()[0]
        for pid in self.pids:
            self.procs[pid].append(process_cpu(pid))
        self.busy.append(busy)
        self.times.append(now)

    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)

    def __enter__(self) -> CpuClock:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _at(self, series: list[float], t: float) -> float:
        """*series* interpolated at wall time *t* (clamped to the first and last samples)."""
        i = min(max(bisect.bisect_left(self.times, t), 1), len(self.times) - 1)
        t0, t1 = self.times[i - 1], self.times[i]
        v0, v1 = series[i - 1], series[i]
        if t <= t0:
            return v0
        if t >= t1:
            return v1
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def machine(self, start: float, end: float) -> float:
        """Core-seconds the whole machine was busy between two wall times."""
        return self._at(self.busy, end) - self._at(self.busy, start)

    def process(self, pid: int, start: float, end: float) -> float | None:
        """CPU seconds of *pid* between two wall times; None if it was not running the whole time."""
        series = self.procs.get(pid, [])
        if not series or any(v is None for v in series):
            return None
        return self._at(series, end) - self._at(series, start)  # type: ignore[arg-type]
