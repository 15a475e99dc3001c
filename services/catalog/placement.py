"""Placement, upgraded before nova where it exists (Stein on, facts §5): ``placement-manage db
sync``, ``placement-status upgrade check``, and once every service serves its online data migrations
until exit 0."""

from __future__ import annotations

from services import releases
from services.steps import legacy_config
from services.steps.commands import (
    DEFAULT_JUMP,
    Jump,
    commands_step,
    db_specs,
    online_migrations_step,
    split_online,
    status_step,
    units_fn,
)
from services.steps.standard import standard_steps
from services.steps.verify import api_verify_step
from statemachine.step import Step

NAME = "placement"


def steps(jump: Jump = DEFAULT_JUMP) -> list[Step]:
    dbs = db_specs(NAME, jump)
    cmds, online = split_online(releases.pick(releases.SCHEMA[NAME], jump.target))
    schema = commands_step(NAME, "upgrade_schema", "schema_upgraded", cmds, "placement-manage db sync",
                           dbs=lambda ctx: [ctx.services[NAME].db_name])
    status = releases.pick(releases.STATUS[NAME], jump.target)

    return standard_steps(
        NAME, dbs[0].conns, schema,
        api_verify_step(NAME, "placement"),
        dbs=dbs, units=units_fn(NAME, jump), edits=(legacy_config.edit(jump.target),),
        after_schema=(status_step(NAME, status),) if status else (),
        finish=(online_migrations_step(NAME, online, lambda ctx: [ctx.services[NAME].db_name]),) if online else ())
