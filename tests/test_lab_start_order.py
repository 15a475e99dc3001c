"""The lab starts a controller's units as the tool does: brokers first, then the services side by side, each
service's units one after the other in their order (``scripts.lab.units.start_all``).

All at once, cinder-scheduler could come up before cinder-volume consumed its RPC: the scheduler asks the
volume services for their capabilities once, at its start, so the volume stayed unknown to it until its periodic
report and a volume made meanwhile failed with "No valid backend was found" (seen in a Grenade lab build). The
start callback here records when each start began and ended (real threads, no clock: events). And a unit the lab
launches names itself in its pid file before it becomes the unit (a real process)."""

from __future__ import annotations

import subprocess
import sys
import threading
from itertools import pairwise
from pathlib import Path

import pytest

from scripts.lab import proc, units
from scripts.lab.proc import LabError
from tests.test_multihost import wait_for

#: start order, as the labs pass it (each service's units in the reverse of their stop order)
NAMES = ["rabbitmq-cinder", "rabbitmq-nova", "cinder-volume", "cinder-scheduler", "cinder-api", "nova-scheduler",
         "nova-conductor", "nova-api", "placement-api"]


def test_brokers_first_then_services_side_by_side_each_in_its_order(tmp_path: Path) -> None:
    lock = threading.Lock()
    log: list[tuple[str, str]] = []
    nova_began = threading.Event()

    def start(root: Path, unit: str) -> None:
        assert root == tmp_path
        with lock:
            log.append(("begin", unit))
        if unit == "nova-scheduler":
            nova_began.set()
        if unit == "cinder-volume":
            # another service starts while cinder's first unit is still starting: side by side (a bound for the
            # failure case only: one after the other, nova's start never begins meanwhile)
            assert nova_began.wait(60), "nova's units did not start beside cinder's"
        with lock:
            log.append(("end", unit))

    units.start_all(tmp_path, NAMES, start)

    assert sorted(u for k, u in log if k == "end") == sorted(NAMES)  # each unit started once
    pos = {(k, u): i for i, (k, u) in enumerate(log)}
    brokers_done = max(pos[("end", b)] for b in NAMES[:2])
    assert all(pos[("begin", u)] > brokers_done for u in NAMES[2:])
    for chain in (NAMES[2:5], NAMES[5:8]):  # within a service: each unit after the one before it is up
        for before, after in pairwise(chain):
            assert pos[("begin", after)] > pos[("end", before)], (before, after, log)
    assert pos[("begin", "nova-scheduler")] < pos[("end", "cinder-volume")]


def test_a_failed_start_is_raised_after_the_others_ended(tmp_path: Path) -> None:
    ended: list[str] = []

    def start(root: Path, unit: str) -> None:
        if unit == "cinder-scheduler":
            raise LabError("cinder-scheduler did not start")
        ended.append(unit)

    with pytest.raises(LabError, match="cinder-scheduler did not start"):
        units.start_all(tmp_path, NAMES, start)
    # cinder's chain stops at its failed unit; every other service started whole
    assert "cinder-api" not in ended and set(NAMES) - {"cinder-scheduler", "cinder-api"} == set(ended)


def test_a_launched_unit_writes_its_own_pid_file_before_it_becomes_the_unit(tmp_path: Path) -> None:
    """``proc.own_pid_argv`` (what ``proc.spawn`` runs): the child names itself in the pid file, so a launcher
    killed right after starting it (it dies with the tool) leaves no unit that no pid file names; the parent's own
    ``write_pid`` is not needed for that."""
    pid_file = tmp_path / "run" / "unit-lab-x.pid"
    pid_file.parent.mkdir()
    child = subprocess.Popen(proc.own_pid_argv(pid_file, [sys.executable, str(units.STANDIN), "lab-x"]),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        wait_for("the unit to name itself in its pid file and run as the unit",
                 lambda: proc.read_pid(pid_file) == child.pid and proc.pid_alive(child.pid, ("standin.py lab-x",)))
        assert child.poll() is None and sorted(p.name for p in pid_file.parent.iterdir()) == [pid_file.name]
    finally:
        proc.terminate(child.pid, 10)
    assert child.wait(10) == 0  # the stand-in itself ended on SIGTERM (it was exec'd, not a shell's child)


def test_a_process_in_the_middle_of_its_exec_is_seen_as_itself() -> None:
    """``Popen`` returns while the child's exec is still completing, and ``/proc/PID/cmdline`` then reads
    empty for an instant (one launch in 25 read at once on this machine; through ``pid_alive``'s own reads
    about one in a thousand, hence 5000 launches, ~2 s). Read as "not ours", a unit stopped right after its
    start was left running, named by no pid file (400 starts and stops of a stand-in left one to seven
    running). ``proc.pid_alive`` reads an empty command line again until the exec shows it."""
    for _ in range(5000):
        child = subprocess.Popen(["/bin/sleep", "600"], stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            assert proc.pid_alive(child.pid, ("sleep 600",))
        finally:
            child.kill()
            child.wait()
