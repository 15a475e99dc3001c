"""Heat (orchestration): heat-api, heat-api-cfn and heat-engine, one database ``heat``, the schema
by ``heat-manage db_sync`` of the target release, ``heat-status upgrade check`` from Stein (the
release goal that gave every service its status command), the API verified through the
orchestration endpoint (8004 in a real cloud).

Added by writing this module alone (``docs/adding-a-service.md`` walks through it). What heat
needs from an upgrade beyond the standard sequence is carried by it already: heat.conf comes over
whole, so ``auth_encryption_key`` (heat encrypts resource data and stored credentials with it: a
different key on the new controller would make every stack's secrets unreadable), the
``transport_url`` and the stack user domain stay as they were; stacks, resources and their data are
rows of the one database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services import options, releases
from services.infra.listeners import Listen
from services.releases import DEFAULT_JUMP, Era, Jump
from services.spec import ServiceSpec
from services.steps import legacy_config
from services.steps.commands import schema_step, status_step
from services.steps.specs import db_specs, units_fn
from services.steps.standard import standard_steps
from services.steps.verify import api_verify_step
from statemachine.step import Step

NAME = "heat"
HEAT_CONF = ("--config-file", "{etc}/heat/heat.conf")
_c = releases.cmd


def steps(jump: Jump = DEFAULT_JUMP, options: Mapping[str, Any] | None = None) -> list[Step]:
    """The standard sequence: stop, dump, carry heat.conf over, import, ``heat-manage db_sync``,
    ``heat-status upgrade check`` where the target has it, start, GET the orchestration API (once
    keystone answers: heat authenticates every request with it)."""
    dbs = db_specs(SPEC, jump)
    schema = schema_step(NAME, SPEC.schema_for(jump.target), "heat-manage db_sync of the target release",
                         dbs=lambda ctx: [d.db_name(ctx.services[NAME]) for d in dbs])
    status = SPEC.status_for(jump.target)
    return standard_steps(
        NAME, dbs[0].conns, schema,
        api_verify_step(NAME, "orchestration", requires=("keystone:api",)),
        dbs=dbs, units=units_fn(SPEC, jump), edits=(legacy_config.edit(jump.target),),
        after_schema=(status_step(NAME, status),) if status else (),
        listens=(Listen("heat/heat.conf", "heat_api", "bind_port", 8004),))


SPEC = ServiceSpec(
    name=NAME, order=65, steps=steps, tool="heat-manage",
    # RDO names, as the runbook's other services; heat-api-cloudwatch went in Queens. A plan's
    # ``units`` replaces them (Ubuntu: heat-api, heat-api-cfn, heat-engine).
    units=(Era("havana", "pike", ("openstack-heat-api", "openstack-heat-api-cfn", "openstack-heat-api-cloudwatch",
                                  "openstack-heat-engine")),
           Era("queens", None, ("openstack-heat-api", "openstack-heat-api-cfn", "openstack-heat-engine"))),
    databases=(Era("havana", None, (("main", "{name}", "database"),)),),
    config_files=(Era("havana", None, ("heat.conf",)),),
    # db_sync in every release (sqlalchemy-migrate in the old ones, alembic in the recent ones)
    schema=(Era("havana", None, (_c("heat-manage", *HEAT_CONF, "db_sync"),)),),
    # oslo.upgradecheck from Stein: 0 success, 1 warning (recorded), 2 failure, 255 error
    status=(Era("stein", None, _c("heat-status", *HEAT_CONF, "upgrade", "check", ok=releases.STATUS_OK)),),
    options=(options.UNITS, options.STATUS_ACCEPT, options.REPAIR),
)
