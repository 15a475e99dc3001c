"""What `upgrade report` shows of a run, gathered from the journal alone.

Everything comes from the redacted export document (``journal.export.document``): the page can hold
nothing the export does not, and a secret the journal never stored cannot reach it. On top of the
events it computes the attempts of every step (the bars of the timeline), the maintenance windows
(``upgrade.window``, the same measure as `upgrade status`), each service's facts from its steps'
results, and the journal's verification (``journal.audit``, the same check as `journal verify`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from journal import audit
from journal import export as journal_export
from journal.store import Event, Journal
from services.registry import steps_for_raw
from upgrade import window

#: the colours of the timeline, in the runbook's order: what the step does to the cloud
KINDS = ("prepare", "stop", "dump", "import", "schema", "status", "start", "verify", "finish", "other")
#: the report's colour of a step's declared kind (``Step.kind``), finer than the window's breakdown
COLOUR_OF_KIND = {k: k for k in ("stop", "dump", "import", "schema", "status", "start", "verify")}
#: the compute hosts' and the address move's steps are built from the plan's sections, not the catalog:
#: their few actions by name
FLEET_KIND = {"restart": "start", "verify": "verify", "check": "verify", "disable": "stop", "upgrade": "schema",
              "restart_upgraded": "start", "report_version": "verify", "enable": "start"}
#: result keys that are not checks (durations, bulky data shown elsewhere)
NOT_FACTS = ("seconds", "overhead", "revisions_before", "revisions_after", "revisions", "databases", "checksums",
             "output", "before", "units", "grants")


def step_kind(step: str, prepare: bool = False, finish: bool = False) -> str:
    """``keystone.dump_source`` -> ``dump``, from the step's declared kind; a step the runner runs before
    the first stop (after the last verify) is ``prepare`` (``finish``) whatever it does."""
    if prepare:
        return "prepare"
    if finish:
        return "finish"
    found = window.catalog().get(step)
    if found is not None:
        return COLOUR_OF_KIND.get(found.kind, "other")
    return FLEET_KIND.get(step.rsplit(".", 1)[-1], "other")


@dataclass
class Bar:
    """One attempt of a step (or of its undo): from its intent to the event that ended it.

    ``end`` is None when nothing ended it (the tool died): it is drawn up to ``drawn_end``, the last
    event the journal holds before the step was taken up again. ``seconds`` is what the journal
    recorded: the step's own measure (its result's ``seconds``) or, for a failure, intent to failure.
    """

    seq: int
    machine: str
    step: str
    kind: str
    undo: bool
    host: str | None
    start: float
    end: float | None = None
    end_seq: int | None = None
    outcome: str = "killed"
    seconds: float | None = None
    retry: bool = False
    error: str | None = None
    drawn_end: float = 0.0

    @property
    def label(self) -> str:
        return f"undo {self.step}" if self.undo else self.step


@dataclass
class Marker:
    """A moment on the timeline: the tool taken up again (resume), a revert begun."""

    ts: float
    seq: int
    label: str
    text: str


@dataclass
class ServiceFacts:
    """A service as its steps' results describe it."""

    name: str
    window: dict[str, Any] | None
    revisions: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)
    reverted: bool = False


@dataclass
class Report:
    run: dict[str, Any]
    events: list[dict[str, Any]]
    artifacts: list[dict[str, Any]]
    bars: list[Bar]
    machines: list[str]
    markers: list[Marker]
    windows: window.RunWindow
    window: dict[str, Any]
    services: list[ServiceFacts]
    verification: audit.Verification
    generated: float

    @property
    def start(self) -> float:
        return self.events[0]["ts"] if self.events else self.run["created"]

    @property
    def end(self) -> float:
        return self.events[-1]["ts"] if self.events else self.run["updated"]



def _event(e: dict[str, Any]) -> Event:
    return Event(seq=e["seq"], run=e["run"], ts=e["ts"], machine=e["machine"], step=e["step"], kind=e["kind"],
                 from_state=e["from_state"], to_state=e["to_state"], host=e["host"], command=e["command"],
                 rc=e["rc"], output=e["output"], result=e["result"])


