"""Placement, upgraded before nova where it exists (Stein on, facts §5): ``placement-manage db
sync``, ``placement-status upgrade check``, and once every service serves its online data migrations
until exit 0."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services import options, releases
from services.releases import DEFAULT_JUMP, Era, Jump
from services.spec import ServiceSpec
from services.steps import legacy_config
from services.steps.commands import online_migrations_step, schema_step, split_online, status_step
from services.steps.specs import db_specs, units_fn
from services.steps.standard import standard_steps
from services.steps.verify import api_verify_step
from statemachine.step import Step

NAME = "placement"
PLACEMENT_CONF = ("--config-file", "{etc}/placement/placement.conf")
_c = releases.cmd


def steps(jump: Jump = DEFAULT_JUMP, options: Mapping[str, Any] | None = None) -> list[Step]:
    dbs = db_specs(SPEC, jump)
    cmds, online = split_online(SPEC.schema_for(jump.target))
    schema = schema_step(NAME, cmds, "placement-manage db sync",
                         dbs=lambda ctx: [ctx.services[NAME].db_name])
    status = SPEC.status_for(jump.target)

    return standard_steps(
        NAME, dbs[0].conns, schema,
        api_verify_step(NAME, "placement", requires=("keystone:api",)),
        dbs=dbs, units=units_fn(SPEC, jump), edits=(legacy_config.edit(jump.target),),
        after_schema=(status_step(NAME, status),) if status else (),
        finish=(online_migrations_step(NAME, online, lambda ctx: [ctx.services[NAME].db_name]),) if online else ())


SPEC = ServiceSpec(
    name=NAME, order=30, steps=steps, since="stein", tool="placement-manage",
    units=(Era("stein", None, ("openstack-placement-api",)),),
    databases=(Era("stein", None, (("main", "{name}", "placement_database"),)),),
    config_files=(Era("stein", None, ("placement.conf",)),),
    schema=(Era("stein", None, (_c("placement-manage", *PLACEMENT_CONF, "db", "sync"),
                                _c("placement-manage", *PLACEMENT_CONF, "db", "online_data_migrations",
                                   loop=True))),),
    status=(Era("stein", None, _c("placement-status", *PLACEMENT_CONF, "upgrade", "check",
                                  ok=releases.STATUS_OK)),),
    options=(options.UNITS, options.STATUS_ACCEPT, options.REPAIR),
)
