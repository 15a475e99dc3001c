"""The maintenance window of a run, measured from the journal's events alone (issue #8).

A service is down from the moment the tool stops its first API unit on the old controller (the
``intent`` of the step declared ``window="opens"``, ``<service>.stop_source``) until its verification
on the new one (declared ``window="closes"``) is ``done``; the
run's window spans the first such stop to the last verification. Only events are read — no clock,
no database — so the same function serves `upgrade status` (the actual window) and `upgrade plan`
(which learns the fixed per-service cost from the previous run). "Now" for an open window is the
caller's business (:meth:`Window.seconds`).

The clients wait longer than the services' own windows: until the management address (or, for an HA
control plane, the VIP) answers from the new side. The steps of that cut-over are built from the plan
(``services/fleet/network.py``, ``services/fleet/hagroup.py``), not from the catalog, and declare
``window="cutover"``; a run records what its plan-built steps declare in a ``window`` note when it starts
(:func:`record_roles`), and the events carry it to every reader. They form one more window, ``cutover``,
from the first such step's intent until every one of them is done: the run's window ends there, and its
steps' time is the ``cutover`` phase of the breakdown.

The window is elapsed time: when a run died and was resumed, the service stayed down while the tool
was not running, so that time counts. The part of a window no step accounts for is ``idle``.
Durations come from the monotonic clock every event records (with the boot it belongs to), so a wall
clock set back during a run never makes a negative window; across a reboot only the wall clock is
left, and a span it would make negative counts as zero.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from journal.store import clock
from services import registry
from statemachine.step import Step

#: what a step of each declared kind (``Step.kind``) counts as in the breakdown; every other step of the
#: window counts as ``other``
PHASE_OF_KIND = {"dump": "dump", "import": "import", "schema": "schema", "verify": "verify", "status": "verify"}
#: the breakdown's phases; a step declared ``window="cutover"`` counts as ``cutover`` whatever its kind
KINDS = ("dump", "import", "schema", "verify", "cutover", "other")
CUTOVER = "cutover"
#: the journal machine of the note that records what the run's plan-built steps declare (:func:`record_roles`)
ROLES_MACHINE = "window"

#: what the window knows of a step by its journal name: its declared ``kind`` and ``window``
Steps = Mapping[str, Step]


def catalog() -> Steps:
    """Every step the catalog's services build, by name (the steps a journal's events name)."""
    return registry.every_step()


@dataclass(frozen=True)
class Declared:
    """What a plan-built step declared, as the run's ``window`` note keeps it (read like a :class:`Step`)."""

    kind: str
    window: str


def record_roles(journal: Any, run_id: str, machines: Iterable[Any]) -> None:
    """At run start: the declared kind and window of every step of *machines* the catalog does not build
    (the address move, an HA group's members and VIP), so the window is measured from the journal alone."""
    known = catalog()
    steps = {s.name: {"kind": s.kind, "window": s.window} for m in machines for s in m.steps
             if s.name not in known and s.window}
    if steps:
        journal.append(run_id, ROLES_MACHINE, "note", result={"steps": steps})


def declared(e: Any) -> dict[str, Declared]:
    """The steps a ``window`` note declares ({} for any other event)."""
    result = getattr(e, "result", None)
    if e.kind != "note" or e.machine != ROLES_MACHINE or not isinstance(result, dict):
        return {}
    return {name: Declared(str(d.get("kind") or "other"), str(d.get("window") or ""))
            for name, d in (result.get("steps") or {}).items() if isinstance(d, dict)}

RESUMED_NOTE = ("the run was resumed: the window counts the wall time of the whole outage, including "
                "the time the tool was not running (the service stayed down)")


class EventLike(Protocol):
    """What is read of a journal event (``journal.store.Event``); hand-built lists in tests fit too
    (without ``mono``/``boot``, their wall time ``ts`` is used)."""

    ts: float
    machine: str
    step: str | None
    kind: str


@dataclass(frozen=True)
class Instant:
    """A moment as a journal event records it: wall time, and the monotonic clock of one boot."""

    ts: float
    mono: float | None = None
    boot: str | None = None


def now() -> Instant:
    """This moment, comparable with the events' clocks (for a window still open)."""
    return Instant(*clock())


