"""The CLI verbs, one short documented function each, over ``upgrade.app`` (alembic's command.py style).

Each returns an exit code or raises :class:`UserError`; ``upgrade.cli`` turns those into messages.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any, TextIO

from journal import audit, vault
from journal import export as journal_export
from journal.store import Journal, JournalError
from services.infra import identity, writeguard
from statemachine.runner import RevertFailed, RunFailed
from upgrade import (
    amqpcheck,
    app,
    browser,
    check,
    claims,
    fleet,
    gantt,
    guards,
    hosts,
    logs,
    plangroup,
    planinit,
    planview,
    progress,
    report,
    reportpage,
    revertguard,
    runview,
    serving,
    unplanned,
    window,
)
from upgrade import plan as plan_mod
from upgrade.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BusyError, UserError

DEFAULT_JOURNAL = Path("upgrade-journal")


def _open(journal_dir: Path) -> Journal:
    """An existing journal, refused when its directory is open to other users."""
    guards.require_private_dir(Path(journal_dir))
    return app.open_journal(journal_dir, app.redactor_for(None), create=False)


def _run_row(journal: Journal, run_id: str) -> dict[str, Any]:
    try:
        return journal.run(run_id)
    except JournalError as exc:
        raise UserError(str(exc)) from None


def _failure(exc: RunFailed, journal_dir: Path, state: str | None) -> UserError:
    verb = "revert" if isinstance(exc, RevertFailed) else "run"
    jd = shlex.quote(str(journal_dir))  # the commands below are meant to be copied into a shell
    if exc.interrupted:
        again = "revert" if verb == "revert" else "resume"
        err = UserError(f"interrupted (Ctrl-C) during {exc.step} on {exc.host}; {exc.machine} stays in state "
                        f"{state or '?'} and the journal records where — continue with `upgrade {again} --journal "
                        f"{jd}`" + ("" if verb == "revert" else f" or undo with `upgrade revert --journal {jd}`"))
        err.exit_code = EXIT_INTERRUPTED
        return err
    text = f"{exc.step} failed on {exc.host}: {exc}"
    if exc.output:
        tail = "\n".join(exc.output.strip().splitlines()[-15:])
        text += f"\n--- output (tail) ---\n{tail}\n---"
    if verb == "run":
        text += (f"\nThe run stopped with {exc.machine} in state {state or '?'}; nothing after that step ran."
                 f"\nEither fix the cause and continue: upgrade resume --journal {jd}"
                 f"\nor undo everything, back to the old controller serving: upgrade revert --journal {jd}")
    elif getattr(exc, "partial", False):
        text += ("\nThe revert went on past it: the old controller's services were started again. What failed "
                 "stays to be undone on the new controller; fix the cause and run the revert again to finish it: "
                 f"upgrade revert --journal {jd}")
    else:
        text += (f"\nThe revert stopped at {exc.step}; fix the cause and run it again: "
                 f"upgrade revert --journal {jd}")
    text += f"\nLog: {journal_dir / 'upgrade.log'}"
    err = UserError(text)
    err.exit_code = EXIT_FAILED
    return err


def _ahead(session: app.Session, verb: str) -> int:
    """How many steps this invocation will do: not yet committed (run/resume) or to undo (revert)."""
    view = session.runner.view()
    n = 0
    for m in session.runner.machines:
        mv = view.machine(m.name)
        for s in m.steps:
            committed = s.name in mv.committed
            n += (committed or s.name == mv.attempted) if verb == "revert" else not committed
    return n


def _drive(session: app.Session, verb: str, display: progress.Display) -> int:
    log = logs.get()
    try:
        display.begin(verb, _ahead(session, verb))
        if verb == "revert":
            session.runner.revert()
            back = serving.wait_back(session.journal, session.run_id, session.runner.ctx.source.host)
            log.info("old_listening_again", run=session.run_id, listeners=sorted(back))
        else:
            session.runner.forward()
            revertguard.record_baseline(session.plan, session.journal, session.run_id)  # what revert compares
    except RunFailed as exc:
        state = next((m.state for m in session.runner.machines if m.name == exc.machine), None)
        log.error(f"{verb}_failed", run=session.run_id, step=exc.step, error=str(exc), interrupted=exc.interrupted)
        raise _failure(exc, session.journal.dir, state) from None
    finally:
        display.close()
    log.info(f"{verb}_finished", run=session.run_id)
    return EXIT_OK


def _session(plan: plan_mod.Plan, journal: Journal, key: vault.Key, run_id: str,
             display: progress.Display, claimed: writeguard.Claimed | None,
             unpin: bool = False) -> app.Session:
    runner = app.build_runner(plan, journal, key, run_id, observer=display, progress=display.moved, claimed=claimed,
                              unpin=unpin)
    return app.Session(plan, journal, key, run_id, runner)


def run(plan_path: str, quiet: bool = False) -> int:
    """Start a new upgrade run from PLAN and drive it to the end."""
    plan = plan_mod.load(plan_path)
    plangroup.refuse_run(plan.path, plan.source.group)
    claims.refuse_member_conflicts(plan)  # an HA plan: no old member among the new, none twice (exit 2)
    planned, plan = plan, fleet.working_plan(plan)  # an HA plan: an old node to read, every new one healthy
    # everything that can refuse the plan runs before anything is created, even the journal
    guards.require_private_dir(plan.journal_dir)
    guards.require_private_dir(app.vault_dir(plan), "vault directory")
    key = app.load_key(plan, plan.journal_dir, new_salt=not app.has_runs(plan.journal_dir))
    app.preflight_db(plan)
    app.service_machines(plan)  # the steps' declared dependencies hold (a programming error otherwise)
    unplanned.refuse(plan)  # every service the old controller runs is upgraded or ignored (exit 2)
    fleet.refuse_address_problems(plan)  # the moved addresses can leave the old controller for good (exit 2)
    amqpcheck.refuse(plan)  # the new broker takes every carried-over transport_url (exit 2)
    ids = claims.guard_identity(plan)  # the target is not the source under another name (exit 2)
    claims.refuse_if_claimed(plan, plan.journal_dir)  # no other run of this cloud (exit 3)
    journal = app.open_journal(plan.journal_dir, app.redactor_for(plan), create=True)
    logs.configure(journal.redactor, journal.dir / "upgrade.log", quiet, progress=True)
    lk = app.lock(journal.dir, "run")
    try:
        if (open_run := journal.unfinished_run()) is not None:
            jd = shlex.quote(str(journal.dir))
            raise BusyError(f"run {open_run['id']} in {journal.dir} (plan {open_run['plan_path']}) is unfinished "
                            f"({open_run['status']}) — finish it with `upgrade resume --journal {jd}` or "
                            f"undo it with `upgrade revert --journal {jd}` before starting another")
        app.authenticate(journal, key)  # the runs before this one, before this one is added
        held = claims.take(plan, journal.dir)
        run_id = journal.create_run(plan.raw, plan.sha256, str(plan.path), plan.from_release, plan.to_release,
                                    key.key_id)
        held = claims.set_state(plan, held, run_id=run_id, state="running")
        claims.record_identity(journal, run_id, ids)
        fleet.record_working(journal, run_id, planned, plan)  # a healthy old member the plan did not name
        logs.get().info("run_started", run=run_id, plan=str(plan.path), services=list(plan.services),
                        jump=f"{plan.from_release}->{plan.to_release}", journal=str(journal.dir))
        display = progress.for_console(quiet)
        try:
            claimed = claims.claimed(plan, held, ids)
            session = _session(plan, journal, key, run_id, display, claimed)
            window.record_roles(journal, run_id, session.runner.machines)  # the cut-over steps the window counts
            return _drive(session, "run", display)
        finally:
            claims.settle(plan, journal, run_id, held)
    finally:
        lk.release()


def _continue(verb: str, journal_dir: Path, run_id: str | None, plan_path: str | None, quiet: bool,
              discard_new_writes: bool = False) -> int:
    journal = _open(journal_dir)
    run_row = _run_row(journal, run_id) if run_id else journal.unfinished_run()
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
                        f"{shlex.quote(str(journal.dir))}` (a revert is not resumed forward)")
    if verb == "resume" and status in ("completed", "reverted"):
        raise UserError(f"nothing to resume: run {run_row['id']} is {status}")
    if verb == "unpin" and status != "completed":
        raise UserError(f"run {run_row['id']} is {status}: `upgrade unpin` follows a completed run — finish it "
                        f"first (`upgrade resume --journal {shlex.quote(str(journal.dir))}`)")
    if verb == "revert" and status == "reverted":
        raise UserError(f"nothing to revert: run {run_row['id']} is already reverted")
    path = plan_path or run_row["plan_path"]
    plan = plan_mod.load(path)
    if plan.sha256 != run_row["plan_sha256"]:
        raise UserError(f"the plan {plan.path} changed since run {run_row['id']} started (sha256 "
                        f"{run_row['plan_sha256'][:12]}… then, {plan.sha256[:12]}… now) — restore the plan as it "
                        "was (or pass it with --plan); a run never continues under a different plan")
    plan = fleet.recorded_plan(plan, journal, run_row["id"])  # the old member the run started through
    guards.require_private_dir(plan.artifact_dir or journal.dir / "artifacts", "vault directory")
    journal.redactor = app.redactor_for(plan)
    logs.configure(journal.redactor, journal.dir / "upgrade.log", quiet, progress=True)
    lk = app.lock(journal.dir, verb)
    try:
        key = app.load_key(plan, journal.dir)
        app.check_key(run_row, key)
        app.authenticate(journal, key)  # before any work: a journal edited without the key is refused
        rid = run_row["id"]
        if verb == "unpin" and (why := app.unpin_refusal(plan)):  # before the claim: refused, nothing changed
            raise UserError(f"{why} (run {rid}, plan {plan.path})")
        if verb == "revert" and revertguard.needed(status, journal, rid):  # tenants' writes on the new cloud
            revertguard.guard(plan, journal, key, rid, discard_new_writes)
        held, ids = _guard_continue(verb, plan, journal, run_row)
        logs.get().info(f"{verb}_started", run=rid, status=status)
        app.sweep_leftovers(plan)
        display = progress.for_console(quiet)
        try:
            claimed = claims.claimed(plan, held, ids)
            return _drive(_session(plan, journal, key, rid, display, claimed, unpin=verb == "unpin"), verb, display)
        finally:
            claims.settle(plan, journal, rid, held)
    finally:
        lk.release()


def unpin(plan_path: str, quiet: bool = False) -> int:
    """Unpin nova after a run whose plan left the computes for later (``[upgrade] unpin = "later"``): refused,
    naming them, while a nova-compute does not report the target's service version (exit 2, nothing changed);
    else nova-unpin runs as the last machine of that run (journaled; `upgrade revert` undoes it too)."""
    plan = plan_mod.load(plan_path)
    if "nova-unpin" not in plan.services or not plan.unpin_later:
        raise UserError(f"{plan.path} does not leave unpinning for later (it needs \"nova-unpin\" in "
                        "upgrade.services and upgrade.unpin = \"later\"): its run unpins by itself")
    journal = _open(plan.journal_dir)
    row = next((r for r in reversed(journal.runs()) if r["plan_sha256"] == plan.sha256), None)
    if row is None:
        raise UserError(f"no run of {plan.path} in {journal.dir} — `upgrade run {shlex.quote(str(plan.path))}` first")
    if not app.deferred(plan, journal, row["id"]):
        raise UserError(f"nothing to unpin: run {row['id']} has unpinned already (`upgrade status`)")
    return _continue("unpin", plan.journal_dir, row["id"], plan_path, quiet)


def _guard_continue(verb: str, plan: plan_mod.Plan, journal: Journal,
                    run_row: dict[str, Any]) -> tuple[claims.Claim | None, identity.Servers | None]:
    """Before any step of a resume or revert: the target is still not the source, still the DB server the
    run started on, and claimed by this run (taken again if it was cleared; another run's claim: exit 3).
    Returns the claim and both servers' identities (None: unchecked), what the writing steps assert.

    A revert whose target cannot be reached goes on (the old controller must come back); a resume stops."""
    ids = None
    try:
        ids = claims.guard_identity(plan)
    except claims.Unidentified as exc:
        if verb != "revert":
            raise
        logs.get().warning("identity_unchecked", run=run_row["id"], error=str(exc))
    else:
        claims.check_target_unchanged(journal, run_row["id"], ids, plan)
    return claims.hold(plan, journal, run_row, verb), ids


def resume(journal_dir: Path = DEFAULT_JOURNAL, run_id: str | None = None, plan_path: str | None = None,
           quiet: bool = False) -> int:
    """Continue the unfinished run exactly where it stopped; committed steps never run again."""
    return _continue("resume", journal_dir, run_id, plan_path, quiet)


def revert(journal_dir: Path = DEFAULT_JOURNAL, run_id: str | None = None, plan_path: str | None = None,
           quiet: bool = False, discard_new_writes: bool = False) -> int:
    """Undo a run's committed steps backwards until the old controller serves as before. A completed run
    whose new controller took writes since is refused, unless they are dumped into the vault first."""
    return _continue("revert", journal_dir, run_id, plan_path, quiet, discard_new_writes)


def _chosen_run(journal: Journal, run_id: str | None) -> dict[str, Any]:
    """The run named, else the unfinished one, else the latest: what status, journal show and report read."""
    row = _run_row(journal, run_id) if run_id else (journal.unfinished_run() or journal.latest_run())
    if row is None:
        raise UserError(f"no run in {journal.dir} — start one with `upgrade run PLAN`")
    return row


def status(journal_dir: Path = DEFAULT_JOURNAL, run_id: str | None = None, fmt: str = "table",
           out: TextIO = sys.stdout) -> int:
    """Where each service stands: state, last step, time spent, last error, what to do next, and the
    maintenance window actually taken (per service and in total, broken down by step kind)."""
    journal = _open(journal_dir)
    runview.write_status(runview.status_data(journal, _chosen_run(journal, run_id)), fmt, out)
    return EXIT_OK


def runs(journal_dir: Path = DEFAULT_JOURNAL, fmt: str = "table", out: TextIO = sys.stdout) -> int:
    """Every run of the journal: id, status, releases, operator, created and last changed."""
    runview.write_runs(_open(journal_dir), fmt, out)
    return EXIT_OK


def journal_show(journal_dir: Path = DEFAULT_JOURNAL, run_id: str | None = None, fmt: str = "table",
                 out: TextIO = sys.stdout) -> int:
    """The timeline of a run (default: the unfinished or latest): time, machine, step, kind, duration, host, rc."""
    journal = _open(journal_dir)
    runview.write_timeline(journal, _chosen_run(journal, run_id), fmt, out)
    return EXIT_OK


def _private_output(path: Path, force: bool, binary: bool = False) -> Any:
    """A new 0600 file for an export or a report (they hold the plan and the commands); never overwritten
    unless forced, and never through a symbolic link (--force replaces the file at *path*, not what a link
    points to)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UserError(f"{path} already exists — choose another file, or pass --force to overwrite it") from None
    except OSError as exc:
        if os.path.islink(path):
            raise UserError(f"{path} is a symbolic link (to {os.readlink(path)}); an export never writes through one "
                            "— remove the link or choose another file") from None
        raise UserError(f"cannot write {path}: {exc.strerror} — choose a writable path") from None
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")


def journal_export_cmd(journal_dir: Path = DEFAULT_JOURNAL, run_id: str | None = None, fmt: str = "jsonl",
                       out: TextIO = sys.stdout, output: Path | None = None, force: bool = False) -> int:
    """Write the audit trail (events with their hash chain) as jsonl, json or csv, to stdout or a 0600 file."""
    journal = _open(journal_dir)
    if fmt not in journal_export.FORMATS:
        raise UserError(f"unknown export format {fmt!r}; use one of {', '.join(journal_export.FORMATS)}")
    if run_id:
        _run_row(journal, run_id)
    if output is None:
        journal_export.export(journal, out, fmt, run_id)
        return EXIT_OK
    with _private_output(Path(output), force) as fh:
        n = journal_export.export(journal, fh, fmt, run_id)
    sys.stderr.write(f"wrote {n} events to {output} ({fmt}, mode 0600)\n")
    return EXIT_OK


def _key_for(journal: Journal, key_file: Path | None, passphrase_env: str | None) -> vault.Key:
    """The vault key of the journal's runs (a key file, or a passphrase with the journal's salt), to
    authenticate the journal and its artifacts; a key of another run or journal is refused."""
    key = app.key_from(key_file, passphrase_env, journal.dir, False, "--passphrase-env")
    for run_row in journal.runs():
        app.check_key(run_row, key)
    if journal.sealed_key_id not in (None, key.key_id):
        raise UserError(f"journal {journal.path} is sealed with vault key id {journal.sealed_key_id}, but the key "
                        f"given has id {key.key_id} — use the key file (or passphrase) of its runs")
    return key


def journal_verify(journal_dir: Path = DEFAULT_JOURNAL, key_file: str | None = None,
                   passphrase_env: str | None = None, unkeyed: bool = False, out: TextIO = sys.stdout) -> int:
    """Authenticate the journal with the vault key (every event, run and artifact row and the head) and
    every artifact; ``unkeyed``: the hash chain only. Exit 1 on any fault, or when it holds no run."""
    journal = _open(journal_dir)
    if key_file is None and passphrase_env is None and not unkeyed:
        raise UserError("journal verify authenticates the journal with the vault key: pass --key FILE (or "
                        "--passphrase-env VAR when the runs used a passphrase); --unkeyed checks only the hash "
                        "chain, which anyone who can write the journal could recompute")
    key = None if unkeyed else _key_for(journal, Path(key_file) if key_file else None, passphrase_env)
    result = audit.verify(journal, key)
    for line in result.lines():
        out.write(line + "\n")
    return EXIT_OK if result.ok else EXIT_FAILED


def report_cmd(output: Path, journal_dir: Path = DEFAULT_JOURNAL, run_id: str | None = None,
               fmt: str | None = None, key_file: str | None = None, force: bool = False) -> int:
    """Render a run (default: the unfinished or latest) from the journal alone: one offline HTML page, or
    its timeline alone as SVG or PNG (the format follows --format, else the file's suffix); 0600, like an export."""
    journal = _open(journal_dir)
    row = _chosen_run(journal, run_id)
    fmt = fmt or {".svg": "svg", ".png": "png"}.get(Path(output).suffix.lower(), "html")
    key = _key_for(journal, Path(key_file), None) if key_file else None
    rep = report.gather(journal, row["id"], audit.verify(journal, key))
    if fmt == "html":
        data = reportpage.render(rep, str(journal.dir)).encode()
    else:
        svg = gantt.render(rep)
        data = svg.encode() if fmt == "svg" else browser.svg_png(svg)
    with _private_output(Path(output), force, binary=True) as fh:
        fh.write(data)
    verdict = "TAMPERED journal, said in the page's header" if rep.verification.tampered else \
        f"journal {'verified' if rep.verification.ok else 'NOT as recorded (see the header)'}"
    sys.stderr.write(f"wrote the {'report' if fmt == 'html' else 'timeline'} of run {row['id']} ({row['status']}, "
                     f"{len(rep.bars)} steps) to {output} ({fmt}, mode 0600); {verdict}\n")
    return EXIT_OK


def keygen(path: str) -> int:
    """Write a new 32-byte vault key (0600); never overwrites an existing file."""
    key = vault.generate_key_file(path)  # a KeyFileError is a UserError: exit 2 with its message
    sys.stdout.write(f"wrote key {path} (key id {key.key_id}); keep a copy: dumps cannot be read without it\n")
    return EXIT_OK


def init(layout: str = "rdo-sysvinit", from_release: str = "2025.2", to_release: str = "2026.1",
         out: TextIO = sys.stdout) -> int:
    """Print an annotated plan for a common layout; every key is explained in a comment."""
    out.write(planinit.render(layout, from_release, to_release))
    return EXIT_OK


def check_cmd(plan_path: str, fmt: str = "table", out: TextIO = sys.stdout) -> int:
    """Pre-flight: a table of checks; exit 0 all OK, 1 warnings, 2 failures. Changes nothing."""
    results = check.run_checks(plan_path)
    check.write(results, plan_path, fmt, out)
    return check.exit_code(results)


def plan_cmd(plan_path: str, graph: str | None = None, out: TextIO = sys.stdout) -> int:
    """Show every step of every service with its host and exact commands; --graph draws the machines."""
    plan = plan_mod.load(plan_path)
    planview.render(plan, out)
    if graph:
        with hosts.secrets_hidden():  # graphviz runs `dot` with the process environment
            path = planview.graph(plan, graph)
        out.write(f"drew the service machines to {path}\n")
    return EXIT_OK


def claim_show(plan_path: str, out: TextIO = sys.stdout) -> int:
    """The claim on the plan's target (DB server and host): which run holds it, from which journal, since when."""
    plan = plan_mod.load(plan_path)
    app.redactor_for(plan)
    for line in claims.describe(plan):
        out.write(line + "\n")
    return EXIT_OK


def claim_clear(plan_path: str, run_id: str, out: TextIO = sys.stdout) -> int:
    """Remove a stale claim from the plan's target: only the run named, never an unfinished run's of this host."""
    plan = plan_mod.load(plan_path)
    app.redactor_for(plan)
    for line in claims.clear(plan, run_id):
        out.write(line + "\n")
    return EXIT_OK
