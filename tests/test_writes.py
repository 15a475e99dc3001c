"""Every write goes where it should (DESIGN.md §9.1), on the real keystone lab's two MariaDB servers.

- Every step that writes, of every service, asserts inside it that it writes the claimed target: given
  the old controller's DB server and directories as its "target" (an address that moved under a run),
  each refuses before writing, and both sides' tables and files are unchanged; a server without this
  run's claim is refused too; the claimed target passes.
- The source release's commands on the imported copy (cinder's previous online migrations) never reach
  the old controller's database: seen from the old controller (its own network namespace), the target's
  address leads to the old controller's own MariaDB — the step refuses, naming it, and the source's
  tables are unchanged; the one-off DB user exists nowhere after.
- A multi-cell cloud whose other cells' databases the plan does not carry, and keystone 27.0.0 as the
  target, are refused by `upgrade run` (exit 2, nothing changed) and reported by `upgrade check`; so
  are nova-compute rows of hosts that no longer exist.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from journal import vault
from journal.redact import Redactor
from journal.store import Journal
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.plan import DBAdmin, write_plan
from services import novadb, preflight, registry
from services.catalog import cinder
from services.infra import claim as claim_mod
from services.infra import identity, mysql, writeguard
from services.infra.context import UpgradeContext
from services.infra.settings import DBEndpoint, ServiceSettings, Side
from services.releases import Jump
from services.steps import oncopy
from statemachine.step import StepError
from tests.conftest import (
    DB_ADMIN,
    SECRETS,
    SOURCE_DB_PASSWORD,
    TARGET_DB_PASSWORD,
    TARGET_PW_ENV,
    require,
    tree_digest,
    upgrade_in_process,
)
from upgrade import app, check
from upgrade import plan as plan_mod
from upgrade.hosts import LocalHost


def _plan(lab: Any, directory: Path, services: tuple[str, ...] = ("keystone",)) -> Path:
    return write_plan(directory, lab.old, lab.new, DBAdmin(DB_ADMIN, password=SOURCE_DB_PASSWORD),
                      DBAdmin(DB_ADMIN, password_env=TARGET_PW_ENV), services=services)


def _sides(lab: Any, tmp_path: Path, monkeypatch: Any) -> tuple[Side, Side]:
    monkeypatch.setenv(TARGET_PW_ENV, TARGET_DB_PASSWORD)
    plan = plan_mod.load(_plan(lab, tmp_path / "plan"))
    return app.side(plan.source), app.side(plan.target)


def _ctx(tmp_path: Path, source: Side, target: Side, claimed: writeguard.Claimed | None,
         services: dict[str, ServiceSettings] | None = None, run_id: str | None = None) -> UpgradeContext:
    key = vault.Key.from_bytes(secrets.token_bytes(32))
    journal = Journal(tmp_path / "journal", key=key)
    rid = run_id or journal.create_run({}, "0" * 64, None, "2025.2", "2026.1", key.key_id)
    return UpgradeContext(run_id=rid, source=source, target=target, journal=journal, key=key, redactor=Redactor(),
                          services=services or {}, from_release="2025.2", to_release="2026.1", claimed=claimed)


def _both(lab: Any) -> dict[str, Any]:
    """Both controllers' keystone tables and trees, and every database's checksums on both servers."""
    dbs = {}
    for side, db in (("old", lab.db_old), ("new", lab.db_new)):
        names = [r[0] for r in db.execute("SELECT schema_name FROM information_schema.schemata WHERE schema_name "
                                          "NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')")]
        dbs[side] = {n: db.checksums(n) for n in sorted(names)}
        dbs[f"{side}_users"] = db.execute("SELECT user, host FROM mysql.user ORDER BY user, host")
    trees = {f"{n}_{d}": tree_digest(ctl.root / d) for n, ctl in (("old", lab.old), ("new", lab.new))
             for d in ("etc", "var/lib")}
    return {**lab.state(), **dbs, **trees}


def _writing_steps() -> list[tuple[str, Any]]:
    """Every writing step of every service for the lab's jump, and nova's database creation (newton -> ocata)."""
    out = []
    for name, jump in [*((n, registry.DEFAULT_JUMP) for n in registry.SERVICES), ("nova", Jump("newton", "ocata"))]:
        for step in writeguard.guarded(name, registry.steps_for(name, jump)):
            if step.kind in writeguard.DB_WRITES | writeguard.DIR_WRITES:
                out.append((name, step))
    return out


# ---------------------------------------------------------------------- every writing step
def test_every_writing_step_refuses_the_old_controller_as_its_target(keystone_lab, tmp_path, monkeypatch):
    """Each service's import, schema, fix-up, migration, ownership, config and copy steps (and their undos),
    pointed at the old controller's DB server and directories, refuse before writing: nothing changes."""
    lab = keystone_lab
    source, target = _sides(lab, tmp_path, monkeypatch)
    servers = identity.Servers(mysql.server_identity(source.db), mysql.server_identity(target.db))
    moved = replace(source, role="target")  # the target's address now leads to the old controller
    ctx = _ctx(tmp_path, source, moved, writeguard.Claimed("run-1", servers))
    before = _both(lab)
    steps = _writing_steps()
    kinds = {s.kind for _n, s in steps}
    assert kinds == writeguard.DB_WRITES | writeguard.DIR_WRITES, kinds  # every writing kind is exercised
    for name, step in steps:
        with pytest.raises(StepError) as exc:
            step.run(ctx)
        msg = str(exc.value)
        assert msg.startswith(f"{step.name}: refusing to write — ") and "nothing was written" in msg, msg
        if step.kind in writeguard.DB_WRITES:
            assert "is the old controller's DB server" in msg and "point `target.db`" in msg, msg
        else:
            assert f"`target.etc`/{name}" in msg or "`target.etc`" in msg, msg
        if step.undo is not writeguard._NO_UNDO:
            with pytest.raises(StepError, match="refusing to write"):
                step.undo(ctx, None)
    assert _both(lab) == before