def elapsed(a: Any, b: Any) -> float:
    """Seconds from *a* to *b* (events or instants): by the monotonic clock when both were read in the
    same boot, else by the wall clock; never negative."""
    am, bm, boot = getattr(a, "mono", None), getattr(b, "mono", None), getattr(a, "boot", None)
    if am is not None and bm is not None and boot is not None and boot == getattr(b, "boot", None):
        return max(0.0, bm - am)
    return max(0.0, b.ts - a.ts)


def _instant(when: Any) -> Any:
    """*when* as something :func:`elapsed` reads: a bare wall time (float) becomes an :class:`Instant`."""
    return Instant(float(when)) if isinstance(when, (int, float)) else when


def step_kind(step: str, steps: Steps | None = None) -> str:
    """``keystone.import_db`` -> ``import``: the phase of the step's declared kind (``other`` for a step
    the catalog does not build, such as a compute host's)."""
    found = (catalog() if steps is None else steps).get(step)
    if found is not None and found.window == CUTOVER:
        return CUTOVER
    return PHASE_OF_KIND.get(found.kind, "other") if found is not None else "other"


def opens_window(step: str, steps: Steps | None = None) -> bool:
    """Whether the step is declared to open its service's window (``Step.window``)."""
    found = (catalog() if steps is None else steps).get(step)
    return found is not None and found.window == "opens"


def closes_window(step: str, steps: Steps | None = None) -> bool:
    """Whether the step is declared to close its service's window."""
    found = (catalog() if steps is None else steps).get(step)
    return found is not None and found.window == "closes"


def in_cutover(step: str, steps: Steps | None = None) -> bool:
    """Whether the step is declared part of the cut-over the clients wait for (``window="cutover"``)."""
    found = (catalog() if steps is None else steps).get(step)
    return found is not None and found.window == CUTOVER


@dataclass
class Window:
    """One service's window. ``end`` is None while it is open; ``closed_by`` says how it closed:
    ``verified`` (the new controller serves) or ``reverted`` (the old one serves again)."""

    service: str
    start: float
    end: float | None = None
    closed_by: str | None = None
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 0.0))
    retried: int = 0
    #: the events that opened and closed it (their monotonic clocks measure it)
    opened: Any = None
    closed: Any = None

    @property
    def open(self) -> bool:
        return self.end is None

    def seconds(self, now: Any) -> float:
        """Duration so far: to its end, or to *now* (an instant, or a wall time) while it is open."""
        first = self.opened or Instant(self.start)
        return elapsed(first, self.closed or Instant(self.end) if self.end is not None else _instant(now))

    def idle(self, now: Any) -> float:
        """Time in the window no finished step accounts for: between steps, and while the tool was dead."""
        return max(0.0, self.seconds(now) - sum(self.phases.values()))

    def fixed(self) -> float:
        """Everything but dump and import: the per-service cost that does not grow with the data."""
        return sum(v for k, v in self.phases.items() if k not in ("dump", "import"))


@dataclass
class RunWindow:
    services: list[Window]

    @property
    def start(self) -> float | None:
        return min((w.start for w in self.services), default=None)

    @property
    def end(self) -> float | None:
        """The last close, or None while any window is open (or none opened)."""
        if not self.services or any(w.open for w in self.services):
            return None
        return max(w.end for w in self.services if w.end is not None)

    @property
    def open(self) -> bool:
        return any(w.open for w in self.services)

    @property
    def retried(self) -> int:
        return sum(w.retried for w in self.services)

    def seconds(self, now: Any) -> float:
        if not self.services:
            return 0.0
        first = min(self.services, key=lambda w: w.start)
        if self.open:
            return elapsed(first.opened or Instant(first.start), _instant(now))
        last = max(self.services, key=lambda w: w.end or 0.0)
        return elapsed(first.opened or Instant(first.start), last.closed or Instant(last.end or first.start))

    def phases(self) -> dict[str, float]:
        return {k: sum(w.phases[k] for w in self.services) for k in KINDS}

    def service(self, name: str) -> Window | None:
        return next((w for w in self.services if w.service == name), None)


