"""``make demo``: a real keystone 2025.2 -> 2026.1 upgrade on the built-in lab, checked, then undone.

    .venv/bin/python -m scripts.demo [--dir ./lab] [--keep]

For a newcomer on a fresh machine after ``make setup``. Every step is the real thing and is
shown as the command an operator would type: ``python -m scripts.lab up`` builds two
controllers (MariaDB + keystone each) seeded through the real keystone API, ``upgrade run``
replaces the old controller by the new one, ``upgrade journal export/verify`` audits the run,
``upgrade revert`` brings the old controller back. What each side serves is read back through
the keystone API and the databases, before and after, and printed as plain text tables.

Exit codes: 0 every check passed · 1 a check or a command failed (the message says which) ·
2 bad input (``--dir`` is not a lab) · 130 interrupted. The lab is stopped at the end (its
files stay) unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from scripts.lab import ksapi, svc
from scripts.lab.controller import alembic_heads
from scripts.lab.mariadb import MariaDB
from scripts.lab.proc import LabError

REPO = Path(__file__).resolve().parents[1]
STATE = "lab-state.json"  # what marks a directory as a lab (scripts/lab/__main__.py)
EXPORT = "journal-export.jsonl"
# Measured on a 2-core machine (5 runs): lab up 15-26 s, upgrade run 9-16 s, revert 2-4 s, the rest ~3 s.
ESTIMATE = "about a minute (33-57 s measured on a 2-core machine; allow 2 minutes on a slow one)"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class DemoFailed(Exception):
    """A command or a check failed; the message says what, and where to look."""


class NotALab(DemoFailed):
    """--dir names a directory the demo must not wipe."""


# ---------------------------------------------------------------------- output


def say(text: str = "") -> None:
    """Flushed at once: the `upgrade` subprocesses write to the same terminal in between."""
    print(text, flush=True)


def section(title: str) -> None:
    say(f"\n=== {title} " + "=" * max(3, 76 - len(title)))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table: no dependency beyond the standard library."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def heads_text(heads: set[str]) -> str:
    return ", ".join(sorted(heads)) or "(no schema)"


# ---------------------------------------------------------------------- commands


def command(argv: list[str], shown: str, capture: bool = False) -> subprocess.CompletedProcess:
    """Run one command from the repository, showing it as an operator would type it.

    The cwd matters: the lab's plan drives ``python -m scripts.lab.svc``. Without ``capture``
    the output goes straight to the terminal, live.
    """
    say(f"$ {shown}")
    return subprocess.run(argv, cwd=REPO, text=True, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE if capture else None)


def upgrade(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    """The real `upgrade` command line."""
    return command([sys.executable, "-m", "upgrade.cli", *args], " ".join(("upgrade", *args)), capture)


def lab_cli(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    """The lab's command line (``python -m scripts.lab``)."""
    return command([sys.executable, "-m", "scripts.lab", *args], " ".join(("python -m scripts.lab", *args)), capture)


