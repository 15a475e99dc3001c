"""IP switchover: move the controller's service addresses (the management VIP) to the new controller.

The last machine of a run (``network``), after every service serves on the new controller. For
each address, in journal steps of their own (``network.<name>.<action>``):

1. ``record``: ``ip -j addr`` on both controllers — who holds the address now, and both MACs;
2. ``remove_old``: ``ip addr del`` on the old controller, through the old controller's *own*
   admin address (the plan refuses a source host reached through a moved address: deleting the
   address that carries the tool's SSH session would hang it, lab-recipes §13.1);
   ``persist``: the address leaves the old controller's ifupdown files too, so its next boot does not
   take it back (``services/fleet/addrconfig.py``; other layouts are refused before the run);
3. ``add_new``: ``ip addr add`` on the new controller;
4. ``announce``: gratuitous ARP from the new controller (``arping -U -c 3``), or neighbours keep
   sending to the old MAC for up to ~50 s (§12);
5. ``check``: from another host (a compute node, or the tool's own host) the address must answer
   ARP from the new controller's MAC — and from no other MAC (no duplicate address).

After every address: ``old_units.record`` reads whether each unit the run stopped on the old
controller starts at boot, and ``old_units.disable`` disables and masks them
(``services/infra/enablement.py``): the old controller cannot come back by itself. Undo re-enables
exactly what was enabled before.

Undo walks back the same way: the address leaves the new controller, returns to the old one,
which announces it, and the check host sees the old MAC again. At every point a crash leaves the
address on at most one controller, and resume or revert puts it on exactly one.
Optionally ``net.ipv4.ip_nonlocal_bind=1`` is set on the new controller first (services there
that bind the address itself can then start before it arrives, §13.3); undo restores the value.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from dataclasses import dataclass

from services.fleet import addrconfig
from services.infra import enablement
from services.infra.context import UpgradeContext
from services.infra.host import Host, check
from statemachine import failpoints
from statemachine.deps import needed
from statemachine.machine import ServiceMachine
from statemachine.step import Result, Step, StepError

MACHINE = "network"
REPLY = re.compile(r"reply from \S+ \[([0-9A-Fa-f:]{17})\]")


@dataclass(frozen=True)
class AddressMove:
    """One address to move: ``198.51.100.10/24`` on ``eth0``, named ``management`` in the journal."""

    name: str
    address: str
    device: str

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.address).ip)


@dataclass(frozen=True)
class NetworkSettings:
    addresses: tuple[AddressMove, ...]
    nonlocal_bind: bool = False
    #: how long the check host may take to see the address answer from the new controller
    check_timeout: float = 30.0


def link_state(host: Host, device: str) -> dict:
    """``ip -j addr show dev DEVICE``: the device's MAC and its IPv4 addresses (``a.b.c.d/nn``)."""
    res = check(host, ["ip", "-j", "addr", "show", "dev", device], f"reading the addresses of {device}", timeout=60)
    try:
        link = json.loads(res.stdout)[0]
    except (ValueError, IndexError) as exc:
        raise StepError(f"cannot parse `ip -j addr show dev {device}` on {host.name}: {exc}", host=host.name,
                        output=res.output) from None
    addrs = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet"]
    return {"mac": link.get("address", "").lower(), "addresses": addrs}


def holds(host: Host, move: AddressMove) -> bool:
    return move.ip in {a.split("/")[0] for a in link_state(host, move.device)["addresses"]}


def add(host: Host, move: AddressMove) -> bool:
    """``ip addr add`` unless already there (idempotent); True if it was added now."""
    if holds(host, move):
        return False
    check(host, ["ip", "addr", "add", move.address, "dev", move.device], f"adding {move.address}", timeout=60)
    return True


def delete(host: Host, move: AddressMove) -> bool:
    """``ip addr del`` if there (idempotent); True if it was deleted now."""
    if not holds(host, move):
        return False
    check(host, ["ip", "addr", "del", move.address, "dev", move.device], f"removing {move.address}", timeout=60)
    return True


def announce(host: Host, move: AddressMove) -> None:
    """Gratuitous ARP: every neighbour updates its cache to this host's MAC at once."""
    check(host, ["arping", "-U", "-c", "3", "-I", move.device, move.ip], f"announcing {move.ip} (gratuitous ARP)",
          ok=(0, 1), timeout=60)


def answering_macs(host: Host, ip: str) -> set[str]:
    """The MACs that answer ARP for *ip* as seen from *host* (broadcast probes: every holder answers)."""
    route = check(host, ["ip", "-j", "route", "get", ip], f"finding the route to {ip}", timeout=60)
    try:
        dev = json.loads(route.stdout)[0]["dev"]
    except (ValueError, IndexError, KeyError):
        raise StepError(f"{host.name} has no route to {ip}", host=host.name, output=route.output) from None
    res = check(host, ["arping", "-b", "-c", "2", "-I", dev, ip], f"asking who answers for {ip}", ok=(0, 1),
                timeout=60)
    return {m.lower() for m in REPLY.findall(res.stdout)}


