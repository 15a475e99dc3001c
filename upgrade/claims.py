"""The run's identity guard and its claim on the target, for `check`, `run`, `resume` and `revert`.

``services/identity.py`` says whether the target is really another controller; ``services/claim.py``
holds the claim on it. This module decides when each is asked and what the operator is told: `run`
refuses before anything changes (a plan whose target is the source, or an HA plan with an old member
among the new ones or one controller listed twice: exit 2; a target another run claims: exit 3), records
the target DB server's identity (and every HA member's) in the journal, and `resume`/`revert` refuse a
target or member that is no longer that server, or a target that another run has claimed since.
"""

from __future__ import annotations

import getpass
import socket
import time
from dataclasses import replace
from pathlib import Path

from journal.store import Journal
from services.infra import claim as claim_mod
from services.infra import identity, mysql, writeguard
from services.infra.claim import Claim, ClaimHeld
from services.infra.settings import Side
from services.registry import AFTER_COMPUTES
from statemachine.step import StepError
from upgrade import app, fleet, logs
from upgrade.errors import BusyError, UserError
from upgrade.plan import Plan

#: the journal event that records the target DB server's identity when a run starts
NOTE_MACHINE = "run"
PENDING = "pending-"


class Unidentified(UserError):
    """A controller could not be asked what it is (unreachable): nothing is proven either way."""


def journal_owner(journal_dir: Path) -> tuple[str, str]:
    """(host, absolute path) of a journal: what a claim names as its owner."""
    return socket.gethostname(), str(Path(journal_dir).resolve())


# ---------------------------------------------------------------------- identity
def member_findings(plan: Plan, strict: bool = True) -> identity.MemberFindings | None:
    """An HA plan's members compared pair by pair (``identity.member_conflicts``); None for a single
    controller. The working pair is left to :func:`guard_identity`'s source-against-target check."""
    if plan.source.group is None or plan.target.group is None:
        return None
    sides = {}
    for spec in (plan.source, plan.target):
        members, working = fleet.members(spec)
        sides[spec.role] = [identity.Controller(spec.role, m.name, m.side, m.name == working) for m in members]
    old, new = sides["source"], sides["target"]
    skip = (old[0].key, new[0].key) if old[0].working and new[0].working else None
    return identity.member_conflicts(old, new, plan.services, skip, strict)


def _members_refused(plan: Plan, problems: list[str]) -> UserError:
    return UserError(f"{plan.path}: the groups' members are not distinct controllers — nothing was changed:\n  "
                     + "\n  ".join(problems))


def refuse_member_conflicts(plan: Plan) -> None:
    """`upgrade run`, first of all: an HA plan with an old controller among the new members, or one controller
    twice, is refused for that (exit 2) — the DB nodes' health check would otherwise refuse it for a symptom
    (the old node's password, its cluster). Lenient: what cannot be identified yet (a host or a working DB
    node down) is left to the preflight and to :func:`guard_identity`, which name it."""
    try:
        found = member_findings(plan, strict=False)
    except StepError:
        return
    if found is not None and found.problems:
        raise _members_refused(plan, found.problems)


def guard_identity(plan: Plan) -> identity.Servers:
    """Refuse (exit 2) a plan whose target DB server or directories are the source's, or (an HA plan) whose
    new members include an old one or whose members within a side are one controller twice; return the
    servers' identities (both sides' and every member's that answered). Reads only."""
    source, target = app.side(plan.source), app.side(plan.target)
    try:
        ids, same = identity.server_conflict(source, target)
        problems = ([same] if same else []) + identity.directory_conflicts(source, target, plan.services)
        members = member_findings(plan)
    except StepError as exc:
        raise Unidentified(f"cannot tell the controllers apart: {exc} (plan {plan.path})") from None
    if problems:
        raise UserError(f"{plan.path}: the target is the old controller under another name — nothing was "
                        "changed:\n  " + "\n  ".join(problems))
    if members is not None and members.problems:
        raise _members_refused(plan, members.problems)
    return replace(ids, members=members.servers) if members is not None else ids


