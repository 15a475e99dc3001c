"""Bad input against the real lab: a short message naming the problem and the fix, a non-zero
exit, and no change on either controller. And no secret anywhere the tool writes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

from scripts.lab.mariadb import free_port
from tests.conftest import (
    REPO,
    SECRETS,
    TARGET_DB_PASSWORD,
    TARGET_PW_ENV,
    upgrade,
)


def _refused(res: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert res.returncode == code, f"rc {res.returncode}:\n{res.stderr}"
    for n in needles:
        assert n in res.stderr, f"{n!r} not in:\n{res.stderr}"
    assert "Traceback" not in res.stderr
    for s in SECRETS:
        assert s not in res.stderr


def test_unreachable_db_changes_nothing(lab, tmp_path):
    before = lab.state()
    plan = lab.write_plan(tmp_path)
    dead = free_port()
    plan.write_text(plan.read_text().replace(f"port = {lab.db_new.port}", f"port = {dead}"))
    _refused(upgrade("run", str(plan)), 2, f"127.0.0.1:{dead}", "reachable", "target")
    assert lab.state() == before
    assert not (tmp_path / "journal").exists()


def test_wrong_db_password_changes_nothing(lab, tmp_path):
    before = lab.state()
    plan = lab.write_plan(tmp_path)
    res = upgrade("run", str(plan), env={TARGET_PW_ENV: "not-the-password"})
    _refused(res, 2, f"127.0.0.1:{lab.db_new.port}", "password")
    assert lab.state() == before
    assert not (tmp_path / "journal").exists()


def test_missing_service_db_changes_nothing(lab, tmp_path):
    before = lab.state()
    plan = lab.write_plan(tmp_path, db_name="keystone_nope")
    _refused(upgrade("run", str(plan)), 2, "no database 'keystone_nope'", "services.keystone.db_name")
    assert lab.state() == before


def test_nothing_to_resume(lab, tmp_path):
    _refused(upgrade("resume", "--journal", str(tmp_path / "nowhere")), 2, "no journal at", "upgrade run PLAN")
    plan = lab.write_plan(tmp_path)
    assert upgrade("run", str(plan)).returncode == 0
    _refused(upgrade("resume", "--journal", str(tmp_path / "journal")), 2, "nothing to resume", "completed")


def test_unfinished_run_blocks_a_new_run_and_a_changed_plan_or_key_blocks_resume(lab, tmp_path):
    plan = lab.write_plan(tmp_path)
    journal = tmp_path / "journal"
    res = upgrade("run", str(plan), failpoint="keystone.import_db:after")
    assert res.returncode == -9
    before = lab.state()
    # a second run while this one is unfinished
    _refused(upgrade("run", str(plan)), 3, "is unfinished", "upgrade resume", "upgrade revert")
    # the plan edited under the run
    original = plan.read_text()
    plan.write_text(original.replace('owner = "root:root"', 'owner = "root:daemon"'))
    _refused(upgrade("resume", "--journal", str(journal)), 2, "changed since run", str(plan))
    _refused(upgrade("revert", "--journal", str(journal)), 2, "changed since run")
    plan.write_text(original)
    # another vault key
    key = tmp_path / "dump.key"
    good = key.read_bytes()
    key.unlink()
    assert upgrade("keygen", str(key)).returncode == 0
    _refused(upgrade("resume", "--journal", str(journal)), 2, "vault key id", "use the key file")
    # a key file others can read
    key.write_bytes(good)
    key.chmod(0o644)
    _refused(upgrade("resume", "--journal", str(journal)), 2, "chmod 600")
    assert lab.state() == before
    key.chmod(0o600)
    res = upgrade("resume", "--journal", str(journal))
    assert res.returncode == 0, res.stderr


def test_a_failing_step_stops_with_both_ways_on(lab, tmp_path):
    """A real failure mid-run (the target's keystone-manage disappears after the import): the run
    stops in its last good state, says where and what, and names resume and revert; revert then
    restores everything. (A missing package before the run is refused by the preflight instead.)"""
    before = lab.state()
    bindir = tmp_path / "target-bin"
    bindir.mkdir()
    for tool in (lab.new.venv / "bin").iterdir():
        (bindir / tool.name).symlink_to(tool)
    plan = lab.write_plan(tmp_path)
    plan.write_text(plan.read_text().replace(f'bin = "{lab.new.venv}/bin"', f'bin = "{bindir}"'))
    journal = tmp_path / "journal"
    assert upgrade("run", str(plan), failpoint="keystone.import_db:after").returncode == -9
    (bindir / "keystone-manage").unlink()
    res = upgrade("resume", "--journal", str(journal))
    _refused(res, 1, "keystone.upgrade_schema failed", "keystone-manage", "upgrade resume", "upgrade revert",
             "state db_imported")
    st = upgrade("status", "--journal", str(journal))
    assert "failed" in st.stdout and "db_imported" in st.stdout
    assert upgrade("revert", "--journal", str(journal)).returncode == 0
    assert lab.state() == before


def test_no_secret_in_logs_journal_exports_or_argv(lab, tmp_path):
    plan = lab.write_plan(tmp_path)
    journal = tmp_path / "journal"
    # pid -> every (ppid, argv) it was seen with: a child sampled between fork and exec still shows its
    # parent's argv, and one re-parented shows another ppid, so no first sample may stand for the process
    samples: dict[int, set[tuple[int, str]]] = {}
    stop = threading.Event()

    def watch_argv() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                        samples.setdefault(int(pid), set()).add((ppid, argv))
            stop.wait(0.01)

    t = threading.Thread(target=watch_argv, daemon=True)
    t.start()
    try:
        tool = subprocess.Popen([sys.executable, "-m", "upgrade.cli", "run", str(plan)], cwd=REPO,
                                env={**os.environ, TARGET_PW_ENV: TARGET_DB_PASSWORD}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        out, err = tool.communicate(timeout=600)
        proc = subprocess.CompletedProcess(tool.args, tool.returncode, out, err)
    finally:
        stop.set()
        t.join()
    # only the tool and its descendants (other test sessions on this machine may run other things)
    tree, grew = {tool.pid}, True
    while grew:
        grew = False
        for pid, seen_as in samples.items():
            if pid not in tree and any(ppid in tree for ppid, _argv in seen_as):
                tree.add(pid)
                grew = True
    seen = [argv for pid, seen_as in samples.items() if pid in tree for _ppid, argv in seen_as]
    assert proc.returncode == 0, proc.stderr
    assert any("mysqldump" in c for c in seen) and any("keystone-manage" in c for c in seen)
    exports = [upgrade("journal", "export", "--journal", str(journal), "--format", f).stdout
               for f in ("jsonl", "json", "csv")]
    blobs = {"stdout+stderr": proc.stdout + proc.stderr, "exports": "\n".join(exports),
             "argv": "\n".join(seen)}
    for p in journal.rglob("*"):
        if p.is_file():
            blobs[str(p)] = p.read_bytes().decode(errors="replace")
            assert p.stat().st_mode & 0o077 == 0, f"{p} is readable by others"
    for where, text in blobs.items():
        for s in SECRETS:
            assert s not in text, f"secret found in {where}"
    # the redaction left a visible mark where a secret was
    assert "***" in blobs["exports"]


def test_a_status_command_that_errs_is_not_taken_for_stopped(lab, tmp_path):
    """An erring status command (here exit 2, usage) is not "stopped": the old service may still be writing its DB."""
    before = lab.state()
    plan = lab.write_plan(tmp_path)
    text = plan.read_text()
    broken = text.replace('"{action}", "{unit}"]', '"{action}", "{unit}-nonexistent"]', 1)
    assert broken != text
    plan.write_text(broken)
    res = upgrade("run", str(plan))
    _refused(res, 1, "keystone.stop_source failed", "cannot tell whether keystone runs", "exited 2")
    after = lab.state()
    # a run that started and failed holds its claim on the new controller until it is resumed or reverted
    assert after.pop("target_claim") == (True, True) and before.pop("target_claim") == (False, False)
    assert after == before
    from scripts.lab import svc

    assert svc.status(lab.old.root, "keystone")
