"""What ``scripts.lab.hosts`` runs *inside* a lab host (``nsenter`` into all its namespaces).

Here ``/`` is the host's root: its own ``/etc``, ``/var/lib``, ``/var/log`` overlays, ``/run`` and
network. A controller's MariaDB keeps its datadir in the host's ``/var/lib/mysql`` and listens on
the host's own address and loopback; its keystone and glance are the local lab's controller tree
and stack rooted at ``/`` (``/etc/keystone``, ``/etc/glance``, ``/var/lib/glance/images`` ...: the
same code as the full lab, ``scripts.lab.controller`` and ``scripts.lab.fullstack``), served on
0.0.0.0:5000 and 0.0.0.0:9292 of the host's namespace; glance checks tokens with the keystone of
its own host (127.0.0.1:5000), so its config is valid unchanged on either controller.
Payloads (passwords included) arrive as JSON on stdin, never in argv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.lab import svc
from scripts.lab.mariadb import MariaDB
from scripts.lab.openstack import Api

ROOT = Path("/")
DB_BASE = Path("/var/lib/mysql")
DB_PORT = 3306
KEYSTONE_PORT = 5000
GLANCE_PORT = 9292
#: the services of a lab controller, and the supervisor units that serve them (start order)
SERVICES = ("keystone", "glance")
UNITS = ("keystone", "glance-api")
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


def _api(p: dict[str, Any]) -> Api:
    """Glance behind the host's own keystone, listening on every address of the host."""
    return Api(f"http://127.0.0.1:{KEYSTONE_PORT}", GLANCE_PORT, p["glance_password"], bind="0.0.0.0")


def controller(p: dict[str, Any]) -> dict[str, Any]:
    """Build a controller: MariaDB, keystone and glance of ``release`` installed with their release's
    schema; with ``seed``, keystone seeded through its API (glance's catalog endpoint on
    ``glance_url``, the management address), glance's service user made and images uploaded
    through glance's API, both left serving."""
    from scripts.lab import fullstack
    from scripts.lab.controller import make_controller, seed_keystone

    db = HostMariaDB(p["address"])
    db.start()
    _db_admin(db, p["db_admin_password"])
    venv_root = Path(p["venv_root"])
    ctl = make_controller(ROOT, p["release"], db, KEYSTONE_PORT, venv_root, bind="0.0.0.0", glance_port=GLANCE_PORT)
    stack = fullstack.build(ROOT, p["release"], db, venv_root, SERVICES, _api(p))
    seed: dict[str, Any] = {}
    if p.get("seed"):
        seed = seed_keystone(ctl, p["admin_password"], p["glance_url"])
        seed.update(fullstack.seed_old(stack, seed, SERVICES))
    svc.start(ROOT, "whoami")
    return {"seed": seed}


def start(p: dict[str, Any]) -> dict[str, Any]:
    """MariaDB, the ``units`` asked for (those that ran when the snapshot was taken) that are enabled, as a
    booting host would, and the probe."""
    HostMariaDB(p["address"]).start()
    svc.boot(ROOT, list(p.get("units", ())))
    svc.start(ROOT, "whoami")
    return {}


def stop(p: dict[str, Any]) -> dict[str, Any]:
    """Stop the services and MariaDB cleanly (for a consistent snapshot); says which units ran."""
    running = [u for u in reversed(UNITS) if svc.stop(ROOT, u)]
    svc.stop(ROOT, "whoami")
    HostMariaDB("127.0.0.1").stop()
    return {"running": running[::-1]}


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
