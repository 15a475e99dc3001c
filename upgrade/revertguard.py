"""Revert after tenants wrote to the new cloud: the run's baseline, and the check `upgrade revert` makes.

When a run completes, its last note records the markers of every database it imported
(services/infra/newwrites.py), authenticated like every journal row. `upgrade revert` of a completed run
compares the new controller's databases with them before it changes anything: if anything changed
it refuses (exit 2) and names per service the tables and counts; with ``--discard-new-writes`` it first
dumps the new controller's databases into the vault (encrypted, listed by `upgrade journal show`,
readable with the run's key), so that even those writes are kept, then reverts.
"""

from __future__ import annotations

import secrets
import shlex
import time
from typing import Any

from journal import private, vault
from journal.store import Journal
from services import registry
from services.infra import mysql, newwrites
from services.steps.databases import DUMP_TOOL
from statemachine import failpoints
from statemachine.replay import replay_rows
from statemachine.step import StepError
from upgrade import app, logs
from upgrade.claims import NOTE_MACHINE
from upgrade.errors import UserError
from upgrade.plan import Plan

BASELINE = "new_writes_baseline"
#: the result key of the note each revert leaves on how it settled the new writes
CHECK = "new_writes_check"
#: the artifacts' kind and the step they are recorded under
KIND = "new-writes"
STEP = "revert.new_writes"


def record_baseline(plan: Plan, journal: Journal, run_id: str) -> None:
    """The run's final note: the markers of every database it imported, as the new controller holds
    them now that the run completed (before any tenant was let in by the caller)."""
    results = replay_rows(journal.step_rows(run_id)).results
    dbs = newwrites.imported(results, plan.services)
    base = newwrites.baseline(plan.target.db, dbs, registry.IDLE_WRITES)
    tables = sum(len(t) for d in base.values() for t in d.values())
    journal.append(run_id, NOTE_MACHINE, "note", result={BASELINE: base},
                   output=f"baseline of the imported databases: {tables} tables, compared by `upgrade revert`")
    logs.get().info("baseline_recorded", run=run_id, databases={s: list(d) for s, d in base.items()})


def recorded_baseline(journal: Journal, run_id: str) -> newwrites.Baseline | None:
    for e in journal.notes(run_id, NOTE_MACHINE):
        if isinstance(e.result, dict) and BASELINE in e.result:
            return e.result[BASELINE]
    return None


def _last_check(journal: Journal, run_id: str) -> str | None:
    """How the last revert of the run settled the new writes: ``checked``, ``dumped``, ``unchecked`` or None."""
    last = None
    for e in journal.notes(run_id, NOTE_MACHINE):
        if isinstance(e.result, dict) and CHECK in e.result:
            last = e.result[CHECK]
    return last


def needed(status: str, journal: Journal, run_id: str) -> bool:
    """Whether this revert compares: a completed run's, or one whose earlier revert could not (its target's DB
    server did not answer, so the databases were not restored either and tenants' writes may still be there)."""
    return status == "completed" or (status in ("reverting", "revert_failed")
                                     and _last_check(journal, run_id) == "unchecked")


