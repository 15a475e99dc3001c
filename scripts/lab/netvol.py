"""What neutron and cinder served for real on a lab controller tree share: their settings (the API
port and broker port both controllers share, standing for the management address; the service user's
and the broker's passwords), the unit supervision (pid file and command line, readiness as a
condition, as ``scripts.lab.heatlab`` does for heat), the keystone registration, and the lab's hooks:
what a service's plan section tells the tool (the hooks that pick the served services are in
``scripts.lab.served``).

A controller tree serves a service for real once its descriptor (``neutron-lab.json``,
``cinder-lab.json``) exists: the unit supervisor (``scripts.lab.units``) then hands that service's
units to ``scripts.lab.neutronlab`` or ``scripts.lab.cinderlab``; without it they are stand-ins.
In the local lab each service brings its own RabbitMQ (``rabbitmq-neutron``, ``rabbitmq-cinder``:
``scripts.lab.rabbit`` with its own node and directories) that belongs to the management address and
moves with it. On a multi-host lab's controller (``scripts.lab.netvolhost``: the tree is the host's
``/``) they share the controller's one broker, each with a user and vhost of its own; the broker is the
host's, not a unit of theirs, and the descriptor says which it is.

Nothing secret reaches a command line or a descriptor: passwords live in the service's 0640 config
and the broker's 0600 config; the descriptors hold ports only.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scripts.lab import ksapi, layout, proc, rabbit
from scripts.lab.proc import (
    LabError,
    http_answers,
    pid_alive,
    port_open,
    read_pid,
    session_connected,
    terminate,
)

WSGI = Path(__file__).resolve().with_name("netvol_wsgi.py")
#: a bound, never a wait: a controller starts its units side by side, which share the cores
START_TIMEOUT = 300.0
STOP_TIMEOUT = 20.0
REGION = "RegionOne"


@dataclass(frozen=True)
class Settings:
    """What both controllers' copies of one service share: the keystone port, the API port and the
    broker's AMQP port (the management address), the service user's and the broker's passwords. Kept by
    the caller in a private place (the lab's 0600 state), never printed."""

    keystone_port: int
    api_port: int
    mq_port: int
    password: str
    mq_password: str
    #: where the API listens: loopback, or every address of a multi-host lab's controller
    bind: str = "127.0.0.1"
    #: the address the catalog's endpoints name (the management address; loopback stands for it locally)
    public: str = "127.0.0.1"
    #: the broker login: the service's own broker's one user, or a user and vhost of a shared broker
    mq_user: str = rabbit.USER
    mq_vhost: str = "/"
    #: the port the catalog's endpoints name, where a load balancer serves the API on the management address
    #: (the HA lab's HAProxy on its VIP) while each controller's listens on ``api_port``; 0: ``api_port``
    public_port: int = 0

    @classmethod
    def new(cls, keystone_port: int, api_port: int, mq_port: int, **kw: str) -> Settings:
        return cls(keystone_port, api_port, mq_port, secrets.token_urlsafe(12), secrets.token_urlsafe(12), **kw)

    @property
    def transport_url(self) -> str:
        """Loopback: a controller's services reach their broker on their own host (valid on both controllers)."""
        return rabbit.transport_url(self.mq_port, self.mq_password, self.mq_user, self.mq_vhost)

    @property
    def keystone(self) -> str:
        return f"http://127.0.0.1:{self.keystone_port}"

    @property
    def api_url(self) -> str:
        """The API's root: GET answers its version list (what the tool verifies)."""
        return f"http://127.0.0.1:{self.api_port}/"


def authtoken(s: Settings, user: str) -> str:
    """``[keystone_authtoken]`` of a service behind the lab keystone."""
    return f"""[keystone_authtoken]
www_authenticate_uri = {s.keystone}/v3
auth_url = {s.keystone}
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = {user}
password = {s.password}
"""


class Served:
    """One service served for real on lab controller trees: its units in stop order (the broker last:
    the tool starts them in reverse), how each is started and found, when each is ready. Subclasses
    (``neutronlab.Neutron``, ``cinderlab.Cinder``) say what differs."""

    name: str = ""
    units: tuple[str, ...] = ()
    #: (service name, type, endpoint path after the port) registered in the keystone catalog
    catalog: tuple[tuple[str, str, str], ...] = ()

    @property
    def broker(self) -> str:
        return f"rabbitmq-{self.name}"

    @property
    def descriptor(self) -> str:
        return f"{self.name}-lab.json"

    def descriptor_path(self, root: Path) -> Path:
        """``ROOT/<name>-lab.json``; on a multi-host lab's host (its tree is ``/``) in its own ``/etc``, as
        ``layout.descriptor_path`` keeps lab.json."""
        return layout.descriptor_path(Path(root)).with_name(self.descriptor)

    def _desc(self, root: Path) -> dict[str, Any]:
        try:
            return json.loads(self.descriptor_path(root).read_text())
        except (OSError, ValueError) as exc:
            raise LabError(f"{root} has no lab {self.name} ({self.descriptor}: {exc})") from exc

    def shared_broker(self, root: Path) -> tuple[rabbit.Broker, str] | None:
        """The host's broker and this service's vhost there, when the tree shares one (else None: its own)."""
        b = self._desc(root).get("broker")
        return (rabbit.broker(Path(b["root"]), b["unit"]), b["vhost"]) if b else None

    def tree_units(self, root: Path) -> tuple[str, ...]:
        """The units the tree runs, in stop order: without the broker where the tree shares the host's."""
        return tuple(u for u in self.units if u != self.broker or not self._desc(root).get("broker"))

    def conf_files(self, root: Path) -> list[Path]:
        raise NotImplementedError

    def argv(self, root: Path, unit: str) -> list[str]:
        """The unit's command line (the API: the WSGI launcher; the rest: the release's own script)."""
        raise NotImplementedError

    def rpc_queue(self, root: Path, unit: str) -> str:
        """The RPC topic a non-API unit consumes once it is ready."""
        raise NotImplementedError

    # ------------------------------------------------------------------ files
    def installed(self, root: Path) -> bool:
        return self.descriptor_path(root).exists()

    def owns(self, root: Path, unit: str) -> bool:
        return unit in self.units and self.installed(root) and unit in self.tree_units(root)

    def api_port(self, root: Path) -> int:
        try:
            return int(self._desc(root)["api_port"])
        except (KeyError, ValueError) as exc:
            raise LabError(f"{root} has no lab {self.name} ({self.descriptor}: {exc})") from exc

    def venv(self, root: Path) -> Path:
        return Path(layout.read_descriptor(root).venv)

    def config_args(self, root: Path) -> list[str]:
        return [a for f in self.conf_files(root) for a in ("--config-file", str(f))]

    def api_argv(self, root: Path) -> list[str]:
        bind = self._desc(root).get("bind", "127.0.0.1")
        return [str(self.venv(root) / "bin" / "python"), str(WSGI), self.name, bind, str(self.api_port(root)),
                *self.config_args(root)]

    def install_broker(self, root: Path, s: Settings, dist_port: int, shared: rabbit.Broker | None) -> None:
        """Last of the files: the service's own broker's (unless it shares *shared*, the host's, where its
        login exists), then the descriptor: with it, the unit supervisor takes this service's units of the tree."""
        data: dict[str, Any] = {"api_port": s.api_port}
        if s.bind != "127.0.0.1":
            data["bind"] = s.bind
        if shared is None:
            rabbit.install(root, s.mq_port, dist_port, s.mq_password, unit=self.broker)
        else:
            data["broker"] = {"root": str(shared.root), "unit": shared.unit, "vhost": s.mq_vhost}
        self.descriptor_path(root).write_text(json.dumps(data) + "\n")

    # ------------------------------------------------------------------ units
    def is_api(self, unit: str) -> bool:
        return unit == self.units[0]

    def marker(self, unit: str) -> tuple[str, ...]:
        return (WSGI.name, self.name) if self.is_api(unit) else (unit,)

    def pid(self, root: Path, unit: str) -> int | None:
        p = read_pid(layout.pid_file(root, unit))
        return p if pid_alive(p, self.marker(unit)) else None

    def ready(self, root: Path, unit: str) -> bool:
        if self.is_api(unit):
            return http_answers(self.api_port(root))
        # connected to its broker (read in /proc), then the broker's word that it consumes its topic
        broker, vhost = self.shared_broker(root) or (rabbit.broker(root, self.broker), "/")
        p = self.pid(root, unit)
        return (p is not None and session_connected(p, broker.port)
                and rabbit.consumers(broker.root, self.rpc_queue(root, unit), broker.unit, vhost) > 0)

    def start(self, root: Path, unit: str) -> None:
        """Start *unit* detached and wait until it is ready (no-op if it runs)."""
        root = Path(root).resolve()
        if unit == self.broker:
            rabbit.start(root, unit)
            return
        if self.pid(root, unit):
            return
        if self.is_api(unit) and port_open(self.api_port(root)):
            raise LabError(f"{unit}: 127.0.0.1:{self.api_port(root)} is already in use by another process")
        log = layout.log_dir(root, self.name) / f"{unit}.out"
        # an RPC unit's probe is a rabbitmqctl call (an Erlang VM of its own): ask less often than an API
        proc.launch(unit, self.argv(root, unit), layout.pid_file(root, unit), log, lambda: self.ready(root, unit),
                    mark=f"--- lab {self.name} start ".encode(), timeout=START_TIMEOUT, stop_timeout=STOP_TIMEOUT,
                    cwd=root, poll=0.3 if self.is_api(unit) else 1.0, own_logs=(log.with_suffix(".log"),))

    def stop(self, root: Path, unit: str) -> None:
        root = Path(root).resolve()
        if unit == self.broker:
            rabbit.stop(root, unit)
            return
        p = self.pid(root, unit)
        if p:
            terminate(p, STOP_TIMEOUT)
        layout.pid_file(root, unit).unlink(missing_ok=True)

    def alive(self, root: Path, unit: str) -> bool:
        root = Path(root).resolve()
        if unit == self.broker:
            return rabbit.pid(rabbit.broker(root, unit)) is not None
        return self.pid(root, unit) is not None

    def status(self, root: Path, unit: str) -> bool:
        """Running (the broker: and accepting AMQP; the API: and answering)."""
        root = Path(root).resolve()
        if unit == self.broker:
            return rabbit.status(root, unit)
        if not self.pid(root, unit):
            return False
        return not self.is_api(unit) or self.ready(root, unit)

    # ------------------------------------------------------------------ keystone and the plan
    def register(self, s: Settings, admin_token: str) -> dict[str, str]:
        """Through the keystone API: project ``service`` (if missing), the service user (admin there),
        the catalog services with public/internal/admin endpoints on the shared port of the management
        address. Returns their ids."""
        url, token = f"{s.keystone}/v3", admin_token
        out = {f"{self.name}_user_id": ksapi.service_user(url, token, self.name, s.password)}
        for name, kind, path in self.catalog:
            out[f"{kind}_service_id"] = ksapi.catalog_service(url, token, name, kind,
                                                              f"http://{s.public}:{s.public_port or s.api_port}{path}",
                                                              REGION)
        return out

    def plan_lines(self, root: Path, verify_host: str = "127.0.0.1") -> str:
        """What a lab plan's ``[services.<name>]`` says when the tree serves this service for real: its
        units (its own broker last: it moves with the service) and the API the verify step asks (on
        *verify_host*: the new controller as the tool reaches it)."""
        return (f"units = {json.dumps(list(self.tree_units(root)))}\n"
                f'verify_url = "http://{verify_host}:{self.api_port(root)}/"\n')


def settings_dict(s: Settings) -> dict[str, Any]:
    return asdict(s)
