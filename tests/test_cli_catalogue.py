"""Every error a user can cause, as a catalogue: the real `upgrade` command line with a bad plan,
bad arguments, a bad key, a bad journal or a bad host. Each case checks the exit code, that the
message names the offending thing, that there is no traceback and no secret, and — for the cases
that reach the lab — that neither controller changed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from journal.store import Journal
from journal.vault import Key
from scripts.lab.mariadb import free_port
from tests.conftest import (
    LOADABLE_PLAN as BASE,
)
from tests.conftest import (
    REPO,
    SECRETS,
    SOURCE_DB_PASSWORD,
    TARGET_DB_PASSWORD,
    TARGET_PW_ENV,
    upgrade,
    upgrade_in_process,
)
from tests.test_crash_resume_revert import _processes_with, _wait_for_intent, _wait_until


def _plan(d: Path, text: str = BASE, key: bool = True) -> Path:
    if key and not (d / "dump.key").exists():
        assert upgrade_in_process("keygen", str(d / "dump.key")).returncode == 0
    p = d / "plan.toml"
    p.write_text(text)
    return p


def _edit(old: str, new: str) -> Callable[[Path], list[str]]:
    """A `run` of BASE with one replacement (which must apply)."""
    def make(d: Path) -> list[str]:
        assert old in BASE, old
        return ["run", str(_plan(d, BASE.replace(old, new, 1)))]
    return make


def _binary_plan(d: Path) -> Path:
    p = d / "plan.toml"
    p.write_bytes(b"\xff\xfe\x00[upgrade]\n")
    return p


def _journal_with_run(d: Path) -> Path:
    """A real journal holding one run (no lab needed to read it)."""
    j = Journal(d / "journal", key=Key.from_bytes(bytes(32)))
    rid = j.create_run({"upgrade": {"services": ["keystone"]}}, "0" * 64, str(d / "plan.toml"), "2025.2", "2026.1",
                       None)
    j.append(rid, "keystone", "intent", step="keystone.stop_source")
    j.close()
    return d / "journal"


def _open_journal_dir(d: Path) -> list[str]:
    j = _journal_with_run(d)
    j.chmod(0o755)
    return ["status", "--journal", str(j)]


def _existing_output(d: Path) -> list[str]:
    j = _journal_with_run(d)
    (d / "out.jsonl").write_text("keep me\n")
    return ["journal", "export", "--journal", str(j), "--output", str(d / "out.jsonl")]


def _corrupt_journal(d: Path) -> list[str]:
    (d / "journal").mkdir(mode=0o700)
    (d / "journal" / "journal.db").write_bytes(b"this is not sqlite" * 100)
    return ["status", "--journal", str(d / "journal")]


def _key_mode(d: Path) -> list[str]:
    p = _plan(d)
    (d / "dump.key").chmod(0o644)
    return ["run", str(p)]


def _key_garbage(d: Path) -> list[str]:
    (d / "dump.key").write_bytes(b"short")
    (d / "dump.key").chmod(0o600)
    return ["run", str(_plan(d, key=False))]


def _plan_journal_open(d: Path) -> list[str]:
    p = _plan(d)
    (d / "journal").mkdir(mode=0o755)
    (d / "journal").chmod(0o755)
    return ["run", str(p)]


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path], list[str]]
    code: int
    needles: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


CASES = [
    # ------------------------------------------------------------------ plan
    Case("toml-syntax", _edit('services = ["keystone"]', 'services = ["keystone"'), 2,
         ("not valid TOML", "line 4: services = [\"keystone\"")),
    Case("toml-syntax-on-a-secret-line", _edit(f'admin_password = "{SOURCE_DB_PASSWORD}"',
                                               f'admin_password = "{SOURCE_DB_PASSWORD}'), 2,
         ("not valid TOML", "line 19: admin_password")),
    Case("unknown-table", _edit("[upgrade]", "[upgrad]"), 2, ("`upgrad`", "did you mean `upgrade`?")),
    Case("unknown-side-key", _edit('etc = "/srv/old/etc"', 'etcc = "/srv/old/etc"'), 2,
         ("`source.etcc`", "did you mean `etc`?")),
    Case("unknown-db-key", _edit("port = 13306", "prot = 13306"), 2, ("`source.db.prot`", "did you mean `port`?")),
    Case("unknown-vault-key", _edit('key_file = "dump.key"', 'keyfile = "dump.key"'), 2,
         ("`vault.keyfile`", "did you mean `key_file`?")),
    Case("unknown-service-key", _edit('unit = "keystone"', 'unti = "keystone"'), 2,
         ("`services.keystone.unti`", "did you mean `unit`?")),
    Case("unknown-upgrade-key", _edit('journal = "journal"', 'jornal = "journal"'), 2,
         ("`upgrade.jornal`", "did you mean `journal`?")),
    Case("duplicate-service", _edit('["keystone"]', '["keystone", "keystone"]'), 2,
         ("`upgrade.services`", "'keystone' twice")),
    Case("misspelt-service", _edit('["keystone"]', '["keystne"]'), 2,
         ("unknown service 'keystne'", "did you mean `keystone`?")),
    Case("relative-etc", _edit('etc = "/srv/old/etc"', 'etc = "srv/old/etc"'), 2, ("`source.etc`", "absolute")),
    Case("relative-lib", _edit('etc = "/srv/new/etc"', 'etc = "/srv/new/etc"\nlib = "var/lib"'), 2,
         ("`target.lib`", "absolute")),
    Case("relative-log", _edit('etc = "/srv/new/etc"', 'etc = "/srv/new/etc"\nlog = "log"'), 2,
         ("`target.log`", "absolute")),
    Case("relative-bin", _edit('etc = "/srv/new/etc"', 'etc = "/srv/new/etc"\nbin = "venv/bin"'), 2,
         ("`target.bin`", "absolute")),
    Case("same-controller", _edit('etc = "/srv/new/etc"', 'etc = "/srv/old/etc/"'), 2,
         ("same controller", "host 'local'", "target.etc")),
    Case("same-db-server", _edit("port = 13307", "port = 13306"), 2,
         ("same DB server 127.0.0.1:13306", "target.db.port")),
    Case("missing-from", _edit('from = "2025.2"\n', ""), 2, ("`upgrade.from` is missing",)),
    Case("unsupported-jump", _edit('from = "2025.2"', 'from = "2024.2"'), 2, ("2024.2 -> 2026.1 is not supported",)),
    Case("unknown-release", _edit('to = "2026.1"', 'to = "2027.1"'), 2, ("unknown target release '2027.1'",)),
    Case("port-type", _edit("port = 13306", 'port = "13306"'), 2, ("`source.db.port`", "expected int")),
    Case("port-range", _edit("port = 13307", "port = 0"), 2, ("`target.db.port` is 0",)),
    Case("no-key-given", _edit('key_file = "dump.key"', ""), 2, ("`vault.key_file` or `vault.passphrase_env`",)),
    Case("two-keys-given", _edit('key_file = "dump.key"', 'key_file = "dump.key"\npassphrase_env = "X"'), 2,
         ("exactly one",)),
    Case("service-control", _edit('service_control = "template"', 'service_control = "upstart"'), 2,
         ("`source.service_control` is 'upstart'",)),
    Case("template-without-action", _edit('control = ["svc", "{action}", "{unit}"]', 'control = ["svc"]'), 2,
         ("`source.control`", "{action}")),
    Case("password-env-unset", _edit(f'admin_password_env = "{TARGET_PW_ENV}"',
                                     'admin_password_env = "OSU_NOWHERE_SET"'), 2,
         ("`target.db.admin_password_env`", "'OSU_NOWHERE_SET'", "export it")),
    Case("host-type", _edit('host = "local"', "host = 42"), 2, ("`source.host` is 42",)),
    Case("empty-services", _edit('["keystone"]', "[]"), 2, ("`upgrade.services` is empty",)),
    Case("grant-hosts-empty", _edit('unit = "keystone"', 'unit = "keystone"\ngrant_hosts = []'), 2,
         ("`services.keystone.grant_hosts`",)),
    Case("owner-format", _edit('unit = "keystone"', 'unit = "keystone"\nowner = "keystone"'), 2,
         ("`services.keystone.owner` is 'keystone'", "USER:GROUP")),
    Case("db-flavor", _edit("port = 13307", 'port = 13307\nflavor = "postgres"'), 2,
         ("`target.db.flavor` is 'postgres'",)),
    Case("plan-missing", lambda d: ["run", str(d / "nope.toml")], 2, ("nope.toml does not exist", "upgrade init")),
    Case("plan-is-a-directory", lambda d: ["plan", str(d)], 2, ("cannot read plan file",)),
    Case("plan-not-text", lambda d: ["plan", str(_binary_plan(d))], 2, ("not valid TOML",)),
    # ------------------------------------------------------------------ command line
    Case("unknown-verb", lambda d: ["upgrad"], 2, ("invalid choice: 'upgrad'",)),
    Case("run-without-plan", lambda d: ["run"], 2, ("the following arguments are required: plan",)),
    Case("status-format", lambda d: ["status", "-f", "xml"], 2, ("invalid choice: 'xml'",)),
    Case("init-layout", lambda d: ["init", "--layout", "gentoo"], 2, ("invalid choice: 'gentoo'",)),
    Case("init-jump", lambda d: ["init", "--from", "2024.2", "--to", "2026.1"], 2,
         ("--from 2024.2 --to 2026.1", "not supported")),
    Case("graph-format", lambda d: ["plan", str(_plan(d)), "--graph", str(d / "x.gif")], 2,
         ("x.gif", "unknown format 'gif'", ".svg")),
    Case("export-format", lambda d: ["journal", "export", "--format", "xml"], 2, ("invalid choice: 'xml'",)),
    # ------------------------------------------------------------------ keys
    Case("key-missing", lambda d: ["run", str(_plan(d, key=False))], 2, ("dump.key",)),
    Case("key-readable-by-others", _key_mode, 2, ("dump.key", "chmod 600")),
    Case("key-garbage", _key_garbage, 2, ("dump.key",)),
    Case("passphrase-unset", lambda d: ["run", str(_plan(d, BASE.replace('key_file = "dump.key"',
                                                                         'passphrase_env = "OSU_PASS_UNSET"')))],
         2, ("OSU_PASS_UNSET", "not set")),
    # ------------------------------------------------------------------ journal
    Case("resume-without-journal", lambda d: ["resume", "--journal", str(d / "none")], 2,
         ("no journal at", "upgrade run PLAN")),
    Case("runs-without-journal", lambda d: ["runs", "--journal", str(d / "none")], 2, ("no journal at",)),
    Case("status-unknown-run", lambda d: ["status", "--journal", str(_journal_with_run(d)), "--run", "nope-42"], 2,
         ("no run 'nope-42'", "upgrade runs")),
    Case("export-unknown-run", lambda d: ["journal", "export", "--journal", str(_journal_with_run(d)),
                                          "--run", "nope-42"], 2, ("no run 'nope-42'",)),
    Case("show-unknown-run", lambda d: ["journal", "show", "--journal", str(_journal_with_run(d)),
                                        "--run", "nope-42"], 2, ("no run 'nope-42'",)),
    Case("resume-unknown-run", lambda d: ["resume", "--journal", str(_journal_with_run(d)), "--run", "nope-42"], 2,
         ("no run 'nope-42'",)),
    Case("journal-dir-open", _open_journal_dir, 2, ("open to other users", "chmod 700")),
    Case("plan-journal-dir-open", _plan_journal_open, 2, ("open to other users", "chmod 700")),
    Case("export-output-exists", _existing_output, 2, ("out.jsonl already exists", "--force")),
    Case("journal-corrupt", _corrupt_journal, 2, ("journal.db", "not a readable SQLite journal")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_without_the_lab(tmp_path, case):
    args = case.make(tmp_path)
    res = upgrade_in_process(*args, env=dict(case.env))
    _refused(res, case.code, *case.needles)
    if case.id == "export-output-exists":
        assert (tmp_path / "out.jsonl").read_text() == "keep me\n"
    if case.id.startswith(("toml", "unknown", "relative", "same", "missing", "port", "plan-journal")):
        assert not (tmp_path / "journal" / "journal.db").exists()


def test_catalogue_is_large_enough():
    assert len(CASES) + len(LAB_CASES) >= 40


def _refused(res: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    out = res.stdout + res.stderr
    assert res.returncode == code, f"rc {res.returncode}:\n{out}"
    for n in needles:
        assert n in res.stderr, f"{n!r} not in:\n{res.stderr}"
    assert "Traceback" not in out
    assert "internal error" not in out
    for s in SECRETS:
        assert s not in out, "a secret reached the console"


def test_export_output_is_private_and_force_overwrites(tmp_path):
    j = _journal_with_run(tmp_path)
    out = tmp_path / "audit.jsonl"
    res = upgrade("journal", "export", "--journal", str(j), "--output", str(out))
    assert res.returncode == 0, res.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["step"] == "keystone.stop_source"
    out.chmod(0o644)
    res = upgrade("journal", "export", "--journal", str(j), "--output", str(out), "--force", "--format", "csv")
    assert res.returncode == 0, res.stderr
    assert out.read_text().startswith("seq,run,") and out.stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------------- cases that reach the lab
def _dead_port(lab, d: Path) -> list[str]:
    plan = lab.write_plan(d)
    plan.write_text(plan.read_text().replace(f"port = {lab.db_new.port}", f"port = {free_port()}"))
    return ["run", str(plan)]


def _wrong_password(lab, d: Path) -> list[str]:
    return ["run", str(lab.write_plan(d))]


def _missing_control(lab, d: Path) -> list[str]:
    plan = lab.write_plan(d)
    text = plan.read_text()
    plan.write_text(text.replace('control = ["env"', 'control = ["/nonexistent/svcctl", "env"', 1))
    return ["run", str(plan)]


def _check_missing_manage(lab, d: Path) -> list[str]:
    plan = lab.write_plan(d)
    plan.write_text(plan.read_text().replace(f'bin = "{lab.new.venv}/bin"', f'bin = "{d}"'))
    return ["check", str(plan)]


LAB_CASES = [
    Case("db-unreachable", _dead_port, 2, ("127.0.0.1:", "reachable", "target")),
    Case("db-wrong-password", _wrong_password, 2, ("password", "[target.db]"),
         env=((TARGET_PW_ENV, "not-the-password"),)),
    Case("host-control-command-missing", _missing_control, 1,
         ("keystone.stop_source failed", "/nonexistent/svcctl", "not found", "upgrade resume", "upgrade revert")),
    Case("check-target-manage-missing", _check_missing_manage, 2, ("keystone target", "keystone-manage",
                                                                    "target.bin")),
]


@pytest.mark.parametrize("case", LAB_CASES, ids=[c.id for c in LAB_CASES])
def test_bad_input_against_the_lab_changes_nothing(lab, tmp_path, case):
    args = case.make(lab, tmp_path)
    before = lab.state()
    res = upgrade(*args, env=dict(case.env))
    out = res.stdout + res.stderr
    assert res.returncode == case.code, out
    for n in case.needles:
        assert n in out, f"{n!r} not in:\n{out}"
    assert "Traceback" not in out and not any(s in out for s in SECRETS)
    after = lab.state()
    # a run that started and failed (exit 1) holds its claim on the target until resumed or reverted
    assert after.pop("target_claim") == ((True, True) if case.code == 1 else (False, False))
    before.pop("target_claim")
    assert after == before


def test_an_unfinished_run_of_another_plan_blocks_a_new_run(lab, tmp_path):
    """Plan A dies mid-run; plan B (another file, same journal) is refused, naming run A and its plan."""
    plan_a = lab.write_plan(tmp_path / "a")
    res = upgrade("run", str(plan_a), failpoint="keystone.dump_source:after")
    assert res.returncode == -signal.SIGKILL, res.stderr
    run_a = json.loads(upgrade("status", "--journal", str(tmp_path / "a" / "journal"), "-f", "json").stdout)["run"]
    plan_b = lab.write_plan(tmp_path / "b", db_user="keystone")
    plan_b.write_text(plan_b.read_text().replace('journal = "journal"', f'journal = "{tmp_path / "a" / "journal"}"'))
    before = lab.state()
    res = upgrade("run", str(plan_b))
    _refused(res, 3, f"run {run_a}", str(plan_a), "is unfinished", "upgrade resume", "upgrade revert")
    assert lab.state() == before
    runs = json.loads(upgrade("runs", "--journal", str(tmp_path / "a" / "journal"), "-f", "json").stdout)
    assert [r["id"] for r in runs] == [run_a]
    assert upgrade("revert", "--journal", str(tmp_path / "a" / "journal")).returncode == 0


def test_ctrl_c_during_a_step_ends_cleanly_and_resumes(lab, tmp_path):
    """SIGINT to the tool's process group (what a terminal's Ctrl-C does) while db_sync runs."""
    plan = lab.write_plan(tmp_path)
    journal = tmp_path / "journal"
    # started as a terminal's shell starts it: SIGINT at its default (a process started in the background by a
    # non-interactive shell, as a test run may be, inherits it ignored, and so would the tool)
    proc = subprocess.Popen([sys.executable, "-m", "upgrade.cli", "run", str(plan)], cwd=REPO,
                            env={**os.environ, TARGET_PW_ENV: TARGET_DB_PASSWORD}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for_intent(journal, "keystone.upgrade_schema", proc)
        # the step's own command at work, not only its intent journaled (a loaded machine may let the tool
        # run on between the two)
        _wait_until(lambda: _processes_with("db_sync", unless="--check", session=proc.pid) or proc.poll() is not None,
                    "keystone-manage db_sync")
        assert proc.poll() is None, "the run ended before its db_sync was seen"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "keystone.upgrade_schema" in err and "upgrade resume" in err
    assert "Traceback" not in err
    st = json.loads(upgrade("status", "--journal", str(journal), "-f", "json").stdout)
    assert st["status"] == "failed"
    assert st["services"][0]["state"] == "db_imported"
    assert "Ctrl-C" in (st["services"][0]["last_error"] or "")
    res = upgrade("resume", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    value = upgrade("status", "--journal", str(journal), "-f", "value").stdout
    assert value.splitlines()[0].split()[:3] == ["keystone", "verified", "-"]   # then its window