def guard(plan: Plan, journal: Journal, key: vault.Key, run_id: str, discard: bool) -> None:
    """Before a completed run is reverted: refuse (nothing changed) when tenants wrote to the new controller,
    unless *discard*, in which case the new controller's databases are dumped into the vault first.

    A target DB server that does not answer cannot be compared, nor can its databases be restored: the
    revert goes on (the old controller must come back, DESIGN.md §9.3), noted ``unchecked``, and the next
    revert, once the server answers, compares before it restores them."""
    flag = f"upgrade revert --journal {shlex.quote(str(journal.dir))} --discard-new-writes"
    base = recorded_baseline(journal, run_id)
    if base is None and not discard:
        raise UserError(f"run {run_id} completed without a record of what its import left on the new controller "
                        "(the tool stopped right after the run, or an earlier version ran it): whether tenants "
                        "wrote to the new cloud cannot be told, and a revert would lose what they wrote — nothing "
                        f"was changed; to keep their writes in the vault and revert: {flag}")
    view = replay_rows(journal.step_rows(run_id))
    if base is None:  # dump every database the run imported, whole
        base = {s: {db: {} for db in dbs} for s, dbs in newwrites.imported(view.results, plan.services).items()}
    # only databases no revert restored yet: what a partial revert restored is the old data again
    base = {s: dbs for s, dbs in base.items() if f"{s}.import_db" in view.machine(s).committed}
    try:
        mysql.query(plan.target.db, "SELECT 1")
        recorded = recorded_baseline(journal, run_id) is not None
        changed = newwrites.changes(plan.target.db, base, registry.IDLE_WRITES) if recorded \
            else {s: ["no baseline recorded: dumped whole"] for s in base}
    except StepError as exc:
        logs.get().warning("new_writes_unchecked", run=run_id, error=str(exc))
        _note(journal, run_id, "unchecked", {}, {}, f"the new controller's DB server does not answer ({exc}): its "
              "databases were neither compared nor dumped; the next revert compares them before restoring them")
        return
    if not changed:
        _note(journal, run_id, "checked", {}, {}, "the new controller's databases are as the run left them")
        return
    if not discard:
        lines = [f"tenants wrote to the new controller after run {run_id} completed; reverting would lose their "
                 "writes — nothing was changed:"]
        for service, what in changed.items():
            lines += [f"  {service}:"] + [f"    {w}" for w in what]
        lines.append("Keep serving from the new controller, or dump its databases into the vault (encrypted with the "
                     f"run's key) and revert: {flag}")
        raise UserError("\n".join(lines))
    try:
        dumped = dump(plan, journal, key, run_id, base)
    except (StepError, vault.VaultError) as exc:
        raise UserError(f"could not keep the new controller's writes in the vault: {exc} — nothing was reverted; "
                        f"fix the cause (the message names it) and run again: {flag}") from None
    failpoints.hit("revert.new_writes:dumped")  # killed here: recorded dumps, the revert not begun
    _note(journal, run_id, "dumped", changed, dumped, "the new controller's writes are kept in the vault: "
          f"{', '.join(a['path'] for d in dumped.values() for a in d.values())}")


def dump(plan: Plan, journal: Journal, key: vault.Key, run_id: str, base: newwrites.Baseline) -> dict[str, Any]:
    """Every database of *base* on the new controller, into the run's vault directory: one encrypted artifact
    each, recorded in the journal (kind ``new-writes``) like the run's own dumps."""
    target = app.side(plan.target)
    try:
        root = private.make_dir(app.vault_dir(plan), "vault directory")
        directory = private.make_dir(root / run_id, "vault directory")
    except private.PrivatePathError as exc:
        raise UserError(str(exc)) from None
    # a revert killed after its dump and run again within the same second must not reuse the name
    stamp = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
    out: dict[str, Any] = {}
    for service, dbs in base.items():
        for db in dbs:
            name = f"{service}-new-writes-{db}-{stamp}"
            path = directory / f"{name}.osuv"
            stats = mysql.dump_to_vault(target.host, plan.target.db, DUMP_TOOL, db, str(path), key)
            failpoints.hit("revert.new_writes:written")  # killed here: a complete file the journal never names
            art_id = f"{run_id}/{name}"
            journal.add_artifact(run_id, art_id, KIND, service, target.host.name, str(path), stats.bytes,
                                 stats.sha256, key.key_id, step=STEP)
            out.setdefault(service, {})[db] = {"id": art_id, "path": str(path), "bytes": stats.bytes,
                                               "sha256": stats.sha256}
    return out


def _note(journal: Journal, run_id: str, how: str, changed: dict[str, list[str]], dumped: dict[str, Any],
          text: str) -> None:
    journal.append(run_id, NOTE_MACHINE, "note", output=text,
                   result={CHECK: how, "new_writes": changed, "dumped": dumped})
    logs.get().info("new_writes_" + how, run=run_id, services=sorted(changed))
