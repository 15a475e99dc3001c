"""Resources that must survive an upgrade, the way OpenStack's upgrade gate (Grenade) checks them:
made before the upgrade through the real client, verified after it through the APIs, then the
upgraded cloud serves new work.

    python -m scripts.lab.grenade create DIR       # before: a project of its own, its resources
    python -m scripts.lab.grenade verify DIR [--since ISO-TIME]
    python -m scripts.lab.grenade new-work DIR     # new resources of each kind made, then deleted

DIR is a lab of ``python -m scripts.lab up --real nova,neutron,cinder`` (its ``lab-state.json``):
placement, nova, neutron and cinder served for real.
Everything goes through ``openstack`` (python-openstackclient) of the release venv of the controller
that serves now, as Grenade's ``resources.sh`` does (one client process per ``Cloud``, kept running:
``scripts.lab.osclient.Shell``; ``Cloud.close`` or ``with`` ends it): a project ``grenade`` and its user (made by
the lab's admin through keystone) own the resources; the user is no admin. Credentials reach the
client only through ``DIR/grenade/clouds.yaml`` (0600); what was made (ids, states) is kept in
``DIR/grenade/resources.json``, which holds no secret.

Each resource kind is a ``Kind`` with ``create``, ``verify`` and ``new_work``; ``KINDS`` lists them
in order. ``compute`` (here): a flavor (made by the admin), a keypair, a server booted with ``--nic
none`` on the lab's compute host with metadata set; ``verify``: the same ids and states (the server
ACTIVE on the same host), the compute service ``up`` with a heartbeat newer than ``since``;
``new_work``: a second server booted on the host, then deleted. ``network``, ``volume`` and
``attachment`` (a volume attached to that server) are ``scripts.lab.grenade_netvol``'s: a network,
subnet, router, port and security group with rules; a volume and its snapshot; the attached volume
``in-use`` on the server; their new work makes (and attaches) and deletes new ones.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scripts.lab import grenade_netvol, ksapi, osclient
from scripts.lab.proc import LabError

PROJECT = "grenade"
USER = "grenade"
FLAVOR = "grenade-tiny"
KEYPAIR = "grenade-key"
SERVER = "grenade-server"
#: a compute microversion both releases serve: ``--nic none`` (2.37) and the server's host name (2.47 on)
COMPUTE_API = "2.79"
#: how long a heartbeat or a state may take to show (a bound on a condition, never a sleep)
WAIT = 180.0
STATE = "lab-state.json"


@dataclass
class Cloud:
    """The lab as the client sees it: which release's client, its clouds.yaml (clouds ``admin`` and
    ``grenade``), where the record lives, and the lab's compute host and image."""

    dir: Path
    venv: Path
    host: str
    image: str
    #: what the client's command runs under (a multi-host lab's: its deploy host's network namespace)
    where: tuple[str, ...] = ()

    @property
    def clouds(self) -> Path:
        return self.dir / "clouds.yaml"

    @property
    def record(self) -> Path:
        return self.dir / "resources.json"

    #: the client, kept running from the first command to :meth:`close` (one process for both users)
    shell: osclient.Shell | None = field(default=None, init=False, repr=False, compare=False)

    def user(self, *args: str, json_out: bool = True) -> Any:
        """``openstack ARGS`` as the project's non-admin user (``json_out``: the command prints a result)."""
        return self._client()("grenade", *args, json_out=json_out)

    def admin(self, *args: str, json_out: bool = True) -> Any:
        return self._client()("admin", *args, json_out=json_out)

    def _client(self) -> osclient.Shell:
        if self.shell is None:
            self.shell = osclient.Shell(self.venv, self.clouds, self.where)
        return self.shell

    def close(self) -> None:
        """End the client process (a later command starts another; collection or exit ends it too)."""
        if self.shell is not None:
            self.shell.close()

    def __enter__(self) -> Cloud:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the client the network and volume kinds ask (scripts.lab.grenade_netvol.Client), as the user
    def json(self, *args: str) -> Any:
        return self.user(*args)

    def run(self, *args: str) -> None:
        self.user(*args, json_out=False)


