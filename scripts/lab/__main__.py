"""Build, stop and inspect a complete two-controller lab in one directory.

    python -m scripts.lab up DIR [--old 2025.2] [--new 2026.1] [--services keystone,glance,...] [--real nova]
                                 [--venv-root PATH]
    python -m scripts.lab down DIR
    python -m scripts.lab status DIR

``up`` builds, under DIR: ``db-old`` and ``db-new`` (two MariaDB servers on free loopback
ports), ``old`` (controller of the old release, seeded, its services running) and ``new``
(controller of the new release, installed with an empty schema, its services stopped), a DB admin
account with a random password on both servers, and a ready plan ``plan.toml`` (mode 0600:
both DB admin passwords are inline, so ``upgrade run DIR/plan.toml`` needs no environment)
with its vault key ``dump.key`` and its journal in ``DIR/journal``; then prints a JSON summary
that names the plan and the command to run (from the repository: the plan drives the lab's
services with ``python -m scripts.lab.units``). Both controllers share one keystone port and one
glance port: they stand for the controller's service address, which moves to the new controller
at cut-over, so the URLs in the keystone catalog stay valid. Only one side can serve at a time.

``--services`` (default: all of keystone, glance, placement, nova, neutron, cinder): keystone and
glance serve their real APIs (seeded through them: projects, users, roles, a credential, the
catalog, images with bytes); placement, nova, neutron and cinder run their real schema and
``*-status`` commands with representative rows, their units are stand-ins (no message queue): the
quicker lab of the database-level tests. ``--real nova`` serves placement and nova for real
(``scripts.lab.novaserve``: placement-api, nova-api, nova-conductor, nova-scheduler and nova's own
RabbitMQ on shared ports, ``compute`` and ``placement`` in the catalog) with a compute host
``lab-compute-1`` beside the controllers (DIR/compute-1: nova-compute of the old release on nova's
fake driver; no controller unit, the upgrade never stops it, ``down`` does); its plan then carries
``[cloud]`` (the run's last step waits until the compute host and cinder-volume report to the new
controller and the catalog's APIs answer the admin), whose admin password the tool reads from
``OSU_LAB_ADMIN_PASSWORD``: ``DIR/cloud-password`` (0600) holds it, the summary's ``run`` sets it
from there; the seeded rows of hosts that do not exist in that lab (``compute-1``, neutron's agents,
``other@ceph``) are removed, as an operator removes dead services before an upgrade.
``--services keystone`` builds the quick keystone-only lab. ``heat`` (not in the default) adds heat
serving for real with its RabbitMQ (``scripts.lab.heatlab``): ``--services keystone,heat``.
``--real neutron,cinder`` serves neutron (API and RPC server, ML2 with the router plugin) and cinder
(API, scheduler, volume with cinder's fake driver) for real, each with its own RabbitMQ, in the
keystone catalog (``scripts.lab.netvol``); without it their units are stand-ins, the faster flavour
for the database-level tests.

``down`` stops every process the lab started (by pid files) and keeps all files; ``up`` on
the same DIR starts the databases and the services that were running at ``down`` again.
State lives in DIR/lab-state.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import secrets
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from journal.vault import KeyFileError
from scripts.lab import cinderlab, fullstack, heatlab, netvol, neutronlab, novaserve, schemacache, served, svc, units
from scripts.lab.controller import DEFAULT_VENV_ROOT, GLANCE_URL, Controller, make_controller, seed_keystone
from scripts.lab.mariadb import MariaDB, free_port
from scripts.lab.openstack import NEW_HOST, OLD_HOST, Api
from scripts.lab.plan import CLOUD_PASSWORD, CLOUD_PASSWORD_ENV, REPO, DBAdmin, cloud_table, write_plan
from scripts.lab.proc import LabError

STATE = "lab-state.json"
PLAN = "plan.toml"
SIDES = ("old", "new")
# The account the tool uses on both DB servers (the tests use the same name).
DB_ADMIN = "osu_admin"


def _load(lab: Path) -> dict[str, Any]:
    try:
        return json.loads((lab / STATE).read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"{lab} holds no lab ({STATE}: {exc})") from exc


def _private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (or tighten it), so secrets never sit in a 0644 file."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    path.chmod(0o600)


def _save(lab: Path, state: dict[str, Any]) -> None:
    """Atomic write, 0600: the state holds the keystone and DB admin passwords."""
    tmp = lab / (STATE + ".tmp")
    _private_file(tmp)
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(lab / STATE)


def _db(state: dict[str, Any], side: str) -> MariaDB:
    return MariaDB(Path(state[side]["db_base"]), state[side]["db_port"])


def _distinct_ports(count: int) -> list[int]:
    """*count* ports, distinct: each free_port() draw is reserved against every other."""
    return [free_port() for _ in range(count)]


def _summary(lab: Path, state: dict[str, Any]) -> dict[str, Any]:
    running = {side: svc.status(Path(state[side]["root"]), "keystone") for side in SIDES}
    glance = state.get("glance_port")
    nova = novaserve.settings(state)
    plan = lab / PLAN
    # the admin password of [cloud] by its variable, read from the 0600 file by the shell: in no argv
    env = (f'{CLOUD_PASSWORD_ENV}="$(cat {shlex.quote(str(lab / CLOUD_PASSWORD))})" '
           if (lab / CLOUD_PASSWORD).exists() else "")
    return {
        "dir": str(lab),
        "plan": str(plan),
        # from the repository: the plan's service control is `python -m scripts.lab.svc`
        "run": f"{env}{shlex.quote(str(REPO / '.venv' / 'bin' / 'upgrade'))} run {shlex.quote(str(plan))}",
        "journal": str(lab / "journal"),
        "admin_password": state["admin_password"],
        "keystone_port": state["keystone_port"],
        "keystone_url": f"http://127.0.0.1:{state['keystone_port']}/v3",
        "glance_url": f"http://127.0.0.1:{glance}" if glance else None,
        "heat_url": heatlab.Settings(**state["heat"]).api_url if "heat" in state else None,
        "compute_url": nova.api_url if nova else None,
        "placement_url": nova.placement_url if nova else None,
        "compute_host": state.get("compute"),
        **{f"{n}_url": netvol.Settings(**state["netvol"][n]).api_url for n in state.get("netvol", {})},
        "services": _services(state),
        **{side: {**state[side], "keystone_running": running[side]} for side in SIDES},
        "seed": state.get("seed", {}),
        "timings": state.get("timings", {}),
    }


def _services(state: dict[str, Any]) -> tuple[str, ...]:
    return tuple(state.get("services", ["keystone"]))


#: what a lab may run: the full lab's services, and heat on request (it brings a broker)
KNOWN = (*fullstack.ALL, heatlab.NAME)


def _units(state: dict[str, Any], root: Path | None = None) -> list[str]:
    """Every unit of the lab's controllers (of the one at *root*), keystone first (heat's broker before heat)."""
    heat = list(reversed(heatlab.UNITS)) if heatlab.NAME in _services(state) else []
    return ["keystone", *fullstack.unit_names(_services(state), root), *heat]


def up(lab: Path, old: str, new: str, venv_root: Path, services: tuple[str, ...] = fullstack.ALL,
       real: tuple[str, ...] = ()) -> dict[str, Any]:
    """Build the lab (or restart a built one); returns the summary. *real* names the services served
    for real beyond keystone and glance (``nova``: placement and nova, with a compute host)."""
    lab = lab.resolve()
    lab.mkdir(parents=True, exist_ok=True)
    if (lab / STATE).exists():
        built = _load(lab)
        if not built.get("complete"):
            raise LabError(f"{lab} holds a lab whose 'up' did not finish: run 'down', remove the directory, retry")
        for side in SIDES:
            _db(built, side).start()
        for side, names in built.get("running_at_down", {"old": _units(built, Path(built["old"]["root"]))}).items():
            units.start_all(Path(built[side]["root"]), names)
        if built.get("compute") and built.get("compute_at_down", True):
            novaserve.compute_start(Path(built["compute"]["root"]))
        if not (lab / PLAN).exists():  # a lab built before 'up' wrote plans, or a deleted plan
            _write_lab_plan(lab, built)
        return _summary(lab, built)

    unknown = sorted(set(services) - set(KNOWN))
    if unknown or "keystone" not in services:
        raise LabError(f"--services {','.join(services)}: the lab runs keystone plus any of "
                       f"{', '.join(KNOWN[1:])} (unknown: {', '.join(unknown) or 'none'})")
    if set(real) - ((set(served.NAMES) | {"nova"}) & set(services)) or ("nova" in real and not
                                                                         fullstack.serves_nova(services)):
        raise LabError(f"--real {','.join(real)}: only nova (placement and nova, with a compute host), "
                       f"{' and '.join(served.NAMES)} can be served for real, and only when --services has them "
                       f"(nova: placement too) (--services {','.join(services)})")
    tools = {"keystone": "keystone-manage", "glance": "glance-api", "placement": "placement-manage",
             "nova": "nova-manage", "neutron": "neutron-db-manage", "cinder": "cinder-manage", "heat": "heat-manage"}
    for release in (old, new):  # fail in a second, not after seeding the old side
        for service in services:
            if not (venv_root / release / "bin" / tools[service]).exists():
                raise LabError(f"no {service} in the venv {venv_root / release}; build it with: "
                               f"scripts/build-venv {release}")
    db_old_port, db_new_port, ks_port, glance_port = _distinct_ports(4)
    state: dict[str, Any] = {
        "complete": False,
        "services": [s for s in KNOWN if s in services],
        "admin_password": secrets.token_urlsafe(12),
        "glance_password": secrets.token_urlsafe(12),
        "keystone_port": ks_port,
        "glance_port": glance_port if "glance" in services else 0,
        "old": {"release": old, "root": str(lab / "old"), "db_base": str(lab / "db-old"), "db_port": db_old_port},
        "new": {"release": new, "root": str(lab / "new"), "db_base": str(lab / "db-new"), "db_port": db_new_port},
    }
    for side in SIDES:
        state[side]["keystone_port"] = ks_port
    if "nova" in real:  # shared ports and secrets, 0600 like the rest
        placement, compute, mq, dist_old, dist_new = _distinct_ports(5)
        state["nova"] = novaserve.settings_dict(novaserve.Settings.new(ks_port, placement, compute, mq))
        state["old"]["nova_mq_dist_port"], state["new"]["nova_mq_dist_port"] = dist_old, dist_new
    if heatlab.NAME in services:  # shared ports (the management address) and secrets, 0600 like the rest
        api, cfn, mq, dist_old, dist_new = _distinct_ports(5)
        state["heat"] = heatlab.settings_dict(heatlab.Settings.new(ks_port, api, cfn, mq))
        state["old"]["mq_dist_port"], state["new"]["mq_dist_port"] = dist_old, dist_new
    for name in (n for n in served.NAMES if n in real):  # the same shape: API and broker ports shared, secrets
        api, mq, dist_old, dist_new = _distinct_ports(4)
        state.setdefault("netvol", {})[name] = netvol.settings_dict(netvol.Settings.new(ks_port, api, mq))
        state["old"].setdefault("mq_dist_ports", {})[name] = dist_old
        state["new"].setdefault("mq_dist_ports", {})[name] = dist_new
    _save(lab, state)  # first, so that 'down' can clean up after a failed 'up'
    try:
        _build(lab, state, venv_root)
    except BaseException:
        down(lab)  # a half-built lab must not leave servers behind (Ctrl-C included)
        raise
    return _summary(lab, state)


def _build(lab: Path, state: dict[str, Any], venv_root: Path) -> None:
    """The slow part of 'up': databases, both controllers, seeding; records timings in the state."""
    old, new, ks_port = state["old"]["release"], state["new"]["release"], state["keystone_port"]
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    for side in SIDES:
        _db(state, side).start()
    timings["mariadb_x2"] = time.monotonic() - t0
    services, glance_port = _services(state), state.get("glance_port", 0)
    api = Api(f"http://127.0.0.1:{ks_port}", glance_port, state.get("glance_password", ""),
              nova=novaserve.settings(state))
    new_root = Path(state["new"]["root"])

    def make_side(side: str, pool: concurrent.futures.Executor) -> tuple[Any, Any]:
        """One controller, a fresh install of its release on its own DB server: keystone's schema and the
        stack's (configs, databases, schemas, the real services' files) made side by side, as futures of
        the controller and of the stack (nothing of one touches the other's databases or files)."""
        root, release, db = Path(state[side]["root"]), state[side]["release"], _db(state, side)

        def timed(name: str, make: Any) -> Any:
            t = time.monotonic()
            out = make()
            timings[f"{side}_{name}"] = time.monotonic() - t
            return out

        ctl = pool.submit(timed, "keystone", lambda: make_controller(root, release, db, ks_port, venv_root,
                                                                     glance_port=glance_port))

        def stack() -> Any:
            s = fullstack.build(root, release, db, venv_root, services, api, state[side].get("nova_mq_dist_port", 0))
            _install_real(state, side, Path(venv_root) / release)
            return s

        return ctl, pool.submit(timed, "stack", stack)

    # both controllers at once: four independent parts (keystone's schema and the stack's, per controller)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        t1 = time.monotonic()
        new_built = make_side("new", pool)
        old_ctl_job, old_stack_job = make_side("old", pool)
        old_root = Path(state["old"]["root"])
        old_ctl = old_ctl_job.result()
        timings["old_keystone_ready"] = time.monotonic() - t1
        t2 = time.monotonic()
        glance_url = f"http://127.0.0.1:{glance_port}" if glance_port else GLANCE_URL
        # keystone bootstrapped and serving while the stacks' schemas are still being made
        state["seed"] = seed_keystone(old_ctl, state["admin_password"], glance_url)
        timings["seed_keystone"] = time.monotonic() - t2
        old_stack = old_stack_job.result()
        timings["make_old"] = time.monotonic() - t1
        t2 = time.monotonic()
        state["seed"].update(fullstack.seed_old(old_stack, state["seed"], services))
        timings["seed_and_start_old"] = time.monotonic() - t2
        for name, settings in state.get("netvol", {}).items():  # after glance made project "service"
            state["seed"][name] = served.served(old_root, name).register(netvol.Settings(**settings),
                                                                         state["seed"]["admin_token"])
        if "nova" in state:
            t = time.monotonic()
            tree = lab / novaserve.COMPUTE_DIR
            state["compute"] = {"host": novaserve.COMPUTE_HOST, "root": str(tree)}
            _save(lab, state)  # first, so that 'down' stops it after a failed 'up'
            state["compute"] = fullstack.start_compute(tree, old_stack)
            fullstack.retire_absent_reporters(_db(state, "old"), services)
            timings["compute"] = time.monotonic() - t
        if "heat" in state:
            heat = heatlab.Settings(**state["heat"])
            heatlab.install(old_root, old, old_ctl.venv, _db(state, "old"), heat, state["old"]["mq_dist_port"])
            state["seed"]["heat"] = heatlab.register(heat, state["seed"]["admin_token"])
            heatlab.start_all(old_root)
        timings["seed_old"] = time.monotonic() - t2
        new_ctl = new_built[0].result()  # its errors, if any, as 'up' raised them before
        new_built[1].result()
        timings["make_new"] = max(timings["new_keystone"], timings["new_stack"])
    if "heat" in state:
        t3 = time.monotonic()
        heatlab.install(new_root, new, new_ctl.venv, _db(state, "new"), heatlab.Settings(**state["heat"]),
                        state["new"]["mq_dist_port"])
        timings["make_new"] += time.monotonic() - t3
    t4 = time.monotonic()
    _write_lab_plan(lab, state)
    timings["plan"] = time.monotonic() - t4
    timings["total"] = time.monotonic() - t0
    state["timings"] = {k: round(v, 2) for k, v in timings.items()}
    state["complete"] = True
    _save(lab, state)


def _install_real(state: dict[str, Any], side: str, venv: Path) -> None:
    """Neutron's and cinder's real configs and brokers on one controller (after its stack made their
    schema): the old one is cinder host ``old-ctl``, the new one ``new-ctl`` (the plan's host names)."""
    root, release, db = Path(state[side]["root"]), state[side]["release"], _db(state, side)
    settings = {n: netvol.Settings(**v) for n, v in state.get("netvol", {}).items()}
    dist = state[side].get("mq_dist_ports", {})
    if "neutron" in settings:
        neutronlab.install(root, release, venv, db, settings["neutron"], dist["neutron"])
    if "cinder" in settings:
        cinderlab.install(root, release, venv, db, settings["cinder"], dist["cinder"],
                          OLD_HOST if side == "old" else NEW_HOST)


def _ensure_db_admin(db: MariaDB, password: str) -> None:
    """The tool's admin account: it creates users and grants on the target, so WITH GRANT OPTION.

    ALTER USER as well, so a re-written plan and the server agree on the password.
    """
    db.execute("CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s", args=(DB_ADMIN, password))
    db.execute("ALTER USER %s@'127.0.0.1' IDENTIFIED BY %s", args=(DB_ADMIN, password))
    db.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'127.0.0.1' WITH GRANT OPTION", args=(DB_ADMIN,))


def _write_lab_plan(lab: Path, state: dict[str, Any]) -> Path:
    """DB admin accounts (random passwords, kept in the 0600 state) and DIR/plan.toml (0600) with its key.

    Both passwords go inline: the plan then works as is for ``upgrade run``, ``resume`` and
    ``revert`` with no environment to set, which is what a lab is for; 0600 keeps them private.
    """
    passwords = state.setdefault("db_admin_passwords", {})
    admins: dict[str, DBAdmin] = {}
    for side in SIDES:
        passwords.setdefault(side, secrets.token_urlsafe(16))
        _ensure_db_admin(_db(state, side), passwords[side])
        admins[side] = DBAdmin(DB_ADMIN, password=passwords[side])
    _save(lab, state)
    ctl = {side: Controller.load(Path(state[side]["root"]), _db(state, side)) for side in SIDES}
    _private_file(lab / PLAN)  # write_plan truncates and keeps the mode: never readable by others
    try:
        glance = state.get("glance_port")
        nova = novaserve.settings(state)
        plan = write_plan(lab, ctl["old"], ctl["new"], admins["old"], admins["new"], journal="journal",
                          services=_services(state), glance_url=f"http://127.0.0.1:{glance}" if glance else None,
                          served=novaserve.plan_keys(nova) if nova else None)
        if "heat" in state:
            with plan.open("a") as f:
                f.write(heatlab.plan_section(heatlab.Settings(**state["heat"])))
        if "compute" in state:  # a compute host, agents and APIs that report: the run waits for them
            _private_file(lab / CLOUD_PASSWORD)
            (lab / CLOUD_PASSWORD).write_text(state["admin_password"] + "\n")
            with plan.open("a") as f:
                f.write(cloud_table(f"http://127.0.0.1:{state['keystone_port']}/v3"))
        return plan
    except (ImportError, KeyFileError) as exc:  # the vault key dump.key, as `upgrade keygen` writes it
        raise LabError(f"cannot write the vault key {lab / 'dump.key'}: {exc} — run this with the project "
                       "venv's python (.venv/bin/python -m scripts.lab ...)") from None


def down(lab: Path) -> list[str]:
    """Stop every lab process of DIR by its pid file; files stay. Returns what was stopped."""
    lab = lab.resolve()
    state = _load(lab)
    stopped: list[str] = []
    running: dict[str, list[str]] = {}
    if state.get("compute"):  # the compute host first: it is no controller's unit
        state["compute_at_down"] = novaserve.compute_stop(Path(state["compute"]["root"]))
        if state["compute_at_down"]:
            stopped.append(state["compute"]["host"])
        _save(lab, state)
    for side in SIDES:
        root = Path(state[side]["root"])
        for unit in reversed(_units(state, root)):  # the reverse of the start order: heat's engine before its broker
            if units.alive(root, unit):
                running.setdefault(side, []).insert(0, unit)  # kept in start order, for 'up'
                stopped.append(f"{side}/{unit}")
            units.stop(root, unit)
    for side in SIDES:
        db = _db(state, side)
        if db.running():
            db.stop()
            stopped.append(f"db-{side}")
    if running:
        state["running_at_down"] = running
        _save(lab, state)
    return stopped


def status(lab: Path) -> dict[str, Any]:
    """Which lab processes run now (a unit served for real counts only when it answers)."""
    lab = lab.resolve()
    state = _load(lab)
    result: dict[str, Any] = {"dir": str(lab), "complete": state.get("complete", False)}
    if state.get("compute"):
        result[state["compute"]["host"]] = novaserve.compute_pid(Path(state["compute"]["root"])) is not None
    for side in SIDES:
        root = Path(state[side]["root"])
        result[side] = {
            "db_running": _db(state, side).running(),
            **{u: units.status(root, u) for u in _units(state, root) if (root / "lab.json").exists()},
        }
    return result


def _schema_cache(chosen: Path | None) -> None:
    """Where this process's lab setup keeps fresh schemas (``scripts.lab.schemacache``): *chosen*, the
    environment's (a test run's), or the default kept across builds; ``none``: no cache."""
    if chosen is not None and str(chosen) == "none":
        os.environ.pop(schemacache.ENV, None)
        return
    cache = chosen or Path(os.environ.get(schemacache.ENV) or schemacache.DEFAULT)
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)  # nova's cell mappings in a dump hold its DB password
    os.environ[schemacache.ENV] = str(cache)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.lab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="build (or restart) the two-controller lab and print a JSON summary")
    p_up.add_argument("dir", type=Path)
    p_up.add_argument("--old", default="2025.2", help="release of the old controller")
    p_up.add_argument("--new", default="2026.1", help="release of the new controller")
    p_up.add_argument("--venv-root", type=Path, default=DEFAULT_VENV_ROOT)
    p_up.add_argument("--services", default=",".join(fullstack.ALL),
                      help="comma-separated: keystone plus any of " + ", ".join(KNOWN[1:])
                      + " (default: all but heat)")
    p_up.add_argument("--schema-cache", type=Path, default=None,
                      help="directory of fresh-schema dumps kept across builds: a release's schemas are synced "
                      f"by its real tools once, then loaded (default: ${schemacache.ENV}, else "
                      f"{schemacache.DEFAULT}); 'none': sync every time")
    p_up.add_argument("--real", default="", help="comma-separated: serve nova (placement and nova with a compute "
                      "host), neutron and/or cinder for real (APIs, RPC services, brokers, catalog) instead of "
                      "stand-ins")
    for name, text in (("down", "stop every lab process, keep the files"), ("status", "which lab processes run")):
        sub.add_parser(name, help=text).add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            _schema_cache(args.schema_cache)
            services = tuple(s.strip() for s in args.services.split(",") if s.strip())
            real = tuple(s.strip() for s in args.real.split(",") if s.strip())
            print(json.dumps(up(args.dir, args.old, args.new, args.venv_root, services, real), indent=2))
        elif args.command == "down":
            stopped = down(args.dir)
            print(f"lab down: stopped {', '.join(stopped) or 'nothing (was not running)'}", file=sys.stderr)
        else:
            print(json.dumps(status(args.dir), indent=2))
    except LabError as exc:
        print(f"lab {args.command}: {' | '.join(str(exc).splitlines())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
