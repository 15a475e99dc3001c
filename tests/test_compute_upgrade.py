"""The rolling compute upgrade, nova's unpin and the run's post-cut-over check (``cloud.verify``: a silent
compute named, a kill inside the check), on the multi-host lab with real nova: nova-conductor,
placement and RabbitMQ of the target release on newctl, a real nova-compute (nova's fake virt driver)
of the source release on each of two compute hosts (``scripts/lab/novalab.py``), driven by the real
`upgrade` over SSH from the deploy host.

One lab for the module (real nova takes a minute to set up); every test starts from the lab's
initial state (computes on the source release, nova pinned) and leaves it so: its run is reverted,
or the hosts are put back by hand. Heartbeats and service versions are read from the new
controller's nova database, as the tool reads them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.lab import novalab
from tests.conftest import REPO
from tests.test_multihost import _lab, journal_events, wait_for

OLD, NEW = "2025.2", "2026.1"
COMPUTES = ("compute1", "compute2")
PIN = "[upgrade_levels]\ncompute = flamingo\n"


@pytest.fixture(scope="module")
def nova_lab(hostlab_snapshot, tmp_path_factory):
    with _lab(tmp_path_factory.mktemp("novalab") / "lab", hostlab_snapshot, len(COMPUTES)) as lab:
        lab.state["nova_timings"] = novalab.setup(lab)
        lab.state["versions"] = {r: _service_version(r) for r in (OLD, NEW)}
        yield lab


def _service_version(release: str) -> int:
    venv = Path("/opt/openstack-upgrade/venvs") / release / "bin" / "python3"
    res = subprocess.run([str(venv), "-c", "from nova.objects.service import SERVICE_VERSION; print(SERVICE_VERSION)"],
                         capture_output=True, text=True, check=True, timeout=120)
    return int(res.stdout)


def _tool(lab, *args: str, failpoint: str | None = None):
    from tests.test_multihost import tool

    return tool(lab, *args, failpoint=failpoint)


def _plan(lab, tmp_path: Path, later: bool, pool: int = 10) -> Path:
    path = novalab.write_plan(lab, f"plan-{tmp_path.name}.toml", later, compute_pool=pool)
    dest = tmp_path / "plan.toml"
    shutil.move(path, dest)
    shutil.copyfile(lab.dir / "dump.key", tmp_path / "dump.key")
    (tmp_path / "dump.key").chmod(0o600)
    return dest


def rows(lab) -> dict[str, tuple[int, int, str | None]]:
    """host -> (version, disabled, disabled_reason) of the live nova-compute rows."""
    return {h: (v, d, r) for h, v, d, r in lab.query(
        "newctl", "SELECT host, version, disabled, disabled_reason FROM nova.services "
                  "WHERE `binary`='nova-compute' AND deleted=0")}


def heartbeat(lab, host: str):
    return lab.query("newctl", "SELECT updated_at FROM nova.services WHERE `binary`='nova-compute' AND host=%s",
                     (host,))[0][0]


def conf_hash(lab) -> str:
    return hashlib.sha256((lab.upper("newctl") / "nova" / "nova.conf").read_bytes()).hexdigest()


def services_checksum(lab) -> int:
    """CHECKSUM of nova.services with the heartbeat columns taken out (they move every 2 s by themselves)."""
    return lab.query("newctl", "SELECT CRC32(GROUP_CONCAT(CONCAT_WS('|', id, host, `binary`, version, disabled, "
                               "IFNULL(disabled_reason, ''), deleted) ORDER BY id)) FROM nova.services")[0][0]


def wait_versions(lab, want: dict[str, int]) -> None:
    """Each host's row at its wanted version with a heartbeat after now (a condition, as the tool waits)."""
    since = {h: heartbeat(lab, h) for h in want}

    def fresh(h: str) -> bool:  # a row just (re)created has no heartbeat yet: any first one is after now
        beat = heartbeat(lab, h)
        return beat is not None and (since[h] is None or beat > since[h])

    wait_for("the computes' heartbeats", lambda: all(rows(lab)[h][0] == v and fresh(h) for h, v in want.items()),
             timeout=180, interval=0.5)


