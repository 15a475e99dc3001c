"""`make demo` and `python -m scripts.lab up` as a newcomer meets them: real commands, real lab, nothing left running.

Both tests run the commands as subprocesses from the repository, exactly as the Makefile and
the printed instructions do, and then look for leftovers the only way that does not trust the
lab's own bookkeeping alone: its pid files, and every process whose command line or working
directory lies inside the lab directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from scripts.lab import ksapi
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.proc import pid_alive, read_pid
from tests.conftest import NEW, OLD, REPO, require

HEAD_2026_1 = "742c857f1dfb"


def _require_lab_parts() -> None:
    for tool in ("mariadbd", "mariadb-install-db", "mariadb-dump", "mariadb"):
        require(shutil.which(tool) is not None, f"{tool} not installed (make setup installs MariaDB)")
    for rel in (OLD, NEW):
        require((DEFAULT_VENV_ROOT / rel / "bin" / "keystone-manage").exists(),
                f"keystone venv {rel} missing (make openstack builds it)")


def _live_pid_files(lab: Path) -> list[str]:
    """Pid files under the lab whose process still runs (zombies count as gone)."""
    return [f"{p}: {read_pid(p)}" for p in lab.rglob("*.pid") if pid_alive(read_pid(p))]


def _processes_inside(lab: Path) -> list[str]:
    """Live processes started for this lab: mariadbd names its my.cnf, keystone runs with cwd in its tree."""
    found: list[str] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid() or not pid_alive(int(proc.name)):
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:  # exited meanwhile, or not ours to read
            continue
        if str(lab) in cmdline or Path(cwd).is_relative_to(lab):
            found.append(f"pid {proc.name} (cwd {cwd}): {cmdline}")
    return found


def _assert_nothing_left(lab: Path) -> None:
    assert not _live_pid_files(lab), _live_pid_files(lab)
    assert not _processes_inside(lab), _processes_inside(lab)


def _lab_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.lab", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_demo_upgrades_checks_reverts_and_stops(tmp_path: Path) -> None:
    _require_lab_parts()
    lab = tmp_path / "lab"
    res = subprocess.run([sys.executable, "-m", "scripts.demo", "--dir", str(lab)], cwd=REPO, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    out = res.stdout
    try:
        assert res.returncode == 0, out[-6000:]
        assert "schema revision before -> after" in out and HEAD_2026_1 in out
        assert "UPGRADE OK" in out and "the revert restored the old controller" in out
        assert "DEMO OK" in out
        export = lab / "journal-export.jsonl"
        assert export.exists()
        assert export.stat().st_mode & 0o777 & ~0o640 == 0, oct(export.stat().st_mode)
        events = [json.loads(line) for line in export.read_text().splitlines()]
        kinds = {(e["step"], e["kind"]) for e in events}
        assert ("keystone.verify", "done") in kinds and ("keystone.stop_source", "undone") in kinds
        _assert_nothing_left(lab)
    finally:
        if (lab / "lab-state.json").exists() and _processes_inside(lab):
            _lab_cli("down", str(lab))  # a failed assertion must not leave servers behind


def _up(lab: Path) -> dict[str, Any]:
    res = _lab_cli("up", str(lab))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_lab_up_writes_a_plan_that_upgrade_runs_and_down_stops_all(tmp_path: Path) -> None:
    _require_lab_parts()
    lab = tmp_path / "lab"
    try:
        summary = _up(lab)
        plan = lab / "plan.toml"
        assert summary["plan"] == str(plan) and str(plan) in summary["run"]
        assert plan.stat().st_mode & 0o777 == 0o600  # the DB admin passwords are inline
        assert (lab / "dump.key").stat().st_mode & 0o777 == 0o600
        assert (lab / "lab-state.json").stat().st_mode & 0o777 == 0o600
        # the command the summary prints, run as printed
        run = subprocess.run(summary["run"], shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-6000:]
        status = subprocess.run([sys.executable, "-m", "upgrade.cli", "status", "--journal", summary["journal"],
                                 "-f", "json"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert json.loads(status.stdout)["status"] == "completed", status.stderr
        # the new controller now serves the old data with the old admin password
        token = ksapi.issue_token(summary["keystone_url"], "admin", summary["admin_password"], project="admin")
        assert token.status == 201
        assert json.loads(_lab_cli("status", str(lab)).stdout)["new"]["keystone"] is True
    finally:
        down = _lab_cli("down", str(lab)) if (lab / "lab-state.json").exists() else None
    assert down is not None and down.returncode == 0, down and down.stderr
    _assert_nothing_left(lab)
    assert plan.exists() and (lab / "journal" / "upgrade.log").exists()  # down keeps the files