def test_a_server_without_this_run_s_claim_is_refused_and_the_claimed_one_passes(lab, tmp_path, monkeypatch):
    source, target = _sides(lab, tmp_path, monkeypatch)
    servers = identity.Servers(mysql.server_identity(source.db), mysql.server_identity(target.db))
    ctx = _ctx(tmp_path, source, target, None)
    ctx.claimed = writeguard.Claimed(ctx.run_id, servers)
    schema = next(s for s in writeguard.guarded("keystone", registry.steps_for("keystone"))
                  if s.name == "keystone.upgrade_schema")
    before = _both(lab)
    with pytest.raises(StepError, match=f"holds no claim, not the claim of run {ctx.run_id}: it is not the server"):
        schema.run(ctx)
    assert _both(lab) == before
    now = 0.0
    claim = claim_mod.Claim(ctx.run_id, "here", str(tmp_path), "running", now, now, "test")
    claim_mod.take(target, claim, lambda _c: False)
    try:
        for name, step in {s.kind: (n, s) for n, s in _writing_steps()}.values():  # one step of each kind
            writeguard.assert_target(ctx, step, name)  # the claimed target: the writing step may go on
        other = replace(ctx, claimed=writeguard.Claimed("another-run", servers))
        with pytest.raises(StepError, match=f"holds the claim of run {ctx.run_id} .*not the claim of run another-run"):
            writeguard.assert_target_db(other, "keystone.import_db")
        # an HA plan: the target's directories turn out to be another old controller's (an address moved under
        # the run to oldctl2): the write is refused naming it, though the DB server holds this run's claim
        config = next(s for s in writeguard.guarded("keystone", registry.steps_for("keystone")) if s.kind == "config")
        oldctl2 = (("oldctl2", replace(target, role="source")),)
        moved = replace(ctx, claimed=writeguard.Claimed(ctx.run_id, servers, oldctl2))
        claimed_state = _both(lab)
        with pytest.raises(StepError, match=r"refusing to write — .*\(old controller oldctl2\); nothing was written"):
            config.run(moved)
        assert _both(lab) == claimed_state
    finally:
        claim_mod.release(target, ctx.run_id)