def measure(events: Iterable[EventLike], steps: Steps | None = None) -> RunWindow:
    """Every service window of one run's events (in journal order), and the ``cutover`` window; *steps*
    says what each named step declares (default: every step of the catalog, and what the run's ``window``
    note declares of its plan-built steps).

    A step's time is counted from each of its intents to the done or failed that ends it; an
    attempt killed with the tool has no end and is not counted (its time shows as idle). A new
    intent on a machine whose last attempt did not finish is a retry: the run was resumed.
    The cutover window opens with the first intent of a step declared ``cutover`` and closes when every
    step the note declares so is done (or, reverted before that, when the first of them is undone).
    """
    steps = dict(catalog() if steps is None else steps)
    windows: dict[str, Window] = {}
    began: dict[str, tuple[str, Any]] = {}        # machine -> (step, intent event) of the attempt in flight
    unfinished: dict[str, str] = {}               # machine -> step whose last attempt failed or was cut
    cutover: set[str] = set()                     # the cutover steps not done yet
    for e in events:
        if roles := declared(e):
            steps.update(roles)
            cutover |= {n for n, d in roles.items() if d.window == CUTOVER}
            continue
        if e.step is None:
            continue
        m = e.machine
        key = CUTOVER if in_cutover(e.step, steps) else m
        w = windows.get(key)
        if e.kind == "intent":
            if w is None and (key == CUTOVER or opens_window(e.step, steps)):
                w = windows[key] = Window(key, e.ts, opened=e)
            if m in unfinished or m in began:
                if w is not None and w.open:
                    w.retried += 1
                unfinished.pop(m, None)
            began[m] = (e.step, e)
        elif e.kind in ("done", "failed"):
            step, intent = began.pop(m, (e.step, e))
            if w is not None and w.open and step == e.step:
                w.phases[step_kind(step, steps)] += elapsed(intent, e)
            if e.kind == "failed":
                unfinished[m] = e.step
            elif w is not None and w.open and key == CUTOVER:
                cutover.discard(e.step)
                if not cutover:
                    w.end, w.closed, w.closed_by = e.ts, e, "verified"
            elif w is not None and w.open and closes_window(e.step, steps):
                w.end, w.closed, w.closed_by = e.ts, e, "verified"
        elif e.kind == "undone" and w is not None and w.open and (key == CUTOVER or opens_window(e.step, steps)):
            w.end, w.closed, w.closed_by = e.ts, e, "reverted"   # the old controller serves again
    return RunWindow(list(windows.values()))


# ---------------------------------------------------------------------- shown to the operator
def stamp(ts: float | None) -> str | None:
    """Local time without spaces (one cell in ``-f value``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts)) if ts else None


def human(seconds: float | None) -> str:
    """``45.2s``, ``12m05s``, ``3h07m``: short enough for a table cell."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _row(name: str, start: float | None, end: float | None, is_open: bool, seconds: float,
         phases: dict[str, float], idle: float, closed_by: str | None) -> dict[str, Any]:
    return {"service": name, "start": stamp(start), "end": stamp(end), "running": is_open,
            "closed_by": closed_by, "seconds": round(seconds, 1),
            **{f"{k}_seconds": round(v, 1) for k, v in phases.items()}, "idle_seconds": round(idle, 1)}


def report(rw: RunWindow, now: Any) -> dict[str, Any]:
    """JSON-able: one row per service window and the total (a window still open counts up to *now*)."""
    rows = [_row(w.service, w.start, w.end, w.open, w.seconds(now), w.phases, w.idle(now), w.closed_by)
            for w in rw.services]
    phases = rw.phases()
    total = None
    if rw.services:
        total = _row("total", rw.start, rw.end, rw.open, rw.seconds(now), phases,
                     max(0.0, rw.seconds(now) - sum(phases.values())), None)
    return {"services": rows, "total": total, "retried_steps": rw.retried, "resumed": rw.retried > 0,
            "note": RESUMED_NOTE if rw.retried else None}


def table_rows(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """The report as table cells: durations made short, an open window shown as running since its start."""
    out = []
    for r in [*rep["services"], *([rep["total"]] if rep["total"] else [])]:
        row = {"service": r["service"], "start": r["start"], "end": r["end"],
               "duration": human(r["seconds"]), **{k: human(r[f"{k}_seconds"]) for k in (*KINDS, "idle")}}
        if r["running"]:
            row["end"] = "running"
            row["duration"] = f"since {r['start']} ({human(r['seconds'])} so far)"
        elif r["closed_by"] == "reverted":
            row["end"] = f"{r['end']} (reverted)"
        out.append(row)
    return out


TABLE_COLUMNS = ("service", "start", "end", "duration", *KINDS, "idle")
