"""Placement, upgraded before nova where it exists (Stein on, facts §5): ``placement-manage db
sync``, its online data migrations until exit 0, ``placement-status upgrade check``."""

from __future__ import annotations

from typing import Any

from services import legacy_config, releases
from services.common import http_ok, standard_steps
from services.runbook import DEFAULT_JUMP, Jump, commands_step, db_specs, status_step, units_fn
from statemachine.step import Result, Step

NAME = "placement"


def steps(jump: Jump = DEFAULT_JUMP) -> list[Step]:
    dbs = db_specs(NAME, jump)
    schema = commands_step(NAME, "upgrade_schema", "schema_upgraded", releases.pick(releases.SCHEMA[NAME], jump.target),
                           "placement-manage db sync, then online_data_migrations until exit 0",
                           dbs=lambda ctx: [ctx.services[NAME].db_name])
    status = releases.pick(releases.STATUS[NAME], jump.target)

    def verify(ctx: Any) -> Result:
        url = ctx.services[NAME].verify_url
        return {"url": url or None, "http_status": http_ok(url) if url else None}

    def verify_commands(ctx: Any) -> list[str]:
        url = ctx.services[NAME].verify_url
        return [f"GET {url}   # until it answers 2xx/3xx" if url else "(no verify_url: no API check)"]

    return standard_steps(
        NAME, dbs[0].conns, schema,
        Step(f"{NAME}.verify", "verified", verify, host="target", commands=verify_commands,
             describe="the placement API answers on its verify URL"),
        dbs=dbs, units=units_fn(NAME, jump), edits=(legacy_config.edit(jump.target),),
        after_schema=(status_step(NAME, status),) if status else ())
