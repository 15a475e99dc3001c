"""An HA control plane replaced by another: the members beyond the two the run works through, and the VIP.

The services' own machines run as for a single controller, against the member each side names in its
``host`` (the old Galera node dumped from, the new one imported into): no service knows about HA. This
module adds, around them, the machines the other members need, built from the services' own steps run with
that member in the side's place (:func:`on_member`), and the VIP move:

- ``ha.<old member>`` (before the services; a parallel group of ``pool``): each service's
  ``stop_source`` on that member — every old API is stopped before the one dump is taken, so nothing writes
  to the old cluster while it is read. Undo starts them again.
- ``ha.cluster`` (after the services): the new cluster replicated the import — every target DB member Synced
  in a cluster of all of them, every carried table the same (rows and CHECKSUM TABLE) on each
  (``services/infra/galera.py``). Read only.
- ``ha.<new member>`` (a parallel group): each service's ``stop_target`` and a backup of its ``/etc/<service>``
  (before any source stops), then its ``install_config``, ``fix_ownership`` and ``start_target`` on that
  member. Undo stops the service there and puts that member's own configuration back from the vault.
- ``ha.vip``: ``record`` who holds the VIP and which VIP units run (every member of both sides);
  ``stop_old`` stops them on every old member and waits until no old member holds the VIP;
  ``start_new`` (only while nobody holds it: never two holders) starts them on every new member and waits
  until exactly one holds it; ``check`` sends a gratuitous ARP from that holder and waits until the check
  host sees the VIP answer from its MAC alone (``services/fleet/network.py``). Undo walks back: the new
  side stops, the old side's units that ran start again and the check host sees an old member's MAC.

Everything after the services (the cluster's check, the other new members' steps, the VIP move) is declared
``window="cutover"``: the clients reach the cloud through the VIP, so the maintenance window they see lasts
until the VIP answers from the new side (``upgrade/window.py``).

Each step is journaled under the member's machine (``ha.newctl2.keystone.start_target``), as the compute
hosts' are, so resume retries only the members that did not finish and revert undoes exactly what was done.
The old cluster is only read: revert needs nothing but the VIP back and the old services started.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.fleet import network
from services.infra import control, galera, together, writeguard
from services.infra.context import UpgradeContext
from services.infra.host import Host, command_text
from services.infra.settings import DBEndpoint, ServiceControl, Side
from services.steps.argv import tar_out
from services.steps.configs import backup_dir, restore_dir
from statemachine.deps import needed
from statemachine.machine import ServiceMachine
from statemachine.runner import ParallelGroup
from statemachine.step import Result, Step, StepError

PREFIX = "ha"
VIP_MACHINE = f"{PREFIX}.vip"
CLUSTER_MACHINE = f"{PREFIX}.cluster"
#: the kinds of a service's target steps that act on one controller (not on the cluster's data)
PER_NODE_KINDS = ("stop", "config", "ownership", "start")
#: how long the VIP may take to leave the old side or to appear on the new one (VRRP adverts are 1 s)
VIP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Member:
    """One controller of a group, as a side: its own host, its own DB node, the side's layout."""

    name: str
    side: Side


@dataclass(frozen=True)
class GroupSettings:
    """Both groups of an HA plan. ``old``/``new``: every member (the working one first); ``old_api``/``new_api``
    the API members besides the working one; ``new_db``: the target DB members (the one imported into first)."""

    old: tuple[Member, ...]
    new: tuple[Member, ...]
    old_api: tuple[Member, ...]
    new_api: tuple[Member, ...]
    new_db: tuple[tuple[str, DBEndpoint], ...]
    vip: network.AddressMove
    vip_units: tuple[str, ...]
    old_control: ServiceControl
    new_control: ServiceControl
    check_host: Host
    pool: int = 10
    vip_timeout: float = VIP_TIMEOUT


def member_ctx(ctx: Any, role: str, side: Side) -> Any:
    """*ctx* with *side* in *role*'s place (the results stay shared: a member's step reads what the
    service's own steps gave)."""
    out = copy.copy(ctx)
    setattr(out, role, side)
    return out


def _cross(service: str, requires: Sequence[str]) -> tuple[str, ...]:
    """A service step's own requirements, as another machine declares them (``keystone:target_backup``)."""
    return tuple(r if ":" in r else f"{service}:{r}" for r in requires)


