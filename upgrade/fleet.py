"""The hosts beyond the two controllers: the IP switchover and the compute nodes, as machines.

``machines(plan)`` gives what ``app.build_runner`` appends after the service machines: the
``network`` machine (if the plan has ``[network]``) and one ``compute.<name>`` machine per
``[[computes]]`` entry, those in one parallel group of ``compute_pool``. ``preflight_hosts``
connects to every SSH host of the plan before a run starts, so an unreachable host is a clear
error before anything changes, not a failed step half-way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from services import registry
from services.catalog import nova
from services.fleet import addrconfig, cloudcheck, compute, hagroup, network
from services.infra import enablement, galera
from services.infra.settings import Side
from services.releases import Jump
from statemachine.machine import ServiceMachine
from statemachine.runner import ParallelGroup
from statemachine.step import StepError
from upgrade import guards, hosts
from upgrade.errors import UserError

if TYPE_CHECKING:
    from upgrade.plan import Plan, SideSpec
    from upgrade.plangroup import Member


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


def _member(spec: SideSpec, m: Member, connect: Callable[[hosts.HostSpec, str], Any]) -> hagroup.Member:
    """A member of *spec*'s group as a side: its own host and DB node (the side's DB port and account on the
    member's own address; the working member keeps the side's ``db``), the side's layout and control."""
    working = spec.host_spec is not None and m.host.url == spec.host_spec.url
    db = spec.db if working else replace(spec.db, address=m.host.target()[1])
    return hagroup.Member(m.name, Side(role=spec.role, host=connect(m.host, f"{spec.role}:{m.name}"), etc=spec.etc,
                                       lib=spec.lib, bin=spec.bin, db=db, control=spec.control, log=spec.log))


def members(spec: SideSpec, connect: Callable[[hosts.HostSpec, str], Any] = hosts.connect,
            ) -> tuple[list[hagroup.Member], str]:
    """Every member of *spec*'s group as a side, the working one (the side's ``host``) first, and its name;
    ([], "") for a single controller. What the run acts on and what the identity guard compares."""
    group = spec.group
    if group is None:
        return [], ""
    out = [_member(spec, m, connect) for m in group.members]
    working = next((m.name for m in group.members if spec.host_spec and m.host.url == spec.host_spec.url), "")
    return sorted(out, key=lambda m: m.name != working), working


def group_settings(plan: Plan, connect: Callable[[hosts.HostSpec, str], Any] = hosts.connect,
                   ) -> hagroup.GroupSettings | None:
    """Both groups of an HA plan as the run acts on them (None: a single-controller plan)."""
    src, tgt = plan.source.group, plan.target.group
    if src is None or tgt is None:
        return None
    old, old_working = members(plan.source, connect)
    new, new_working = members(plan.target, connect)
    api = {m.name for g in (src, tgt) for m in g.with_role("api")}
    db = {m.name for m in tgt.with_role("db")}
    check_from = src.vip.check_from or hosts.HostSpec("local")
    return hagroup.GroupSettings(
        old=tuple(old), new=tuple(new),
        old_api=tuple(m for m in old if m.name in api and m.name != old_working),
        new_api=tuple(m for m in new if m.name in api and m.name != new_working),
        new_db=tuple((m.name, m.side.db) for m in new if m.name in db),
        vip=network.AddressMove("vip", src.vip.address, src.vip.device), vip_units=src.vip.units,
        old_control=src.vip.control or plan.source.control, new_control=tgt.vip.control or plan.target.control,
        check_host=connect(check_from, f"check:{check_from.alias or check_from.url}"), pool=plan.compute_pool)


def ha_machines(plan: Plan, services: dict[str, Sequence[Any]],
                connect: Callable[[hosts.HostSpec, str], Any] = hosts.connect,
                ) -> tuple[list[ServiceMachine], list[ServiceMachine], list[ParallelGroup]]:
    """An HA plan's machines before the services (the other old members' stops), after them (the cluster's
    check, the other new members, the VIP move) and their parallel groups (``services/fleet/hagroup.py``);
    nothing for a single-controller plan. *services*: the services' steps as their machines run them."""
    g = group_settings(plan, connect)
    if g is None:
        return [], [], []
    jump = Jump(plan.from_release, plan.to_release)
    dbs = [db for name in services for db in registry.databases(name, jump, plan.service_settings[name])]
    return hagroup.machines(g, services, dbs)


#: the journal note of the old member an HA run works through when the plan's own was down (upgrade/commands.py)
WORKING_NOTE = "working-source"


def _node_health(role: str, nodes: Sequence[hagroup.Member]) -> dict[str, tuple[str | None, dict]]:
    """Each DB node of *nodes* as (why it is not healthy or None, its status). An old node is healthy when it
    answers, is ``Synced`` and in the ``Primary`` component: a smaller cluster than the plan names, with a node
    down, is fine to read. A new node must be Synced in a cluster of every node the plan names."""
    seen = {}
    for m in nodes:
        problem, st = galera.node_problem(m.name, m.side.db, len(nodes), role)
        if role == "source" and st.get("wsrep_local_state_comment") == "Synced" \
                and st.get("wsrep_cluster_status") == "Primary":
            problem = None
        seen[m.name] = (problem, st)
    return seen


