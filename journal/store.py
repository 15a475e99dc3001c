"""The SQLite journal: runs, the append-only hash-chained events, and the artifacts in the vault.

Durability is the point of this module: every append is its own transaction on a WAL database
with ``synchronous=FULL``, so an event the runner has been told about survives a SIGKILL or a
power cut. Every text that enters the journal is redacted first.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from journal.chain import GENESIS, first_break, row_hash
from journal.redact import Redactor

JOURNAL_FILE = "journal.db"

EVENT_KINDS = ("intent", "done", "failed", "undo_intent", "undone", "undo_failed", "note")
RUN_STATUSES = ("running", "failed", "completed", "reverting", "revert_failed", "reverted")
OUTPUT_TAIL = 4000


class JournalError(Exception):
    """A journal that cannot be opened or trusted; the message names the file and the fix."""


@dataclass(frozen=True)
class Event:
    seq: int
    run: str
    ts: float
    machine: str
    step: str | None
    kind: str
    from_state: str | None
    to_state: str | None
    host: str | None
    command: str | None
    rc: int | None
    output: str | None
    result: Any

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Event:
        return cls(
            seq=row["seq"], run=row["run"], ts=row["ts"], machine=row["machine"], step=row["step"],
            kind=row["kind"], from_state=row["from_state"], to_state=row["to_state"], host=row["host"],
            command=row["command"], rc=row["rc"], output=row["output"],
            result=json.loads(row["result"]) if row["result"] else None,
        )


def _now() -> float:
    return round(time.time(), 6)


def _tail(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= OUTPUT_TAIL else "…" + text[-OUTPUT_TAIL:]


class Journal:
    """One journal directory: ``journal.db`` (0600) in a 0700 directory, next to the vault and logs."""

    def __init__(self, directory: str | Path, redactor: Redactor | None = None, create: bool = True) -> None:
        self.dir = Path(directory)
        self.path = self.dir / JOURNAL_FILE
        self.redactor = redactor or Redactor()
        if not self.path.exists():
            if not create:
                raise JournalError(
                    f"no journal at {self.path} — there is no run to continue here; "
                    "pass --journal DIR pointing at the directory of the run, or start one with `upgrade run PLAN`"
                )
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.dir, 0o700)
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(self.path, 0o600)
        try:
            # one connection, shared by the runner's thread and the steps' threads when machines overlap
            # (a step records its vault artifact): every transaction and step-side read holds _lock
            self._lock = threading.RLock()
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self.db = sqlite_utils.Database(conn)
            self._schema()
        except sqlite3.DatabaseError as exc:
            raise JournalError(
                f"journal {self.path} is not a readable SQLite journal ({exc}) — "
                "restore it from a copy, or point --journal at the right directory"
            ) from exc
        for side in ("-wal", "-shm"):
            p = Path(str(self.path) + side)
            if p.exists():
                os.chmod(p, 0o600)

    # ------------------------------------------------------------------ schema
    def _schema(self) -> None:
        with self.db.conn:
            self.db.conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS runs (
                    id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL,
                    operator TEXT NOT NULL, plan_path TEXT, plan TEXT NOT NULL, plan_sha256 TEXT NOT NULL,
                    from_release TEXT, to_release TEXT, key_id TEXT, status TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS events (
                    seq INTEGER PRIMARY KEY, run TEXT NOT NULL REFERENCES runs(id), ts REAL NOT NULL,
                    machine TEXT NOT NULL, step TEXT, kind TEXT NOT NULL, from_state TEXT, to_state TEXT,
                    host TEXT, command TEXT, rc INTEGER, output TEXT, result TEXT,
                    prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
                CREATE INDEX IF NOT EXISTS events_run ON events(run, seq);
                CREATE TABLE IF NOT EXISTS artifacts (
                    id TEXT PRIMARY KEY, run TEXT NOT NULL REFERENCES runs(id), created REAL NOT NULL,
                    kind TEXT NOT NULL, service TEXT, host TEXT, path TEXT NOT NULL, bytes INTEGER,
                    sha256 TEXT, key_id TEXT);
                CREATE TABLE IF NOT EXISTS head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL,
                    hash TEXT NOT NULL);
                """
            )

    def close(self) -> None:
        self.db.conn.close()

    # ------------------------------------------------------------------ runs
    def create_run(self, plan: dict[str, Any], plan_sha256: str, plan_path: str | None,
                   from_release: str | None, to_release: str | None, key_id: str | None) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        now = _now()
        with self._tx():
            self.db["runs"].insert({
                "id": run_id, "created": now, "updated": now,
                "operator": f"{getpass.getuser()}@{socket.gethostname()}",
                "plan_path": plan_path, "plan": json.dumps(self.redactor.data(plan), sort_keys=True),
                "plan_sha256": plan_sha256, "from_release": from_release, "to_release": to_release,
                "key_id": key_id, "status": "running",
            })
        return run_id

    def set_status(self, run_id: str, status: str) -> None:
        assert status in RUN_STATUSES, status
        with self._tx():
            self.db.conn.execute("UPDATE runs SET status=?, updated=? WHERE id=?", (status, _now(), run_id))

    def run(self, run_id: str) -> dict[str, Any]:
        rows = list(self.db.query("SELECT * FROM runs WHERE id=?", [run_id]))
        if not rows:
            known = ", ".join(r["id"] for r in self.runs()[-5:]) or "none"
            raise JournalError(f"no run {run_id!r} in journal {self.path} (recent runs: {known}) — "
                               "check the id with `upgrade runs`")
        return rows[0]

    def runs(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM runs ORDER BY created, id"))

    def unfinished_run(self) -> dict[str, Any] | None:
        """The run that still owns the deployment: one that is running, failed, or mid-revert."""
        rows = list(self.db.query(
            "SELECT * FROM runs WHERE status IN ('running','failed','reverting','revert_failed') "
            "ORDER BY created DESC, id DESC LIMIT 1"))
        return rows[0] if rows else None

    def latest_run(self) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM runs ORDER BY created DESC, id DESC LIMIT 1"))
        return rows[0] if rows else None

    # ------------------------------------------------------------------ events
    def append(self, run_id: str, machine: str, kind: str, step: str | None = None,
               from_state: str | None = None, to_state: str | None = None, host: str | None = None,
               command: str | None = None, rc: int | None = None, output: str | None = None,
               result: Any = None) -> Event:
        """Append one event durably (committed and fsynced before returning)."""
        assert kind in EVENT_KINDS, kind
        r = self.redactor
        row: dict[str, Any] = {
            "run": run_id, "ts": _now(), "machine": machine, "step": step, "kind": kind,
            "from_state": from_state, "to_state": to_state, "host": host,
            "command": r.text(command) if command else None, "rc": rc,
            "output": r.text(_tail(output)) if output else None,
            "result": json.dumps(r.data(result), sort_keys=True) if result is not None else None,
        }
        with self._tx():
            head = self.db.conn.execute("SELECT seq, hash FROM head WHERE id=1").fetchone()
            seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
            row["seq"] = seq
            row["prev_hash"] = prev
            row["hash"] = row_hash(row)
            self.db["events"].insert(row)
            self.db.conn.execute("INSERT OR REPLACE INTO head (id, seq, hash) VALUES (1, ?, ?)", (seq, row["hash"]))
            self.db.conn.execute("UPDATE runs SET updated=? WHERE id=?", (row["ts"], run_id))
        return Event.from_row(row)

    def events(self, run_id: str | None = None) -> list[Event]:
        if run_id is None:
            rows = self.db.query("SELECT * FROM events ORDER BY seq")
        else:
            rows = self.db.query("SELECT * FROM events WHERE run=? ORDER BY seq", [run_id])
        return [Event.from_row(r) for r in rows]

    def event_rows(self, run_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Raw rows (with hashes), for export and verification."""
        if run_id is None:
            yield from self.db.query("SELECT * FROM events ORDER BY seq")
        else:
            yield from self.db.query("SELECT * FROM events WHERE run=? ORDER BY seq", [run_id])

    # ------------------------------------------------------------------ artifacts
    def add_artifact(self, run_id: str, artifact_id: str, kind: str, service: str | None, host: str | None,
                     path: str, nbytes: int | None, sha256: str | None, key_id: str | None) -> None:
        with self._tx():
            self.db["artifacts"].upsert({
                "id": artifact_id, "run": run_id, "created": _now(), "kind": kind, "service": service,
                "host": host, "path": path, "bytes": nbytes, "sha256": sha256, "key_id": key_id,
            }, pk="id")

    def artifact(self, artifact_id: str) -> dict[str, Any] | None:
        with self._lock:
            rows = list(self.db.query("SELECT * FROM artifacts WHERE id=?", [artifact_id]))
        return rows[0] if rows else None

    def artifacts(self, run_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if run_id is None:
                return list(self.db.query("SELECT * FROM artifacts ORDER BY created, id"))
            return list(self.db.query("SELECT * FROM artifacts WHERE run=? ORDER BY created, id", [run_id]))

    # ------------------------------------------------------------------ verification
    def verify_chain(self) -> tuple[int, str] | None:
        """First broken link as (seq, reason), or None when the chain and its head are intact."""
        rows = list(self.event_rows())
        broken = first_break(rows)
        if broken:
            return broken
        head = self.db.conn.execute("SELECT seq, hash FROM head WHERE id=1").fetchone()
        last = rows[-1] if rows else None
        if head is None and last is None:
            return None
        if head is None or last is None or head[0] != last["seq"] or head[1] != last["hash"]:
            seq = last["seq"] + 1 if last else 1
            return seq, "the last events were removed (the chain head records more events than remain)"
        return None

    # ------------------------------------------------------------------ helpers
    def _tx(self):
        """A write transaction that takes the write lock at once (BEGIN IMMEDIATE), one thread at a time."""
        return _Immediate(self.db.conn, self._lock)


class _Immediate:
    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self.conn = conn
        self.lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.lock.release()
