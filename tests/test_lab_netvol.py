"""Neutron and cinder served for real in the local lab (``python -m scripts.lab up --real neutron,cinder``):
Grenade-style resources (scripts.lab.grenade_netvol) made as a non-admin user through the ``openstack``
CLI on the old controller survive ``upgrade run`` of the lab's plan (the same ids and states, read
through the APIs the new controller now serves, and new work served: a network and a volume made
and deleted) and ``upgrade revert`` (the same, from the old controller again).

One lab for the module (keystone, glance, neutron and cinder; the stand-in flavour of the other lab tests
stays as it is). Tests that need it fail, not skip, when CI is set.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from scripts.lab import __main__ as lab_cli
from scripts.lab import grenade_netvol, netvol, rabbit, units
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.proc import LabError
from tests.conftest import require, require_mariadb, upgrade

OLD, NEW = "2025.2", "2026.1"
SERVICES = ("keystone", "glance", "neutron", "cinder")  # glance: the openstack CLI's volume commands need the image API
REAL = ("neutron", "cinder")


@pytest.fixture(scope="module")
def netvol_lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    require_mariadb()
    require((rabbit.SBIN / "rabbitmq-server").exists(), "rabbitmq-server not installed (scripts/setup-system)")
    for release in (OLD, NEW):
        for tool in ("neutron-rpc-server", "cinder-volume", "openstack"):
            require((DEFAULT_VENV_ROOT / release / "bin" / tool).exists(),
                    f"{tool} {release} missing (make openstack builds the venvs)")
    directory = tmp_path_factory.mktemp("netvol") / "lab"
    try:
        summary = lab_cli.up(directory, OLD, NEW, DEFAULT_VENV_ROOT, SERVICES, REAL)
    except LabError as exc:
        lab_cli.down(directory) if (directory / lab_cli.STATE).exists() else None
        require(False, f"the lab with real neutron and cinder did not come up: {exc}")
    try:
        yield directory, summary
    finally:
        lab_cli.down(directory)


def _clients(directory: Path, summary: dict[str, Any], release: str, user: tuple[str, str]) -> grenade_netvol.Client:
    where = directory / f"client-{release}"
    where.mkdir(exist_ok=True)
    return grenade_netvol.client(DEFAULT_VENV_ROOT / release, where, summary["keystone_url"], *user)


def _running(directory: Path, side: str, unit_names: list[str]) -> dict[str, bool]:
    root = directory / side
    return {u: units.status(root, u) for u in unit_names}


def test_resources_survive_the_upgrade_and_the_revert(netvol_lab: Any) -> None:
    directory, summary = netvol_lab
    state = json.loads((directory / lab_cli.STATE).read_text())
    real_units = [u for n in REAL for u in netvol.served(directory / "old", n).units]
    # the old controller serves, the new one is installed and stopped
    assert all(_running(directory, "old", real_units).values())
    assert not any(_running(directory, "new", real_units).values())
    # the plan tells the tool the real units (the broker last: it moves with its service) and the APIs
    plan = (directory / lab_cli.PLAN).read_text()
    for name in REAL:
        lab = netvol.served(directory / "old", name)
        assert f"units = {json.dumps(list(lab.units))}" in plan
        assert f'verify_url = "http://127.0.0.1:{state["netvol"][name]["api_port"]}/"' in plan
    # no secret of the services in a descriptor; their configs 0640, the brokers' 0600
    for name in REAL:
        for side in ("old", "new"):
            root = directory / side
            assert state["netvol"][name]["password"] not in (root / f"{name}-lab.json").read_text()
            conf = root / "etc" / name / f"{name}.conf"
            assert stat.S_IMODE(conf.stat().st_mode) == 0o640
            assert stat.S_IMODE(rabbit.broker(root, f"rabbitmq-{name}").conf.stat().st_mode) == 0o600

    user = grenade_netvol.make_user(summary["keystone_url"], state["seed"]["admin_token"], "grenade")
    old_cli = _clients(directory, summary, OLD, user)
    assert stat.S_IMODE(old_cli.clouds.stat().st_mode) == 0o600
    made = {k.name: k.create(old_cli) for k in grenade_netvol.KINDS}
    assert made["volume"]["view"]["volume"]["status"] == "available"
    assert made["volume"]["view"]["snapshot"]["status"] == "available"
    assert made["network"]["view"]["router_interfaces"][0][1] == made["network"]["ids"]["subnet"]
    assert len(made["network"]["view"]["security_group"]["rules"]) >= 4  # two egress defaults + ssh + icmp

    run = upgrade("run", str(directory / lab_cli.PLAN), timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert all(_running(directory, "new", real_units).values())
    assert not any(_running(directory, "old", real_units).values())
    new_cli = _clients(directory, summary, NEW, user)
    for kind in grenade_netvol.KINDS:
        assert kind.verify(new_cli, made[kind.name]) == made[kind.name]["view"]
    work = {k.name: k.new_work(new_cli) for k in grenade_netvol.KINDS}
    assert work["volume"]["status"] == "available" and work["network"]["status"] == "ACTIVE"
    # the new volume lives on the new controller's cinder-volume (its host name), seen by the admin
    admin = _clients(directory, summary, NEW, ("admin", state["admin_password"]))
    services = admin.json("volume", "service", "list")
    assert {(s["Binary"], s["Host"], s["State"]) for s in services if s["State"] == "up"} >= {
        ("cinder-volume", "new-ctl@lvm", "up"), ("cinder-scheduler", "new-ctl", "up")}

    back = upgrade("revert", "--journal", summary["journal"], timeout=1800)
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
    assert all(_running(directory, "old", real_units).values())
    assert not any(_running(directory, "new", real_units).values())
    for kind in grenade_netvol.KINDS:
        assert kind.verify(old_cli, made[kind.name]) == made[kind.name]["view"]


def test_real_needs_the_service_and_changes_nothing(tmp_path: Path) -> None:
    """``--real`` names only neutron/cinder of ``--services``: refused before any file is made."""
    directory = tmp_path / "lab"
    for real in (("nova",), ("cinder",)):
        with pytest.raises(LabError, match="--real"):
            lab_cli.up(directory, OLD, NEW, DEFAULT_VENV_ROOT, ("keystone", "neutron"), real)
    assert not directory.exists() or not any(directory.iterdir())
    rc = lab_cli.main(["up", str(directory), "--services", "keystone,glance", "--real", "neutron"])
    assert rc == 1
    assert not directory.exists() or not any(directory.iterdir())