def on_member(inner: Step, service: str, member: Member, role: str, machine: str,
              undo: Callable[[Any, Result | None], None] | None = None, requires: tuple[str, ...] = ()) -> Step:
    """The service's step *inner* run with *member* as the *role* side, journaled under *machine*."""
    def at(ctx: Any) -> Any:
        return member_ctx(ctx, role, member.side)

    def run(ctx: Any) -> Result:
        return inner.run(at(ctx))

    def inner_undo(ctx: Any, result: Result | None) -> None:
        inner.undo(at(ctx), result)

    def commands(ctx: Any) -> list[str]:
        return [f"on {member.name}: {c}" for c in inner.command_lines(at(ctx))]

    return Step(f"{machine}.{inner.name}", f"{inner.name}:{inner.state}", run, undo or inner_undo,
                (lambda ctx: inner.probe(at(ctx))) if inner.probe else None, host=role, kind=inner.kind,
                describe=f"{inner.describe or inner.name} — on {member.name}", prepare=inner.prepare,
                commands=commands if not inner.acts else (),
                acts=(lambda ctx: inner.acts(at(ctx))) if inner.acts else None,
                requires=_cross(service, inner.requires) + requires)


# ---------------------------------------------------------------------- the old members
def old_member_machine(member: Member, services: dict[str, Sequence[Step]]) -> ServiceMachine:
    """``ha.<member>``: every service's stop of the old controller, on this member."""
    machine = f"{PREFIX}.{member.name}"
    steps = [on_member(s, name, member, "source", machine) for name, steps in services.items() for s in steps
             if s.host == "source" and s.kind == "stop"]
    return ServiceMachine(machine, steps)


# ---------------------------------------------------------------------- the new members
def _backup_step(service: str, member: Member, machine: str) -> Step:
    """This member's own ``/etc/<service>`` into the vault before anything writes it (what undo puts back)."""
    name = f"{machine}.{service}.backup_config"

    def run(ctx: UpgradeContext) -> Result:
        return backup_dir(ctx, member.side, service, f"{PREFIX}-{member.name}-{service}-config", name)

    def commands(ctx: Any) -> list[str]:
        return [f"on {member.name}: {command_text(tar_out(member.side.etc, service))} | encrypt > "
                f"<vault>/{PREFIX}-{member.name}-{service}-config.osuv   # if it exists"]

    return Step(name, f"{service}.config_backed_up", run, host="target", kind="backup", prepare=True,
                provides=(f"{service}.config_backup",), commands=commands,
                describe=f"back up /etc/{service} of {member.name} into the vault")


def _restore_config(service: str, member: Member, machine: str, inner: Step) -> Callable[[Any, Result | None], None]:
    """The undo of a config step on a member: that member's own ``/etc/<service>`` as it was, from the vault."""
    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        t = member.side
        writeguard.assert_target(member_ctx(ctx, "target", t), inner, service)
        restore_dir(ctx, t, service, needed(ctx.results, machine, f"{service}.config_backup"),
                    f"{machine}.{service}.backup_config")
    return undo


def new_member_machine(member: Member, services: dict[str, Sequence[Step]]) -> ServiceMachine:
    """``ha.<member>``: every service's target stop and a backup of its config (both before the window), then
    its config, ownership and start on this member."""
    machine = f"{PREFIX}.{member.name}"
    prepare: list[Step] = []
    main: list[Step] = []
    for name, steps in services.items():
        mine = [s for s in steps if s.host == "target" and s.kind in PER_NODE_KINDS]
        if any(s.kind == "config" for s in mine):
            prepare.append(_backup_step(name, member, machine))
        for s in mine:
            if s.kind == "config":
                wrapped = on_member(s, name, member, "target", machine, _restore_config(name, member, machine, s),
                                    requires=(f"{name}.config_backup",))
            else:
                wrapped = on_member(s, name, member, "target", machine)
            # after the services' own windows, before the VIP moves: the clients still wait for these
            (prepare if s.prepare else main).append(wrapped if s.prepare else replace(wrapped, window="cutover"))
    return ServiceMachine(machine, prepare + main)


# ---------------------------------------------------------------------- the cluster
def cluster_machine(g: GroupSettings, databases: Sequence[str]) -> ServiceMachine:
    """``ha.cluster``: the new cluster holds the import on every node (*databases*: the carried ones)."""
    def run(ctx: UpgradeContext) -> Result:
        try:
            return galera.replication_report(g.new_db, databases)
        except galera.NotReady as exc:
            raise StepError(f"the new cluster does not hold the import on every node ({', '.join(exc.nodes)}): {exc} "
                            "— bring the node back into the cluster (it rejoins by a state transfer), then "
                            "`upgrade resume`; or `upgrade revert`", host=exc.nodes[0]) from None

    return ServiceMachine(CLUSTER_MACHINE, [Step(
        f"{CLUSTER_MACHINE}.replicated", "replicated", run, host="target", kind="verify", window="cutover",
        describe="every target DB node Synced in a cluster of all of them, every carried table the same "
                 "(rows, CHECKSUM TABLE) on each",
        commands=tuple(f"on {n}: SHOW GLOBAL STATUS LIKE 'wsrep_%'; CHECKSUM TABLE ... (each carried database)"
                       for n, _ in g.new_db))])


