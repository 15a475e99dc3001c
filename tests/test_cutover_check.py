"""The run's last step, ``cloud.verify`` (``[cloud]``): it waits until the cloud reports to the new controller,
on the multi-host lab with real nova (``scripts/lab/novalab.py``): nova-conductor of the target release on
newctl, a real nova-compute on each of two compute hosts, heartbeats read in newctl's nova database.

One lab for the module (the ``nova_lab`` of tests/test_compute_upgrade.py); the test leaves it as it found it
(its run reverted). A compute that does not report is one left out of the plan's ``[[computes]]`` with its
nova-compute stopped: the run's compute phase does not restart it, so it stays silent until the test starts it.
"""

from __future__ import annotations

import datetime
import json
import re
import signal
import time
from pathlib import Path

from tests.test_compute_upgrade import COMPUTES, _plan, _tool, heartbeat, initial, nova_lab, unit  # noqa: F401
from tests.test_multihost import journal_events

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
