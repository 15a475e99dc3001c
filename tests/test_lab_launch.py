"""The lab's unit start (``scripts.lab.proc.launch``), as systemd's ``Restart=on-failure`` starts a unit: a
daemon that dies once at start-up is started again and the start succeeds; one that dies every time fails,
naming its exit code and showing its own log's tail. Real processes, real files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from scripts.lab import proc
from scripts.lab.proc import LabError, pid_alive, read_pid, terminate

#: a daemon that fails its first *n* starts (counted in a file), writing a traceback to its own log as
#: oslo.log does, then runs and says it is ready by a file
DAEMON = """
import pathlib, sys, time
state, n = pathlib.Path(sys.argv[1]), int(sys.argv[2])
count = int(state.read_text()) if state.exists() else 0
state.write_text(str(count + 1))
if count < n:
    pathlib.Path(sys.argv[3]).write_text("ERROR cinder.cmd.volume Volume service failed to start: deadlock\\n")
    sys.exit(1)
pathlib.Path(sys.argv[4]).write_text("ready")
while True:
    time.sleep(1)
"""


def _start(tmp_path: Path, failures: int) -> tuple[int, Path]:
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON)
    out, own, ready = tmp_path / "unit.out", tmp_path / "unit.log", tmp_path / "ready"
    argv = [sys.executable, str(script), str(tmp_path / "starts"), str(failures), str(own), str(ready)]
    pid = proc.launch("lab-unit", argv, tmp_path / "unit.pid", out, ready.exists, mark=b"--- lab test start ",
                      timeout=60.0, stop_timeout=5.0, poll=0.05, own_logs=(own,))
    return pid, out


def test_a_unit_that_dies_once_at_start_is_started_again(tmp_path: Path) -> None:
    pid, out = _start(tmp_path, failures=1)
    try:
        assert read_pid(tmp_path / "unit.pid") == pid and pid_alive(pid, ("daemon.py",))
        assert (tmp_path / "starts").read_text() == "2"
        text = out.read_text()
        assert "lab-unit exited with rc 1 during start 1; started again (Restart=on-failure)" in text
        assert text.count("--- lab test start ") == 2 and "(start 2) ---" in text
    finally:
        terminate(pid, 5.0)


def test_a_unit_that_dies_at_every_start_fails_with_its_own_log(tmp_path: Path) -> None:
    with pytest.raises(LabError) as err:
        _start(tmp_path, failures=proc.START_ATTEMPTS)
    assert f"lab-unit exited with rc 1 during start {proc.START_ATTEMPTS}" in str(err.value)
    assert "Volume service failed to start: deadlock" in str(err.value)  # the daemon's own log, not only stdout
    assert (tmp_path / "starts").read_text() == str(proc.START_ATTEMPTS)
    assert not (tmp_path / "unit.pid").exists() and not os.path.exists(tmp_path / "ready")
