"""The services the tool knows: every :class:`~services.spec.ServiceSpec` a module of
``services/catalog/`` exports, found by walking that package (a new service is one new module, no
table to edit), in their ``order`` — the runbook's: placement before nova where it exists (facts
§4.1); ``nova-unpin`` last: it drops nova's compute RPC pin once the computes run the new release.

A module exports its spec as ``SPEC`` and may export more (``UNPIN``: nova's second service):
every module-level :class:`ServiceSpec` is one service.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from services import catalog, releases
from services.releases import DEFAULT_JUMP, Jump
from services.spec import ServiceSpec
from services.steps import textrepair
from services.steps.specs import db_specs, new_db_specs
from statemachine.deps import cross_waits
from statemachine.runner import ParallelGroup
from statemachine.step import Step


class CatalogError(Exception):
    """The catalog's specs contradict each other (two with one name or one order): a programming error."""


def discover(package: Any = catalog) -> dict[str, ServiceSpec]:
    """Every spec of the modules (and packages) under *package*, by name, in their ``order``."""
    found: list[ServiceSpec] = []
    for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        module = importlib.import_module(info.name)
        found += [v for v in vars(module).values() if isinstance(v, ServiceSpec)]
    by_name: dict[str, ServiceSpec] = {}
    for spec in sorted(found, key=lambda s: s.order):
        if spec.name in by_name and by_name[spec.name] is not spec:
            raise CatalogError(f"two specs are named {spec.name!r}")
        by_name[spec.name] = spec
    orders = [s.order for s in by_name.values()]
    if len(set(orders)) != len(orders):
        raise CatalogError(f"specs share an order: {sorted((s.order, s.name) for s in by_name.values())}")
    return by_name


#: every service by name, in the runbook's order
SERVICES: Mapping[str, ServiceSpec] = discover()
ORDER = tuple(SERVICES)
#: services that never overlap: nova-unpin runs alone, after the compute hosts
AFTER_COMPUTES = tuple(n for n, s in SERVICES.items() if s.after_computes)
#: services without a database of their own
NO_DATABASE = tuple(n for n, s in SERVICES.items() if not s.has_database)
#: the command that proves a service is installed on a controller
TOOLS = {n: s.tool for n, s in SERVICES.items() if s.tool}
#: the keys each service's ``[services.<name>]`` table takes beyond the common ones
OPTIONS = {n: s.options for n, s in SERVICES.items()}
RETIRED_OPTIONS = {n: s.retired_options for n, s in SERVICES.items()}
#: what each service writes by itself when idle (left out of what `upgrade revert` compares)
IDLE_WRITES = {n: s.idle_writes for n, s in SERVICES.items()}


def spec(name: str) -> ServiceSpec:
    return SERVICES[name]


def steps_for(name: str, jump: Jump | None = None, options: Mapping[str, Any] | None = None) -> list[Step]:
    """The steps of *name* for *jump* (default: the lab's 2025.2 -> 2026.1) and the service's plan
    options (a few steps exist only when the plan asks for them, e.g. keystone's endpoint report or
    the repair of double-encoded text)."""
    jump = jump or DEFAULT_JUMP
    s = SERVICES[name]
    steps = s.steps(jump, dict(options or {}))
    if (options or {}).get(textrepair.OPTION) and s.has_database:
        steps = textrepair.with_repair(s, jump, steps)
    return steps


def waits(steps: Mapping[str, Sequence[Step]]) -> dict[str, frozenset[str]]:
    """What each step of the services *steps* holds waits for in other services' machines when services
    overlap: the steps providing its cross-service ``requires`` (``keystone.api``: keystone's verify),
    where that service is in the run (a service not in the run serves already)."""
    return cross_waits(steps)


def overlap_group(steps: Mapping[str, Sequence[Step]], pool: int) -> ParallelGroup | None:
    """The services of a plan (name -> its steps, in order) that run side by side (at most ``pool`` at
    once), or None for the runbook's strict sequence (pool 1, or fewer than two services)."""
    names = [s for s in steps if s not in AFTER_COMPUTES]
    if pool < 2 or len(names) < 2:
        return None
    return ParallelGroup(frozenset(names), pool, {s: SERVICES[s].after for s in names},
                         waits({n: steps[n] for n in names}))


def unsupported(name: str, jump: Jump) -> str | None:
    """Why *name* cannot be upgraded across *jump*, or None."""
    return SERVICES[name].unsupported(jump)


def databases(name: str, jump: Jump, settings: Any) -> list[str]:
    """The database names *name* carries over for *jump* (checked on the source before a run)."""
    s = SERVICES[name]
    return [d.db_name(settings) for d in db_specs(s, jump)] if s.has_database else []


def new_databases(name: str, jump: Jump, settings: Any) -> list[str]:
    """The database names the target release of *name* adds (created on the target, never on the source)."""
    s = SERVICES[name]
    return [d.db_name(settings) for d in new_db_specs(s, jump)] if s.has_database else []


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


@cache
def every_step() -> Mapping[str, Step]:
    """Every step any supported jump builds for any service, by name, with the options that add steps
    (``ServiceSpec.step_options`` and the text repair): what a journal's step names are looked up in
    (the window's kinds, ``upgrade/window.py``). A step name means one step whatever the jump."""
    out: dict[str, Step] = {}
    for name, s in SERVICES.items():
        extra = {**s.step_options, **({textrepair.OPTION: ["x.y"]} if s.has_database else {})}
        for source in releases.NAMES:
            for target in releases.allowed_targets(source):
                jump = Jump(source, target)
                if s.unsupported(jump) is None:
                    for opts in ({}, extra):
                        out.update((st.name, st) for st in steps_for(name, jump, opts))
    return out