# ---------------------------------------------------------------------- the VIP
def _vip_side(member: Member, ctl: ServiceControl) -> Side:
    return replace(member.side, control=ctl)


def _holders(members: Sequence[Member], move: network.AddressMove) -> list[str]:
    return [m.name for m, has in zip(members, together.each(lambda m: network.holds(m.side.host, move), members),
                                     strict=True) if has]


def _wait_holders(g: GroupSettings, want: Callable[[list[str], list[str]], bool],
                  what: str) -> tuple[list[str], list[str]]:
    """Until *want*(old holders, new holders); StepError naming who holds the VIP after the timeout."""
    deadline = time.monotonic() + g.vip_timeout
    while True:
        old, new = _holders(g.old, g.vip), _holders(g.new, g.vip)
        if len(old) + len(new) > 1:
            raise StepError(f"two controllers hold the VIP {g.vip.ip}: {', '.join(old + new)} — stop keepalived on all "
                            "but one of them now", host=(old + new)[0])
        if want(old, new):
            return old, new
        if time.monotonic() > deadline:
            raise StepError(f"the VIP {g.vip.ip} is held by {', '.join(old + new) or 'nobody'} after "
                            f"{g.vip_timeout:.0f} s; expected {what}", host=g.check_host.name)
        time.sleep(0.1)