def choose_working(planned: str, nodes: Sequence[str], problems: dict[str, str | None]) -> str | None:
    """The old DB node an HA run works through: the plan's own (*planned*, the side's ``host``) while it is
    healthy, else the first healthy one of *nodes* in the plan's order (None: none is). Every old node holds
    the same data (one Galera cluster, only read), so any healthy one gives the same dump."""
    if planned not in nodes or problems.get(planned) is None:
        return planned
    return next((n for n in nodes if problems.get(n) is None), None)


def cluster(plan: Plan) -> tuple[list[tuple[str, str, str, str]], str]:
    """An HA plan's DB nodes as `upgrade check` reports them, (status, node, detail, remedy) each, and the old
    member the run works through ("" for a single controller). OK; FAIL for any new node that is not healthy
    (the import must replicate to all) and for the old nodes when none is healthy; WARN for another old node
    (the run reads a healthy one, the plan's own ``host`` if it is: the others are left as they are)."""
    g = group_settings(plan)
    if g is None:
        return [], ""
    out, working = [], g.old[0].name
    for role, members, group in (("source", g.old, plan.source.group), ("target", g.new, plan.target.group)):
        dbs = {m.name for m in group.with_role("db")} if group else set()
        nodes = [m for m in members if m.name in dbs]
        seen = _node_health(role, nodes)
        problems = {name: problem for name, (problem, _) in seen.items()}
        through = members[0].name
        if role == "source":
            working = choose_working(through, [m.name for m in plan.source.group.members if m.name in dbs],
                                     problems) or through
            through = working
        for m in nodes:
            problem, st = seen[m.name]
            if problem is None:
                out.append(("OK", m.name, f"{role} DB node {m.name}: Synced"
                            + (f", in a cluster of {st.get('wsrep_cluster_size')}" if st else "")
                            + ("; the run works through it" if m.name == through else ""), ""))
            elif role == "source" and m.name != through:
                instead = " instead (recorded in the run's journal: resume and revert read it too)" \
                    if m is members[0] else ""
                out.append(("WARN", m.name, problem, f"the run works through {through}{instead}; bring {m.name} "
                                                     "back into its cluster when convenient"))
            elif role == "source":
                out.append(("FAIL", m.name, problem, "no old DB node is healthy to dump from: bring one back into "
                                                     "its cluster first"))
            else:
                out.append(("FAIL", m.name, problem, "every new node must receive the import: bring it back into "
                                                     "the new cluster (it rejoins by a state transfer)"))
    return out, working


def working_plan(plan: Plan) -> Plan:
    """Before `upgrade run` writes anything: refused (exit 2) unless some old DB node is healthy and every new
    node is; the plan working through a healthy old member — the plan's own (``host``) when it is healthy,
    else another (`record_working` keeps it for resume and revert)."""
    findings, working = cluster(plan)
    failed = [f"{detail} — {remedy}" for status, _, detail, remedy in findings if status == "FAIL"]
    if failed:
        raise UserError("an HA plan's database nodes are not ready, nothing was changed:\n  " + "\n  ".join(failed)
                        + f"\n(plan {plan.path})")
    return through_member(plan, working)


def through_member(plan: Plan, name: str) -> Plan:
    """*plan* with the old member *name* as the one the run works through: its host, and its DB node (the
    side's port and account on the member's own address, as for every other member). *plan* when *name* is
    already the side's ``host`` (or not a member)."""
    group = plan.source.group
    m = next((m for m in (group.members if group else ()) if m.name == name), None)
    if m is None or (plan.source.host_spec is not None and m.host.url == plan.source.host_spec.url):
        return plan
    db = replace(plan.source.db, address=m.host.target()[1])
    return replace(plan, source=replace(plan.source, host=m.host.url, host_spec=m.host, db=db))


def record_working(journal: Any, run_id: str, planned: Plan, plan: Plan) -> None:
    """At run start, when the run works through another old member than the plan names: which, so that
    resume and revert work through it too (the same machines, the same node read)."""
    if plan.source.host_spec == planned.source.host_spec or plan.source.group is None:
        return
    names = {m.host.url: m.name for m in plan.source.group.members}
    journal.append(run_id, WORKING_NOTE, "note", result={
        "working": names[plan.source.host], "planned": names.get(planned.source.host, planned.source.host)})


def recorded_plan(plan: Plan, journal: Any, run_id: str) -> Plan:
    """*plan* working through the old member the run recorded at its start (*plan* itself when it recorded
    none: the plan's own ``host``)."""
    for e in journal.notes(run_id, WORKING_NOTE):
        if isinstance(e.result, dict) and e.result.get("working"):
            return through_member(plan, str(e.result["working"]))
    return plan


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
    for side in (plan.source, plan.target):
        specs += [(f"{side.role}:{m.name}", m.host) for m in (side.group.members if side.group else ())]
        vip = side.group.vip.check_from if side.group else None
        specs += [("vip.check_from", vip)] if vip is not None else []
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