def record_identity(journal: Journal, run_id: str, ids: identity.Servers) -> None:
    journal.append(run_id, NOTE_MACHINE, "note", result={"target_db": ids.target.as_dict(),
                                                         "source_db": ids.source.as_dict(),
                                                         "members": {k: v.as_dict() for k, v in ids.members.items()}})


def _recorded(journal: Journal, run_id: str) -> dict | None:
    for e in journal.notes(run_id, NOTE_MACHINE):
        if isinstance(e.result, dict) and "target_db" in e.result:
            return e.result
    return None


def recorded_identity(journal: Journal, run_id: str) -> mysql.ServerIdentity | None:
    rec = _recorded(journal, run_id)
    return mysql.ServerIdentity.from_dict(rec["target_db"]) if rec is not None else None


def recorded_members(journal: Journal, run_id: str) -> dict[str, mysql.ServerIdentity]:
    """Every HA member's DB server as the run found it when it started (``source:oldctl2`` -> identity)."""
    rec = _recorded(journal, run_id) or {}
    return {k: mysql.ServerIdentity.from_dict(v) for k, v in (rec.get("members") or {}).items()}


def check_target_unchanged(journal: Journal, run_id: str, ids: identity.Servers, plan: Plan) -> None:
    """The target DB server, and every HA member's, is the one the run started on (a swapped server is
    refused, exit 2). A member whose server does not answer now is not checked: nothing reaches it either."""
    then = recorded_identity(journal, run_id)
    if then is not None and then.same_as(ids.target) is None:
        t = plan.target.db
        raise UserError(f"`target.db` ({t.address}:{t.port}) is no longer the DB server run {run_id} started on: "
                        f"then {then.describe()}, now {ids.target.describe()} — nothing was done; point the address "
                        "back at that server (DNS, /etc/hosts, a moved address) and run the command again")
    changed = [f"{key.replace(':', ' member ', 1)} is no longer the DB server run {run_id} started on: then "
               f"{was.describe()}, now {ids.members[key].describe()}"
               for key, was in recorded_members(journal, run_id).items()
               if key in ids.members and identity.same_node(was, ids.members[key]) is None]
    if changed:
        raise UserError("; ".join(changed) + " — nothing was done; point each member's address back at its own "
                        f"controller (DNS, /etc/hosts, a moved address; plan {plan.path}) and run the command again")


# ---------------------------------------------------------------------- the claim
def _held_message(held: Claim, where: str, plan: Plan) -> str:
    if held.state == "completed":
        why = (f"that run completed: the new controller serves the upgraded cloud, and another run would drop "
               f"the databases it now writes — undo that run with `upgrade revert --journal {held.journal_path}` "
               f"(on {held.journal_host}), or, to upgrade this controller afresh, clear the claim with "
               f"`upgrade claim clear {plan.path} --run {held.run_id}`")
    else:
        why = (f"that run is unfinished: finish it where its journal is (`upgrade resume --journal "
               f"{held.journal_path}` or `upgrade revert --journal {held.journal_path}` on {held.journal_host}); "
               f"if that journal is lost and no `upgrade` runs there, `upgrade claim show {plan.path}` shows the "
               f"claim and `upgrade claim clear {plan.path} --run {held.run_id}` removes it")
    return f"{where} is claimed by {held.describe()} — one run per cloud: {why}"


def _busy(exc: ClaimHeld, plan: Plan) -> BusyError:
    return BusyError(_held_message(exc.claim, exc.where, plan))


def _where(side: Side, on_db: bool) -> str:
    return (f"the target DB server {side.db.address}:{side.db.port}" if on_db
            else f"the target host ({claim_mod.file_path(side)} on {side.host.name})")