def vip_machine(g: GroupSettings) -> ServiceMachine:
    """``ha.vip``: the VIP from the old group's keepalived to the new group's (see the module's text)."""
    base = VIP_MACHINE
    units = g.vip_units

    def member_state(m: Member, ctl: ServiceControl) -> dict[str, Any]:
        link = network.link_state(m.side.host, g.vip.device)
        side = _vip_side(m, ctl)
        return {"mac": link["mac"], "holds": g.vip.ip in {a.split("/")[0] for a in link["addresses"]},
                "running": {u: control.is_running(side, u) for u in units}}

    def record(ctx: UpgradeContext) -> Result:
        old = dict(zip([m.name for m in g.old], together.each(lambda m: member_state(m, g.old_control), g.old),
                       strict=True))
        new = dict(zip([m.name for m in g.new], together.each(lambda m: member_state(m, g.new_control), g.new),
                       strict=True))
        holders = [n for n, s in {**old, **new}.items() if s["holds"]]
        if [n for n in holders if n in old] != holders or len(holders) != 1:
            raise StepError(f"the VIP {g.vip.ip} is held by {', '.join(holders) or 'nobody'}; before the move exactly "
                            f"one old controller ({', '.join(old)}) must hold it — fix keepalived there, then "
                            "`upgrade resume`", host=holders[0] if holders else g.old[0].name)
        return {"address": g.vip.address, "old": old, "new": new, "holder": holders[0]}

    def recorded(ctx: UpgradeContext) -> Result:
        return needed(ctx.results, base, "vip")

    def stop_units(members: Sequence[Member], ctl: ServiceControl) -> dict[str, list[str]]:
        def one(m: Member) -> list[str]:
            side, stopped = _vip_side(m, ctl), []
            for u in reversed(units):
                if control.is_running(side, u):
                    control.stop(side, u)
                    stopped.append(u)
            return stopped
        return dict(zip([m.name for m in members], together.each(one, members), strict=True))

    def start_units(members: Sequence[Member], ctl: ServiceControl, which: Callable[[Member, str], bool]) -> None:
        def one(m: Member) -> None:
            side = _vip_side(m, ctl)
            for u in units:
                if which(m, u) and not control.is_running(side, u):
                    control.start(side, u)
        together.each(one, members)

    def stop_old(ctx: UpgradeContext) -> Result:
        stopped = stop_units(g.old, g.old_control)
        ctx.failpoint(f"{base}.stop_old:inside")
        _wait_holders(g, lambda old, new: not old and not new, "nobody once keepalived stopped on the old side")
        return {"stopped": stopped}

    def stop_old_undo(ctx: UpgradeContext, result: Result | None) -> None:
        rec = recorded(ctx)
        start_units(g.old, g.old_control, lambda m, u: rec["old"][m.name]["running"][u])
        old, _ = _wait_holders(g, lambda old, new: len(old) == 1 and not new, "one old controller")
        holder = next(m for m in g.old if m.name == old[0])
        network.announce(holder.side.host, g.vip)
        network.wait_answering(g.check_host, g.vip.ip, rec["old"][holder.name]["mac"], f"old controller {holder.name}",
                               g.vip_timeout)

    def start_new(ctx: UpgradeContext) -> Result:
        old, new = _holders(g.old, g.vip), _holders(g.new, g.vip)
        if old:
            raise StepError(f"{', '.join(old)} of the old side still hold(s) the VIP {g.vip.ip}: the new side's "
                            "keepalived is not started while it does (never two holders)", host=old[0])
        start_units(g.new, g.new_control, lambda m, u: True)
        ctx.failpoint(f"{base}.start_new:inside")
        _, new = _wait_holders(g, lambda old, new: len(new) == 1 and not old, "one new controller")
        return {"holder": new[0]}

    def start_new_undo(ctx: UpgradeContext, result: Result | None) -> None:
        rec = recorded(ctx)
        stop_units(g.new, g.new_control)
        # units the new side ran before the move (none, in a fresh group) start again once the VIP is back
        if any(r for s in rec["new"].values() for r in s["running"].values()):
            start_units(g.new, g.new_control, lambda m, u: rec["new"][m.name]["running"][u])
        _wait_holders(g, lambda old, new: not new, "no new controller")

    def check_run(ctx: UpgradeContext) -> Result:
        _, new = _wait_holders(g, lambda old, new: len(new) == 1 and not old, "one new controller")
        holder = next(m for m in g.new if m.name == new[0])
        mac = network.link_state(holder.side.host, g.vip.device)["mac"]
        network.announce(holder.side.host, g.vip)
        seconds = network.wait_answering(g.check_host, g.vip.ip, mac, f"new controller {holder.name}", g.vip_timeout)
        return {"holder": holder.name, "mac": mac, "from": g.check_host.name, "seconds": seconds}

    def shown(members: Sequence[Member], ctl: ServiceControl, verb: str, order: Sequence[str]) -> list[str]:
        return [f"on {m.name}: {command_text(ctl.argv(verb, u))}" for m in members for u in order]

    return ServiceMachine(base, [
        Step(f"{base}.record", "vip_recorded", record, host="local", kind="switch", window="cutover",
             provides=("vip",),
             describe=f"record who holds {g.vip.address} and which of {', '.join(units)} run, on every controller",
             commands=tuple(f"on {m.name}: ip -j addr show dev {g.vip.device}" for m in (*g.old, *g.new))),
        Step(f"{base}.stop_old", "vip_released_by_old", stop_old, stop_old_undo, host="source", kind="switch",
             window="cutover", requires=("vip",),
             describe=f"stop {', '.join(reversed(units))} on every old controller; wait until none holds {g.vip.ip}",
             commands=tuple(shown(g.old, g.old_control, "stop", list(reversed(units))))),
        Step(f"{base}.start_new", "vip_held_by_new", start_new, start_new_undo, host="target", kind="switch",
             window="cutover", requires=("vip",), revert_stops=True,
             describe=f"start {', '.join(units)} on every new controller (nobody holds {g.vip.ip}); wait until "
                      "one does",
             commands=tuple(shown(g.new, g.new_control, "start", units))),
        Step(f"{base}.check", "vip_answering_from_new", check_run, host="local", kind="switch", window="cutover",
             describe=f"gratuitous ARP from the new holder; {g.vip.ip} answers from its MAC alone, seen from "
                      f"{g.check_host.name}",
             commands=(f"arping -U -c 3 -I {g.vip.device} {g.vip.ip}   # on the new holder",
                       f"arping -b -c 2 {g.vip.ip}   # on {g.check_host.name}")),
    ])


# ---------------------------------------------------------------------- the whole
def machines(g: GroupSettings, services: dict[str, Sequence[Step]], databases: Sequence[str],
             ) -> tuple[list[ServiceMachine], list[ServiceMachine], list[ParallelGroup]]:
    """(machines before the services, machines after them, their parallel groups) for *services* (name -> its
    steps, as its machine runs them)."""
    before = [old_member_machine(m, services) for m in g.old_api]
    before = [m for m in before if m.steps]
    after_new = [new_member_machine(m, services) for m in g.new_api]
    after_new = [m for m in after_new if m.steps]
    groups = [ParallelGroup(frozenset(m.name for m in ms), g.pool) for ms in (before, after_new) if ms]
    return before, [cluster_machine(g, databases), *after_new, vip_machine(g)], groups
