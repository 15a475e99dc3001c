"""Placement and nova served for real on a local lab controller tree (``python -m scripts.lab up``),
and a lab compute host beside the controllers.

On each controller: ``placement-api`` and ``nova-api`` (the releases' own WSGI applications,
``placement.wsgi.api`` and ``nova.wsgi.osapi_compute``, through ``placement_wsgi.py`` and
``nova_wsgi.py``: the 2025.2/2026.1 venvs ship no nova-api script), ``nova-conductor``,
``nova-scheduler``, and nova's own RabbitMQ (``rabbitmq-nova``, ``scripts.lab.rabbit``). Configured as
devstack's lib/nova and lib/placement do (``[keystone_authtoken]``, ``[service_user]``,
``[placement]`` with the ``placement`` service user, cells v2 with map_cell0, create_cell and,
once the compute reported, discover_hosts), on the lab's shared ports: like keystone's, they stand
for the management address, so the ``compute`` and ``placement`` endpoints of the keystone catalog
and the ``transport_url`` carried over in nova.conf stay valid when nova moves. Only one side serves.

The broker moves with nova: its unit is the last of nova's units (stopped last, started first). In
this lab each RPC service has a broker of its own (heat's, nova's; neutron and cinder get theirs the
same way): a real deployment may split its brokers per service like this, or share one.

The compute host (``COMPUTE_HOST``, its own tree beside the controllers' ``DIR/compute-1``) runs
nova-compute of the old release with nova's fake driver; it is no unit of a controller (the
upgrade tool never stops it): it talks RPC to nova's broker on the shared port, so it reconnects to
the new controller's broker when nova moves, and reaches placement through the catalog's port.

Readiness is a condition: the APIs answer HTTP, conductor and scheduler consume their RPC topic,
the compute's node is in the database. Secrets live only in the 0640 nova.conf/placement.conf and
the broker's 0600 config; ``nova-lab.json`` holds ports only.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scripts.lab import ksapi, layout, novaconf, rabbit
from scripts.lab.proc import (
    LabError,
    clean_env,
    http_answers,
    pid_alive,
    port_open,
    read_pid,
    session_connected,
    terminate,
)

if TYPE_CHECKING:  # the unit supervisor imports this module: no pymysql at run time
    from scripts.lab.mariadb import MariaDB

#: nova's broker on a controller tree (its directories and unit)
BROKER = "rabbitmq-nova"
#: the units this module runs on a controller tree (the rest of nova's, nova-metadata, stays a stand-in:
#: neutron's metadata agent serves metadata in the lab's plan)
UNITS = ("placement-api", "nova-api", "nova-conductor", "nova-scheduler", BROKER)
#: the RPC servers and the topic each consumes once it serves
TOPICS = {"nova-conductor": "conductor", "nova-scheduler": "scheduler"}
DESCRIPTOR = "nova-lab.json"
PLACEMENT_WSGI = Path(__file__).resolve().with_name("placement_wsgi.py")
NOVA_WSGI = Path(__file__).resolve().with_name("nova_wsgi.py")
COMPUTE_HOST = "lab-compute-1"
COMPUTE_DIR = "compute-1"
REGION = "RegionOne"


@dataclass(frozen=True)
class Settings:
    """What both controllers' nova and placement share: the ports (standing for the management address),
    the service users' and the broker's passwords. Kept in the lab's 0600 state, never printed."""

    keystone_port: int
    placement_port: int
    api_port: int
    mq_port: int
    nova_password: str
    placement_password: str
    mq_password: str
    #: the management address: the catalog's endpoints and what a compute host talks to (the local lab's
    #: shared loopback ports stand for it; a multi-host lab names its VIP)
    address: str = "127.0.0.1"
    #: where the APIs and the broker listen: loopback, or every address of a multi-host lab's controller
    bind: str = "127.0.0.1"
    #: behind a load balancer on the management address (the HA lab's HAProxy on its VIP): the ports it serves
    #: keystone, placement, nova's API and AMQP on there, while each controller's own listen on the ports
    #: above; empty where the management address reaches the controller's own ports
    front: tuple[int, ...] = ()
    #: the broker unit of each controller nova's RPC uses: nova's own (:data:`BROKER`, a unit of nova's that
    #: moves with it), or the controller's node of a broker cluster that is no unit of nova's (the HA lab's
    #: ``rabbitmq-server``, on ``mq_port`` of every controller, behind the VIP for the compute hosts)
    broker: str = BROKER

    def __post_init__(self) -> None:
        object.__setattr__(self, "front", tuple(self.front))  # read back from the lab's JSON state: a list

    @classmethod
    def new(cls, keystone_port: int, placement_port: int, api_port: int, mq_port: int) -> Settings:
        return cls(keystone_port, placement_port, api_port, mq_port, secrets.token_urlsafe(12),
                   secrets.token_urlsafe(12), secrets.token_urlsafe(12))

    @property
    def keystone(self) -> str:
        """The keystone a controller's own nova and placement ask: the one on the same controller."""
        return f"http://127.0.0.1:{self.keystone_port}"

    @property
    def management_keystone(self) -> str:
        """The keystone a compute host asks: on the management address."""
        return f"http://{self.address}:{self.front[0] if self.front else self.keystone_port}"

    @property
    def transport_url(self) -> str:
        return rabbit.transport_url(self.mq_port, self.mq_password)

    @property
    def management_transport_url(self) -> str:
        """The broker as a compute host names it: on the management address."""
        port = self.front[3] if self.front else self.mq_port
        return f"rabbit://{rabbit.USER}:{self.mq_password}@{self.address}:{port}/"

    @property
    def api_url(self) -> str:
        """The compute API's root: GET answers its version list without a token (what the tool verifies)."""
        return f"http://127.0.0.1:{self.api_port}/"

    @property
    def placement_url(self) -> str:
        return f"http://127.0.0.1:{self.placement_port}/"


