"""What ``scripts.lab.ha`` runs *inside* an HA lab controller (``nsenter`` into all its namespaces).

Here ``/`` is the host's root (see ``scripts.lab.hostside``): the Galera node, keepalived,
HAProxy and keystone live in the host's own ``/etc``, ``/var/lib``, ``/var/log`` and ``/run``.
Keystone and glance listen on every address of their host at :data:`KEYSTONE_BACKEND_PORT` and
:data:`GLANCE_BACKEND_PORT`; clients reach them through HAProxy on the VIP at the usual ports (the
catalog's URLs name the VIP), and RabbitMQ's cluster at :data:`AMQP_PORT` on the VIP the same way;
placement, nova, neutron and cinder likewise (:data:`APIS`).
Glance keeps its images in ``/var/lib/glance/images``, a directory every controller of the lab
shares (``scripts.lab.ha`` mounts it, as production mounts NFS or uses Ceph): an image uploaded
through one glance-api is served by any other. Its database
connection goes to the host's own Galera node (127.0.0.1), which replicates to the others.
Payloads (passwords included) arrive as JSON on stdin, never in argv.

    python -m scripts.lab.hanode ACTION < payload.json
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from scripts.lab import (
    fullstack,
    hagalera,
    havip,
    ksapi,
    layout,
    netvolhost,
    novahost,
    novaserve,
    openstack,
    rabbit,
    svc,
    units,
)
from scripts.lab.controller import _keystone_conf_text, make_controller, seed_keystone
from scripts.lab.hostside import DB_PORT, GLANCE_PORT, KEYSTONE_PORT, ROOT, _db_admin
from scripts.lab.proc import LabError, http_answers, run_action

#: where keystone listens on each controller, behind HAProxy's :data:`KEYSTONE_PORT` on the VIP
KEYSTONE_BACKEND_PORT = 5001
#: where glance-api listens on each controller, behind HAProxy's :data:`GLANCE_PORT` on the VIP
GLANCE_BACKEND_PORT = 9293
#: AMQP on the VIP (HAProxy), on each RabbitMQ node, and the nodes' Erlang distribution port
AMQP_PORT, AMQP_BACKEND_PORT, AMQP_DIST_PORT = 5672, 5673, 25672
#: placement-api and nova-api on the VIP (HAProxy) and on each controller behind it
PLACEMENT_PORT, PLACEMENT_BACKEND_PORT = 8778, 8779
NOVA_PORT, NOVA_BACKEND_PORT = 8774, 8775
#: neutron-server and cinder-api on the VIP (HAProxy) and on each controller behind it
NEUTRON_PORT, NEUTRON_BACKEND_PORT = 9696, 9697
CINDER_PORT, CINDER_BACKEND_PORT = 8776, 8777
#: the APIs beyond keystone and glance HAProxy serves on the VIP: (name, VIP port, backend port, health check)
APIS = (("placement", PLACEMENT_PORT, PLACEMENT_BACKEND_PORT, "/"), ("nova", NOVA_PORT, NOVA_BACKEND_PORT, "/"),
        ("neutron", NEUTRON_PORT, NEUTRON_BACKEND_PORT, "/"), ("cinder", CINDER_PORT, CINDER_BACKEND_PORT, "/"))
#: glance's only service of a controller stack here
GLANCE = ("glance",)
#: placement's and nova's (nova's units: ``scripts.lab.novaserve``, built by ``scripts.lab.novahost``)
NOVA = ("placement", "nova")
#: neutron's and cinder's (``scripts.lab.netvolhost``'s controller)
NETVOL = ("neutron", "cinder")
#: the lab's ``whoami`` probe (scripts.lab.svc): which host answers on an address
WHOAMI_PORT = 8080
VIP_TIMEOUT = 20.0


def _node(p: dict[str, Any], bootstrap: bool = False) -> hagalera.GaleraNode:
    return hagalera.GaleraNode(p["address"], p["name"], p["cluster"], p["peers"], bootstrap)


def galera(p: dict[str, Any]) -> dict[str, Any]:
    """Start this host's Galera node: the first forms the cluster (and holds the tool's DB account, which
    replicates), the others join it by SST; returns the node's view of the cluster."""
    db = _node(p, bootstrap=p.get("bootstrap", False))
    db.start()
    if p.get("db_admin_password"):
        _db_admin(db, p["db_admin_password"])
    return hagalera.status(db)