def must(res: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    """Stop the demo at the first failed command: every later step builds on it."""
    if res.returncode < 0:
        raise DemoFailed(f"{what} was killed by signal {-res.returncode}")
    if res.returncode != 0:
        raise DemoFailed(f"{what} failed (exit {res.returncode}); its messages are above")
    return res


# ---------------------------------------------------------------------- the lab


def fresh_lab(lab: Path) -> dict[str, Any]:
    """Stop and wipe a lab left in DIR by an earlier demo, then build a new one; returns its summary.

    Only a directory holding a lab (its state file) is ever wiped: ``--dir ~`` must not cost a home.
    """
    if (lab / STATE).exists():
        say(f"{lab} holds a lab from an earlier run: stopping it and starting fresh")
        must(lab_cli("down", str(lab)), "stopping the earlier lab")
        shutil.rmtree(lab)
    elif lab.exists() and any(lab.iterdir()):
        raise NotALab(f"{lab} exists and is not a lab (no {STATE}); it is left alone — pick another --dir")
    say("building the lab: 2 MariaDB servers, keystone 2025.2 (seeded through its API) and 2026.1 (15-30 s)")
    res = must(lab_cli("up", str(lab), capture=True), "building the lab")
    summary = json.loads(res.stdout)
    say(f"lab ready: keystone at {summary['keystone_url']}, plan {summary['plan']}")
    return summary


def db(summary: dict[str, Any], side: str) -> MariaDB:
    return MariaDB(Path(summary[side]["db_base"]), summary[side]["db_port"])


# ---------------------------------------------------------------------- what the controllers serve


@dataclass
class View:
    """What the lab shows at one moment: schema revisions, who serves, and the API's answers."""

    old_heads: set[str]
    new_heads: set[str]
    old_db_sums: dict[str, tuple[int, int | None]]
    old_serving: bool
    new_serving: bool
    admin_status: int
    demo_status: int
    ids: dict[str, set[str]] = field(default_factory=dict)
    blob: str | None = None

    @property
    def serving(self) -> str:
        names = [n for n, up in (("old (2025.2)", self.old_serving), ("new (2026.1)", self.new_serving)) if up]
        return " + ".join(names) or "none"


def status_text(code: int) -> str:
    return str(code) if code else "no answer"


def _api(summary: dict[str, Any]) -> tuple[int, int, dict[str, set[str]], str | None]:
    """Token statuses (0: nothing listens), ids of projects/users/endpoints and the credential blob.

    A keystone that does not answer is a failed check in the table, not a traceback.
    """
    try:
        return _api_answers(summary)
    except OSError:
        return 0, 0, {}, None


def _api_answers(summary: dict[str, Any]) -> tuple[int, int, dict[str, set[str]], str | None]:
    url, seed = summary["keystone_url"], summary["seed"]
    admin = ksapi.issue_token(url, "admin", summary["admin_password"], project="admin")
    demo = ksapi.issue_token(url, "demo", seed["demo_password"], project="demo")
    if admin.status != 201:
        return admin.status, demo.status, {}, None
    token = admin.headers["x-subject-token"]
    ids = {kind: {item["id"] for item in ksapi.call("GET", f"{url}/{kind}", token)[kind]}
           for kind in ("projects", "users", "endpoints")}
    cred = ksapi.request("GET", f"{url}/credentials/{seed['credential_id']}", token=token)
    blob = cred.body["credential"]["blob"] if cred.status == 200 else f"HTTP {cred.status}"
    return admin.status, demo.status, ids, blob


def observe(summary: dict[str, Any]) -> View:
    admin_status, demo_status, ids, blob = _api(summary)
    return View(
        old_heads=alembic_heads(db(summary, "old")), new_heads=alembic_heads(db(summary, "new")),
        old_db_sums=db(summary, "old").checksums("keystone"),
        old_serving=svc.status(Path(summary["old"]["root"]), "keystone"),
        new_serving=svc.status(Path(summary["new"]["root"]), "keystone"),
        admin_status=admin_status, demo_status=demo_status, ids=ids, blob=blob,
    )


def print_before(v: View) -> None:
    say(table(("what", "old controller (2025.2)", "new controller (2026.1)"), [
        ("keystone schema (alembic_version)", heads_text(v.old_heads), heads_text(v.new_heads) + "  (fresh, empty)"),
        ("keystone serving", "yes" if v.old_serving else "NO", "yes" if v.new_serving else "no (installed only)"),
        ("projects / users / endpoints", " / ".join(str(len(v.ids.get(k, ()))) for k in
                                                    ("projects", "users", "endpoints")), "-"),
    ]))


# ---------------------------------------------------------------------- checks


@dataclass
class Check:
    what: str
    before: str
    after: str
    ok: bool | None  # None: information, not a pass/fail check

    @property
    def mark(self) -> str:
        return "info" if self.ok is None else ("OK" if self.ok else "FAILED")


def _same(kind: str, before: View, after: View) -> Check:
    b, a = before.ids.get(kind, set()), after.ids.get(kind, set())
    return Check(f"{kind} (through the API)", str(len(b)), f"{len(a)}, " + ("same ids" if a == b else "DIFFERENT ids"),
                 bool(b) and a == b)


def api_checks(before: View, after: View, blob: str) -> list[Check]:
    """The API answers the same after as before: logins, the same objects, the encrypted blob."""
    return [
        Check("token: admin, old password", status_text(before.admin_status), status_text(after.admin_status),
              after.admin_status == 201),
        _same("projects", before, after), _same("users", before, after), _same("endpoints", before, after),
        Check("token: demo user", status_text(before.demo_status), status_text(after.demo_status),
              after.demo_status == 201),
        Check("credential blob (decrypted)", str(before.blob), str(after.blob), after.blob == blob),
    ]


def upgrade_checks(before: View, after: View, downtime: float, blob: str) -> tuple[list[Check], list[Check]]:
    """Schema and serving checks, then the API checks; the 2026.1 heads are those of the fresh new DB."""
    schema = [
        Check("keystone schema (alembic_version)", heads_text(before.old_heads) + "  (old DB)",
              heads_text(after.new_heads) + "  (new DB)",
              after.new_heads == before.new_heads and after.new_heads != before.old_heads),
        Check("old DB schema and data", heads_text(before.old_heads), "unchanged" if (
            after.old_heads, after.old_db_sums) == (before.old_heads, before.old_db_sums) else "CHANGED",
              (after.old_heads, after.old_db_sums) == (before.old_heads, before.old_db_sums)),
        Check("keystone serving", before.serving, after.serving, after.new_serving and not after.old_serving),
    ]
    return schema, api_checks(before, after, blob) + [
        Check("API downtime", "-", f"{downtime:.1f} s (stop_source -> verify)", None)]


def revert_checks(before: View, after: View, blob: str, status: str) -> list[Check]:
    """The old controller serves the same data as before the upgrade; its DB was never touched."""
    return [
        Check("keystone serving", before.serving, after.serving, after.old_serving and not after.new_serving),
        Check("old DB schema (alembic_version)", heads_text(before.old_heads), heads_text(after.old_heads),
              after.old_heads == before.old_heads),
        Check("old DB data (table checksums)", f"{len(before.old_db_sums)} tables",
              "unchanged" if after.old_db_sums == before.old_db_sums else "CHANGED",
              after.old_db_sums == before.old_db_sums),
        *api_checks(before, after, blob),
        Check("journal run status", "-", status, status == "reverted"),
    ]


def print_checks(checks: list[Check], before_label: str, after_label: str) -> list[Check]:
    say(table(("check", before_label, after_label, "result"),
              [(c.what, c.before, c.after, c.mark) for c in checks]))
    return [c for c in checks if c.ok is False]


# ---------------------------------------------------------------------- the journal


def journal_json(journal: Path) -> dict[str, Any]:
    res = must(upgrade("journal", "export", "--journal", str(journal), "--format", "json", capture=True),
               "exporting the journal as json")
    return json.loads(res.stdout)


def downtime(doc: dict[str, Any]) -> float:
    """API downtime of the latest run: from the intent to stop the old keystone to the verify step's done."""
    run = max(doc["runs"], key=lambda r: r["id"])["id"]
    ts = {(e["step"], e["kind"]): e["ts"] for e in doc["events"] if e["run"] == run}
    try:
        return ts[("keystone.verify", "done")] - ts[("keystone.stop_source", "intent")]
    except KeyError as exc:
        raise DemoFailed(f"the journal of run {run} has no {exc.args[0]} event") from None


def export_and_verify(lab: Path) -> Path:
    """jsonl export (0600: it is an audit trail of the site) and a full verify with the vault key."""
    path = lab / EXPORT
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        say(f"$ upgrade journal export --journal {lab / 'journal'} > {path}")
        res = subprocess.run([sys.executable, "-m", "upgrade.cli", "journal", "export", "--journal",
                              str(lab / "journal")], cwd=REPO, stdout=out, stdin=subprocess.DEVNULL)
    must(res, "upgrade journal export")
    say(f"wrote {sum(1 for _ in path.open())} events to {path}")
    must(upgrade("journal", "verify", "--journal", str(lab / "journal"), "--key", str(lab / "dump.key")),
         "upgrade journal verify")
    return path


def run_status(journal: Path) -> str:
    res = must(upgrade("status", "--journal", str(journal), "-f", "json", capture=True), "upgrade status")
    return json.loads(res.stdout)["status"]


# ---------------------------------------------------------------------- the demo


@dataclass
class Demo:
    lab: Path
    keep: bool
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, t0: float) -> float:
        self.timings[name] = time.monotonic() - t0
        return self.timings[name]

    def intro(self) -> None:
        say(f"""openstack-upgrade demo: a real keystone 2025.2 -> 2026.1 controller replacement, then its undo.

It will, in {self.lab}:
  1. build a lab: two MariaDB servers, the old controller (keystone 2025.2, seeded through its API
     with a project, a user, an encrypted credential and endpoints) and the new one (2026.1, empty);
  2. record what the old API serves and both schema revisions;
  3. run `upgrade run {self.lab}/plan.toml` (live output below) and check the new API serves the same;
  4. export and verify the journal (hash chain and encrypted dumps);
  5. run `upgrade revert` and check the old controller serves again, its DB untouched;
  6. {'leave the lab running (--keep)' if self.keep else 'stop the lab (--keep would leave it running)'}.
It takes {ESTIMATE}. Everything runs on 127.0.0.1.""")

    def build(self) -> tuple[dict[str, Any], View]:
        section("1. the lab")
        t0 = time.monotonic()
        summary = fresh_lab(self.lab)
        self.timed("lab up", t0)
        section("2. before: the old controller serves")
        before = observe(summary)
        if before.admin_status != 201 or not before.old_serving:
            raise DemoFailed(f"the fresh lab's old keystone does not serve (token: {status_text(before.admin_status)})")
        print_before(before)
        return summary, before

    def run_upgrade(self, summary: dict[str, Any], before: View) -> None:
        section("3. the upgrade: upgrade run (live)")
        t0 = time.monotonic()
        must(upgrade("run", summary["plan"]), "upgrade run")
        wall = self.timed("upgrade run", t0)
        say(f"\nupgrade run finished in {wall:.1f} s; reading its timestamps from the journal:")
        gap = downtime(journal_json(self.lab / "journal"))
        self.timings["API downtime"] = gap
        after = observe(summary)
        schema, api = upgrade_checks(before, after, gap, summary["seed"]["credential_blob"])
        say("")
        say(table(("service", "release", "schema revision before -> after", "API check", "downtime"), [(
            "keystone", f"{summary['old']['release']} -> {summary['new']['release']}",
            f"{heads_text(before.old_heads)} -> {heads_text(after.new_heads)}",
            f"{sum(c.ok is True for c in api)}/{sum(c.ok is not None for c in api)} OK", f"{gap:.1f} s")]))
        say("")
        failed = print_checks(schema + api, "before (old controller)", "after (new controller)")
        if failed:
            raise DemoFailed("after the upgrade: " + "; ".join(f"{c.what}: {c.after}" for c in failed))
        say("\nUPGRADE OK: the new controller (2026.1) serves the old controller's data.")

    def audit(self) -> None:
        section("4. the audit trail: export and verify the journal")
        t0 = time.monotonic()
        export_and_verify(self.lab)
        self.timed("export + verify", t0)

    def run_revert(self, summary: dict[str, Any], before: View) -> None:
        section("5. the undo: upgrade revert (live)")
        t0 = time.monotonic()
        must(upgrade("revert", "--journal", str(self.lab / "journal")), "upgrade revert")
        wall = self.timed("upgrade revert", t0)
        after = observe(summary)
        say(f"\nupgrade revert finished in {wall:.1f} s\n")
        checks = revert_checks(before, after, summary["seed"]["credential_blob"], run_status(self.lab / "journal"))
        failed = print_checks(checks, "before the upgrade", "after the revert")
        if failed:
            raise DemoFailed("after the revert: " + "; ".join(f"{c.what}: {c.after}" for c in failed))
        say("\nREVERT OK: the revert restored the old controller (2025.2): it serves again, its DB untouched.")
        say("the journal now also holds the revert; exporting and verifying it once more:")
        export_and_verify(self.lab)

    def where(self) -> None:
        section("where things are")
        journal = self.lab / "journal"
        say(table(("what", "path"), [
            ("journal (SQLite, hash-chained)", str(journal)), ("log of every run", str(journal / "upgrade.log")),
            ("journal export (jsonl)", str(self.lab / EXPORT)), ("plan", str(self.lab / "plan.toml")),
            ("vault key (decrypts the dumps)", str(self.lab / "dump.key")),
            ("the run's status", f"upgrade status --journal {journal}"),
            ("tear the lab down", f"python -m scripts.lab down {self.lab}"
                                  + ("" if self.keep else "  (the demo does it now)")),
        ]))

    def timing_table(self) -> None:
        say("\ntimings: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))

    def finish(self) -> None:
        """Stop the lab unless --keep; files stay either way, so the journal can still be read.

        Runs after a failure too: a demo must not leave servers behind that nobody asked to keep.
        """
        if not (self.lab / STATE).exists():
            return
        if self.keep:
            say(f"\nthe lab keeps running (--keep). Tear it down with: python -m scripts.lab down {self.lab}")
            return
        say(f"\nstopping the lab (pass --keep to leave it running); its files stay in {self.lab}")
        t0 = time.monotonic()
        res = lab_cli("down", str(self.lab))
        self.timed("lab down", t0)
        if res.returncode != 0:
            raise DemoFailed(f"stopping the lab failed; try again: python -m scripts.lab down {self.lab}")
        say(f"start it again with: python -m scripts.lab up {self.lab}; remove it with: rm -rf {self.lab}")

    def run(self) -> None:
        self.intro()
        t0 = time.monotonic()
        try:
            summary, before = self.build()
            self.run_upgrade(summary, before)
            self.audit()
            self.run_revert(summary, before)
            self.where()
        finally:
            self.finish()
        self.timed("total", t0)
        self.timing_table()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 3)[3],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("lab"), help="lab directory (default: ./lab); "
                        "a lab already there is stopped and replaced")
    parser.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    args = parser.parse_args(argv)
    demo = Demo(args.dir.resolve(), args.keep)
    try:
        demo.run()
    except NotALab as exc:
        say(f"\nDEMO REFUSED: {exc}")
        return EXIT_USAGE
    except (DemoFailed, LabError, pymysql.MySQLError, OSError) as exc:
        say(f"\nDEMO FAILED: {exc}")
        if (demo.lab / "journal").exists():
            say(f"Log of the tool: {demo.lab / 'journal' / 'upgrade.log'}")
            say(f"Where the run stopped: upgrade status --journal {demo.lab / 'journal'}"
                + ("" if args.keep else f" (after `python -m scripts.lab up {demo.lab}`, which brings the "
                                        "stopped lab back as the failure left it)"))
        return EXIT_FAILED
    except KeyboardInterrupt:
        say("\ndemo interrupted")
        return EXIT_INTERRUPTED
    say("\nDEMO OK: every check passed.")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
