"""Revert after tenants wrote to the new cloud (real keystone lab): an idle completed run reverts as it is; a
project created through the new keystone's API after the run makes `upgrade revert` refuse (exit 2, nothing
changed on either controller, in the journal or the vault), and `--discard-new-writes` dumps the new
controller's databases into the vault (the project readable there with the run's key) before reverting."""

from __future__ import annotations

import json
from pathlib import Path

from journal import vault
from scripts.lab import ksapi, svc
from services.infra import newwrites
from services.infra.settings import DBEndpoint
from services.registry import IDLE_WRITES
from tests.conftest import ADMIN_PASSWORD, DB_ADMIN, TARGET_DB_PASSWORD, tree_digest, upgrade

#: rewritten by every run/resume/revert whatever it does: the lock's holder and the log
BOOKKEEPING = ("lock", "upgrade.log")


def _journal_files(journal: Path) -> dict:
    return {k: v for k, v in tree_digest(journal).items() if k not in BOOKKEEPING}


def _run(lab, tmp_path) -> tuple[Path, Path]:
    plan = lab.write_plan(tmp_path)
    res = upgrade("run", str(plan))
    assert res.returncode == 0, res.stderr
    return plan, tmp_path / "journal"


def _baseline_note(journal: Path) -> dict:
    exp = upgrade("journal", "export", "--journal", str(journal), "--format", "jsonl")
    assert exp.returncode == 0, exp.stderr
    notes = [json.loads(line) for line in exp.stdout.splitlines()]
    return next(e["result"]["new_writes_baseline"] for e in notes
                if e["kind"] == "note" and "new_writes_baseline" in (e["result"] or {}))


def test_idle_completed_run_reverts_without_the_flag(lab, tmp_path):
    before = lab.state()
    _plan, journal = _run(lab, tmp_path)
    base = _baseline_note(journal)
    assert set(base) == {"keystone"} and "project" in base["keystone"]["keystone"]
    # logins on the new cloud are no tenant writes
    url = lab.seed["keystone_url"]
    assert ksapi.issue_token(url, "admin", ADMIN_PASSWORD, project="admin").status == 201
    assert ksapi.issue_token(url, "demo", lab.seed["demo_password"], project="demo").status == 201
    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    after = lab.state()
    assert after["source_db"] == before["source_db"] and after["source_etc"] == before["source_etc"]
    assert svc.status(lab.old.root, "keystone") and not svc.status(lab.new.root, "keystone")
    shown = upgrade("journal", "show", "--journal", str(journal))
    assert "new-writes" not in shown.stdout


