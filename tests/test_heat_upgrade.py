"""Heat end to end: a stack made before the upgrade through the heat API, as a non-admin user of its
own project with the real client (python-openstackclient + heatclient), shown after ``upgrade run``
by the NEW controller's heat (same id, CREATE_COMPLETE, the same outputs, among them a random string
heat keeps encrypted with auth_encryption_key), and after ``upgrade revert`` by the OLD one again.

The lab (``python -m scripts.lab up --services keystone,heat``): keystone and heat-api, heat-api-cfn,
heat-engine of 2025.2 serving on the old controller with their own RabbitMQ, 2026.1 installed and
stopped on the new one. Built once for the module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts.lab import __main__ as lab_cli
from scripts.lab import heatlab, units
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.mariadb import MariaDB
from scripts.lab.proc import LabError
from tests.conftest import NEW, OLD, require, require_mariadb, upgrade

#: stands up real services and runs a whole upgrade (declared here, so conftest's tables need no entry)
pytestmark = [pytest.mark.lab, pytest.mark.slow]

SERVICES = ("keystone", "heat")
#: heat-engine reports itself in `service` while it runs (and cleans stale rows at start): not data
VOLATILE = {"service"}


class HeatLab:
    """The built lab: its state, the old and new release's clients, the demo user's clouds.yaml."""

    def __init__(self, directory: Path, summary: dict[str, Any]) -> None:
        self.dir = directory
        self.summary = summary
        self.state = json.loads((directory / lab_cli.STATE).read_text())
        self.plan = Path(summary["plan"])
        self.journal = Path(summary["journal"])
        seed = self.state["seed"]
        self.clouds = heatlab.write_clouds(directory / "clouds.yaml", summary["keystone_url"], seed["demo_user"],
                                           seed["demo_password"], seed["demo_project"])
        #: each release's client, kept running for the module
        self.clients = {side: heatlab.Client(DEFAULT_VENV_ROOT / self.state[side]["release"], self.clouds)
                        for side in ("old", "new")}

    def root(self, side: str) -> Path:
        return Path(self.state[side]["root"])

    def db(self, side: str) -> MariaDB:
        return MariaDB(Path(self.state[side]["db_base"]), self.state[side]["db_port"])

    def client(self, side: str, *args: str) -> Any:
        """The real client of *side*'s release, as the demo user, through the catalog."""
        return self.clients[side](*args)

    def heat_sums(self, side: str) -> dict[str, Any]:
        return {t: v for t, v in self.db(side).checksums("heat").items() if t not in VOLATILE}

    def serving(self, side: str) -> dict[str, bool]:
        return {u: units.status(self.root(side), u) for u in heatlab.UNITS}


@pytest.fixture(scope="module")
def heat_lab(tmp_path_factory: pytest.TempPathFactory):
    require_mariadb()
    for release in (OLD, NEW):
        for tool in ("keystone-manage", "heat-manage", "heat-engine", "openstack"):
            require((DEFAULT_VENV_ROOT / release / "bin" / tool).exists(),
                    f"{tool} {release} missing (scripts/build-venv {release} installs heat and the client)")
    require(Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists(),
            "rabbitmq-server not installed (scripts/setup-system installs it)")
    directory = tmp_path_factory.mktemp("heatlab") / "lab"
    try:
        summary = lab_cli.up(directory, OLD, NEW, DEFAULT_VENV_ROOT, SERVICES)
    except LabError as exc:
        require(False, f"the heat lab did not come up: {exc}")
    lab = None
    try:
        lab = HeatLab(directory, summary)
        yield lab
    finally:
        if lab is not None:
            for client in lab.clients.values():
                client.close()
        lab_cli.down(directory)