def settings(state: dict[str, Any]) -> Settings | None:
    """The lab's nova settings from its state, or None where nova is a stand-in."""
    return Settings(**state["nova"]) if state.get("nova") else None


def settings_dict(s: Settings) -> dict[str, Any]:
    return asdict(s)


# ---------------------------------------------------------------------- configs
def _auth_sections(s: Settings) -> str:
    ks = s.keystone
    # placement: the controller's own (the catalog's is on the management address, which reaches the new
    # controller only once the run moved it: nova-status on the new one asks placement before that)
    return (novaconf.password_auth("keystone_authtoken", ks, "nova", s.nova_password, f"www_authenticate_uri = {ks}/v3")
            + novaconf.password_auth("service_user", ks, "nova", s.nova_password, "send_service_user_token = true")
            + novaconf.password_auth("placement", ks, "placement", s.placement_password,
                                     f"endpoint_override = http://127.0.0.1:{s.placement_port}")
            + _neutron(s, ks) + f"\n[api]\nauth_strategy = keystone\n\n[cinder]\nos_region_name = {REGION}\n")


def _neutron(s: Settings, keystone: str) -> str:
    """``[neutron]``: nova's admin client of the network API (a compute asks it for a server's ports even
    with ``--nic none``), as nova's service user; the endpoint from the catalog."""
    return novaconf.password_auth("neutron", keystone, "nova", s.nova_password)


def controller_conf(root: Path, release: str, s: Settings, api_db: str, main_db: str) -> str:
    """nova.conf of a lab controller (no ``host``: nova takes the machine's name, as on a real host)."""
    return novaconf.nova_conf(f"nova.conf of the lab controller {root} ({release}), as devstack's lib/nova writes it",
                              transport_url=s.transport_url, state_path=layout.var_lib(root, "nova"),
                              db=(api_db, main_db), sections=_auth_sections(s))


