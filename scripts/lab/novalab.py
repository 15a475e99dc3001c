"""Real nova in the multi-host lab: nova-conductor (and RabbitMQ) on the new controller, a real
nova-compute with nova's own fake virt driver (``fake.FakeDriverWithoutFakeNodes``) on each
compute host, from the release venvs (``<venv_root>/<release>``), so the compute hosts report real
heartbeats and service versions (``services.updated_at``, ``services.version``) in the new
controller's nova database.

Configured as devstack's lib/nova does for a fake-driver compute (``[DEFAULT] compute_driver``,
``host``, ``transport_url``, ``state_path``, ``[api_database]``/``[database]`` on the conductor
only — a compute reaches the database through the conductor —, cells v2 with ``map_cell0`` and
``create_cell``; the config writing and the unit start are shared with the local lab's nova:
``scripts.lab.novaconf``), with a short ``report_interval`` so heartbeats come every 2 s. The new
controller holds nova of the target release with ``[upgrade_levels] compute`` pinned to the source
release, as nova's own upgrade leaves it; the computes run the source release and talk RPC to
the new controller's broker on its own address (in this lab nova lives on the new controller only:
the computes reconnect to nothing when the management address moves).

The release a compute runs is the file ``/etc/nova/lab-release`` (``release R`` switches it: the
plan's ``upgrade_command`` in the lab, what a package upgrade is on a real host). The unit
supervisor (LSB exit codes like ``scripts.lab.svc``, to which it hands every other unit):

    python3 -m scripts.lab.novalab {start|stop|status} UNIT
    python3 -m scripts.lab.novalab release RELEASE
    python3 -m scripts.lab.novalab inside {controller|compute}   # payload (passwords) on stdin

Standard library only inside the hosts (it runs with the host's python3). Secrets live in the 0640
nova.conf and the broker's 0600 config; nothing secret is on a command line.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scripts.lab import novaconf, novaserve, rabbit
from scripts.lab.proc import LabError, clean_env, pid_alive, read_pid, terminate

UNITS = ("placement-api", "nova-conductor", "nova-compute")
PLACEMENT_PORT = 8778
PLACEMENT_WSGI = Path(__file__).resolve().with_name("placement_wsgi.py")
CONF = Path("/etc/nova/nova.conf")
PLACEMENT_CONF = Path("/etc/placement/placement.conf")
RELEASE_FILE = Path("/etc/nova/lab-release")
STATE = Path("/var/lib/nova")
RUN = Path("/run/novalab")
LOGS = Path("/var/log/nova")
#: the broker's tree on the new controller (its own node, mnesia and cookie, apart from Debian's)
BROKER_ROOT = Path("/var/lib/novalab")
MQ_PORT = 5672
MQ_DIST_PORT = 25672
STOP_TIMEOUT = novaconf.STOP_TIMEOUT
#: what the lab's plan runs on a compute host to switch it to another release, and back
SWITCH = ["env", "PYTHONPATH=/run/osu/repo", "python3", "-m", "scripts.lab.novalab", "release"]
CONTROL = ["env", "PYTHONPATH=/run/osu/repo", "python3", "-m", "scripts.lab.novalab", "{action}", "{unit}"]


# ---------------------------------------------------------------------- inside a host: the supervisor
def _release() -> dict[str, str]:
    try:
        return json.loads(RELEASE_FILE.read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"this host runs no lab nova ({RELEASE_FILE}: {exc})") from None


def switch(release: str) -> None:
    """Point the host's nova at *release*'s venv (atomically); the running units keep their code until
    restarted, as after a package upgrade."""
    cur = _release()
    venv = Path(cur["venv_root"]) / release
    if not (venv / "bin" / "nova-compute").exists():
        raise LabError(f"release {release}: {venv} holds no nova")
    tmp = RELEASE_FILE.with_name(RELEASE_FILE.name + ".tmp")
    tmp.write_text(json.dumps({**cur, "release": release}) + "\n")
    tmp.replace(RELEASE_FILE)


def _pid_file(unit: str) -> Path:
    return RUN / f"{unit}.pid"


def _argv(unit: str, venv: Path) -> list[str]:
    if unit == "placement-api":
        return [str(venv / "bin" / "python"), str(PLACEMENT_WSGI), "0.0.0.0", str(PLACEMENT_PORT)]
    return [str(venv / "bin" / unit), "--config-file", str(CONF)]


def pid(unit: str) -> int | None:
    p = read_pid(_pid_file(unit))
    return p if pid_alive(p, (PLACEMENT_WSGI.name if unit == "placement-api" else f"bin/{unit}",)) else None


def start(unit: str) -> int:
    """Start *unit* from the host's current release and wait until nova says it started (a condition)."""
    if (running := pid(unit)) is not None:
        return running
    venv = Path(_release()["venv_root"]) / _release()["release"]
    log = LOGS / f"{unit}.out"
    return novaconf.launch(unit, _argv(unit, venv), _pid_file(unit), log, lambda: novaconf.started_line(log, unit))


