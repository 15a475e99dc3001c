"""The step contract: what makes resume and revert exact (DESIGN.md §3).

A step is a pair, like a taskflow atom: ``run`` does one side effect and returns JSON-able facts;
``undo`` is its inverse and gets exactly what ``run`` returned — or ``None`` when ``run`` was
interrupted before it could return (the effect may then be absent, partial or complete, so an
undo must be safe in all three cases).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Result = dict[str, Any]


class StepError(Exception):
    """A step failed. ``host`` and ``output`` say where and what the command printed."""

    def __init__(self, message: str, host: str | None = None, command: str | None = None,
                 rc: int | None = None, output: str | None = None) -> None:
        super().__init__(message)
        self.host = host
        self.command = command
        self.rc = rc
        self.output = output


def _no_undo(ctx: Any, result: Result | None) -> None:
    """Read-only steps have nothing to undo."""


#: what a step does: stop or start units, back up the target, dump the source, carry config over,
#: import, create databases, upgrade the schema, run a status check, a data fix-up, set ownership,
#: copy files or data, verify the API, run online data migrations, or anything else
KINDS = ("stop", "backup", "dump", "config", "import", "create", "schema", "status", "fixup", "ownership",
         "start", "copy", "verify", "migrate", "switch", "other")
#: a step's part in the maintenance window: its service's (``opens``, ``closes``), or the run's cut-over
WINDOW_EDGES = ("", "opens", "closes", "cutover")


@dataclass(frozen=True)
class Step:
    """One step of a service upgrade.

    name:   stable key in the journal, ``<service>.<action>`` (never renamed once released).
    state:  the machine state reached when this step is done (``source_stopped``, ``dumped``, …).
    run:    ``run(ctx) -> Result``; idempotent: running it twice has the effect of running it once.
    undo:   ``undo(ctx, result_or_None)``; idempotent too, since a revert can die and run again.
    probe:  optional ``probe(ctx) -> bool``: is the effect already in place? Used on resume for a
            step whose intent has no done: True means the effect is there and the step is re-run
            only to collect its facts, which an idempotent ``run`` does without changing anything.
    host:   which side the step acts on (``source``/``target``/``local``), for the journal.
    describe: a one-line description of what the step does, for `upgrade plan`.
    prepare: a leading step that runs before any machine's other steps (see the field).
    finish: a trailing step that runs after every machine's other steps (see the field).
    commands: the exact commands ``run`` issues, as an operator would type them, for `upgrade plan`:
            a tuple, or ``commands(ctx) -> list[str]`` when they depend on the plan. That ``ctx`` has the
            ``source``, ``target`` and ``services`` of the run's context but may have nothing else: it
            builds text from the same argv helpers ``run`` uses and never acts. Hand-written only where
            the commands cannot be recorded: see ``acts``.
    acts:   the part of ``run`` that acts on the controllers through their hosts alone (no database
            connection, no file read), ``acts(ctx) -> Any``: `upgrade plan` runs it against recording
            hosts that collect each command instead of running it, so plan and run cannot drift
            (``services/infra/recording.py``). A step with ``acts`` needs no ``commands``.
    kind:   what the step does (one of :data:`KINDS`): the maintenance window's breakdown reads it.
    window: ``opens`` for the step whose intent opens the service's maintenance window (the first
            stop of the old controller's API), ``closes`` for the one whose done closes it (the API
            verified on the new one), ``cutover`` for a step of the cut-over the clients still wait for once
            the services are verified (the management address or the VIP moved to the new side, the other
            HA members started): the run's window lasts until every such step is done; "" otherwise.
    requires: names of results the step reads (like a taskflow atom's): each is ``provides``d by an
            earlier step of its machine, or, as ``<service>:<name>``, by a step of another service
            earlier in the run (a wait when services overlap; ignored when that service is not in
            the run). Checked when the machine is built (``statemachine/deps.py``): a missing one is a
            programming error before anything runs, never a KeyError in the middle of a revert. Read
            with ``statemachine.deps.needed``.
    provides: names of what the step's result gives later steps.
    """

    name: str
    state: str
    run: Callable[[Any], Result]
    undo: Callable[[Any, Result | None], None] = _no_undo
    probe: Callable[[Any], bool] | None = None
    host: str = "local"
    describe: str = ""
    commands: tuple[str, ...] | Callable[[Any], list[str]] = field(default_factory=tuple)
    #: a preparation step: it acts on what serves nothing yet (the new controller) or only reads what
    #: serves, so the runner runs every machine's leading preparation steps before any other step:
    #: they happen before the first service stops, outside the maintenance window
    prepare: bool = False
    #: a finishing step: work the release documents as done while the service runs (online data
    #: migrations), so the runner runs every machine's trailing finishing steps after every other
    #: step: after the last API is verified, outside the maintenance window
    finish: bool = False
    #: a target-side step whose failed undo stops the revert: going on to the source's steps would harm
    #: the old controller (an address still on the new controller must not be added back to the old one)
    revert_stops: bool = False
    #: the side the undo acts on when it is not ``host`` (the dump reads the source, its undo restores the
    #: target's database it streamed into): a failed undo on the target does not stop the revert
    undo_host: str = ""
    acts: Callable[[Any], Any] | None = None
    kind: str = "other"
    window: str = ""
    requires: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"step {self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.window not in WINDOW_EDGES:
            raise ValueError(f"step {self.name}: window {self.window!r} is not one of {WINDOW_EDGES}")

    def command_lines(self, ctx: Any) -> list[str]:
        """The commands of this step for *ctx* (see ``commands``)."""
        return list(self.commands(ctx) if callable(self.commands) else self.commands)
