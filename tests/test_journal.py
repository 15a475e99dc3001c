"""The journal on its own: durability settings, permissions, hash chain, tampering, redaction, export."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from journal import vault
from journal.export import export
from journal.redact import Redactor
from journal.store import Journal
from statemachine.lock import LockHeld, RunLock
from statemachine.replay import replay, replay_rows

SECRET = "s3cr3t-Passw0rd"


def _journal(tmp_path, n=6):
    key = vault.generate_key_file(tmp_path / "dump.key")
    j = Journal(tmp_path / "j", Redactor([SECRET]), key=key)
    run = j.create_run({"upgrade": {"services": ["keystone"]}, "db": {"admin_password": SECRET}}, "ab" * 32,
                       "/plan.toml", "2025.2", "2026.1", key.key_id)
    for i in range(n):
        j.append(run, "keystone", "intent" if i % 2 == 0 else "done", step=f"keystone.s{i // 2}",
                 command=f"mysql -p{SECRET} --host x", output=f"connection = mysql+pymysql://ks:{SECRET}@h/ks",
                 result={"i": i, "password": SECRET, "url": f"mysql://u:{SECRET}@h/db"})
    return j, run


def _sql(j: Journal, *statements: str) -> None:
    conn = sqlite3.connect(j.path)
    for s in statements:
        conn.execute(s)
    conn.commit()
    conn.close()


def test_step_rows_replay_to_the_view_of_every_event(tmp_path):
    """Resume reads only each step's last event of each kind (an index seek per group): the view it builds
    is the one replaying every event builds, for every run of a journal holding several, with notes,
    redone and undone steps, and machines whose names sort around each other."""
    key = vault.generate_key_file(tmp_path / "dump.key")
    j = Journal(tmp_path / "j", Redactor(), key=key)
    runs = [j.create_run({"upgrade": {}}, "ab" * 32, None, None, None, key.key_id) for _ in range(2)]
    machines, steps = ["nova", "nova-compute-1", "keystone", "_notes"], [None, "x.a", "x.b", "x.a2", "y"]
    kinds = ["intent", "done", "failed", "undo_intent", "undone", "undo_failed", "note"]
    for i in range(400):
        j.append(runs[i % 2], machines[i * 7 % 4], kinds[i * 5 % 7], step=steps[i * 3 % 5],
                 output=f"out {i}", result={"i": i})
    for run in runs:
        assert replay_rows(j.step_rows(run)) == replay(j.events(run))
        assert replay_rows(j.step_rows(run)).results  # something committed: the comparison is not of empties
        found = 0
        for machine in machines:  # the run's notes, read through the index: those of a scan of every event
            notes = [e for e in j.events(run) if e.machine == machine and e.kind == "note"]
            assert j.notes(run, machine) == notes
            found += len(notes)
        assert found
    assert j.step_rows("no-such-run") == []
    assert j.machines(runs[0]) == {e.machine for e in j.events(runs[0])}
    # the marks the reads went through are sealed and say what the events say: both checks pass
    assert j.authenticate(key).fault is None and j.verify().fault is None


def test_files_are_private_and_durable(tmp_path):
    j, _run = _journal(tmp_path)
    assert stat.S_IMODE(os.stat(j.dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(j.path).st_mode) == 0o600
    assert j.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j.db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_intact_chain_verifies_and_survives_reopen(tmp_path):
    j, run = _journal(tmp_path)
    assert j.verify_chain() is None
    j.close()
    j2 = Journal(tmp_path / "j", create=False)
    assert [e.seq for e in j2.events(run)] == [1, 2, 3, 4, 5, 6]
    assert j2.verify_chain() is None


@pytest.mark.parametrize("tamper,bad_seq", [
    ("UPDATE events SET output='all fine' WHERE seq=3", 3),
    ("UPDATE events SET kind='done' WHERE seq=1", 1),
    ("UPDATE events SET result='{\"i\": 99}' WHERE seq=5", 5),
    ("DELETE FROM events WHERE seq=4", 5),
    ("DELETE FROM events WHERE seq=1", 2),
    ("DELETE FROM events WHERE seq=6", 6),
])
def test_tampering_is_caught_with_the_first_bad_seq(tmp_path, tamper, bad_seq):
    j, _run = _journal(tmp_path)
    _sql(j, tamper)
    broken = j.verify_chain()
    assert broken is not None
    assert broken[0] == bad_seq


def test_reordering_rows_is_caught(tmp_path):
    j, _run = _journal(tmp_path)
    # swap the contents of rows 2 and 3 (keeping their seq): both hashes still "valid" alone
    _sql(j, "UPDATE events SET seq=100 WHERE seq=2", "UPDATE events SET seq=2 WHERE seq=3",
         "UPDATE events SET seq=3 WHERE seq=100")
    broken = j.verify_chain()
    assert broken is not None and broken[0] == 2


def test_cli_verify_exits_1_and_names_seq(tmp_path):
    j, _run = _journal(tmp_path)
    verify = [sys.executable, "-m", "upgrade.cli", "journal", "verify", "--journal", str(j.dir),
              "--key", str(tmp_path / "dump.key")]
    ok = subprocess.run(verify, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "hash chain intact, authenticated" in ok.stdout
    _sql(j, "UPDATE events SET host='elsewhere' WHERE seq=2")
    bad = subprocess.run(verify, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "seq 2" in bad.stdout


def test_secrets_never_stored_and_exports_clean(tmp_path):
    j, run = _journal(tmp_path)
    for fmt in ("jsonl", "json", "csv"):
        buf = io.StringIO()
        export(j, buf, fmt, run)
        text = buf.getvalue()
        assert SECRET not in text
        assert "***" in text
    raw = j.path.read_bytes() + (j.path.parent / "journal.db-wal").read_bytes()
    assert SECRET.encode() not in raw


def test_export_formats_carry_the_chain(tmp_path):
    j, run = _journal(tmp_path)
    buf = io.StringIO()
    assert export(j, buf, "jsonl", run) == 6
    rows = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(rows[i]["prev_hash"] == rows[i - 1]["hash"] for i in range(1, 6))
    buf = io.StringIO()
    export(j, buf, "csv", run)
    parsed = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert len(parsed) == 6 and parsed[0]["kind"] == "intent"
    buf = io.StringIO()
    export(j, buf, "json", run)
    doc = json.loads(buf.getvalue())
    assert doc["runs"][0]["plan"]["db"]["admin_password"] == "***"


def test_redactor_shapes():
    r = Redactor(["hunter22"])
    assert r.text("mysql+pymysql://keystone:kspass@127.0.0.1:3306/keystone") == \
        "mysql+pymysql://keystone:***@127.0.0.1:3306/keystone"
    assert "hunter22" not in r.text("login failed for hunter22")
    assert r.text("admin_password = abc123") == "admin_password = ***"
    assert r.data({"db_password": "zz", "password_env": "PW", "list": ["rabbit://u:p@h:5672/"]}) == \
        {"db_password": "***", "password_env": "PW", "list": ["rabbit://u:***@h:5672/"]}


def test_second_lock_fails_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys,time; sys.path.insert(0, '.');"
        "from statemachine.lock import RunLock; l=RunLock(sys.argv[1]); l.acquire('run');"
        "print('locked', flush=True); time.sleep(30)"), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld) as exc:
            RunLock(tmp_path).acquire("resume")
        assert f"pid {holder.pid}" in str(exc.value)
        assert "upgrade run" in str(exc.value)
    finally:
        holder.kill()
        holder.wait()
    lk = RunLock(tmp_path)  # the kernel released the dead holder's lock
    lk.acquire("run")
    lk.release()