def _flags(plan: dict[str, Any]) -> dict[str, tuple[bool, bool]]:
    """step name -> (prepare, finish), from the step lists the run's plan builds. A plan this version
    cannot build (a journal of another version) gives none: the steps are coloured by name alone."""
    out: dict[str, tuple[bool, bool]] = {}
    for name in plan.get("upgrade", {}).get("services", []):
        try:
            out.update({s.name: (s.prepare, s.finish) for s in steps_for_raw(plan, name)})
        except Exception:  # a journal of another version: the report still shows what it holds
            continue
    return out


def bars(events: list[dict[str, Any]], flags: dict[str, tuple[bool, bool]]) -> list[Bar]:
    """Every attempt of every step, in the order they began."""
    out: list[Bar] = []
    open_: dict[str, Bar] = {}             # machine -> its attempt in flight (a machine runs one step at a time)
    unfinished: set[tuple[str, str, bool]] = set()
    for e in events:
        if e["step"] is None or e["kind"] == "note":
            continue
        m, kind = e["machine"], e["kind"]
        if kind in ("intent", "undo_intent"):
            undo = kind == "undo_intent"
            cut = open_.pop(m, None)
            if cut is not None:
                unfinished.add((m, cut.step, cut.undo))
            key = (m, e["step"], undo)
            bar = Bar(e["seq"], m, e["step"], step_kind(e["step"], *flags.get(e["step"], (False, False))), undo,
                      e["host"], e["ts"], retry=key in unfinished)
            unfinished.discard(key)
            open_[m] = bar
            out.append(bar)
        elif kind in ("done", "failed", "undone", "undo_failed"):
            bar = open_.pop(m, None)
            if bar is None or bar.step != e["step"]:
                continue
            bar.end, bar.end_seq, bar.outcome = e["ts"], e["seq"], kind
            recorded = (e["result"] or {}).get("seconds") if kind in ("done", "undone") else None
            bar.seconds = recorded if recorded is not None else e["ts"] - bar.start
            if kind in ("failed", "undo_failed"):
                bar.error = (e["output"] or "").strip().splitlines()[0] if e["output"] else None
                unfinished.add((m, bar.step, bar.undo))
    for bar in out:
        bar.drawn_end = bar.end if bar.end is not None else _last_alive(events, bar)
    return out


def _last_alive(events: list[dict[str, Any]], bar: Bar) -> float:
    """For an attempt nothing ended: the last event the tool wrote before it was taken up again (the
    next note, or the next event of its machine), or the journal's last event if it never was."""
    last = bar.start
    for e in events:
        if e["seq"] <= bar.seq:
            continue
        if e["kind"] == "note" or e["machine"] == bar.machine:
            break
        last = e["ts"]
    return last


def markers(events: list[dict[str, Any]]) -> list[Marker]:
    """The tool taken up again (the runner notes every step it finds interrupted or failed: the notes of
    one resume, a second apart at most, make one marker) and a revert begun."""
    out: list[Marker] = []
    reverting = False
    for e in events:
        if e["kind"] == "note" and e["step"]:
            if not out or out[-1].label != "resumed" or e["ts"] - out[-1].ts > 1.0:
                out.append(Marker(e["ts"], e["seq"], "resumed", e["output"] or "resumed"))
        elif e["kind"] == "undo_intent" and not reverting:
            reverting = True
            out.append(Marker(e["ts"], e["seq"], "revert", f"revert begins: undo {e['step']}"))
        elif e["kind"] == "intent":
            reverting = False
    return out


