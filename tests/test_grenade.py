"""Grenade on the local lab: resources made before the upgrade through the real client, as a non-admin
user of its own project, are there after ``upgrade run`` through the NEW controller's APIs (same ids
and states: the server ACTIVE on the same compute host with its volume attached and in-use, the
network, subnet, router, port and security group, the volume and its snapshot; that host's
nova-compute reporting ``up`` with a heartbeat newer than the run's end), the upgraded cloud serves
new work (a second server booted and deleted, a volume made, attached, detached and deleted, a
network made and deleted), and after ``upgrade revert`` the OLD controller shows the same again.

The lab (``python -m scripts.lab up --real nova,neutron,cinder``): placement-api, nova-api,
nova-conductor, nova-scheduler, neutron-server, cinder-api, cinder-scheduler, cinder-volume and
each service's RabbitMQ of 2025.2 serving on the old controller, 2026.1 installed and stopped on the
new one, nova-compute (fake driver) of 2025.2 on the compute host beside them. Built once for the
module: the one lab of the suite that serves every service for real.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from journal.redact import Redactor
from scripts.lab import __main__ as lab_cli
from scripts.lab import fullstack, grenade, novaserve, osclient, rabbit, served, units
from scripts.lab import plan as plan_mod
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.proc import LabError, pid_alive
from services.fleet import cloudcheck
from statemachine import failpoints
from statemachine.step import StepError
from tests.conftest import NEW, OLD, REPO, require, require_mariadb, upgrade
from tests.test_multihost import wait_for
from upgrade import plan as upgrade_plan

#: stands up real services and runs a whole upgrade (declared here, so conftest's tables need no entry)
pytestmark = [pytest.mark.lab, pytest.mark.slow]

#: what the lab serves for real beyond keystone and glance
REAL = ("nova", "neutron", "cinder")
#: the schema steps a SIGKILL lands in while their `*-manage` command runs (statemachine.failpoints.while_child_works)
SCHEMA_STEPS = ("nova.upgrade_schema", "neutron.upgrade_schema")
SCHEMA_KILLS = tuple(f"{step}:inside" for step in SCHEMA_STEPS)
TOOLS = ("keystone-manage", "glance-api", "placement-manage", "nova-manage", "nova-compute", "neutron-db-manage",
         "cinder-manage", "openstack")


class NovaLab:
    def __init__(self, directory: Path, summary: dict[str, Any]) -> None:
        self.dir = directory
        self.summary = summary
        self.state = json.loads((directory / lab_cli.STATE).read_text())
        self.plan = Path(summary["plan"])
        self.journal = Path(summary["journal"])

    def root(self, side: str) -> Path:
        return Path(self.state[side]["root"])

    def serving(self, side: str) -> dict[str, bool]:
        every = [*novaserve.UNITS, *(u for n in REAL[1:] for u in served.served(self.root("old"), n).units)]
        return {u: units.status(self.root(side), u) for u in every}

    def compute_pid(self) -> int | None:
        return novaserve.compute_pid(Path(self.state["compute"]["root"]))


def _open_steps(journal: Path) -> set[str]:
    """The steps with an intent and no outcome after it: where the killed process was at work."""
    exp = upgrade("journal", "export", "--journal", str(journal))
    assert exp.returncode == 0, exp.stderr
    open_: set[str] = set()
    for e in map(json.loads, exp.stdout.splitlines()):
        if e["kind"] == "intent":
            open_.add(e["step"])
        elif e["kind"] in ("done", "failed"):
            open_.discard(e["step"])
    return open_


def _manage_running(lab: NovaLab) -> list[str]:
    """``nova-manage``/``neutron-db-manage`` processes on the lab's configs still alive."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and int(proc.name) != os.getpid() and str(lab.dir) in cmd and "-manage" in cmd:
            found.append(cmd)
    return found


@pytest.fixture(scope="module")
def nova_lab(tmp_path_factory: pytest.TempPathFactory):
    require_mariadb()
    for release in (OLD, NEW):
        for tool in TOOLS:
            require((DEFAULT_VENV_ROOT / release / "bin" / tool).exists(),
                    f"{tool} {release} missing (scripts/build-venv {release} installs it)")
    require(Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists(),
            "rabbitmq-server not installed (scripts/setup-system installs it)")
    directory = tmp_path_factory.mktemp("grenade") / "lab"
    try:
        summary = lab_cli.up(directory, OLD, NEW, DEFAULT_VENV_ROOT, fullstack.ALL, real=REAL)
    except LabError as exc:
        require(False, f"the lab with real nova did not come up: {exc}")
    try:
        yield NovaLab(directory, summary)
    finally:
        lab_cli.down(directory)


