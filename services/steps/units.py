"""Stopping and starting a service's units on one controller (the window opens with the source's stop)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.infra import control, listeners, together
from services.infra.before import keep as keep_before
from services.infra.context import UpgradeContext
from services.infra.host import command_text
from services.infra.listeners import Listen
from services.infra.overhead import Tally
from services.infra.settings import Side
from services.steps.databases import svc
from statemachine.step import Result, Step, StepError

UnitsFn = Callable[[Any, str], list[str]]


def single_unit(ctx: Any, role: str, name: str) -> list[str]:
    return [svc(ctx, name).unit]


# ---------------------------------------------------------------------- stop / start
def stop_step(name: str, role: str, units: UnitsFn | None = None, listens: tuple[Listen, ...] = ()) -> Step:
    """Stop the service's units on one side (the source's stop opens the window). Its commands are
    written out (``Step.commands``), not recorded: what it stops depends on what the status command
    answers, which a recording host cannot say. On the source it first records where the service's
    API listens (*listens*, read from its config there): a revert ends once those listen again."""
    def side(ctx: UpgradeContext) -> Side:
        return ctx.source if role == "source" else ctx.target

    def names(ctx: Any) -> list[str]:
        return units(ctx, role) if units else single_unit(ctx, role, name)

    def run(ctx: UpgradeContext) -> Result:
        # the units are asked side by side (before: what undo restarts; after: none may still write),
        # stopped one by one in their order
        units = names(ctx)
        tally = Tally()
        with tally.timed("checks"):
            was = together.each(lambda u: control.is_running(side(ctx), u), units)
            heard = listeners.serving(side(ctx), listens) if role == "source" and listens else None
        if role == "source":
            # what ran, kept before anything stops: an attempt killed after its stops would otherwise be run
            # again on resume, find the old units stopped and leave them stopped on revert
            with tally.timed("vault"):
                first, _ = keep_before(ctx, f"{name}.stop_source", f"units-{side(ctx).host.name}",
                                       {"was_running": dict(zip(units, was, strict=True)),
                                        "listeners": sorted(heard) if heard is not None else None})
            was = [first["was_running"].get(u, r) for u, r in zip(units, was, strict=True)]
            heard = set(first["listeners"]) if first["listeners"] is not None else None
        for unit, running in zip(units, was, strict=True):
            if running:
                control.stop(side(ctx), unit)
        with tally.timed("checks"):
            after = together.each(lambda u: control.is_running(side(ctx), u), units)
        still = [u for u, r in zip(units, after, strict=True) if r]
        if still:
            raise StepError(f"{', '.join(still)} on {side(ctx).host.name} still run(s) after stop",
                            host=side(ctx).host.name)
        out: Result = {"units": [{"unit": u, "was_running": r} for u, r in zip(units, was, strict=True)],
                       "overhead": tally.result()}
        if heard is not None:  # what the revert waits for (upgrade/serving.py)
            out["listeners"] = sorted(heard)
        return out

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        # the old controller must serve again after a revert; a target service is restarted
        # only if it ran before the upgrade touched it
        if result is None and role == "target":
            return
        was = {u["unit"]: u["was_running"] for u in (result or {}).get("units", [])}
        for unit in reversed(names(ctx)):
            if (result is None or was.get(unit)) and not control.is_running(side(ctx), unit):
                control.start(side(ctx), unit)

    def probe(ctx: UpgradeContext) -> bool:
        return not any(control.is_running(side(ctx), u) for u in names(ctx))

    def commands(ctx: UpgradeContext) -> list[str]:
        out = []
        for unit in names(ctx):
            out += [command_text(side(ctx).control.argv("status", unit)),
                    command_text(side(ctx).control.argv("stop", unit)) + "   # if it runs"]
        return out

    # the source's: what the switchover disables on the old controller (services/fleet/network.py)
    return Step(f"{name}.stop_{role}", f"{role}_stopped", run, undo, probe, host=role, kind="stop",
                provides=("source_units",) if role == "source" else (), window="opens" if role == "source" else "",
                describe=f"stop {name} on the {role} controller", commands=commands,
                prepare=role == "target")  # the new controller serves nothing yet


def start_target_step(name: str, units: UnitsFn | None = None) -> Step:
    def names(ctx: Any) -> list[str]:
        # role "start": a service may hold a unit back on start (nova's metadata API under neutron)
        return list(reversed(units(ctx, "start"))) if units else single_unit(ctx, "target", name)

    def run(ctx: UpgradeContext) -> Result:
        started = []
        for unit in names(ctx):
            control.start(ctx.target, unit)
            started.append(unit)
        return {"units": started}

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        for unit in reversed(names(ctx)):
            if control.is_running(ctx.target, unit):
                control.stop(ctx.target, unit)

    def probe(ctx: UpgradeContext) -> bool:
        return all(control.is_running(ctx.target, u) for u in names(ctx))

    # its commands in `upgrade plan`: what run issues against a recording host (it only starts units)
    return Step(f"{name}.start_target", "target_started", run, undo, probe, host="target", kind="start", acts=run,
                describe=f"start {name} on the target controller")
