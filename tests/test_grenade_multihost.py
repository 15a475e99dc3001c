"""Grenade on the multi-host lab, across the management address switchover: resources made before the upgrade
through the real client, as a non-admin user of its own project, on the deploy host and through the
management address (a server with metadata on compute1, its flavor and keypair; a network, subnet, router,
port and security group with rules; a volume and its snapshot; a second volume attached to the server), are
there after ``upgrade run`` (SIGKILLed inside nova's schema migration on the new controller, then
``upgrade resume``: no ``nova-manage`` of the killed run lives on there) through the NEW controller (same
ids and states: the server ACTIVE on the same compute host, the volume in-use on it), both computes report
``up`` to it with heartbeats newer than the switchover (its own database says so too), the upgraded cloud
serves new work (a server booted on compute2, then deleted; a volume made, attached and deleted; a network
made and deleted), and after ``upgrade revert`` the OLD controller, holding the address again, shows the
same.

The lab (one for the module, from the session's ``hostlab_snapshot``): keystone, glance, placement, nova
(``scripts.lab.novahost``), neutron and cinder (``scripts.lab.netvolhost``) of 2025.2 serving on oldctl,
2026.1 installed and stopped on newctl; nova-compute (fake driver) of 2025.2 on compute1 and compute2, talking
to the controller only through the management address.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scripts.lab import grenade, netvolhost, novahost
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.proc import LabError
from tests.conftest import NEW, OLD, require
from tests.test_multihost import _lab, journal_events, tool, wait_for, who_answers

#: stands up every service for real on two controllers and runs a whole upgrade and its revert
pytestmark = [pytest.mark.lab, pytest.mark.slow]

COMPUTES = ("compute1", "compute2")
TOOLS = ("nova-manage", "nova-compute", "placement-manage", "neutron-db-manage", "cinder-manage", "openstack")
#: the run and the revert of every service: minutes on two shared cores
RUN_TIMEOUT = 2400
#: nova's schema migration on the new controller, killed while its `nova-manage` works there
#: (statemachine.failpoints.while_child_works, as tests/test_grenade.py does on the local lab)
SCHEMA_KILL = "nova.upgrade_schema:inside"


@pytest.fixture(scope="module")
def grenade_lab(hostlab_snapshot, tmp_path_factory):
    for release in (OLD, NEW):
        for name in TOOLS:
            require((DEFAULT_VENV_ROOT / release / "bin" / name).exists(),
                    f"{name} {release} missing (scripts/build-venv {release} installs it)")
    require(Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists(),
            "rabbitmq-server not installed (scripts/setup-system installs it)")
    with _lab(tmp_path_factory.mktemp("grenade-hosts") / "lab", hostlab_snapshot, len(COMPUTES)) as lab:
        t0 = time.monotonic()
        lab.state["timings"]["nova"] = novahost.setup(lab)
        lab.state["timings"]["netvol"] = netvolhost.setup(lab)
        lab.state["timings"]["real services"] = round(time.monotonic() - t0, 1)
        lab.save()
        yield lab


def _schedule_only(cloud: grenade.Cloud, host: str, work, *args):
    """``work(*args)`` with every other compute host disabled (as the admin does for maintenance), so that the
    scheduler of the controller serving now places servers on *host*; the others enabled again after."""
    others = [h for h in COMPUTES if h != host]
    for h in others:
        cloud.admin("compute", "service", "set", "--disable", "--disable-reason", f"servers go to {host}", h,
                    "nova-compute", json_out=False)
    try:
        return work(*args)
    finally:
        for h in others:
            cloud.admin("compute", "service", "set", "--enable", h, "nova-compute", json_out=False)


def _reported_after(cloud: grenade.Cloud, since: datetime) -> dict[str, str]:
    """host -> heartbeat of every compute, once each is ``up`` with a heartbeat newer than *since* (through the
    API of the controller serving now)."""
    def fresh() -> dict[str, str] | None:
        rows = {r["Host"]: r for r in grenade.compute_services(cloud)}
        ok = {h: rows[h]["Updated At"] for h in COMPUTES if h in rows and rows[h]["State"] == "up"
              and rows[h]["Status"] == "enabled" and rows[h]["Updated At"]
              and grenade._time(rows[h]["Updated At"]) > since}
        return ok if len(ok) == len(COMPUTES) else None

    return wait_for(f"both computes up with a heartbeat after {since.isoformat()}", fresh, timeout=180, interval=2)


def _db_heartbeats(lab, controller: str) -> dict[str, datetime]:
    """The computes' heartbeats as *controller*'s own nova database holds them (UTC)."""
    return {h: t.replace(tzinfo=UTC) for h, t in lab.query(
        controller, "SELECT host, updated_at FROM nova.services WHERE `binary`='nova-compute' AND deleted=0")}


def _manage_on(lab, host: str) -> dict[int, str]:
    """pid -> start time of every ``nova-manage`` process running inside *host* (its PID namespace), read in
    /proc from here: what a killed run's remote command would leave behind."""
    ns = os.readlink(f"/proc/{lab.pid1(host)}/ns/pid")
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "ns" / "pid") == ns and b"nova-manage" in (
                    entry / "cmdline").read_bytes():
                stat = (entry / "stat").read_text()
                found[int(entry.name)] = stat[stat.rindex(")") + 2:].split()[19]  # field 22: start time
        except OSError:  # exited meanwhile
            continue
    return found


