"""``make demo``: a real OpenStack 2025.2 -> 2026.1 control-plane upgrade of a working cloud, checked, then undone.

    .venv/bin/python -m scripts.demo [--dir ./lab] [--keep] [--old 2025.2] [--new 2026.1]

For a newcomer on a fresh machine after ``make setup``. Every step is the real thing and is
shown as the command an operator would type: ``python -m scripts.lab up`` builds two
controllers on two MariaDB servers with every service real (``--real nova,neutron,cinder``:
keystone, glance, placement, nova, neutron and cinder serving their APIs with their brokers, and a
compute host running nova-compute; the old one seeded through the APIs, the new one freshly
installed); a project's user makes a workload through the ``openstack`` client (a server with a
volume attached, a volume with a snapshot, a network with subnet, router, port and security group:
scripts/demoload.py); ``upgrade run`` replaces the old controller by the new one with its live
progress and waits until the cloud reports to it (the plan's ``[cloud]``); the workload is seen
again through the new controller's APIs and the upgraded cloud serves new work (a server booted, a
volume attached, a network made); ``upgrade journal export/verify`` audits the run; ``upgrade
revert`` brings the old controller back (after showing that a plain revert refuses to drop the new
work's writes), and the workload is seen through it again. What each side serves is read the way
an operator checks it (scripts/lab/verify.py: the APIs on the management address, the schema
revisions, the table checksums of keystone's and glance's databases), before and after, and
printed as plain text tables.

Exit codes: 0 every check passed · 1 a check or a command failed (the message names it) ·
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymysql

from scripts.demoload import Workload
from scripts.lab import grenade, units, verify
from scripts.lab.mariadb import MariaDB
from scripts.lab.plan import cloud_env
from scripts.lab.proc import LabError
from upgrade import tables

REPO = Path(__file__).resolve().parents[1]
STATE = "lab-state.json"  # what marks a directory as a lab (scripts/lab/__main__.py)
EXPORT = "journal-export.jsonl"
REPORT = "report.html"
# Measured on a 2-core machine busy with other work (every service real, 2025.2 -> 2026.1): lab up 3-5 min,
# the workload ~1.5 min, upgrade run 3-4 min, the workload and new work after it ~2 min, revert ~2 min.
ESTIMATE = ("10 to 15 minutes on a 2-core machine (lab up ~3 min, the workload ~1.5 min, upgrade run ~3 min, "
            "the workload again and new work ~2 min, revert ~2 min); allow 20 when the machine is busy")
#: what the lab serves for real beyond keystone and glance (`python -m scripts.lab up --real`)
REAL = "nova,neutron,cinder"
#: the databases the table checksums cover: those no running service of the lab writes on its own (nova's,
#: neutron's and cinder's take heartbeats and the workload's writes: the workload tables check those services)
QUIET = ("keystone", "glance")
#: what answers on the management address (the full lab's real APIs)
API_UNITS = {"keystone": "keystone", "glance": "glance-api"}
#: why nova's status check fails in the lab, by design: nothing serves placement's API there
NO_PLACEMENT_API = "Placement API"
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
    """The tool's own plain text table (``upgrade.tables``); a cell may hold several lines (``\\n``),
    and rows with several lines are set apart by an empty line, so each service reads as a block."""
    return "\n".join(tables.text(headers, rows))


def heads(revisions: list[str]) -> str:
    return " ".join(revisions) or "(no schema)"


def mark(ok: bool) -> str:
    return "OK" if ok else "FAILED"


# ---------------------------------------------------------------------- commands


#: the environment of the demo's `upgrade` commands: the lab's admin password for the plan's ``[cloud]``
#: (``password_env``), read from the lab's 0600 file once the lab is up (scripts/lab/plan.py)
ENV: dict[str, str] = {}


def command(argv: list[str], shown: str, capture: bool = False) -> subprocess.CompletedProcess:
    """Run one command from the repository, showing it as an operator would type it.

    The cwd matters: the lab's plan drives ``python -m scripts.lab.units``. Without ``capture``
    the output goes straight to the terminal: `upgrade` draws its live progress there when it is
    a terminal and prints one plain line per step otherwise.
    """
    say(f"$ {shown}")
    return subprocess.run(argv, cwd=REPO, text=True, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE if capture else None, env={**os.environ, **ENV})


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


def upgrade_json(*args: str) -> dict[str, Any]:
    """An `upgrade` command whose JSON answer the demo reads (status, journal export)."""
    return json.loads(must(upgrade(*args, capture=True), "upgrade " + " ".join(args[:2])).stdout)


# ---------------------------------------------------------------------- the lab


@dataclass
class Snapshot:
    """What the lab shows at one moment: the API view on the management address, and per side
    (old/new) the schema revisions, the table checksums and the API units that serve."""

    api: dict[str, Any]
    revisions: dict[str, dict[str, list[str]]]
    cells: dict[str, str]
    sums: dict[str, dict[str, Any]]
    serving: dict[str, list[str]]


@dataclass
class Lab:
    """The built lab, read from the summary ``lab up`` prints. That summary holds the admin and
    seeded users' passwords and a token: the demo uses them to log in and never prints them."""

    dir: Path
    summary: dict[str, Any]

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(self.summary["services"])

    @property
    def journal(self) -> Path:
        return Path(self.summary["journal"])

    def release(self, side: str) -> str:
        return self.summary[side]["release"]

    def db(self, side: str) -> MariaDB:
        return MariaDB(Path(self.summary[side]["db_base"]), self.summary[side]["db_port"])

    def api(self) -> dict[str, Any]:
        """The API view; an API that does not answer is a failed check in a table, not a traceback."""
        try:
            return verify.api_view(self.summary["seed"], self.summary["keystone_url"], self.summary["glance_url"])
        except (OSError, LabError) as exc:
            return {"admin_token_issue": 0, "error": str(exc)}

    def serving(self, side: str) -> list[str]:
        root = Path(self.summary[side]["root"])
        return [unit for service, unit in API_UNITS.items() if service in self.services and units.status(root, unit)]

    def snapshot(self) -> Snapshot:
        views = {side: verify.db_view(self.db(side), self.services) for side in ("old", "new")}
        return Snapshot(
            api=self.api(),
            revisions={side: view["revisions"] for side, view in views.items()},
            cells=views["new"].get("cell_mappings", {}),
            sums={side: verify.checksums(self.db(side), tuple(s for s in self.services if s in QUIET))
                  for side in ("old", "new")},
            serving={side: self.serving(side) for side in ("old", "new")},
        )

    def serving_text(self, snap: Snapshot) -> str:
        sides = [f"{side} ({self.release(side)}): {', '.join(snap.serving[side])}"
                 for side in ("old", "new") if snap.serving[side]]
        return "; ".join(sides) or "nothing"