def _machines(plan: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    """The plan's services in its order, then the other machines (switchover, computes) as they appear."""
    names = [s for s in plan.get("upgrade", {}).get("services", [])]
    seen = {e["machine"] for e in events if e["step"]}
    return [n for n in names if n in seen] + list(dict.fromkeys(
        e["machine"] for e in events if e["step"] and e["machine"] not in names))


def facts(result: dict[str, Any] | None) -> dict[str, str]:
    """A step's result as short key/value facts: its scalars and short lists; the commands it ran with
    their exit codes. Durations and bulky data (checksums, revisions, outputs) are left to their own rows."""
    out: dict[str, str] = {}
    for k, v in (result or {}).items():
        if k in NOT_FACTS or v is None or v == [] or v == {}:
            continue
        if k == "commands" and isinstance(v, list):
            out[k] = "; ".join(_command(c) for c in v)
        elif isinstance(v, (str, int, float, bool)):
            out[k] = str(v)
        elif isinstance(v, list) and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[k] = ", ".join(map(str, v))
    return out


def _command(c: Any) -> str:
    """A command a step ran, with its exit code (or why it was skipped)."""
    if not isinstance(c, dict):
        return str(c)
    how = f"skipped: {c['skipped']}" if c.get("skipped") else f"rc {c.get('rc')}"
    return f"{c.get('command', '?')} ({how})"


def _revisions(step: str, result: dict[str, Any], service: str) -> list[dict[str, Any]]:
    before, after = result.get("revisions_before"), result.get("revisions_after")
    if before is None and after is None:
        return []
    if isinstance(before, dict) or isinstance(after, dict):
        before, after = before or {}, after or {}
        return [{"step": step, "database": db, "before": before.get(db) or [], "after": after.get(db) or []}
                for db in dict.fromkeys([*before, *after])]
    return [{"step": step, "database": service, "before": before or [], "after": after or []}]


def service_facts(name: str, events: list[dict[str, Any]], win: dict[str, Any] | None) -> ServiceFacts:
    """Schema revisions before -> after, checks and their results, the data compared, from the last
    result of each of the service's steps (a reverted run keeps what its forward steps found)."""
    sf = ServiceFacts(name, win)
    done: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["machine"] != name or not e["step"]:
            continue
        if e["kind"] == "done":
            done[e["step"]] = e["result"] or {}
        elif e["kind"] == "undone" and window.opens_window(e["step"]):
            sf.reverted = True
    for step, res in done.items():
        sf.revisions += _revisions(step, res, name)
        kind = step_kind(step)
        if kind in ("schema", "status", "verify") or step.rsplit(".", 1)[-1] in ("agents", "stale_services"):
            sf.checks.append({"step": step, "kind": kind, "facts": facts(res), "output": res.get("output")})
    source = (done.get(f"{name}.dump_source") or {}).get("databases") or {}
    target = (done.get(f"{name}.import_db") or {}).get("databases") or {}
    for db in dict.fromkeys([*source, *target]):
        s, t = source.get(db) or {}, target.get(db) or {}
        sf.data.append({"database": db, "source_tables": s.get("tables"), "source_rows": s.get("rows"),
                        "target_tables": t.get("tables"), "target_rows": t.get("rows"),
                        "checksums_equal": t.get("checksums_equal"),
                        "converted_to_utf8": t.get("converted_to_utf8") or []})
    return sf


def gather(journal: Journal, run_id: str, verification: audit.Verification) -> Report:
    """The report of one run, from the journal's redacted export and its verification."""
    doc = journal_export.document(journal, run_id)
    run, events = doc["runs"][0], doc["events"]
    plan = run["plan"] if isinstance(run["plan"], dict) else {}
    rw = window.measure(_event(e) for e in events)
    now = events[-1]["ts"] if events else run["updated"]
    win = window.report(rw, now)
    rows = {r["service"]: r for r in win["services"]}
    machines = _machines(plan, events)
    services = [service_facts(n, events, rows.get(n)) for n in machines
                if n in plan.get("upgrade", {}).get("services", [])]
    return Report(run=run, events=events, artifacts=doc["artifacts"], bars=bars(events, _flags(plan)),
                  machines=machines, markers=markers(events), windows=rw, window=win, services=services,
                  verification=verification, generated=time.time())
