"""Rebuild where every machine stands from the journal alone (DESIGN.md §3, rule 3).

Deterministic replay: the events of a run, read in order, say for each step whether it is
committed (its ``done`` is in the journal and no ``undone`` followed), attempted but not
committed (an ``intent`` or ``failed`` with no ``done``: its effect may be partial), and what
result each committed step returned. Nothing else is needed to continue or to undo.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
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
    """The view of decoded events (a journal export, the status commands)."""
    return _replay(((e.machine, e.step, e.kind, e.output, e.result) for e in events), lambda r: r)


def replay_rows(rows: Iterable[tuple[str, str | None, str, str | None, str | None]]) -> RunView:
    """The view of raw step rows (machine, step, kind, output, result JSON), what resume and revert
    read first (``Journal.step_rows``): a result is decoded only if it is its step's last ``done``, the
    one a resumed step or an undo needs, so a journal of a million events decides fast. The hash chain
    is walked by `journal verify`, not here."""
    return _replay(rows, lambda raw: json.loads(raw) if raw else None)


def _replay(rows: Iterable[tuple[str, str | None, str, str | None, Any]], decode: Callable[[Any], Any]) -> RunView:
    view = RunView()
    machines = view.machines
    for machine, step, kind, output, result in rows:
        if step is None:
            continue
        mv = machines.get(machine)
        if mv is None:
            mv = machines[machine] = MachineView()
        if kind == "intent":
            mv.attempted = step
        elif kind == "done":
            mv.committed[step] = result
            mv.attempted = None
            mv.last_error = None
        elif kind == "failed":
            mv.attempted = step
            mv.last_error = output
        elif kind == "undo_intent":
            mv.undoing = step
        elif kind == "undone":
            mv.committed.pop(step, None)
            mv.undone.add(step)
            if mv.attempted == step:
                mv.attempted = None
            mv.undoing = None
        elif kind == "undo_failed":
            mv.last_error = output
    for mv in machines.values():
        mv.committed = {k: decode(v) for k, v in mv.committed.items()}
    return view
