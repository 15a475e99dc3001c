"""Every write goes to the claimed target, asserted inside each step that writes (DESIGN.md §9.1).

`upgrade run` refuses a target that is the source under another name before it starts, and claims the
target (``services/infra/claim.py``). But a run takes hours and addresses move under it (DNS,
``/etc/hosts``, a VIP, a bind mount): so a step that writes asks again, right before its side effect
(and before its undo's), whether what it is about to write is the target this run claimed:

- the target DB server holds this run's claim (the row only the claimed server has) and is not the
  server the source named itself when the run started;
- the target's ``etc``/``lib`` roots and the service's directories in them are not the source's
  (device + inode on one kernel, ``services/infra/identity.py``).

Otherwise the step fails with a StepError that names what it found and the fix, before it writes
anything. The steps themselves stay as they are: :func:`guarded` wraps the ``run`` and ``undo`` of
every step whose kind writes (:data:`DB_WRITES`, :data:`DIR_WRITES`) when a run builds its machines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from services.infra import claim as claim_mod
from services.infra import identity, mysql
from services.infra.settings import Side
from statemachine.step import Result, Step, StepError

#: step kinds that write the target's databases (a config write rewrites DB URLs the target then uses; a
#: dump streams into the target's database while it is vaulted, and its undo restores that database)
DB_WRITES = frozenset({"import", "create", "schema", "fixup", "migrate", "config", "dump"})
#: step kinds that write the target's directories
DIR_WRITES = frozenset({"config", "ownership", "copy"})
#: the undo of a step that has nothing to undo: nothing to guard
_NO_UNDO = Step.__dataclass_fields__["undo"].default


@dataclass(frozen=True)
class Claimed:
    """What a run writes to: the run whose claim stands on the target (this run's own, or the completed
    run a follow-up finishes), and both DB servers as they named themselves when the run started."""

    run_id: str
    servers: identity.Servers | None = None
    #: an HA plan's other old controllers (name, side): what a write's directories must not be either
    old_members: tuple[tuple[str, Side], ...] = field(default=(), compare=False, hash=False)
    #: the old controllers' directories by (controller, service), identified at their first check in this
    #: process: the old controllers are only read, so only the target's are asked again before each write
    source_dirs: dict[tuple[str, str], identity.SideDirs] = field(default_factory=dict, compare=False, hash=False)


def _refuse(step: str, what: str, fix: str) -> StepError:
    return StepError(f"{step}: refusing to write — {what}; nothing was written. {fix}, then `upgrade resume` "
                     "(or `upgrade revert`)")


def assert_target_db(ctx: Any, step: str) -> None:
    """The DB server ``target.db`` reaches now is the one this run claimed, and not the source's."""
    claimed: Claimed | None = getattr(ctx, "claimed", None)
    t = ctx.target
    where = f"the target DB server {t.db.address}:{t.db.port}"
    fix = (f"point `target.db` ({t.db.address}:{t.db.port}) back at the new controller's DB server (DNS, "
           "/etc/hosts, a moved address)")
    if claimed is None:
        raise _refuse(step, "the run's claim on the target is not known to this step", "run it through `upgrade`")
    if claimed.servers is not None:
        now = mysql.server_identity(t.db)
        if (why := now.same_as(claimed.servers.source)) is not None:
            raise _refuse(step, f"{where} is the old controller's DB server ({why})", fix)
        if claimed.servers.target.same_as(now) is None:
            raise _refuse(step, f"{where} is no longer the server the run started on (then "
                                f"{claimed.servers.target.describe()}, now {now.describe()})", fix)
    held = claim_mod.read_db(t)
    if held is None or held.run_id != claimed.run_id:
        found = f"the claim of {held.describe()}" if held else "no claim"
        raise _refuse(step, f"{where} holds {found}, not the claim of run {claimed.run_id}: it is not the server "
                            "this run claimed", fix)


def assert_target_dirs(ctx: Any, step: str, service: str) -> None:
    """The target's ``etc``/``lib`` and the service's directories in them are not the source's, nor (an HA
    plan) any other old controller's."""
    claimed: Claimed | None = getattr(ctx, "claimed", None)
    cache = claimed.source_dirs if claimed is not None else {}
    olds = [("", ctx.source), *(claimed.old_members if claimed is not None else ())]
    mine = identity.side_dirs(ctx.target, [service])
    for name, side in olds:
        if (name, service) not in cache:
            cache[(name, service)] = identity.side_dirs(side, [service])
        problems = identity.conflicts(cache[(name, service)], mine, ctx.target)
        if problems:
            where = f" (old controller {name})" if name else ""
            raise _refuse(step, "; ".join(problems) + where,
                          "point the plan's target directories at the new controller's")


def assert_target(ctx: Any, step: Step, service: str) -> None:
    """What *step* (of *service*'s machine) is about to write is the claimed target's."""
    if step.kind in DB_WRITES:
        assert_target_db(ctx, step.name)
    if step.kind in DIR_WRITES:
        assert_target_dirs(ctx, step.name, service)


def guarded(service: str, steps: Iterable[Step]) -> list[Step]:
    """*steps* with the target asserted inside the ``run`` and ``undo`` of every step that writes; the
    others (stop, backup, dump, status, start, verify, switch) as they are. Names, kinds and commands are
    unchanged: the journal and `upgrade plan` see the same steps."""
    out = []
    for step in steps:
        if step.kind not in DB_WRITES | DIR_WRITES:
            out.append(step)
            continue
        undo = step.undo if step.undo is _NO_UNDO else _undo(step, service, step.undo)
        out.append(replace(step, run=_run(step, service, step.run), undo=undo))
    return out


def _run(step: Step, service: str, run: Callable[[Any], Result]) -> Callable[[Any], Result]:
    def checked(ctx: Any) -> Result:
        assert_target(ctx, step, service)
        return run(ctx)
    return checked


def _undo(step: Step, service: str, undo: Callable[[Any, Result | None], None]) -> Callable[[Any, Result | None], None]:
    def checked(ctx: Any, result: Result | None) -> None:
        assert_target(ctx, step, service)
        undo(ctx, result)
    return checked
