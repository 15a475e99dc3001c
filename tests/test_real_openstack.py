"""Real OpenStack, upgraded for real and checked through its APIs (the full lab of ``python -m
scripts.lab up``): keystone and glance serving behind the management address, placement, nova,
neutron and cinder with their real schema and rows, both controllers of real releases.

Two jumps: 2025.2 -> 2026.1 (real keystone and neutron DDL), killed by an outside SIGKILL during
keystone's ``db_sync`` and at a fail point inside glance's image pre-copy, resumed, verified, then
reverted; and the SLURP jump 2025.1 -> 2026.1, run and reverted. (Nova's real DDL comes from
2024.1 -> 2025.1: tests/test_services_upgrade.py::test_nova_slurp_runs_its_real_migrations.)

Verification is what an operator does: a token with the old admin password, the old admin token
still valid, the same projects, users, role assignments and endpoints, the credential decrypted,
every image downloaded with its checksum; the schema at the target release's heads, the cells
on the new DB server, the ``*-status`` checks 0 or 1. After ``revert``: the old controller serves
the same, and not one table of its databases changed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scripts.lab import __main__ as lab_cli
from scripts.lab import fullstack, verify
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.mariadb import MariaDB
from scripts.lab.proc import LabError
from tests.conftest import REPO, require, upgrade

TOOLS = {"keystone": "keystone-manage", "glance": "glance-api", "placement": "placement-manage",
         "nova": "nova-manage", "neutron": "neutron-db-manage", "cinder": "cinder-manage"}


class Lab:
    """A built full lab: its state, the API and DB views of each side."""

    def __init__(self, directory: Path, summary: dict[str, Any]) -> None:
        self.dir = directory
        self.summary = summary
        self.state = json.loads((directory / lab_cli.STATE).read_text())
        self.services = tuple(self.state["services"])
        self.plan = Path(summary["plan"])
        self.journal = Path(summary["journal"])

    def db(self, side: str) -> MariaDB:
        return MariaDB(Path(self.state[side]["db_base"]), self.state[side]["db_port"])

    def api(self) -> dict[str, Any]:
        """Through the management address: whichever controller serves it now."""
        return verify.api_view(self.state["seed"], self.summary["keystone_url"], self.summary["glance_url"])

    def checksums(self, side: str) -> dict[str, Any]:
        return verify.checksums(self.db(side), self.services)

    def baseline(self) -> Baseline:
        """Before the run: what the old controller serves, both sides' schema revisions and tables."""
        old = verify.db_view(self.db("old"), self.services)
        return Baseline(self.api(), old["revisions"], old["counts"],
                        verify.db_view(self.db("new"), self.services)["revisions"],
                        self.checksums("old"), self.checksums("new"))


@dataclass(frozen=True)
class Baseline:
    api: dict[str, Any]
    old_revisions: dict[str, Any]
    #: the seeded rows of nova, neutron and cinder (instances, volumes, networks, ...) on the old side
    old_counts: dict[str, int]
    #: the target release's own heads: what a freshly installed new controller has
    target_revisions: dict[str, Any]
    old_sums: dict[str, Any]
    new_sums: dict[str, Any]


@pytest.fixture
def full_lab(tmp_path: Path, request: pytest.FixtureRequest):
    old, new = request.param
    for release in (old, new):
        for service, tool in TOOLS.items():
            require((DEFAULT_VENV_ROOT / release / "bin" / tool).exists(),
                    f"{service} {release} missing (make openstack builds the venvs)")
    directory = tmp_path / "lab"
    try:
        summary = lab_cli.up(directory, old, new, DEFAULT_VENV_ROOT, fullstack.ALL)
    except LabError as exc:
        require(False, f"the full lab did not come up: {exc}")
    try:
        yield Lab(directory, summary)
    finally:
        lab_cli.down(directory)


def _events(journal: Path) -> list[dict[str, Any]]:
    exp = upgrade("journal", "export", "--journal", str(journal), "--format", "jsonl")
    assert exp.returncode == 0, exp.stderr
    return [json.loads(line) for line in exp.stdout.splitlines()]


def _same_data(after: dict[str, Any], before: dict[str, Any]) -> None:
    """The API shows what it showed before: same identities, catalog, credential and image bytes."""
    assert after["admin_token_issue"] == 201, after
    assert after["old_token_validates"] == 200  # a token issued by the old controller
    assert after["demo_token_issue"] == 201
    for key in ("projects", "users", "role_assignments", "endpoints", "credential_blob", "images"):
        assert after[key] == before[key], key
    assert before["images"] and all(i["status"] == "active" and i["download"] == 200
                                    and i["download_md5"] == i["checksum"] for i in after["images"])


