"""Placement and nova served for real on BOTH controllers of the multi-host lab, with a real nova-compute on
every compute host: the local lab's nova (``scripts.lab.novaserve``, built by ``scripts.lab.fullstack`` and
driven by ``scripts.lab.units``) rooted at each controller's ``/``.

On each controller: placement-api, nova-api, nova-conductor, nova-scheduler and nova's own RabbitMQ
(``rabbitmq-nova``) of the controller's release, their configs written as devstack's lib/nova does;
the APIs and the broker listen on every address of the host, the controller's own nova asks its own
keystone, placement and broker on loopback. The old controller (2025.2) serves, its keystone's catalog
names ``compute`` and ``placement`` on the management address; the new one (2026.1) is installed with its
release's empty schema and stopped, as the rest of its services are.

Each compute host runs nova-compute of the old release on nova's fake driver
(``fake.FakeDriverWithoutFakeNodes``, ``scripts.lab.novalab`` supervises it), talking to the broker,
keystone and (through the catalog) placement on the management address: when the run moves that address
to the new controller, the computes report there without being touched. Once they registered, the old
controller maps them into cell1 (``nova-manage cell_v2 discover_hosts``).

``setup(lab)`` does all of that on a running lab (``scripts.lab.hosts.Lab``); ``write_plan`` writes the
plan of keystone, glance, placement and nova with the management address and the compute hosts. Secrets:
the 0600 lab state, the 0640 configs, the broker's 0600 config; payloads go through stdin.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from scripts.lab import ksapi, novalab, novaserve
from scripts.lab.hostside import KEYSTONE_PORT

#: the services of a controller's nova stack (keystone is the controller itself: no change to it)
SERVICES = ("keystone", "placement", "nova")
#: what the plan upgrades, and with neutron and cinder real too (scripts.lab.netvolhost)
PLAN_SERVICES = ("keystone", "glance", "placement", "nova")
NETVOL = ("neutron", "cinder")
PLACEMENT_PORT = 8778
API_PORT = 8774
#: nova's own broker (a unit that moves with nova, as in the local lab), beside the controller's broker of
#: neutron and cinder (scripts.lab.netvolhost: always running, on 5673)
MQ_PORT = 5672
#: its Erlang distribution port (each controller is a host of its own: one port serves both)
MQ_DIST_PORT = 25673
#: the controllers' supervisor: nova's units through novaserve, keystone and glance through svc
CONTROL = ["env", "PYTHONPATH=/run/osu/repo", "python3", "-m", "scripts.lab.units", "--root", "/", "{action}",
           "{unit}"]


# ---------------------------------------------------------------------- inside a controller (scripts.lab.hostside)
def inside_controller(p: dict[str, Any], db: Any = None) -> dict[str, Any]:
    """Placement and nova of the controller's release rooted at ``/`` (configs, databases, schema, broker);
    with ``serve``: its service users and catalog entries made through its keystone, every unit started
    (``register`` alone: the catalog, the units left to start). *db*: the host's server (default: its
    MariaDB; the HA lab's Galera node)."""
    from scripts.lab import fullstack, units
    from scripts.lab.hostside import ROOT, HostMariaDB
    from scripts.lab.openstack import Api

    s = novaserve.Settings(**p["nova"])
    if db is None:
        db = HostMariaDB(p["address"])
    db.start()
    fullstack.build(ROOT, p["release"], db, Path(p["venv_root"]), SERVICES, Api(s.keystone, 0, "", s.bind, nova=s),
                    MQ_DIST_PORT)
    if p.get("serve") or p.get("register"):
        token = ksapi.get_token(f"{s.keystone}/v3", "admin", p["admin_password"], project="admin")
        novaserve.register(s, token)
    if p.get("serve"):
        units.start_all(ROOT, unit_names(s))
    return {}


def unit_names(s: novaserve.Settings) -> list[str]:
    """The units of a controller's placement and nova, in start order (nova's broker where it has its own)."""
    from scripts.lab import fullstack
    from scripts.lab.hostside import ROOT

    return novaserve.tree_units(fullstack.unit_names(SERVICES, ROOT), s)


def inside_discover(p: dict[str, Any]) -> dict[str, Any]:
    """On the serving controller: every compute host's node mapped into cell1 once it registered."""
    from scripts.lab.hostside import ROOT, HostMariaDB

    return {"node": novaserve.discover(ROOT, HostMariaDB(p["address"]), hosts=tuple(p["hosts"]))}


def inside_project_user(p: dict[str, Any]) -> dict[str, Any]:
    """On a controller: the Grenade project and its non-admin user, made by the admin through its keystone."""
    from scripts.lab import grenade

    return {"password": grenade.project_user(f"http://127.0.0.1:{KEYSTONE_PORT}/v3", p["admin_password"])}


INSIDE = {"nova_controller": inside_controller, "nova_discover": inside_discover,
          "grenade_user": inside_project_user}


