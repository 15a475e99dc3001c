"""Keystone: the runbook's first service.

Schema upgrade with the target release's ``keystone-manage db_sync``, checked with
``db_sync --check`` (exit 0 up to date, 2 expand needed, 4 contract needed; facts §2.1), and the
alembic revisions recorded before and after.
"""

from __future__ import annotations

from services import releases
from services.catalog.keystone import extra as keystone_extra
from services.infra import mysql
from services.infra.context import UpgradeContext
from services.infra.host import command_text
from services.infra.settings import Side
from services.steps import legacy_config
from services.steps.commands import DEFAULT_JUMP, Jump, commands_step, db_specs, run_manage
from services.steps.databases import ConfigKey
from services.steps.standard import standard_steps
from services.steps.verify import api_verify_step
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


def _schema_commands(ctx: UpgradeContext) -> list[str]:
    t = ctx.target
    return ["SQL: SELECT version_num FROM alembic_version",
            command_text(_manage(t, "db_sync", "--check")) + "   # 0 up to date, 2 expand, 4 contract needed",
            command_text(_manage(t, "db_sync")),
            command_text(_manage(t, "db_sync", "--check")) + "   # must exit 0"]


def steps(jump: Jump = DEFAULT_JUMP, options: dict | None = None) -> list[Step]:
    dbs = db_specs(NAME, jump)
    if releases.at_least(jump.target, "pike"):
        schema = Step(f"{NAME}.upgrade_schema", "schema_upgraded", _upgrade_schema, host="target",
                      describe="keystone-manage db_sync of the target release, checked with db_sync --check",
                      commands=_schema_commands)
    else:  # db_sync (+ extensions for Havana/Icehouse), no --check before Pike (facts §2.4)
        schema = commands_step(NAME, "upgrade_schema", "schema_upgraded",
                               releases.pick(releases.SCHEMA[NAME], jump.target),
                               "keystone-manage db_sync of the target release (and its extensions)",
                               dbs=lambda ctx: [ctx.services[NAME].db_name])

    verify_step = api_verify_step(NAME, "identity", keystone_extra.verify_extra, keystone_extra.verify_extra_shown,
                                  " and the key repositories hold the source's keys")
    # the endpoint report is a step only where the plan names the old address (keystone's step list
    # stays the runbook's ten otherwise)
    endpoints = (keystone_extra.endpoints_step(),) \
        if (options or {}).get("old_address") and "endpoints" in releases.fixups(NAME, jump.target) else ()
    status = keystone_extra.status_check_step(jump)
    return standard_steps(NAME, dbs[0].conns, schema, verify_step, dbs=dbs,
                          edits=(legacy_config.edit(jump.target),),
                          convert_utf8=releases.convert_charset(NAME, jump.target),
                          after_schema=(*endpoints, *((status,) if status else ())))