def unit(lab, host: str, action: str, name: str) -> None:
    res = lab.inside(host, ["env", "PYTHONPATH=/run/osu/repo", "python3", "-m", "scripts.lab.novalab", action, name],
                     timeout=300)
    assert res.returncode == 0, res.stderr


def by_hand(lab, host: str, release: str) -> None:
    """What an operator does on a compute host left for later: its package upgrade, then a restart."""
    res = lab.inside(host, [*novalab.SWITCH, release], timeout=300)
    assert res.returncode == 0, res.stderr
    unit(lab, host, "stop", "nova-compute")
    unit(lab, host, "start", "nova-compute")


def downgrade_by_hand(lab) -> None:
    """Every compute back on the old release the way nova allows it: the rows' version set back and the
    conductor restarted (it caches the lowest version; ServiceTooOld otherwise), then the hosts."""
    v = lab.state["versions"]
    lab.query("newctl", "UPDATE nova.services SET version=%s WHERE `binary`='nova-compute'", (v[OLD],))
    unit(lab, "newctl", "stop", "nova-conductor")
    unit(lab, "newctl", "start", "nova-conductor")
    for h in COMPUTES:
        by_hand(lab, h, OLD)


def initial(lab) -> None:
    """The module's starting point holds: every compute on the source release, enabled; nova pinned."""
    v = lab.state["versions"]
    assert rows(lab) == {h: (v[OLD], 0, None) for h in COMPUTES}
    assert PIN in (lab.upper("newctl") / "nova" / "nova.conf").read_text()


# ---------------------------------------------------------------------- tests
def test_computes_left_for_later_unpin_refused_then_done(nova_lab, tmp_path):
    """A plan that leaves the computes for later: the run ends pinned and `status` says so; `upgrade unpin`
    is refused naming every compute still old (exit 2, nothing changed: the services rows and nova.conf);
    with one compute upgraded by hand it names the other; with both, it unpins."""
    lab = nova_lab
    v = lab.state["versions"]
    assert v[NEW] > v[OLD]
    initial(lab)
    plan = _plan(lab, tmp_path, later=True)
    res = _tool(lab, "run", str(plan))
    assert res.returncode == 0, res.stderr
    status = _tool(lab, "status", "--journal", str(tmp_path / "journal"))
    assert status.returncode == 0, status.stderr
    assert "pinned (later)" in status.stdout and f"upgrade unpin {plan}" in status.stdout
    assert PIN in (lab.upper("newctl") / "nova" / "nova.conf").read_text()

    before = (services_checksum(lab), conf_hash(lab))
    res = _tool(lab, "unpin", str(plan))
    assert res.returncode == 2, res.stderr
    assert f"compute1 (version {v[OLD]})" in res.stderr and f"compute2 (version {v[OLD]})" in res.stderr
    assert (services_checksum(lab), conf_hash(lab)) == before

    by_hand(lab, "compute1", NEW)
    wait_versions(lab, {"compute1": v[NEW]})
    before = (services_checksum(lab), conf_hash(lab))
    res = _tool(lab, "unpin", str(plan))
    assert res.returncode == 2, res.stderr
    assert "compute2" in res.stderr and "compute1" not in res.stderr.split("service version")[-1]
    assert (services_checksum(lab), conf_hash(lab)) == before

    by_hand(lab, "compute2", NEW)
    wait_versions(lab, {"compute2": v[NEW]})
    res = _tool(lab, "unpin", str(plan))
    assert res.returncode == 0, res.stderr
    assert "[upgrade_levels]\ncompute" not in (lab.upper("newctl") / "nova" / "nova.conf").read_text()
    status = _tool(lab, "status", "--journal", str(tmp_path / "journal"))
    assert "pinned (later)" not in status.stdout
    res = _tool(lab, "unpin", str(plan))
    assert res.returncode == 2 and "nothing to unpin" in res.stderr

    # back to the module's starting point: the run reverted (the pin comes back), the hosts by hand
    res = _tool(lab, "revert", "--journal", str(tmp_path / "journal"))
    assert res.returncode == 0, res.stderr
    downgrade_by_hand(lab)
    wait_versions(lab, {h: v[OLD] for h in COMPUTES})
    initial(lab)