def follow_up(plan: Plan) -> bool:
    """A plan of follow-up services only (nova-unpin, once the computes run the new release): it finishes
    a completed upgrade on its target, so that run's claim does not stop it, and it takes none of its own
    while that claim stands. An unfinished run's claim stops it like any other."""
    return all(name in AFTER_COMPUTES for name in plan.services)


def _tolerated(c: Claim, plan: Plan) -> bool:
    return c.state == "completed" and follow_up(plan)


def refuse_if_claimed(plan: Plan, journal_dir: Path, own: bool = False) -> None:
    """Before `run` creates anything: a target claimed by any run is refused (exit 3), read-only.

    A claim of this same journal is left to the journal's own lock and unfinished-run check (they name
    the process and the plan); `take` then refuses a completed run's claim of it. ``own``: refuse
    those too (`upgrade check`, which takes no lock)."""
    side = app.side(plan.target)
    host, path = journal_owner(journal_dir)
    for on_db, c in zip((True, False), _read(side), strict=True):
        if c is None or _tolerated(c, plan):
            continue
        if (c.journal_host, c.journal_path) == (host, path) and (not own or _takeover(c, host, path)):
            continue  # this journal's own: its lock and unfinished-run check decide
        raise BusyError(_held_message(c, _where(side, on_db), plan))


def _takeover(c: Claim, host: str, path: str) -> bool:
    return c.run_id.startswith(PENDING) and (c.journal_host, c.journal_path) == (host, path)


def take(plan: Plan, journal_dir: Path) -> Claim | None:
    """Claim the target for a run about to start (atomically; exit 3 when another run won). None: a
    follow-up run under a completed run's claim."""
    host, path = journal_owner(journal_dir)
    side = app.side(plan.target)
    if follow_up(plan) and any(c is not None and _tolerated(c, plan) for c in _read(side)):
        return None
    now = time.time()
    c = Claim(run_id=f"{PENDING}{int(now)}", journal_host=host, journal_path=path, state="starting", started=now,
              updated=now, operator=f"{getpass.getuser()}@{host}", plan_path=str(plan.path))
    try:
        claim_mod.take(side, c, lambda held: _takeover(held, host, path))
    except ClaimHeld as exc:
        raise _busy(exc, plan) from None
    except StepError as exc:
        raise UserError(f"cannot claim the target: {exc}") from None
    return c


def _read(side: Side) -> tuple[Claim | None, Claim | None]:
    try:
        return claim_mod.read(side)
    except StepError as exc:
        raise UserError(f"cannot read the claim on the target: {exc}") from None


def claimed_run(plan: Plan, held: Claim | None) -> str:
    """The run whose claim the target holds for a run that holds *held*: its own, or (a follow-up run,
    None) the completed run's it finishes. What every writing step finds on the target DB server."""
    if held is not None:
        return held.run_id
    try:
        c = claim_mod.read_db(app.side(plan.target))
    except StepError:  # a revert whose target does not answer: its writing undos will say so
        return ""
    return c.run_id if c is not None else ""


def claimed(plan: Plan, held: Claim | None, ids: identity.Servers | None) -> writeguard.Claimed:
    """What every writing step of this run asserts: the run whose claim stands on the target, both DB
    servers, and (an HA plan) the source group's other controllers, whose directories a write must not meet
    either: an address that moves under a run to another old member is refused like one moved to the source."""
    members, working = fleet.members(plan.source)
    others = tuple((m.name, m.side) for m in members if m.name != working)
    return writeguard.Claimed(claimed_run(plan, held), ids, others)


def set_state(plan: Plan, c: Claim | None, **changes: str) -> Claim | None:
    if c is None:
        return None
    new = replace(c, updated=time.time(), **changes)
    claim_mod.update(app.side(plan.target), new)
    return new


