"""Heat (orchestration): heat-api, heat-api-cfn and heat-engine, one database ``heat``, the schema
by ``heat-manage db_sync`` of the target release, ``heat-status upgrade check`` from Stein (the
release goal that gave every service its status command), the API verified through the
orchestration endpoint (8004 in a real cloud).

Everything the tool knows about heat is here, but for the two facts generic code reads from the
release table (its database and config file: ``releases.DATABASES``/``CONFIG_FILES``, through
which the pre-flight and the backups find every service's databases).

What heat needs from an upgrade beyond the standard sequence is carried by it already: heat.conf
comes over whole, so ``auth_encryption_key`` (heat encrypts resource data and stored credentials
with it: a different key on the new controller would make every stack's secrets unreadable), the
``transport_url`` and the stack user domain stay as they were; stacks, resources and their data
are rows of the one database.
"""

from __future__ import annotations

from services import legacy_config, releases
from services.common import api_verify_step, standard_steps
from services.releases import STATUS_OK, Cmd, Era
from services.runbook import DEFAULT_JUMP, Jump, commands_step, db_specs, status_step, units_fn
from statemachine.step import Step

NAME = "heat"

HEAT_CONF = ("--config-file", "{etc}/heat/heat.conf")

#: the schema upgrade per target release: ``db_sync`` in every release (sqlalchemy-migrate in the old
#: ones, alembic in the recent ones: heat-manage runs whichever its release has)
SCHEMA: tuple[Era, ...] = (Era("havana", None, (Cmd("heat-manage", (*HEAT_CONF, "db_sync")),)),)

#: oslo.upgradecheck: heat-status from Stein (0 success, 1 warning recorded, 2 failure, 255 error)
STATUS: tuple[Era, ...] = (Era("stein", None, Cmd("heat-status", (*HEAT_CONF, "upgrade", "check"), STATUS_OK)),)

#: the units in the order they stop (started in reverse), RDO names as the runbook's other services;
#: heat-api-cloudwatch went in Queens. A plan's ``units`` replaces them (Ubuntu: heat-api, ...).
UNITS: tuple[Era, ...] = (
    Era("havana", "pike", ("openstack-heat-api", "openstack-heat-api-cfn", "openstack-heat-api-cloudwatch",
                           "openstack-heat-engine")),
    Era("queens", None, ("openstack-heat-api", "openstack-heat-api-cfn", "openstack-heat-engine")),
)

#: the command that proves heat is installed on a controller (`upgrade check`)
TOOL = "heat-manage"


def steps(jump: Jump = DEFAULT_JUMP) -> list[Step]:
    """The standard sequence: stop, dump, carry heat.conf over, import, ``heat-manage db_sync``,
    ``heat-status upgrade check`` where the target has it, start, GET the orchestration API."""
    dbs = db_specs(NAME, jump)
    schema = commands_step(NAME, "upgrade_schema", "schema_upgraded", releases.pick(SCHEMA, jump.target),
                           "heat-manage db_sync of the target release",
                           dbs=lambda ctx: [d.db_name(ctx.services[NAME]) for d in dbs])
    status = releases.pick(STATUS, jump.target)
    return standard_steps(
        NAME, dbs[0].conns, schema,
        api_verify_step(NAME, "orchestration"),
        dbs=dbs, units=units_fn(NAME, jump, eras=UNITS), edits=(legacy_config.edit(jump.target),),
        after_schema=(status_step(NAME, status),) if status else ())