def wait_answering(host: Host, ip: str, mac: str, who: str, timeout: float) -> float:
    """Poll until only *mac* answers for *ip*; returns the seconds it took, or StepError with what answered."""
    started = time.monotonic()
    seen: set[str] = set()
    while True:
        seen = answering_macs(host, ip)
        if seen == {mac}:
            return round(time.monotonic() - started, 3)
        if time.monotonic() - started > timeout:
            what = ", ".join(sorted(seen)) or "nobody"
            raise StepError(f"{ip} does not answer from the {who} ({mac}) as seen from {host.name} within "
                            f"{timeout:.0f} s: {what} answered", host=host.name)
        time.sleep(0.2)


def _steps(settings: NetworkSettings, check_host: Host, stoppers: tuple[str, ...] = ()) -> list[Step]:
    steps: list[Step] = []
    if settings.nonlocal_bind:
        key = "net.ipv4.ip_nonlocal_bind"

        def bind_run(ctx: UpgradeContext) -> Result:
            t = ctx.target.host
            before = check(t, ["sysctl", "-n", key], f"reading {key}", timeout=60).stdout.strip()
            check(t, ["sysctl", "-w", f"{key}=1"], f"setting {key}=1", timeout=60)
            return {"before": before}

        def bind_undo(ctx: UpgradeContext, result: Result | None) -> None:
            if result:  # interrupted before it recorded the old value: 1 is harmless, leave it
                check(ctx.target.host, ["sysctl", "-w", f"{key}={result['before']}"], f"restoring {key}",
                      timeout=60)

        steps.append(Step(f"{MACHINE}.nonlocal_bind", "nonlocal_bind_set", bind_run, bind_undo, host="target",
                          window="cutover", describe=f"sysctl {key}=1 on the new controller"))
    for move in settings.addresses:
        steps += _address_steps(move, settings, check_host)
    return steps + _old_unit_steps(stoppers)


def _old_unit_steps(stoppers: tuple[str, ...]) -> list[Step]:
    """Disable and mask on the old controller every unit the run stopped there (the ``source_units`` of
    each machine in *stoppers*), after the switchover: a reboot must not bring the old cloud back."""
    requires = tuple(f"{m}:source_units" for m in stoppers)

    def stopped(ctx: UpgradeContext) -> list[str]:
        out: list[str] = []
        for req in requires:
            out += [u["unit"] for u in needed(ctx.results, MACHINE, req)["units"] if u["was_running"]]
        return list(dict.fromkeys(out))

    def record(ctx: UpgradeContext) -> Result:
        return {"units": [{"unit": u, "before": enablement.state(ctx.source, u)} for u in stopped(ctx)]}

    def disable_run(ctx: UpgradeContext) -> Result:
        done = []
        for u in needed(ctx.results, MACHINE, "old_units")["units"]:
            actions = enablement.disable(ctx.source, u["unit"], u["before"])
            failpoints.hit(f"{MACHINE}.old_units.disable:inside")
            done.append({"unit": u["unit"], "before": u["before"], "actions": actions})
        return {"disabled": done}

    def disable_undo(ctx: UpgradeContext, result: Result | None) -> None:
        # with or without a result (a crash inside): back to the state recorded before, unit by unit
        for u in reversed(needed(ctx.results, MACHINE, "old_units")["units"]):
            enablement.restore(ctx.source, u["unit"], u["before"])

    def commands(ctx: UpgradeContext) -> list[str]:
        verbs = "chkconfig UNIT off / update-rc.d UNIT disable" if ctx.source.control.kind == "sysvinit" \
            else "disable + mask"
        return [f"{verbs}: every unit stopped on the old controller ({', '.join(stoppers) or 'none'})"]

    return [
        Step(f"{MACHINE}.old_units.record", "old_units_recorded", record, host="source", kind="switch",
             requires=requires, provides=("old_units",),
             describe="record which stopped units of the old controller start at boot"),
        Step(f"{MACHINE}.old_units.disable", "old_units_disabled", disable_run, disable_undo, host="source",
             kind="switch", requires=("old_units",), commands=commands,
             describe="disable and mask on the old controller every unit the run stopped"),
    ]


