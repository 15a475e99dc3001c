"""A tool killed while a remote command runs: no signal crosses SSH, so the command lives on; the
next resume or revert (its leftover sweep) kills it before anything else runs, and only it.

On the multi-host lab: a real sshd on newctl, the tool's real SshHost in the deploy host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.conftest import REPO
from tests.test_multihost import lab  # noqa: F401 (fixture; hostlab_snapshot is conftest's)

TICKS = "3131"  # a sleep nobody else runs: the stand-in for a remote db_sync

START = textwrap.dedent("""
    import sys, time
    from upgrade import app, plan
    host = app.side(plan.load(sys.argv[1]).target).host
    host.popen(["sleep", sys.argv[2]])
    print("started", flush=True)
    time.sleep(600)
""")
SWEEP = textwrap.dedent("""
    import sys
    from upgrade import app, hosts, plan
    print("\\n".join(hosts.sweep_stale_tmpdirs(app.side(plan.load(sys.argv[1]).target).host)))
""")


def _sleepers(seconds: str) -> list[int]:
    """Pids (seen from here, the root pid namespace) of every ``sleep <seconds>``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", seconds.encode()]:
                    out.append(int(entry))
            except OSError:
                continue
    return out


def _in_deploy(lab, code: str, *args: str, **kw) -> subprocess.Popen:  # noqa: F811
    return subprocess.Popen(lab.in_deploy([sys.executable, "-c", code, str(lab.plan), *args]), cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def test_a_dead_tool_s_remote_command_is_killed_by_the_next_sweep(lab):  # noqa: F811
    # an unrelated long command on newctl: the sweep must leave it alone
    other = subprocess.Popen(["nsenter", "-t", str(lab.pid1("newctl")), "-a", "sleep", TICKS])
    deadline = time.monotonic() + 30
    while not _sleepers(TICKS) and time.monotonic() < deadline:
        time.sleep(0.05)
    (bystander,) = _sleepers(TICKS)
    tool = _in_deploy(lab, START, TICKS)
    assert tool.stdout.readline().strip() == "started", tool.stderr.read()
    deadline = time.monotonic() + 30
    while len(_sleepers(TICKS)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_sleepers(TICKS)) == 2
    os.kill(tool.pid, signal.SIGKILL)  # the tool dies; its remote command does not
    tool.wait()
    assert len(_sleepers(TICKS)) == 2  # the state the sweep starts from: the dead tool's command still runs

    sweep = _in_deploy(lab, SWEEP)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 0, err
    assert "killed pid" in out and "-procs" in out
    deadline = time.monotonic() + 10
    while len(_sleepers(TICKS)) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sleepers(TICKS) == [bystander]  # the dead run's command only
    other.kill()
    other.wait()
    assert not list((lab.dir / "hosts" / "newctl" / "tmp").glob("osu-*-procs"))
