"""Keystone end to end: a real `upgrade run` from 2025.2 to 2026.1 between two real MariaDB servers."""

from __future__ import annotations

import json

from scripts.lab import ksapi, svc
from scripts.lab.controller import alembic_heads
from tests.conftest import ADMIN_PASSWORD, KEYSTONE_DB_PASSWORD, KEYSTONE_STEPS, NEW, upgrade

HEADS_NEW = {"742c857f1dfb", "c88cdce8f248"}
MIGRATED = {"alembic_version", "project_endpoint_group", "revocation_event"}
STEPS = KEYSTONE_STEPS


def test_full_run(lab, tmp_path):
    before = lab.state()
    plan = lab.write_plan(tmp_path)
    res = upgrade("run", str(plan))
    assert res.returncode == 0, res.stderr
    after = lab.state()
    # the target holds the source's data: every table no migration touched is identical
    for table, value in before["source_db"].items():
        if table not in MIGRATED:
            assert after["target_db"][table] == value, table
    assert alembic_heads(lab.db_new) == HEADS_NEW
    # the source was only read
    assert after["source_db"] == before["source_db"]
    assert after["source_etc"] == before["source_etc"]
    # the config came over byte for byte but for the options that name the target's DB and paths
    old_conf = (lab.old.root / "etc/keystone/keystone.conf").read_text().splitlines()
    new_conf = (lab.new.root / "etc/keystone/keystone.conf").read_text().splitlines()
    assert len(old_conf) == len(new_conf)
    changed = [(a, b) for a, b in zip(old_conf, new_conf, strict=True) if a != b]
    assert {b.split("=")[0].strip() for _a, b in changed} == {"log_file", "connection", "key_repository"}
    assert f"keystone:{KEYSTONE_DB_PASSWORD}@127.0.0.1:{lab.db_new.port}/keystone" in "\n".join(new_conf)
    # the journal holds an intent/done pair for every step, in order
    journal = tmp_path / "journal"
    exp = upgrade("journal", "export", "--journal", str(journal), "--format", "jsonl")
    assert exp.returncode == 0, exp.stderr
    events = [json.loads(line) for line in exp.stdout.splitlines()]
    pairs = [(e["step"], e["kind"]) for e in events if e["kind"] in ("intent", "done")]
    assert pairs == [(f"keystone.{s}", k) for s in STEPS for k in ("intent", "done")]
    schema = next(e for e in events if e["step"] == "keystone.upgrade_schema" and e["kind"] == "done")["result"]
    assert schema["check_after"] == 0 and "check_before" not in schema  # the revisions below say where it began
    assert set(schema["revisions_before"]) == {"47147121", "c88cdce8f248"}
    assert set(schema["revisions_after"]) == HEADS_NEW
    # the new keystone serves the old data: admin and demo log in, the old token still validates
    url = lab.seed["keystone_url"]
    assert svc.status(lab.new.root, "keystone") and not svc.status(lab.old.root, "keystone")
    assert ksapi.issue_token(url, "admin", ADMIN_PASSWORD, project="admin").status == 201
    assert ksapi.issue_token(url, "demo", lab.seed["demo_password"], project="demo").status == 201
    st = upgrade("status", "--journal", str(journal), "-f", "json")
    data = json.loads(st.stdout)
    assert data["status"] == "completed" and data["services"][0]["state"] == "verified"
    assert data["to"] == NEW
