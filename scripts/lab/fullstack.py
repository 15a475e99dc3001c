"""The full lab's services beside keystone on one controller tree: glance serving for real behind
the lab keystone, placement and nova too (``scripts.lab.novaserve``, with a compute host beside the
controllers) unless the lab keeps them stand-ins, neutron/cinder with their real schema and
representative rows.

Used by ``python -m scripts.lab up`` (and so by ``make demo`` and the tests of real upgrades):
``build`` makes a controller's stack (configs, databases, the release's real schema), ``seed_old``
fills the old controller through the real APIs (a ``glance`` service user, images with bytes
uploaded through glance) and with rows where no API runs, ``start``/``stop`` drive every unit of
the stack through ``scripts.lab.units``.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from scripts.lab import glapi, ksapi, novaserve, served, units
from scripts.lab.mariadb import MariaDB
from scripts.lab.openstack import UNITS, Api, Stack, make_stack, seed

#: what the full lab runs; keystone is the controller itself (scripts.lab.controller)
STACK = ("glance", "placement", "nova", "neutron", "cinder")
ALL = ("keystone", *STACK)
#: images made through glance on the old controller: (name, raw bytes; glance refuses data that looks like a
#: qcow2 with a backing file, so no QFI magic), the second spans many read chunks
IMAGES = (("cirros café", b"lab raw disk\n" + bytes(range(256)) * 64),
          ("Übuntu jämmy", hashlib.sha256(b"lab").digest() * 40000))


def stack_services(services: tuple[str, ...]) -> tuple[str, ...]:
    """The services of ``services`` that live in the stack (all but keystone), in upgrade order."""
    return tuple(s for s in STACK if s in services)


def serves_nova(services: tuple[str, ...]) -> bool:
    """Placement and nova can serve for real where the lab has both (nova needs the placement API)."""
    return "placement" in services and "nova" in services


def build(root: Path, release: str, db: MariaDB, venv_root: Path, services: tuple[str, ...], api: Api,
          mq_dist_port: int = 0) -> Stack:
    """A controller's stack of its own release: configs, DBs and users, the real schema; where ``api``
    carries nova settings, what placement and nova need to serve (their broker on *mq_dist_port*)."""
    s = make_stack(root, release, db, venv_root, stack_services(services), api)
    if api.nova and serves_nova(services):
        novaserve.install(s.root, s.venv, db, api.nova, mq_dist_port)
    return s


def seed_old(s: Stack, ks: dict[str, Any], services: tuple[str, ...]) -> dict[str, Any]:
    """Seed the old controller: glance's service user (admin in project ``service``) through the
    keystone API, glance started and images uploaded through it, rows for the services whose APIs
    the lab does not serve. Every unit of the stack is running when this returns."""
    out: dict[str, Any] = {}
    inner = stack_services(services)
    # the brokers boot (an Erlang VM each) while glance and the rows are seeded: nothing of those needs them
    brokers = [u for u in unit_names(services, s.root) if u.startswith("rabbitmq")]
    with ThreadPoolExecutor(max_workers=1) as pool:
        booted = pool.submit(units.start_all, s.root, brokers)
        if "glance" in inner and s.api:
            out["images"] = _seed_glance(s, ks)
        if any(x in inner for x in ("nova", "cinder", "neutron")):
            rows = seed(s, glance_rows=False, services=inner)
            out.update({k: v for k, v in rows.items() if k != "images" and v})
            served.before_start(s.root, s.venv, s.db)
        if s.api and s.api.nova and serves_nova(services):  # the service users before the services that use them
            out["nova"] = novaserve.register(s.api.nova, ks["admin_token"])
        booted.result()
    start(s.root, services)
    return out


def start_compute(tree: Path, s: Stack) -> dict[str, str]:
    """The lab's compute host beside the controllers: nova-compute of the old controller's release on
    nova's fake driver, reporting through nova's broker; once its node is in the database, mapped
    into cell1 (discover_hosts). Returns its host name and node uuid."""
    assert s.api is not None and s.api.nova is not None
    novaserve.compute_install(tree, s.venv, s.release, s.api.nova)
    novaserve.compute_start(tree)
    return {"host": novaserve.COMPUTE_HOST, "node": novaserve.discover(s.root, s.db), "root": str(tree)}


def retire_absent_reporters(db: MariaDB, services: tuple[str, ...]) -> None:
    """Where a compute host really reports, the seeded representatives of hosts that do not exist (nova-compute
    on ``compute-1``, the agents of neutron, cinder-volume on ``other@ceph``) go, as an operator removes dead
    services before an upgrade (``openstack compute service delete``, ``network agent delete``, ``cinder-manage
    service remove``): the run's last step (the plan's ``[cloud]``) waits for every reporter to report."""
    if "nova" in services:
        db.execute("UPDATE services SET deleted=id, deleted_at=UTC_TIMESTAMP() WHERE `binary`='nova-compute' "
                   "AND host='compute-1' AND deleted=0", db="nova")
    if "neutron" in services:
        db.execute("DELETE FROM agents WHERE heartbeat_timestamp < '2026-01-02'", db="neutron")
    if "cinder" in services:
        db.execute("UPDATE services SET deleted=1, deleted_at=UTC_TIMESTAMP() WHERE host='other@ceph'", db="cinder")


def _seed_glance(s: Stack, ks: dict[str, Any]) -> list[dict[str, Any]]:
    assert s.api is not None
    url, token = ks["keystone_url"], ks["admin_token"]
    project = ksapi.call("POST", f"{url}/projects", token, {"project": {"name": "service", "domain_id": "default"}})
    user = ksapi.call("POST", f"{url}/users", token, {"user": {"name": "glance", "domain_id": "default",
                                                                "password": s.api.glance_password}})
    admin = ksapi.call("GET", f"{url}/roles?name=admin", token)["roles"][0]["id"]
    ksapi.call("PUT", f"{url}/projects/{project['project']['id']}/users/{user['user']['id']}/roles/{admin}", token)
    units.start(s.root, "glance-api")
    glance = f"http://127.0.0.1:{s.api.glance_port}"
    made = [glapi.create(glance, token, name, data, os_distro="lab") for name, data in IMAGES]
    return [{"id": i["id"], "name": i["name"], "size": i["size"], "checksum": i["checksum"]} for i in made]


def unit_names(services: tuple[str, ...], root: Path | None = None) -> list[str]:
    """Every unit of the stack's services, in start order (each service's units in the reverse of its
    stop order: nova's broker before nova's RPC servers), of the tree at *root*: neutron's and cinder's
    real units where it serves them for real, scripts.lab.netvol."""
    return [u for s in stack_services(services) for u in served.unit_names(root, s, list(reversed(UNITS[s])))]


def start(root: Path, services: tuple[str, ...]) -> None:
    """Every unit of the stack, side by side (the brokers first: ``units.start_all``)."""
    units.start_all(root, unit_names(services, root))


def stop(root: Path, services: tuple[str, ...]) -> list[str]:
    """Stop every unit of the stack; returns those that were running."""
    was = [u for u in unit_names(services, root) if units.status(root, u)]
    for unit in reversed(unit_names(services, root)):
        units.stop(root, unit)
    return was