def _check_upgraded(lab: Lab, base: Baseline) -> None:
    before = base.api
    _same_data(lab.api(), before)
    seeded = {i["id"]: i["checksum"] for i in lab.state["seed"]["images"]}
    assert {i["id"]: i["download_md5"] for i in before["images"]} == seeded
    view = verify.db_view(lab.db("new"), lab.services)
    assert view["revisions"] == base.target_revisions  # every DB at the target release's own heads
    assert view["counts"] == base.old_counts and min(base.old_counts.values()) >= 2  # the seeded rows came over
    port = lab.state["new"]["db_port"]
    assert view["cell_mappings"] == {"cell0": f"127.0.0.1:{port}/nova_cell0", "cell1": f"127.0.0.1:{port}/nova"}
    events = _events(lab.journal)
    status = {e["step"].split(".")[0]: e["result"] for e in events
              if e["kind"] == "done" and e["step"].endswith(".status_check")}
    assert set(status) == set(lab.services)
    for service, result in status.items():
        if service == "nova":  # no placement API in the lab: its one check fails by design (lab-recipes §10.3)
            assert result["rc"] == 2 and result["failed_checks"] == result["accepted_failures"] == ["Placement API"]
        else:
            assert result["rc"] in (0, 1), (service, result)


def _check_reverted(lab: Lab, base: Baseline) -> None:
    _same_data(lab.api(), base.api)
    assert lab.checksums("old") == base.old_sums  # the old controller's data: not one table changed
    assert lab.checksums("new") == base.new_sums  # the new one: as installed, before the run


def _descendants(root: int) -> dict[int, list[bytes]]:
    """pid -> argv of every live process under ``root``."""
    parent: dict[int, int] = {}
    argv: dict[int, list[bytes]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):  # it exited meanwhile
            continue
        parent[int(entry)], argv[int(entry)] = ppid, cmdline
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in out:
                out[child] = argv[child]
                todo.append(child)
    return out


def _kill_during_db_sync(*args: str) -> list[bytes]:
    """Start ``upgrade ARGS``; SIGKILL it while keystone-manage db_sync (not --check) runs under it."""
    proc = subprocess.Popen([sys.executable, "-m", "upgrade.cli", *args, "--quiet"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for argv in _descendants(proc.pid).values():
                if any(a.endswith(b"keystone-manage") for a in argv) and b"db_sync" in argv \
                        and b"--check" not in argv:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(30)
                    return argv
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    raise AssertionError(f"keystone's db_sync never ran under the tool (rc {proc.returncode})")


@pytest.mark.parametrize("full_lab", [("2025.2", "2026.1")], indirect=True, ids=["2025.2-2026.1"])
def test_killed_in_db_sync_and_in_image_copy_resumes_verifies_and_reverts(full_lab: Lab) -> None:
    lab = full_lab
    base = lab.baseline()
    assert base.target_revisions["neutron"] != base.old_revisions["neutron"]  # real DDL in this jump

    # the images are copied while the old glance still serves, in the preparation before any stop
    # (nothing changes meanwhile in the lab, so the copy after glance's stop has nothing to stream and
    # its fail point is never reached): killed in the pre-copy
    res = upgrade("run", str(lab.plan), failpoint="glance.precopy_images:inside", timeout=900)
    assert res.returncode == -signal.SIGKILL, res.stdout + res.stderr
    events = _events(lab.journal)
    assert [e["kind"] for e in events if e["step"] == "glance.precopy_images"] == ["intent"]
    assert not any((e["step"] or "").endswith(".stop_source") for e in events)  # every old service still served

    argv = _kill_during_db_sync("resume", "--journal", str(lab.journal))
    assert b"--config-file" in argv
    events = _events(lab.journal)
    assert [e["kind"] for e in events if e["step"] == "keystone.upgrade_schema"] == ["intent"]
    assert sum(1 for e in events if e["step"] == "glance.precopy_images" and e["kind"] == "done") == 1

    res = upgrade("resume", "--journal", str(lab.journal), timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    _check_upgraded(lab, base)
    assert lab.checksums("old") == base.old_sums  # the old controller was only read
    events = _events(lab.journal)
    copied = next(e["result"] for e in events if e["step"] == "glance.copy_images" and e["kind"] == "done")
    assert copied["copied_files"] == 0  # nothing left to copy inside the window

    res = upgrade("revert", "--journal", str(lab.journal), timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    _check_reverted(lab, base)
    assert not any((Path(lab.state["new"]["root"]) / "var/lib/glance/images").iterdir())


@pytest.mark.parametrize("full_lab", [("2025.1", "2026.1")], indirect=True, ids=["2025.1-2026.1-slurp"])
def test_slurp_jump_upgrades_verifies_and_reverts(full_lab: Lab) -> None:
    lab = full_lab
    base = lab.baseline()
    moved = sorted(db for db in base.target_revisions if base.target_revisions[db] != base.old_revisions.get(db))
    assert moved, "the SLURP jump moves at least one schema"

    res = upgrade("run", str(lab.plan), timeout=1500)
    assert res.returncode == 0, res.stdout + res.stderr
    _check_upgraded(lab, base)

    res = upgrade("revert", "--journal", str(lab.journal), timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    _check_reverted(lab, base)