@dataclass(frozen=True)
class Kind:
    """One kind of resource: ``create`` returns what it made (ids and states, JSON-able, no secret);
    ``verify`` checks it after the upgrade (raises LabError naming what differs) and returns the view
    it saw; ``new_work`` makes and deletes new resources of the kind on the upgraded cloud."""

    name: str
    create: Callable[[Cloud], dict[str, Any]]
    verify: Callable[[Cloud, dict[str, Any], datetime], dict[str, Any]]
    new_work: Callable[[Cloud], dict[str, Any]]


def _wait(what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Ask ``probe()`` until it gives something true; LabError naming *what* (and the last answer) if not in time."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise LabError(f"{what}: not within {timeout:.0f} s")
        time.sleep(1.0)


def _time(text: str) -> datetime:
    """An API time (``2026-12-05T23:10:00.000000``, naive UTC, or with an offset) as an aware datetime."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# ---------------------------------------------------------------------- compute
def _compute(c: Cloud, *args: str, admin: bool = False, json_out: bool = True) -> Any:
    call = c.admin if admin else c.user
    return call("--os-compute-api-version", COMPUTE_API, *args, json_out=json_out)


def _server_view(c: Cloud, server_id: str) -> dict[str, Any]:
    """What must survive of a server: as its user sees it, and its host as the admin sees it."""
    mine = _compute(c, "server", "show", server_id)
    host = _compute(c, "server", "show", server_id, admin=True)["OS-EXT-SRV-ATTR:host"]
    flavor = mine["flavor"]  # embedded from 2.47 on: its fields differ between the releases' clients, its name not
    if isinstance(flavor, dict):
        flavor = flavor.get("original_name") or flavor.get("name") or flavor.get("id")
    return {"id": mine["id"], "name": mine["name"], "status": mine["status"], "host_id": mine["hostId"],
            "host": host, "flavor": flavor, "key_name": mine["key_name"],
            "properties": mine.get("properties") or mine.get("metadata") or {}}


def _boot(c: Cloud, name: str, **props: str) -> dict[str, Any]:
    """``server create --nic none --wait`` as the user (the lab has one compute host: the scheduler picks it)."""
    extra = [a for k, v in props.items() for a in ("--property", f"{k}={v}")]
    made = _compute(c, "server", "create", "--flavor", FLAVOR, "--image", c.image, "--nic", "none", "--key-name",
                    KEYPAIR, *extra, "--wait", name)
    if made["status"] != "ACTIVE":
        raise LabError(f"server {name} is {made['status']}, not ACTIVE")
    return made


def _public_key(directory: Path) -> Path:
    """A throwaway ed25519 key made with ssh-keygen: the keypair's public half (the private one is dropped)."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        key = Path(tmp) / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "grenade", "-f", str(key)], check=True,
                       stdin=subprocess.DEVNULL, capture_output=True)
        pub = directory / "grenade-key.pub"
        pub.write_bytes(key.with_suffix(".pub").read_bytes())
    return pub


def compute_create(c: Cloud) -> dict[str, Any]:
    flavor = c.admin("flavor", "create", "--ram", "64", "--disk", "1", "--vcpus", "1", "--public", FLAVOR)
    key = _compute(c, "keypair", "create", "--public-key", str(_public_key(c.dir)), KEYPAIR)
    made = _boot(c, SERVER, grenade="before")
    _compute(c, "server", "set", "--property", "survives=upgrade", made["id"], json_out=False)
    view = _server_view(c, made["id"])
    if view["host"] != c.host:
        raise LabError(f"server {SERVER} runs on {view['host']}, not on the lab's compute host {c.host}")
    return {"flavor": {"id": flavor["id"], "name": flavor["name"]},
            "keypair": {"name": key["name"], "fingerprint": key["fingerprint"]}, "server": view}