# ---------------------------------------------------------------------- the old release's commands on the copy
class NetnsHost(LocalHost):
    """The old controller as a machine of its own sees the network: this machine's files and commands, in a
    network namespace of its own (its loopback is not the tool's)."""

    def __init__(self, ns: str) -> None:
        super().__init__("oldctl")
        self.ns = ns

    def popen(self, argv: list[str], **kw: Any) -> Any:
        return super().popen(["ip", "netns", "exec", self.ns, *argv], **kw)


@pytest.fixture
def oldctl_netns(keystone_lab):
    """A network namespace where 127.0.0.1:<the target DB's port> is the OLD controller's MariaDB (socat to
    its socket): the plan's target address as the old controller itself would reach it."""
    require(os.geteuid() == 0 and shutil.which("ip") and shutil.which("socat"), "needs root, ip and socat")
    ns = f"osu-w-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proxy = None
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        port = keystone_lab.db_new.port
        proxy = subprocess.Popen(["ip", "netns", "exec", ns, "socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,"
                                  "reuseaddr", f"UNIX-CONNECT:{keystone_lab.db_old.socket}"])
        probe = ["ip", "netns", "exec", ns, "mysql", "-h", "127.0.0.1", "-P", str(port), "-u", "root", "-N", "-B",
                 "-e", "SELECT @@datadir"]
        for _ in range(200):  # until the proxy listens
            seen = subprocess.run(probe, capture_output=True, text=True)
            if seen.returncode == 0:
                break
            assert proxy.poll() is None, "socat died"
            subprocess.run(["ip", "netns", "exec", ns, "sleep", "0.05"], check=True)
        assert seen.returncode == 0, seen.stderr
        # from the old controller, the target's address:port is the old controller's own MariaDB
        assert seen.stdout.strip().rstrip("/") == str(keystone_lab.db_old.datadir).rstrip("/"), seen.stdout
        yield NetnsHost(ns)
    finally:
        if proxy is not None:
            proxy.kill()
            proxy.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _cinder_dbs(lab: Any) -> None:
    lab.db_old.execute("CREATE DATABASE IF NOT EXISTS cinder")
    lab.db_old.execute("CREATE TABLE IF NOT EXISTS cinder.volumes (id VARCHAR(36) PRIMARY KEY, status VARCHAR(255))")
    lab.db_old.execute("REPLACE INTO cinder.volumes VALUES ('v1', 'available'), ('v2', 'in-use')")
    lab.db_new.execute("CREATE DATABASE IF NOT EXISTS cinder")


def _no_one_off_users(lab: Any) -> None:
    for db in (lab.db_old, lab.db_new):
        assert db.execute("SELECT user, host FROM mysql.user WHERE user LIKE 'osu\\_prev\\_%'") == []


def test_old_release_command_never_reaches_the_source_db(keystone_lab, oldctl_netns, tmp_path, monkeypatch):
    lab = keystone_lab
    source, target = _sides(lab, tmp_path, monkeypatch)
    _cinder_dbs(lab)
    try:
        etc = tmp_path / "target-etc"
        (etc / "cinder").mkdir(parents=True)
        (etc / "cinder" / "cinder.conf").write_text(
            f"[database]\nconnection = mysql+pymysql://cinder:pw@127.0.0.1:{target.db.port}/cinder?charset=utf8\n")
        servers = identity.Servers(mysql.server_identity(source.db), mysql.server_identity(target.db))
        settings = {"cinder": ServiceSettings(name="cinder", unit="x", db_name="cinder")}
        old = replace(source, host=oldctl_netns, bin=str(DEFAULT_VENV_ROOT / "2025.2" / "bin"))
        ctx = _ctx(tmp_path, old, replace(target, etc=str(etc)), writeguard.Claimed("r", servers), settings)
        step = cinder.previous_migrations_step(registry.DEFAULT_JUMP)
        before = _both(lab)
        with pytest.raises(StepError) as exc:
            step.run(ctx)
        msg = str(exc.value)
        assert msg.startswith("cinder.previous_online_migrations: from the old controller oldctl, "
                              f"127.0.0.1:{target.db.port} is not the new controller's DB server"), msg
        assert "cinder-manage of the old release was not run, nothing was written" in msg
        assert "set `target.db.address`" in msg
        assert not any(s in msg + (exc.value.output or "") for s in SECRETS)
        assert _both(lab) == before  # the source's cinder tables (and everything else) as they were
        _no_one_off_users(lab)
        # the address that does reach the target from where the command runs: the identity probe passes
        user = oncopy.one_off_user(ctx, "probe")
        mysql.grant_service_user(target.db, "cinder", user, "pw-" + user, oncopy.HOSTS)
        try:
            ep = replace(target.db, admin_user=user, admin_password="pw-" + user)
            oncopy.reaches_target(replace(ctx, source=replace(old, host=LocalHost("oldctl"))), "probe", ep,
                                  "cinder-manage")
            with pytest.raises(StepError, match="cannot log in there"):
                oncopy.reaches_target(ctx, "probe", ep, "cinder-manage")
        finally:
            oncopy.drop_user(ctx, "probe")
    finally:
        lab.db_old.execute("DROP DATABASE IF EXISTS cinder")
        lab.db_new.execute("DROP DATABASE IF EXISTS cinder")
    _no_one_off_users(lab)


