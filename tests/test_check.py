"""`upgrade check`: the pre-flight on the real lab. Clean lab: exit 0. Each injected problem: exit 2
naming it (1 for a warning). Nothing changes on either controller, and no journal is created."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.conftest import SOURCE_DB_PASSWORD, TARGET_DB_PASSWORD, TARGET_PW_ENV, require, upgrade


def _check(plan: Path, **env: str) -> tuple[int, dict[str, tuple[str, str]], str]:
    res = upgrade("check", str(plan), env=env)
    out = res.stdout + res.stderr
    assert "Traceback" not in out and SOURCE_DB_PASSWORD not in out and TARGET_DB_PASSWORD not in out
    rows = {}
    for line in res.stdout.splitlines()[2:]:
        status, _, rest = line.partition("  ")
        if status.strip() in ("OK", "WARN", "FAIL", "SKIP"):
            name, _, detail = rest.strip().partition("  ")
            rows[name.strip()] = (status.strip(), detail.strip())
    return res.returncode, rows, out


def test_clean_lab_passes_every_check_and_changes_nothing(lab, tmp_path):
    before = lab.state()
    plan = lab.write_plan(tmp_path)
    code, rows, out = _check(plan)
    assert code == 0, out
    assert "all checks passed" in out
    expected = {"plan", "release jump", "host source", "host target", "db source", "db target", "db keystone",
                "keystone target", "keystone source", "space journal", "space target datadir", "charset keystone",
                "vault key", "journal", "clock source", "clock target", "addresses", "identity db", "identity dirs",
                "claim", "services", "shipped config files", "amqp"}
    assert set(rows) == expected, rows
    assert all(s == "OK" for name, (s, _d) in rows.items() if name not in ("addresses", "amqp"))
    assert rows["addresses"] == ("SKIP", "no addresses in the plan")
    assert rows["amqp"] == ("SKIP", "no transport_url in the source configs of the plan's services")
    assert "29." in rows["keystone target"][1] and "2026.1" in rows["keystone target"][1]
    assert lab.state() == before
    assert not (tmp_path / "journal").exists()


def test_wrong_db_password_fails(lab, tmp_path):
    before = lab.state()
    code, rows, out = _check(lab.write_plan(tmp_path), **{TARGET_PW_ENV: "not-the-password"})
    assert code == 2, out
    status, detail = rows["db target"]
    assert status == "FAIL" and f"127.0.0.1:{lab.db_new.port}" in detail and "password" in detail
    assert rows["db source"][0] == "OK"
    assert lab.state() == before


def test_missing_source_database_fails_naming_the_plan_key(lab, tmp_path):
    before = lab.state()
    code, rows, out = _check(lab.write_plan(tmp_path, db_name="keystone_gone"))
    assert code == 2, out
    status, detail = rows["db keystone"]
    assert status == "FAIL" and "keystone_gone" in detail and "services.keystone.db_name" in detail
    assert lab.state() == before


def test_missing_target_package_fails(lab, tmp_path):
    before = lab.state()
    plan = lab.write_plan(tmp_path)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    plan.write_text(plan.read_text().replace(f'bin = "{lab.new.venv}/bin"', f'bin = "{empty}"'))
    code, rows, out = _check(plan)
    assert code == 2, out
    status, detail = rows["keystone target"]
    assert status == "FAIL" and "keystone-manage" in detail and str(empty) in detail
    assert "install keystone 2026.1" in out
    assert lab.state() == before


def test_full_vault_disk_fails(lab, tmp_path):
    before = lab.state()
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(tiny)], capture_output=True,
                             text=True)
    require(mounted.returncode == 0, f"cannot mount a tmpfs (root needed): {mounted.stderr.strip()}")
    try:
        plan = lab.write_plan(tmp_path)
        plan.write_text(plan.read_text().replace('key_file = "dump.key"\n', f'key_file = "dump.key"\ndir = "{tiny}"\n'))
        code, rows, out = _check(plan)
        assert code == 2, out
        status, detail = rows["space vault"]
        assert status == "FAIL" and str(tiny) in detail
        assert rows["space journal"][0] == "OK"
        assert "vault.dir" in out
    finally:
        subprocess.run(["umount", str(tiny)], check=True)
    assert lab.state() == before


def test_unfinished_run_fails(lab, tmp_path):
    plan = lab.write_plan(tmp_path)
    res = upgrade("run", str(plan), failpoint="keystone.stop_target:after")
    assert res.returncode == -signal.SIGKILL, res.stderr
    before = lab.state()
    exported = upgrade("journal", "export", "--journal", str(tmp_path / "journal"), "--format", "json").stdout
    code, rows, out = _check(plan)
    assert code == 2, out
    status, detail = rows["journal"]
    assert status == "FAIL" and "is unfinished" in detail
    assert "upgrade resume" in out and "upgrade revert" in out
    assert lab.state() == before
    # the journal holds the same runs, events and artifacts (SQLite may fold its WAL file in on close)
    assert upgrade("journal", "export", "--journal", str(tmp_path / "journal"), "--format", "json").stdout == exported
    assert upgrade("revert", "--journal", str(tmp_path / "journal")).returncode == 0


def test_a_warning_exits_1(lab, tmp_path):
    """The passphrase variable is not set: `run` would ask for it — a warning, not a failure."""
    plan = lab.write_plan(tmp_path)
    plan.write_text(plan.read_text().replace('key_file = "dump.key"', 'passphrase_env = "OSU_CHECK_UNSET_PASS"'))
    assert "OSU_CHECK_UNSET_PASS" not in os.environ
    code, rows, out = _check(plan)
    assert code == 1, out
    assert rows["vault key"][0] == "WARN" and "OSU_CHECK_UNSET_PASS" in rows["vault key"][1]
    assert [n for n, (s, _d) in rows.items() if s not in ("OK", "SKIP")] == ["vault key"]
    assert not (tmp_path / "journal").exists()


def test_a_bad_plan_is_one_failure_not_a_traceback(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text('[upgrade]\nfrom = "2025.2"\nto = "2027.1"\n')
    code, rows, out = _check(plan)
    assert code == 2, out
    assert rows["plan"][0] == "FAIL" and rows["release jump"][0] == "FAIL"
    assert "2027.1" in rows["release jump"][1]
