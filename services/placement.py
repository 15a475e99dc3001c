"""Placement, upgraded before nova where it exists (Stein on, facts §5): ``placement-manage db
sync``, its online data migrations until exit 0, ``placement-status upgrade check``."""

from __future__ import annotations

from services import legacy_config, releases
from services.common import api_verify_step, standard_steps
from services.runbook import DEFAULT_JUMP, Jump, commands_step, db_specs, status_step, units_fn
from statemachine.step import Step

NAME = "placement"


def steps(jump: Jump = DEFAULT_JUMP) -> list[Step]:
    dbs = db_specs(NAME, jump)
    schema = commands_step(NAME, "upgrade_schema", "schema_upgraded", releases.pick(releases.SCHEMA[NAME], jump.target),
                           "placement-manage db sync, then online_data_migrations until exit 0",
                           dbs=lambda ctx: [ctx.services[NAME].db_name])
    status = releases.pick(releases.STATUS[NAME], jump.target)

    return standard_steps(
        NAME, dbs[0].conns, schema,
        api_verify_step(NAME, "placement"),
        dbs=dbs, units=units_fn(NAME, jump), edits=(legacy_config.edit(jump.target),),
        after_schema=(status_step(NAME, status),) if status else ())