# ---------------------------------------------------------------------- refused before the run: cells, keystone 27.0.0
CELL_UUID = "5f1a2c3e-0000-4000-8000-00000000c002"


def _nova_dbs(lab: Any, cell_db: str) -> None:
    """The source's nova databases as far as the pre-flight reads them: cell mappings and compute rows."""
    db = lab.db_old
    for name in ("nova", "nova_api", "nova_cell0"):
        db.execute(f"CREATE DATABASE IF NOT EXISTS {name}")
    db.execute("CREATE TABLE nova_api.cell_mappings (id INT AUTO_INCREMENT PRIMARY KEY, uuid VARCHAR(36), "
               "name VARCHAR(255), transport_url TEXT, database_connection TEXT, disabled TINYINT(1) DEFAULT 0)")
    db.execute("INSERT INTO nova_api.cell_mappings (uuid, name, transport_url, database_connection) VALUES "
               "('00000000-0000-0000-0000-000000000000', 'cell0', 'none:///', "
               "'mysql+pymysql://nova:pw@10.0.0.3/nova_cell0'), "
               "('5f1a2c3e-0000-4000-8000-00000000c001', 'cell1', 'rabbit://x', "
               "'mysql+pymysql://nova:pw@10.0.0.3/nova?charset=utf8'), "
               f"('{CELL_UUID}', 'cell2', 'rabbit://x', 'mysql+pymysql://nova:pw@10.0.0.3/{cell_db}')")
    db.execute("CREATE TABLE nova.services (id INT AUTO_INCREMENT PRIMARY KEY, host VARCHAR(255), "
               "`binary` VARCHAR(255), topic VARCHAR(255), deleted INT DEFAULT 0, forced_down TINYINT(1) DEFAULT 0, "
               "version INT DEFAULT 0, created_at DATETIME, updated_at DATETIME)")


def _drop_nova(lab: Any) -> None:
    for name in ("nova", "nova_api", "nova_cell0"):
        lab.db_old.execute(f"DROP DATABASE IF EXISTS {name}")


