"""Databases the target release has and the source release has not (issue #5): nova_api on
liberty -> mitaka, nova_cell0 (and cells v2) on newton -> ocata.

The plan-level tests need no database: they show every step, host and command in order, as
`upgrade plan` prints them. No nova of those releases is installed, so their nova-manage commands
are only checked here. The create-database step itself, its undo and the preflight's refusals run
against a real MariaDB started by the test (skipped locally without one, failed under CI).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from journal import vault
from journal.redact import Redactor
from journal.store import Journal
from scripts.lab.mariadb import MariaDB, free_port
from services import preflight
from services.infra import mysql, recording
from services.infra.context import UpgradeContext
from services.infra.settings import DBEndpoint, ServiceControl, ServiceSettings, Side
from services.registry import spec, steps_for
from services.releases import Jump
from services.steps.dumps import backup_target_step
from services.steps.specs import db_specs, new_db_specs
from statemachine import deps
from tests.conftest import require
from tests.test_release_table import NOVA, ctx, render_plan
from upgrade.hosts import LocalHost

NOVA_DB_PASSWORD = "nova-DB-pw-5512"
NOVA_CONF = f"[DEFAULT]\n[database]\nconnection = mysql+pymysql://nova:{NOVA_DB_PASSWORD}@10.0.0.3/nova\n"

NOVA_SPEC = spec("nova")


def step_names(jump: Jump) -> list[str]:
    return [s.name.removeprefix("nova.") for s in steps_for("nova", jump)]


def lines(jump: Jump, step: str) -> list[str]:
    c = ctx(jump, ("nova",))
    s = next(s for s in steps_for("nova", jump) if s.name == f"nova.{step}")
    return recording.command_lines(s, c)


# ---------------------------------------------------------------------- plan level
def test_liberty_mitaka_creates_nova_api_and_names_it_in_nova_conf() -> None:
    jump = Jump("liberty", "mitaka")
    assert [d.label for d in new_db_specs(NOVA_SPEC, jump)] == ["api"]
    assert step_names(jump)[:9] == ["stop_target", "backup_target", "stop_source", "dump_source", "install_config",
                                    "import_db", "create_databases", "api_db_sync", "upgrade_schema"]
    assert lines(jump, "backup_target")[1].endswith("nova_api | encrypt > <vault>/nova-target-db-api.osuv"
                                                    "   # if the database exists")
    assert lines(jump, "install_config")[-1] == (
        "set [api_database] connection in /etc/nova/nova.conf to mysql+pymysql://USER:***@10.0.0.4:3306/nova_api "
        "(server, USER and password of the nova connection; new in the target release)")
    assert all("nova_api" not in line for line in lines(jump, "import_db"))  # nothing to import
    assert lines(jump, "create_databases") == [
        "SQL: DROP DATABASE IF EXISTS `nova_api`; CREATE DATABASE `nova_api` (charset and collation of the imported "
        "`nova`; a `nova_api` the target had is in the backup)",
        "SQL: CREATE USER IF NOT EXISTS / ALTER USER USER@'%'; GRANT ALL PRIVILEGES ON `nova_api`.* TO USER@'%'",
        "SQL: CREATE USER IF NOT EXISTS / ALTER USER USER@'localhost'; GRANT ALL PRIVILEGES ON `nova_api`.* TO "
        "USER@'localhost'"]
    assert lines(jump, "api_db_sync") == [f"{NOVA} api_db sync"]
    assert lines(jump, "upgrade_schema")[0] == f"{NOVA} db sync"
    assert "cell_setup" not in step_names(jump)


def test_newton_ocata_creates_cell0_and_sets_up_cells_v2_in_order() -> None:
    jump = Jump("newton", "ocata")
    assert [d.label for d in new_db_specs(NOVA_SPEC, jump)] == ["cell0"]
    names = step_names(jump)
    assert names[5:13] == ["import_db", "create_databases", "api_db_sync", "cell_setup", "upgrade_schema",
                           "discover_hosts", "stale_services", "status_check"]
    assert "update_cells" not in names  # no cell mappings to move: they are made here
    assert lines(jump, "create_databases")[0].startswith("SQL: DROP DATABASE IF EXISTS `nova_cell0`; CREATE "
                                                         "DATABASE `nova_cell0` (charset and collation of the")
    assert not any("[api_database]" in line for line in lines(jump, "install_config")[-2:])  # cell0: no option
    assert lines(jump, "cell_setup") == [
        f"{NOVA} cell_v2 map_cell0 --database_connection 'mysql+pymysql://USER:***@10.0.0.4:3306/nova_cell0'",
        f"{NOVA} cell_v2 create_cell --name cell1 --database_connection "
        "'mysql+pymysql://USER:***@10.0.0.4:3306/nova' --transport-url '<[DEFAULT] transport_url of "
        "/etc/nova/nova.conf>'"]
    assert lines(jump, "discover_hosts") == [f"{NOVA} cell_v2 discover_hosts"]
    plan = "\n".join(render_plan(jump, ctx(jump, ("nova",)), ("nova",)))
    assert "pw" not in plan.replace("pwd", "") and NOVA_DB_PASSWORD not in plan


@pytest.mark.parametrize(("src", "dst"), [("kilo", "liberty"), ("mitaka", "newton"), ("ocata", "pike"),
                                          ("2025.2", "2026.1")])
def test_jumps_without_new_databases_create_none(src: str, dst: str) -> None:
    assert new_db_specs(NOVA_SPEC, Jump(src, dst)) == ()
    assert not {"create_databases", "cell_setup", "discover_hosts"} & set(step_names(Jump(src, dst)))


def test_placement_is_required_when_the_jump_reaches_ocata() -> None:
    """Placement is part of nova until Stein (its tables come with api_db sync); what the jump needs
    is nova.conf's [placement], carried over from the source."""
    files = {"/etc/nova/nova.conf": NOVA_CONF.encode()}
    errors = preflight.config_errors(files.get, "/etc", "nova", Jump("newton", "ocata"))
    assert errors == [f"/etc/nova/nova.conf on the source has no [placement] section: "
                      f"{NOVA_SPEC.required_sections[0].why}"]
    assert "nova-placement-api" in errors[0]
    files["/etc/nova/nova.conf"] += b"[placement]\nauth_url = http://10.0.0.3:5000/v3\n"
    assert preflight.config_errors(files.get, "/etc", "nova", Jump("newton", "ocata")) == []
    assert preflight.config_errors({}.get, "/etc", "nova", Jump("mitaka", "newton")) == []
    assert preflight.config_errors({}.get, "/etc", "nova", Jump("ocata", "pike")) == []


