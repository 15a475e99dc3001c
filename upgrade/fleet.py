"""The hosts beyond the two controllers: the IP switchover and the compute nodes, as machines.

``machines(plan)`` gives what ``app.build_runner`` appends after the service machines: the
``network`` machine (if the plan has ``[network]``) and one ``compute.<name>`` machine per
``[[computes]]`` entry, those in one parallel group of ``compute_pool``. ``preflight_hosts``
connects to every SSH host of the plan before a run starts, so an unreachable host is a clear
error before anything changes, not a failed step half-way.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from services.catalog import nova
from services.fleet import addrconfig, cloudcheck, compute, network
from services.infra import enablement
from services.infra.settings import Side
from statemachine.machine import ServiceMachine
from statemachine.runner import ParallelGroup
from statemachine.step import StepError
from upgrade import guards, hosts
from upgrade.errors import UserError

if TYPE_CHECKING:
    from upgrade.plan import Plan


def machines(plan: Plan, stoppers: tuple[str, ...] = (),
             connect: Callable[[hosts.HostSpec, str], Any] = hosts.connect,
             ) -> tuple[list[ServiceMachine], list[ParallelGroup]]:
    """The machines beyond the services and their parallel groups. *stoppers*: the service machines that
    stop units on the old controller (before the switchover), which the network machine disables there
    after it; *connect* gives each host (`upgrade plan` passes one that records the commands instead of
    running them)."""
    out: list[ServiceMachine] = []
    groups: list[ParallelGroup] = []
    if plan.network is not None:
        spec = plan.network.check_from
        check = connect(spec, f"check:{spec.alias or spec.url}")
        out.append(network.machine(plan.network.settings, check, stoppers))
    comp = [compute.machine(c.settings, connect(c.host, f"compute:{c.settings.name}"), nova.restart_conductors)
            for c in plan.computes]
    if comp:
        groups.append(ParallelGroup(frozenset(m.name for m in comp), plan.compute_pool))
    return out + comp, groups


def last_machines(plan: Plan) -> list[ServiceMachine]:
    """What runs after every other machine: the ``cloud`` machine of a plan with ``[cloud]``, which waits until
    the cloud reports to the new controller (after the switchover, the compute hosts and nova's unpin)."""
    return [cloudcheck.machine(plan.cloud)] if plan.cloud is not None else []


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


def address_problems(plan: Plan) -> list[tuple[str, str]]:
    """Why the plan's addresses cannot leave the old controller for good (an HA manager owns them, or a
    network configuration the tool does not edit names them), as (problem, fix) pairs. Read-only."""
    if plan.network is None:
        return []
    spec = plan.source
    name = f"source:{(spec.host_spec and spec.host_spec.alias) or spec.host}"
    source = hosts.connect(spec.host_spec or spec.host, name)
    out = addrconfig.problems(source, plan.network.settings.addresses)
    # after the switchover the units stopped there are disabled: the controller's own means must say
    # whether one starts at boot now, not only after the run stopped it (a template without the verbs)
    side = Side(role="source", host=source, etc=spec.etc, lib=spec.lib, bin=spec.bin, db=spec.db,
                control=spec.control, log=spec.log)
    # (systemctl, chkconfig and update-rc.d have them; an operator's template may not)
    probe = [] if spec.control.kind != "template" else \
        [u for s in plan.service_settings.values() for u in (s.options.get("units") or [s.unit]) if u][:1]
    for unit in probe:
        try:
            enablement.state(side, unit)
        except StepError as exc:
            out.append((f"{exc}", "the switchover disables the units it stopped on the old controller: give its "
                                  "control the verbs is-enabled, disable, mask, enable and unmask (systemctl's), "
                                  "or use service_control = \"systemd\" or \"sysvinit\""))
    return out


def refuse_address_problems(plan: Plan) -> None:
    """Before `upgrade run` writes anything: the moved addresses can be removed from the old controller
    for good (exit 2 naming the file or the daemon, and the fix)."""
    guards.refuse_findings(lambda: address_problems(plan), "the old controller's network configuration",
                           "the switchover could not keep the old controller from taking its addresses back",
                           plan.path, sep=" — ")