def test_revert_after_a_tenant_write_refuses_then_keeps_it_in_the_vault(lab, tmp_path):
    source_before = lab.state()
    _plan, journal = _run(lab, tmp_path)
    url = lab.seed["keystone_url"]
    token = ksapi.get_token(url, "admin", ADMIN_PASSWORD, project="admin")
    ksapi.call("POST", f"{url}/projects", token, {"project": {"name": "written-after-cutover",
                                                              "domain_id": "default"}})
    state, files = lab.state(), _journal_files(journal)

    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == 2, res.stderr
    assert "tenants wrote to the new controller" in res.stderr and "nothing was changed" in res.stderr
    assert "  keystone:" in res.stderr
    line = next(x.strip() for x in res.stderr.splitlines() if x.strip().startswith("keystone.project:"))
    n = lab.db_new.execute("SELECT COUNT(*) FROM keystone.project")[0][0]
    assert line == f"keystone.project: {n - 1} -> {n} rows (+1)"
    assert "--discard-new-writes" in res.stderr
    # nothing changed: both controllers' databases and trees, the journal and the vault
    assert lab.state() == state and _journal_files(journal) == files
    assert svc.status(lab.new.root, "keystone") and not svc.status(lab.old.root, "keystone")

    # killed after the new writes were dumped (once before the journal names the file, once after), then
    # run again: the revert ends as an uninterrupted one would, every recorded dump whole
    for point in ("revert.new_writes:written", "revert.new_writes:dumped"):
        res = upgrade("revert", "--journal", str(journal), "--discard-new-writes", failpoint=point)
        assert res.returncode == -9, res.stdout + res.stderr
        assert svc.status(lab.new.root, "keystone") and not svc.status(lab.old.root, "keystone")
    res = upgrade("revert", "--journal", str(journal), "--discard-new-writes")
    assert res.returncode == 0, res.stderr
    after = lab.state()
    assert after["source_db"] == source_before["source_db"] and after["source_etc"] == source_before["source_etc"]
    assert svc.status(lab.old.root, "keystone") and not svc.status(lab.new.root, "keystone")
    # the old cloud never had the project; the vault has it, listed by `journal show`, readable with the key
    assert not lab.db_old.execute("SELECT 1 FROM keystone.project WHERE name='written-after-cutover'")
    shown = upgrade("journal", "show", "--journal", str(journal))
    assert shown.returncode == 0, shown.stderr
    rows = [x.split() for x in shown.stdout.splitlines() if " new-writes " in x]
    # the dump recorded before the second kill and the one of the completed revert
    assert len(rows) == 2 and {r[2] for r in rows} == {"keystone"}, shown.stdout
    for row in rows:
        path = Path(row[-1])
        assert path.is_file() and b"written-after-cutover" not in path.read_bytes()
        dump = vault.decrypt_bytes(path, vault.Key.from_file(tmp_path / "dump.key"))
        assert b"written-after-cutover" in dump and b"CREATE TABLE `project`" in dump
    verify = upgrade("journal", "verify", "--journal", str(journal), "--key", str(tmp_path / "dump.key"))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_what_an_idle_cloud_writes_is_no_tenant_write(keystone_lab):
    """Heartbeats and revocations change nothing that counts; a changed flag, a renamed row, a new row do
    (real MariaDB, the markers the baseline records)."""
    db = keystone_lab.db_new
    ep = DBEndpoint("127.0.0.1", db.port, DB_ADMIN, TARGET_DB_PASSWORD)
    name, ks = "osu_newwrites_nova", "osu_newwrites_keystone"
    for stmt in (f"DROP DATABASE IF EXISTS {name}", f"DROP DATABASE IF EXISTS {ks}", f"CREATE DATABASE {name}",
                 f"CREATE DATABASE {ks}",
                 f"CREATE TABLE {name}.services (id INT PRIMARY KEY, host VARCHAR(64), disabled TINYINT, "
                 "updated_at DATETIME NULL, report_count INT, last_seen_up DATETIME NULL)",
                 f"INSERT INTO {name}.services VALUES (1, 'newctl', 0, NULL, 1, NULL)",
                 f"CREATE TABLE {name}.instances (id INT PRIMARY KEY, display_name VARCHAR(64) NULL)",
                 f"INSERT INTO {name}.instances VALUES (1, 'vm1'), (2, NULL)",
                 f"CREATE TABLE {ks}.revocation_event (id INT PRIMARY KEY, user_id VARCHAR(64))"):
        db.execute(stmt)
    try:
        base = newwrites.baseline(ep, {"nova": [name], "keystone": [ks]}, IDLE_WRITES)
        assert set(base["nova"][name]) == {"services", "instances"} and base["keystone"][ks] == {}
        db.execute(f"UPDATE {name}.services SET updated_at=NOW(), report_count=report_count+7, last_seen_up=NOW()")
        db.execute(f"INSERT INTO {ks}.revocation_event VALUES (1, 'u1')")
        assert newwrites.changes(ep, base, IDLE_WRITES) == {}
        db.execute(f"UPDATE {name}.services SET disabled=1")
        db.execute(f"UPDATE {name}.instances SET display_name='' WHERE id=2")  # NULL -> empty is a change
        assert newwrites.changes(ep, base, IDLE_WRITES) == {"nova": [f"{name}.instances: 2 rows, content changed",
                                                        f"{name}.services: 1 rows, content changed"]}
        db.execute(f"INSERT INTO {name}.services VALUES (2, 'compute9', 0, NOW(), 1, NOW())")
        assert f"{name}.services: 1 -> 2 rows (+1)" in newwrites.changes(ep, base, IDLE_WRITES)["nova"]
    finally:
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"DROP DATABASE IF EXISTS {ks}")


def test_a_target_that_was_down_is_compared_by_the_next_revert(lab, tmp_path):
    """The new controller's DB server is down at the revert: the old controller comes back anyway (exit 1,
    the target's restore left for later). The next revert, with the server back, compares before it restores:
    a tenant's row written there is refused (exit 2, nothing changed), then kept in the vault by the flag."""
    _plan, journal = _run(lab, tmp_path)
    lab.db_new.stop()
    try:
        rev = upgrade("revert", "--journal", str(journal))
        assert rev.returncode == 1, rev.stdout + rev.stderr
        assert svc.status(lab.old.root, "keystone")
    finally:
        lab.db_new.start()
    # what a tenant wrote before the server went down (keystone itself is stopped there by now)
    domain = lab.db_new.execute("SELECT domain_id FROM keystone.project WHERE name='demo'")[0][0]
    lab.db_new.execute("INSERT INTO keystone.project (id, name, extra, enabled, domain_id, parent_id, is_domain) "
                       "VALUES ('0123456789abcdef0123456789abcdef', 'written-before-the-outage', '{}', 1, %s, %s, 0)",
                       args=(domain, domain))
    state, files = lab.state(), _journal_files(journal)
    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "tenants wrote to the new controller" in res.stderr and "keystone.project:" in res.stderr
    assert lab.state() == state and _journal_files(journal) == files
    res = upgrade("revert", "--journal", str(journal), "--discard-new-writes")
    assert res.returncode == 0, res.stdout + res.stderr
    arts = [a for a in _artifacts(journal) if a["kind"] == "new-writes"]
    assert len(arts) == 1
    dump = vault.decrypt_bytes(arts[0]["path"], vault.Key.from_file(tmp_path / "dump.key"))
    assert b"written-before-the-outage" in dump
    assert not lab.db_new.execute("SELECT 1 FROM keystone.project WHERE name='written-before-the-outage'")


def _artifacts(journal: Path) -> list[dict]:
    shown = upgrade("journal", "show", "--journal", str(journal))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.split("artifacts (encrypted in the vault, readable with the run's key):\n", 1)[1]
    rows = [x.split() for x in lines.splitlines()[2:] if x.strip()]
    return [{"id": r[0], "kind": r[1], "service": r[2], "path": r[-1]} for r in rows]
