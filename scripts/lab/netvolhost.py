"""Neutron and cinder served for real on both controllers of the multi-host lab (``scripts.lab.hosts``).

The local lab's code (``scripts.lab.neutronlab``, ``cinderlab`` on ``netvol.Served``) with the host's ``/``
as the controller tree: neutron-server (``neutron.wsgi.api``) and neutron-rpc-server, ML2 with the
router plugin; cinder-api, cinder-scheduler and cinder-volume on cinder's fake driver. The old controller
runs its release's and serves; the new one has its release installed on an empty schema, stopped: the
upgrade's own steps stop and start the units (the plan's service control, ``scripts.lab.svc``, hands
them to their lab). Per controller:

- the APIs listen on every address of the host (neutron 9696, cinder 8776): the keystone catalog names
  them on the management address (``network``, ``volumev3`` and ``block-storage``), so a client
  follows the address when it moves; the tool verifies them on the new controller's own address;
- one RabbitMQ per controller for both (``scripts.lab.rabbit``, unit ``rabbitmq-netvol``, AMQP port
  5673 beside nova's own broker on 5672), on every address of the host and not a unit of either service:
  it runs on both controllers like their MariaDB, so the new one is up when the run starts their units
  there (whatever the order the runner starts services in) and the tool's AMQP check finds it before
  anything stops. Neutron and cinder each log in with a user and vhost of their own (the same on both
  brokers), their ``transport_url`` on loopback: valid unchanged on either controller, as the config
  carry-over takes it;
- cinder's host name is the machine's (``/etc/cinder-host.conf``: ``old-ctl`` or ``new-ctl``, outside
  ``/etc/cinder``, so the carried-over cinder.conf does not change it); the plan's ``update_host`` moves
  the volumes from one to the other.

    setup(lab)                     # after hosts.up (and nova's setup, if any): both controllers
    real_sections(lab, text)       # a lab plan's neutron/cinder tables naming the real units
    write_plan(lab, name)          # keystone, neutron and cinder, the address move, [amqp]

Payloads (passwords) reach the hosts on stdin, never on a command line; the settings live in
``lab.state["netvol"]`` of the running test only.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from scripts.lab import grenade_netvol, ksapi, netvol, osclient, rabbit, schemacache, served
from scripts.lab.proc import LabError

ROOT = Path("/")
KEYSTONE_PORT = 5000
#: the API ports of the services on every controller (their usual ones)
PORTS = {"neutron": 9696, "cinder": 8776}
#: the controller's broker of neutron and cinder: beside nova's (scripts.lab.novaserve: 5672 and 25673)
BROKER, MQ_PORT, MQ_DIST_PORT = "rabbitmq-netvol", 5673, 25674
#: the controllers, their cinder host names (scripts.lab.openstack's, which the lab plan's update_host names)
ROLES = {"oldctl": ("old", "old-ctl"), "newctl": ("new", "new-ctl")}


# ---------------------------------------------------------------------- inside a controller (its /)
def _broker() -> rabbit.Broker:
    """The controller's broker of neutron and cinder, running (made at the first setup; its ``openstack``
    user's password is nobody's: the services log in with their own)."""
    try:
        b = rabbit.broker(ROOT, BROKER)
    except LabError:
        b = rabbit.install(ROOT, MQ_PORT, MQ_DIST_PORT, secrets.token_urlsafe(12), bind="0.0.0.0", unit=BROKER)
    rabbit.start(ROOT, BROKER)
    return b


def inside(p: dict[str, Any], db: Any = None) -> dict[str, Any]:
    """One controller: neutron's and cinder's databases with the release's schema, the broker's logins,
    their real configs; on the old one their service users and catalog entries registered and every
    unit started. Set up again: the units stopped and the databases made anew first.

    Generalised for the HA lab (``scripts.lab.hanode``): *db* the host's server (default: its MariaDB;
    there its Galera node), ``broker`` the unit of the host's broker to log in on (default: this module's
    own :data:`BROKER`, made here; there the side's RabbitMQ cluster's node, which exists), ``logins``
    false where another node of that cluster made them already, ``install_only`` the configs alone (no
    database: the new side's), ``register`` the catalog without starting the units."""
    from scripts.lab import cinderlab, neutronlab, svc, units
    from scripts.lab.hostside import HostMariaDB
    from scripts.lab.openstack import make_stack

    settings = {n: netvol.Settings(**v) for n, v in p["settings"].items()}
    labs = served.labs()
    for lab in labs:
        if lab.installed(ROOT):
            for unit in lab.tree_units(ROOT):
                svc.stop(ROOT, unit)
    if db is None:
        db = HostMariaDB(p["address"])
    timings = {}
    venv = Path(p["venv_root"]) / p["release"]
    if not p.get("install_only"):
        for name in served.NAMES:
            db.execute(f"DROP DATABASE IF EXISTS `{name}`")
        t0 = time.monotonic()
        venv = make_stack(ROOT, p["release"], db, Path(p["venv_root"]), served.NAMES).venv
        timings["schema"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    broker = rabbit.broker(ROOT, p["broker"]) if p.get("broker") else _broker()
    if p.get("logins", True):
        rabbit.add_logins(broker, {s.mq_user: (s.mq_password, s.mq_vhost) for s in settings.values()})
    timings["broker"] = round(time.monotonic() - t0, 1)
    neutronlab.install(ROOT, p["release"], venv, db, settings["neutron"], broker=broker)
    cinderlab.install(ROOT, p["release"], venv, db, settings["cinder"], 0, p["cinder_host"], broker=broker)
    if not (p.get("serve") or p.get("register")):
        return {"timings": timings}
    token = ksapi.get_token(f"{settings['neutron'].keystone}/v3", "admin", p["admin_password"], "admin")
    ids = {lab.name: lab.register(settings[lab.name], token) for lab in labs}
    if p.get("serve"):
        t0 = time.monotonic()
        units.start_all(ROOT, unit_names(), svc.start)
        timings["start"] = round(time.monotonic() - t0, 1)
    return {"timings": timings, "ids": ids}


def unit_names() -> list[str]:
    """The units of neutron and cinder of the host's tree, in start order."""
    return [u for lab in served.labs() for u in reversed(lab.tree_units(ROOT))]


def user(p: dict[str, Any]) -> dict[str, Any]:
    """A project and a non-admin user (role ``member``) through keystone's API at ``keystone``: a cloud's user."""
    url = p["keystone"]
    token = ksapi.get_token(url, "admin", p["admin_password"], "admin")
    project = ksapi.find_or_create(url, token, "projects", p["project"], {"name": p["project"], "domain_id": "default"})
    uid = ksapi.call("POST", f"{url}/users", token, {"user": {"name": p["user"], "domain_id": "default",
                                                              "password": p["password"]}})["user"]["id"]
    role = ksapi.find_or_create(url, token, "roles", "member", {"name": "member"})
    ksapi.call("PUT", f"{url}/projects/{project}/users/{uid}/roles/{role}", token)
    return {"project_id": project, "user_id": uid}


ACTIONS = {"controller": inside, "user": user}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.lab.netvolhost", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=sorted(ACTIONS), help="payload (JSON, passwords too) on stdin")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(ACTIONS[args.action](json.loads(sys.stdin.read() or "{}"))))
    except LabError as exc:
        print(f"netvolhost {args.action} failed: {exc}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------- outside: a running lab
def _python() -> list[str]:
    """The project's python and its path, as a lab host sees them (the repository is mounted there)."""
    from scripts.lab.hosts import INSIDE_REPO, _host_python

    return ["env", f"PYTHONPATH={INSIDE_REPO}", _host_python()]


def _run(lab: Any, host: str | None, action: str, payload: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """``ACTION`` of this module inside *host* (None: in the deploy host's network namespace only)."""
    if host is None:
        argv = lab.in_deploy([sys.executable, "-m", "scripts.lab.netvolhost", action])
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=json.dumps(payload),
                             cwd=Path(__file__).resolve().parents[2])
    else:
        with schemacache.lent(lab.host_tmp(host)) as cache:  # the schemas the run synced already: loaded
            env, py = _python()[:2], _python()[2:]
            res = lab.inside(host, [*env, *cache, *py, "-m", "scripts.lab.netvolhost", action], timeout=timeout,
                             input=json.dumps(payload))
    if res.returncode != 0:
        raise LabError(f"lab netvol `{action}` on {host or 'deploy'} failed (rc {res.returncode}):\n"
                       f"{res.stderr.strip()[-3000:]}")
    return json.loads(res.stdout or "{}")


def prepare(lab: Any) -> dict[str, Any]:
    """Neutron's and cinder's settings (ports, passwords) in ``lab.state["netvol"]``, made once: what
    :func:`setup` uses. Made before a setup that runs beside nova's (``scripts.lab.novahost.setup``, which
    saves the lab's state meanwhile), the state does not change under that save."""
    if "netvol" not in lab.state:
        lab.state["netvol"] = {name: asdict(netvol.Settings.new(KEYSTONE_PORT, port, MQ_PORT, bind="0.0.0.0",
                                                                public=lab.state["vip"], mq_user=name,
                                                                mq_vhost=name)) for name, port in PORTS.items()}
    return lab.state["netvol"]


def setup(lab: Any) -> dict[str, Any]:
    """Neutron and cinder real on both controllers of a running multi-host lab (``scripts.lab.hosts.Lab``;
    before or after nova's setup, ``scripts.lab.novahost``): the old controller's serving through the
    management address, the new one's installed and stopped. Keeps the settings (passwords) in
    ``lab.state["netvol"]`` (:func:`prepare`), in memory; returns how long each controller took. Runs beside
    nova's setup when :func:`prepare` came first: they share no database, broker, file or catalog entry."""
    ctl = lab.state["controller"]
    prepare(lab)

    def one(host: str) -> dict[str, Any]:
        role, cinder_host = ROLES[host]
        t0 = time.monotonic()
        out = _run(lab, host, "controller", {
            "release": ctl[role], "venv_root": ctl["venv_root"], "address": lab.hosts[host],
            "settings": lab.state["netvol"], "cinder_host": cinder_host, "serve": role == "old",
            "admin_password": ctl["admin_password"] if role == "old" else ""})
        return {**out.get("timings", {}), "total": round(time.monotonic() - t0, 1)}

    with ThreadPoolExecutor(max_workers=2) as pool:  # each controller's own databases: nothing shared
        return dict(zip(ROLES, pool.map(one, ROLES), strict=True))


def real_sections(lab: Any, text: str) -> str:
    """A multi-host lab plan's text (``hostplan.plan_text`` with neutron and cinder among its services) with
    ``[services.neutron]`` and ``[services.cinder]`` naming the real units (the old controller's tree says
    which) and the API verified on the new controller's own address, as glance's is. Cinder's table keeps
    ``old_host``/``new_host`` ``old-ctl``/``new-ctl``: the controllers' cinder host names."""
    from scripts.lab.openstack import UNITS

    etc = lab.upper("oldctl", "etc")  # the old controller's /etc, from outside: its descriptors
    for lab_ in served.labs():
        standin = f"[services.{lab_.name}]\nunits = {json.dumps(UNITS[lab_.name])}\n"
        if standin in text:
            text = text.replace(standin, f"[services.{lab_.name}]\n{lab_.plan_lines(etc, lab.hosts['newctl'])}")
    return text


#: what the lab's plan upgrades: keystone (the new controller's APIs check tokens with it) and glance too
#: (the client asks the image service on ``volume create``: it must follow the address as well)
PLAN_SERVICES = ("keystone", "glance", "neutron", "cinder")


def write_plan(lab: Any, name: str = "plan-netvol.toml", services: tuple[str, ...] = PLAN_SERVICES) -> Path:
    """A 0600 plan upgrading *services*, then the management address and the compute hosts; ``[amqp]``:
    every carried-over transport_url is tried on the new controller's broker before anything stops."""
    from scripts.lab.hostplan import plan_text

    text = real_sections(lab, plan_text(lab, services=services))
    text += f'[amqp]\nbroker = "{lab.hosts["newctl"]}"\n'
    path = lab.dir / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


# ---------------------------------------------------------------------- a cloud's user, through the address
class Client:
    """``openstack`` (python-openstackclient of *venv*) run in the deploy host as *cloud* of a 0600
    clouds.yaml whose auth URL is keystone on the management address: what ``grenade_netvol``'s kinds ask."""

    def __init__(self, lab: Any, venv: Path, clouds: Path, cloud: str) -> None:
        self.lab, self.venv, self.clouds, self.cloud = lab, Path(venv), clouds, cloud

    def json(self, *args: str) -> Any:
        return osclient.openstack(self.venv, self.clouds, self.cloud, *args, where=tuple(self.lab.in_deploy([])))

    def run(self, *args: str) -> None:
        osclient.openstack(self.venv, self.clouds, self.cloud, *args, json_out=False,
                           where=tuple(self.lab.in_deploy([])))


def client(lab: Any, project: str = "netvol") -> Client:
    """A non-admin user of its own project *project* (made through keystone on the management address) and
    its client; the password only in the 0600 clouds.yaml in the lab directory."""
    ctl = lab.state["controller"]
    keystone = f"http://{lab.state['vip']}:{KEYSTONE_PORT}/v3"
    password = secrets.token_urlsafe(12)
    _run(lab, None, "user", {"keystone": keystone, "admin_password": ctl["admin_password"], "project": project,
                             "user": f"{project}-user", "password": password})
    clouds = osclient.write_clouds(lab.dir / f"clouds-{project}.yaml", keystone,
                                   {project: (f"{project}-user", password, project)})
    return Client(lab, Path(ctl["venv_root"]) / ctl["new"], clouds, project)


# ---------------------------------------------------------------------- the Grenade-style check
#: the kinds of ``scripts.lab.grenade_netvol`` this lab's check makes and verifies
KINDS = (grenade_netvol.NETWORK, grenade_netvol.VOLUME)


def serving(lab: Any, host: str) -> list[str]:
    """The units of neutron and cinder running on *host* (its supervisor's ``status``, as the tool asks it)."""
    units = [u for lab_ in served.labs() for u in lab_.tree_units(lab.upper(host, "etc"))]
    out = []
    for unit in units:
        res = lab.inside(host, ["env", "PYTHONPATH=/run/osu/repo", "python3", "-m", "scripts.lab.svc", "--root", "/",
                                "status", unit])
        if res.returncode == 0:
            out.append(unit)
    return out


def create(c: Client) -> dict[str, Any]:
    """Before the upgrade, as the cloud's user: every kind's resources and the view they are compared by."""
    return {kind.name: kind.create(c) for kind in KINDS}


def verify(c: Client, made: dict[str, Any], new_work: bool = True) -> dict[str, Any]:
    """After the upgrade (or the revert): every resource of *made* with the same ids and states (LabError
    naming the difference); with *new_work*, the cloud as it is now makes and deletes new ones."""
    out = {kind.name: kind.verify(c, made[kind.name]) for kind in KINDS}
    if new_work:
        out["new_work"] = {kind.name: kind.new_work(c) for kind in KINDS}
    return out


if __name__ == "__main__":
    sys.exit(main())