def vip(p: dict[str, Any]) -> dict[str, Any]:
    """keepalived's and HAProxy's configs (HAProxy may bind the VIP whether or not this host holds it), then
    the ``start`` programs, HAProxy first: a VIP holder forwards at once."""
    Path("/proc/sys/net/ipv4/ip_nonlocal_bind").write_text("1\n")
    havip.write(p)
    return {prog: havip.start(prog, p["api_port"]) for prog in p.get("start", ())}


def vip_stop(p: dict[str, Any]) -> dict[str, Any]:
    """Stop the ``programs`` (keepalived: it hands the VIP over with a priority-0 advert); which ran."""
    return {prog: havip.stop(prog) for prog in p["programs"]}


def keystone(p: dict[str, Any]) -> dict[str, Any]:
    """The first controller's keystone: schema of ``release`` on the cluster, keys, bootstrap, served and
    seeded through its own address (HAProxy has not seen it up yet), its catalog then pointed at the VIP.
    With ``install_only`` (the new side), only the tree, keystone.conf and lab.json: the new cluster
    stays empty until an upgrade imports the data."""
    db = _node(p)
    venv_root = Path(p["venv_root"])
    if p.get("install_only"):
        for path in (layout.etc_keystone(ROOT), layout.fernet_keys(ROOT), layout.credential_keys(ROOT),
                     layout.log_dir(ROOT, "keystone")):
            path.mkdir(parents=True, exist_ok=True)
        layout.keystone_conf(ROOT).write_text(_keystone_conf_text(ROOT, p["release"], db, p["db_password"]))
        layout.write_descriptor(ROOT, layout.Descriptor(release=p["release"], venv=str(venv_root / p["release"]),
                                                        keystone_port=KEYSTONE_BACKEND_PORT, db_port=DB_PORT,
                                                        bind="0.0.0.0", glance_port=GLANCE_BACKEND_PORT))
        svc.start(ROOT, "whoami")
        return {}
    ctl = make_controller(ROOT, p["release"], db, KEYSTONE_BACKEND_PORT, venv_root, p["db_password"], bind="0.0.0.0",
                          glance_port=GLANCE_BACKEND_PORT)
    seeded = seed_keystone(ctl, p["admin_password"], p["glance_url"])
    vip_url = f"http://{p['vip']}:{KEYSTONE_PORT}/v3"
    token, own = seeded["admin_token"], ctl.keystone_url
    for service in ksapi.call("GET", f"{own}/services?type=identity", token)["services"]:
        for ep in ksapi.call("GET", f"{own}/endpoints?service_id={service['id']}", token)["endpoints"]:
            ksapi.call("PATCH", f"{own}/endpoints/{ep['id']}", token, {"endpoint": {"url": f"{vip_url}/"}})
    seeded["keystone_url"] = vip_url
    svc.start(ROOT, "whoami")
    _wait_vip_keystone(p["vip"])
    return {"seed": seeded}


def _wait_vip_keystone(vip: str, service: str = "keystone", port: int = KEYSTONE_PORT, path: str = "/v3") -> None:
    """Until HAProxy on the VIP has seen a *service* come up (its health check runs every second)."""
    deadline = time.monotonic() + VIP_TIMEOUT
    while not http_answers(port, path, vip):
        if time.monotonic() > deadline:
            raise LabError(f"{service} does not answer through HAProxy on {vip}:{port} after "
                           f"{VIP_TIMEOUT:.0f} s (see /var/log/osu-ha/haproxy.log)")
        time.sleep(0.1)