def compute_services(c: Cloud) -> list[dict[str, Any]]:
    """``compute service list --service nova-compute`` as the admin: the computes as the serving
    controller's API reports them."""
    return c.admin("compute", "service", "list", "--service", "nova-compute")


def compute_verify(c: Cloud, made: dict[str, Any], since: datetime) -> dict[str, Any]:
    flavor = c.admin("flavor", "show", made["flavor"]["id"])
    key = _compute(c, "keypair", "show", made["keypair"]["name"])
    server = _server_view(c, made["server"]["id"])
    wrong = [f"{k}: {made['server'][k]!r} -> {server[k]!r}" for k in made["server"] if server[k] != made["server"][k]]
    if flavor["name"] != made["flavor"]["name"]:
        wrong.append(f"flavor {made['flavor']['id']}: {made['flavor']['name']!r} -> {flavor['name']!r}")
    if key["fingerprint"] != made["keypair"]["fingerprint"]:
        wrong.append(f"keypair {made['keypair']['name']}: another fingerprint")
    if wrong:
        raise LabError("the compute resources changed: " + "; ".join(wrong))

    def reported() -> dict[str, Any] | None:
        row = next((r for r in compute_services(c) if r["Host"] == c.host), None)
        if row and row["State"] == "up" and row["Updated At"] and _time(row["Updated At"]) > since:
            return row
        return None

    row = _wait(f"nova-compute on {c.host} reporting up after {since.isoformat()}", reported)
    return {"server": server, "service": {"host": row["Host"], "state": row["State"], "status": row["Status"],
                                          "updated_at": row["Updated At"]}}


def compute_new_work(c: Cloud) -> dict[str, Any]:
    made = _boot(c, "grenade-after", grenade="after")
    host = _compute(c, "server", "show", made["id"], admin=True)["OS-EXT-SRV-ATTR:host"]
    if host != c.host:
        raise LabError(f"the new server runs on {host}, not on {c.host}")
    _compute(c, "server", "delete", "--wait", made["id"], json_out=False)
    # `--wait` ends when the server shows DELETED, which nova saves just before it destroys the row: the list
    # drops it a moment later
    _wait(f"server {made['id']} gone from the list after its delete",
          lambda: not any(s["ID"] == made["id"] for s in _compute(c, "server", "list")))
    return {"booted": made["id"], "host": host, "deleted": True}


COMPUTE = Kind("compute", compute_create, compute_verify, compute_new_work)


def _netvol(kind: Any) -> Kind:
    """A kind of ``scripts.lab.grenade_netvol`` (it compares its own views; no heartbeat to wait for)."""
    return Kind(kind.name, kind.create, lambda c, made, since: kind.verify(c, made), kind.new_work)


def _attached(c: Cloud) -> grenade_netvol.Attachment:
    return grenade_netvol.Attachment(lambda: recorded(c)["compute"]["server"]["id"])


ATTACHMENT = Kind("attachment", lambda c: _attached(c).create(c), lambda c, made, since: _attached(c).verify(c, made),
                  lambda c: _attached(c).new_work(c))
#: the kinds, in the order they are made (the attachment needs the compute kind's server)
KINDS: list[Kind] = [_netvol(grenade_netvol.NETWORK), _netvol(grenade_netvol.VOLUME), COMPUTE, ATTACHMENT]


# ---------------------------------------------------------------------- the lab
def _state(lab: Path) -> dict[str, Any]:
    try:
        return json.loads((lab / STATE).read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"{lab} holds no lab ({STATE}: {exc})") from exc


