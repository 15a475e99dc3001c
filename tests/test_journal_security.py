"""The journal against a writer without the key, artifacts bound to their run and step, private places
owned by the user, and the journal's own failures (damaged page, disk full, clocks, links).

Attacks are made as an attacker would make them: with sqlite3 on the real file, by copying a real
older artifact over a newer one, by chown/symlink on real directories. Every refusal is checked by
its message, its exit code and by comparing contents before and after (journal rows, file hashes,
the lab's table checksums).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from journal import seal, vault
from journal.chain import GENESIS, row_hash
from journal.redact import Redactor
from journal.store import Journal, JournalError
from journal.vault import Key
from statemachine.replay import replay_rows
from tests.conftest import KEYSTONE_DB_PASSWORD, REPO, require, tmpfs, upgrade
from upgrade import window
from upgrade.errors import EXIT_FAILED, EXIT_USAGE


# ---------------------------------------------------------------------- helpers
def _journal(tmp_path: Path, events: int = 6) -> tuple[Journal, str, Key]:
    key = vault.generate_key_file(tmp_path / "dump.key")
    j = Journal(tmp_path / "j", Redactor(), key=key)
    run = j.create_run({"upgrade": {"services": ["keystone"]}}, "ab" * 32, "/plan.toml", "2025.2", "2026.1",
                       key.key_id)
    for i in range(events):
        j.append(run, "keystone", "intent" if i % 2 == 0 else "done", step=f"keystone.s{i // 2}",
                 result={"i": i} if i % 2 else None)
    (tmp_path / "vault").mkdir(mode=0o700)
    stats = vault.encrypt_bytes(b'{"keystone": []}', tmp_path / "vault" / "users.osuv", key)
    j.add_artifact(run, f"{run}/keystone-target-users", "backup", "keystone", "new",
                   str(tmp_path / "vault" / "users.osuv"), stats.bytes, stats.sha256, key.key_id,
                   step="keystone.backup_target")
    j.set_status(run, "failed")
    return j, run, key


def _sql(path: Path, *statements: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(path)
    for s in statements:
        conn.execute(s, params) if params else conn.execute(s)
    conn.commit()
    conn.close()


def _rows(path: Path) -> list[str]:
    """Every row of every table, as text: what 'nothing changed' compares (file bytes move with checkpoints)."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def _cli(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """The real command line (a subprocess: the verbs write to the stdout they were given at import)."""
    res = upgrade(*argv, env=env)
    return res.returncode, res.stdout + res.stderr


def _recompute_chain(path: Path) -> None:
    """What a writer without the key can do: edit an event, then recompute every hash and the head."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    conn.execute("UPDATE events SET output='all fine' WHERE seq=3")
    prev = GENESIS
    for r in [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY seq")]:
        r["prev_hash"] = prev
        r["hash"] = row_hash(r)
        conn.execute("UPDATE events SET prev_hash=?, hash=? WHERE seq=?", (r["prev_hash"], r["hash"], r["seq"]))
        prev = r["hash"]
    conn.execute("UPDATE head SET hash=?", (prev,))
    conn.commit()
    conn.close()


def _drop_tail(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM events WHERE seq >= 5")
    seq, h = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    conn.execute("UPDATE head SET seq=?, hash=?", (seq, h))
    conn.commit()
    conn.close()


def _older_run_row(path: Path) -> None:
    """Put back a validly sealed older version of the runs row (status 'running' instead of 'failed')."""
    conn = sqlite3.connect(path)
    conn.execute("UPDATE runs SET status='running'")
    conn.commit()
    conn.close()


ATTACKS = {
    "tail deleted, head updated": (_drop_tail, "head"),
    "whole chain recomputed": (_recompute_chain, "event seq 3: its MAC"),
    "plan hash replaced": (lambda p: _sql(p, "UPDATE runs SET plan_sha256=?", params=("ef" * 32,)), "runs row"),
    "artifact record edited": (lambda p: _sql(p, "UPDATE artifacts SET sha256=?", params=("00" * 32,)),
                               "artifacts row"),
    "artifact record removed": (lambda p: _sql(p, "DELETE FROM artifacts"), "the head"),
    "run status edited": (_older_run_row, "runs row"),
}


# ---------------------------------------------------------------------- item 4: the seal
@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_a_writer_without_the_key_is_detected(tmp_path, attack):
    j, _run, key = _journal(tmp_path)
    j.close()
    tamper, needle = ATTACKS[attack]
    tamper(j.path)
    before = _rows(j.path)
    code, text = _cli("journal", "verify", "--journal", str(j.dir), "--key", str(tmp_path / "dump.key"))
    assert code == EXIT_FAILED, text
    assert text.startswith("TAMPERED") and needle in text, text
    again = Journal(j.dir, create=False)
    with pytest.raises(JournalError, match="does not verify with its key"):
        again.authenticate(key)
    again.close()
    assert _rows(j.path) == before  # verifying changed nothing


def test_without_the_key_only_the_chain_is_checked_and_said_so(tmp_path):
    j, _run, _key = _journal(tmp_path)
    j.close()
    _recompute_chain(j.path)
    code, text = _cli("journal", "verify", "--journal", str(j.dir), "--unkeyed")
    assert code == 0 and "NOT authenticated" in text, text   # the limit of a keyless check, stated
    code, text = _cli("journal", "verify", "--journal", str(j.dir))
    assert code == EXIT_USAGE and "--key" in text and "--unkeyed" in text, text


def test_intact_journal_authenticates_and_a_reader_cannot_write(tmp_path):
    j, run, key = _journal(tmp_path)
    j.close()
    code, text = _cli("journal", "verify", "--journal", str(j.dir), "--key", str(tmp_path / "dump.key"))
    assert code == 0 and "authenticated with key id" in text and "6 events, 1 runs, 1 artifacts" in text, text
    reader = Journal(j.dir, create=False)
    before = _rows(j.path)
    with pytest.raises(JournalError, match="opened without the vault key"):
        reader.append(run, "keystone", "note", output="forged")
    with pytest.raises(JournalError, match="opened without the vault key"):
        reader.set_status(run, "completed")
    reader.close()
    assert _rows(j.path) == before
    other = Key.from_bytes(os.urandom(32))
    with pytest.raises(JournalError, match=f"sealed with vault key id {key.key_id}"):
        Journal(j.dir, create=False, key=other)


def test_an_empty_journal_is_no_runs_not_ok(tmp_path):
    Journal(tmp_path / "j", key=vault.generate_key_file(tmp_path / "dump.key")).close()
    code, text = _cli("journal", "verify", "--journal", str(tmp_path / "j"), "--key",
                      str(tmp_path / "dump.key"))
    assert code == EXIT_FAILED and text.startswith("NO RUNS"), text


def test_an_earlier_format_journal_is_read_but_never_continued(tmp_path):
    """A journal of format 1 (no meta table, no MACs), as the previous version wrote it."""
    d = tmp_path / "j"
    d.mkdir(mode=0o700)
    conn = sqlite3.connect(d / "journal.db")
    conn.executescript("""
        CREATE TABLE runs (id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL, operator TEXT NOT NULL,
            plan_path TEXT, plan TEXT NOT NULL, plan_sha256 TEXT NOT NULL, from_release TEXT, to_release TEXT,
            key_id TEXT, status TEXT NOT NULL);
        CREATE TABLE events (seq INTEGER PRIMARY KEY, run TEXT NOT NULL, ts REAL NOT NULL, machine TEXT NOT NULL,
            step TEXT, kind TEXT NOT NULL, from_state TEXT, to_state TEXT, host TEXT, command TEXT, rc INTEGER,
            output TEXT, result TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
        CREATE TABLE artifacts (id TEXT PRIMARY KEY, run TEXT NOT NULL, created REAL NOT NULL, kind TEXT NOT NULL,
            service TEXT, host TEXT, path TEXT NOT NULL, bytes INTEGER, sha256 TEXT, key_id TEXT);
        CREATE TABLE head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
        INSERT INTO runs VALUES ('r1', 1, 1, 'op', '/p', '{}', 'aa', 'a', 'b', NULL, 'failed');
    """)
    from journal.chain import HASHED_COLUMNS_V1
    ev = {"seq": 1, "run": "r1", "ts": 1.0, "machine": "m", "step": "m.s", "kind": "intent", "from_state": None,
          "to_state": None, "host": None, "command": None, "rc": None, "output": None, "result": None,
          "prev_hash": GENESIS}
    ev["hash"] = row_hash(ev, HASHED_COLUMNS_V1)
    conn.execute(f"INSERT INTO events ({', '.join(ev)}) VALUES ({', '.join('?' * len(ev))})", list(ev.values()))
    conn.execute("INSERT INTO head VALUES (1, 1, ?)", (ev["hash"],))
    conn.commit()
    conn.close()
    os.chmod(d / "journal.db", 0o600)
    before = _rows(d / "journal.db")
    vault.generate_key_file(tmp_path / "dump.key")
    code, text = _cli("journal", "verify", "--journal", str(d), "--unkeyed")
    assert code == 0 and "UNKEYED: 1 events" in text, text
    code, text = _cli("journal", "verify", "--journal", str(d), "--key", str(tmp_path / "dump.key"))
    assert code == EXIT_FAILED and "format 1" in text, text
    j = Journal(d, create=False)
    with pytest.raises(JournalError, match="earlier version of the tool .format 1"):
        j.unlock(Key.from_file(tmp_path / "dump.key"))
    j.close()
    assert _rows(d / "journal.db") == before


# ---------------------------------------------------------------------- resume's check: the marks, not the chain
def _resumed(tmp_path: Path) -> tuple[Journal, str, Key, list]:
    """A run that failed in keystone.s0, was resumed and failed again in glance: every kind a decision reads.
    seq 1 the run's identity note, 2 intent s0 (read by nothing: a later intent overrides it), 3 failed s0,
    4 intent s0, 5 its interrupted note, 6 done s0, 7/8 s1, 9/10 glance.s0, 11 glance.s1 failed. Also returns
    the marks as they were after seq 3: validly sealed rows an attacker could have copied then."""
    key = vault.generate_key_file(tmp_path / "dump.key")
    j = Journal(tmp_path / "j", Redactor(), key=key)
    run = j.create_run({"upgrade": {"services": ["keystone", "glance"]}}, "ab" * 32, "/plan.toml", "2025.2",
                       "2026.1", key.key_id)
    j.append(run, "run", "note", result={"target_db": {"server_id": 1}})
    j.append(run, "keystone", "intent", step="keystone.s0", output="first try")
    j.append(run, "keystone", "failed", step="keystone.s0", output="boom")
    older = j.db.conn.execute("SELECT * FROM marks").fetchall()
    j.append(run, "keystone", "intent", step="keystone.s0")
    j.append(run, "keystone", "note", step="keystone.s0", output="interrupted", result={"probe": None})
    j.append(run, "keystone", "done", step="keystone.s0", result={"rows": 7})
    j.append(run, "keystone", "intent", step="keystone.s1")
    j.append(run, "keystone", "done", step="keystone.s1", result={"rows": 8})
    j.append(run, "glance", "intent", step="glance.s0")
    j.append(run, "glance", "done", step="glance.s0", result={"images": 2})
    j.append(run, "glance", "failed", step="glance.s1", output="glance-manage failed")
    j.set_status(run, "failed")
    j.close()
    return j, run, key, older


def _copy_row(path: Path, source: int, target: int, **changes: object) -> None:
    """Put the content of event *source* (its hash and MAC too) at seq *target*, with *changes*."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM events WHERE seq=?", (source,)).fetchone())
    row.update(seq=target, **changes)
    conn.execute("DELETE FROM events WHERE seq=?", (target,))
    conn.execute(f"INSERT INTO events ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    conn.commit()
    conn.close()


def _rehash(path: Path, seq: int, statement: str) -> None:
    """Edit event *seq* and recompute its hash (a writer cannot recompute its MAC)."""
    _sql(path, statement)
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    conn.execute("UPDATE events SET hash=? WHERE seq=?",
                 (row_hash(dict(conn.execute("SELECT * FROM events WHERE seq=?", (seq,)).fetchone())), seq))
    conn.commit()
    conn.close()


def _older_mark(path: Path, older: list) -> None:
    """Put back keystone.s0's intent mark as it was before the second intent, validly sealed then, and hide
    the second intent so that the events agree with it."""
    old = next(m for m in older if m[2] == "keystone.s0" and m[3] == "intent")
    _sql(path, "UPDATE events SET step=NULL WHERE seq=4")
    _sql(path, "UPDATE marks SET count=?, last=?, mac=? WHERE step='keystone.s0' AND kind='intent'",
         params=(old[4], old[5], old[6]))


def _foreign_mark(path: Path, tmp_path: Path) -> None:
    """A mark of another journal sealed with the same key, in place of one of this journal's with the same count."""
    other = Journal(tmp_path / "other", Redactor(), key=Key.from_file(tmp_path / "dump.key"))
    orun = other.create_run({"upgrade": {}}, "cd" * 32, None, None, None, None)
    other.append(orun, "keystone", "done", step="keystone.s1", result={"rows": 1})
    foreign = other.db.conn.execute("SELECT * FROM marks").fetchone()
    other.close()
    _sql(path, "DELETE FROM marks WHERE step='keystone.s1' AND kind='done'")
    _sql(path, "INSERT INTO marks VALUES (?, ?, ?, ?, ?, ?, ?)", params=tuple(foreign))


#: what a writer without the key does to steer a resume or a revert -> what the refusal names. Each touches
#: an event or a mark the decision depends on, in ways the check without the chain walk must still see.
RESUME_ATTACKS = {
    "a middle event deleted": (lambda p, t, o: _sql(p, "DELETE FROM events WHERE seq=2"), "events were removed"),
    "an event added after the head": (lambda p, t, o: _copy_row(p, 10, 12), "events were removed or added"),
    "events renumbered after a deletion": (
        lambda p, t, o: _sql(p, "DELETE FROM events WHERE seq=2", "UPDATE events SET seq=seq-1 WHERE seq>2",
                             "UPDATE head SET seq=seq-1"), "event seq 10"),
    "tail deleted, head pointed back": (lambda p, t, o: _drop_tail(p), "the head"),
    "a done turned into a note": (lambda p, t, o: _sql(p, "UPDATE events SET kind='note' WHERE seq=6"),
                                  "changed into another event"),
    "a done hidden without a step": (lambda p, t, o: _sql(p, "UPDATE events SET step=NULL WHERE seq=8"),
                                     "changed into another event"),
    "a done moved to another run": (lambda p, t, o: _sql(p, "UPDATE events SET run='20260101-000000-ffffff' "
                                                            "WHERE seq=10"), "changed into another event"),
    "a failed turned into a done": (lambda p, t, o: _rehash(p, 3, "UPDATE events SET kind='done' WHERE seq=3"),
                                    "changed into another event"),
    "another done with its hash and MAC": (lambda p, t, o: _copy_row(p, 6, 8, step="keystone.s1"),
                                           "event seq 8: its content does not match its hash and MAC"),
    "a result edited, hash recomputed": (
        lambda p, t, o: _rehash(p, 6, "UPDATE events SET result='{\"rows\": 0}' WHERE seq=6"),
        "event seq 6: its content does not match its hash and MAC"),
    "the identity note hidden": (lambda p, t, o: _sql(p, "UPDATE events SET machine='nobody' WHERE seq=1"),
                                 "the notes of run"),
    "an interrupted note replaced by an earlier event": (lambda p, t, o: _copy_row(p, 2, 5),
                                                         "event seq 5 is not the note of keystone.s0"),
    "the identity note replaced by an earlier event": (lambda p, t, o: _copy_row(p, 2, 1),
                                                       "the notes of run"),
    "a mark removed": (lambda p, t, o: _sql(p, "DELETE FROM marks WHERE step='keystone.s1' AND kind='done'"),
                       "the marks count 10 events where the head seals 11"),
    "a mark put back from an older copy": (lambda p, t, o: _older_mark(p, o), "the marks count 10 events"),
    "a mark pointed at another event": (lambda p, t, o: _sql(p, "UPDATE marks SET last=6 WHERE step='keystone.s1' "
                                                                "AND kind='done'"), "the mark of run"),
    "a mark of another journal with the same key": (lambda p, t, o: _foreign_mark(p, t),
                                                    "copied from another journal"),
}


@pytest.mark.parametrize("attack", RESUME_ATTACKS, ids=list(RESUME_ATTACKS))
def test_resume_check_without_the_chain_walk_refuses_a_writer_without_the_key(tmp_path, attack):
    """What `resume` and `revert` check before any work (``Journal.authenticate``: no walk of the chain)
    refuses each edit of an event or a mark a decision depends on, naming it, and changes nothing;
    `journal verify` (the whole walk) refuses it too."""
    j, _run, key, older = _resumed(tmp_path)
    tamper, needle = RESUME_ATTACKS[attack]
    tamper(j.path, tmp_path, older)
    before = _rows(j.path)
    again = Journal(j.dir, create=False)
    with pytest.raises(JournalError, match="does not verify with its key") as refused:
        again.authenticate(key)
    assert needle in str(refused.value), refused.value
    assert again.verify().fault is not None  # the walk of `journal verify` finds it as well
    again.close()
    assert _rows(j.path) == before


def test_an_event_no_decision_reads_edited_is_left_to_journal_verify(tmp_path):
    """The limit of the check without the walk, and why it is harmless: an event overridden by a later one
    of its step and kind (the first intent of a step that was run again) is not read by resume or revert, so
    editing it changes no decision — and `journal verify` names it."""
    j, run, key, _older = _resumed(tmp_path)
    intact = Journal(j.dir, create=False, key=key)
    decided = replay_rows(intact.step_rows(run))
    intact.close()
    _sql(j.path, "UPDATE events SET output='all fine' WHERE seq=2")
    again = Journal(j.dir, create=False)
    verdict = again.authenticate(key)
    assert verdict.fault is None and verdict.events == 11, verdict
    assert replay_rows(again.step_rows(run)) == decided
    assert decided.machine("keystone").committed == {"keystone.s0": {"rows": 7}, "keystone.s1": {"rows": 8}}
    assert again.notes(run, "run")[0].result == {"target_db": {"server_id": 1}}
    again.close()
    code, text = _cli("journal", "verify", "--journal", str(j.dir), "--key", str(tmp_path / "dump.key"))
    assert code == EXIT_FAILED and "event seq 2" in text, text


def test_a_format_2_journal_is_continued_with_the_whole_walk(tmp_path, monkeypatch):
    """A journal written before the marks (format 2) is authenticated by walking every event, read through the
    index, and continued as format 2 (no marks table appears: its head stays sealed as format 2)."""
    key = vault.generate_key_file(tmp_path / "dump.key")
    monkeypatch.setattr(seal, "FORMAT", 2)
    j = Journal(tmp_path / "j", Redactor(), key=key)
    run = j.create_run({"upgrade": {}}, "ab" * 32, None, None, None, key.key_id)
    j.append(run, "keystone", "intent", step="keystone.s0")
    j.append(run, "keystone", "done", step="keystone.s0", result={"rows": 7})
    j.close()
    monkeypatch.undo()
    _sql(j.path, "UPDATE events SET output='x' WHERE seq=1")
    old = Journal(j.dir, create=False)
    with pytest.raises(JournalError, match="event seq 1"):  # a format 2 journal: every event is checked
        old.authenticate(key)
    old.close()
    _sql(j.path, "UPDATE events SET output=NULL WHERE seq=1")
    old = Journal(j.dir, create=False)
    assert old.format == 2 and old.authenticate(key).events == 2
    old.append(run, "glance", "intent", step="glance.s0")
    assert replay_rows(old.step_rows(run)).machine("keystone").committed == {"keystone.s0": {"rows": 7}}
    assert old.machines(run) == {"keystone", "glance"}
    assert old.verify().fault is None and old.verify().format == 2
    tables = {r[0] for r in old.db.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "marks" not in tables
    old.close()


# ---------------------------------------------------------------------- item 7: ownership, links
def _nobody() -> int:
    require(os.geteuid() == 0, "chown to another user needs root")
    return pwd.getpwnam("nobody").pw_uid


def test_a_journal_directory_of_another_user_is_refused(tmp_path):
    j, _run, _key = _journal(tmp_path)
    j.close()
    before = _rows(j.path)
    os.chown(j.dir, _nobody(), -1)
    code, text = _cli("status", "--journal", str(j.dir))
    assert code == EXIT_USAGE and f"journal directory {j.dir} belongs to nobody" in text and "chown" in text, text
    os.chown(j.dir, 0, -1)
    assert _rows(j.path) == before


def test_symlinks_are_never_followed(tmp_path):
    j, _run, _key = _journal(tmp_path)
    j.close()
    link = tmp_path / "link"
    link.symlink_to(j.dir)
    code, text = _cli("status", "--journal", str(link))
    assert code == EXIT_USAGE and "is a symbolic link" in text and str(j.dir) in text, text
    keylink = tmp_path / "key-link"
    keylink.symlink_to(tmp_path / "dump.key")
    with pytest.raises(vault.KeyFileError, match="key file .*key-link is a symbolic link"):
        Key.from_file(keylink)
    # journal.db itself replaced by a link to a copy elsewhere
    elsewhere = tmp_path / "elsewhere.db"
    shutil.copy(j.path, elsewhere)
    os.chmod(elsewhere, 0o600)
    moved = tmp_path / "moved.db"
    j.path.rename(moved)
    j.path.symlink_to(elsewhere)
    code, text = _cli("status", "--journal", str(j.dir))
    assert code == EXIT_USAGE and "journal file" in text and "symbolic link" in text, text


def test_a_key_file_of_another_user_is_refused(tmp_path):
    path = tmp_path / "dump.key"
    vault.generate_key_file(path)
    os.chown(path, _nobody(), -1)
    with pytest.raises(vault.KeyFileError, match=r"key file .*dump.key belongs to nobody .* chown"):
        Key.from_file(path)


def test_the_vault_directory_is_created_private_at_every_level(tmp_path):
    from services.infra.context import UpgradeContext

    j, run, key = _journal(tmp_path)
    root = tmp_path / "srv" / "upgrade" / "vault"
    ctx = UpgradeContext(run_id=run, source=None, target=None, journal=j, key=key, redactor=j.redactor,  # type: ignore[arg-type]
                         services={}, from_release="a", to_release="b", artifact_root=root)
    made = ctx.artifact_dir
    for d in (tmp_path / "srv", tmp_path / "srv" / "upgrade", root, made):
        assert oct(os.stat(d).st_mode & 0o777) == "0o700", d
    os.chown(root, _nobody(), -1)
    from statemachine.step import StepError
    with pytest.raises(StepError, match="vault directory .* belongs to nobody"):
        _ = ctx.artifact_dir


def test_before_values_are_merged_and_loaded_only_through_their_record(tmp_path):
    """A fix-up's before-values (services.before): a re-run merges with the recorded first values and
    writes beside, never over, the recorded file; a file that is not the recorded one is refused."""
    from types import SimpleNamespace

    from services.infra import before
    from services.infra.context import UpgradeContext
    from statemachine.step import StepError

    j, run, key = _journal(tmp_path)
    target = SimpleNamespace(host=SimpleNamespace(name="new"))
    ctx = UpgradeContext(run_id=run, source=None, target=target, journal=j, key=key,  # type: ignore[arg-type]
                         redactor=j.redactor, services={}, from_release="a", to_release="b",
                         artifact_root=tmp_path / "vault")
    step = "cinder.rewrite_iscsi"
    first, art1 = before.keep(ctx, step, "iscsi-before", {"a": "original", "b": "original"})
    merged, art2 = before.keep(ctx, step, "iscsi-before", {"a": "rewritten", "c": "new"})   # the re-run
    assert merged == {"a": "original", "b": "original", "c": "new"}
    assert art1["path"] != art2["path"] and Path(art1["path"]).exists()
    assert before.load(ctx, art2, step) == merged
    with pytest.raises(StepError, match="made by cinder.rewrite_iscsi, not by nova.update_cells"):
        before.load(ctx, art2, "nova.update_cells")
    shutil.copyfile(art1["path"], art2["path"])   # the older file over the recorded one
    with pytest.raises(StepError, match=f"refusing artifact {art2['path']} .*decrypts to other content"):
        before.load(ctx, art2, step)


# ---------------------------------------------------------------------- item 9: the journal's own failures
def test_a_damaged_page_is_a_message_not_an_internal_error(tmp_path):
    j, _run, _key = _journal(tmp_path, events=400)
    j.close()
    data = bytearray(j.path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    data[3 * page:5 * page] = b"\xa5" * (2 * page)  # two pages in the middle of the events
    j.path.write_bytes(bytes(data))
    for argv in (("status", "--journal", str(j.dir)),
                 ("journal", "verify", "--journal", str(j.dir), "--key", str(tmp_path / "dump.key"))):
        code, text = _cli(*argv)
        assert code in (EXIT_USAGE, EXIT_FAILED), text
        assert "internal error" not in text
        assert "journal.db" in text and ("not a readable SQLite journal" in text or "TAMPERED" in text), text
    assert not (Path.cwd() / "upgrade-journal" / "internal-error.log").exists()


@pytest.fixture
def tiny_fs(tmp_path):
    d = tmp_path / "tiny"
    d.mkdir(mode=0o700)
    with tmpfs(d, "512k"):
        yield d


def test_disk_full_during_a_journal_write_is_a_clear_error(tiny_fs, tmp_path):
    key = vault.generate_key_file(tmp_path / "dump.key")
    j = Journal(tiny_fs / "j", key=key)
    run = j.create_run({}, "ab" * 32, None, "a", "b", key.key_id)
    with pytest.raises(JournalError) as exc:
        for _i in range(10_000):
            j.append(run, "m", "note", output=os.urandom(1500).hex())
    assert exc.value.disk_full
    assert "no space left on the disk holding the journal" in str(exc.value) and str(j.path) in str(exc.value)


def test_an_internal_error_leaves_its_traceback_beside_the_journal(tmp_path):
    """A run row without the plan's services (written by hand with the key: no real run does that)
    makes `status` fail inside: the traceback goes beside the journal, never into the current directory."""
    key = vault.generate_key_file(tmp_path / "dump.key")
    j = Journal(tmp_path / "j", key=key)
    j.create_run({}, "ab" * 32, None, "a", "b", key.key_id)
    j.close()
    cwd_log = REPO / "upgrade-journal" / "internal-error.log"
    existed = cwd_log.exists()
    code, text = _cli("status", "--journal", str(j.dir))
    assert code == 70 and f"traceback in {j.dir / 'internal-error.log'}" in text, text
    assert "Traceback" in (j.dir / "internal-error.log").read_text()
    assert oct((j.dir / "internal-error.log").stat().st_mode & 0o777) == "0o600"
    assert cwd_log.exists() == existed


def test_export_force_never_writes_through_a_link(tmp_path):
    j, _run, _key = _journal(tmp_path)
    j.close()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    out = tmp_path / "audit.jsonl"
    out.symlink_to(victim)
    code, text = _cli("journal", "export", "--journal", str(j.dir), "--output", str(out), "--force")
    assert code == EXIT_USAGE and "is a symbolic link" in text, text
    assert victim.read_text() == "keep me\n" and out.is_symlink()


def test_a_deleted_salt_is_reported_never_made_anew(tmp_path):
    j, _run, _key = _journal(tmp_path)
    j.close()
    code, text = _cli("journal", "verify", "--journal", str(j.dir), "--passphrase-env", "OSU_TEST_PASSPHRASE",
                      env={"OSU_TEST_PASSPHRASE": "a passphrase"})
    assert code == EXIT_USAGE and "vault.salt is missing" in text and "restore vault.salt" in text, text
    assert not (j.dir / "vault.salt").exists()


def test_the_salt_is_made_once_private_and_then_only_read(tmp_path, monkeypatch):
    from upgrade import app

    monkeypatch.setenv("OSU_TEST_PASSPHRASE", "a passphrase")
    d = tmp_path / "new" / "journal"
    first = app.key_from(None, "OSU_TEST_PASSPHRASE", d, True, "test")
    salt = d / app.SALT_FILE
    assert oct(salt.stat().st_mode & 0o777) == "0o600" and oct(d.stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "new").stat().st_mode & 0o777) == "0o700"
    again = app.key_from(None, "OSU_TEST_PASSPHRASE", d, False, "test")
    assert again.key_id == first.key_id and salt.read_bytes() == first.kdf.salt


def test_windows_never_go_negative_when_the_wall_clock_steps_back(tmp_path):
    """The wall clock is set back one hour between the stop and the verification: the window is what
    the monotonic clock measured."""
    key = vault.generate_key_file(tmp_path / "dump.key")
    j = Journal(tmp_path / "j", key=key)
    run = j.create_run({}, "ab" * 32, None, "a", "b", key.key_id)
    for step, kind in (("keystone.stop_source", "intent"), ("keystone.stop_source", "done"),
                       ("keystone.verify", "intent"), ("keystone.verify", "done")):
        j.append(run, "keystone", kind, step=step)
    events = j.events(run)
    assert all(e.mono is not None and e.boot for e in events)
    assert [e.mono for e in events] == sorted(e.mono for e in events)
    hour = 3600.0
    stepped = [e if i < 2 else type(e)(**{**e.__dict__, "ts": e.ts - hour}) for i, e in enumerate(events)]
    rw = window.measure(stepped)
    w = rw.services[0]
    assert w.closed_by == "verified"
    assert 0 <= w.seconds(window.now()) == pytest.approx(events[-1].mono - events[0].mono)
    assert 0 <= rw.seconds(window.now()) < hour
    rep = window.report(rw, window.now())
    assert rep["total"]["seconds"] >= 0 and all(v >= 0 for k, v in rep["total"].items() if k.endswith("seconds"))


# ---------------------------------------------------------------------- with the lab: real runs
def _users_hash(lab) -> list[tuple]:
    return lab.db_new.execute("SELECT host, authentication_string FROM mysql.user WHERE user='keystone' "
                              "ORDER BY host")


def test_revert_refuses_an_older_runs_backup_copied_over_this_runs(lab, tmp_path):
    """Run A is reverted; the target's keystone password changes; run B dies after its import. A's
    target backup copied over B's is refused by `upgrade revert` (exit 1, the file named), nothing
    changes; with B's own backup back in place the revert restores B's (newer) password hash."""
    plan = lab.write_plan(tmp_path)
    journal = tmp_path / "journal"
    assert upgrade("run", str(plan), failpoint="keystone.import_db:after").returncode < 0
    run_a = json.loads(upgrade("status", "--journal", str(journal), "-f", "json").stdout)["run"]
    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    seeded = _users_hash(lab)
    lab.db_new.execute("ALTER USER 'keystone'@'127.0.0.1' IDENTIFIED BY %s", args=("newer-target-pw-77",))
    newer = _users_hash(lab)
    assert newer != seeded
    assert upgrade("run", str(plan), failpoint="keystone.import_db:after").returncode < 0
    run_b = json.loads(upgrade("status", "--journal", str(journal), "-f", "json").stdout)["run"]
    assert run_b != run_a
    arts = journal / "artifacts"
    mine, older = arts / run_b / "keystone-target-users.osuv", arts / run_a / "keystone-target-users.osuv"
    genuine = mine.read_bytes()
    shutil.copyfile(older, mine)
    before = lab.state()
    before_users = _users_hash(lab)
    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == EXIT_FAILED, res.stderr
    assert f"refusing artifact {mine}" in res.stderr and "recorded" in res.stderr, res.stderr
    assert KEYSTONE_DB_PASSWORD not in res.stderr
    assert lab.state() == before and _users_hash(lab) == before_users   # nothing restored, nothing dropped
    mine.write_bytes(genuine)
    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    assert _users_hash(lab) == newer     # B's own backup: the newer hash, never A's older one


def test_resume_refuses_a_journal_edited_to_accept_another_plan(lab, tmp_path):
    """The attack of the issue: edit the plan, then `UPDATE runs SET plan_sha256=<its hash>`; and the step the
    run was in hidden from the marks resume reads through."""
    plan = lab.write_plan(tmp_path)
    journal = tmp_path / "journal"
    assert upgrade("run", str(plan), failpoint="keystone.stop_source:after").returncode < 0
    text, sha = plan.read_text(), hashlib.sha256(plan.read_bytes()).hexdigest()
    plan.write_text(text + "\n# edited after the run started\n")
    _sql(journal / "journal.db", "UPDATE runs SET plan_sha256=?",
         params=(hashlib.sha256(plan.read_bytes()).hexdigest(),))
    rows, before = _rows(journal / "journal.db"), lab.state()
    for verb in ("resume", "revert"):
        res = upgrade(verb, "--journal", str(journal))
        assert res.returncode == EXIT_USAGE, res.stderr
        assert "does not verify with its key" in res.stderr and "runs row" in res.stderr, res.stderr
        assert lab.state() == before and _rows(journal / "journal.db") == rows
    ver = upgrade("journal", "verify", "--journal", str(journal), "--key", str(tmp_path / "dump.key"))
    assert ver.returncode == EXIT_FAILED and "TAMPERED" in ver.stdout
    # the plan and its hash put back; then the last step the run committed hidden (its done without a step: a
    # resume would run it again, a revert would not undo it) — what resume reads through the marks, not a
    # walk of the chain, refuses it before any work
    plan.write_text(text)
    _sql(journal / "journal.db", "UPDATE runs SET plan_sha256=?", params=(sha,))
    _sql(journal / "journal.db", "UPDATE events SET step=NULL WHERE seq=(SELECT MAX(seq) FROM events WHERE "
         "kind='done')")
    rows = _rows(journal / "journal.db")
    for verb in ("resume", "revert"):
        res = upgrade(verb, "--journal", str(journal))
        assert res.returncode == EXIT_USAGE, res.stderr
        assert "is not the done of keystone." in res.stderr and "its marks seal" in res.stderr, res.stderr
        assert lab.state() == before and _rows(journal / "journal.db") == rows


def test_a_full_disk_under_the_journal_stops_the_run_with_a_message_and_resume_finishes(lab, tmp_path, tiny_fs):
    """The journal on a small filesystem (the vault elsewhere): the run stops with exit 1 and the fix, not
    an internal error; with space freed `upgrade resume` finishes the run and the journal verifies."""
    plan = lab.write_plan(tmp_path)
    journal = tiny_fs / "journal"
    text = plan.read_text().replace('journal = "journal"', f'journal = "{journal}"')
    plan.write_text(text.replace('key_file = "dump.key"\n', f'key_file = "dump.key"\ndir = "{tmp_path / "vault"}"\n'))
    res = upgrade("run", str(plan))
    assert res.returncode == EXIT_FAILED, res.stderr
    assert "no space left on the disk holding the journal" in res.stderr and "upgrade resume" in res.stderr
    assert "internal error" not in res.stderr
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_fs)], check=True)
    res = upgrade("resume", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    ver = upgrade("journal", "verify", "--journal", str(journal), "--key", str(tmp_path / "dump.key"))
    assert ver.returncode == 0 and ver.stdout.startswith("OK"), ver.stdout + ver.stderr