def placement_conf(root: Path, release: str, s: Settings, db: str) -> str:
    ks = s.keystone
    return (f"# placement.conf of the lab controller {root} ({release}), as devstack's lib/placement writes it\n"
            f"[DEFAULT]\n\n[api]\nauth_strategy = keystone\n\n[placement_database]\nconnection = {db}\n"
            + novaconf.password_auth("keystone_authtoken", ks, "placement", s.placement_password,
                                     f"www_authenticate_uri = {ks}/v3"))


def install(root: Path, venv: Path, db: MariaDB | None, s: Settings, dist_port: int) -> None:
    """What a controller tree needs beyond its configs (``scripts.lab.openstack`` writes them) to serve
    nova and placement: the release's api-paste.ini, nova's broker (not started; none where the controllers
    share one), the descriptor, and cell1 mapped to the lab's broker (a schema loaded from a test run's cache
    carries another lab's; no *db*: a controller installed before its database exists, the HA lab's new ones)."""
    root = Path(root).resolve()
    shutil.copyfile(venv / "etc" / "nova" / "api-paste.ini", root / "etc" / "nova" / "api-paste.ini")
    for d in (layout.var_lib(root, "nova") / "tmp", layout.log_dir(root, "nova"), layout.log_dir(root, "placement")):
        d.mkdir(parents=True, exist_ok=True)
    if s.broker == BROKER:
        rabbit.install(root, s.mq_port, dist_port, s.mq_password, bind=s.bind, unit=BROKER)
    if db is not None:
        db.execute("UPDATE cell_mappings SET transport_url=%s WHERE name='cell1'", db="nova_api",
                   args=(s.transport_url,))
    # last: with it, the unit supervisor hands nova's units of this tree to this module
    _descriptor(root).write_text(json.dumps({"placement_port": s.placement_port, "api_port": s.api_port,
                                             "bind": s.bind, "broker": s.broker}) + "\n")


def register(s: Settings, admin_token: str) -> dict[str, str]:
    """Through the keystone API: the ``nova`` and ``placement`` service users (admin in project
    ``service``), the ``compute`` and ``placement`` services with their endpoints on the management address."""
    url, token = f"{s.keystone}/v3", admin_token
    out: dict[str, str] = {}
    # nova's service token must carry the role cinder's [keystone_authtoken] service_token_roles names
    # (``service``, devstack grants it): cinder lets only such a request delete an attachment nova uses
    for user, password in (("nova", s.nova_password), ("placement", s.placement_password)):
        out[f"{user}_user_id"] = ksapi.service_user(url, token, user, password, ("admin", "service"))
    api, placement = s.front[2] if s.front else s.api_port, s.front[1] if s.front else s.placement_port
    for name, kind, endpoint in (("nova", "compute", f"http://{s.address}:{api}/v2.1"),
                                 ("placement", "placement", f"http://{s.address}:{placement}")):
        out[f"{kind}_service_id"] = ksapi.catalog_service(url, token, name, kind, endpoint, REGION)
    return out


# ---------------------------------------------------------------------- the controller's units
def _descriptor(root: Path) -> Path:
    """``ROOT/nova-lab.json``; on a multi-host lab host (root ``/``) in its own /etc, as ``layout`` keeps lab.json."""
    return layout.descriptor_path(root).with_name(DESCRIPTOR)


def installed(root: Path) -> bool:
    return _descriptor(root).exists()


def owns(root: Path, unit: str) -> bool:
    """Whether the lab's unit supervisor hands *unit* of the controller at *root* to this module."""
    return unit in UNITS and installed(root)


def _ports(root: Path) -> dict[str, Any]:
    try:
        return json.loads(_descriptor(root).read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"{root} has no lab nova ({DESCRIPTOR}: {exc})") from exc


def _port(root: Path, unit: str) -> int:
    return _ports(root)["placement_port" if unit == "placement-api" else "api_port"]


def _bind(root: Path) -> str:
    return _ports(root).get("bind", "127.0.0.1")