def test_resources_survive_upgrade_and_revert(nova_lab: NovaLab) -> None:
    lab = nova_lab
    units_of = list(lab.serving("old"))
    on, off = dict.fromkeys(units_of, True), dict.fromkeys(units_of, False)
    assert lab.serving("old") == on and lab.serving("new") == off
    compute = lab.compute_pid()
    assert compute
    # the plan tells the tool neutron's and cinder's real units (the broker last: it moves with its
    # service) and the APIs; no secret in a descriptor; configs 0640, brokers' 0600
    plan = lab.plan.read_text()
    for name in REAL[1:]:
        real = served.served(lab.root("old"), name)
        assert f"units = {json.dumps(list(real.units))}" in plan
        assert f'verify_url = "http://127.0.0.1:{lab.state["netvol"][name]["api_port"]}/"' in plan
        for side in ("old", "new"):
            assert lab.state["netvol"][name]["password"] not in (lab.root(side) / f"{name}-lab.json").read_text()
            assert stat.S_IMODE((lab.root(side) / "etc" / name / f"{name}.conf").stat().st_mode) == 0o640
            assert stat.S_IMODE(rabbit.broker(lab.root(side), f"rabbitmq-{name}").conf.stat().st_mode) == 0o600

    # before: the project's own user makes its resources through the catalog (the admin only the flavor)
    cloud = grenade.setup(lab.dir)
    assert (cloud.clouds.stat().st_mode & 0o777) == 0o600
    everything = grenade.create(cloud)
    made = everything["compute"]
    server = made["server"]
    assert everything["volume"]["view"]["volume"]["status"] == "available"
    assert everything["volume"]["view"]["snapshot"]["status"] == "available"
    assert everything["network"]["view"]["router_interfaces"][0][1] == everything["network"]["ids"]["subnet"]
    assert len(everything["network"]["view"]["security_group"]["rules"]) >= 4  # two egress defaults + ssh + icmp
    assert everything["attachment"]["view"] == {"id": everything["attachment"]["ids"]["volume"], "status": "in-use",
                                                "attached_to": [server["id"]]}
    assert server["status"] == "ACTIVE" and server["host"] == novaserve.COMPUTE_HOST
    assert server["properties"] == {"grenade": "before", "survives": "upgrade"}
    with pytest.raises(LabError, match="403|Forbidden|not allowed|policy"):
        cloud.user("flavor", "create", "--ram", "64", "--disk", "1", "--vcpus", "1", "not-mine")  # no admin
    # every command went through one client process kept running, both users' (no password on its argv or in
    # its environment); one that stops answering is killed after its timeout, the command named, and the
    # next command starts a new client
    assert cloud.shell is not None
    pid = cloud.shell.pid
    assert pid and cloud.admin("project", "show", grenade.PROJECT)["name"] == grenade.PROJECT
    assert cloud.shell.pid == pid
    passwords = [c["auth"]["password"] for c in json.loads(cloud.clouds.read_text())["clouds"].values()]
    exposed = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
    assert len(passwords) == 2 and not [p for p in passwords if p.encode() in exposed]
    # and no connection to an API stays open between commands (as none does after a one-shot's exit)
    assert not [f for f in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(f).startswith("socket:")]
    cloud.shell.timeout = 5.0
    os.kill(pid, signal.SIGSTOP)  # a client that never answers
    with pytest.raises(LabError, match=r"openstack flavor list: no answer from the openstack client within 5 s"):
        cloud.user("flavor", "list")
    assert not pid_alive(pid) and cloud.shell.pid is None
    cloud.shell.timeout = osclient.TIMEOUT
    assert grenade.FLAVOR in {f["Name"] for f in cloud.user("flavor", "list")} and cloud.shell.pid not in (None, pid)
    cloud.close()
    assert cloud.shell.pid is None

    # the run, SIGKILLed inside nova's and neutron's schema migrations (while their `db sync` runs) and inside
    # the post-cut-over check, each time resumed: the cloud must come out as from an unbroken run
    env = plan_mod.cloud_env(lab.dir)
    assert env and env[plan_mod.CLOUD_PASSWORD_ENV] not in plan and "[cloud]" in plan  # by its variable only
    outputs: list[str] = []
    pending, args = [*SCHEMA_KILLS, "cloud.verify:inside"], ("run", str(lab.plan))
    while pending:  # the schema steps run side by side: both armed, each kill lands in one (or both) of them
        armed = [p for p in pending if p in SCHEMA_KILLS] or pending
        res = upgrade(*args, failpoint=",".join(armed), env=env, timeout=1800)
        outputs.append(res.stdout + res.stderr)
        assert res.returncode == -signal.SIGKILL, f"{args[0]} with {armed}: {res.stdout[-3000:]}{res.stderr[-3000:]}"
        hit = [p for p in armed if p.removesuffix(":inside") in _open_steps(lab.journal)]
        assert hit, (armed, _open_steps(lab.journal))
        if hit != ["cloud.verify:inside"]:
            # the kill came while the step's `*-manage` ran: it died with the tool (no db sync goes on alone)
            assert not _manage_running(lab), _manage_running(lab)
        pending = [p for p in pending if p not in hit]
        args = ("resume", "--journal", str(lab.journal))
    res = upgrade("resume", "--journal", str(lab.journal), env=env, timeout=1800)
    outputs.append(res.stdout + res.stderr)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    after_run = datetime.now(UTC)
    assert lab.serving("new") == on and lab.serving("old") == off
    assert lab.compute_pid() == compute  # the compute host is no controller's unit: never stopped

    # the NEW controller's APIs: the same resources, the compute reporting to it, new work served
    new = grenade.cloud(lab.dir, "new")
    seen_all = grenade.verify(new, after_run)
    seen = seen_all["compute"]
    assert seen["server"] == server
    assert seen["service"]["state"] == "up" and seen["service"]["host"] == novaserve.COMPUTE_HOST
    for kind in ("network", "volume", "attachment"):
        assert seen_all[kind] == everything[kind]["view"], kind
    works = grenade.new_work(new)
    work = works["compute"]
    assert work["host"] == novaserve.COMPUTE_HOST and work["deleted"]
    assert works["volume"]["status"] == "available" and works["network"]["status"] == "ACTIVE"
    assert works["attachment"]["attached_to"] == [server["id"]]
    # the new volumes live on the new controller's cinder-volume (its host name), seen by the admin
    services = new.admin("volume", "service", "list")
    assert {(s["Binary"], s["Host"], s["State"]) for s in services if s["State"] == "up"} >= {
        ("cinder-volume", "new-ctl@lvm", "up"), ("cinder-scheduler", "new-ctl", "up")}
    new.close()
    _scheduler_without_pools_is_named(lab, env)

    exp = upgrade("journal", "export", "--journal", str(lab.journal), "--format", "jsonl")
    assert exp.returncode == 0, exp.stderr
    events = [json.loads(line) for line in exp.stdout.splitlines()]
    done = {e["step"]: e["result"] for e in events if e["kind"] == "done"}
    # each killed step ran again from its start on resume and finished; the cloud reported to the new controller
    for step in (*SCHEMA_STEPS, "cloud.verify"):
        kinds = [e["kind"] for e in events if e["step"] == step]
        assert kinds[-1] == "done" and kinds.count("intent") >= 2 and "failed" not in kinds, (step, kinds)
    reported = done["cloud.verify"]["reported"]
    assert f"nova-compute on {novaserve.COMPUTE_HOST}" in reported and "cinder-volume on new-ctl@lvm" in reported
    assert {api.split()[1] for api in done["cloud.verify"]["apis"]} >= {"compute", "placement", "network", "volumev3",
                                                                      "identity", "image"}
    assert done["cloud.verify"]["pools"] == ["new-ctl@lvm"]  # cinder-scheduler could place a volume there
    assert done["nova.verify"]["url"] == lab.summary["compute_url"] and done["nova.verify"]["http_status"]
    assert done["placement.verify"]["url"] == lab.summary["placement_url"]
    assert done["nova.status_check"]["rc"] in (0, 1), done["nova.status_check"]  # the placement API answers
    # the broker first (it moves with nova), nova-metadata held back (neutron's metadata agent serves)
    assert done["nova.start_target"]["units"] == [novaserve.BROKER, "nova-scheduler", "nova-conductor", "nova-api"]

    # the new work wrote to the new controller's databases: a plain revert refuses (it would lose them) ...
    refused = upgrade("revert", "--journal", str(lab.journal), env=env, timeout=1800)
    assert refused.returncode == 2 and "cinder.volumes" in refused.stdout + refused.stderr, refused.stderr[-3000:]
    assert lab.serving("new") == on  # nothing changed: the new side still serves
    # ... and the operator's explicit choice keeps them in the vault and goes back
    rev = upgrade("revert", "--journal", str(lab.journal), "--discard-new-writes", env=env, timeout=1800)
    assert rev.returncode == 0, rev.stdout[-3000:] + rev.stderr[-3000:]
    after_revert = datetime.now(UTC)
    assert lab.serving("old") == on and lab.serving("new") == off
    assert lab.compute_pid() == compute
    old = grenade.cloud(lab.dir, "old")
    seen_all = grenade.verify(old, after_revert)
    seen = seen_all["compute"]
    assert seen["server"] == server and seen["service"]["state"] == "up"
    for kind in ("network", "volume", "attachment"):
        assert seen_all[kind] == everything[kind]["view"], kind
    old.close()
    # secrets: the service users', the broker's and the grenade user's passwords are in no output of the tool
    secrets = [v for k, v in lab.state["nova"].items() if k.endswith("password")]
    assert len(secrets) == 3
    secrets += [lab.state["netvol"][n]["password"] for n in REAL[1:]]
    seen_text = "".join(outputs) + rev.stdout + rev.stderr + exp.stdout
    assert not [s for s in secrets if s in seen_text]