def _address_steps(m: AddressMove, settings: NetworkSettings, check_host: Host) -> list[Step]:
    base = f"{MACHINE}.{m.name}"
    holder = f"{m.name}.holder"  # what record provides: who held the address before the switch

    def recorded(ctx: UpgradeContext) -> Result:
        return needed(ctx.results, MACHINE, holder)

    def record(ctx: UpgradeContext) -> Result:
        old, new = link_state(ctx.source.host, m.device), link_state(ctx.target.host, m.device)
        old_had = m.ip in {a.split("/")[0] for a in old["addresses"]}
        new_had = m.ip in {a.split("/")[0] for a in new["addresses"]}
        if not old_had and not new_had:
            raise StepError(f"{m.address} ({m.name}) is on neither controller's {m.device}: "
                            f"old {ctx.source.host.name} has {old['addresses']}, new {ctx.target.host.name} has "
                            f"{new['addresses']} — fix [network] addresses in the plan", host=ctx.source.host.name)
        return {"address": m.address, "device": m.device, "old_had": old_had, "new_had": new_had,
                "old_mac": old["mac"], "new_mac": new["mac"], "old_addresses": old["addresses"],
                "new_addresses": new["addresses"]}

    def remove_old(ctx: UpgradeContext) -> Result:
        removed = delete(ctx.source.host, m)
        failpoints.hit(f"{base}.remove_old:inside")
        if holds(ctx.source.host, m):
            raise StepError(f"{m.address} is still on {ctx.source.host.name} after `ip addr del`",
                            host=ctx.source.host.name)
        return {"removed": removed}

    def remove_old_undo(ctx: UpgradeContext, result: Result | None) -> None:
        rec = recorded(ctx)
        if not rec["old_had"]:
            return
        add(ctx.source.host, m)
        announce(ctx.source.host, m)
        if rec["old_mac"] != rec["new_mac"]:
            wait_answering(check_host, m.ip, rec["old_mac"], f"old controller {ctx.source.host.name}",
                           settings.check_timeout)

    def persist(ctx: UpgradeContext) -> Result:
        try:
            edited = addrconfig.persist_removal(ctx.source.host, m)
        except ValueError as exc:  # `upgrade check` and the run's preflight refuse this before anything
            raise StepError(f"cannot drop {m.address} from the old controller's configuration: {exc}",
                            host=ctx.source.host.name) from None
        failpoints.hit(f"{base}.persist:inside")
        return {"files": edited}

    def persist_undo(ctx: UpgradeContext, result: Result | None) -> None:
        host = ctx.source.host
        addrconfig.restore(host, result["files"] if result else addrconfig.commented_back(host, m))

    def add_new(ctx: UpgradeContext) -> Result:
        added = add(ctx.target.host, m)
        failpoints.hit(f"{base}.add_new:inside")
        if not holds(ctx.target.host, m):
            raise StepError(f"{m.address} is not on {ctx.target.host.name} after `ip addr add`",
                            host=ctx.target.host.name)
        return {"added": added}

    def add_new_undo(ctx: UpgradeContext, result: Result | None) -> None:
        if not recorded(ctx)["new_had"]:
            delete(ctx.target.host, m)

    def announce_run(ctx: UpgradeContext) -> Result:
        announce(ctx.target.host, m)
        return {"arping": f"arping -U -c 3 -I {m.device} {m.ip}"}

    def check_run(ctx: UpgradeContext) -> Result:
        mac = recorded(ctx)["new_mac"]
        seconds = wait_answering(check_host, m.ip, mac, f"new controller {ctx.target.host.name}",
                                 settings.check_timeout)
        return {"from": check_host.name, "mac": mac, "seconds": seconds}

    return [
        Step(f"{base}.record", f"{m.name}_recorded", record, host="source", kind="switch", window="cutover",
             provides=(holder,),
             describe=f"record who holds {m.address} (ip -j addr on both controllers)"),
        Step(f"{base}.remove_old", f"{m.name}_removed_from_old", remove_old, remove_old_undo, host="source",
             kind="switch", window="cutover", requires=(holder,),
             describe=f"ip addr del {m.address} dev {m.device} on the old controller (via its own address)"),
        Step(f"{base}.persist", f"{m.name}_removed_from_old_config", persist, persist_undo, host="source",
             kind="switch", window="cutover",
             describe=f"comment {m.ip} out of the old controller's /etc/network/interfaces (if it is there)"),
        Step(f"{base}.add_new", f"{m.name}_added_to_new", add_new, add_new_undo, host="target", revert_stops=True,
             kind="switch", window="cutover", requires=(holder,),
             describe=f"ip addr add {m.address} dev {m.device} on the new controller"),
        Step(f"{base}.announce", f"{m.name}_announced", announce_run, host="target", kind="switch", window="cutover",
             describe=f"gratuitous ARP for {m.ip} from the new controller"),
        Step(f"{base}.check", f"{m.name}_answering_from_new", check_run, host="local", kind="switch", window="cutover",
             requires=(holder,),
             describe=f"{m.ip} answers from the new controller's MAC, seen from the check host"),
    ]


def machine(settings: NetworkSettings, check_host: Host, stoppers: tuple[str, ...] = ()) -> ServiceMachine:
    """The ``network`` machine: runs after every service machine; *stoppers* are the machines whose
    ``source_units`` (the units stopped on the old controller) it disables at the end."""
    return ServiceMachine(MACHINE, _steps(settings, check_host, stoppers))