def fresh_lab(lab: Path, old: str, new: str) -> Lab:
    """Stop and wipe a lab left in DIR by an earlier demo, then build a new one.

    Only a directory holding a lab (its state file) is ever wiped: ``--dir ~`` must not cost a home.
    """
    if (lab / STATE).exists():
        say(f"{lab} holds a lab from an earlier run: stopping it and starting fresh")
        must(lab_cli("down", str(lab)), "stopping the earlier lab")
        shutil.rmtree(lab)
    elif lab.exists() and any(lab.iterdir()):
        raise NotALab(f"{lab} exists and is not a lab (no {STATE}); it is left alone — pick another --dir")
    say(f"building the lab: 2 MariaDB servers, the old controller ({old}: every service serving, seeded through "
        f"the APIs), the new one ({new}, freshly installed) and a compute host; a few minutes, quiet until done")
    res = must(lab_cli("up", str(lab), "--old", old, "--new", new, "--real", REAL, capture=True), "building the lab")
    built = Lab(lab, json.loads(res.stdout))  # holds passwords: never printed
    ENV.update(cloud_env(lab))  # the plan's [cloud] names the admin password's variable
    say(f"lab ready in {built.summary['timings'].get('total', 0):.0f} s: keystone at "
        f"{built.summary['keystone_url']}, glance at {built.summary['glance_url']}, plan {built.summary['plan']}")
    return built


# ---------------------------------------------------------------------- before the run


