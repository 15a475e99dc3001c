"""The SQLite journal: runs, the append-only hash-chained events, and the artifacts in the vault.

Durability is the point of this module: every append is its own transaction on a WAL database
with ``synchronous=FULL``, so an event the runner has been told about survives a SIGKILL or a
power cut. Every text that enters the journal is redacted first.

Trust is the other point: every write is sealed (``journal.seal``) with a MAC key derived from the
vault key, in the same transaction, so a journal opened without the key is read-only, and one whose
seal does not verify is refused before any work (:meth:`Journal.authenticate`). That check reads what
a resume decides on, not the whole chain: the runs, artifacts and sealed marks (the journal's index of
the last event of each step and kind), the head and the last event; every event a decision then reads
(:meth:`Journal.step_rows`, :meth:`Journal.notes`) is checked against its MAC and its mark as it is read.
`journal verify` walks every event.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from journal import private, seal, vault
from journal.chain import GENESIS, HASHED_COLUMNS, HASHED_COLUMNS_V1, first_break, row_hash
from journal.errors import EXIT_FAILED, EXIT_USAGE, UserError
from journal.redact import Redactor

JOURNAL_FILE = "journal.db"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

EVENT_KINDS = ("intent", "done", "failed", "undo_intent", "undone", "undo_failed", "note")
RUN_STATUSES = ("running", "failed", "completed", "reverting", "revert_failed", "reverted")
OUTPUT_TAIL = 4000
#: the first (machine, step, kind) of a run's step events in ``events_last`` order, after a condition ...
_NEXT_GROUP = ("SELECT machine, step, kind FROM events WHERE run=?{} AND step IS NOT NULL "
               "ORDER BY machine, step, kind LIMIT 1")
#: ... and the last event of one such group (SQLite's min/max optimisation: one index seek)
_LAST_OF_GROUP = "SELECT MAX(seq) FROM events WHERE run=? AND machine=? AND step=? AND kind=?"
_STEP_ROW = "SELECT machine, step, kind, output, result FROM events WHERE seq=?"
#: format 3: the sealed marks, one per (run, machine, step, kind) ("" for an event without a step)
MARKS_SCHEMA = """
    CREATE TABLE IF NOT EXISTS marks (run TEXT NOT NULL, machine TEXT NOT NULL, step TEXT NOT NULL,
        kind TEXT NOT NULL, count INTEGER NOT NULL, last INTEGER NOT NULL, mac TEXT,
        PRIMARY KEY (run, machine, step, kind)) WITHOUT ROWID;
"""


class JournalError(UserError):
    """A journal that cannot be opened or trusted; the message names the file and the fix."""

    #: the disk holding the journal is full: the run stopped there (not a bad input)
    disk_full = False

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        """A full disk stopped a run (1: free space, then resume); anything else is a bad journal (2)."""
        return EXIT_FAILED if self.disk_full else EXIT_USAGE


class JournalTampered(JournalError):
    """The journal's seal does not verify: a row was edited, removed, added or put back."""


@dataclass(frozen=True)
class Verdict:
    """What verifying a journal found: the first fault (None: intact), what was checked, and how."""

    fault: str | None
    events: int
    runs: int
    artifacts: int
    format: int
    #: the MACs were checked with the key; False: only the hash chain (anyone can recompute it)
    authenticated: bool


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
    #: the monotonic clock (CLOCK_BOOTTIME) at the event and the boot it belongs to (format 2)
    mono: float | None = None
    boot: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Event:
        return cls(
            seq=row["seq"], run=row["run"], ts=row["ts"], machine=row["machine"], step=row["step"],
            kind=row["kind"], from_state=row["from_state"], to_state=row["to_state"], host=row["host"],
            command=row["command"], rc=row["rc"], output=row["output"],
            result=json.loads(row["result"]) if row["result"] else None,
            mono=row.get("mono"), boot=row.get("boot"),
        )


def _now() -> float:
    return round(time.time(), 6)


def _boot() -> str | None:
    """This boot's id: monotonic readings compare only within one boot."""
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


_BOOT = _boot()


def _mono() -> float:
    """The monotonic clock (counts suspend too), for durations a wall clock stepping back cannot spoil."""
    return round(time.clock_gettime(time.CLOCK_BOOTTIME), 6)


def clock() -> tuple[float, float, str | None]:
    """Now, as an event records it: wall time, monotonic clock, boot id."""
    return _now(), _mono(), _BOOT


T = TypeVar("T")