def _scheduler_without_pools_is_named(lab: NovaLab, env: dict[str, str]) -> None:
    """The post-cut-over check asks cinder-scheduler for its pools, not only cinder-volume for a heartbeat. A
    scheduler that asked for capabilities while the volume service could not answer knows no pool of it: every
    volume create fails ("No valid backend was found") until the volume service publishes them (every 60 s).
    Here the volume service is frozen (SIGSTOP: it neither answers nor publishes) while the scheduler restarts:
    the check names the missing pool; once the volume service runs on, it answers the scheduler's queued
    request and the check is done."""
    root, cinder = lab.root("new"), served.served(lab.root("new"), "cinder")
    assert cinder is not None
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():  # the [cloud] password by its variable, as `upgrade` reads it
            mp.setenv(key, value)
        plan = upgrade_plan.load(lab.plan)
    assert plan.cloud is not None and plan.cloud.cinder_db and plan.cloud.auth is not None
    ctx = SimpleNamespace(target=SimpleNamespace(db=plan.target.db, host=SimpleNamespace(name="new")),
                          redactor=Redactor())
    volume = cinder.pid(root, "cinder-volume")
    assert volume
    os.killpg(volume, signal.SIGSTOP)  # its group: cinder-volume serves each backend from a child process
    try:
        cinder.stop(root, "cinder-scheduler")
        cinder.start(root, "cinder-scheduler")  # consumes again: its capability request is in the frozen one's queue
        with pytest.raises(StepError) as err:
            cloudcheck.verify(ctx, replace(plan.cloud, timeout=3))
        msg = str(err.value)
        assert "cinder-scheduler's pool of new-ctl@lvm: none yet" in msg and "restart cinder-scheduler" in msg, msg
        assert plan.cloud.auth.password not in msg
    finally:
        os.killpg(volume, signal.SIGCONT)
    result = cloudcheck.verify(ctx, replace(plan.cloud, timeout=120))
    assert result["pools"] == ["new-ctl@lvm"] and "cinder-volume on new-ctl@lvm" in result["reported"]


