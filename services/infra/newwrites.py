"""Did anyone write to the new controller's databases since the run imported them?

After the switchover the new controller serves tenants. Reverting then brings back the old controller
with the databases as they were before the run: whatever tenants wrote to the new one (a project, an
image, a server) would be lost without a word. So the run records, when it completes, a baseline of
every database it imported, and `upgrade revert` compares the new controller's databases with it.

The change marker per table is its row count with ``CHECKSUM TABLE``, not ``max(id)`` or
``max(updated_at)``: those miss updates and deletes (a renamed project, a deleted image keep both),
while the checksum reads every row, at the cost of one pass over the table on the new controller's
server — the same pass the run's own import check makes, and nothing next to the dump a revert with
``--discard-new-writes`` makes anyway.

An idle cloud writes by itself: services report their heartbeats, agents their state, keystone may
record revocations and failed logins. Those writes are not tenants' data and must not make an idle
cloud look changed, so per service the tables below leave out the columns an idle service writes
(heartbeat, report counter, timestamps of periodic refreshes), or the whole table when every row is
ephemeral. A new row in such a table still counts (a compute host registered with the new cloud is a
write the old one would lose); an updated heartbeat does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.infra import mysql
from services.infra.settings import DBEndpoint

#: the whole table is ephemeral: never compared (a value of a spec's ``idle_writes``)
EPHEMERAL: tuple[str, ...] = ()

#: per service: table -> the columns an idle service writes by itself (left out of the marker), or
#: EPHEMERAL; each service's spec declares its own (``ServiceSpec.idle_writes``, read by the registry)
Idle = Mapping[str, Mapping[str, tuple[str, ...]]]

Baseline = dict[str, dict[str, dict[str, list[Any]]]]  # service -> database -> table -> [rows, marker]


def subset_marker_sql(table: str, columns: list[str]) -> str:
    """``SELECT COUNT(*), marker`` over *columns* of *table* (quoted, qualified or not) only: a 64-bit XOR of
    every row's MD5, order independent (NULL and empty differ: values are hexed, NULL is a letter no hex has)."""
    row = "CONCAT_WS(0x1f, " + ", ".join(f"IFNULL(HEX({mysql.quote_ident(c)}), 'N')" for c in columns) + ")"
    return f"SELECT COUNT(*), COALESCE(BIT_XOR(CAST(CONV(LEFT(MD5({row}), 16), 16, 10) AS UNSIGNED)), 0) FROM {table}"


def _subset_marker(cur: Any, table: str, columns: list[str]) -> list[Any]:
    """[rows, marker] over *columns* only (:func:`subset_marker_sql`)."""
    cur.execute(subset_marker_sql(mysql.quote_ident(table), columns))
    count, marker = cur.fetchone()
    return [int(count), int(marker)]


def markers(ep: DBEndpoint, idle: Mapping[str, tuple[str, ...]], db: str) -> dict[str, list[Any]]:
    """Per table of *db*: [row count, change marker], the columns its service writes when idle left out."""
    sums = mysql.checksums(ep, db)  # counts and CHECKSUM TABLE, a few statements for all the tables
    out = {t: v for t, v in sums.items() if t not in idle}
    subsets = [t for t in sums if t in idle and idle[t] != EPHEMERAL]
    if not subsets:
        return out
    conn = mysql.connect(ep, db)
    try:
        with conn.cursor() as cur:
            for table in subsets:
                cols = [c for c in mysql.table_columns(ep, db, table) if c not in idle[table]]
                out[table] = _subset_marker(cur, table, cols)
    finally:
        conn.close()
    return dict(sorted(out.items()))


def baseline(ep: DBEndpoint, databases: Mapping[str, Iterable[str]], idle: Idle) -> Baseline:
    """The markers of every database the run imported, per service (recorded when the run completes)."""
    return {service: {db: markers(ep, idle.get(service, {}), db) for db in dbs} for service, dbs in databases.items()}


def changes(ep: DBEndpoint, base: Baseline, idle: Idle) -> dict[str, list[str]]:
    """Per service, what changed since *base*: one line per table (rows then -> now, or rows alike but
    content changed; a table added or dropped), empty when nothing did."""
    out: dict[str, list[str]] = {}
    for service, dbs in base.items():
        lines = []
        for db, then in dbs.items():
            now = markers(ep, idle.get(service, {}), db) if mysql.db_exists(ep, db) else {}
            if not now and then:
                lines.append(f"{db}: the database is gone")
                continue
            for table in sorted(set(then) | set(now)):
                a, b = then.get(table), now.get(table)
                if a == b:
                    continue
                if a is None:
                    lines.append(f"{db}.{table}: new table, {b[0]} rows")
                elif b is None:
                    lines.append(f"{db}.{table}: table dropped ({a[0]} rows before)")
                elif a[0] != b[0]:
                    lines.append(f"{db}.{table}: {a[0]} -> {b[0]} rows ({b[0] - a[0]:+d})")
                else:
                    lines.append(f"{db}.{table}: {b[0]} rows, content changed")
        if lines:
            out[service] = lines
    return out


def imported(results: Mapping[str, Any], services: Iterable[str]) -> dict[str, list[str]]:
    """The databases a run imported (or created) on the target, per service, from its committed results."""
    out: dict[str, list[str]] = {}
    for service in services:
        dbs = list((results.get(f"{service}.import_db") or {}).get("databases", {}))
        created = (results.get(f"{service}.create_databases") or {}).get("databases", {})
        dbs += [db for db, r in created.items() if r.get("created") and db not in dbs]
        if dbs:
            out[service] = dbs
    return out
