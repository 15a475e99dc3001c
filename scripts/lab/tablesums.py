"""Per-table fingerprints of a database that say "not one row changed": the lab's and the tests' one reader.

Each table gives (rows, CHECKSUM TABLE). A serving service stamps a few columns on a client's mere request,
which no one would call a write to the cloud: keystone sets ``user.last_active_at`` to the day's UTC date at
every password login (``shadow_users_api.set_last_active_at``; the column is a ``Date``). On one day the stamp
rewrites the same value, so it goes unseen; a login after midnight changes the table's checksum although
nothing wrote to the cloud, and a comparison that spans 00:00 UTC (a test's revert, a long run) would fail
for it. Such a table (:data:`CLIENT_STAMPS`) is fingerprinted by its rows without that column (the new-writes
check's marker); every other column and table is still compared whole.

Narrower than a service's ``idle_writes`` (``services/infra/newwrites.py``), which also leave out failed-login
counters and whole ephemeral tables to tell an idle cloud from a written one: here only the date stamp a
successful login sets is left out, so a test still sees every other change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.infra.mysql import quote_ident as quote
from services.infra.newwrites import subset_marker_sql

#: (database, table) -> the column the serving service stamps on a client's request
CLIENT_STAMPS: dict[tuple[str, str], str] = {("keystone", "user"): "last_active_at"}

#: runs one statement, returns its rows
Query = Callable[[str], list[tuple]]


def literal(text: str) -> str:
    """A string literal for names read from the server (quotes and backslashes doubled)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def table_sums(query: Query, db: str) -> dict[str, tuple[int, Any]]:
    """table -> (row count, fingerprint), sorted by table, of every base table of *db* that *query* reaches.

    The fingerprint is CHECKSUM TABLE (it depends on the row format too: compare servers of one version), or
    for a table of :data:`CLIENT_STAMPS` ``"rows-without-<column>:<marker>"``, the marker the product's new-writes
    check takes of a table without some columns (``services/infra/newwrites.subset_marker_sql``)."""
    tables = [r[0] for r in query("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                  f"{literal(db)} AND table_type = 'BASE TABLE' ORDER BY table_name")]
    out: dict[str, tuple[int, Any]] = {}
    for table in tables:
        qualified = f"{quote(db)}.{quote(table)}"
        [(count,)] = query(f"SELECT COUNT(*) FROM {qualified}")
        stamp = CLIENT_STAMPS.get((db, table))
        if stamp is None:
            checksum = query(f"CHECKSUM TABLE {qualified}")[0][1]
            out[table] = (int(count), None if checksum is None else int(checksum))
            continue
        columns = [r[0] for r in query("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                       f"{literal(db)} AND table_name = {literal(table)} AND column_name <> "
                                       f"{literal(stamp)} ORDER BY ordinal_position")]
        [(_rows, marker)] = query(subset_marker_sql(qualified, columns))  # the new-writes check's own marker
        out[table] = (int(count), f"rows-without-{stamp}:{int(marker)}")
    return out