def test_real_needs_the_service_and_changes_nothing(tmp_path: Path) -> None:
    """``--real`` names only services of ``--services`` it can serve: refused before any file is made."""
    directory = tmp_path / "lab"
    for real in (("nova",), ("cinder",)):
        with pytest.raises(LabError, match="--real"):
            lab_cli.up(directory, OLD, NEW, DEFAULT_VENV_ROOT, ("keystone", "neutron"), real)
    assert not directory.exists() or not any(directory.iterdir())
    rc = lab_cli.main(["up", str(directory), "--services", "keystone,glance", "--real", "neutron"])
    assert rc == 1
    assert not directory.exists() or not any(directory.iterdir())


TOOL = """
import subprocess, sys
from statemachine import failpoints
from upgrade.hosts import LocalHost
with failpoints.while_child_works("step:inside"):
    LocalHost().run([sys.executable, "-c", sys.argv[1], sys.argv[2]])
print("the tool went on")
"""
#: a command at work: it notes its pid, connects (a socket, as a `db sync` to its database), then works until killed
WORKS = "import os, signal, socket, sys; open(sys.argv[1], 'w').write(str(os.getpid())); s = socket.socket(); " \
        "signal.pause()"


def test_the_schema_kill_lands_while_the_command_works(tmp_path: Path) -> None:
    """``<step>:inside`` of a schema step kills the tool once its command holds a socket (connected, at work),
    and that command dies with it; unarmed, the same command runs to its end and the tool goes on."""
    pid = tmp_path / "pid"
    env = {k: v for k, v in os.environ.items() if k != failpoints.ENV}
    tool = [sys.executable, "-c", TOOL]
    killed = subprocess.run([*tool, WORKS, str(pid)], cwd=REPO, env={**env, failpoints.ENV: "step:inside"},
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "the tool went on" not in killed.stdout and pid.exists()  # the command had started: killed at work
    wait_for("the command to die with the tool", lambda: not pid_alive(int(pid.read_text())))
    done = subprocess.run([*tool, WORKS.replace("signal.pause()", "s.close()"), str(pid)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "the tool went on" in done.stdout, done.stderr
