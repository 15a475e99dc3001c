"""`make demo` and `python -m scripts.lab up` as a newcomer meets them: real commands, real lab, nothing left running.

The demo runs end to end on the lab with every service real (keystone, glance, placement, nova, neutron
and cinder serving, a compute host; 2025.2 -> 2026.1: ten minutes or so), and its output is read as a
newcomer reads it: one row per service, the schemas that move in this jump moved, every image downloaded
with its md5, the workload (a server with a volume attached, a volume and its snapshot, a network) the
same through the new controller's APIs and again through the old one's after the revert, a new server
booted on the upgraded cloud, the plain revert refused after that new work, the revert's checks, no
password anywhere.

Both tests run the commands as subprocesses from the repository, exactly as the Makefile and the
printed instructions do, and then look for leftovers the only way that does not trust the lab's
own bookkeeping alone: its pid files, and every process whose command line or working directory
lies inside the lab directory.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.lab import fullstack, grenade, ksapi, novaserve
from scripts.lab.controller import DEFAULT_VENV_ROOT, alembic_heads
from scripts.lab.mariadb import MariaDB
from scripts.lab.proc import pid_alive, read_pid
from tests.conftest import NEW, OLD, REPO, require, require_mariadb
from tests.test_lab import HEADS

HEAD_2026_1 = "742c857f1dfb"
TOOLS = {"keystone": "keystone-manage", "glance": "glance-api", "placement": "placement-manage",
         "nova": "nova-manage", "neutron": "neutron-db-manage", "cinder": "cinder-manage"}


def _require_lab_parts(services: tuple[str, ...] = fullstack.ALL, real: bool = False) -> None:
    require_mariadb()
    for rel in (OLD, NEW):
        for tool in [TOOLS[s] for s in services] + (["nova-compute", "openstack"] if real else []):
            require((DEFAULT_VENV_ROOT / rel / "bin" / tool).exists(),
                    f"{tool} {rel} missing from the venvs (make openstack builds them)")
    if real:
        require(Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists(),
                "rabbitmq-server not installed (scripts/setup-system installs it)")


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


def _service_rows(out: str) -> dict[str, list[str]]:
    """The first line of each service's row in the demo's after-the-run table, split into its cells
    (service, schema before -> after, API/status check, downtime, result)."""
    after = out[out.index("=== 4."):out.index("=== 5.")]
    rows = {}
    for line in after.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] in fullstack.ALL:
            rows[cells[0]] = cells
    return rows


def _secrets(lab: Path) -> list[str]:
    """Every password and token of the lab (its state file stays after the demo)."""
    state = json.loads((lab / "lab-state.json").read_text())
    seed = state["seed"]
    served = [v for k, v in state.get("nova", {}).items() if k.endswith("password")]
    served += [v["password"] for v in state.get("netvol", {}).values()]
    return [state["admin_password"], state["glance_password"], *state["db_admin_passwords"].values(),
            seed["admin_password"], seed["demo_password"], seed["admin_token"], *served]


def _between(out: str, start: str, end: str) -> str:
    return out[out.index(start):out.index(end, out.index(start))]


def _workload_rows(part: str) -> dict[str, list[str]]:
    """The workload table's rows of one part of the output (resource -> its cells)."""
    rows = {}
    for line in part.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 5 and cells[-1] in ("OK", "FAILED"):
            rows[cells[0]] = cells
    return rows