def hold(plan: Plan, journal: Journal, run_row: dict, verb: str) -> Claim | None:
    """For resume/revert: the run's own claim on the target, taken again if it was cleared. Another
    run's claim is refused (exit 3). A revert goes on without it when the target cannot be reached
    (the old controller must come back whatever the new one does); a resume does not."""
    side = app.side(plan.target)
    host, path = journal_owner(journal.dir)
    run_id = run_row["id"]
    state = "reverting" if verb == "revert" else "running"

    def ours(c: Claim) -> bool:
        return c.run_id == run_id or _takeover(c, host, path)

    try:
        held = claim_mod.read(side)
        for on_db, c in zip((True, False), held, strict=True):
            if c is not None and not ours(c) and not _tolerated(c, plan):
                raise BusyError(_held_message(c, _where(side, on_db), plan))
        if any(c is not None and not ours(c) for c in held):
            return None  # a follow-up under the completed run's claim
        now = time.time()
        base = next((c for c in held if c is not None), None)
        mine = Claim(run_id=run_id, journal_host=host, journal_path=path, state=state,
                     started=base.started if base else run_row["created"], updated=now,
                     operator=base.operator if base else f"{getpass.getuser()}@{host}", plan_path=str(plan.path))
        if held[0] is None or held[1] is None:  # cleared by an operator: this run claims its target again
            claim_mod.take(side, mine, ours)
        else:
            claim_mod.update(side, mine)
        return mine
    except ClaimHeld as exc:
        raise _busy(exc, plan) from None
    except StepError as exc:
        if verb != "revert":
            raise UserError(f"cannot check the claim on the target: {exc}") from None
        logs.get().warning("claim_unreachable", run=run_id, error=str(exc))
        return None


def settle(plan: Plan, journal: Journal, run_id: str, c: Claim | None) -> None:
    """After run/resume/revert: the claim follows the run's status; a reverted run releases it.
    Best effort: the run's own outcome (and its error) is what the operator must see."""
    status = journal.run(run_id)["status"]
    try:
        if status == "reverted":
            claim_mod.release(app.side(plan.target), run_id)
        elif c is not None:
            set_state(plan, c, state=status)
    except (StepError, OSError) as exc:
        logs.get().warning("claim_not_updated", run=run_id, status=status, error=str(exc))


# ---------------------------------------------------------------------- `upgrade claim show|clear`
def describe(plan: Plan) -> list[str]:
    side = app.side(plan.target)
    return [f"{_where(side, on_db)}: " + (c.describe() if c else "no claim")
            for on_db, c in zip((True, False), _read(side), strict=True)]


def clear(plan: Plan, run_id: str) -> list[str]:
    """Remove a stale claim: only the one named (``--run``), and never one whose journal on this host
    says its run is unfinished (resume or revert it there instead)."""
    side = app.side(plan.target)
    held = [c for c in _read(side) if c is not None]
    if not held:
        raise UserError(f"the target holds no claim (plan {plan.path}): nothing to clear")
    named = {c.run_id for c in held}
    if named != {run_id}:
        raise UserError(f"the target's claim names run {', '.join(sorted(named))}, not {run_id!r} — nothing was "
                        f"cleared; check with `upgrade claim show {plan.path}` and pass that run id")
    for c in held:
        journal_db = Path(c.journal_path) / "journal.db"
        if c.journal_host == socket.gethostname() and journal_db.exists():
            j = app.open_journal(Path(c.journal_path), app.redactor_for(plan), create=False)
            try:
                open_run = j.unfinished_run()
            finally:
                j.close()
            if open_run is not None and open_run["id"] == c.run_id:
                raise BusyError(f"run {c.run_id} in {c.journal_path} is unfinished ({open_run['status']}) — "
                                f"finish it with `upgrade resume --journal {c.journal_path}` or undo it with "
                                f"`upgrade revert --journal {c.journal_path}`; its claim stays")
    try:
        claim_mod.clear(side)
    except StepError as exc:
        raise UserError(f"cannot clear the claim on the target: {exc}") from None
    return [f"cleared the claim of run {run_id} on {_where(side, True)} and {_where(side, False)}"]
