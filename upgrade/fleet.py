"""The hosts beyond the two controllers: the IP switchover and the compute nodes, as machines.

``machines(plan)`` gives what ``app.build_runner`` appends after the service machines: the
``network`` machine (if the plan has ``[network]``) and one ``compute.<name>`` machine per
``[[computes]]`` entry, those in one parallel group of ``compute_pool``. ``preflight_hosts``
connects to every SSH host of the plan before a run starts, so an unreachable host is a clear
error before anything changes, not a failed step half-way.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from services.catalog import nova
from services.fleet import compute, network
from statemachine.machine import ServiceMachine
from statemachine.runner import ParallelGroup
from statemachine.step import StepError
from upgrade import hosts
from upgrade.errors import UserError

if TYPE_CHECKING:
    from upgrade.plan import Plan


def machines(plan: Plan) -> tuple[list[ServiceMachine], list[ParallelGroup]]:
    out: list[ServiceMachine] = []
    groups: list[ParallelGroup] = []
    if plan.network is not None:
        spec = plan.network.check_from
        check = hosts.connect(spec, f"check:{spec.alias or spec.url}")
        out.append(network.machine(plan.network.settings, check))
    comp = [compute.machine(c.settings, hosts.connect(c.host, f"compute:{c.settings.name}"), nova.restart_conductors)
            for c in plan.computes]
    if comp:
        groups.append(ParallelGroup(frozenset(m.name for m in comp), plan.compute_pool))
    return out + comp, groups


def _specs(plan: Plan) -> list[tuple[str, hosts.HostSpec]]:
    specs = [(f"{s.role}:{s.host_spec.alias or s.host_spec.url}", s.host_spec)
             for s in (plan.source, plan.target) if s.host_spec is not None]
    if plan.network is not None:
        specs.append(("network.check_from", plan.network.check_from))
    specs += [(f"compute:{c.settings.name}", c.host) for c in plan.computes]
    return [(name, spec) for name, spec in specs if not spec.is_local]


def preflight_hosts(plan: Plan) -> None:
    """Every SSH host of the plan answers (in parallel: 50 compute hosts take a second, not a minute)."""
    specs = _specs(plan)
    if not specs:
        return

    def probe(item: tuple[str, hosts.HostSpec]) -> str | None:
        name, spec = item
        try:
            hosts.connect(spec, name).check_reachable()
        except StepError as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(max_workers=min(16, len(specs))) as pool:
        errors = [e for e in pool.map(probe, specs) if e]
    if errors:
        more = f" (and {len(errors) - 1} more host(s) unreachable)" if len(errors) > 1 else ""
        raise UserError(f"{errors[0]}{more} — nothing was changed (plan {plan.path})")
