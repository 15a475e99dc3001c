"""What ``scripts.lab.ha`` runs *inside* an HA lab controller (``nsenter`` into all its namespaces).

Here ``/`` is the host's root (see ``scripts.lab.hostside``): the Galera node, keepalived,
HAProxy and keystone live in the host's own ``/etc``, ``/var/lib``, ``/var/log`` and ``/run``.
Keystone listens on every address of its host at :data:`KEYSTONE_BACKEND_PORT`; clients reach it
through HAProxy on the VIP at the usual port (the catalog's URLs name the VIP). Its database
connection goes to the host's own Galera node (127.0.0.1), which replicates to the others.
Payloads (passwords included) arrive as JSON on stdin, never in argv.

    python -m scripts.lab.hanode ACTION < payload.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from scripts.lab import hagalera, havip, ksapi, layout, svc
from scripts.lab.controller import _keystone_conf_text, make_controller, seed_keystone
from scripts.lab.hostside import DB_PORT, KEYSTONE_PORT, ROOT, _db_admin
from scripts.lab.proc import LabError, http_answers, run_action

#: where keystone listens on each controller, behind HAProxy's :data:`KEYSTONE_PORT` on the VIP
KEYSTONE_BACKEND_PORT = 5001
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
                                                        bind="0.0.0.0"))
        svc.start(ROOT, "whoami")
        return {}
    ctl = make_controller(ROOT, p["release"], db, KEYSTONE_BACKEND_PORT, venv_root, p["db_password"], bind="0.0.0.0")
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


def _wait_vip_keystone(vip: str) -> None:
    """Until HAProxy on the VIP has seen a keystone come up (its health check runs every second)."""
    deadline = time.monotonic() + VIP_TIMEOUT
    while not http_answers(KEYSTONE_PORT, "/v3", vip):
        if time.monotonic() > deadline:
            raise LabError(f"keystone does not answer through HAProxy on {vip}:{KEYSTONE_PORT} after "
                           f"{VIP_TIMEOUT:.0f} s (see /var/log/osu-ha/haproxy.log)")
        time.sleep(0.1)


def serve(p: dict[str, Any]) -> dict[str, Any]:
    """Keystone (its tree copied from the first controller: same keys, same config) and the probe."""
    svc.start(ROOT, "keystone")
    svc.start(ROOT, "whoami")
    return {}


ACTIONS = {"galera": galera, "vip": vip, "vip_stop": vip_stop, "keystone": keystone, "serve": serve}


if __name__ == "__main__":
    sys.exit(run_action("scripts.lab.hanode", ACTIONS, sys.argv[1:]))