def test_stack_survives_upgrade_and_revert(heat_lab: HeatLab, tmp_path: Path) -> None:
    lab = heat_lab
    on = dict.fromkeys(heatlab.UNITS, True)
    off = dict.fromkeys(heatlab.UNITS, False)
    assert lab.serving("old") == on and lab.serving("new") == off

    # before: the demo user (member of its own project, not admin) makes a stack through the catalog
    template = tmp_path / "lab-stack.yaml"
    template.write_text(heatlab.TEMPLATE)
    made = lab.client("old", "stack", "create", "-t", str(template), "--wait", "lab-stack")
    assert made["stack_status"] == "CREATE_COMPLETE", made
    before = heatlab.stack_view(lab.client("old", "stack", "show", made["id"]))
    outputs = dict(before["outputs"])
    assert len(outputs["secret_value"]) == 24 and outputs["marker_id"]
    old_sums, new_sums = lab.heat_sums("old"), lab.heat_sums("new")
    target_heads = sorted(r[0] for r in lab.db("new").execute("SELECT version_num FROM alembic_version", db="heat"))
    assert target_heads
    assert old_sums["stack"][0] == 1 and old_sums["resource"][0] == 2  # the stack and its two resources

    chk = upgrade("check", str(lab.plan))  # the pre-flight knows heat: its tool on both sides, its database
    assert chk.returncode in (0, 1) and "heat" in chk.stdout, chk.stdout[-3000:] + chk.stderr[-3000:]
    res = upgrade("run", str(lab.plan), timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert lab.serving("new") == on and lab.serving("old") == off

    # after: the NEW controller's heat shows the same stack, outputs decrypted with the carried key
    after = heatlab.stack_view(lab.client("new", "stack", "show", made["id"]))
    assert after == before
    assert [s["ID"] for s in lab.client("new", "stack", "list")] == [made["id"]]
    # and it serves new work through its own broker and engine
    fresh = lab.client("new", "stack", "create", "-t", str(template), "--wait", "after-upgrade")
    assert fresh["stack_status"] == "CREATE_COMPLETE" and fresh["id"] != made["id"]

    exp = upgrade("journal", "export", "--journal", str(lab.journal), "--format", "jsonl")
    assert exp.returncode == 0, exp.stderr
    done = {e["step"]: e["result"] for e in map(json.loads, exp.stdout.splitlines())
            if e["kind"] == "done" and e["step"].startswith("heat.")}
    schema = done["heat.upgrade_schema"]
    assert [c["command"].split()[-1] for c in schema["commands"]] == ["db_sync"]
    assert schema["revisions_after"]["heat"] == target_heads  # the target release's own schema
    assert done["heat.status_check"]["rc"] in (0, 1), done["heat.status_check"]
    assert done["heat.verify"]["http_status"] and done["heat.verify"]["url"] == lab.summary["heat_url"]
    carried = (lab.root("new") / "etc/heat/heat.conf").read_text()
    assert f"127.0.0.1:{lab.state['new']['db_port']}/heat" in carried  # the new DB server, the rest as it was

    # the stack made on the new controller is a tenant's write: revert refuses to drop it silently, and
    # with --discard-new-writes keeps it in the vault before the old controller comes back
    refused = upgrade("revert", "--journal", str(lab.journal), timeout=1200)
    assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert "heat.stack: 1 -> 2 rows (+1)" in refused.stderr and "--discard-new-writes" in refused.stderr
    assert lab.serving("new") == on and lab.serving("old") == off  # nothing changed
    rev = upgrade("revert", "--journal", str(lab.journal), "--discard-new-writes", timeout=1200)
    assert rev.returncode == 0, rev.stdout[-3000:] + rev.stderr[-3000:]
    # heat's secrets (service and domain-admin passwords, DB and broker passwords, the encryption key) are in
    # no output of the tool, no journal row and no log of either controller
    secrets = [v for k, v in lab.state["heat"].items() if k.endswith(("password", "key"))]
    assert len(secrets) == 5
    seen = res.stdout + res.stderr + refused.stdout + refused.stderr + rev.stdout + rev.stderr + exp.stdout
    logs = [p for side in ("old", "new") for p in (lab.root(side) / "var" / "log").rglob("*") if p.is_file()]
    assert logs and not [s for s in secrets if s in seen or any(s in p.read_text(errors="replace") for p in logs)]
    assert lab.serving("old") == on and lab.serving("new") == off
    # the OLD controller serves the stack as before; the stack made on the new one never reached it
    assert heatlab.stack_view(lab.client("old", "stack", "show", made["id"])) == before
    assert [s["ID"] for s in lab.client("old", "stack", "list")] == [made["id"]]
    assert lab.heat_sums("old") == old_sums  # the old controller's heat data: not one row changed
    assert lab.heat_sums("new") == new_sums  # the new one: as installed, before the run