def test_killed_inside_the_rolling_upgrade_resume_then_revert(nova_lab, tmp_path):
    """SIGKILL inside compute1's upgrade (its release switched, the step not committed): resume finishes
    the rolling upgrade of every compute (disable, upgrade command, restart, heartbeat at the target's
    service version, enable) and only then unpins, no committed step twice; revert puts every host back
    on the old release, enabled, nova pinned: the starting point."""
    lab = nova_lab
    v = lab.state["versions"]
    initial(lab)
    start = (services_checksum(lab), conf_hash(lab))
    plan = _plan(lab, tmp_path, later=False, pool=1)
    journal = tmp_path / "journal"
    res = _tool(lab, "run", str(plan), failpoint="compute.compute1.upgrade:inside")
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert rows(lab)["compute1"][1:] == (1, "openstack-upgrade: rolling compute upgrade")  # disabled meanwhile
    res = _tool(lab, "resume", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    assert rows(lab) == {h: (v[NEW], 0, None) for h in COMPUTES}
    assert "[upgrade_levels]\ncompute" not in (lab.upper("newctl") / "nova" / "nova.conf").read_text()
    events = journal_events(journal)
    dones = [e["step"] for e in events if e["kind"] == "done"]
    assert len(dones) == len(set(dones))
    for h in COMPUTES:
        assert [s for s in dones if s.startswith(f"compute.{h}.")] == [
            f"compute.{h}.{s}" for s in ("restart", "verify", "disable", "upgrade", "restart_upgraded",
                                         "report_version", "enable")]
    assert dones.index("nova-unpin.unpin_compute") > max(dones.index(f"compute.{h}.enable") for h in COMPUTES)
    res = _tool(lab, "revert", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    wait_versions(lab, {h: v[OLD] for h in COMPUTES})
    initial(lab)
    assert (services_checksum(lab), conf_hash(lab)) == start


# ---------------------------------------------------------------------- the post-cut-over check, same lab
#: the run's last step: it waits until the cloud reports to the new controller (``[cloud]``)
STEP = "cloud.verify"


def cloud_plan(lab, tmp_path: Path, timeout: int, leave_out: str) -> Path:
    """The lab's plan of the compute hosts (computes left for later: restarted only) and nova-unpin, with
    ``[cloud]``; *leave_out*: a compute host not in ``[[computes]]`` (the run does not restart it)."""
    plan = _plan(lab, tmp_path, later=True)
    text = plan.read_text()
    text, n = re.subn(rf'\[\[computes\]\]\nname = "{leave_out}"\nhost = "[^"]+"\n\n', "", text)
    assert n == 1, text
    plan.write_text(text + f"\n[cloud]\ntimeout = {timeout}\n")
    return plan


def _when(stamp: str) -> datetime.datetime:
    """A heartbeat as the step's result gives it (ISO, UTC as nova writes it)."""
    return datetime.datetime.fromisoformat(stamp)


def test_silent_compute_named_then_resumed_after_a_kill_inside_the_check(nova_lab, tmp_path):
    """compute2's nova-compute stopped: the run's last step times out naming it (and only it), exit 1, the
    run failed at that step and resumable; compute2 started, a resume killed inside the check, then resumed:
    the run completes, the check done once, its result naming each compute with a heartbeat newer than the
    one it had when the check began. The revert leaves the lab at its starting point."""
    lab = nova_lab
    initial(lab)
    plan = cloud_plan(lab, tmp_path, timeout=10, leave_out="compute2")
    journal = tmp_path / "journal"
    timings: dict[str, float] = {}
    unit(lab, "compute2", "stop", "nova-compute")
    try:
        t0 = time.monotonic()
        res = _tool(lab, "run", str(plan))
        timings["run (times out)"] = time.monotonic() - t0
        assert res.returncode == 1, res.stderr
        assert "nova-compute on compute2" in res.stderr, res.stderr
        assert "nova-compute on compute1" not in res.stderr, res.stderr
        assert "upgrade resume" in res.stderr, res.stderr
        events = journal_events(journal)
        assert [e["kind"] for e in events if e["step"] == STEP] == ["intent", "failed"]
        dones = {e["step"] for e in events if e["kind"] == "done"}
        assert {"compute.compute1.restart", "compute.compute1.verify"} <= dones
        status = _tool(lab, "status", "--journal", str(journal))
        assert "failed" in status.stdout and STEP in status.stdout, status.stdout
    finally:
        unit(lab, "compute2", "start", "nova-compute")

    t0 = time.monotonic()
    res = _tool(lab, "resume", "--journal", str(journal), failpoint=f"{STEP}:inside")
    timings["resume (killed inside)"] = time.monotonic() - t0
    assert res.returncode == -signal.SIGKILL, res.stderr
    t0 = time.monotonic()
    res = _tool(lab, "resume", "--journal", str(journal))
    timings["resume"] = time.monotonic() - t0
    assert res.returncode == 0, res.stderr

    events = journal_events(journal)
    dones = [e for e in events if e["kind"] == "done"]
    assert len({e["step"] for e in dones}) == len(dones)  # no committed step twice
    assert dones[-1]["step"] == STEP  # the run's last step
    result = json.loads(dones[-1]["result"])
    reported = result["reported"]
    assert set(reported) == {f"nova-compute on {h}" for h in COMPUTES}
    for h in COMPUTES:
        beat = reported[f"nova-compute on {h}"]
        # newer than the one it had when the check began (none: its row was made anew by the restart)
        assert beat["before"] is None or _when(beat["heartbeat"]) > _when(beat["before"])
        assert heartbeat(lab, h) >= _when(beat["heartbeat"])  # what the new controller's database holds
    assert result["apis"] == []  # the plan names no auth_url

    t0 = time.monotonic()
    res = _tool(lab, "revert", "--journal", str(journal))
    timings["revert"] = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    initial(lab)
    print(f"cloud check test: {({k: round(v, 1) for k, v in timings.items()})}")


def test_lab_timings_reported(nova_lab):
    """How long real nova took to set up (printed for the record, never asserted)."""
    print(f"nova lab setup: {nova_lab.state['nova_timings']}", file=sys.stderr)
    assert set(nova_lab.state["nova_timings"]) == {"controller", "computes"}
    _ = time, REPO


# ---------------------------------------------------------------------- bad input, without the lab (in process)
PLAN = """
[upgrade]
from = "2025.2"
to = "2026.1"
services = ["nova-unpin"]
{upgrade}
[vault]
key_file = "dump.key"
[source]
host = "local"
[source.db]
address = "127.0.0.1"
[target]
host = "local"
etc = "/srv/new/etc"
[target.db]
address = "127.0.0.1"
port = 3307
[[computes]]
name = "compute1"
host = "local"
units = ["nova-compute"]
{compute}
"""


@pytest.mark.parametrize("upgrade, compute, message", [
    ("", 'upgrade_command = ["dnf", "-y", "upgrade", "openstack-nova-compute"]',
     "`computes[0].downgrade_command` is missing"),
    ("", 'upgrade_command = ["x", "{release}"]\ndowngrade_command = ["y"]', "only {from} and {to}"),
    ('unpin = "soon"', "", '`upgrade.unpin` is \'soon\'; expected "now" or "later"'),
    ("compute_timeout = 0", "", "`upgrade.compute_timeout` is 0"),
])
def test_bad_compute_upgrade_keys_are_refused(tmp_path, capsys, upgrade, compute, message):
    from upgrade import cli

    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.format(upgrade=upgrade, compute=compute))
    assert cli.main(["plan", str(plan)]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.toml"]  # nothing made


def test_unpin_of_a_plan_that_unpins_by_itself_is_refused(tmp_path, capsys):
    from upgrade import cli

    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.format(upgrade="", compute=""))
    assert cli.main(["unpin", str(plan)]) == 2
    assert 'upgrade.unpin = "later"' in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.toml"]
