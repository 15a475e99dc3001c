"""Rebuild where every machine stands from the journal alone (DESIGN.md §3, rule 3).

Deterministic replay: the events of a run, read in order, say for each step whether it is
committed (its ``done`` is in the journal and no ``undone`` followed), attempted but not
committed (an ``intent`` or ``failed`` with no ``done``: its effect may be partial), and what
result each committed step returned. Nothing else is needed to continue or to undo.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from journal.store import Event


@dataclass
class MachineView:
    committed: dict[str, Any] = field(default_factory=dict)   # step -> result, in commit order
    attempted: str | None = None        # a step started (or failed) but not committed
    last_error: str | None = None
    undoing: str | None = None          # a step whose undo started but did not finish
    undone: set[str] = field(default_factory=set)  # steps done once and undone since (by a revert)
    last_event: Event | None = None


@dataclass
class RunView:
    machines: dict[str, MachineView] = field(default_factory=dict)

    def machine(self, name: str) -> MachineView:
        return self.machines.setdefault(name, MachineView())

    @property
    def results(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for mv in self.machines.values():
            out.update(mv.committed)
        return out


def replay(events: Iterable[Event]) -> RunView:
    view = RunView()
    for e in events:
        if e.step is None:
            continue
        mv = view.machine(e.machine)
        mv.last_event = e
        if e.kind == "intent":
            mv.attempted = e.step
        elif e.kind == "done":
            mv.committed[e.step] = e.result
            mv.attempted = None
            mv.last_error = None
        elif e.kind == "failed":
            mv.attempted = e.step
            mv.last_error = e.output
        elif e.kind == "undo_intent":
            mv.undoing = e.step
        elif e.kind == "undone":
            mv.committed.pop(e.step, None)
            mv.undone.add(e.step)
            if mv.attempted == e.step:
                mv.attempted = None
            mv.undoing = None
        elif e.kind == "undo_failed":
            mv.last_error = e.output
    return view