def stop(unit: str) -> bool:
    p = pid(unit)
    if p:
        terminate(p, STOP_TIMEOUT)
    _pid_file(unit).unlink(missing_ok=True)
    return p is not None


def _nova_conf(p: dict[str, Any], host: str, controller: bool) -> str:
    if p.get("nova") and not controller:  # nova real on both controllers (scripts.lab.novahost): keystone's way
        return novaserve.compute_conf(f"nova.conf of lab host {host} (scripts/lab/novahost.py)", host, STATE,
                                      novaserve.Settings(**p["nova"]))
    mq = f"rabbit://{rabbit.USER}:{p['mq_password']}@{p['controller_address']}:{MQ_PORT}/"
    # placement with noauth2 (no keystone in nova's path): its admin token, its endpoint
    placement = (f"\n[placement]\nauth_type = admin_token\ntoken = admin\n"
                 f"endpoint = http://{p['controller_address']}:{PLACEMENT_PORT}\n")
    # the database on the controller only: a compute reaches it through the conductor (and is given no password)
    db = f"mysql+pymysql://nova:{p['db_password']}@127.0.0.1:3306" if controller else ""
    return novaconf.nova_conf(f"nova.conf of lab host {host} (scripts/lab/novalab.py)", transport_url=mq,
                              state_path=STATE, host=host, report_interval=2, compute=not controller,
                              db=(f"{db}/nova_api", f"{db}/nova") if controller else None,
                              pin=p["pin"] if controller else "", sections=placement)


def _install(p: dict[str, Any], host: str, controller: bool) -> None:
    (STATE / "tmp").mkdir(parents=True, exist_ok=True)
    novaconf.write_private(CONF, _nova_conf(p, host, controller))
    RELEASE_FILE.write_text(json.dumps({"venv_root": p["venv_root"], "release": p["release"]}) + "\n")


