"""The CLI verbs, one short documented function each, over ``upgrade.app`` (alembic's command.py style).

Each returns an exit code or raises :class:`UserError`; ``upgrade.cli`` turns those into messages.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from journal import export as journal_export
from journal import vault
from statemachine.machine import INITIAL, ServiceMachine
from statemachine.replay import replay
from statemachine.runner import RevertFailed, RunFailed
from upgrade import app, logs
from upgrade import plan as plan_mod
from upgrade.errors import EXIT_FAILED, EXIT_OK, BusyError, UserError

DEFAULT_JOURNAL = Path("upgrade-journal")


def _failure(exc: RunFailed, journal_dir: Path, state: str | None) -> UserError:
    verb = "revert" if isinstance(exc, RevertFailed) else "run"
    text = f"{exc.step} failed on {exc.host}: {exc}"
    if exc.output:
        tail = "\n".join(exc.output.strip().splitlines()[-15:])
        text += f"\n--- output (tail) ---\n{tail}\n---"
    if verb == "run":
        text += (f"\nThe run stopped with {exc.machine} in state {state or '?'}; nothing after that step ran."
                 f"\nEither fix the cause and continue: upgrade resume --journal {journal_dir}"
                 f"\nor undo everything, back to the old controller serving: upgrade revert --journal {journal_dir}")
    else:
        text += (f"\nThe revert stopped at {exc.step}; fix the cause and run it again: "
                 f"upgrade revert --journal {journal_dir}")
    text += f"\nLog: {journal_dir / 'upgrade.log'}"
    err = UserError(text)
    err.exit_code = EXIT_FAILED
    return err


def _drive(session: app.Session, verb: str) -> int:
    log = logs.get()
    try:
        if verb == "revert":
            session.runner.revert()
        else:
            session.runner.forward()
    except RunFailed as exc:
        state = next((m.state for m in session.runner.machines if m.name == exc.machine), None)
        log.error(f"{verb}_failed", run=session.run_id, step=exc.step, error=str(exc))
        raise _failure(exc, session.journal.dir, state) from None
    log.info(f"{verb}_finished", run=session.run_id)
    return EXIT_OK


def run(plan_path: str, quiet: bool = False) -> int:
    """Start a new upgrade run from PLAN and drive it to the end."""
    plan = plan_mod.load(plan_path)
    # everything that can refuse the plan runs before anything is created, even the journal
    key = app.load_key(plan, plan.journal_dir)
    app.preflight_db(plan)
    journal = app.open_journal(plan.journal_dir, app.redactor_for(plan), create=True)
    logs.configure(journal.redactor, journal.dir / "upgrade.log", quiet)
    lk = app.lock(journal.dir, "run")
    try:
        if (open_run := journal.unfinished_run()) is not None:
            raise BusyError(f"run {open_run['id']} in {journal.dir} is unfinished ({open_run['status']}) — finish it "
                            f"with `upgrade resume --journal {journal.dir}` or undo it with "
                            f"`upgrade revert --journal {journal.dir}` before starting another")
        run_id = journal.create_run(plan.raw, plan.sha256, str(plan.path), plan.from_release, plan.to_release,
                                    key.key_id)
        logs.get().info("run_started", run=run_id, plan=str(plan.path), services=list(plan.services),
                        jump=f"{plan.from_release}->{plan.to_release}", journal=str(journal.dir))
        session = app.Session(plan, journal, key, run_id, app.build_runner(plan, journal, key, run_id))
        return _drive(session, "run")
    finally:
        lk.release()


def _continue(verb: str, journal_dir: Path, run_id: str | None, plan_path: str | None, quiet: bool) -> int:
    journal = app.open_journal(journal_dir, app.redactor_for(None), create=False)
    run_row = journal.run(run_id) if run_id else journal.unfinished_run()
    if run_row is None and verb == "revert":
        # a completed upgrade can still be rolled back while the old controller is untouched
        latest = journal.latest_run()
        run_row = latest if latest and latest["status"] == "completed" else None
    if run_row is None:
        last = journal.latest_run()
        what = f"the last run, {last['id']}, is {last['status']}" if last else "it holds no run"
        raise UserError(f"nothing to {verb} in {journal.dir}: {what} — start a new one with `upgrade run PLAN`")
    status = run_row["status"]
    if verb == "resume" and status in ("reverting", "revert_failed"):
        raise UserError(f"run {run_row['id']} is being reverted; finish that with `upgrade revert --journal "
                        f"{journal.dir}` (a revert is not resumed forward)")
    if verb == "resume" and status in ("completed", "reverted"):
        raise UserError(f"nothing to resume: run {run_row['id']} is {status}")
    if verb == "revert" and status == "reverted":
        raise UserError(f"nothing to revert: run {run_row['id']} is already reverted")
    path = plan_path or run_row["plan_path"]
    plan = plan_mod.load(path)
    if plan.sha256 != run_row["plan_sha256"]:
        raise UserError(f"the plan {plan.path} changed since run {run_row['id']} started (sha256 "
                        f"{run_row['plan_sha256'][:12]}… then, {plan.sha256[:12]}… now) — restore the plan as it "
                        "was (or pass it with --plan); a run never continues under a different plan")
    journal.redactor = app.redactor_for(plan)
    logs.configure(journal.redactor, journal.dir / "upgrade.log", quiet)
    lk = app.lock(journal.dir, verb)
    try:
        key = app.load_key(plan, journal.dir)
        app.check_key(run_row, key)
        rid = run_row["id"]
        logs.get().info(f"{verb}_started", run=rid, status=status)
        session = app.Session(plan, journal, key, rid, app.build_runner(plan, journal, key, rid))
        return _drive(session, verb)
    finally:
        lk.release()


def resume(journal_dir: Path = DEFAULT_JOURNAL, run_id: str | None = None, plan_path: str | None = None,
           quiet: bool = False) -> int:
    """Continue the unfinished run exactly where it stopped; committed steps never run again."""
    return _continue("resume", journal_dir, run_id, plan_path, quiet)


def revert(journal_dir: Path = DEFAULT_JOURNAL, run_id: str | None = None, plan_path: str | None = None,
           quiet: bool = False) -> int:
    """Undo a run's committed steps backwards until the old controller serves as before."""
    return _continue("revert", journal_dir, run_id, plan_path, quiet)