def _glance_api(p: dict[str, Any]) -> openstack.Api:
    """Glance behind keystone on the VIP, listening on every address of the host at its backend port."""
    return openstack.Api(f"http://{p['vip']}:{KEYSTONE_PORT}", GLANCE_BACKEND_PORT, p["glance_password"],
                         bind="0.0.0.0")


def glance(p: dict[str, Any]) -> dict[str, Any]:
    """Glance of ``release`` (the full lab's code: ``scripts.lab.fullstack``). On the first old controller its
    database and schema on the cluster, its service user made through keystone on the VIP, glance-api
    started and the lab's images uploaded through it, then waited for on the VIP; with ``install_only``
    (the new side) its config and directories only."""
    db = _node(p)
    venv_root = Path(p["venv_root"])
    if p.get("install_only"):
        openstack.install(ROOT, p["release"], db, venv_root, GLANCE, _glance_api(p))
        return {}
    stack = fullstack.build(ROOT, p["release"], db, venv_root, GLANCE, _glance_api(p))
    images = fullstack.seed_old(stack, p["seed"], GLANCE)["images"]
    _wait_vip_keystone(p["vip"], "glance", GLANCE_PORT, "/versions")
    return {"images": images}


def nova(p: dict[str, Any]) -> dict[str, Any]:
    """Placement and nova of ``release`` (``scripts.lab.novahost``'s controller, on this host's Galera node, nova's
    RPC on the side's RabbitMQ cluster through the VIP): on the first old controller the databases, the
    schema, the service users and the catalog (on the VIP), the units not started yet (``nova_serve``); with
    ``install_only`` (the new side) the configs, directories and descriptor only, no database."""
    db = _node(p)
    s = novaserve.Settings(**p["nova"])
    if not p.get("install_only"):
        return novahost.inside_controller({**p, "register": True}, db=db)
    venv_root = Path(p["venv_root"])
    openstack.install(ROOT, p["release"], db, venv_root, NOVA, openstack.Api(s.keystone, 0, "", s.bind, nova=s))
    novaserve.install(ROOT, venv_root / p["release"], None, s, 0)
    return {}


def nova_serve(p: dict[str, Any]) -> dict[str, Any]:
    """Placement's and nova's units on this controller (its tree built here or copied from the first; no
    metadata API: the lab's servers boot with no network), then both APIs waited for on the VIP."""
    names = [u for u in novahost.unit_names(novaserve.Settings(**p["nova"])) if "metadata" not in u]
    units.start_all(ROOT, names)
    for name, port, _, check in APIS:
        if name in NOVA:
            _wait_vip_keystone(p["vip"], name, port, check)
    return {}


def netvol(p: dict[str, Any]) -> dict[str, Any]:
    """Neutron and cinder of ``release`` (``scripts.lab.netvolhost``'s controller) on this host's Galera node,
    their RPC on the side's RabbitMQ cluster (this host's node, a user and vhost each): on the first old
    controller the databases, the schema, the service users and the catalog (on the VIP), the units not
    started yet (``netvol_serve``); with ``install_only`` (the new side) the configs and descriptors only."""
    return netvolhost.inside({**p, "broker": rabbit.UNIT, "register": not p.get("install_only")}, db=_node(p))


def netvol_serve(p: dict[str, Any]) -> dict[str, Any]:
    """Neutron's and cinder's units on this controller (its tree built here or copied from the first), then both
    APIs waited for on the VIP."""
    units.start_all(ROOT, netvolhost.unit_names(), svc.start)
    for name, port, _, check in APIS:
        if name in NETVOL:
            _wait_vip_keystone(p["vip"], name, port, check)
    return {}


def serve(p: dict[str, Any]) -> dict[str, Any]:
    """Keystone and glance-api (their trees copied from the first controller: same keys, same configs) and
    the probe."""
    svc.start(ROOT, "keystone")
    svc.start(ROOT, "glance-api")
    svc.start(ROOT, "whoami")
    return {}