@pytest.mark.heavy  # ~10 worker-minutes; test_grenade checks the same workload on the same real lab
def test_demo_upgrades_checks_reverts_and_stops(tmp_path: Path) -> None:
    _require_lab_parts(real=True)
    lab = tmp_path / "lab"
    res = subprocess.run([sys.executable, "-m", "scripts.demo", "--dir", str(lab)], cwd=REPO, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=3600)
    out = res.stdout
    try:
        assert res.returncode == 0, out[-8000:]
        assert "It takes 10 to 15 minutes" in out and str(lab / "journal" / "upgrade.log") in out
        assert re.search(r"^\[\d+/\d+\] cinder\.verify  done", out, re.M)  # the tool's plain progress, not captured
        rows = _service_rows(out)
        assert sorted(rows) == sorted(fullstack.ALL), rows
        assert all(cells[-1] == "OK" and cells[-2].endswith(" s") for cells in rows.values()), rows
        for moved in ("keystone", "neutron"):  # real DDL in this jump
            before, after = rows[moved][1].split(" -> ")
            assert before != after, rows[moved]
        assert HEAD_2026_1 in rows["keystone"][1]
        assert out.count(": md5 same") == len(fullstack.IMAGES) and "md5 DIFFERENT" not in out
        # the placement API is served: nova's status check passes (no failure accepted by the plan)
        assert re.search(r"nova-status [01]\b", _between(out, "=== 4.", "=== 5.")) and "accepted" not in out
        # the workload: made before, the same through the new controller's APIs, new work served on it
        made = _between(out, "=== 2.", "=== 3.")
        assert f"the workload of project {grenade.PROJECT}" in made and "grenade-server" in made
        assert re.search(rf"^server\s+grenade-server \w+\s+ACTIVE on {novaserve.COMPUTE_HOST}", made, re.M)
        resources = ("server", "volume attached to the server", "volume", "snapshot of it", "network", "subnet",
                     "router", "port", "security group", "nova-compute")
        for part in (_between(out, "the workload through the new", "new work on the"),
                     _between(out, "the workload through the old", "REVERT OK")):
            rows = _workload_rows(part)
            assert sorted(rows) == sorted(resources), part
            assert all(cells[-1] == "OK" for cells in rows.values()), rows
            assert rows["server"][2] == rows["server"][3] and rows["server"][3].startswith(
                f"ACTIVE on {novaserve.COMPUTE_HOST}")
            assert rows["volume attached to the server"][3].startswith("in-use, on server ")
            assert rows["nova-compute"][3].startswith("up, heartbeat ")
        work = _between(out, "new work on the upgraded cloud", "UPGRADE OK")
        assert re.search(rf"^a new server booted\s+\w+\s+ACTIVE on {novaserve.COMPUTE_HOST}, then deleted", work, re.M)
        assert "a new volume attached to the server" in work and "a new network" in work
        # the new work wrote to the new databases: the plain revert refused, naming them, before the explicit one
        revert = out[out.index("=== 6."):]
        assert "cinder.volumes" in revert[:revert.index("--discard-new-writes\n")], revert[:3000]
        assert "UPGRADE OK" in out and "REVERT OK" in out and "DEMO OK" in out
        assert "FAILED" not in out
        assert not [s for s in _secrets(lab) if s in out]
        export = lab / "journal-export.jsonl"
        assert export.exists()
        assert export.stat().st_mode & 0o777 & ~0o640 == 0, oct(export.stat().st_mode)
        events = [json.loads(line) for line in export.read_text().splitlines()]
        kinds = {(e["step"], e["kind"]) for e in events}
        for service in fullstack.ALL:
            assert (f"{service}.verify", "done") in kinds and (f"{service}.stop_source", "undone") in kinds
        assert ("cloud.verify", "done") in kinds  # the run waited until the cloud reported to the new controller
        report = lab / "report.html"      # the run's report, written and named
        assert report.exists() and f"the report of the run (upgrade and revert, one page, opens offline): {report}" \
            in out
        page = report.read_text()
        assert "journal verified" in page and "cinder.verify" in page and 'data-undo="true"' in page
        assert not [s for s in _secrets(lab) if s in page]
        _assert_nothing_left(lab)
    finally:
        if (lab / "lab-state.json").exists() and _processes_inside(lab):
            _lab_cli("down", str(lab))  # a failed assertion must not leave servers behind


def _up(lab: Path, *args: str) -> dict[str, Any]:
    res = _lab_cli("up", str(lab), *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_lab_up_writes_a_plan_that_upgrade_runs_and_down_stops_all(tmp_path: Path) -> None:
    """`python -m scripts.lab up` and `down` through their command line (the quick lab: the full one's `up`
    and `down` are the same code, run by the demo and tests/test_real_openstack.py)."""
    _require_lab_parts(("keystone",))
    lab = tmp_path / "lab"
    try:
        summary = _up(lab, "--services", "keystone")  # the quick lab: the plan and `down` are the same
        assert summary["services"] == ["keystone"] and summary["glance_url"] is None
        # what `up` stood up: the old side serving, the new one installed at its release's heads, two servers
        assert summary["old"]["keystone_running"] and not summary["new"]["keystone_running"]
        assert summary["old"]["db_port"] != summary["new"]["db_port"]
        assert alembic_heads(MariaDB(lab / "db-new", summary["new"]["db_port"])) == HEADS[NEW]
        assert ksapi.issue_token(summary["keystone_url"], "admin", summary["admin_password"],
                                 project="admin").status == 201  # the old controller, before the run
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
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", summary["keystone_port"])) != 0  # nobody serves keystone's port
    status = json.loads(_lab_cli("status", str(lab)).stdout)
    assert not any(v for side in ("old", "new") for v in status[side].values()), status
    assert plan.exists() and (lab / "journal" / "upgrade.log").exists()  # down keeps the files
    assert (lab / "old" / "etc" / "keystone" / "keystone.conf").exists()
