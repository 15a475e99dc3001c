"""Heat (orchestration) on a lab controller tree, served for real: heat-api, heat-api-cfn and
heat-engine of the controller's release, talking RPC through the controller's own RabbitMQ
(``scripts.lab.rabbit``), behind the lab keystone, in its catalog.

Configured as devstack's lib/heat did: ``[database]``, ``transport_url``, ``[keystone_authtoken]``,
``[trustee]``, ``[clients_keystone]``, ``[ec2authtoken]``, a 32-character ``auth_encryption_key``
(the same on both controllers: the config is carried over, and heat encrypts resource data with it),
and the stack user domain ``heat`` with its admin ``heat_domain_admin`` made through the keystone API
(what ``heat-keystone-setup-domain`` does). The ``orchestration`` and ``cloudformation`` services are
in the catalog on the lab's shared ports, which stand for the management address (in a real cloud:
8004 and 8000), so the catalog stays valid when the new controller takes over.

The units, in the order they stop (started in reverse): ``heat-api``, ``heat-api-cfn``,
``heat-engine``, ``rabbitmq-server``. The broker belongs to the management address like the APIs
do, and heat is the only RPC service the lab serves, so it moves with heat. Readiness is a
condition: the APIs answer HTTP, heat-engine consumes its RPC topic on the broker. A unit is found
again only through its pid file and command line (``scripts.lab.proc``).

Nothing secret reaches a command line: passwords and the key live in ``heat.conf`` (0640 under the
tree, as a package installs it) and in the broker's 0600 config; ``heat-lab.json`` holds ports only.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scripts.lab import ksapi, layout, osclient, proc, rabbit
from scripts.lab.proc import (
    LabError,
    clean_env,
    http_answers,
    pid_alive,
    port_open,
    read_pid,
    terminate,
)

if TYPE_CHECKING:  # the unit supervisor imports this module: no pymysql at run time
    from scripts.lab.mariadb import MariaDB

NAME = "heat"
#: stop order (the tool starts them in reverse: the broker first)
UNITS = ("heat-api", "heat-api-cfn", "heat-engine", rabbit.UNIT)
DESCRIPTOR = "heat-lab.json"
WSGI = Path(__file__).resolve().with_name("heat_wsgi.py")
START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
DOMAIN = "heat"
DOMAIN_ADMIN = "heat_domain_admin"
STACK_USER_ROLE = "heat_stack_user"
REGION = "RegionOne"


@dataclass(frozen=True)
class Settings:
    """What both controllers' heat share: ports (standing for the management address), the service
    and domain-admin passwords, the DB and broker passwords, the encryption key. Kept by the caller
    in a private place (the lab's 0600 state), never printed."""

    keystone_port: int
    api_port: int
    cfn_port: int
    mq_port: int
    password: str
    domain_admin_password: str
    db_password: str
    mq_password: str
    auth_encryption_key: str

    @classmethod
    def new(cls, keystone_port: int, api_port: int, cfn_port: int, mq_port: int) -> Settings:
        """Random secrets; the key is 32 characters (16 random bytes as hex, as devstack makes it)."""
        return cls(keystone_port, api_port, cfn_port, mq_port, secrets.token_urlsafe(12), secrets.token_urlsafe(12),
                   secrets.token_urlsafe(12), secrets.token_urlsafe(12), secrets.token_hex(16))

    @property
    def keystone(self) -> str:
        return f"http://127.0.0.1:{self.keystone_port}"

    @property
    def api_url(self) -> str:
        """The orchestration API's root: GET answers the version list (what the tool verifies)."""
        return f"http://127.0.0.1:{self.api_port}/"


def conf_path(root: Path) -> Path:
    return root / "etc" / NAME / "heat.conf"


def installed(root: Path) -> bool:
    """Whether the controller at *root* has the lab's heat (its descriptor)."""
    return (Path(root) / DESCRIPTOR).exists()


def _ports(root: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(root) / DESCRIPTOR).read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"{root} has no lab heat ({DESCRIPTOR}: {exc})") from exc


def _conf_text(root: Path, release: str, db: MariaDB, s: Settings) -> str:
    lib, log = layout.var_lib(root, NAME), layout.log_dir(root, NAME)
    ks = s.keystone
    return f"""\
# heat.conf of the lab controller {root} ({release}), as devstack's lib/heat configures it
[DEFAULT]
log_dir = {log}
transport_url = {rabbit.transport_url(s.mq_port, s.mq_password)}
auth_encryption_key = {s.auth_encryption_key}
region_name_for_services = {REGION}
num_engine_workers = 1
deferred_auth_method = trusts
stack_user_domain_name = {DOMAIN}
stack_domain_admin = {DOMAIN_ADMIN}
stack_domain_admin_password = {s.domain_admin_password}
heat_metadata_server_url = http://127.0.0.1:{s.cfn_port}
heat_waitcondition_server_url = http://127.0.0.1:{s.cfn_port}/v1/waitcondition

[database]
connection = mysql+pymysql://heat:{s.db_password}@127.0.0.1:{db.port}/heat

[keystone_authtoken]
www_authenticate_uri = {ks}/v3
auth_url = {ks}
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = heat
password = {s.password}

[trustee]
auth_type = password
auth_url = {ks}
username = heat
password = {s.password}
user_domain_name = Default

[clients_keystone]
auth_uri = {ks}

[ec2authtoken]
auth_uri = {ks}/v3

[heat_api]
workers = 1

[heat_api_cfn]
workers = 1

[oslo_concurrency]
lock_path = {lib}/lock
"""