def mq(p: dict[str, Any]) -> dict[str, Any]:
    """This controller's RabbitMQ node ``rabbit@HOST`` (``scripts.lab.rabbit``: no systemd, the side's one
    cookie), started, with ``join`` made a member of that node's cluster, with ``cluster_name`` naming the
    cluster. Returns the running nodes it sees."""
    rabbit.install(ROOT, AMQP_BACKEND_PORT, AMQP_DIST_PORT, p["mq_password"], bind="0.0.0.0",
                   node=p["node"], cookie=p["cookie"])
    rabbit.start(ROOT)
    if p.get("join"):
        rabbit.join_cluster(ROOT, p["join"])
    if p.get("cluster_name"):  # a global runtime parameter: every node reports it to its AMQP clients
        res = rabbit.ctl(rabbit.broker(ROOT), "set_cluster_name", p["cluster_name"])
        if res.returncode != 0:
            raise LabError(f"set_cluster_name {p['cluster_name']}: {(res.stdout + res.stderr).strip()[-500:]}")
    return {"running_nodes": rabbit.running_nodes(ROOT)}


def mq_status(p: dict[str, Any]) -> dict[str, Any]:
    """The running nodes of this controller's RabbitMQ cluster, as its node sees them ([] when stopped)."""
    if not rabbit.status(ROOT):
        return {"running_nodes": []}
    return {"running_nodes": rabbit.running_nodes(ROOT)}


def mq_stop(p: dict[str, Any]) -> dict[str, Any]:
    """Stop this controller's RabbitMQ node; whether it ran."""
    return {"stopped": rabbit.stop(ROOT)}


def _amqp_cluster(vip: str) -> str:
    """The name of the RabbitMQ cluster answering AMQP on the VIP: the ``cluster_name`` server property of
    the broker's first frame (``connection.start``) after the client's protocol header."""
    with socket.create_connection((vip, AMQP_PORT), timeout=5) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        data = b""
        while len(data) < 7 or len(data) < 8 + int.from_bytes(data[3:7], "big"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    key = b"\x0ccluster_nameS"
    at = data.find(key)
    if data[:1] != b"\x01" or at < 0:
        raise LabError(f"no AMQP connection.start with a cluster name from {vip}:{AMQP_PORT}: {data[:40]!r}")
    start = at + len(key) + 4
    return data[start:start + int.from_bytes(data[start - 4:start], "big")].decode()


def vip_check(p: dict[str, Any]) -> dict[str, Any]:
    """What a compute host sees on the VIP, the only controller address it knows: which controller holds
    it (the ``whoami`` probe), whether keystone, glance, placement and nova answer through HAProxy, which RabbitMQ
    cluster answers AMQP; None where nothing answers (no holder, a side whose broker is stopped)."""
    vip = p["vip"]
    try:
        with urllib.request.urlopen(f"http://{vip}:{WHOAMI_PORT}/", timeout=5) as resp:
            holder = json.loads(resp.read())["host"]
    except OSError:
        holder = None
    try:
        cluster: str | None = _amqp_cluster(vip)
    except (OSError, LabError):
        cluster = None
    return {"holder": holder, "keystone": http_answers(KEYSTONE_PORT, "/v3", vip),
            "glance": http_answers(GLANCE_PORT, "/versions", vip),
            **{name: http_answers(port, check, vip) for name, port, _, check in APIS}, "amqp_cluster": cluster}


ACTIONS = {"galera": galera, "vip": vip, "vip_stop": vip_stop, "keystone": keystone, "glance": glance,
           "nova": nova, "nova_serve": nova_serve, "serve": serve,
           "netvol": netvol, "netvol_serve": netvol_serve,
           "mq": mq, "mq_status": mq_status, "mq_stop": mq_stop, "vip_check": vip_check}


if __name__ == "__main__":
    sys.exit(run_action("scripts.lab.hanode", ACTIONS, sys.argv[1:]))
