"""One run per cloud: a claim on the target that every run of those controllers sees (DESIGN.md §9.2).

The journal's lock keeps two processes of one journal apart; a second journal directory (another
operator, another box, another path) has its own. So a run claims the new controller itself, in two
places a second run must look at wherever its journal is:

- on the target DB server, schema ``openstack_upgrade``, table ``claim``: one row (``id = 1``), taken
  with a plain INSERT, so of two runs racing exactly one wins (the primary key);
- on the target host, the file ``<target.lib>/openstack-upgrade.claim`` (JSON), created exclusively:
  a target DB server that was re-initialised still shows the claim on the host.

The claim names the run, the journal (host and path), its state and since when. A completed run keeps
it (state ``completed``): a second run onto an upgraded controller would drop the databases the new
cloud now writes. A fully reverted run removes both markers and the schema: the target is as before.
The schema holds nothing of OpenStack's and no service enumerates it; the tool itself only ever names
the databases of its services.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pymysql

from services.infra import mysql
from services.infra.host import Host
from services.infra.settings import Side
from statemachine.step import StepError

SCHEMA = "openstack_upgrade"
TABLE = "claim"
FILE = "openstack-upgrade.claim"
STATES = ("starting", "running", "failed", "reverting", "revert_failed", "completed")

_CREATE = (f"CREATE DATABASE IF NOT EXISTS {SCHEMA} CHARACTER SET utf8mb4",
           f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{TABLE} (id TINYINT PRIMARY KEY, run_id VARCHAR(64) NOT NULL, "
           "journal_host VARCHAR(255) NOT NULL, journal_path TEXT NOT NULL, state VARCHAR(32) NOT NULL, "
           "started DOUBLE NOT NULL, updated DOUBLE NOT NULL, operator VARCHAR(255) NOT NULL, plan_path TEXT) "
           "ENGINE=InnoDB")
_COLUMNS = ("run_id", "journal_host", "journal_path", "state", "started", "updated", "operator", "plan_path")
# exclusive create (noclobber: O_EXCL), private; the path is an argument, never shell text
_CREATE_FILE = 'set -C; umask 077; cat > "$1"'


class ClaimHeld(StepError):
    """The target is claimed by another run (or by a finished one that keeps it)."""

    def __init__(self, claim: Claim, where: str) -> None:
        super().__init__(f"{where} is claimed by {claim.describe()}")
        self.claim = claim
        self.where = where


@dataclass(frozen=True)
class Claim:
    run_id: str
    journal_host: str
    journal_path: str
    state: str
    started: float
    updated: float
    operator: str
    plan_path: str = ""

    def same_journal(self, other: Claim) -> bool:
        return (self.journal_host, self.journal_path) == (other.journal_host, other.journal_path)

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.started))
        plan = f", plan {self.plan_path}" if self.plan_path else ""
        return (f"run {self.run_id} ({self.state}) of the journal {self.journal_path} on {self.journal_host}"
                f"{plan}, by {self.operator}, since {since}")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Claim:
        try:
            d = json.loads(data)
            return cls(**{k: d[k] for k in _COLUMNS})
        except (ValueError, KeyError, TypeError):
            raise StepError(f"{where} is not a claim this tool wrote — look at it; remove it only if no run of "
                            "this cloud is unfinished") from None


def file_path(side: Side) -> str:
    return f"{side.lib.rstrip('/')}/{FILE}"


def _where_db(side: Side) -> str:
    return f"the target DB server {side.db.address}:{side.db.port} (table {SCHEMA}.{TABLE})"


def _where_file(side: Side) -> str:
    return f"{file_path(side)} on {side.host.name}"


# ---------------------------------------------------------------------- reading
def read_db(side: Side) -> Claim | None:
    if not mysql.db_exists(side.db, SCHEMA):
        return None
    try:
        rows = mysql.query(side.db, f"SELECT {', '.join(_COLUMNS)} FROM {SCHEMA}.{TABLE} WHERE id=1")
    except pymysql.err.ProgrammingError:  # the schema without its table: a claim being taken or released
        return None
    if not rows:
        return None
    r = rows[0]
    return Claim(str(r[0]), str(r[1]), str(r[2]), str(r[3]), float(r[4]), float(r[5]), str(r[6]), str(r[7] or ""))


def read_file(host: Host, side: Side) -> Claim | None:
    path = file_path(side)
    if not host.exists(path):
        return None
    return Claim.from_json(host.read_bytes(path), _where_file(side))


def read(side: Side) -> tuple[Claim | None, Claim | None]:
    """(the DB server's claim, the host's claim): each None when absent."""
    return read_db(side), read_file(side.host, side)


# ---------------------------------------------------------------------- taking, updating, releasing
def take(side: Side, claim: Claim, ours: Callable[[Claim], bool]) -> None:
    """Claim the target for *claim*, atomically; ``ours(existing)`` says whether an existing claim may be
    taken over (the same journal's, left by a run killed while it started). Raises ClaimHeld, changing
    nothing, when another holds either marker."""
    created = not mysql.db_exists(side.db, SCHEMA)
    conn = mysql.connect(side.db)
    try:
        with conn.cursor() as cur:
            for stmt in _CREATE:
                cur.execute(stmt)
            try:
                cur.execute(f"INSERT INTO {SCHEMA}.{TABLE} (id, {', '.join(_COLUMNS)}) VALUES "
                            f"(1, {', '.join(['%s'] * len(_COLUMNS))})", tuple(asdict(claim).values()))
            except pymysql.err.IntegrityError:
                held = read_db(side)
                if held is None or not ours(held):
                    raise ClaimHeld(held or claim, _where_db(side)) from None
                _update_db(cur, claim)
    finally:
        conn.close()
    try:
        _take_file(side, claim, ours)
    except BaseException:
        _drop_db_claim(side, claim.run_id, drop_schema=created)
        raise


def _take_file(side: Side, claim: Claim, ours: Callable[[Claim], bool]) -> None:
    path = file_path(side)
    res = side.host.run(["sh", "-c", _CREATE_FILE, "osu-claim", path], stdin=claim.to_json(), timeout=120)
    if res.rc == 0:
        return
    held = read_file(side.host, side)
    if held is None:
        raise StepError(f"cannot write the claim {_where_file(side)}: {res.output}", host=side.host.name, rc=res.rc)
    if not ours(held):
        raise ClaimHeld(held, _where_file(side))
    side.host.write_bytes(path, claim.to_json(), mode=0o600)


def _update_db(cur: Any, claim: Claim) -> None:
    sets = ", ".join(f"{c}=%s" for c in _COLUMNS)
    cur.execute(f"UPDATE {SCHEMA}.{TABLE} SET {sets} WHERE id=1", tuple(asdict(claim).values()))


def update(side: Side, claim: Claim) -> None:
    """Record the run's new state (or its id, once the journal gave it one) in both markers."""
    conn = mysql.connect(side.db)
    try:
        with conn.cursor() as cur:
            _update_db(cur, claim)
    finally:
        conn.close()
    side.host.write_bytes(file_path(side), claim.to_json(), mode=0o600)


def _drop_db_claim(side: Side, run_id: str, drop_schema: bool) -> None:
    conn = mysql.connect(side.db)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DELETE FROM {SCHEMA}.{TABLE} WHERE id=1 AND run_id=%s", (run_id,))
            cur.execute(f"SELECT COUNT(*) FROM {SCHEMA}.{TABLE}")
            if drop_schema and cur.fetchone()[0] == 0:
                cur.execute(f"DROP DATABASE IF EXISTS {SCHEMA}")
    finally:
        conn.close()


def release(side: Side, run_id: str) -> None:
    """Remove the claim of *run_id* (a fully reverted run): the schema and the file go, the target is as
    before. A marker another run holds stays."""
    if mysql.db_exists(side.db, SCHEMA):
        _drop_db_claim(side, run_id, drop_schema=True)
    held = read_file(side.host, side)
    if held is not None and held.run_id == run_id:
        side.host.remove(file_path(side))


def clear(side: Side) -> None:
    """Remove both markers whatever run they name (``upgrade claim clear``: the operator's decision)."""
    mysql.execute_many(side.db, [f"DROP DATABASE IF EXISTS {SCHEMA}"])
    if side.host.exists(file_path(side)):
        side.host.remove(file_path(side))
