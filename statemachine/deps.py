"""What steps need from each other, checked when the machines are built.

A step declares the names of the results it reads (``Step.requires``) and of what its own result
gives (``Step.provides``), as taskflow atoms do. A requirement is met by an earlier step of the same
machine, or — written ``<machine>:<name>`` — by a step of another machine earlier in the run (when
machines overlap, the step waits for it; a machine not in the run is taken as done). A requirement
nothing meets is a programming error, raised when the machines are built, before anything is
journaled: never a KeyError in the middle of a revert.

At run time the runner publishes each done step's result under ``<machine>:<name>`` for every name it
provides; steps read them with :func:`needed`.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from statemachine.step import Result, Step


class DependencyError(Exception):
    """A step requires what no step provides where it must: a programming error in the step lists."""


def key(machine: str, name: str) -> str:
    """Where a provided result is published in the context's results (``glance:target_backup``)."""
    return f"{machine}:{name}"


def split(machine: str, requirement: str) -> tuple[str, str]:
    """``keystone:api`` -> (keystone, api); a bare name belongs to *machine* itself."""
    other, sep, name = requirement.partition(":")
    return (other, name) if sep else (machine, requirement)


def check_machine(machine: str, steps: Sequence[Step]) -> None:
    """Every requirement of *machine*'s own names is provided by an earlier step of it, and no name is
    provided twice (a reader would not know which result it gets)."""
    provided: dict[str, str] = {}
    for step in steps:
        for req in step.requires:
            owner, name = split(machine, req)
            if owner == machine and name not in provided:
                have = ", ".join(sorted(provided)) or "nothing"
                raise DependencyError(
                    f"machine {machine}: step {step.name} requires {name!r}, which no earlier step of {machine} "
                    f"provides (earlier steps provide: {have}) — declare it in the provides of the step that "
                    "makes it, before this one")
        for name in step.provides:
            if name in provided:
                raise DependencyError(f"machine {machine}: {name!r} is provided by both {provided[name]} and "
                                      f"{step.name}")
            provided[name] = step.name


def providers(machines: Mapping[str, Sequence[Step]]) -> dict[str, str]:
    """``<machine>:<name>`` -> the step that provides it, for every machine."""
    return {key(m, name): step.name for m, steps in machines.items() for step in steps for name in step.provides}


def cross_waits(machines: Mapping[str, Sequence[Step]]) -> dict[str, frozenset[str]]:
    """Check every machine (in run order) and return, per step, the steps of other machines it waits for:
    the providers of its ``<machine>:<name>`` requirements whose machine is in *machines*. The provider's
    machine must come earlier, so that the strict sequence meets it too and an overlap cannot deadlock."""
    order = list(machines)
    made = providers(machines)
    out: dict[str, frozenset[str]] = {}
    for m, steps in machines.items():
        check_machine(m, steps)
        for step in steps:
            waits = set()
            for req in step.requires:
                owner, name = split(m, req)
                if owner == m or owner not in machines:
                    continue
                if key(owner, name) not in made:
                    raise DependencyError(f"machine {m}: step {step.name} requires {req!r}, which no step of "
                                          f"{owner} provides")
                if order.index(owner) > order.index(m):
                    raise DependencyError(f"machine {m}: step {step.name} requires {req!r}, but {owner} runs "
                                          f"after {m}")
                waits.add(made[key(owner, name)])
            if waits:
                out[step.name] = frozenset(waits)
    return out


def publish(results: MutableMapping[str, Any], machine: str, step: Step, result: Result | None) -> None:
    """Store *result* under the step's name and under each name it provides."""
    results[step.name] = result
    for name in step.provides:
        results[key(machine, name)] = result


def needed(results: Mapping[str, Any], machine: str, name: str) -> Any:
    """The result providing *name* (``target_backup``, or ``keystone:api``) to a step of *machine*."""
    owner, what = split(machine, name)
    try:
        return results[key(owner, what)]
    except KeyError:
        raise DependencyError(f"{key(owner, what)} is not available: the step that reads it must declare it in its "
                              "requires (checked when the machine is built), and its provider must be done") from None
