"""What ``scripts.lab.hosts`` runs *inside* a lab host (``nsenter`` into all its namespaces).

Here ``/`` is the host's root: its own ``/etc``, ``/var/lib``, ``/var/log`` overlays, ``/run`` and
network. A controller's MariaDB keeps its datadir in the host's ``/var/lib/mysql`` and listens on
the host's own address and loopback; its keystone is the local lab's controller tree rooted at
``/`` (``/etc/keystone``, ``/var/lib/keystone``), served on 0.0.0.0:5000 of the host's namespace.
Payloads (passwords included) arrive as JSON on stdin, never in argv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.lab import svc
from scripts.lab.mariadb import MariaDB
from scripts.lab.proc import LabError

ROOT = Path("/")
DB_BASE = Path("/var/lib/mysql")
DB_PORT = 3306
KEYSTONE_PORT = 5000
DB_ADMIN = "osu_admin"
ADMIN_HOSTS = "198.51.100.%"


class HostMariaDB(MariaDB):
    """The host's MariaDB: listens on the host's own address (the tool, the other hosts) and on
    loopback (the host's own services and the lab's root account)."""

    def __init__(self, address: str) -> None:
        super().__init__(DB_BASE, DB_PORT)
        self.bind = f"{address},127.0.0.1"  # MariaDB >= 10.11 takes a list

    def _config(self) -> str:
        return super()._config().replace("bind-address=127.0.0.1\n", f"bind-address={self.bind}\n")


def _db_admin(db: MariaDB, password: str) -> None:
    """The tool's account, reachable from every lab host (the tool runs in ``deploy``)."""
    db.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", args=(DB_ADMIN, ADMIN_HOSTS, password))
    db.execute("ALTER USER %s@%s IDENTIFIED BY %s", args=(DB_ADMIN, ADMIN_HOSTS, password))
    db.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", args=(DB_ADMIN, ADMIN_HOSTS))


def controller(p: dict[str, Any]) -> dict[str, Any]:
    """Build a controller: MariaDB, keystone of ``release`` installed (and seeded and serving if ``seed``)."""
    from scripts.lab.controller import make_controller, seed_keystone

    db = HostMariaDB(p["address"])
    db.start()
    _db_admin(db, p["db_admin_password"])
    ctl = make_controller(ROOT, p["release"], db, KEYSTONE_PORT, Path(p["venv_root"]), bind="0.0.0.0")
    seed = seed_keystone(ctl, p["admin_password"]) if p.get("seed") else {}
    svc.start(ROOT, "whoami")
    return {"seed": seed}


def start(p: dict[str, Any]) -> dict[str, Any]:
    HostMariaDB(p["address"]).start()
    if p.get("keystone"):
        svc.start(ROOT, "keystone")
    svc.start(ROOT, "whoami")
    return {}


def stop(p: dict[str, Any]) -> dict[str, Any]:
    """Stop the services and MariaDB cleanly (for a consistent snapshot)."""
    was = svc.stop(ROOT, "keystone")
    svc.stop(ROOT, "whoami")
    HostMariaDB("127.0.0.1").stop()
    return {"keystone_was_running": was}


NOVA_CONF = """\
# nova.conf of lab compute host {name} (written by scripts/lab/hostside.py)
[DEFAULT]
host = {name}
transport_url = rabbit://openstack:lab@controller:5672/

[api_database]
connection = mysql+pymysql://nova:lab@controller/nova_api
"""


def _descriptor(release: str) -> None:
    """What the supervisor needs to know of a host without keystone."""
    from scripts.lab import layout

    if not layout.descriptor_path(ROOT).exists():
        layout.write_descriptor(ROOT, layout.Descriptor(release=release, venv="", keystone_port=0, db_port=0))


def compute(p: dict[str, Any]) -> dict[str, Any]:
    """A compute host: nova.conf and the descriptor the supervisor needs, agents started."""
    Path("/etc/nova").mkdir(exist_ok=True)
    Path("/etc/nova/nova.conf").write_text(NOVA_CONF.format(name=p["name"]))
    _descriptor("compute")
    for unit in ("nova-compute", "neutron-agent"):
        svc.start(ROOT, unit)
    return {}


def probe(p: dict[str, Any]) -> dict[str, Any]:
    """A controller without MariaDB and keystone (``up --no-controllers``): only the whoami probe."""
    _descriptor("none")
    svc.start(ROOT, "whoami")
    return {}


ACTIONS = {"controller": controller, "start": start, "stop": stop, "compute": compute, "probe": probe}


def dispatch(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        return ACTIONS[action](payload)
    except KeyError:
        raise LabError(f"unknown inside action {action!r}") from None