def status_data(journal_dir: Path, run_id: str | None) -> dict[str, Any]:
    journal = app.open_journal(journal_dir, app.redactor_for(None), create=False)
    run_row = journal.run(run_id) if run_id else (journal.unfinished_run() or journal.latest_run())
    if run_row is None:
        raise UserError(f"no run in {journal.dir} — start one with `upgrade run PLAN`")
    from services.registry import steps_for

    plan = json.loads(run_row["plan"])
    view = replay(journal.events(run_row["id"]))
    services = []
    for name in plan["upgrade"]["services"]:
        m = ServiceMachine(name, steps_for(name))
        mv = view.machine(name)
        state, last = INITIAL, None
        for step in m.steps:
            if step.name in mv.committed:
                state, last = step.state, step.name
            else:
                break
        nxt = next((s.name for s in m.steps if s.name not in mv.committed), None)
        seconds = sum((r or {}).get("seconds", 0) for r in mv.committed.values())
        services.append({"service": name, "state": state, "last_step": last, "next_step": nxt,
                         "interrupted_step": mv.attempted, "seconds": round(seconds, 1),
                         "last_error": (mv.last_error or "").splitlines()[0] if mv.last_error else None})
    status = run_row["status"]
    nxt = {"running": "the run is in progress, or its process died: `upgrade resume` continues it",
           "failed": "`upgrade resume` after fixing the cause, or `upgrade revert`",
           "reverting": "`upgrade revert` to finish undoing", "revert_failed": "`upgrade revert` after fixing",
           "completed": "nothing; `upgrade revert` would undo it", "reverted": "nothing"}[status]
    return {"run": run_row["id"], "status": status, "from": run_row["from_release"], "to": run_row["to_release"],
            "journal": str(journal.dir), "next_action": nxt, "services": services}


def status(journal_dir: Path = DEFAULT_JOURNAL, run_id: str | None = None, fmt: str = "table",
           out: TextIO = sys.stdout) -> int:
    """Where each service stands: state, last step, time spent, last error, and what to do next."""
    data = status_data(journal_dir, run_id)
    if fmt == "json":
        json.dump(data, out, indent=2)
        out.write("\n")
        return EXIT_OK
    out.write(f"run {data['run']}  {data['from']} -> {data['to']}  status: {data['status']}\n")
    cols = ("service", "state", "last_step", "next_step", "seconds", "last_error")
    rows = [[str(s[c] if s[c] is not None else "-") for c in cols] for s in data["services"]]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    out.write("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + "\n")
    for r in rows:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + "\n")
    out.write(f"next: {data['next_action']}\n")
    return EXIT_OK


def journal_export_cmd(journal_dir: Path = DEFAULT_JOURNAL, run_id: str | None = None, fmt: str = "jsonl",
                       out: TextIO = sys.stdout) -> int:
    """Write the audit trail (events with their hash chain) as jsonl, json or csv."""
    journal = app.open_journal(journal_dir, app.redactor_for(None), create=False)
    if fmt not in journal_export.FORMATS:
        raise UserError(f"unknown export format {fmt!r}; use one of {', '.join(journal_export.FORMATS)}")
    journal_export.export(journal, out, fmt, run_id)
    return EXIT_OK


def journal_verify(journal_dir: Path = DEFAULT_JOURNAL, key_file: str | None = None,
                   out: TextIO = sys.stdout) -> int:
    """Recompute the hash chain (and, given the key, authenticate every artifact); exit 1 on any fault."""
    journal = app.open_journal(journal_dir, app.redactor_for(None), create=False)
    broken = journal.verify_chain()
    n = len(journal.events())
    if broken:
        out.write(f"TAMPERED: journal {journal.path}: first bad event seq {broken[0]}: {broken[1]}\n")
        return EXIT_FAILED
    bad = 0
    key = None
    if key_file:
        try:
            key = vault.Key.from_file(key_file)
        except vault.VaultError as exc:
            raise UserError(str(exc)) from None
        for run_row in journal.runs():
            app.check_key(run_row, key)
    for art in journal.artifacts():
        p = Path(art["path"])
        if not p.exists():
            out.write(f"MISSING: artifact {art['id']} at {p}\n")
            bad += 1
        elif key is not None:
            try:
                vault.verify_artifact(p, key, art["bytes"], art["sha256"])
            except vault.VaultError as exc:
                out.write(f"BAD: artifact {art['id']}: {exc}\n")
                bad += 1
    if bad:
        return EXIT_FAILED
    checked = "authenticated" if key else "present (pass --key to authenticate them)"
    out.write(f"OK: {n} events, hash chain intact; {len(journal.artifacts())} artifacts {checked}\n")
    return EXIT_OK


def keygen(path: str) -> int:
    """Write a new 32-byte vault key (0600); never overwrites an existing file."""
    try:
        key = vault.generate_key_file(path)
    except vault.VaultError as exc:
        raise UserError(str(exc)) from None
    sys.stdout.write(f"wrote key {path} (key id {key.key_id}); keep a copy: dumps cannot be read without it\n")
    return EXIT_OK
