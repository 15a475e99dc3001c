"""A recording host: it collects the commands a step would run instead of running them.

`upgrade plan` runs each step's ``acts`` (``Step.acts``: the part of ``run`` that acts on the
controllers through their hosts alone) against a recording host on each side, so the commands the
plan shows are the ones a run issues, from the same code: plan and run cannot drift. A recording host
never reads or writes a file and answers every command with exit 0 and no output; a step whose
commands depend on what it reads (a database, a file, a unit's status) keeps hand-written
``commands`` instead, and says why in its docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from services.infra.host import NOTE, Completed, command_text


@dataclass
class Recorded:
    """One command a step issued: the side it was issued on, its argv and the note it came with."""

    role: str
    argv: tuple[str, ...]
    note: str = ""

    def text(self) -> str:
        return command_text(self.argv) + self.note


@dataclass
class RecordingHost:
    """Takes the place of a controller's host: ``run`` records, anything else is refused."""

    name: str
    role: str
    log: list[Recorded] = field(default_factory=list)

    def run(self, argv: list[str], stdin: bytes | None = None, timeout: float = 900,
            env: dict[str, str] | None = None) -> Completed:
        self.log.append(Recorded(self.role, tuple(argv), NOTE.get()))
        return Completed(tuple(argv), 0, "", "")

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise RuntimeError(f"a recording host only records commands (asked for {attr} on {self.name})")


def record(acts: Any, ctx: Any, log: list[Recorded] | None = None) -> list[Recorded]:
    """The commands *acts* issues with *ctx*'s source and target replaced by recording hosts, in order; with
    *log*, the log that the step's other hosts (recording hosts too: a compute host) write, which is cleared
    first, so that every command of the step is there in the order it was issued."""
    if log is None:
        log = []
    log.clear()
    sides = {role: replace(getattr(ctx, role), host=RecordingHost(getattr(ctx, role).host.name, role, log))
             for role in ("source", "target")}
    acts(replace(ctx, **sides))
    return log


def command_lines(step: Any, ctx: Any, log: list[Recorded] | None = None) -> list[str]:
    """A step's commands as `upgrade plan` shows them: recorded from its ``acts`` (*log*: see ``record``), else
    its ``commands``. A command on another host than the step's (the source of a target-side step, or the
    reverse) is marked with its host."""
    if step.acts is None:
        return step.command_lines(ctx)
    return [(f"{r.role}: " if r.role != step.host else "") + r.text() for r in record(step.acts, ctx, log)]