def show_seed(lab: Lab, snap: Snapshot) -> list[str]:
    """What the old controller serves, read through its APIs; returns what is wrong with it."""
    api = snap.api
    if api.get("admin_token_issue") != 201:
        return [f"the old keystone does not log the admin in (HTTP {api.get('admin_token_issue')}"
                f"{': ' + api['error'] if 'error' in api else ''})"]
    say(table(("through keystone's API", "what the old controller serves"), [
        ("projects", ", ".join(api["projects"])),
        ("users", ", ".join(api["users"])),
        ("role assignments", str(len(api["role_assignments"]))),
        ("endpoints (the catalog)", str(len(api["endpoints"]))),
        ("credential (encrypted in the DB)", "decrypted" if api["credential_blob"] else "NOT decrypted"),
        ("demo user's login", "HTTP " + str(api["demo_token_issue"])),
    ]))
    images = api.get("images", [])
    say("")
    say(table(("image, through glance's API", "size", "checksum (md5, glance)", "md5 of the download"), [
        (i["name"], str(i["size"]), i["checksum"], i["download_md5"] or f"HTTP {i['download']}") for i in images]))
    bad = [f"image {i['name']}: downloaded md5 {i['download_md5'] or 'none'}, glance says {i['checksum']}"
           for i in images if i["download_md5"] != i["checksum"]]
    return bad + ([] if images or "glance" not in lab.services else ["glance lists no image"])


def show_schemas(lab: Lab, snap: Snapshot) -> None:
    """Every database's alembic revisions on both sides: what the upgrade has to move."""
    old, new = lab.release("old"), lab.release("new")
    rows = [(name, heads(revs), heads(snap.revisions["new"].get(name, [])))
            for name, revs in snap.revisions["old"].items()]
    say(table(("database", f"old controller ({old}, seeded)", f"new controller ({new}, fresh install)"), rows))
    say("placement, nova, neutron and cinder serve their APIs too (the workload below goes through them), "
        "with their brokers and the compute host's nova-compute")


# ---------------------------------------------------------------------- after the run: one row per service


@dataclass
class Row:
    """One service after the run: its schema, what its API or status check says, its downtime."""

    service: str
    schema: list[str]
    api: list[str]
    downtime: str
    failed: list[str] = field(default_factory=list)

    def cells(self) -> tuple[str, ...]:
        return (self.service, "\n".join(self.schema), "\n".join(self.api), self.downtime,
                mark(not self.failed))


def schema_cell(service: str, before: Snapshot, after: Snapshot) -> tuple[list[str], list[str]]:
    """Each of the service's databases: old DB's revisions -> new DB's after the run.

    The new DB must stand at the heads the target release installed fresh before the run.
    """
    lines, failed = [], []
    for name in verify.ALEMBIC_DBS[service]:
        was, target = before.revisions["old"].get(name, []), before.revisions["new"].get(name, [])
        got = after.revisions["new"].get(name, [])
        prefix = f"{name}: " if len(verify.ALEMBIC_DBS[service]) > 1 else ""
        lines.append(prefix + (f"{heads(was)} (unchanged)" if got == was else f"{heads(was)} -> {heads(got)}"))
        if not got or got != target:
            failed.append(f"{name} schema at {heads(got)}, not the target release's {heads(target)}")
    return lines, failed