def test_other_cells_databases_and_stale_compute_rows_are_refused(keystone_lab, tmp_path, monkeypatch):
    """A cell whose database the plan does not carry: `upgrade run` refuses (exit 2, nothing changed) naming
    the cell and the fix; `upgrade check` says so too, and names the nova-compute row of a host that is gone
    (too old for the new nova-conductor: a failure). Handled: the cell removed, the row forced down."""
    lab = keystone_lab
    _nova_dbs(lab, "nova_cell2")
    try:
        monkeypatch.setenv(TARGET_PW_ENV, TARGET_DB_PASSWORD)
        plan = _plan(lab, tmp_path, ("keystone", "nova"))
        # a host gone since 2020 with an old version; one whose heartbeat stays recent however slow the machine
        lab.db_old.execute("INSERT INTO nova.services (host, `binary`, topic, version, created_at, updated_at) "
                           "VALUES ('gone-compute', 'nova-compute', 'compute', 61, '2020-01-01', '2020-01-02'), "
                           "('live-compute', 'nova-compute', 'compute', 70, UTC_TIMESTAMP(), "
                           "UTC_TIMESTAMP() + INTERVAL 1 DAY)")
        before = _both(lab)
        res = upgrade_in_process("run", str(plan))
        out = res.stdout + res.stderr
        assert res.returncode == 2, out
        assert f"nova: cell 'cell2' ({CELL_UUID}) in nova_api.cell_mappings" in out, out
        assert "keeps its instances in database 'nova_cell2', which the plan does not carry" in out
        assert f"`nova-manage cell_v2 delete_cell --cell_uuid {CELL_UUID}`" in out
        assert "set services.nova.db_name = \"nova_cell2\"" in out
        assert "'cell1'" not in out and "'cell0'" not in out and "Traceback" not in out
        assert _both(lab) == before and not (tmp_path / "journal").exists()

        # `upgrade check`'s rows, in this process (the checks that read nova's databases)
        rows = _checks(plan, check.db_access, check.compute_rows)
        assert rows["db nova"][0] == "FAIL" and "cell 'cell2'" in rows["db nova"][1]
        status, text = rows["compute rows"]
        assert status == "FAIL", text
        assert "gone-compute (services.id 1, version 61, last seen 2020-01-02 00:00:00, older than 2026.1's oldest " \
               "supported 68: the new nova-conductor will not start)" in text, text
        assert "live-compute" not in text and "openstack compute service delete 1" in text
        assert _both(lab) == before

        # handled: the leftover cell removed, the gone host's row forced down (what the fixes do)
        lab.db_old.execute("DELETE FROM nova_api.cell_mappings WHERE name='cell2'")
        lab.db_old.execute("UPDATE nova.services SET forced_down=1 WHERE host='gone-compute'")
        ep = DBEndpoint("127.0.0.1", lab.db_old.port, DB_ADMIN, SOURCE_DB_PASSWORD)
        settings = ServiceSettings(name="nova", unit="x", db_name="nova")
        assert novadb.cell_errors(ep, settings, registry.DEFAULT_JUMP, str(plan)) == []
        assert novadb.stale_computes(ep, settings, registry.DEFAULT_JUMP) == []
    finally:
        _drop_nova(lab)


def _checks(plan: Path, *checks: Any) -> dict[str, tuple[str, str]]:
    """Rows of `upgrade check`'s *checks* for *plan*: (status, detail | remedy) by check name."""
    loaded = plan_mod.load(plan)
    return {r.check: (r.status, f"{r.detail} | {r.remedy}") for c in checks for r in c(loaded)}
def test_keystone_27_0_0_is_refused_as_the_target(keystone_lab, tmp_path):
    """The 2025.1 venv holds keystone 27.0.0, whose `db_sync --check` is unreliable: refused before anything."""
    lab = keystone_lab
    venv = DEFAULT_VENV_ROOT / "2025.1"
    require((venv / "bin" / "keystone-manage").exists(), "the 2025.1 venv (make openstack)")
    plan = _plan(lab, tmp_path)
    text = plan.read_text().replace('from = "2025.2"', 'from = "2024.1"').replace('to = "2026.1"', 'to = "2025.1"')
    plan.write_text(text.replace(f'bin = "{lab.new.venv}/bin"', f'bin = "{venv}/bin"'))
    before = _both(lab)
    res = upgrade_in_process("run", str(plan))
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "keystone 27.0.0 on the target" in out, out
    assert ": its `keystone-manage db_sync --check` is unreliable" in out
    assert "install keystone 27.0.1 or later of stable/2025.1 on the target controller" in out
    assert "nothing was changed" in out and "Traceback" not in out
    assert _both(lab) == before and not (tmp_path / "journal").exists()
    # `upgrade check` says the same in its "keystone target" row (upgrade/check.py `releases`), from the same
    # table; the handled path: keystone 28/29 (every other lab run) passes
    assert preflight.version_refusal("keystone", "2025.1", "27.0.1") is None
    assert preflight.version_refusal("keystone", "2025.1", "27.0.0\n") is not None