# ---------------------------------------------------------------------- a real MariaDB
@dataclass
class Lab:
    server: MariaDB
    ep: DBEndpoint
    base: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    for tool in ("mariadbd", "mariadb-install-db", "mysqldump", "mysql"):
        require(shutil.which(tool) is not None, f"{tool} not installed (make setup installs MariaDB)")
    base = tmp_path_factory.mktemp("newdb")
    server = MariaDB(base / "db", free_port())
    try:
        server.start()
        yield Lab(server, DBEndpoint("127.0.0.1", server.port, "root", ""), base)
    finally:
        server.stop()


@pytest.fixture
def db(lab: Lab) -> Lab:
    for name in ("nova", "nova_api", "nova_cell0"):
        lab.server.execute(f"DROP DATABASE IF EXISTS `{name}`")
    lab.server.execute("DROP USER IF EXISTS 'nova'@'%', 'nova'@'localhost'")
    lab.server.execute("CREATE DATABASE nova CHARACTER SET utf8 COLLATE utf8_general_ci")
    lab.server.execute("CREATE TABLE nova.instances (id INT PRIMARY KEY)")
    return lab


def make_ctx(lab: Lab, tmp: Path, jump: Jump) -> UpgradeContext:
    """A run's context with both controllers on this machine and both DB endpoints on the lab server:
    the source side only has its nova.conf read, every change goes to the target."""
    etc = tmp / "etc"
    (etc / "nova").mkdir(parents=True)
    (etc / "nova" / "nova.conf").write_text(NOVA_CONF)

    def side(role: str) -> Side:
        return Side(role=role, host=LocalHost(role), etc=str(etc), lib=str(tmp / "lib"), bin="",
                    db=lab.ep, control=ServiceControl("sysvinit"))

    key = vault.generate_key_file(tmp / "dump.key")
    journal = Journal(tmp / "journal", key=key)
    run_id = journal.create_run({}, "0" * 64, None, jump.source, jump.target, key.key_id)
    st = ServiceSettings(name="nova", unit="openstack-nova-api", db_name="nova", owner="nova:nova")
    return UpgradeContext(run_id=run_id, source=side("source"), target=side("target"), journal=journal,
                          key=key, redactor=Redactor([]), services={"nova": st}, from_release=jump.source,
                          to_release=jump.target)


def run_step(c: UpgradeContext, step: Any) -> dict[str, Any]:
    deps.publish(c.results, "nova", step, step.run(c))  # as the runner does: by name, and what it provides
    return c.results[step.name]


def grants(lab: Lab) -> list[str]:
    return sorted(r[0] for r in lab.server.execute("SHOW GRANTS FOR 'nova'@'%'"))


def create_step(jump: Jump) -> Any:
    return next(s for s in steps_for("nova", jump) if s.name == "nova.create_databases")


def backup_step(jump: Jump) -> Any:
    dbs, new = db_specs(NOVA_SPEC, jump), new_db_specs(NOVA_SPEC, jump)
    return backup_target_step("nova", dbs[0].conns[0], (*dbs, *new))


#: the jumps that create a database, and which
NEW = [("liberty", "mitaka", "nova_api"), ("newton", "ocata", "nova_cell0")]