def status_line(service: str, result: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """``<service>-status upgrade check`` as the journal recorded it: 0 success, 1 warning, 2 only
    with failures the plan accepts (nova's placement check: the lab serves no placement API)."""
    if result is None:
        return [f"{service}-status: not recorded"], [f"{service}-status upgrade check not in the journal"]
    rc, accepted = result["rc"], result.get("accepted_failures") or []
    if accepted:
        why = ["(no placement API in the lab)"] if accepted == [NO_PLACEMENT_API] else []
        return [f"{service}-status {rc}: {', '.join(accepted)} accepted", *why], []
    text = f"{service}-status {rc}" + {0: "", 1: " (warning)"}.get(rc, f" ({result.get('meaning', 'failure')})")
    return [text], ([] if rc in (0, 1) else [f"{service}-status upgrade check exit {rc}"])


def keystone_cell(before: dict[str, Any], after: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Logins with the old passwords and an old token, and the same identities, catalog and credential."""
    same = [k for k in ("projects", "users", "role_assignments", "endpoints", "credential_blob")
            if after.get(k) != before.get(k)]
    checks = [
        ("token with the old admin password", after.get("admin_token_issue") == 201),
        ("the old admin token validates", after.get("old_token_validates") == 200),
        ("the demo user logs in", after.get("demo_token_issue") == 201),
        (f"same {len(before.get('projects', []))} projects, {len(before.get('users', []))} users, roles,"
         f"\n  {len(before.get('endpoints', []))} endpoints, credential"
         + (f" (DIFFERENT: {', '.join(same)})" if same else ""), not same),
    ]
    return [f"{what}: {mark(ok)}" for what, ok in checks], [what.split("\n")[0] for what, ok in checks if not ok]


def image_state(image: dict[str, Any], now: dict[str, Any] | None) -> str:
    """One image as the new glance serves it, against its md5 before the run."""
    if now is None:
        return "NOT LISTED"
    if now["download"] != 200:
        return f"download HTTP {now['download']}"
    return "md5 same" if now["download_md5"] == image["checksum"] else "md5 DIFFERENT"


def glance_cell(before: dict[str, Any], after: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Every image of before downloaded again through the new glance, with the same md5."""
    if not before.get("images"):
        return ["no image"], ["glance listed no image before the run"]
    served = {i["id"]: i for i in after.get("images", [])}
    states = [(image["name"], image_state(image, served.get(image["id"]))) for image in before["images"]]
    return [f"{name}: {state}" for name, state in states], \
        [f"image {name}: {state}" for name, state in states if state != "md5 same"]


def cells_line(lab: Lab, after: Snapshot) -> tuple[list[str], list[str]]:
    """nova's cell mappings must name the new DB server once the run rewrote them."""
    port = f":{lab.summary['new']['db_port']}/"
    ok = bool(after.cells) and all(port in where for where in after.cells.values())
    return [f"cells {', '.join(sorted(after.cells))} on the new DB server: {mark(ok)}"], \
        [] if ok else [f"cell mappings: {after.cells}"]


def api_cell(lab: Lab, service: str, before: Snapshot, after: Snapshot) -> tuple[list[str], list[str]]:
    """What the service's API says after the run; the lab serves none for placement, nova, neutron
    and cinder, so for them the status check (and nova's cells) must tell."""
    if service == "keystone":
        return keystone_cell(before.api, after.api)
    if service == "glance":
        return glance_cell(before.api, after.api)
    if service == "nova":
        return cells_line(lab, after)
    return [], []


def service_row(lab: Lab, service: str, before: Snapshot, after: Snapshot, facts: RunFacts) -> Row:
    schema, schema_failed = schema_cell(service, before, after)
    api, api_failed = api_cell(lab, service, before, after)
    status, status_failed = status_line(service, facts.status_checks.get(service))
    failed = [f"{service}: {f}" for f in schema_failed + api_failed + status_failed]
    return Row(service, schema, api + status, facts.downtime(service), failed)


# ---------------------------------------------------------------------- the journal


@dataclass
class RunFacts:
    """What the journal says about the latest run: its status, each service's status check and
    maintenance window (``upgrade status -f json``'s ``window``, upgrade/window.py)."""

    status: str
    status_checks: dict[str, dict[str, Any]]
    window: dict[str, Any]

    def downtime(self, service: str) -> str:
        row = next((w for w in self.window["services"] if w["service"] == service), None)
        if row is None:
            return "-"
        closed = "" if row["closed_by"] == "verified" else f" ({row['closed_by'] or 'open'})"
        return f"{row['seconds']:.1f} s{closed}"


def status_checks(export: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each service's ``*-status upgrade check`` result in the latest run."""
    run = max(export["runs"], key=lambda r: r["id"])["id"]
    out: dict[str, dict[str, Any]] = {}
    for e in export["events"]:
        if e["run"] != run or e["kind"] != "done" or not e["step"]:
            continue
        service, step = e["step"].split(".", 1)
        if step == "status_check":
            out[service] = e["result"]
    return out


def run_facts(journal: Path) -> RunFacts:
    status = upgrade_json("status", "--journal", str(journal), "-f", "json")
    export = upgrade_json("journal", "export", "--journal", str(journal), "--format", "json")
    return RunFacts(status["status"], status_checks(export), status["window"])


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


def write_report(lab: Path) -> Path:
    """The run as one offline HTML page (`upgrade report`): its timeline, windows, checks and artifacts."""
    path = lab / REPORT
    must(upgrade("report", "--journal", str(lab / "journal"), "--output", str(path), "--key", str(lab / "dump.key"),
                 "--force"), "upgrade report")
    say(f"the report of the run (upgrade and revert, one page, opens offline): {path}")
    return path


# ---------------------------------------------------------------------- checks beyond the rows


@dataclass
class Check:
    what: str
    before: str
    after: str
    ok: bool


def print_checks(checks: list[Check], before_label: str, after_label: str) -> list[str]:
    """The table, and the failed checks' names for the final message."""
    rows = [(c.what, c.before, c.after, mark(c.ok)) for c in checks]
    say(table(("check", before_label, after_label, "result"), rows))
    return [f"{c.what}: {c.after}" for c in checks if not c.ok]


def sums_check(what: str, before: dict[str, Any], after: dict[str, Any]) -> Check:
    tables = sum(len(t) for t in before.values())
    return Check(what, f"{tables} tables", "unchanged" if after == before else "CHANGED", after == before)


def upgrade_checks(lab: Lab, before: Snapshot, after: Snapshot, facts: RunFacts) -> list[Check]:
    """Who serves now, the old controller only read, the journal's verdict."""
    wanted = [API_UNITS[s] for s in lab.services if s in API_UNITS]
    return [
        Check("who serves the management address", lab.serving_text(before), lab.serving_text(after),
              after.serving == {"old": [], "new": wanted}),
        sums_check("old controller's databases (CHECKSUM TABLE)", before.sums["old"], after.sums["old"]),
        Check("journal: run status", "-", facts.status, facts.status == "completed"),
    ]


def revert_checks(lab: Lab, before: Snapshot, after: Snapshot, status: str) -> list[Check]:
    """The old controller serves what it served before the run, neither side's data differs from then."""
    differ = sorted(k for k in before.api.keys() | after.api.keys() if before.api.get(k) != after.api.get(k))
    images = len(before.api.get("images", []))
    return [
        Check("who serves the management address", lab.serving_text(before), lab.serving_text(after),
              after.serving == before.serving),
        Check("API view (logins, identities, catalog, credential, image md5s)",
              f"{len(before.api.get('projects', []))} projects, {len(before.api.get('users', []))} users, "
              f"{images} images", "same" if not differ else f"DIFFERENT: {', '.join(differ)}", not differ),
        Check("old controller's schema revisions", "-", "same" if after.revisions["old"] == before.revisions["old"]
              else "CHANGED", after.revisions["old"] == before.revisions["old"]),
        sums_check("old controller's databases (CHECKSUM TABLE)", before.sums["old"], after.sums["old"]),
        sums_check("new controller's databases: as installed", before.sums["new"], after.sums["new"]),
        Check("journal: run status", "completed", status, status == "reverted"),
    ]


# ---------------------------------------------------------------------- the demo


@dataclass
class Demo:
    lab_dir: Path
    keep: bool
    old: str
    new: str
    timings: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    workload: Workload = field(init=False)

    def __post_init__(self) -> None:
        self.workload = Workload(self.lab_dir)

    def timed(self, name: str, t0: float) -> float:
        self.timings[name] = time.monotonic() - t0
        return self.timings[name]

    def intro(self) -> None:
        d, journal = self.lab_dir, self.lab_dir / "journal"
        say(f"""openstack-upgrade demo: a real OpenStack {self.old} -> {self.new} controller replacement, then its undo.

It will, in {d}:
  1. build the lab: two MariaDB servers, two controllers and a compute host. The old controller
     ({self.old}) serves keystone, glance, placement, nova, neutron and cinder for real (projects, users,
     a credential, the catalog, images uploaded through glance; each service's broker), the compute
     host runs nova-compute (nova's fake driver); the new controller ({self.new}) is freshly installed;
  2. show what the old controller serves, read through the APIs, and every database's schema revision;
     then a project's user makes a workload through the `openstack` client: a server with a volume
     attached, a volume with a snapshot, a network with subnet, router, port and security group;
  3. run `upgrade run {d}/plan.toml` (its live progress below; its last step waits until the
     compute host and cinder-volume report to the new controller and every API answers);
  4. show, per service: schema before -> after, the API or status check, the downtime; then the
     workload through the new controller's APIs, and new work on the upgraded cloud (a server
     booted, a volume attached, a network made, each then deleted);
  5. export and verify the journal (hash chain and encrypted dumps);
  6. run `upgrade revert` (a plain one refuses: the new work wrote to the new databases), then
     `upgrade revert --discard-new-writes`, and check the old controller serves again as before,
     the workload through its APIs, keystone's and glance's DBs untouched; then write the run's
     report ({d}/{REPORT}: timeline, windows, checks, artifacts);
  7. {'leave the lab running (--keep)' if self.keep else 'stop the lab (--keep would leave it running)'}.
It takes {ESTIMATE}. Everything runs on 127.0.0.1.
The journal will be in {journal}, the tool's log in {journal / 'upgrade.log'},
the services' logs in {d}/old/var/log and {d}/new/var/log. Passwords are never printed.""")

    def build(self) -> tuple[Lab, Snapshot]:
        section("1. the lab")
        t0 = time.monotonic()
        lab = fresh_lab(self.lab_dir, self.old, self.new)
        self.timed("lab up", t0)
        section(f"2. before: the old controller ({lab.release('old')}) serves")
        t0 = time.monotonic()
        say(f"a user of project {grenade.PROJECT} makes its workload through the `openstack` client "
            "(about a minute, quiet until done)")
        made = self.workload.create()
        self.timed("workload", t0)
        before = lab.snapshot()  # with the workload's project and user: the view to find again after the revert
        broken = show_seed(lab, before)
        if broken:
            raise DemoFailed("the fresh lab is not as seeded: " + "; ".join(broken))
        say("")
        show_schemas(lab, before)
        say("")
        say(table((f"the workload of project {grenade.PROJECT}", "name, id", "state"), made))
        return lab, before

    def workload_check(self, side: str, since: datetime, label: str) -> list[str]:
        """The workload through *side*'s APIs as a table; what failed."""
        rows, failed = self.workload.check(side, since)
        say(table(("resource", "name, id", "before the upgrade", label, "result"), rows))
        return failed

    def run_upgrade(self, lab: Lab, before: Snapshot) -> None:
        section("3. the upgrade: upgrade run (live)")
        t0 = time.monotonic()
        must(upgrade("run", lab.summary["plan"]), "upgrade run")
        ran = datetime.now(UTC)
        say(f"\nupgrade run finished in {self.timed('upgrade run', t0):.1f} s")
        section(f"4. after: what the new controller ({lab.release('new')}) serves, per service")
        facts = run_facts(lab.journal)
        after = lab.snapshot()
        rows = [service_row(lab, s, before, after, facts) for s in lab.services]
        total = facts.window.get("total") or {}
        say(table(("service", "schema revision before -> after", "API check / status check", "downtime", "result"),
                  [r.cells() for r in rows] + [("all", "", "maintenance window, first stop -> last verify",
                                               f"{total.get('seconds', 0):.1f} s", "")]))
        say("unchanged: the target release has no new migration for that database.\n"
            "downtime: from stopping the service on the old controller to its verification on the new (journal).\n")
        failed = [f for r in rows for f in r.failed]
        failed += print_checks(upgrade_checks(lab, before, after, facts), "before the run", "after the run")
        say(f"\nthe workload through the new controller's ({lab.release('new')}) APIs:")
        t0 = time.monotonic()
        failed += self.workload_check("new", ran, "after the upgrade")
        say("\nnew work on the upgraded cloud:")
        say(table(("new work", "id", "what happened"), self.workload.new_work("new")))
        self.timed("workload after the run", t0)
        self.failed += failed
        say("\nUPGRADE OK: the new controller serves the old controller's data and workload, and new work."
            if not failed else "\nUPGRADE CHECKS FAILED: " + "; ".join(failed))

    def audit(self) -> None:
        section("5. the audit trail: export and verify the journal")
        t0 = time.monotonic()
        export_and_verify(self.lab_dir)
        self.timed("export + verify", t0)

    def run_revert(self, lab: Lab, before: Snapshot) -> None:
        section("6. the undo: upgrade revert (live)")
        say("the new work wrote to the new controller's databases: a plain revert refuses, naming what it would "
            "lose, and changes nothing")
        refused = upgrade("revert", "--journal", str(lab.journal))
        if refused.returncode != 2:
            raise DemoFailed(f"the plain revert after new work exited {refused.returncode}, not 2 (refused)")
        if lab.serving("old") or not lab.serving("new"):
            raise DemoFailed("the refused revert changed who serves: "
                             f"old {lab.serving('old') or 'nothing'}, new {lab.serving('new') or 'nothing'}")
        say("\nthe operator's explicit choice: the new writes stay in the vault, the old controller comes back")
        t0 = time.monotonic()
        must(upgrade("revert", "--journal", str(lab.journal), "--discard-new-writes"), "upgrade revert")
        reverted = datetime.now(UTC)
        say(f"\nupgrade revert finished in {self.timed('upgrade revert', t0):.1f} s\n")
        after = lab.snapshot()
        status = upgrade_json("status", "--journal", str(lab.journal), "-f", "json")["status"]
        failed = print_checks(revert_checks(lab, before, after, status), "before the upgrade", "after the revert")
        say(f"\nthe workload through the old controller's ({lab.release('old')}) APIs again:")
        failed += self.workload_check("old", reverted, "after the revert")
        self.failed += failed
        if failed:
            say("\nREVERT CHECKS FAILED: " + "; ".join(failed))
        else:
            say(f"\nREVERT OK: the old controller ({lab.release('old')}) serves again what it served before, "
                "the workload with it, keystone's and glance's databases untouched.")
        say("the journal now also holds the revert; exporting and verifying it once more, then its report:")
        export_and_verify(self.lab_dir)
        write_report(self.lab_dir)

    def where(self) -> None:
        section("where things are")
        journal = self.lab_dir / "journal"
        say(table(("what", "path"), [
            ("journal (SQLite, hash-chained)", str(journal)), ("log of every run", str(journal / "upgrade.log")),
            ("journal export (jsonl)", str(self.lab_dir / EXPORT)),
            ("report of the run (HTML, open it in a browser)", str(self.lab_dir / REPORT)),
            ("plan", str(self.lab_dir / "plan.toml")),
            ("vault key (decrypts the dumps)", str(self.lab_dir / "dump.key")),
            ("services' logs", f"{self.lab_dir}/old/var/log, {self.lab_dir}/new/var/log"),
            ("the run's status and window", f"upgrade status --journal {journal}"),
            ("tear the lab down", f"python -m scripts.lab down {self.lab_dir}"
                                  + ("" if self.keep else "  (the demo does it now)")),
        ]))

    def finish(self) -> None:
        """Stop the lab unless --keep; files stay either way, so the journal can still be read.

        Runs after a failure too: a demo must not leave servers behind that nobody asked to keep.
        """
        if not (self.lab_dir / STATE).exists():
            return
        if self.keep:
            say(f"\nthe lab keeps running (--keep). Tear it down with: python -m scripts.lab down {self.lab_dir}")
            return
        say(f"\nstopping the lab (pass --keep to leave it running); its files stay in {self.lab_dir}")
        t0 = time.monotonic()
        res = lab_cli("down", str(self.lab_dir))
        self.timed("lab down", t0)
        if res.returncode != 0:
            raise DemoFailed(f"stopping the lab failed; try again: python -m scripts.lab down {self.lab_dir}")
        say(f"start it again with: python -m scripts.lab up {self.lab_dir}; remove it with: rm -rf {self.lab_dir}")

    def run(self) -> None:
        """Every step, the lab stopped whatever happens; failed checks are collected, so that the
        revert is still shown after a failed upgrade check, and named together at the end."""
        self.intro()
        t0 = time.monotonic()
        try:
            lab, before = self.build()
            self.run_upgrade(lab, before)
            self.audit()
            self.run_revert(lab, before)
            self.where()
        finally:
            self.finish()
        self.timed("total", t0)
        say("\ntimings: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))
        if self.failed:
            raise DemoFailed(f"{len(self.failed)} check(s) failed: " + "; ".join(self.failed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 3)[3],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("lab"), help="lab directory (default: ./lab); "
                        "a lab already there is stopped and replaced")
    parser.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    parser.add_argument("--old", default="2025.2", help="release of the old controller (default: 2025.2)")
    parser.add_argument("--new", default="2026.1", help="release of the new controller (default: 2026.1)")
    args = parser.parse_args(argv)
    demo = Demo(args.dir.resolve(), args.keep, args.old, args.new)
    try:
        demo.run()
    except NotALab as exc:
        say(f"\nDEMO REFUSED: {exc}")
        return EXIT_USAGE
    except (DemoFailed, LabError, pymysql.MySQLError, OSError) as exc:
        say(f"\nDEMO FAILED: {exc}")
        if (demo.lab_dir / "journal").exists():
            say(f"Log of the tool: {demo.lab_dir / 'journal' / 'upgrade.log'}")
            say(f"Where the run stopped: upgrade status --journal {demo.lab_dir / 'journal'}"
                + ("" if args.keep else f" (after `python -m scripts.lab up {demo.lab_dir}`, which brings the "
                                        "stopped lab back as the failure left it)"))
        return EXIT_FAILED
    except KeyboardInterrupt:
        say("\ndemo interrupted")
        return EXIT_INTERRUPTED
    say("\nDEMO OK: every check passed.")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