def _journal_error(path: Path, exc: sqlite3.DatabaseError) -> JournalError:
    """A clear error for a failing SQLite call: disk full, or a damaged file."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        err = JournalError(f"no space left on the disk holding the journal {path} ({exc}): nothing more could be "
                           "recorded and the run stopped there — free space on that disk, then continue with "
                           "`upgrade resume` (or `upgrade revert`)")
        err.disk_full = True
        return err
    return JournalError(f"journal {path} is not a readable SQLite journal: it is damaged ({exc}) — nothing was "
                        "changed by this command; restore the journal directory from a copy, or point --journal at "
                        "the right one")


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """Turn SQLite failures inside a journal method into a :class:`JournalError` naming the file."""
    @functools.wraps(method)
    def wrapper(self: Journal, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise _journal_error(self.path, exc) from None
    return wrapper


def _tail(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= OUTPUT_TAIL else "…" + text[-OUTPUT_TAIL:]


class Journal:
    """One journal directory: ``journal.db`` (0600) in a 0700 directory, next to the vault and logs.

    Both must belong to the user running the tool and are opened without following symbolic links
    (``journal.private``). Opened without *key*, the journal is read-only; with it, the key must be
    the one the journal is sealed with, and every write is sealed.
    """

    def __init__(self, directory: str | Path, redactor: Redactor | None = None, create: bool = True,
                 key: vault.Key | None = None) -> None:
        self.dir = Path(directory)
        self.path = self.dir / JOURNAL_FILE
        self.redactor = redactor or Redactor()
        self._mac: bytes | None = None
        self.key_id: str | None = None
        #: the seqs of events checked against their MAC and mark (by :meth:`authenticate`, then read by the
        #: runner: an event never changes once written, so each is checked once per process)
        self._checked: set[int] = set()
        try:
            if create:
                private.make_dir(self.dir)
            else:
                private.require_dir(self.dir)
            os.close(private.open_file(self.path, os.O_RDWR | (os.O_CREAT if create else 0), "journal file",
                                       repair_mode=True))
            for side in ("-wal", "-shm"):
                if os.path.lexists(extra := Path(str(self.path) + side)):
                    os.close(private.open_file(extra, os.O_RDWR, "journal file", repair_mode=True))
        except FileNotFoundError:
            raise JournalError(
                f"no journal at {self.path} — there is no run to continue here; "
                "pass --journal DIR pointing at the directory of the run, or start one with `upgrade run PLAN`"
            ) from None
        except private.PrivatePathError as exc:
            raise JournalError(str(exc)) from None
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
            raise _journal_error(self.path, exc) from None
        if key is not None:
            self.unlock(key)

    # ------------------------------------------------------------------ schema
    SCHEMA = """
        CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL,
            operator TEXT NOT NULL, plan_path TEXT, plan TEXT NOT NULL, plan_sha256 TEXT NOT NULL,
            from_release TEXT, to_release TEXT, key_id TEXT, status TEXT NOT NULL, mac TEXT);
        CREATE TABLE IF NOT EXISTS events (
            seq INTEGER PRIMARY KEY, run TEXT NOT NULL REFERENCES runs(id), ts REAL NOT NULL,
            machine TEXT NOT NULL, step TEXT, kind TEXT NOT NULL, from_state TEXT, to_state TEXT,
            host TEXT, command TEXT, rc INTEGER, output TEXT, result TEXT,
            prev_hash TEXT NOT NULL, hash TEXT NOT NULL, mono REAL, boot TEXT, mac TEXT);
        CREATE INDEX IF NOT EXISTS events_run ON events(run, seq);
        CREATE INDEX IF NOT EXISTS events_last ON events(run, machine, step, kind, seq);
        CREATE TABLE IF NOT EXISTS artifacts (
            id TEXT PRIMARY KEY, run TEXT NOT NULL REFERENCES runs(id), step TEXT, created REAL NOT NULL,
            kind TEXT NOT NULL, service TEXT, host TEXT, path TEXT NOT NULL, bytes INTEGER,
            sha256 TEXT, key_id TEXT, mac TEXT);
        CREATE TABLE IF NOT EXISTS head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL,
            hash TEXT NOT NULL, mac TEXT);
    """

    def _schema(self) -> None:
        """Create a new journal in the current format; leave an earlier format's journal as it is (read-only).

        A journal of format 1 has no ``meta`` table and no seal. One that holds nothing yet (an earlier
        version created it and made no run) is simply recreated in the current format.
        """
        conn = self.db.conn
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            if any(conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() for t in ("runs", "events") if t in tables):
                self.format = 1
                return
            with self.db.conn:
                for t in ("head", "artifacts", "events", "runs"):
                    conn.execute(f"DROP TABLE IF EXISTS {t}")
        with self.db.conn:
            conn.executescript(self.SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('format', ?)", (str(seal.FORMAT),))
        self.format = int(self._meta("format") or 1)
        if self.format >= 3:  # a format 2 journal is continued as it is, without marks
            with self.db.conn:
                conn.executescript(MARKS_SCHEMA)

    def _meta(self, name: str) -> str | None:
        row = self.db.conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    @property
    def sealed_key_id(self) -> str | None:
        """The id of the vault key the journal is sealed with (None: format 1, or nothing written yet)."""
        return self._meta("key_id") if self.format >= seal.SEALED else None

    @property
    def marked(self) -> bool:
        """Whether the journal keeps sealed marks (format 3): resume then reads through them."""
        return self.format >= 3

    # ------------------------------------------------------------------ the key
    def unlock(self, key: vault.Key) -> None:
        """Make the journal writable with *key*: it must be the key it is sealed with (checked by id).

        Does not verify the seal (that is :meth:`authenticate`); refuses a journal of format 1, which
        this version never writes to (a writer could have forged it, and sealing it now would vouch for it).
        """
        if self.format < seal.SEALED:
            raise JournalError(
                f"journal {self.path} was written by an earlier version of the tool (format {self.format}: its hash "
                "chain has no key, so anyone who could write the file could have rewritten it) — this version does "
                "not continue it: finish its run with the version that started it, or start new runs in a new "
                "journal directory; `upgrade journal verify --unkeyed` checks its chain")
        sealed = self.sealed_key_id
        if sealed is not None and sealed != key.key_id:
            raise JournalError(
                f"journal {self.path} is sealed with vault key id {sealed}, but the key given has id {key.key_id} — "
                "use the key file (or passphrase) of its runs, or start new runs in a new journal directory")
        self._mac = seal.mac_key(key.key)
        self.key_id = key.key_id

    def authenticate(self, key: vault.Key) -> Verdict:
        """Unlock with *key* and check the seal a decision relies on; raise :class:`JournalTampered` on any fault.

        `run`, `resume` and `revert` call this before any work: a journal a writer without the key edited is
        refused, with the first bad row named. With marks (format 3) it does not walk the chain, so its time
        does not grow with the events (:meth:`_checked_seal`); a format 2 journal is verified whole.
        """
        self.unlock(key)
        verdict = self._checked_seal() if self.marked else self.verify()
        if verdict.fault:
            raise self._tampered(verdict.fault)
        return verdict

    def _need_key(self) -> bytes:
        if self._mac is None:
            raise JournalError(f"journal {self.path} was opened without the vault key: it is read-only here "
                               "(only a holder of the key can add to it)")
        return self._mac

    def close(self) -> None:
        self.db.conn.close()

    # ------------------------------------------------------------------ runs
    @_guarded
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
            self._seal_run(run_id)
            self._seal_head()
        return run_id

    @_guarded
    def set_status(self, run_id: str, status: str) -> None:
        assert status in RUN_STATUSES, status
        with self._tx():
            self.db.conn.execute("UPDATE runs SET status=?, updated=? WHERE id=?", (status, _now(), run_id))
            self._seal_run(run_id)
            self._seal_head()

    @_guarded
    def run(self, run_id: str) -> dict[str, Any]:
        rows = list(self.db.query("SELECT * FROM runs WHERE id=?", [run_id]))
        if not rows:
            known = ", ".join(r["id"] for r in self.runs()[-5:]) or "none"
            raise JournalError(f"no run {run_id!r} in journal {self.path} (recent runs: {known}) — "
                               "check the id with `upgrade runs`")
        return rows[0]

    @_guarded
    def runs(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM runs ORDER BY created, id"))

    @_guarded
    def unfinished_run(self) -> dict[str, Any] | None:
        """The run that still owns the deployment: one that is running, failed, or mid-revert."""
        rows = list(self.db.query(
            "SELECT * FROM runs WHERE status IN ('running','failed','reverting','revert_failed') "
            "ORDER BY created DESC, id DESC LIMIT 1"))
        return rows[0] if rows else None

    @_guarded
    def latest_run(self) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM runs ORDER BY created DESC, id DESC LIMIT 1"))
        return rows[0] if rows else None

    # ------------------------------------------------------------------ events
    @_guarded
    def append(self, run_id: str, machine: str, kind: str, step: str | None = None,
               from_state: str | None = None, to_state: str | None = None, host: str | None = None,
               command: str | None = None, rc: int | None = None, output: str | None = None,
               result: Any = None) -> Event:
        """Append one event durably (committed and fsynced before returning)."""
        assert kind in EVENT_KINDS, kind
        r = self.redactor
        row: dict[str, Any] = {
            "run": run_id, "ts": _now(), "mono": _mono(), "boot": _BOOT, "machine": machine, "step": step, "kind": kind,
            "from_state": from_state, "to_state": to_state, "host": host,
            "command": r.text(command) if command else None, "rc": rc,
            "output": r.text(_tail(output)) if output else None,
            "result": json.dumps(r.data(result), sort_keys=True) if result is not None else None,
        }
        with self._tx() as conn:
            head = conn.execute("SELECT seq, hash FROM head WHERE id=1").fetchone()
            seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
            row["seq"] = seq
            row["prev_hash"] = prev
            row["hash"] = row_hash(row)
            row["mac"] = seal.event_mac(self._need_key(), row["hash"])
            self.db["events"].insert(row)
            if self.marked:
                self._mark(row)
            conn.execute("UPDATE runs SET updated=? WHERE id=?", (row["ts"], run_id))
            self._seal_run(run_id)
            self._seal_head(seq, row["hash"])
        return Event.from_row(row)

    @_guarded
    def events(self, run_id: str | None = None) -> list[Event]:
        if run_id is None:
            rows = self.db.query("SELECT * FROM events ORDER BY seq")
        else:
            rows = self.db.query("SELECT * FROM events WHERE run=? ORDER BY seq", [run_id])
        return [Event.from_row(r) for r in rows]

    @_guarded
    def notes(self, run_id: str, machine: str) -> list[Event]:
        """The ``note`` events of one machine of the run, in order: read through ``events_last`` (the run's
        and machine's entries only), so finding the run's recorded notes does not decode every event.

        With marks, each note is checked (hash, and MAC when unlocked) and their number and last seq against
        the marks: a note removed or turned into another event is refused, not silently missed."""
        with self._lock:
            return [Event.from_row(r) for r in self._note_rows(run_id, machine)]

    def _note_rows(self, run_id: str, machine: str) -> list[dict[str, Any]]:
        cur = self.db.conn.execute("SELECT * FROM events WHERE run=? AND machine=? AND kind='note' ORDER BY seq",
                                   (run_id, machine))
        columns = [c[0] for c in cur.description]
        rows = [dict(zip(columns, r, strict=True)) for r in cur]
        if self.marked:
            for row in rows:
                self._check_row(row, (run_id, machine, row["step"] or "", "note"))
            count, last = self.db.conn.execute(
                "SELECT COALESCE(SUM(count), 0), MAX(last) FROM marks WHERE run=? AND machine=? AND kind='note'",
                (run_id, machine)).fetchone()
            if (count, last) != (len(rows), rows[-1]["seq"] if rows else None):
                raise self._tampered(f"the notes of {machine} in run {run_id}: {len(rows)} found where its marks "
                                     f"seal {count} (the last at seq {last}) — a note was removed or changed")
        return rows

    @_guarded
    def machines(self, run_id: str) -> set[str]:
        """The machines that have an event in the run (through the marks when there are: one entry per step)."""
        table = "marks" if self.marked else "events"
        with self._lock:
            return {m for (m,) in self.db.conn.execute(f"SELECT DISTINCT machine FROM {table} WHERE run=?", (run_id,))}

    @_guarded
    def step_rows(self, run_id: str) -> list[tuple[str, str | None, str, str | None, str | None]]:
        """(machine, step, kind, output, result JSON) of the last event of each kind of each step of the run, in
        order, undecoded: what ``statemachine.replay.replay_rows`` needs to decide where a resume or revert goes
        on (an earlier event of the same step and kind is overridden by the later one, so replaying these ends
        where replaying every event ends).

        A loose index scan of ``events_last`` (run, machine, step, kind, seq): one seek per (machine, step,
        kind) group to its last seq and one to the next group, never a pass over the run's events, so the
        cost grows with the number of steps, not of events (a GROUP BY reads every index entry: 0.3 s at a
        million events).

        With marks (format 3) the groups and their last seq are the sealed marks' and each row read is checked
        against its mark and its MAC: an event the decision needs that was removed, changed or hidden as
        another kind is refused (the chain between is walked by `journal verify`)."""
        conn = self.db.conn
        seqs: list[int] = []
        with self._lock:
            if self.marked:
                return self._marked_rows(run_id)
            group = conn.execute(_NEXT_GROUP.format(""), (run_id,)).fetchone()
            while group is not None:
                seqs.append(conn.execute(_LAST_OF_GROUP, (run_id, *group)).fetchone()[0])
                group = self._next_group(run_id, group)
            return [conn.execute(_STEP_ROW, (seq,)).fetchone() for seq in sorted(seqs)]

    def _marked_rows(self, run_id: str) -> list[tuple[str, str | None, str, str | None, str | None]]:
        """The last event of each of the run's marks with a step, in seq order, each checked (one query: the
        marks joined to their events; a mark whose event is gone gives a row of NULLs, refused)."""
        cur = self.db.conn.execute("SELECT m.machine AS m_machine, m.step AS m_step, m.kind AS m_kind, m.last AS "
                                   "m_last, e.* FROM marks m LEFT JOIN events e ON e.seq = m.last "
                                   "WHERE m.run=? AND m.step != '' ORDER BY m.last", (run_id,))
        columns = [c[0] for c in cur.description]
        out = []
        for r in cur.fetchall():
            row = dict(zip(columns, r, strict=True))
            machine, step, kind = row.pop("m_machine"), row.pop("m_step"), row.pop("m_kind")
            row["seq"] = row.pop("m_last")
            self._check_row(row, (run_id, machine, step, kind))
            out.append((machine, step, kind, row["output"], row["result"]))
        return out

    def _check_row(self, row: dict[str, Any], group: tuple[str, str, str, str]) -> None:
        """An event a decision reads: present, of its mark's group, its content matching its hash and (when
        unlocked) its MAC; else :class:`JournalTampered`."""
        seq = row["seq"]
        if seq in self._checked:
            return
        if row.get("hash") is None:
            raise self._tampered(f"event seq {seq}, the last {group[3]} of {group[2] or group[1]} by its marks, "
                                 "is missing")
        if (row["run"], row["machine"], row["step"] or "", row["kind"]) != group:
            raise self._tampered(f"event seq {seq} is not the {group[3]} of {group[2] or group[1]} its marks seal "
                                 "(it was changed into another event)")
        if row_hash(row) != row["hash"] or (self._mac is not None
                                            and not seal.equal(row.get("mac"), seal.event_mac(self._mac, row["hash"]))):
            raise self._tampered(f"event seq {seq}: its content does not match its hash and MAC (the event was "
                                 "rewritten without the key)")
        if self._mac is not None:
            self._checked.add(seq)

    def _tampered(self, fault: str) -> JournalTampered:
        return JournalTampered(
            f"journal {self.path} does not verify with its key: {fault} — someone without the key "
            "changed it (or it was damaged); nothing was done. Restore the journal directory from a copy, "
            "and compare with `upgrade journal export`s taken before")

    def _next_group(self, run_id: str, group: tuple[str, str, str]) -> tuple[str, str, str] | None:
        """The (machine, step, kind) after *group* in ``events_last`` order: three prefix seeks (a row-value
        ``>`` seeks on the machine alone and then walks the rest of its entries)."""
        machine, step, kind = group
        for after, args in (("machine=? AND step=? AND kind>?", (machine, step, kind)),
                            ("machine=? AND step>?", (machine, step)), ("machine>?", (machine,))):
            row = self.db.conn.execute(_NEXT_GROUP.format(" AND " + after), (run_id, *args)).fetchone()
            if row is not None:
                return row
        return None

    @_guarded
    def event_rows(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Raw rows (with hashes and MACs), for export and verification (dicts made here: a million rows are
        read in a third of the time ``sqlite_utils``'s query takes)."""
        with self._lock:
            if run_id is None:
                cur = self.db.conn.execute("SELECT * FROM events ORDER BY seq")
            else:
                cur = self.db.conn.execute("SELECT * FROM events WHERE run=? ORDER BY seq", [run_id])
            columns = [c[0] for c in cur.description]
            return [dict(zip(columns, r, strict=True)) for r in cur]

    @_guarded
    def head(self) -> dict[str, Any] | None:
        """The head row (seq, hash and MAC of the last event), for export and verification."""
        rows = list(self.db.query("SELECT * FROM head WHERE id=1"))
        return rows[0] if rows else None

    # ------------------------------------------------------------------ artifacts
    @_guarded
    def add_artifact(self, run_id: str, artifact_id: str, kind: str, service: str | None, host: str | None,
                     path: str, nbytes: int | None, sha256: str | None, key_id: str | None,
                     step: str | None = None) -> None:
        """Record an artifact of *run_id* made by *step*: what every later import or restore checks it against."""
        with self._tx():
            row = {"id": artifact_id, "run": run_id, "step": step, "created": _now(), "kind": kind,
                   "service": service, "host": host, "path": path, "bytes": nbytes, "sha256": sha256,
                   "key_id": key_id}
            row["mac"] = seal.row_mac(self._need_key(), "artifacts", row)
            self.db["artifacts"].upsert(row, pk="id")
            self._seal_head()

    @_guarded
    def artifact(self, artifact_id: str) -> dict[str, Any] | None:
        with self._lock:
            rows = list(self.db.query("SELECT * FROM artifacts WHERE id=?", [artifact_id]))
        return rows[0] if rows else None

    @_guarded
    def artifacts(self, run_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if run_id is None:
                return list(self.db.query("SELECT * FROM artifacts ORDER BY created, id"))
            return list(self.db.query("SELECT * FROM artifacts WHERE run=? ORDER BY created, id", [run_id]))

    # ------------------------------------------------------------------ verification
    def verify_chain(self) -> tuple[int, str] | None:
        """First broken link of the unkeyed hash chain as (seq, reason), or None when it and its head agree.

        Anyone can check this, and anyone who can write the file can recompute it: :meth:`verify`
        with the key is what detects a forger.
        """
        with self._lock:
            return self._chain_break(_Walk(self._event_cursor()))

    def _event_cursor(self) -> Iterator[dict[str, Any]]:
        """Every event row in seq order, one at a time: a walk over a million events holds one row, not all."""
        cur = self.db.conn.execute("SELECT * FROM events ORDER BY seq")
        columns = [c[0] for c in cur.description]
        for r in cur:
            yield dict(zip(columns, r, strict=True))

    def _chain_break(self, walk: _Walk) -> tuple[int, str] | None:
        """:meth:`verify_chain` over a walk of the rows (``verify`` checks the MACs in the same pass)."""
        broken = first_break(walk, HASHED_COLUMNS if self.format >= 2 else HASHED_COLUMNS_V1)
        if broken:
            return broken
        head = self.head()
        last = walk.last
        if head is None and last is None:
            return None
        if head is not None and last is None and head["seq"] == 0:
            return None
        if head is None or last is None or head["seq"] != last["seq"] or head["hash"] != last["hash"]:
            seq = last["seq"] + 1 if last else 1
            return seq, "the last events were removed (the chain head records more events than remain)"
        return None

    @_guarded
    def verify(self) -> Verdict:
        """Check the hash chain and, when unlocked with the key, every MAC: events, runs, artifacts, head.

        One pass over the events, one row at a time (chain and MACs together): memory stays flat and the
        time is one read of the journal, however many events it holds."""
        with self._lock:
            return self._verify()

    def _verify(self) -> Verdict:
        runs, arts = self.runs(), self.artifacts()
        key = self._mac
        walk = _Walk(self._event_cursor(), key, self.marked)

        def verdict(fault: str | None) -> Verdict:
            events = walk.count if walk.done else self.db.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            return Verdict(fault, events, len(runs), len(arts), self.format, key is not None)

        broken = self._chain_break(walk)
        if broken:
            return verdict(f"event seq {broken[0]}: {broken[1]}")
        if key is None:
            return verdict(None)
        if walk.bad_mac is not None:
            return verdict(f"event seq {walk.bad_mac}: its MAC does not match (the event, or the whole chain "
                           "from it on, was rewritten without the key)")
        fault = self._rows_fault(key, runs, arts) or self._head_fault(key, walk.count, runs, arts)
        if fault is None and self.marked:
            fault = self._marks_fault(key, walk.count, runs)
            if fault is None and (wrong := self._marks_differ(walk.groups)):
                fault = wrong
        return verdict(fault)

    def _checked_seal(self) -> Verdict:
        """The seal a decision relies on, without walking the chain (format 3): every run's, artifact's and
        mark's MAC, the marks summing to the events the head seals, the events numbered 1..head without a
        gap, the last event (hash, MAC, the head's hash) and the head's MAC; then every event a decision
        reads (:meth:`step_rows`: the last of each mark with a step; :meth:`notes`: every note), against its
        hash, MAC and mark — before any work. A writer without the key can still edit an event no decision
        reads (an earlier intent of a step run twice): its MAC no longer matches, and `journal verify` finds it.
        Costs one read per step and kind and per note, whatever the number of events."""
        with self._lock:
            runs, arts = self.runs(), self.artifacts()
            key = self._need_key()
            # three statements: MIN and MAX alone are one seek each, COUNT alone scans the smallest index (together
            # they would read the whole table)
            count, low, high = (self.db.conn.execute(f"SELECT {f}(seq) FROM events").fetchone()[0]
                                for f in ("COUNT", "MIN", "MAX"))

            def verdict(fault: str | None) -> Verdict:
                return Verdict(fault, count, len(runs), len(arts), self.format, True)

            head = self.head()
            if head is not None and (count != head["seq"] or (count and (low, high) != (1, count))):
                return verdict(f"the events are {count} rows (seq {low} to {high}) where the head seals seq "
                               f"{head['seq']} without a gap: events were removed or added")
            if head is not None and count:
                cur = self.db.conn.execute("SELECT * FROM events WHERE seq=?", (head["seq"],))
                last = dict(zip([c[0] for c in cur.description], cur.fetchone(), strict=True))
                if row_hash(last) != last["hash"] or last["hash"] != head["hash"]:
                    return verdict(f"event seq {head['seq']}: the last event does not match its hash or the head's "
                                   "(rows removed, reordered or edited)")
                if not seal.equal(last.get("mac"), seal.event_mac(key, last["hash"])):
                    return verdict(f"event seq {head['seq']}: its MAC does not match (the event, or the whole "
                                   "chain from it on, was rewritten without the key)")
            fault = (self._rows_fault(key, runs, arts) or self._head_fault(key, count, runs, arts)
                     or self._marks_fault(key, count, runs))
            if fault is None:  # every event a decision reads, before any work (JournalTampered otherwise)
                for run in runs:
                    self._marked_rows(run["id"])
                for run_id, machine in self.db.conn.execute("SELECT DISTINCT run, machine FROM marks "
                                                            "WHERE kind='note'").fetchall():
                    self._note_rows(run_id, machine)
            return verdict(fault)

    def _rows_fault(self, key: bytes, runs: list[dict[str, Any]], arts: list[dict[str, Any]]) -> str | None:
        for table, items in (("runs", runs), ("artifacts", arts)):
            for item in items:
                if not seal.equal(item.get("mac"), seal.row_mac(key, table, item)):
                    return f"{table} row {item['id']}: its MAC does not match (the row was edited without the key)"
        return None

    def _head_fault(self, key: bytes, count: int, runs: list[dict[str, Any]], arts: list[dict[str, Any]]) -> str | None:
        """The head's MAC over the format, key id, last seq and hash, *count* events and the runs' and
        artifacts' MACs."""
        head = self.head()
        bound = self.sealed_key_id
        if head is None:
            return (None if bound is None and not count and not runs and not arts
                    else "the head row is missing (it seals the number of events, runs and artifacts)")
        fields = seal.head_fields(self.format, bound or "", head["seq"], head["hash"], count, seal.digest(runs),
                                  seal.digest(arts))
        if not seal.equal(head.get("mac"), seal.head_mac(key, fields)):
            return (f"the head (seq {head['seq']}, {count} events, {len(runs)} runs, {len(arts)} "
                    "artifacts) does not match its MAC: events at the end, runs or artifacts were removed, "
                    "added or put back from an older copy")
        return None

    def _marks(self) -> list[dict[str, Any]]:
        cur = self.db.conn.execute(f"SELECT {', '.join(seal.MARK_COLUMNS)}, mac FROM marks")
        return [dict(zip((*seal.MARK_COLUMNS, "mac"), r, strict=True)) for r in cur]

    def _marks_fault(self, key: bytes, count: int, runs: list[dict[str, Any]]) -> str | None:
        """Every mark's MAC, one per group, of a run of the journal, and their counts summing to *count* (the
        events the head seals). A mark's count only grows: a mark removed, or put back from an older copy,
        sums to less, and no valid mark sums to more, so the marks are the current ones."""
        ids = {r["id"] for r in runs}
        seen: set[tuple[str, str, str, str]] = set()
        total = 0
        for m in self._marks():
            group = (m["run"], m["machine"], m["step"], m["kind"])
            if not seal.equal(m["mac"], seal.row_mac(key, "marks", m)) or group in seen or m["run"] not in ids:
                return (f"the mark of run {m['run']} {m['step'] or m['machine']} {m['kind']}: its MAC does not match "
                        "(the mark was edited, or copied from another journal, without the key)")
            seen.add(group)
            total += m["count"]
        if total != count:
            return (f"the marks count {total} events where the head seals {count}: a mark was removed or put back "
                    "from an older copy")
        return None

    def _marks_differ(self, groups: dict[tuple[str, str, str, str], tuple[int, int]]) -> str | None:
        """The first mark that does not say what the events walked say (only a holder of the key could have
        written it: a programming error or a forger with the key)."""
        marks = {(m["run"], m["machine"], m["step"], m["kind"]): (m["count"], m["last"]) for m in self._marks()}
        for group in sorted(set(marks) | set(groups)):
            if marks.get(group) != groups.get(group):
                return (f"the mark of run {group[0]} {group[2] or group[1]} {group[3]} says {marks.get(group)} "
                        f"(events, last seq) where the events hold {groups.get(group)}")
        return None

    def _mark(self, row: dict[str, Any]) -> None:
        """Inside a write transaction: count the event *row* in its mark and make it the last, sealed anew."""
        group = (row["run"], row["machine"], row["step"] or "", row["kind"])
        found = self.db.conn.execute("SELECT count FROM marks WHERE run=? AND machine=? AND step=? AND kind=?",
                                     group).fetchone()
        mark = dict(zip(seal.MARK_COLUMNS, (*group, (found[0] if found else 0) + 1, row["seq"]), strict=True))
        mark["mac"] = seal.row_mac(self._need_key(), "marks", mark)
        self.db.conn.execute("INSERT OR REPLACE INTO marks (run, machine, step, kind, count, last, mac) "
                             "VALUES (:run, :machine, :step, :kind, :count, :last, :mac)", mark)

    def _seal_run(self, run_id: str) -> None:
        """Inside a write transaction: the run row's MAC after a change to it."""
        row = self.db.conn.execute(f"SELECT {', '.join(seal.RUN_COLUMNS)} FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is not None:
            mac = seal.row_mac(self._need_key(), "runs", dict(zip(seal.RUN_COLUMNS, row, strict=True)))
            self.db.conn.execute("UPDATE runs SET mac=? WHERE id=?", (mac, run_id))

    def _seal_head(self, seq: int | None = None, last_hash: str | None = None) -> None:
        """Inside a write transaction: bind the key id (first write) and seal the head anew."""
        conn = self.db.conn
        key = self._need_key()
        conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('key_id', ?)", (self.key_id,))
        if seq is None:
            head = conn.execute("SELECT seq, hash FROM head WHERE id=1").fetchone()
            seq, last_hash = head if head else (0, GENESIS)
        runs = [{"id": i, "mac": m} for i, m in conn.execute("SELECT id, mac FROM runs")]
        arts = [{"id": i, "mac": m} for i, m in conn.execute("SELECT id, mac FROM artifacts")]
        # seq is the number of events: the chain is gapless from 1 (verify counts the rows themselves)
        fields = seal.head_fields(self.format, self.sealed_key_id or "", seq, last_hash or GENESIS, seq,
                                  seal.digest(runs), seal.digest(arts))
        conn.execute("INSERT OR REPLACE INTO head (id, seq, hash, mac) VALUES (1, ?, ?, ?)",
                     (seq, last_hash, seal.head_mac(key, fields)))

    # ------------------------------------------------------------------ helpers
    def _tx(self) -> _Immediate:
        """A write transaction that takes the write lock at once (BEGIN IMMEDIATE), one thread at a time;
        only with the key (every write is sealed in the same transaction)."""
        self._need_key()
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


class _Walk:
    """The events of a verification as they stream past the chain check: how many, the last one, and (with
    the MAC key) the first whose MAC does not match, so the chain and the MACs take one pass."""

    def __init__(self, rows: Iterator[dict[str, Any]], key: bytes | None = None, marked: bool = False) -> None:
        self.rows = rows
        self.key = key
        self.count = 0
        self.last: dict[str, Any] | None = None
        self.bad_mac: int | None = None
        self.done = False
        #: (run, machine, step, kind) -> (events, last seq), what the marks must say (format 3)
        self.groups: dict[tuple[str, str, str, str], tuple[int, int]] = {}
        self.marked = marked

    def __iter__(self) -> Iterator[dict[str, Any]]:
        key = self.key
        groups = self.groups if self.marked else None
        for row in self.rows:
            self.count += 1
            self.last = row
            if groups is not None:
                group = (row["run"], row["machine"], row["step"] or "", row["kind"])
                groups[group] = (groups[group][0] + 1 if group in groups else 1, row["seq"])
            if key is not None and self.bad_mac is None and not seal.equal(row.get("mac"),
                                                                          seal.event_mac(key, row["hash"])):
                self.bad_mac = row["seq"]
            yield row
        self.done = True