def _argv(root: Path, unit: str) -> tuple[list[str], dict[str, str]]:
    venv = Path(layout.read_descriptor(root).venv)
    if unit == "placement-api":
        return ([str(venv / "bin" / "python"), str(PLACEMENT_WSGI), _bind(root), str(_port(root, unit))],
                {"OS_PLACEMENT_CONFIG_DIR": str(root / "etc" / "placement")})
    if unit == "nova-api":
        return ([str(venv / "bin" / "python"), str(NOVA_WSGI), _bind(root), str(_port(root, unit))],
                {"OS_NOVA_CONFIG_DIR": str(root / "etc" / "nova")})
    return [str(venv / "bin" / unit), "--config-file", str(root / "etc" / "nova" / "nova.conf")], {}


def _marker(unit: str) -> tuple[str, ...]:
    return {"placement-api": (PLACEMENT_WSGI.name,), "nova-api": (NOVA_WSGI.name,)}.get(unit, (f"bin/{unit}",))


def _pid_file(root: Path, unit: str) -> Path:
    return layout.pid_file(root, unit)


def pid(root: Path, unit: str) -> int | None:
    p = read_pid(_pid_file(root, unit))
    return p if pid_alive(p, _marker(unit)) else None


def tree_units(names: list[str], s: Settings) -> list[str]:
    """*names* (a controller tree's units) without nova's broker where nova uses another."""
    return [u for u in names if u != BROKER or s.broker == BROKER]


def _ready(root: Path, unit: str) -> bool:
    if unit in TOPICS:  # connected to its broker (cheap), then it consumes its RPC topic: calls and casts reach it
        p, broker = pid(root, unit), _ports(root).get("broker", BROKER)
        return (p is not None and session_connected(p, rabbit.broker(root, broker).port)
                and rabbit.consumers(root, TOPICS[unit], broker) > 0)
    return http_answers(_port(root, unit))


def start(root: Path, unit: str) -> None:
    """Start *unit* detached and wait until it is ready (no-op if it runs)."""
    root = Path(root).resolve()
    if unit == BROKER:
        rabbit.start(root, BROKER)
        return
    if pid(root, unit):
        return
    if unit not in TOPICS and port_open(_port(root, unit)):
        raise LabError(f"{unit}: 127.0.0.1:{_port(root, unit)} is already in use by another process")
    argv, env = _argv(root, unit)
    log = layout.log_dir(root, "placement" if unit == "placement-api" else "nova") / f"{unit}.out"
    # the RPC probe is a rabbitmqctl call (an Erlang VM of its own): asked less often than an API
    novaconf.launch(unit, argv, _pid_file(root, unit), log, lambda: _ready(root, unit), env=env, cwd=root,
                    poll=1.0 if unit in TOPICS else 0.3)


def stop(root: Path, unit: str) -> None:
    root = Path(root).resolve()
    if unit == BROKER:
        rabbit.stop(root, BROKER)
        return
    p = pid(root, unit)
    if p:
        terminate(p, novaconf.STOP_TIMEOUT)
    _pid_file(root, unit).unlink(missing_ok=True)


def alive(root: Path, unit: str) -> bool:
    root = Path(root).resolve()
    if unit == BROKER:
        return rabbit.pid(rabbit.broker(root, BROKER)) is not None
    return pid(root, unit) is not None


def status(root: Path, unit: str) -> bool:
    """Running (the broker: and accepting AMQP; an API: and answering)."""
    root = Path(root).resolve()
    if unit == BROKER:
        return rabbit.status(root, BROKER)
    if not pid(root, unit):
        return False
    return unit in TOPICS or http_answers(_port(root, unit))


