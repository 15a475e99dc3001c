"""What the listing verbs print about runs — ``status``, ``runs``, ``journal show`` — read from the
journal alone, as rows for the one table renderer (``upgrade.tables``) in any of its formats.

Kept out of ``upgrade.commands`` so that each verb there stays one short function: find the journal
and the run, then hand them to a function here.
"""

from __future__ import annotations

import json
import time
from typing import Any, TextIO

from journal.store import Journal
from services.registry import steps_for_raw
from statemachine.machine import INITIAL, ServiceMachine
from statemachine.replay import replay
from upgrade import tables, window

#: what `status` says to do next, by the run's status
NEXT_ACTION = {"running": "the run is in progress, or its process died: `upgrade resume` continues it",
               "failed": "`upgrade resume` after fixing the cause, or `upgrade revert`",
               "reverting": "`upgrade revert` to finish undoing", "revert_failed": "`upgrade revert` after fixing",
               "completed": "nothing; `upgrade revert` would undo it", "reverted": "nothing"}
STATUS_COLUMNS = ("service", "state", "last_step", "next_step", "seconds", "last_error")
#: the window's cells of a service in `status -f value`, after service, state and next step
VALUE_WINDOW = ("start", "end", "seconds", *(f"{k}_seconds" for k in window.KINDS), "idle_seconds")
RUN_COLUMNS = ("id", "status", "from", "to", "created", "updated", "operator", "plan")
TIMELINE_COLUMNS = ("time", "machine", "step", "kind", "duration", "host", "rc")


def status_data(journal: Journal, run_row: dict[str, Any]) -> dict[str, Any]:
    """Where each machine of the run stands, what to do next, and the maintenance window taken."""
    plan = json.loads(run_row["plan"])
    events = journal.events(run_row["id"])
    view = replay(events)
    services = []
    for name in plan["upgrade"]["services"]:
        m = ServiceMachine(name, steps_for_raw(plan, name))
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
    services += _other_machines(events, view, {s["service"] for s in services})
    status = run_row["status"]
    pinned = _pinned(plan, services, status, run_row)
    return {"run": run_row["id"], "status": status, "from": run_row["from_release"], "to": run_row["to_release"],
            "journal": str(journal.dir), "next_action": pinned or NEXT_ACTION[status], "services": services,
            "pinned": bool(pinned), "window": window.report(window.measure(events), window.now())}


def _pinned(plan: dict[str, Any], services: list[dict[str, Any]], status: str, run_row: dict[str, Any]) -> str:
    """What a completed run whose plan left unpinning for later (``[upgrade] unpin = "later"``) says next."""
    if status != "completed" or plan["upgrade"].get("unpin") != "later":
        return ""
    left = [s for s in services if s["service"] == "nova-unpin" and s["next_step"]]
    if not left:
        return ""
    left[0]["state"] = "pinned (later)"
    return (f"nova stays pinned to {run_row['from_release']}'s compute RPC until every compute runs "
            f"{run_row['to_release']}: `upgrade unpin {run_row['plan_path']}` then checks their service versions "
            "and unpins; `upgrade revert` would undo the run")


def _other_machines(events: list, view: Any, known: set[str]) -> list[dict[str, Any]]:
    """Machines that are not services (the IP switchover, compute hosts): their steps come from the
    plan's network and compute sections, so their state is read from the journal's transitions."""
    rows: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.machine in known or e.step is None:
            continue
        row = rows.setdefault(e.machine, {"service": e.machine, "state": INITIAL, "last_step": None,
                                          "next_step": None, "interrupted_step": None, "seconds": 0.0,
                                          "last_error": None})
        if e.kind in ("done", "undone"):
            row["state"], row["last_step"] = e.to_state or row["state"], e.step if e.kind == "done" else None
            row["seconds"] = round(row["seconds"] + ((e.result or {}).get("seconds", 0) if e.kind == "done" else 0), 1)
    for name, row in rows.items():
        mv = view.machine(name)
        row["interrupted_step"] = mv.attempted
        row["next_step"] = mv.attempted
        row["last_error"] = (mv.last_error or "").splitlines()[0] if mv.last_error else None
    return list(rows.values())


def write_status(data: dict[str, Any], fmt: str, out: TextIO) -> None:
    """``status`` in its three forms: json (everything), value (one line per machine and its window),
    table (the machines, then the window per service, then what to do next)."""
    if fmt == "json":
        json.dump(data, out, indent=2)
        out.write("\n")
        return
    win = data["window"]
    if fmt == "value":
        # service, state, next step, then its window (start, end, seconds, seconds per step kind); a last
        # row "total" for the run's window, its state the run's status
        spans = {r["service"]: r for r in [*win["services"], *([win["total"]] if win["total"] else [])]}
        rows = [{**s, **_value_span(spans.get(s["service"]))} for s in data["services"]]
        if win["total"]:
            rows.append({**_value_span(win["total"]), "state": data["status"]})
        tables.render(rows, ("service", "state", "next_step", *VALUE_WINDOW), "value", out)
        return
    out.write(f"run {data['run']}  {data['from']} -> {data['to']}  status: {data['status']}\n")
    tables.render(data["services"], STATUS_COLUMNS, "table", out)
    if win["services"]:
        out.write("\nmaintenance window (first stop on the old controller -> verification on the new):\n")
        tables.render(window.table_rows(win), window.TABLE_COLUMNS, "table", out)
        if win["note"]:
            out.write(f"note: {win['note']}\n")
    out.write(f"next: {data['next_action']}\n")


def _value_span(span: dict[str, Any] | None) -> dict[str, Any]:
    """A window's cells for `-f value`: an open one ends "running"."""
    return {**span, "end": "running"} if span and span["running"] else (span or {})


def _time(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else None


def write_runs(journal: Journal, fmt: str, out: TextIO) -> None:
    """Every run of the journal: id, status, releases, created and last changed, operator, plan."""
    rows = [{"id": r["id"], "status": r["status"], "from": r["from_release"], "to": r["to_release"],
             "created": _time(r["created"]), "updated": _time(r["updated"]), "operator": r["operator"],
             "plan": r["plan_path"]} for r in journal.runs()]
    tables.render(rows, RUN_COLUMNS, fmt, out)


def timeline(journal: Journal, run_id: str) -> list[dict[str, Any]]:
    """The run's events with how long each step (or undo) took: from its intent to its end event."""
    began: dict[tuple[str, str | None], float] = {}
    rows = []
    for e in journal.events(run_id):
        if e.kind in ("intent", "undo_intent"):
            began[(e.machine, e.step)] = e.ts
        start = began.get((e.machine, e.step)) if e.kind in ("done", "failed", "undone", "undo_failed") else None
        rows.append({"seq": e.seq, "time": _time(e.ts), "machine": e.machine, "step": e.step, "kind": e.kind,
                     "duration": f"{e.ts - start:.2f}s" if start is not None else None, "host": e.host,
                     "rc": e.rc})
    return rows


def write_timeline(journal: Journal, run_row: dict[str, Any], fmt: str, out: TextIO) -> None:
    """``journal show``: the run's title line (table form only), then its timeline."""
    if fmt == "table":
        out.write(f"run {run_row['id']}  {run_row['from_release']} -> {run_row['to_release']}  "
                  f"status: {run_row['status']}\n")
    tables.render(timeline(journal, run_row["id"]), TIMELINE_COLUMNS, fmt, out)
    if fmt == "table" and (arts := journal.artifacts(run_row["id"])):
        out.write("\nartifacts (encrypted in the vault, readable with the run's key):\n")
        tables.render(arts, ("id", "kind", "service", "bytes", "path"), "table", out)