def install(root: Path, release: str, venv: Path, db: MariaDB, s: Settings, dist_port: int) -> None:
    """Heat on a controller tree, not started: its DB and user, heat.conf and the release's paste
    pipeline, the broker's files, and the release's own schema (``heat-manage db_sync``)."""
    root = Path(root).resolve()
    if not (venv / "bin" / "heat-manage").exists():
        raise LabError(f"no heat in the venv {venv}; build it with: scripts/build-venv {release}")
    etc = conf_path(root).parent
    for d in (etc, layout.var_lib(root, NAME) / "lock", layout.log_dir(root, NAME), layout.run_dir(root)):
        d.mkdir(parents=True, exist_ok=True)
    fd = os.open(conf_path(root), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as f:
        f.write(_conf_text(root, release, db, s))
    shutil.copyfile(venv / "etc" / NAME / "api-paste.ini", etc / "api-paste.ini")
    rabbit.install(root, s.mq_port, dist_port, s.mq_password)
    # last of the files: with it, the unit supervisor takes heat's units (and the broker) of this tree
    (root / DESCRIPTOR).write_text(json.dumps({"api_port": s.api_port, "cfn_port": s.cfn_port}) + "\n")
    db.start()
    db.execute("CREATE DATABASE IF NOT EXISTS heat")
    db.execute("GRANT ALL PRIVILEGES ON heat.* TO 'heat'@'127.0.0.1' IDENTIFIED BY %s", args=(s.db_password,))
    res = subprocess.run([str(venv / "bin" / "heat-manage"), "--config-file", str(conf_path(root)), "db_sync"],
                         env=clean_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=root)
    if res.returncode != 0:
        raise LabError(f"heat-manage db_sync ({release}) rc {res.returncode}:\n{(res.stdout + res.stderr)[-3000:]}")


def register(s: Settings, admin_token: str) -> dict[str, str]:
    """Through the keystone API: project ``service`` (if missing), the ``heat`` service user (admin
    there), the stack user domain with its admin, the ``heat_stack_user`` role, and the orchestration
    and cloudformation services with their endpoints. Returns the ids the checks compare."""
    url, token = f"{s.keystone}/v3", admin_token

    admin = ksapi.find_or_create(url, token, "roles", "admin", {"name": "admin"})
    ksapi.find_or_create(url, token, "roles", STACK_USER_ROLE, {"name": STACK_USER_ROLE})
    user = ksapi.service_user(url, token, "heat", s.password)
    domain = ksapi.call("POST", f"{url}/domains", token, {"domain": {
        "name": DOMAIN, "description": "Owns users and projects created by heat"}})["domain"]["id"]
    dadmin = ksapi.call("POST", f"{url}/users", token, {"user": {"name": DOMAIN_ADMIN, "domain_id": domain,
                                                                 "password": s.domain_admin_password}})["user"]["id"]
    ksapi.call("PUT", f"{url}/domains/{domain}/users/{dadmin}/roles/{admin}", token)
    out = {"heat_user_id": user, "heat_domain_id": domain}
    for name, kind, endpoint in (("heat", "orchestration", f"http://127.0.0.1:{s.api_port}/v1/$(project_id)s"),
                                 ("heat-cfn", "cloudformation", f"http://127.0.0.1:{s.cfn_port}/v1")):
        out[f"{kind}_service_id"] = ksapi.catalog_service(url, token, name, kind, endpoint, REGION)
    return out


# ---------------------------------------------------------------------- the units
def _pid_file(root: Path, unit: str) -> Path:
    return layout.pid_file(root, unit)


def _argv(root: Path, unit: str) -> list[str]:
    venv = Path(layout.read_descriptor(root).venv)
    conf = str(conf_path(root))
    if unit == "heat-engine":
        return [str(venv / "bin" / "heat-engine"), "--config-file", conf]
    ports = _ports(root)
    which, port = ("api", ports["api_port"]) if unit == "heat-api" else ("cfn", ports["cfn_port"])
    return [str(venv / "bin" / "python"), str(WSGI), which, conf, "127.0.0.1", str(port)]


def _marker(unit: str) -> tuple[str, ...]:
    return ("heat-engine",) if unit == "heat-engine" else (WSGI.name, "api" if unit == "heat-api" else "cfn")


def pid(root: Path, unit: str) -> int | None:
    p = read_pid(_pid_file(root, unit))
    return p if pid_alive(p, _marker(unit)) else None


def _ready(root: Path, unit: str) -> bool:
    if unit == "heat-engine":
        return rabbit.consumers(root, "engine") > 0  # it consumes its RPC topic: calls reach it
    ports = _ports(root)
    return http_answers(ports["api_port"] if unit == "heat-api" else ports["cfn_port"])


def start(root: Path, unit: str) -> None:
    """Start *unit* detached and wait until it is ready (no-op if it runs)."""
    root = Path(root).resolve()
    if unit == rabbit.UNIT:
        rabbit.start(root)
        return
    if pid(root, unit):
        return
    if unit != "heat-engine":
        ports = _ports(root)
        port = ports["api_port"] if unit == "heat-api" else ports["cfn_port"]
        if port_open(port):
            raise LabError(f"{unit}: 127.0.0.1:{port} is already in use by another process")
    log = layout.log_dir(root, NAME) / f"{unit}.out"
    # the engine's probe is a rabbitmqctl call (an Erlang VM of its own): ask less often than an API
    proc.launch(unit, _argv(root, unit), _pid_file(root, unit), log, lambda: _ready(root, unit),
                mark=b"--- lab heat start ", timeout=START_TIMEOUT, stop_timeout=STOP_TIMEOUT, cwd=root,
                poll=1.0 if unit == "heat-engine" else 0.3, own_logs=(log.with_suffix(".log"),))


def stop(root: Path, unit: str) -> None:
    root = Path(root).resolve()
    if unit == rabbit.UNIT:
        rabbit.stop(root)
        return
    p = pid(root, unit)
    if p:
        terminate(p, STOP_TIMEOUT)
    _pid_file(root, unit).unlink(missing_ok=True)


def alive(root: Path, unit: str) -> bool:
    root = Path(root).resolve()
    if unit == rabbit.UNIT:
        return rabbit.pid(rabbit.broker(root)) is not None
    return pid(root, unit) is not None


def status(root: Path, unit: str) -> bool:
    """Running (the broker: and accepting AMQP; an API: and answering)."""
    root = Path(root).resolve()
    if unit == rabbit.UNIT:
        return rabbit.status(root)
    if not pid(root, unit):
        return False
    return unit == "heat-engine" or _ready(root, unit)


def owns(root: Path, unit: str) -> bool:
    """Whether the lab's unit supervisor hands *unit* of the controller at *root* to this module."""
    return unit in UNITS and installed(root)


def start_all(root: Path) -> None:
    for unit in reversed(UNITS):
        start(root, unit)


def plan_section(s: Settings) -> str:
    """``[services.heat]`` of a lab plan: the lab's units, verified through the orchestration API."""
    return (f"[services.{NAME}]\n"
            "# the lab's broker stands at the management address and moves with heat (its only RPC user)\n"
            f"units = {json.dumps(list(UNITS))}\n"
            'owner = "root:root"\n'
            'grant_hosts = ["127.0.0.1", "%"]\n'
            f'verify_url = "{s.api_url}"\n\n')


def settings_dict(s: Settings) -> dict[str, Any]:
    return asdict(s)


# ---------------------------------------------------------------------- what a user sees: the real client
#: a stack that needs no other service: a random string (heat keeps it encrypted with
#: auth_encryption_key) and a resource that does nothing; both outputs must read the same after an upgrade
TEMPLATE = """\
heat_template_version: 2018-08-31
description: lab stack (no nova, no neutron)
resources:
  secret:
    type: OS::Heat::RandomString
    properties:
      length: 24
  marker:
    type: OS::Heat::None
outputs:
  secret_value:
    value: {get_attr: [secret, value]}
  marker_id:
    value: {get_resource: marker}
"""


#: the one cloud of the clouds.yaml :func:`write_clouds` makes
CLOUD = "lab"


def write_clouds(path: Path, keystone_url: str, user: str, password: str, project: str) -> Path:
    """A 0600 clouds.yaml with one cloud ``lab`` for *user* in *project*: the password reaches the
    client through this file, never its argv or environment."""
    return osclient.write_clouds(path, keystone_url, {CLOUD: (user, password, project)})


class Client:
    """``openstack ARGS -f json`` of *venv* (python-openstackclient with heatclient) as the clouds.yaml's
    user: its JSON answer, or LabError with the client's own message. One client process kept running
    (``osclient.Shell``: the client's 2-3 s of imports paid once, not per command); :meth:`close` ends it."""

    def __init__(self, venv: Path, clouds: Path) -> None:
        self.shell = osclient.Shell(venv, clouds)

    def __call__(self, *args: str) -> Any:
        return self.shell(CLOUD, *args)

    def close(self) -> None:
        self.shell.close()


def stack_view(stack: dict[str, Any]) -> dict[str, Any]:
    """What must survive an upgrade of a stack as ``openstack stack show`` gives it."""
    return {"id": stack["id"], "stack_name": stack["stack_name"], "stack_status": stack["stack_status"],
            "creation_time": stack["creation_time"],
            "outputs": sorted((o["output_key"], o["output_value"]) for o in stack.get("outputs") or [])}