# ---------------------------------------------------------------------- the lab's compute host
def compute_conf(title: str, host: str, state_path: Path, s: Settings) -> str:
    """nova.conf of a compute host: the broker, keystone and (through the catalog) placement and the network
    API on the management address, so that it reports to whichever controller holds that address."""
    ks = s.management_keystone
    return novaconf.nova_conf(title, transport_url=s.management_transport_url, state_path=state_path, host=host,
                              report_interval=2, compute=True,
                              sections=novaconf.password_auth("placement", ks, "placement", s.placement_password)
                              + novaconf.password_auth("service_user", ks, "nova", s.nova_password,
                                                       "send_service_user_token = true") + _neutron(s, ks))


def compute_install(tree: Path, venv: Path, release: str, s: Settings) -> None:
    """The compute host's tree: its nova.conf (0640) and which venv it runs (``compute.json``)."""
    tree = Path(tree).resolve()
    for d in (tree / "var" / "lib" / "nova" / "tmp", tree / "var" / "log" / "nova", tree / "run"):
        d.mkdir(parents=True, exist_ok=True)
    novaconf.write_private(tree / "etc" / "nova" / "nova.conf",
                           compute_conf(f"nova.conf of the lab compute host {COMPUTE_HOST} ({release})", COMPUTE_HOST,
                                        tree / "var" / "lib" / "nova", s))
    (tree / "compute.json").write_text(json.dumps({"venv": str(venv), "host": COMPUTE_HOST}) + "\n")


def compute_pid(tree: Path) -> int | None:
    p = read_pid(Path(tree) / "run" / "nova-compute.pid")
    return p if pid_alive(p, ("bin/nova-compute",)) else None


def compute_start(tree: Path) -> int:
    """nova-compute of the compute host, started and waited for (nova's own start line)."""
    tree = Path(tree).resolve()
    if (running := compute_pid(tree)) is not None:
        return running
    venv = Path(json.loads((tree / "compute.json").read_text())["venv"])
    log = tree / "var" / "log" / "nova" / "nova-compute.out"
    return novaconf.launch("nova-compute", [str(venv / "bin" / "nova-compute"), "--config-file",
                                            str(tree / "etc" / "nova" / "nova.conf")],
                           tree / "run" / "nova-compute.pid", log, lambda: novaconf.started_line(log, "nova-compute"),
                           cwd=tree)


def compute_stop(tree: Path) -> bool:
    p = compute_pid(tree)
    if p:
        terminate(p, novaconf.STOP_TIMEOUT)
    (Path(tree) / "run" / "nova-compute.pid").unlink(missing_ok=True)
    return p is not None


def discover(root: Path, db: MariaDB, timeout: float = 180.0, hosts: tuple[str, ...] = (COMPUTE_HOST,)) -> str:
    """Once every compute host's node is in the controller's nova database (the compute registered it
    through the conductor), map them into cell1 with ``nova-manage cell_v2 discover_hosts``; the first's uuid."""
    deadline = time.monotonic() + timeout
    while True:
        rows = db.execute("SELECT host, uuid FROM compute_nodes WHERE host IN %s AND deleted=0", db="nova",
                          args=(hosts,))
        found = dict(rows)
        if set(found) == set(hosts):
            break
        if time.monotonic() > deadline:
            raise LabError(f"{', '.join(sorted(set(hosts) - set(found)))} registered no compute node within "
                           f"{timeout:.0f} s")
        time.sleep(0.5)
    venv = Path(layout.read_descriptor(root).venv)
    res = subprocess.run([str(venv / "bin" / "nova-manage"), "--config-file", str(root / "etc" / "nova" / "nova.conf"),
                          "cell_v2", "discover_hosts"], env=clean_env(), capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, cwd=root)
    if res.returncode != 0:
        raise LabError(f"nova-manage cell_v2 discover_hosts rc {res.returncode}: {(res.stdout + res.stderr)[-2000:]}")
    return str(found[hosts[0]])


def plan_keys(s: Settings) -> dict[str, str]:
    """``verify_url`` of the lab plan's placement and nova tables: the APIs' roots on the shared ports."""
    return {"placement": s.placement_url, "nova": s.api_url}