def cloud(lab: Path, side: str | None = None, venv_root: Path | None = None) -> Cloud:
    """The lab as the client of *side*'s release sees it (default: the old side's client, which both
    controllers' APIs serve); ``setup`` must have made the project first."""
    from scripts.lab.controller import DEFAULT_VENV_ROOT

    lab = Path(lab).resolve()
    state = _state(lab)
    if not state.get("compute"):
        raise LabError(f"{lab}: placement and nova are stand-ins there: build it with --real nova,neutron,cinder")
    release = state[side or "old"]["release"]
    return Cloud(lab / "grenade", (venv_root or DEFAULT_VENV_ROOT) / release, state["compute"]["host"],
                 state["seed"]["images"][0]["id"])


def project_user(url: str, admin_password: str) -> str:
    """As the admin of the keystone at *url*: project ``grenade`` and its member user; the user's (random)
    password, for a 0600 clouds.yaml only."""
    token = ksapi.get_token(url, "admin", admin_password, project="admin")
    project = ksapi.call("POST", f"{url}/projects", token, {"project": {"name": PROJECT, "domain_id": "default"}})
    password = secrets.token_urlsafe(12)
    user = ksapi.call("POST", f"{url}/users", token, {"user": {
        "name": USER, "domain_id": "default", "password": password,
        "default_project_id": project["project"]["id"]}})
    member = ksapi.call("GET", f"{url}/roles?name=member", token)["roles"][0]["id"]
    ksapi.call("PUT", f"{url}/projects/{project['project']['id']}/users/{user['user']['id']}/roles/{member}", token)
    return password


def setup(lab: Path) -> Cloud:
    """As the lab's admin, through keystone: project ``grenade`` and its member user (a random password,
    kept only in the 0600 clouds.yaml)."""
    lab = Path(lab).resolve()
    state = _state(lab)
    url = f"http://127.0.0.1:{state['keystone_port']}/v3"
    password = project_user(url, state["admin_password"])
    directory = lab / "grenade"
    directory.mkdir(mode=0o700, exist_ok=True)
    osclient.write_clouds(directory / "clouds.yaml", url, {"admin": ("admin", state["admin_password"], "admin"),
                                                          "grenade": (USER, password, PROJECT)})
    return cloud(lab)


def create(c: Cloud) -> dict[str, Any]:
    """Every kind's resources, recorded in ``resources.json`` (each kind as soon as it is made)."""
    made: dict[str, Any] = {}
    for kind in KINDS:
        made[kind.name] = kind.create(c)
        _write(c.record, made)
    return made


def _write(path: Path, data: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)


def recorded(c: Cloud) -> dict[str, Any]:
    try:
        return json.loads(c.record.read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"no resources recorded ({c.record}: {exc}); run `create` first") from exc


def verify(c: Cloud, since: datetime) -> dict[str, Any]:
    """Every kind's resources as recorded, seen through the APIs of the controller serving now."""
    made = recorded(c)
    return {kind.name: kind.verify(c, made[kind.name], since) for kind in KINDS if kind.name in made}


def new_work(c: Cloud) -> dict[str, Any]:
    return {kind.name: kind.new_work(c) for kind in KINDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.lab.grenade", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("create", "verify", "new-work"))
    parser.add_argument("dir", type=Path)
    parser.add_argument("--side", choices=("old", "new"), help="whose release's client (default: old)")
    parser.add_argument("--since", help="verify: heartbeats must be newer than this ISO time (default: now)")
    args = parser.parse_args(argv)
    try:
        if args.action == "create":
            c = setup(args.dir) if not (Path(args.dir) / "grenade" / "clouds.yaml").exists() else cloud(args.dir)
            with c:
                out = create(c)
        elif args.action == "verify":
            since = _time(args.since) if args.since else datetime.now(UTC)
            with cloud(args.dir, args.side) as c:
                out = verify(c, since)
        else:
            with cloud(args.dir, args.side) as c:
                out = new_work(c)
    except LabError as exc:
        print(f"grenade {args.action}: {' | '.join(str(exc).splitlines())}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