def _still_running(procs: dict[int, str]) -> dict[int, str]:
    """The processes of *procs* (pid -> start time) alive now, the same ones (not a reused pid)."""
    alive = {}
    for pid, started in procs.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[19] == started and fields[0] != "Z":
            alive[pid] = started
    return alive


def _open_steps(journal: Path) -> set[str]:
    """The steps with an intent and no outcome after it: where the killed run was at work."""
    open_: set[str] = set()
    for e in journal_events(journal):
        if e["kind"] == "intent":
            open_.add(e["step"])
        elif e["kind"] in ("done", "failed"):
            open_.discard(e["step"])
    return open_


def test_resources_survive_the_switchover_and_the_revert(grenade_lab):
    lab = grenade_lab
    timings: dict[str, float] = {}
    plan = novahost.write_plan(lab)
    journal = lab.dir / "journal"
    assert who_answers(lab) == "oldctl"

    # before: the project's own user makes its resources through the management address (the admin only
    # the flavor and the placement on compute1); no admin right for it
    t0 = time.monotonic()
    cloud = novahost.grenade_setup(lab)
    assert stat.S_IMODE(cloud.clouds.stat().st_mode) == 0o600
    made = _schedule_only(cloud, "compute1", grenade.create, cloud)
    timings["create"] = time.monotonic() - t0
    server = made["compute"]["server"]
    assert server["status"] == "ACTIVE" and server["host"] == "compute1"
    assert server["properties"] == {"grenade": "before", "survives": "upgrade"}
    assert made["volume"]["view"]["volume"]["status"] == "available"
    assert made["volume"]["view"]["snapshot"]["status"] == "available"
    assert made["network"]["view"]["router_interfaces"][0][1] == made["network"]["ids"]["subnet"]
    assert made["attachment"]["view"] == {"id": made["attachment"]["ids"]["volume"], "status": "in-use",
                                          "attached_to": [server["id"]]}
    with pytest.raises(LabError, match="403|Forbidden|not allowed|policy"):
        cloud.user("flavor", "create", "--ram", "64", "--disk", "1", "--vcpus", "1", "not-mine")

    # the run, with the management address moved to the new controller as its last machine; SIGKILLed inside
    # nova's schema migration on the new controller (while its `nova-manage` works there over SSH), then resumed
    t0 = time.monotonic()
    killed = tool(lab, "run", str(plan), failpoint=SCHEMA_KILL, timeout=RUN_TIMEOUT)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert SCHEMA_KILL.removesuffix(":inside") in _open_steps(journal), _open_steps(journal)
    # no signal crosses SSH: what the dead run started on newctl may work on; the resume's sweep kills it first
    left = _manage_on(lab, "newctl")
    res = tool(lab, "resume", "--journal", str(journal), timeout=RUN_TIMEOUT)
    timings["run"] = time.monotonic() - t0
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert not _still_running(left), (left, _still_running(left))
    assert not _manage_on(lab, "newctl"), _manage_on(lab, "newctl")
    kinds = [e["kind"] for e in journal_events(journal) if e["step"] == "nova.upgrade_schema"]
    assert kinds.count("intent") == 2 and kinds[-1] == "done" and "failed" not in kinds, kinds
    assert who_answers(lab) == "newctl"
    events = journal_events(journal)
    [moved] = [e["ts"] for e in events if e["step"] == "network.management.check" and e["kind"] == "done"]
    switchover = datetime.fromtimestamp(moved, UTC)

    # the NEW controller, through the management address: the same resources, both computes reporting to it
    t0 = time.monotonic()
    new = novahost.grenade_cloud(lab, "new", host="compute1")
    seen = grenade.verify(new, switchover)
    assert seen["compute"]["server"] == server
    assert seen["compute"]["service"]["state"] == "up" and seen["compute"]["service"]["host"] == "compute1"
    for kind in ("network", "volume", "attachment"):
        assert seen[kind] == made[kind]["view"], kind
    beats = _reported_after(new, switchover)
    assert set(beats) == set(COMPUTES)
    db = _db_heartbeats(lab, "newctl")
    assert all(db[h] > switchover for h in COMPUTES), db
    timings["verify new"] = time.monotonic() - t0

    # new work on the upgraded cloud: a server scheduled on compute2 and deleted, a volume, a network
    t0 = time.monotonic()
    new.host = "compute2"
    works = _schedule_only(new, "compute2", grenade.new_work, new)
    timings["new work"] = time.monotonic() - t0
    assert works["compute"] == {"booted": works["compute"]["booted"], "host": "compute2", "deleted": True}
    assert works["volume"]["status"] == "available" and works["network"]["status"] == "ACTIVE"
    assert works["attachment"]["attached_to"] == [server["id"]]

    # the new work wrote to the new controller's databases: the operator's explicit choice keeps them in the
    # vault and goes back (a plain revert refuses: tests/test_grenade.py)
    t0 = time.monotonic()
    rev = tool(lab, "revert", "--journal", str(journal), "--discard-new-writes", timeout=RUN_TIMEOUT)
    timings["revert"] = time.monotonic() - t0
    assert rev.returncode == 0, rev.stdout[-3000:] + rev.stderr[-3000:]
    reverted = datetime.now(UTC)
    assert who_answers(lab) == "oldctl"
    # the revert ended once the old controller listened again where the stops had closed listeners: neutron's
    # API among them (the client below is not refused while neutron-server binds)
    closed = {a for e in journal_events(journal) if e["kind"] == "done" and e["step"] == "neutron.stop_source"
              for a in json.loads(e["result"])["listeners"]}
    assert any(a.endswith(":9696") for a in closed), closed

    # the OLD controller, holding the address again: the same view, the computes back on it
    t0 = time.monotonic()
    old = novahost.grenade_cloud(lab, "old", host="compute1")
    seen = grenade.verify(old, reverted)
    assert seen["compute"]["server"] == server
    for kind in ("network", "volume", "attachment"):
        assert seen[kind] == made[kind]["view"], kind
    assert set(_reported_after(old, reverted)) == set(COMPUTES)
    timings["verify old"] = time.monotonic() - t0

    # no secret of the lab's services or of the Grenade user in the tool's output
    secrets = [v for k, v in lab.state["nova"].items() if k.endswith("password")]
    secrets += [v[k] for v in lab.state["netvol"].values() for k in v if k.endswith("password")]
    secrets.append(json.loads(cloud.clouds.read_text())["clouds"]["grenade"]["auth"]["password"])
    out = killed.stdout + killed.stderr + res.stdout + res.stderr + rev.stdout + rev.stderr
    assert len(secrets) >= 4 and not [s for s in secrets if s in out]
    print(f"grenade multi-host: lab {lab.state['timings']}, test {({k: round(v, 1) for k, v in timings.items()})}")
