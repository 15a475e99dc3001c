"""Audit export of the journal: runs, events (with their hash chain and MACs), artifacts and the head."""

from __future__ import annotations

import csv
import json
from typing import Any, TextIO

from journal.store import Journal

FORMATS = ("jsonl", "json", "csv")


def document(journal: Journal, run_id: str | None = None) -> dict[str, Any]:
    """The runs, events (with their hash chain) and artifacts of one run (or all runs), redacted once
    more: what every export format writes, and all that `upgrade report` shows."""
    red = journal.redactor
    runs = [journal.run(run_id)] if run_id else journal.runs()
    return {
        "runs": [red.data(_run(r)) for r in runs],
        "events": [red.data(_event(r)) for r in journal.event_rows(run_id)],
        "artifacts": [red.data(a) for a in journal.artifacts(run_id)],
    }


def export(journal: Journal, out: TextIO, fmt: str = "jsonl", run_id: str | None = None) -> int:
    """Write the events of one run (or all runs) to *out*; returns the number of events written.

    jsonl and csv hold one event per line, as the chain stores it (``prev_hash``/``hash``/``mac``
    included, so an auditor can re-verify it); json is one document with the runs, events, artifacts
    and (for a whole-journal export) the head, whose MAC seals the number of events and every row.
    Everything passes the redactor once more on the way out.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    doc = document(journal, run_id)
    events = doc["events"]
    if fmt == "jsonl":
        for e in events:
            out.write(json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n")
    elif fmt == "json":
        if run_id is None:
            doc = {**doc, "head": journal.head()}
        json.dump(doc, out, indent=2, sort_keys=True, ensure_ascii=False)
        out.write("\n")
    else:
        cols = ["seq", "run", "ts", "machine", "step", "kind", "from_state", "to_state", "host",
                "command", "rc", "output", "result", "prev_hash", "hash", "mono", "boot", "mac"]
        w = csv.DictWriter(out, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for e in events:
            row = dict(e)
            row["result"] = json.dumps(row["result"], sort_keys=True) if row["result"] is not None else ""
            w.writerow(row)
    return len(events)


def _event(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["result"] = json.loads(row["result"]) if row["result"] else None
    return out


def _run(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["plan"] = json.loads(row["plan"])
    return out
