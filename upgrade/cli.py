"""``upgrade``: the command line. Parses arguments, calls one verb in ``upgrade.commands``,
and turns errors into one clear message and an exit code (never a traceback on the console).

Exit codes: 0 success · 1 a step failed (resume or revert) or `journal verify` found a fault ·
2 bad input (plan, arguments, key, journal) · 3 busy (another process holds the journal, or
another run is unfinished, or another run claims the new controller) · 70 internal error
(traceback in the log) · 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from pathlib import Path

from upgrade import app, commands, planinit, tables
from upgrade.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, UserError

EPILOG = __doc__.split("\n\n", 1)[1]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="upgrade", description="Upgrade an OpenStack control plane by replacing "
                                "the controller, with an exact resume and revert.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def journal_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--journal", type=Path, default=commands.DEFAULT_JOURNAL,
                        help="journal directory (default: ./upgrade-journal)")
        sp.add_argument("--run", dest="run_id", help="run id (default: the unfinished or latest run)")

    sp = sub.add_parser("init", help="print an annotated plan for a common layout")
    sp.add_argument("--layout", choices=tuple(planinit.LAYOUTS), default="rdo-sysvinit")
    sp.add_argument("--from", dest="from_release", default="2025.2", metavar="RELEASE")
    sp.add_argument("--to", dest="to_release", default="2026.1", metavar="RELEASE")
    sp = sub.add_parser("check", help="pre-flight: will the plan run? (changes nothing; exit 0 OK, 1 warn, 2 fail)")
    sp.add_argument("plan")
    sp.add_argument("-f", "--format", dest="fmt", choices=tables.FORMATS, default="table")
    sp = sub.add_parser("plan", help="every step, host and command of a plan (changes nothing)")
    sp.add_argument("plan")
    sp.add_argument("--graph", metavar="FILE", help="also draw the service machines to FILE.svg, .png or .dot")
    sp = sub.add_parser("run", help="start an upgrade from a plan")
    sp.add_argument("plan")
    sp.add_argument("--quiet", action="store_true", help="print nothing but errors")
    sp = sub.add_parser("unpin", help="after a run that left the computes for later: unpin nova once every "
                                      "nova-compute reports the target's service version")
    sp.add_argument("plan")
    sp.add_argument("--quiet", action="store_true", help="print nothing but errors")
    for verb, text in (("resume", "continue an interrupted or failed run"),
                       ("revert", "undo a run: the old controller serves again")):
        sp = sub.add_parser(verb, help=text)
        journal_opts(sp)
        sp.add_argument("--plan", dest="plan_path", help="the plan, if it moved since the run started")
        sp.add_argument("--quiet", action="store_true", help="print nothing but errors")
        if verb == "revert":
            sp.add_argument("--discard-new-writes", action="store_true",
                            help="revert a completed run even though the new controller took writes since: its "
                                 "databases are first dumped into the vault (encrypted, `upgrade journal show`)")
    sp = sub.add_parser("status", help="where each service stands")
    journal_opts(sp)
    sp.add_argument("-f", "--format", dest="fmt", choices=tables.FORMATS, default="table")
    sp = sub.add_parser("runs", help="every run of the journal with status and times")
    sp.add_argument("--journal", type=Path, default=commands.DEFAULT_JOURNAL,
                    help="journal directory (default: ./upgrade-journal)")
    sp.add_argument("-f", "--format", dest="fmt", choices=tables.FORMATS, default="table")
    sp = sub.add_parser("report", help="a run as one offline HTML page (timeline, windows, checks, artifacts, "
                        "verification), or its timeline alone as SVG/PNG")
    journal_opts(sp)
    sp.add_argument("--output", type=Path, metavar="FILE", required=True,
                    help="write to FILE (0600): .html, .svg or .png")
    sp.add_argument("--format", dest="fmt", choices=("html", "svg", "png"),
                    help="html: the whole page; svg, png: the timeline alone (default: FILE's suffix, else html)")
    sp.add_argument("--key", dest="key_file", help="vault key file: also authenticate every artifact")
    sp.add_argument("--force", action="store_true", help="overwrite an existing --output file")
    sp = sub.add_parser("keygen", help="write a new vault key file (0600)")
    sp.add_argument("path", nargs="?", default="dump.key")
    cp = sub.add_parser("claim", help="the claim on the new controller: one run per cloud (show, clear)")
    csub = cp.add_subparsers(dest="cverb", required=True, metavar="ACTION")
    sp = csub.add_parser("show", help="which run claims the plan's target, from which journal, since when")
    sp.add_argument("plan")
    sp = csub.add_parser("clear", help="remove a stale claim (its journal is lost and no `upgrade` runs there)")
    sp.add_argument("plan")
    sp.add_argument("--run", dest="run_id", required=True, help="the run the claim names (`upgrade claim show`)")
    jp = sub.add_parser("journal", help="audit trail: show, export, verify")
    jsub = jp.add_subparsers(dest="jverb", required=True, metavar="ACTION")
    sp = jsub.add_parser("show", help="the timeline of a run: time, machine, step, kind, duration, host, rc")
    journal_opts(sp)
    sp.add_argument("-f", "--format", dest="fmt", choices=tables.FORMATS, default="table")
    sp = jsub.add_parser("export", help="write events as jsonl, json or csv")
    journal_opts(sp)
    sp.add_argument("--format", dest="fmt", choices=("jsonl", "json", "csv"), default="jsonl")
    sp.add_argument("--output", type=Path, metavar="FILE", help="write to FILE (0600) instead of stdout")
    sp.add_argument("--force", action="store_true", help="overwrite an existing --output file")
    sp = jsub.add_parser("verify", help="authenticate the journal and the artifacts with the vault key")
    sp.add_argument("--journal", type=Path, default=commands.DEFAULT_JOURNAL)
    how = sp.add_mutually_exclusive_group()
    how.add_argument("--key", dest="key_file", help="the vault key file of the journal's runs")
    how.add_argument("--passphrase-env", metavar="VAR", help="the variable holding the runs' vault passphrase")
    how.add_argument("--unkeyed", action="store_true",
                     help="without the key: check only the hash chain (a writer could have recomputed it)")
    return p


def dispatch(a: argparse.Namespace) -> int:
    """One verb; its output goes to ``sys.stdout`` as it is at the call (so that ``main`` run in a process
    that redirected it, a test's, writes there), not as it was when ``upgrade.commands`` was imported."""
    if a.verb == "init":
        return commands.init(a.layout, a.from_release, a.to_release, out=sys.stdout)
    if a.verb == "check":
        return commands.check_cmd(a.plan, a.fmt, out=sys.stdout)
    if a.verb == "plan":
        return commands.plan_cmd(a.plan, a.graph, out=sys.stdout)
    if a.verb == "runs":
        return commands.runs(a.journal, a.fmt, out=sys.stdout)
    if a.verb == "run":
        return commands.run(a.plan, a.quiet)
    if a.verb == "unpin":
        return commands.unpin(a.plan, a.quiet)
    if a.verb == "resume":
        return commands.resume(a.journal, a.run_id, a.plan_path, a.quiet)
    if a.verb == "revert":
        return commands.revert(a.journal, a.run_id, a.plan_path, a.quiet, a.discard_new_writes)
    if a.verb == "status":
        return commands.status(a.journal, a.run_id, a.fmt, out=sys.stdout)
    if a.verb == "report":
        return commands.report_cmd(a.output, a.journal, a.run_id, a.fmt, a.key_file, a.force)
    if a.verb == "keygen":
        return commands.keygen(a.path)
    if a.verb == "claim":
        return commands.claim_show(a.plan, out=sys.stdout) if a.cverb == "show" \
            else commands.claim_clear(a.plan, a.run_id, out=sys.stdout)
    if a.jverb == "show":
        return commands.journal_show(a.journal, a.run_id, a.fmt, out=sys.stdout)
    if a.jverb == "export":
        return commands.journal_export_cmd(a.journal, a.run_id, a.fmt, out=sys.stdout, output=a.output, force=a.force)
    return commands.journal_verify(a.journal, a.key_file, a.passphrase_env, a.unkeyed, out=sys.stdout)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return dispatch(args)
    except UserError as exc:  # the one root (journal.errors): plan, key, journal, vault, lock, claim, failed step
        sys.stderr.write(app.REDACTOR.text(f"upgrade {args.verb}: {exc}") + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("upgrade: interrupted; `upgrade status` shows where it stopped\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `upgrade journal show | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:  # a bug: keep the console clean, keep the evidence
        text = app.REDACTOR.text(traceback.format_exc())
        try:
            where = f"traceback in {_internal_error_file(text)}"
        except OSError:
            where = "traceback:\n" + text
        sys.stderr.write(f"upgrade: internal error — please report it with the {where}\n")
        return EXIT_INTERNAL


def _internal_error_file(text: str) -> Path:
    """Write a traceback beside the journal this process opened (never into the current directory, which
    may be anyone's), or to a new private file in the temporary directory when it opened none."""
    if app.OPENED:
        log = app.OPENED[-1] / "internal-error.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    else:
        fd, name = tempfile.mkstemp(prefix="upgrade-internal-error-", suffix=".log")
        log = Path(name)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return log


if __name__ == "__main__":
    sys.exit(main())