@pytest.mark.parametrize(("src", "dst", "made"), NEW)
def test_create_database_and_undo_on_a_real_server(db: Lab, tmp_path: Path, src: str, dst: str, made: str) -> None:
    jump = Jump(src, dst)
    if src == "newton":
        db.server.execute("CREATE DATABASE nova_api")
    c = make_ctx(db, tmp_path, jump)
    run_step(c, backup_step(jump))
    assert c.results["nova.backup_target"]["databases"][made] == {"existed": False}
    step = create_step(jump)
    result = run_step(c, step)
    charset, collation = mysql.db_charset(db.ep, "nova")
    assert result["databases"] == {made: {"created": True, "existed_before": False, "charset": charset,
                                          "collation": collation}}
    assert mysql.db_charset(db.ep, made) == (charset, collation)
    assert any(f"`{made}`.*" in g for g in grants(db))
    assert NOVA_DB_PASSWORD not in repr(result)
    # the service user logs in with the source config's password and may create the schema
    mysql.execute_many(DBEndpoint("127.0.0.1", db.ep.port, "nova", NOVA_DB_PASSWORD),
                       ["CREATE TABLE t (id INT)"], db=made)
    assert run_step(c, step)["databases"][made]["existed_before"] is False  # a re-run: still "created by us"
    step.undo(c, result)
    assert not mysql.db_exists(db.ep, made)
    assert mysql.db_exists(db.ep, "nova")  # only what the step created is dropped
    step.undo(c, result)  # idempotent
    step.undo(c, None)    # an interrupted run: backup_target's record decides, same effect
    assert not mysql.db_exists(db.ep, made)


def test_a_database_the_target_had_is_restored_not_dropped(db: Lab, tmp_path: Path) -> None:
    jump = Jump("liberty", "mitaka")
    db.server.execute("CREATE DATABASE nova_api CHARACTER SET latin1")
    db.server.execute("CREATE TABLE nova_api.keep (v VARCHAR(10))")
    db.server.execute("INSERT INTO nova_api.keep VALUES ('mine')")
    c = make_ctx(db, tmp_path, jump)
    run_step(c, backup_step(jump))
    step = create_step(jump)
    result = run_step(c, step)
    assert result["databases"]["nova_api"]["existed_before"] is True
    assert mysql.query(db.ep, "SHOW TABLES", db="nova_api") == []  # created empty for api_db sync
    step.undo(c, result)
    assert mysql.query(db.ep, "SELECT v FROM keep", db="nova_api") == [("mine",)]
    assert mysql.db_charset(db.ep, "nova_api")[0] == "latin1"


@pytest.mark.parametrize(("src", "dst", "extra"), NEW)
def test_preflight_refuses_a_target_era_database_on_the_source(db: Lab, src: str, dst: str, extra: str) -> None:
    jump = Jump(src, dst)
    if src == "newton":
        db.server.execute("CREATE DATABASE nova_api")
    st = ServiceSettings(name="nova", unit="u", db_name="nova")
    assert preflight.database_errors(db.ep, "nova", jump, st, "plan.toml") == []
    db.server.execute(f"CREATE DATABASE {extra}")
    errors = preflight.database_errors(db.ep, "nova", jump, st, "plan.toml")
    assert errors == [f"the source DB server 127.0.0.1:{db.ep.port} holds database {extra!r}, which nova of {src} "
                      f"does not have: it comes with {dst}, whose upgrade creates it on the target — if it is an "
                      f"unused leftover, drop it on the source (DROP DATABASE `{extra}`) and run again; if {src} "
                      "uses it already, this tool cannot carry it over"]


def test_preflight_refuses_a_missing_source_database(db: Lab) -> None:
    st = ServiceSettings(name="nova", unit="u", db_name="nova")
    errors = preflight.database_errors(db.ep, "nova", Jump("newton", "ocata"), st, "plan.toml")
    assert errors == [f"the source DB server 127.0.0.1:{db.ep.port} has no database 'nova_api' for nova — fix "
                      "services.nova.api_db_name in plan.toml"]


def test_the_new_option_is_derived_from_the_rewritten_main_url() -> None:
    """install_config has pointed [database] connection at the target; [api_database] follows it."""
    from services.steps.configs import new_db_config_edit

    jump = Jump("liberty", "mitaka")
    edit = new_db_config_edit("nova", new_db_specs(NOVA_SPEC, jump), db_specs(NOVA_SPEC, jump))
    c = ctx(jump, ("nova",))
    data = b"[DEFAULT]\n# kept\n[database]\nconnection = mysql+pymysql://nova:s%40cret@10.0.0.4:3306/nova?charset=utf8\n"
    new, notes = edit.apply(c, "/etc/nova/nova.conf", data)
    assert new == data + b"\n[api_database]\nconnection = mysql+pymysql://nova:s%40cret@10.0.0.4:3306/nova_api?charset=utf8\n"
    assert notes == ["[api_database] connection -> 10.0.0.4:3306/nova_api (new in the target release)"]
    assert edit.apply(c, "/etc/nova/nova.conf", new) == (new, [])  # a re-run changes nothing
    assert edit.apply(c, "/etc/nova/api-paste.ini", b"[x]\n") == (b"[x]\n", [])
    with pytest.raises(Exception, match="names no nova database"):
        edit.apply(c, "/etc/nova/nova.conf", b"[DEFAULT]\n")
