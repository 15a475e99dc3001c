"""Kill a real `upgrade` process anywhere: resume finishes as an uninterrupted run would, and
revert brings the old controller back exactly as it was (DESIGN.md §3).

Fail points (``OPENSTACK_UPGRADE_FAILPOINT``) make the process SIGKILL itself at an exact
place: ``<step>:before`` (intent committed, nothing done), ``<step>:after`` (effect done, ``done``
not yet committed), ``<step>:inside`` (half-way through a dump, a config copy, an import), and
the same around every undo.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scripts.lab import ksapi, svc
from tests.conftest import ADMIN_PASSWORD, KEYSTONE_STEPS, REPO, TARGET_DB_PASSWORD, TARGET_PW_ENV, upgrade

STEPS = KEYSTONE_STEPS
INSIDE = ("dump_source", "install_config", "import_db")
#: every kill point, in the order a run reaches them: before (intent committed, nothing done), inside
#: (half-way), after (effect done, `done` not yet committed)
KILL_POINTS = [f"keystone.{s}:{p}" for s in STEPS for p in (("before", "inside", "after") if s in INSIDE
                                                             else ("before", "after"))]
#: the kill points cut into chains, so that xdist workers can share them out; each chain starts from the
#: seeded lab, every chain together covers every point once
CHAINS = [KILL_POINTS[:len(KILL_POINTS) // 2], KILL_POINTS[len(KILL_POINTS) // 2:]]
TARGET_KEYS = ("target_db", "target_etc", "target_lib", "target_users")
#: a kill at `<step>:after` (every step's) and a finished run: the states a revert must start from
REVERT_FROM = [f"keystone.{s}:after" for s in STEPS] + [None]
#: the revert of the finished run (None) ends each kill chain, whose run finished as an uninterrupted one
#: does (checked there): no whole run of its own for that case
#: the other revert cases cut in two for the xdist workers: every other one, so that both halves reach as many
#: late (long) states as early ones
REVERT_HALVES = [[p for p in REVERT_FROM if p][0::2], [p for p in REVERT_FROM if p][1::2]]
#: kills inside the revert of a finished run, in the order a revert reaches them (steps backwards)
REVERT_KILLS = ["keystone.start_target:undo_after", "keystone.import_db:undo_before", "keystone.import_db:undo_after",
                "keystone.install_config:undo_after", "keystone.stop_source:undo_before"]


def _states(journal) -> dict:
    res = upgrade("status", "--journal", str(journal), "-f", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _killed(res: subprocess.CompletedProcess, point: str | None = None) -> None:
    assert res.returncode == -signal.SIGKILL, f"expected the fail point {point} to kill the run:\n{res.stderr}"


def _events(journal) -> list[dict]:
    exp = upgrade("journal", "export", "--journal", str(journal))
    assert exp.returncode == 0, exp.stderr
    return [json.loads(line) for line in exp.stdout.splitlines()]


def _open_intent(events: list[dict]) -> str | None:
    """The step whose last intent has no done: where the process died."""
    open_ = None
    for e in events:
        if e["kind"] == "intent":
            open_ = e["step"]
        elif e["kind"] == "done" and e["step"] == open_:
            open_ = None
    return open_


def _revert_restores_both_controllers(lab, journal, before: dict, point: str | None) -> None:
    """`upgrade revert` from where *point* (None: the finished run) left the run: both controllers as before."""
    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == 0, (point, res.stderr)
    assert lab.state() == before, point
    _old_controller_serves(lab)
    assert _states(journal)["status"] == "reverted"
    assert all(s["state"] == "pending" for s in _states(journal)["services"])


def _old_controller_serves(lab) -> None:
    assert svc.status(lab.old.root, "keystone"), "old keystone is not serving"
    assert not svc.status(lab.new.root, "keystone"), "new keystone still runs"
    assert ksapi.issue_token(lab.seed["keystone_url"], "admin", ADMIN_PASSWORD, project="admin").status == 201
    assert ksapi.issue_token(lab.seed["keystone_url"], "demo", lab.seed["demo_password"], project="demo").status == 201


@pytest.fixture(scope="module")
def reference(keystone_lab, tmp_path_factory):
    """The end state of an uninterrupted run, to compare every resumed run against."""
    keystone_lab.reset()
    d = tmp_path_factory.mktemp("reference")
    res = upgrade("run", str(keystone_lab.write_plan(d)))
    assert res.returncode == 0, res.stderr
    state = keystone_lab.state()
    return {"state": {k: state[k] for k in TARGET_KEYS}, "machines": _states(d / "journal")["services"]}


@pytest.mark.parametrize("chain", CHAINS, ids=[f"{c[0]}..{c[-1]}" for c in CHAINS])
def test_killed_run_resumes_to_the_uninterrupted_end(lab, tmp_path, reference, chain):
    """A chained kill schedule: the run dies at the chain's first point, each resume at the next one
    (so every resume starts from a kill), the last resume finishes. Each kill is checked where it
    happened and that the next resume ran the interrupted step again; the end is the uninterrupted one.
    Each chain then reverts the finished run: both controllers as before it, the old one serving."""
    before = lab.state()
    plan = lab.write_plan(tmp_path)
    journal = tmp_path / "journal"
    _killed(upgrade("run", str(plan), failpoint=chain[0]), chain[0])
    events = _events(journal)
    for i, point in enumerate(chain):
        assert _open_intent(events) == point.split(":")[0], point  # it died in that step, before its done
        assert _states(journal)["status"] == "running", point   # the process died: nobody marked it failed
        if i + 1 < len(chain):
            _killed(upgrade("resume", "--journal", str(journal), failpoint=chain[i + 1]), chain[i + 1])
        else:
            res = upgrade("resume", "--journal", str(journal))
            assert res.returncode == 0, res.stderr
        after = _events(journal)  # also where the next point starts from: nothing runs in between
        notes = [e["step"] for e in after[len(events):] if e["kind"] == "note"]
        assert point.split(":")[0] in notes, (point, notes)  # the resume took up that step and ran it again
        events = after
    state = lab.state()
    assert {k: state[k] for k in TARGET_KEYS} == reference["state"]
    end = _states(journal)
    assert end["status"] == "completed"
    assert [(s["service"], s["state"]) for s in end["services"]] == \
        [(s["service"], s["state"]) for s in reference["machines"]]
    assert svc.status(lab.new.root, "keystone") and not svc.status(lab.old.root, "keystone")
    ver = upgrade("journal", "verify", "--journal", str(journal), "--key", str(tmp_path / "dump.key"))
    assert ver.returncode == 0, ver.stdout + ver.stderr
    # committed steps never ran twice: exactly one `done` per step
    dones = [e["step"] for e in _events(journal) if e["kind"] == "done"]
    assert sorted(dones) == sorted(f"keystone.{s}" for s in STEPS)
    # the revert case of REVERT_FROM that starts from the finished run; after each chain, since a step killed
    # after its effect and run again on resume must still leave revert what it undoes (the first chain's
    # stop_source:after: the old keystone, found stopped by the second attempt, is started again)
    _revert_restores_both_controllers(lab, journal, before, None)


def test_kill_chains_cover_every_point_once():
    assert sorted(p for c in CHAINS for p in c) == sorted(KILL_POINTS) and len(KILL_POINTS) == 2 * len(STEPS) + 3
    assert sorted(map(str, [*(p for h in REVERT_HALVES for p in h), None])) == sorted(map(str, REVERT_FROM))
    assert len(REVERT_FROM) == len(STEPS) + 1


@pytest.mark.parametrize("points", REVERT_HALVES, ids=["even", "odd"])
def test_revert_from_every_state_restores_both_controllers(lab, tmp_path, points):
    """Each case from the state the revert before it restored (checked): one lab reset. (The finished run's
    case ends the last kill chain.)"""
    for point in points:
        before = lab.state()  # afresh: the logins that checked the last case wrote to keystone's DB
        d = tmp_path / point.replace(":", "-")
        plan = lab.write_plan(d)
        journal = d / "journal"
        _killed(upgrade("run", str(plan), failpoint=point), point)
        _revert_restores_both_controllers(lab, journal, before, point)


def test_killed_revert_runs_again_to_the_same_end(lab, tmp_path):
    """A chained kill schedule for the revert of a finished run: the revert dies at the first point, each
    revert run again at the next (a resume is refused each time: a revert is finished, not resumed
    forward), the last revert finishes and leaves both controllers as before the run."""
    from tests.conftest import upgrade_in_process

    before = lab.state()
    plan = lab.write_plan(tmp_path)
    journal = tmp_path / "journal"
    assert upgrade("run", str(plan)).returncode == 0
    for point in REVERT_KILLS:
        events = _events(journal)
        _killed(upgrade("revert", "--journal", str(journal), failpoint=point), point)
        step, where = point.split(":")
        undo_intents = [e["step"] for e in _events(journal)[len(events):] if e["kind"] == "undo_intent"]
        assert undo_intents[-1] == step, (point, undo_intents)  # it died in that step's undo
        if where == "undo_after":  # the undo's effect done, its `undone` not yet committed
            assert not any(e["step"] == step and e["kind"] == "undone" for e in _events(journal)[len(events):])
        assert _states(journal)["status"] == "reverting"
        # refused from the journal alone, before any lock or work: in this process, as the catalogue's refusals
        res = upgrade_in_process("resume", "--journal", str(journal))
        assert res.returncode == 2 and "upgrade revert" in res.stderr  # a revert is finished, not resumed forward
    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    assert lab.state() == before
    _old_controller_serves(lab)
    assert _states(journal)["status"] == "reverted"


def test_external_sigkill_mid_run_then_resume(lab, tmp_path, reference):
    """Not a fail point: the operator's box dies while the schema upgrade runs."""
    plan = lab.write_plan(tmp_path)
    journal = tmp_path / "journal"
    proc = subprocess.Popen([sys.executable, "-m", "upgrade.cli", "run", str(plan), "--quiet"], cwd=REPO,
                            env={**__import__("os").environ, TARGET_PW_ENV: TARGET_DB_PASSWORD},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_intent(journal, "keystone.upgrade_schema", proc)
        conf = str(lab.new.root / "etc/keystone/keystone.conf")
        _wait_until(lambda: _processes_with(conf), "keystone-manage started")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    # the killed tool's keystone-manage died with it (its parent-death signal: no timer, no sweep), before any
    # resume: a resume never races a leftover db_sync (the bound only ends the wait on a loaded machine)
    _wait_until(lambda: not _processes_with(conf), "the orphaned keystone-manage to die", timeout=30)
    res = upgrade("resume", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    state = lab.state()
    assert {k: state[k] for k in TARGET_KEYS} == reference["state"]


def test_second_run_or_resume_while_one_runs_fails_at_once(lab, tmp_path):
    plan = lab.write_plan(tmp_path)
    journal = tmp_path / "journal"
    import os

    proc = subprocess.Popen([sys.executable, "-m", "upgrade.cli", "run", str(plan), "--quiet"], cwd=REPO,
                            env={**os.environ, TARGET_PW_ENV: TARGET_DB_PASSWORD},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_intent(journal, "keystone.upgrade_schema", proc)
        for args in (("run", str(plan)), ("resume", "--journal", str(journal)),
                     ("revert", "--journal", str(journal))):
            # refused while the lock is held (exit 3 naming the holder), not queued behind it: a call that
            # waited for the lock would get it once the run ended and answer otherwise
            res = upgrade(*args)
            assert res.returncode == 3, res.stderr
            assert f"pid {proc.pid}" in res.stderr and "upgrade run" in res.stderr
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _states(journal)["status"] == "completed"


def _wait_for_intent(journal, step: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before reaching " + step
        db = journal / "journal.db"
        if db.exists():
            try:
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                rows = conn.execute("SELECT 1 FROM events WHERE step=? AND kind='intent'", (step,)).fetchall()
                conn.close()
                if rows:
                    return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no intent for {step} within {timeout} s")


def _processes_with(needle: str, unless: str | None = None, session: int | None = None) -> list[int]:
    """Pids of keystone-manage processes whose command line holds *needle* (and not *unless*), only those of
    the session *session* if given (the tool's own commands, not another test's)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if not any(a.endswith(b"keystone-manage") for a in argv) or needle.encode() not in argv \
                    or (unless is not None and unless.encode() in argv):
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
            if session is None or int(fields[3]) == session:
                out.append(int(entry))
    return out


def _wait_until(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------------- the streamed dump and import
def _streams_plan(lab, d: Path, streams: int) -> Path:
    plan = lab.write_plan(d)
    plan.write_text(plan.read_text().replace("[upgrade]\n", f"[upgrade]\ndump_streams = {streams}\n", 1))
    return plan


def _dump_result(journal: Path) -> dict:
    return next(e["result"] for e in reversed(_events(journal)) if e["kind"] == "done"
                and e["step"] == "keystone.dump_source")


def test_kill_inside_a_parallel_table_stream_then_resume_and_revert_are_exact(lab, tmp_path, reference):
    """Three table streams, killed inside one of them while the others run: resume ends as the uninterrupted
    (one-stream) run did, each stream its own recorded artifact; revert brings both controllers back."""
    before = lab.state()
    plan = _streams_plan(lab, tmp_path, 3)
    journal = tmp_path / "journal"
    _killed(upgrade("run", str(plan), failpoint="keystone.dump_source:table_stream"))
    res = upgrade("resume", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    state = lab.state()
    assert {k: state[k] for k in TARGET_KEYS} == reference["state"]
    db = _dump_result(journal)["databases"]["keystone"]
    assert len(db["artifacts"]) == 3 and sorted(t for s in db["streams"] for t in s) == sorted(db["checksums"])
    ver = upgrade("journal", "verify", "--journal", str(journal), "--key", str(tmp_path / "dump.key"))
    assert ver.returncode == 0, ver.stdout + ver.stderr
    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    assert lab.state() == before
    _old_controller_serves(lab)


def test_kill_inside_the_streamed_import_then_revert_restores_the_target(lab, tmp_path):
    """Killed while the dump streams into the target (its database dropped, half imported): revert undoes the
    interrupted dump step, which puts the target's database back from its backup."""
    before = lab.state()
    plan = _streams_plan(lab, tmp_path, 1)
    _killed(upgrade("run", str(plan), failpoint="keystone.dump_source:inside"))
    res = upgrade("revert", "--journal", str(tmp_path / "journal"))
    assert res.returncode == 0, res.stderr
    assert lab.state() == before
    _old_controller_serves(lab)


def _children(names: tuple[str, ...]) -> list[int]:
    """This process's children running one of *names* (the DB clients a LocalHost starts)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            comm = fields[0].split("(", 1)[1]
            ppid = int(fields[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and comm in names:
            out.append(int(stat.parent.name))
    return out


def test_a_dump_that_dies_midway_leaves_the_target_restored(lab, tmp_path, monkeypatch):
    """The source's mysqldump is killed after its first chunk reached the vault and the target: the step
    fails, the target's database is back as backup_target found it, no dump artifact is left."""
    from statemachine import failpoints
    from tests.conftest import upgrade_in_process

    # big enough that the dump is still writing when its first chunk (1 MiB) has been read
    lab.db_old.execute("CREATE TABLE zz_fill (id INT PRIMARY KEY, b LONGBLOB)", db="keystone")
    for i in range(3):
        lab.db_old.execute("INSERT INTO zz_fill VALUES (%s, %s)", db="keystone", args=(i, os.urandom(1 << 20)))
    before = lab.state()
    killed: list[int] = []
    real_hit = failpoints.hit

    def hit(name: str) -> None:
        if name == "keystone.dump_source:inside" and not killed:
            killed.extend(_children(("mysqldump", "mariadb-dump")))
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
        real_hit(name)

    monkeypatch.setattr(failpoints, "hit", hit)
    res = upgrade_in_process("run", str(_streams_plan(lab, tmp_path, 1)))
    assert killed, "no dump process was running after the first chunk"
    assert res.returncode == 1, res.stderr
    assert "keystone.dump_source failed" in res.stderr and "dump of database keystone" in res.stderr
    after = lab.state()
    assert {k: after[k] for k in TARGET_KEYS} == {k: before[k] for k in TARGET_KEYS}
    assert after["source_db"] == before["source_db"]
    assert not list((tmp_path / "journal" / "artifacts").rglob("keystone-source-db*"))


def test_a_corrupted_artifact_chunk_is_caught_before_the_dump_step_is_done(lab, tmp_path, monkeypatch):
    """A byte of the artifact flipped on disk after it was written: the read-back refuses it, the step is not
    done, and the target database streamed meanwhile is put back from its backup."""
    from journal import vault
    from journal.vault.fileformat import read_header
    from tests.conftest import upgrade_in_process

    before = lab.state()
    flipped: list[Path] = []
    lock = threading.Lock()
    real_verify = vault.verify_artifact

    def verify(path: str | Path, *args: object, **kwargs: object) -> object:
        # The read-back is handed the path its own stream just closed: flip a byte of that one, once (the other
        # stream's file may still be being written at this moment).
        with lock:
            if not flipped and Path(path).name.startswith("keystone-source-db"):
                data = bytearray(Path(path).read_bytes())
                data[len(read_header(path).raw)] ^= 0x01  # the first ciphertext byte of chunk 0
                Path(path).write_bytes(bytes(data))
                flipped.append(Path(path))
        return real_verify(path, *args, **kwargs)

    monkeypatch.setattr(vault, "verify_artifact", verify)
    res = upgrade_in_process("run", str(_streams_plan(lab, tmp_path, 2)))
    assert flipped
    assert res.returncode == 1, res.stderr
    assert "keystone.dump_source failed" in res.stderr and "chunk 0" in res.stderr, res.stderr
    events = _events(tmp_path / "journal")
    assert not any(e["kind"] == "done" and e["step"] == "keystone.dump_source" for e in events)
    after = lab.state()
    assert {k: after[k] for k in TARGET_KEYS} == {k: before[k] for k in TARGET_KEYS}