def _manage(venv: Path, *args: str, tool: str = "nova-manage") -> None:
    conf = PLACEMENT_CONF if tool == "placement-manage" else CONF
    res = subprocess.run([str(venv / "bin" / tool), "--config-file", str(conf), *args], env=clean_env(),
                         capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise LabError(f"{tool} {' '.join(args[:2])} failed (rc {res.returncode}): "
                       f"{(res.stdout + res.stderr)[-2000:]}")


def inside_controller(p: dict[str, Any]) -> dict[str, Any]:
    """The new controller: its broker on every address, nova's schema of the target release with cells
    v2, nova-conductor started."""
    for unit in UNITS:  # set up again: nothing keeps an old config
        stop(unit)
    _install(p, p["host"], controller=True)
    if BROKER_ROOT.exists():  # set up again: a new node (its user is made at first boot only)
        rabbit.stop(BROKER_ROOT)
        shutil.rmtree(BROKER_ROOT)
    rabbit.install(BROKER_ROOT, MQ_PORT, MQ_DIST_PORT, p["mq_password"], bind="0.0.0.0")
    rabbit.start(BROKER_ROOT)
    venv = Path(p["venv_root"]) / p["release"]
    novaconf.write_private(PLACEMENT_CONF, f"[placement_database]\nconnection = mysql+pymysql://nova:"
                           f"{p['db_password']}@127.0.0.1:3306/placement\n\n[api]\nauth_strategy = noauth2\n")
    _manage(venv, "db", "sync", tool="placement-manage")
    start("placement-api")
    cell0 = f"mysql+pymysql://nova:{p['db_password']}@127.0.0.1:3306/nova_cell0"
    _manage(venv, "api_db", "sync")
    _manage(venv, "cell_v2", "map_cell0", "--database_connection", cell0)
    _manage(venv, "cell_v2", "create_cell", "--name", "cell1")
    _manage(venv, "db", "sync")
    start("nova-conductor")
    return {}


def inside_compute(p: dict[str, Any]) -> dict[str, Any]:
    """A compute host: the stand-in nova-compute stopped, the real one started on the source release (talking
    to the new controller's broker, or with ``nova`` settings, to the management address through keystone)."""
    from scripts.lab import svc

    svc.stop(Path("/"), "nova-compute")
    stop("nova-compute")  # set up again: a new node identity with the new database
    (STATE / "compute_id").unlink(missing_ok=True)
    _install(p, p["host"], controller=False)
    start("nova-compute")
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m scripts.lab.novalab", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop", "status", "release", "inside"))
    parser.add_argument("name")
    args = parser.parse_args(argv)
    if args.action in ("start", "stop", "status") and args.name not in UNITS and args.name != rabbit.UNIT:
        from scripts.lab import svc  # every other unit of the lab's hosts

        return svc.main(["--root", "/", args.action, args.name])
    try:
        if args.action == "inside":
            act = {"controller": inside_controller, "compute": inside_compute}[args.name]
            print(json.dumps(act(json.loads(sys.stdin.read() or "{}"))))
        elif args.action == "release":
            switch(args.name)
        elif args.name == rabbit.UNIT:
            {"start": rabbit.start, "stop": rabbit.stop}.get(args.action, lambda r: None)(BROKER_ROOT)
            if args.action == "status":
                return 0 if rabbit.status(BROKER_ROOT) else 3
        elif args.action == "start":
            start(args.name)
        elif args.action == "stop":
            stop(args.name)
        else:
            return 0 if pid(args.name) else 3
    except LabError as exc:
        print(f"{args.name}: {args.action} failed: {' | '.join(str(exc).splitlines())}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------- outside: set up a running lab
def setup(lab: Any, pin: str = "flamingo") -> dict[str, Any]:
    """Real nova in a running multi-host lab (``scripts.lab.hosts.Lab``): the nova databases and user on the
    new controller's MariaDB, then nova-conductor there and nova-compute on every compute host; returns
    how long each part took."""
    ctl = lab.state["controller"]
    db_password, mq_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    for db in ("nova_api", "nova", "nova_cell0", "placement"):
        lab.query("newctl", f"DROP DATABASE IF EXISTS `{db}`")  # set up again: from nothing
        lab.query("newctl", f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")
    for host in ("127.0.0.1", "localhost"):
        lab.query("newctl", "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", ("nova", host, db_password))
        lab.query("newctl", "ALTER USER %s@%s IDENTIFIED BY %s", ("nova", host, db_password))
        for db in ("nova%%", "placement"):
            lab.query("newctl", f"GRANT ALL PRIVILEGES ON `{db}`.* TO %s@%s", ("nova", host))
    base = {"venv_root": ctl["venv_root"], "mq_password": mq_password, "controller_address": lab.hosts["newctl"]}
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    run_inside(lab, "newctl", "controller", {**base, "host": "newctl", "release": ctl["new"],
                                             "db_password": db_password, "pin": pin})
    timings["controller"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    for h in lab.computes:  # one after the other: two cores
        run_inside(lab, h, "compute", {**base, "host": h, "release": ctl["old"]})
    timings["computes"] = round(time.monotonic() - t0, 1)
    return timings


def write_plan(lab: Any, name: str, later: bool, compute_pool: int = 10) -> Path:
    """A plan of nova-unpin and the compute hosts (no other service, no address to move): with the rolling
    upgrade of every compute (``later``: none, unpinning left to `upgrade unpin`)."""
    from scripts.lab.hostplan import plan_text

    timeout = "compute_timeout = 120\n"
    rolling = (f"upgrade_command = {json.dumps([*SWITCH, '{to}'])}\n"
               f"downgrade_command = {json.dumps([*SWITCH, '{from}'])}\n")
    text = plan_text(lab, compute_pool=compute_pool, services=("nova-unpin",), network=False, control=CONTROL,
                     upgrade_keys=timeout + ('unpin = "later"\n' if later else ""),
                     compute_keys="" if later else rolling)
    text += '[services.nova-unpin]\nunits = ["nova-conductor"]\n'
    path = lab.dir / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def run_inside(lab: Any, host: str, action: str, payload: dict[str, Any]) -> None:
    """This module's ``inside ACTION`` in *host* (the host's python3); the payload (passwords) through stdin."""
    from scripts.lab.hosts import INSIDE_REPO

    res = lab.inside(host, ["env", f"PYTHONPATH={INSIDE_REPO}", "python3", "-m", "scripts.lab.novalab", "inside",
                            action], timeout=1200, input=json.dumps(payload))
    if res.returncode != 0:
        raise LabError(f"lab nova `{action}` on {host} failed (rc {res.returncode}):\n{res.stderr.strip()[-3000:]}")


if __name__ == "__main__":
    sys.exit(main())
