"""Grenade on the local lab: resources made before the upgrade through the real client, as a non-admin
user of its own project, are there after ``upgrade run`` through the NEW controller's APIs (same ids
and states, the server ACTIVE on the same compute host, that host's nova-compute reporting ``up``
with a heartbeat newer than the run's end), the upgraded cloud boots and deletes a second server,
and after ``upgrade revert`` the OLD controller shows the same again.

The lab (``python -m scripts.lab up --real nova,neutron``): placement-api, nova-api, nova-conductor,
nova-scheduler and nova's RabbitMQ of 2025.2 serving on the old controller, 2026.1 installed and
stopped on the new one, nova-compute (fake driver) of 2025.2 on the compute host beside them. Built
once for the module.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scripts.lab import __main__ as lab_cli
from scripts.lab import fullstack, grenade, novaserve, units
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.proc import LabError
from tests.conftest import NEW, OLD, require, require_mariadb, upgrade

#: stands up real services and runs a whole upgrade (declared here, so conftest's tables need no entry)
pytestmark = [pytest.mark.lab, pytest.mark.slow]

#: what the lab serves for real beyond keystone and glance: nova's API shows a server's security groups
#: through neutron's, so neutron serves too
REAL = ("nova", "neutron")
TOOLS = ("keystone-manage", "glance-api", "placement-manage", "nova-manage", "nova-compute", "neutron-db-manage",
         "cinder-manage", "openstack")


class NovaLab:
    def __init__(self, directory: Path, summary: dict[str, Any]) -> None:
        self.dir = directory
        self.summary = summary
        self.state = json.loads((directory / lab_cli.STATE).read_text())
        self.plan = Path(summary["plan"])
        self.journal = Path(summary["journal"])

    def root(self, side: str) -> Path:
        return Path(self.state[side]["root"])

    def serving(self, side: str) -> dict[str, bool]:
        return {u: units.status(self.root(side), u) for u in novaserve.UNITS}

    def compute_pid(self) -> int | None:
        return novaserve.compute_pid(Path(self.state["compute"]["root"]))


@pytest.fixture(scope="module")
def nova_lab(tmp_path_factory: pytest.TempPathFactory):
    require_mariadb()
    for release in (OLD, NEW):
        for tool in TOOLS:
            require((DEFAULT_VENV_ROOT / release / "bin" / tool).exists(),
                    f"{tool} {release} missing (scripts/build-venv {release} installs it)")
    require(Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists(),
            "rabbitmq-server not installed (scripts/setup-system installs it)")
    directory = tmp_path_factory.mktemp("grenade") / "lab"
    try:
        summary = lab_cli.up(directory, OLD, NEW, DEFAULT_VENV_ROOT, fullstack.ALL, real=REAL)
    except LabError as exc:
        require(False, f"the lab with real nova did not come up: {exc}")
    try:
        yield NovaLab(directory, summary)
    finally:
        lab_cli.down(directory)


def test_compute_resources_survive_upgrade_and_revert(nova_lab: NovaLab) -> None:
    lab = nova_lab
    on, off = dict.fromkeys(novaserve.UNITS, True), dict.fromkeys(novaserve.UNITS, False)
    assert lab.serving("old") == on and lab.serving("new") == off
    compute = lab.compute_pid()
    assert compute

    # before: the project's own user makes its resources through the catalog (the admin only the flavor)
    cloud = grenade.setup(lab.dir)
    assert (cloud.clouds.stat().st_mode & 0o777) == 0o600
    made = grenade.create(cloud)["compute"]
    server = made["server"]
    assert server["status"] == "ACTIVE" and server["host"] == novaserve.COMPUTE_HOST
    assert server["properties"] == {"grenade": "before", "survives": "upgrade"}
    with pytest.raises(LabError, match="403|Forbidden|not allowed|policy"):
        cloud.user("flavor", "create", "--ram", "64", "--disk", "1", "--vcpus", "1", "not-mine")  # no admin

    res = upgrade("run", str(lab.plan), timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    after_run = datetime.now(UTC)
    assert lab.serving("new") == on and lab.serving("old") == off
    assert lab.compute_pid() == compute  # the compute host is no controller's unit: never stopped

    # the NEW controller's APIs: the same resources, the compute reporting to it, new work served
    new = grenade.cloud(lab.dir, "new")
    seen = grenade.verify(new, after_run)["compute"]
    assert seen["server"] == server
    assert seen["service"]["state"] == "up" and seen["service"]["host"] == novaserve.COMPUTE_HOST
    work = grenade.new_work(new)["compute"]
    assert work["host"] == novaserve.COMPUTE_HOST and work["deleted"]

    exp = upgrade("journal", "export", "--journal", str(lab.journal), "--format", "jsonl")
    assert exp.returncode == 0, exp.stderr
    done = {e["step"]: e["result"] for e in map(json.loads, exp.stdout.splitlines()) if e["kind"] == "done"}
    assert done["nova.verify"]["url"] == lab.summary["compute_url"] and done["nova.verify"]["http_status"]
    assert done["placement.verify"]["url"] == lab.summary["placement_url"]
    assert done["nova.status_check"]["rc"] in (0, 1), done["nova.status_check"]  # the placement API answers
    # the broker first (it moves with nova), nova-metadata held back (neutron's metadata agent serves)
    assert done["nova.start_target"]["units"] == [novaserve.BROKER, "nova-scheduler", "nova-conductor", "nova-api"]

    # the server booted and deleted on the new controller is a tenant's write: revert keeps it in the vault
    rev = upgrade("revert", "--journal", str(lab.journal), "--discard-new-writes", timeout=1800)
    assert rev.returncode == 0, rev.stdout[-3000:] + rev.stderr[-3000:]
    after_revert = datetime.now(UTC)
    assert lab.serving("old") == on and lab.serving("new") == off
    assert lab.compute_pid() == compute
    old = grenade.cloud(lab.dir, "old")
    seen = grenade.verify(old, after_revert)["compute"]
    assert seen["server"] == server and seen["service"]["state"] == "up"
    # secrets: the service users', the broker's and the grenade user's passwords are in no output of the tool
    secrets = [v for k, v in lab.state["nova"].items() if k.endswith("password")]
    assert len(secrets) == 3
    seen_text = res.stdout + res.stderr + rev.stdout + rev.stderr + exp.stdout
    assert not [s for s in secrets if s in seen_text]
