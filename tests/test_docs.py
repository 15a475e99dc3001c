"""The docs that are generated or executable stay true: `upgrade init` plans load, the plan schema
matches what the loader accepts, the operator guide's plan reference is the generated one, and the
auditor's snippet in docs/journal-format.md verifies a real export (and catches a tampered one)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from journal import vault
from journal.chain import row_hash
from journal.store import Journal
from tests.conftest import REPO, upgrade
from upgrade import plan as plan_mod
from upgrade import planinit, planschema

DOCS = REPO / "docs"


@pytest.mark.parametrize("layout,control,unit", [("rdo-sysvinit", "sysvinit", "openstack-keystone"),
                                                 ("ubuntu-systemd", "systemd", "apache2")])
def test_init_prints_a_plan_that_loads(tmp_path, monkeypatch, layout, control, unit):
    res = upgrade("init", "--layout", layout)
    assert res.returncode == 0, res.stderr
    plan = tmp_path / "plan.toml"
    plan.write_text(res.stdout)
    with pytest.raises(plan_mod.PlanError, match="SOURCE_DB_PASSWORD"):
        plan_mod.load(plan)                      # the passwords are not provided yet
    assert upgrade("keygen", str(tmp_path / "dump.key")).returncode == 0
    monkeypatch.setenv("SOURCE_DB_PASSWORD", "s3cret-src")
    monkeypatch.setenv("TARGET_DB_PASSWORD", "s3cret-tgt")
    p = plan_mod.load(plan)
    assert (p.from_release, p.to_release, p.services) == ("2025.2", "2026.1", ("keystone",))
    assert p.target.control.kind == control and p.service_settings["keystone"].unit == unit
    assert p.key_file == tmp_path / "dump.key"
    # every key of every table is there, set or commented, with a comment above it
    lines = res.stdout.splitlines()
    for t in (*planschema.TABLES, planschema.table("services.keystone")):
        for k in t.keys:
            if k.type == "table":
                continue
            at = [i for i, line in enumerate(lines) if re.match(rf"(# )?{k.name} = ", line)]
            assert at, f"{t.name}.{k.name} missing"
            assert all(lines[i - 1].startswith("# ") for i in at), k.name


def test_init_other_jump():
    res = upgrade("init", "--from", "2025.1", "--to", "2026.1")
    assert res.returncode == 0 and 'from = "2025.1"' in res.stdout and 'to = "2026.1"' in res.stdout


APPENDED = {"ssh": "[ssh]", "network": "[network]", "compute_defaults": "[compute_defaults]",
            "computes": "[[computes]]", "amqp": "[amqp]", "cloud": "[cloud]"}


def _known_keys(tmp_path: Path, text: str, table: str) -> set[str]:
    """The keys the loader accepts in *table*, from its own unknown-key message."""
    bogus = "zz_not_a_key"
    where = f"{table}.{bogus}" if table else bogus
    if table in APPENDED:
        text += f"\n{APPENDED[table]}\n{bogus} = 1\n"
        where = f"computes[0].{bogus}" if table == "computes" else where
    elif table:
        marker = f"[{table}]\n"
        assert marker in text, table
        text = text.replace(marker, f"{marker}{bogus} = 1\n", 1)
    else:
        text = f"{bogus} = 1\n" + text
    p = tmp_path / "plan.toml"
    p.write_text(text)
    with pytest.raises(plan_mod.PlanError) as err:
        plan_mod.load(p)
    msg = str(err.value)
    assert f"`{where}` is not a known key" in msg, msg
    return set(msg.split("known keys: ", 1)[1].split(", "))


@pytest.mark.parametrize("table", ["", "upgrade", "vault", "source", "source.db", "target", "target.db",
                                   "services.keystone", *APPENDED])
def test_schema_matches_the_loader(tmp_path, monkeypatch, table):
    """The schema (and so `upgrade init` and the operator guide) documents exactly the keys the loader takes."""
    monkeypatch.setenv("SOURCE_DB_PASSWORD", "x")
    monkeypatch.setenv("TARGET_DB_PASSWORD", "y")
    text = planinit.render()
    documented = planschema.top_level() if not table else {k.name for k in planschema.table(table).keys}
    assert _known_keys(tmp_path, text, table) == documented


def test_operator_guide_plan_reference_is_generated():
    doc = (DOCS / "operator-guide.md").read_text()
    assert planschema.reference_markdown() in doc
    assert planschema.with_reference(doc) == doc
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "gen-plan-reference"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def _snippet(tmp_path: Path) -> Path:
    text = (DOCS / "journal-format.md").read_text()
    code = text.split("<!-- verify-snippet -->\n```python\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "verify_export.py"
    path.write_text(code)
    return path


def _journal(d: Path) -> tuple[Path, list[str]]:
    """A real journal with two runs whose events carry nested, non-ASCII and secret-looking data."""
    j = Journal(d / "journal", key=vault.generate_key_file(d / "dump.key"))
    runs = []
    for n in range(2):
        rid = j.create_run({"upgrade": {"services": ["keystone"]}}, "0" * 64, "plan.toml", "2025.2", "2026.1", None)
        j.append(rid, "keystone", "intent", step="keystone.dump_source", from_state="source_stopped",
                 to_state="source_dumped", host="source", command="mysqldump --password=hunter2 keystone")
        j.append(rid, "keystone", "done", step="keystone.dump_source", host="source",
                 result={"checksums": {"user": [3, 123456789]}, "note": "Zürich ✓", "seconds": 0.25 + n})
        j.append(rid, "keystone", "failed", step="keystone.import_db", rc=1, output="ERROR 1045: denied")
        runs.append(rid)
    j.close()
    return d / "journal", runs


def _verify(snippet: Path, export: Path, key: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(snippet), str(export), *([str(key)] if key else [])],
                          capture_output=True, text=True)


def test_the_auditors_snippet_verifies_a_real_export_and_catches_tampering(tmp_path):
    snippet = _snippet(tmp_path)
    journal, runs = _journal(tmp_path)
    export = tmp_path / "journal.jsonl"
    assert upgrade("journal", "export", "--journal", str(journal), "--output", str(export)).returncode == 0
    res = _verify(snippet, export)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("OK: 6 events, chain intact") and "not authenticated" in res.stdout
    res = _verify(snippet, export, tmp_path / "dump.key")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("OK: 6 events, chain intact, every MAC authenticated")
    # a one-run export is a segment of the chain
    one = tmp_path / "run2.jsonl"
    assert upgrade("journal", "export", "--journal", str(journal), "--run", runs[1], "--output",
                   str(one)).returncode == 0
    assert _verify(snippet, one).stdout.startswith("OK: 3 events")
    # an edited row, a removed row, reordered rows
    lines = export.read_text().splitlines()
    edited = [json.loads(line) for line in lines]
    edited[1]["result"]["checksums"]["user"][0] = 4
    cases = {
        "edited": [json.dumps(e) for e in edited],
        "removed": lines[:2] + lines[3:],
        "reordered": [lines[0], lines[2], lines[1], *lines[3:]],
    }
    for name, content in cases.items():
        bad = tmp_path / f"{name}.jsonl"
        bad.write_text("\n".join(content) + "\n")
        res = _verify(snippet, bad)
        assert res.returncode == 1, name
        assert res.stdout.startswith("BROKEN at seq "), res.stdout
    assert "seq 2" in _verify(snippet, tmp_path / "edited.jsonl").stdout
    # a writer without the key recomputes the chain after the edit: only the key finds it
    prev = "0" * 64
    forged = []
    for e in edited:
        stored = {**e, "result": json.dumps(e["result"], sort_keys=True) if e["result"] is not None else None}
        e["prev_hash"] = stored["prev_hash"] = prev
        e["hash"] = prev = row_hash(stored)
        forged.append(json.dumps(e))
    (tmp_path / "forged.jsonl").write_text("\n".join(forged) + "\n")
    assert _verify(snippet, tmp_path / "forged.jsonl").returncode == 0
    res = _verify(snippet, tmp_path / "forged.jsonl", tmp_path / "dump.key")
    assert res.returncode == 1 and res.stdout.startswith("BROKEN at seq 2: its MAC"), res.stdout
