"""Keystone: the runbook's first service.

Schema upgrade with the target release's ``keystone-manage db_sync``, checked with
``db_sync --check`` (exit 0 up to date, 2 expand needed, 4 contract needed; facts §2.1), and the
alembic revisions recorded before and after.
"""

from __future__ import annotations

from services import mysql
from services.common import ConfigKey, command_text, http_ok, run_manage, standard_steps
from services.context import UpgradeContext
from services.settings import Side
from statemachine.step import Result, Step, StepError

NAME = "keystone"
CONNECTION = ConfigKey("keystone.conf", "database", "connection")
CHECK_MEANING = {0: "up to date", 2: "expand needed", 4: "contract needed"}


def _manage(side: Side, *args: str) -> list[str]:
    return [side.tool("keystone-manage"), "--config-file", f"{side.etc}/keystone/keystone.conf", *args]


def revisions(ctx: UpgradeContext) -> list[str]:
    db = ctx.services[NAME].db_name
    rows = mysql.query(ctx.target.db, "SELECT version_num FROM alembic_version ORDER BY version_num", db=db)
    return [r[0] for r in rows]


def _upgrade_schema(ctx: UpgradeContext) -> Result:
    t = ctx.target
    before = revisions(ctx)
    check_before = run_manage(t, _manage(t, "db_sync", "--check"), "keystone-manage db_sync --check",
                              ok=(0, 2, 4)).rc
    run_manage(t, _manage(t, "db_sync"), "keystone-manage db_sync")
    check_after = run_manage(t, _manage(t, "db_sync", "--check"), "keystone-manage db_sync --check",
                             ok=(0, 2, 4)).rc
    if check_after != 0:
        raise StepError(f"after db_sync, `keystone-manage db_sync --check` on {t.host.name} says "
                        f"{CHECK_MEANING.get(check_after, check_after)} (exit {check_after})", host=t.host.name)
    return {"check_before": check_before, "check_before_meaning": CHECK_MEANING.get(check_before),
            "revisions_before": before, "revisions_after": revisions(ctx), "check_after": check_after}


def _verify(ctx: UpgradeContext) -> Result:
    t = ctx.target
    rc = run_manage(t, _manage(t, "db_sync", "--check"), "keystone-manage db_sync --check", ok=(0, 2, 4)).rc
    if rc != 0:
        raise StepError(f"keystone schema on {t.host.name} is not current: db_sync --check exit {rc}",
                        host=t.host.name)
    url = ctx.services[NAME].verify_url
    status = http_ok(url) if url else None
    return {"db_sync_check": rc, "url": url or None, "http_status": status}


def _schema_commands(ctx: UpgradeContext) -> list[str]:
    t = ctx.target
    return ["SQL: SELECT version_num FROM alembic_version",
            command_text(_manage(t, "db_sync", "--check")) + "   # 0 up to date, 2 expand, 4 contract needed",
            command_text(_manage(t, "db_sync")),
            command_text(_manage(t, "db_sync", "--check")) + "   # must exit 0"]


def _verify_commands(ctx: UpgradeContext) -> list[str]:
    url = ctx.services[NAME].verify_url
    return [command_text(_manage(ctx.target, "db_sync", "--check")) + "   # must exit 0",
            f"GET {url}   # until it answers 2xx/3xx, 60 s at most" if url else "(no verify_url: no API check)"]


def steps() -> list[Step]:
    schema = Step(f"{NAME}.upgrade_schema", "schema_upgraded", _upgrade_schema, host="target",
                  describe="keystone-manage db_sync of the target release, checked with db_sync --check",
                  commands=_schema_commands)
    verify = Step(f"{NAME}.verify", "verified", _verify, host="target",
                  describe="db_sync --check exit 0 and the identity API answers on its verify URL",
                  commands=_verify_commands)
    return standard_steps(NAME, (CONNECTION,), schema, verify)
