"""The target is proven to be another controller, and one run at a time claims it (DESIGN.md §9.1, §9.2).

Against the real keystone lab: a plan whose target is the source under another spelling (a DB server
reached as ``localhost`` instead of ``127.0.0.1``, ``etc/.``, a symlink) is refused by `check` and
`run` (exit 2) before anything changes; a second run of the cloud from another journal directory is
refused (exit 3) naming the claiming run, its journal and since when; a completed run keeps its claim,
a reverted one releases it; a stale claim is shown and cleared; a target DB server swapped under a
run is refused by `resume`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from scripts.lab import svc
from scripts.lab.mariadb import MariaDB
from tests.conftest import (
    CLAIM_FILE,
    CLAIM_SCHEMA,
    DB_ADMIN,
    REPO,
    SECRETS,
    SOURCE_DB_PASSWORD,
    TARGET_DB_PASSWORD,
    TARGET_PW_ENV,
    upgrade,
)


def _refused(res: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    out = res.stdout + res.stderr
    assert res.returncode == code, f"rc {res.returncode}:\n{out}"
    for n in needles:
        assert n in out, f"{n!r} not in:\n{out}"
    assert "Traceback" not in out
    assert not any(s in out for s in SECRETS)
    return out


def _check_rows(res: subprocess.CompletedProcess) -> dict[str, str]:
    rows = {}
    for line in res.stdout.splitlines()[2:]:
        status, _, rest = line.partition("  ")
        if status.strip() in ("OK", "WARN", "FAIL", "SKIP"):
            rows[rest.strip().partition("  ")[0].strip()] = status.strip()
    return rows


def _processes(lab) -> tuple[bool, bool]:
    """Is keystone serving on the old controller, on the new one?"""
    return svc.status(lab.old.root, "keystone"), svc.status(lab.new.root, "keystone")


def _run_id(text: str) -> str:
    m = re.search(r"run (\d{8}-\d{6}-[0-9a-f]{6})", text)
    assert m, text
    return m.group(1)


# ---------------------------------------------------------------------- identity
def test_target_db_server_is_the_source_under_another_name(lab, tmp_path):
    """`localhost` vs `127.0.0.1`, same port: one server. Refused by check and run; nothing changes."""
    plan = lab.write_plan(tmp_path)
    text = plan.read_text()
    target_db = f'[target.db]\naddress = "127.0.0.1"\nport = {lab.db_new.port}\n'
    assert target_db in text
    plan.write_text(text.replace(target_db, f'[target.db]\naddress = "localhost"\nport = {lab.db_old.port}\n'))
    env = {TARGET_PW_ENV: SOURCE_DB_PASSWORD}  # the old server's admin password: it is the old server
    before, procs = lab.state(), _processes(lab)
    res = upgrade("check", str(plan), env=env)
    out = _refused(res, 2, "`source.db`", "`target.db`", "same database server", "target.db.address")
    assert _check_rows(res)["identity db"] == "FAIL", out
    assert f"127.0.0.1:{lab.db_old.port}" in out and f"localhost:{lab.db_old.port}" in out
    _refused(upgrade("run", str(plan), env=env), 2, "`source.db` (127.0.0.1:", "`target.db` (localhost:",
             "same database server", "set `target.db.address` and `target.db.port`", "nothing was changed")
    assert lab.state() == before and _processes(lab) == procs == (True, False)
    assert not (tmp_path / "journal").exists()


@pytest.mark.parametrize("how", ["dot", "symlink", "service-symlink"])
def test_target_directory_is_the_source_directory_under_another_spelling(lab, tmp_path, how):
    """`…/etc/.`, a symlink to the old etc, or the new /etc/keystone a symlink to the old one: the same
    directory by device and inode. Refused by check and run; no config rewritten."""
    plan = lab.write_plan(tmp_path)
    text = plan.read_text()
    new_etc, old_etc = f'etc = "{lab.new.root}/etc"', f"{lab.old.root}/etc"
    assert new_etc in text
    if how == "dot":
        text = text.replace(new_etc, f'etc = "{old_etc}/."')
    elif how == "symlink":
        (tmp_path / "etc-link").symlink_to(old_etc)
        text = text.replace(new_etc, f'etc = "{tmp_path}/etc-link"')
    else:
        shutil.rmtree(lab.new.root / "etc" / "keystone")
        (lab.new.root / "etc" / "keystone").symlink_to(f"{old_etc}/keystone")
    plan.write_text(text)
    before, procs = lab.state(), _processes(lab)
    res = upgrade("check", str(plan))
    needle = "`target.etc`/keystone" if how == "service-symlink" else "`target.etc`"
    out = _refused(res, 2, needle, "`source.etc`", "is the same directory as", "device:inode")
    assert _check_rows(res)["identity dirs"] == "FAIL", out
    _refused(upgrade("run", str(plan)), 2, needle, "is the same directory as", f"{old_etc}",
             "point `target.etc` at the new controller's directory", "nothing was changed")
    assert lab.state() == before and _processes(lab) == procs == (True, False)
    assert not (tmp_path / "journal").exists()


def test_target_db_server_swapped_under_a_run_is_refused_by_resume(lab, tmp_path):
    """Another server answering at the target's address (same plan, same port) is not the run's target."""
    plan = lab.write_plan(tmp_path)
    res = upgrade("run", str(plan), failpoint="keystone.import_db:before")
    assert res.returncode == -signal.SIGKILL, res.stderr
    journal = tmp_path / "journal"
    lab.db_new.stop()
    swapped = MariaDB(tmp_path / "swapped", lab.db_new.port)
    try:
        swapped.start()
        swapped.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", args=(DB_ADMIN, TARGET_DB_PASSWORD))
        swapped.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'127.0.0.1' WITH GRANT OPTION", args=(DB_ADMIN,))
        schemas = swapped.execute("SHOW DATABASES")
        _refused(upgrade("resume", "--journal", str(journal)), 2, "`target.db`", "is no longer the DB server",
                 f"datadir {lab.db_new.datadir}", f"datadir {swapped.datadir}", "nothing was done")
        assert swapped.execute("SHOW DATABASES") == schemas  # not even the claim was taken there
    finally:
        swapped.stop()
        lab.db_new.start()
    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------------- the claim
def test_second_run_from_another_journal_is_refused_until_the_first_is_reverted(lab, tmp_path):
    before = lab.state()
    assert before["target_claim"] == (False, False)
    first = lab.write_plan(tmp_path / "first")
    res = upgrade("run", str(first), failpoint="keystone.import_db:before")
    assert res.returncode == -signal.SIGKILL, res.stderr
    journal = (tmp_path / "first" / "journal").resolve()
    mid = lab.state()
    assert mid["target_claim"] == (True, True)
    marker = lab.new.root / "var" / "lib" / CLAIM_FILE
    assert marker.stat().st_mode & 0o777 == 0o600
    data = json.loads(marker.read_text())
    run_id = _run_id(f"run {data['run_id']}")
    assert (data["journal_path"], data["state"], data["plan_path"]) == (str(journal), "running", str(first.resolve()))
    row = lab.db_new.execute(f"SELECT run_id, journal_path, state FROM {CLAIM_SCHEMA}.claim")
    assert row == [(run_id, str(journal), "running")]

    second = lab.write_plan(tmp_path / "second")
    res = upgrade("check", str(second))
    _refused(res, 2, f"run {run_id}", str(journal))
    assert _check_rows(res)["claim"] == "FAIL"
    res = upgrade("run", str(second))
    _refused(res, 3, f"run {run_id} (running)", f"the journal {journal}", "since", "one run per cloud",
             f"upgrade revert --journal {journal}", f"upgrade claim clear {second.resolve()} --run {run_id}")
    assert lab.state() == mid  # the refused run changed nothing, not even the claim
    assert not (tmp_path / "second" / "journal").exists()
    res = upgrade("claim", "show", str(second))
    assert res.returncode == 0 and res.stdout.count(f"run {run_id} (running)") == 2, res.stdout + res.stderr
    # the unfinished run's claim is not cleared from this host: it is finished where it is
    _refused(upgrade("claim", "clear", str(second), "--run", run_id), 3, "unfinished", "its claim stays")

    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    assert lab.state() == before  # the claim released: no schema, no file; the target as before
    assert _check_rows(upgrade("check", str(second)))["claim"] == "OK"


def test_completed_run_keeps_its_claim_and_a_stale_one_is_cleared(lab, tmp_path):
    before = lab.state()
    first = lab.write_plan(tmp_path / "first")
    res = upgrade("run", str(first))
    assert res.returncode == 0, res.stderr
    journal = (tmp_path / "first" / "journal").resolve()
    assert lab.state()["target_claim"] == (True, True)
    (run_id, state), = lab.db_new.execute(f"SELECT run_id, state FROM {CLAIM_SCHEMA}.claim")
    assert state == "completed"

    second = lab.write_plan(tmp_path / "second")
    after = lab.state()
    _refused(upgrade("run", str(second)), 3, f"run {run_id} (completed)", "that run completed",
             f"upgrade revert --journal {journal}", f"--run {run_id}")
    _refused(upgrade("claim", "clear", str(second), "--run", "20990101-000000-abcdef"), 2,
             f"names run {run_id}", "nothing was")
    assert lab.state() == after
    # the operator clears it (the run is completed, not unfinished): both markers go
    res = upgrade("claim", "clear", str(second), "--run", run_id)
    assert res.returncode == 0 and "cleared" in res.stdout, res.stdout + res.stderr
    assert lab.state()["target_claim"] == (False, False)
    # the run that made it can still be reverted: it claims the target again (same server), then releases it
    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    assert lab.state() == before


def test_claim_race_has_one_winner(lab, tmp_path):
    """Two runs from two journals started together: one claims the target, the other is refused (exit 3)."""
    plans = [lab.write_plan(tmp_path / name) for name in ("a", "b")]
    env = {**os.environ, TARGET_PW_ENV: TARGET_DB_PASSWORD,
           "OPENSTACK_UPGRADE_FAILPOINT": "keystone.stop_target:before"}
    procs = [subprocess.Popen([sys.executable, "-m", "upgrade.cli", "run", str(p), "--quiet"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in plans]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [-signal.SIGKILL, 3], results
    loser = next(err for rc, err in results if rc == 3)
    assert "is claimed by run" in loser
    winner = next(p for p, (rc, _) in zip(plans, results, strict=True) if rc != 3)
    res = upgrade("revert", "--journal", str(winner.parent / "journal"))
    assert res.returncode == 0, res.stderr
    assert lab.state()["target_claim"] == (False, False)


def test_claim_verbs_need_a_plan_and_a_run(tmp_path):
    from upgrade import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["claim", "clear", str(tmp_path / "plan.toml")])
    assert exc.value.code == 2
    assert cli.main(["claim", "show", str(tmp_path / "missing.toml")]) == 2


def test_server_identity_rules():
    """What counts as one server, on the identities the servers report (Galera needs no lab to state it)."""
    from services.infra.mysql import ServerIdentity

    maria = ServerIdentity("", "ctl1", "/var/lib/mysql", 3306)
    assert maria.same_as(ServerIdentity("", "ctl1", "/var/lib/mysql", 3306)) == maria.key
    assert maria.same_as(ServerIdentity("", "ctl2", "/var/lib/mysql", 3306)) is None
    assert maria.same_as(ServerIdentity("", "ctl1", "/var/lib/mysql", 3307)) is None
    mysql_a, mysql_b = ServerIdentity("u-1", "h", "/d", 3306), ServerIdentity("u-2", "h", "/d", 3306)
    assert mysql_a.same_as(mysql_b) is None  # MySQL's server_uuid decides, not the names
    node1 = ServerIdentity("", "galera1", "/var/lib/mysql", 3306, cluster_uuid="c-1")
    node2 = ServerIdentity("", "galera2", "/var/lib/mysql", 3306, cluster_uuid="c-1")
    assert node1.same_as(node2) == "Galera cluster c-1"  # two nodes, one cluster: the same data
    assert node1.same_as(ServerIdentity("", "galera3", "/var/lib/mysql", 3306, cluster_uuid="c-2")) is None
    assert ServerIdentity.from_dict(node1.as_dict()) == node1


def test_follow_up_run_goes_on_under_a_completed_claim(lab, tmp_path, monkeypatch):
    """nova-unpin alone finishes a completed upgrade on its target: that run's claim lets it through and it
    takes none of its own; an unfinished run's claim stops it like any other run."""
    from dataclasses import replace

    from services.infra import claim as claim_mod
    from upgrade import app, claims
    from upgrade import plan as plan_mod
    from upgrade.errors import BusyError

    monkeypatch.setenv(TARGET_PW_ENV, TARGET_DB_PASSWORD)
    upgrade_plan = plan_mod.load(lab.write_plan(tmp_path / "upgrade"))
    unpin_path = lab.write_plan(tmp_path / "unpin")
    unpin_path.write_text(unpin_path.read_text().replace('services = ["keystone"]', 'services = ["nova-unpin"]'))
    unpin = plan_mod.load(unpin_path)
    side = app.side(upgrade_plan.target)
    done = claim_mod.Claim("20260101-000000-abcdef", "elsewhere", "/srv/journal", "completed", 1.0, 1.0, "op@elsewhere")
    claim_mod.take(side, done, lambda _c: False)
    try:
        with pytest.raises(BusyError, match="that run completed"):
            claims.refuse_if_claimed(upgrade_plan, upgrade_plan.journal_dir)
        claims.refuse_if_claimed(unpin, unpin.journal_dir)
        assert claims.take(unpin, unpin.journal_dir) is None
        assert claim_mod.read(side) == (done, done)  # the completed run's claim stays as it was
        claim_mod.update(side, replace(done, state="running"))
        with pytest.raises(BusyError, match="that run is unfinished"):
            claims.refuse_if_claimed(unpin, unpin.journal_dir)
    finally:
        claim_mod.clear(side)
    assert lab.state()["target_claim"] == (False, False)