# ---------------------------------------------------------------------- outside: set up a running lab
def settings(lab: Any) -> novaserve.Settings | None:
    return novaserve.Settings(**lab.state["nova"]) if lab.state.get("nova") else None


def setup(lab: Any) -> dict[str, float]:
    """Nova real on both controllers of a running lab (restored from a snapshot: keystone and glance serve on
    oldctl) and on every compute host; the settings kept in the lab's 0600 state. How long each part took."""
    ctl = lab.state["controller"]
    s = novaserve.Settings.new(KEYSTONE_PORT, PLACEMENT_PORT, API_PORT, MQ_PORT)
    s = novaserve.Settings(**{**novaserve.settings_dict(s), "address": lab.state["vip"], "bind": "0.0.0.0"})
    lab.state["nova"] = novaserve.settings_dict(s)
    lab.save()
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(lab.helper, h, "nova_controller", {
            "release": rel, "venv_root": ctl["venv_root"], "address": lab.hosts[h], "nova": lab.state["nova"],
            "serve": h == "oldctl", "admin_password": ctl["admin_password"]}, 1200)
            for h, rel in (("oldctl", ctl["old"]), ("newctl", ctl["new"]))]
        for job in jobs:
            job.result()
    timings["controllers"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    for h in lab.computes:  # one after the other: two cores
        novalab.run_inside(lab, h, "compute", {"host": h, "release": ctl["old"], "venv_root": ctl["venv_root"],
                                               "nova": lab.state["nova"]})
    lab.helper("oldctl", "nova_discover", {"address": lab.hosts["oldctl"], "hosts": lab.computes}, 600)
    timings["computes"] = round(time.monotonic() - t0, 1)
    return timings


def project_user(lab: Any) -> str:
    """The Grenade project's user made on the serving old controller; its password (for a 0600 clouds.yaml)."""
    payload = {"nova": lab.state["nova"], "admin_password": lab.state["controller"]["admin_password"]}
    return lab.helper("oldctl", "grenade_user", payload)["password"]


def write_plan(lab: Any, name: str = "plan-nova.toml") -> Path:
    """The plan of keystone, glance, placement and nova (neutron and cinder where ``netvolhost.setup`` made them
    real), the management address and the compute hosts (each
    restarted: nova-compute through novalab, the rest through svc). Nova's stale service rows are the old
    controller's host name (a controller's nova takes its machine's name)."""
    from scripts.lab.hostplan import plan_text
    from scripts.lab.openstack import NEW_HOST, OLD_HOST

    newctl = lab.hosts["newctl"]
    served = {"placement": f"http://{newctl}:{PLACEMENT_PORT}/", "nova": f"http://{newctl}:{API_PORT}/"}
    services = PLAN_SERVICES + (NETVOL if lab.state.get("netvol") else ())
    text = plan_text(lab, services=services, control=CONTROL, compute_control=novalab.CONTROL, served=served)
    if lab.state.get("netvol"):  # neutron and cinder real too: their tables name the real units
        from scripts.lab import netvolhost

        text = netvolhost.real_sections(lab, text)
    head, _, rest = text.partition("[services.nova]\n")
    names = f'old_host = "{OLD_HOST}"\nnew_host = "{NEW_HOST}"\n'
    assert names in rest, "the nova table names the local lab's controllers"
    text = head + "[services.nova]\n" + rest.replace(names, 'old_host = "oldctl"\nnew_host = "newctl"\n', 1)
    path = lab.dir / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def grenade_cloud(lab: Any, side: str = "old", host: str | None = None) -> Any:
    """The lab as the Grenade user's client sees it from the deploy host: ``openstack`` of *side*'s release,
    keystone on the management address (``grenade_setup`` wrote the clouds.yaml), the seeded image, the
    compute host *host* (default: the first) where the servers are expected."""
    from scripts.lab import grenade

    ctl = lab.state["controller"]
    return grenade.Cloud(lab.dir / "grenade", Path(ctl["venv_root"]) / ctl[side], host or lab.computes[0],
                         ctl["seed"]["images"][0]["id"], where=tuple(lab.in_deploy([])))


def grenade_setup(lab: Any) -> Any:
    """Project ``grenade`` and its non-admin user made on the old controller; the 0600 clouds.yaml (clouds
    ``admin`` and ``grenade``) names keystone on the management address."""
    from scripts.lab import osclient

    password = project_user(lab)
    directory = lab.dir / "grenade"
    directory.mkdir(mode=0o700, exist_ok=True)
    admin = lab.state["controller"]["admin_password"]
    osclient.write_clouds(directory / "clouds.yaml", f"http://{lab.state['vip']}:{KEYSTONE_PORT}/v3",
                          {"admin": ("admin", admin, "admin"), "grenade": ("grenade", password, "grenade")})
    return grenade_cloud(lab)
