"""The services the tool knows, in the order the runbook upgrades them, and their step lists for
a plan's jump. Placement comes before nova where it exists (facts §4.1); ``nova-unpin`` comes
last: it drops nova's compute RPC pin once the computes run the new release.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from services import cinder, glance, heat, horizon, keystone, neutron, nova, placement, releases, textrepair
from services.runbook import DEFAULT_JUMP, Jump
from statemachine.runner import ParallelGroup
from statemachine.step import Step

ORDER = ("keystone", "glance", "placement", "nova", "neutron", "cinder", "heat", "horizon", "nova-unpin")

SERVICES: dict[str, Callable[..., list[Step]]] = {
    "keystone": keystone.steps,
    "glance": glance.steps,
    "placement": placement.steps,
    "nova": nova.steps,
    "neutron": neutron.steps,
    "cinder": cinder.steps,
    "heat": heat.steps,
    "horizon": horizon.steps,
    "nova-unpin": nova.unpin_steps,
}

#: what each service's machine waits for as a whole when services overlap (``[upgrade] service_pool``
#: > 1; only services in the plan count): horizon's steps check keystone's roles and sessions.
AFTER: dict[str, frozenset[str]] = {"horizon": frozenset({"keystone"})}
#: the steps that wait for another service's step when services overlap: every API is verified once
#: keystone answers (each authenticates with it); nova's status check asks the placement API, which
#: is upgraded first (facts §4.1: "upgrade placement before any nova services"); cinder's iSCSI
#: rewrite edits nova's block devices, so nova's databases are imported and migrated first. Their
#: databases are otherwise independent: stops, dumps, imports and migrations run side by side.
WAITS: dict[str, frozenset[str]] = {
    **{f"{s}.verify": frozenset({"keystone.verify"}) for s in ("glance", "placement", "nova", "neutron", "cinder",
                                                                    "heat")},
    "nova.status_check": frozenset({"placement.verify"}),
    "nova.start_target": frozenset({"placement.verify"}),
    "cinder.rewrite_iscsi": frozenset({"nova.upgrade_schema"}),
}
#: services that never overlap: nova-unpin runs alone, after the compute hosts
AFTER_COMPUTES = ("nova-unpin",)


def overlap_group(services: Sequence[str], pool: int) -> ParallelGroup | None:
    """The services of a plan that run side by side (at most ``pool`` at once), or None for the
    runbook's strict sequence (pool 1, or fewer than two services)."""
    names = [s for s in services if s not in AFTER_COMPUTES]
    if pool < 2 or len(names) < 2:
        return None
    return ParallelGroup(frozenset(names), pool, {s: AFTER.get(s, frozenset()) for s in names}, WAITS)


#: the first release a service exists in (placement was split from nova in Stein)
SINCE = {"placement": "stein"}
#: services without a database of their own
NO_DATABASE = ("horizon", "nova-unpin")


def steps_for(name: str, jump: Jump | None = None, options: Mapping[str, Any] | None = None) -> list[Step]:
    """The steps of *name* for *jump* (default: the lab's 2025.2 -> 2026.1) and the service's plan
    options (a few steps exist only when the plan asks for them, e.g. keystone's endpoint report or
    the repair of double-encoded text)."""
    jump = jump or DEFAULT_JUMP
    steps = keystone.steps(jump, dict(options or {})) if name == "keystone" else SERVICES[name](jump)
    if (options or {}).get(textrepair.OPTION) and name not in NO_DATABASE:
        steps = textrepair.with_repair(name, jump, steps)
    return steps


def unsupported(name: str, jump: Jump) -> str | None:
    """Why *name* cannot be upgraded across *jump*, or None."""
    since = SINCE.get(name)
    if since and not releases.at_least(jump.source, since):
        return f"{name} does not exist before {since} (the plan upgrades {jump.source} -> {jump.target})"
    return None


def databases(name: str, jump: Jump, settings: Any) -> list[str]:
    """The database names *name* carries over for *jump* (checked on the source before a run)."""
    if name in NO_DATABASE:
        return []
    from services.runbook import db_specs
    return [d.db_name(settings) for d in db_specs(name, jump)]


def new_databases(name: str, jump: Jump, settings: Any) -> list[str]:
    """The database names the target release of *name* adds (created on the target, never on the source)."""
    if name in NO_DATABASE:
        return []
    from services.runbook import new_db_specs
    return [d.db_name(settings) for d in new_db_specs(name, jump)]


#: the manage command that proves a service is installed on a controller
TOOLS = {"keystone": "keystone-manage", "glance": "glance-manage", "placement": "placement-manage",
         "nova": "nova-manage", "neutron": "neutron-db-manage", "cinder": "cinder-manage", "nova-unpin": "nova-manage",
         "heat": heat.TOOL}


def steps_for_plan(plan: Any, name: str) -> list[Step]:
    """The steps of *name* exactly as a run of *plan* builds them (``upgrade plan``, ``status``): any
    object with ``from_release``, ``to_release`` and ``service_settings`` (upgrade.plan.Plan)."""
    st = plan.service_settings.get(name)
    return steps_for(name, Jump(plan.from_release, plan.to_release), st.options if st is not None else None)


def steps_for_raw(raw: Mapping[str, Any], name: str) -> list[Step]:
    """The same from a plan's stored TOML (the ``plan`` column of a run: secrets removed)."""
    up = raw.get("upgrade", {})
    table = raw.get("services", {}).get(name, {})
    return steps_for(name, Jump(up.get("from", DEFAULT_JUMP.source), up.get("to", DEFAULT_JUMP.target)), table)
