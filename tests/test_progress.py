"""Live progress on a real run: in a pseudo-terminal the steps, byte counts and rates are drawn;
piped, one plain line per step with no control characters; ``--quiet`` prints nothing; and the
JSON log stays complete in every case."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

from tests.conftest import KEYSTONE_STEPS, REPO, TARGET_DB_PASSWORD, TARGET_PW_ENV, upgrade

STEPS = KEYSTONE_STEPS
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BYTES = r"\d+(\.\d)? (bytes|kB|MB|GB)"


def _in_pty(*args: str, timeout: float = 600) -> tuple[int, str]:
    """Run `upgrade ARGS` with a 120x40 pseudo-terminal as stdin, stdout and stderr; return (rc, raw output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, TARGET_PW_ENV: TARGET_DB_PASSWORD, "TERM": "xterm-256color"}
    for var in ("NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "OPENSTACK_UPGRADE_FAILPOINT"):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, "-m", "upgrade.cli", *args], cwd=REPO, env=env, stdin=slave,
                            stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return rc, b"".join(chunks).decode(errors="replace")


def _log_events(journal) -> list[dict]:
    return [json.loads(line) for line in (journal / "upgrade.log").read_text().splitlines()]


def test_live_progress_in_a_terminal_then_plain_lines_in_a_pipe(lab, tmp_path):
    plan = lab.write_plan(tmp_path)
    journal = tmp_path / "journal"
    rc, raw = _in_pty("run", str(plan))
    assert rc == 0, raw
    assert "\x1b[" in raw, "a terminal gets a live display"
    text = ANSI.sub("", raw).replace("\r", "\n")
    for s in STEPS:
        assert f"keystone.{s}" in text, s
    assert "keystone: keystone.upgrade_schema on target" in text   # the current step, while it runs
    assert f"{len(STEPS)}/{len(STEPS)} steps" in text              # the overall bar
    for s in ("dump_source", "backup_target"):  # bytes and rate of every dump (the import streams from it)
        assert re.search(rf"keystone\.{s}  done  \d+\.\d s  {BYTES} at {BYTES}/s", text), s
    assert "Traceback" not in text

    # the same journal, reverted through a pipe: plain lines, one per step, no control characters
    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "\x1b" not in out and "\r" not in out
    lines = [line for line in res.stderr.splitlines() if line.startswith("[")]
    assert [re.match(rf"\[(\d+)/{len(STEPS)}\] undo (\S+)  done", line).group(2) for line in lines] == \
        [f"keystone.{s}" for s in reversed(STEPS)]
    assert re.search(rf"undo keystone\.import_db  done  \d+\.\d s  {BYTES} at", res.stderr)
    # the console showed no log lines, the JSON log has them all
    assert "step_intent" not in out
    events = _log_events(journal)
    assert [e["step"] for e in events if e["event"] == "step_done"] == [f"keystone.{s}" for s in STEPS]
    assert [e["step"] for e in events if e["event"] == "step_undone"] == [f"keystone.{s}" for s in reversed(STEPS)]


def test_quiet_prints_nothing_and_the_log_is_complete(lab, tmp_path):
    plan = lab.write_plan(tmp_path)
    res = upgrade("run", str(plan), "--quiet")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and res.stderr == ""
    events = _log_events(tmp_path / "journal")
    assert [e["step"] for e in events if e["event"] == "step_done"] == [f"keystone.{s}" for s in STEPS]
    assert any(e["event"] == "run_finished" for e in events)
