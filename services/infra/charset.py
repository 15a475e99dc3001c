"""What the text columns of a database hold, and how to carry them into a utf8 charset without
changing a single character.

Havana-era services connected with a latin1 connection charset while sending UTF-8 bytes, so
many latin1 columns hold UTF-8 byte sequences. ``ALTER TABLE … CONVERT TO`` reads those bytes as
latin1 characters and double-encodes them (é → Ã©); only latin1 *text* survives it. So every
non-utf8 text column is classified by what its non-ASCII values are:

- ``utf8``: every one is a valid UTF-8 byte sequence (UTF-8 held in a latin1 column): converted
  through a binary type (VARBINARY/BLOB) and back to its text type, so the bytes are kept and only
  their label changes;
- ``native``: none is (true latin1 text): converted with ``CONVERT TO``;
- ``ascii``: no non-ASCII value: either way is exact (``CONVERT TO``);
- ``mixed``: some are and some are not: refused, with the rows' keys, before anything stops.

Text that an earlier bad conversion already double-encoded (a utf8 column holding ``CafÃ©``) is
found the same way: its characters are all latin1 and, as latin1 bytes, valid UTF-8. It is
repaired only where the plan asks (``repair_double_encoded``).

Nothing here stops or changes the source: every query on it is a SELECT.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pymysql

from services.infra import mysql
from services.infra.settings import DBEndpoint
from statemachine.step import StepError

#: the text types classified, and the binary type of the same capacity each goes through
BINARY_OF = {"char": "varbinary", "varchar": "varbinary", "tinytext": "tinyblob", "text": "blob",
             "mediumtext": "mediumblob", "longtext": "longblob"}
#: how many row keys a message or a journal entry names before it says "and N more"
SHOWN = 20


def is_utf8(charset: str | None) -> bool:
    return bool(charset) and str(charset).lower().startswith("utf8")


def _latin1_table() -> dict[str, int]:
    """MySQL's latin1 is Windows-1252 whose five unassigned bytes map to the C1 controls of the same
    number (0x81 ↔ U+0081): every byte is a character, so the mapping goes both ways."""
    out = {}
    for b in range(256):
        try:
            ch = bytes([b]).decode("cp1252")
        except UnicodeDecodeError:
            ch = chr(b)
        out[ch] = b
    return out


_LATIN1 = _latin1_table()


def latin1_bytes(text: str) -> bytes | None:
    """*text* as MySQL's latin1 encodes it, or None when a character has no latin1 byte."""
    try:
        return bytes(_LATIN1[c] for c in text)
    except KeyError:
        return None


def undouble(text: str) -> str | None:
    """The text a double encoding made *text* from (``CafÃ©`` → ``Café``), or None when *text* is
    not double-encoded: what ``CONVERT(CAST(CONVERT(c USING latin1) AS BINARY) USING utf8mb4)`` gives."""
    raw = latin1_bytes(text)
    if raw is None or raw.isascii():
        return None
    try:
        fixed = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return fixed if fixed != text else None


def has_4byte(text: str) -> bool:
    """Whether *text* holds a character outside the BMP (4 bytes in UTF-8: utf8mb3 cannot hold it)."""
    return any(ord(c) > 0xFFFF for c in text)


# ---------------------------------------------------------------------- what a column holds
@dataclass
class ColumnScan:
    """One text column: its kind, and how many values of each sort it holds (NULLs not counted)."""

    table: str
    column: str
    charset: str
    kind: str = "ascii"          # ascii | utf8 | native | mixed
    ascii: int = 0
    utf8: int = 0
    native: int = 0
    #: rows holding a character utf8mb3 cannot store (a 4-byte UTF-8 sequence), and the first keys
    wide: int = 0
    four_byte: list[str] = field(default_factory=list)
    #: for a mixed column, the first keys of its native rows: those the operator turns into UTF-8 bytes
    native_rows: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"

    def counts(self) -> str:
        parts = [f"{self.utf8} UTF-8" if self.utf8 else "", f"{self.native} {self.charset}" if self.native else "",
                 f"{self.ascii} ASCII-only" if self.ascii else ""]
        return ", ".join(p for p in parts if p) or "no values"


@dataclass
class DoubleScan:
    """A utf8 text column some of whose values an earlier conversion double-encoded."""

    table: str
    column: str
    rows: int
    keys: list[str]
    sample: tuple[str, str]      # (as stored, as repaired)

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


def _q(name: str) -> str:
    return mysql.quote_ident(name)


def _columns(cur: Any, db: str, utf8: bool) -> dict[str, list[tuple[str, str, str]]]:
    """Per base table, its text columns (name, charset, collation): the utf8 ones or the others."""
    cur.execute("SELECT c.table_name, c.column_name, c.character_set_name, c.collation_name FROM "
                "information_schema.columns c JOIN information_schema.tables t ON t.table_schema = c.table_schema "
                "AND t.table_name = c.table_name WHERE c.table_schema = %s AND t.table_type = 'BASE TABLE' "
                "AND c.data_type IN ('char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext') "
                "ORDER BY c.table_name, c.ordinal_position", (db,))
    out: dict[str, list[tuple[str, str, str]]] = {}
    for table, column, cs, coll in cur.fetchall():
        if is_utf8(cs) == utf8:
            out.setdefault(table, []).append((column, cs, coll))
    return out


def key_columns(cur: Any, db: str, table: str) -> list[str]:
    """The primary key of *table* (or its first unique key): what names a row in a message."""
    cur.execute("SELECT index_name, column_name FROM information_schema.statistics WHERE table_schema = %s AND "
                "table_name = %s AND non_unique = 0 ORDER BY index_name <> 'PRIMARY', index_name, seq_in_index",
                (db, table))
    rows = cur.fetchall()
    if not rows:
        return []
    first = rows[0][0]
    return [c for i, c in rows if i == first]


def key_text(cols: list[str], values: tuple) -> str:
    if not cols:
        return "(no key)"
    shown = [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in values]
    return ",".join(f"{c}={v}" for c, v in zip(cols, shown, strict=True)) if len(cols) > 1 else shown[0]


def scan_column(cur: Any, table: str, column: str, charset: str, keys: list[str]) -> ColumnScan:
    """Classify one non-utf8 column. ASCII values are counted on the server; only the non-ASCII
    ones travel, as their raw bytes, and are tested as UTF-8 here."""
    c = _q(column)
    nonascii = f"LENGTH(CONVERT({c} USING utf8mb4)) <> CHAR_LENGTH({c})"
    cur.execute(f"SELECT COUNT({c}), COALESCE(SUM({nonascii}), 0) FROM {_q(table)}")
    total, non = (int(v or 0) for v in cur.fetchone())
    scan = ColumnScan(table, column, charset, ascii=total - non)
    if non:
        key_sql = ", ".join(_q(k) for k in keys) or "NULL"
        cur.execute(f"SELECT CAST({c} AS BINARY), {key_sql} FROM {_q(table)} WHERE {nonascii}")
        for raw, *key in cur.fetchall():
            name = key_text(keys, tuple(key))
            try:
                text = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                scan.native += 1
                if len(scan.native_rows) < SHOWN:
                    scan.native_rows.append(name)
                continue
            scan.utf8 += 1
            if has_4byte(text):
                scan.wide += 1
                if len(scan.four_byte) < SHOWN:
                    scan.four_byte.append(name)
    scan.kind = ("mixed" if scan.utf8 and scan.native else "utf8" if scan.utf8 else
                 "native" if scan.native else "ascii")
    if scan.kind != "mixed":
        scan.native_rows = []
    return scan


def scan_db(ep: DBEndpoint, db: str) -> list[ColumnScan]:
    """Every non-utf8 text column of *db*, classified (read-only, one connection)."""
    conn = mysql.connect(ep, db)
    try:
        with conn.cursor() as cur:
            out = []
            for table, cols in _columns(cur, db, utf8=False).items():
                keys = key_columns(cur, db, table)
                out += [scan_column(cur, table, col, cs, keys) for col, cs, _coll in cols]
            return out
    finally:
        conn.close()


def non_utf8_tables(ep: DBEndpoint, db: str) -> dict[str, str]:
    """Table → collation for every base table of *db* whose collation is not a utf8 one."""
    rows = mysql.query(ep, "SELECT table_name, table_collation FROM information_schema.tables WHERE "
                           "table_schema=%s AND table_type='BASE TABLE' ORDER BY table_name", (db,))
    return {t: c or "" for t, c in rows if not is_utf8(c)}


def refusals(db: str, scans: Iterable[ColumnScan], target_charset: str) -> list[str]:
    """Why the columns of *db* cannot be converted to *target_charset* as they are: a mixed column,
    or a 4-byte character where the target holds only utf8mb3. Each names its rows and the fix."""
    out = []
    for s in scans:
        where = f"{db}.{s.name}"
        if s.kind == "mixed":
            shown = ", ".join(s.native_rows) + (f" and {s.native - SHOWN} more" if s.native > SHOWN else "")
            out.append(f"{where} is mixed: {s.utf8} value(s) are UTF-8 bytes, {s.native} are {s.charset} text (key "
                       f"{shown}); either conversion would corrupt one of the two — fix the {s.charset} rows by hand "
                       f"on the source so the column holds UTF-8 bytes only (UPDATE {s.table} SET {s.column} = "
                       f"CONVERT(CAST(CONVERT({s.column} USING utf8mb4) AS BINARY) USING {s.charset}) WHERE <key> IN "
                       "(...)), then run `upgrade check` again")
        elif s.wide and target_charset != "utf8mb4":
            shown = ", ".join(s.four_byte) + (f" and {s.wide - len(s.four_byte)} more" if s.wide > SHOWN else "")
            out.append(f"{where} holds characters outside the BMP (4-byte UTF-8, e.g. emoji) in row(s) {shown}; the "
                       f"target release takes {target_charset} (3 bytes at most), which would store them as '?' — "
                       "replace those characters on the source, then run `upgrade check` again")
    return out


def summary(scans: Iterable[ColumnScan]) -> str:
    """One line per kind: which columns hold what, with their counts."""
    groups: dict[str, list[str]] = {}
    for s in scans:
        groups.setdefault(s.kind, []).append(f"{s.name} ({s.counts()})")
    label = {"utf8": "UTF-8 held in a non-utf8 column (kept byte for byte)", "native": "non-utf8 text (CONVERT TO)",
             "ascii": "ASCII only", "mixed": "MIXED"}
    return "; ".join(f"{label[k]}: {', '.join(v)}" for k, v in groups.items() if v)


# ---------------------------------------------------------------------- already double-encoded text
def meaning_sql(column: str, kind: str) -> str:
    """The expression that reads *column* as the text it means, over a utf8mb4 connection."""
    c = _q(column)
    return f"CONVERT(CAST({c} AS BINARY) USING utf8mb4)" if kind == "utf8" else c


def _double_rows(cur: Any, db: str, kinds: dict[str, str] | None,
                 only: Callable[[str, str], bool] | None) -> Iterator[tuple[str, str, list[str], list[tuple]]]:
    """Per text column read as text (utf8 columns, and the non-utf8 ones *kinds* says hold UTF-8
    bytes, read as what they mean): (table, column, key columns, [(text, key values, repaired)])."""
    kinds = kinds or {}
    cols = _columns(cur, db, utf8=True)
    for table, extra in _columns(cur, db, utf8=False).items():
        cols.setdefault(table, []).extend(x for x in extra if kinds.get(f"{table}.{x[0]}") == "utf8")
    for table, tcols in cols.items():
        keys = key_columns(cur, db, table)
        for col, _cs, _coll in tcols:
            if only and not only(table, col):
                continue
            expr = meaning_sql(col, kinds.get(f"{table}.{col}", ""))
            cur.execute(f"SELECT {expr}, {', '.join(map(_q, keys)) or 'NULL'} FROM {_q(table)} "
                        f"WHERE LENGTH({expr}) <> CHAR_LENGTH({expr})")
            hits = [(text, tuple(k), fixed) for text, *k in cur.fetchall()
                    if isinstance(text, str) and (fixed := undouble(text)) is not None]
            if hits:
                yield table, col, keys, hits


def scan_double(ep: DBEndpoint, db: str, kinds: dict[str, str] | None = None,
                only: Callable[[str, str], bool] | None = None) -> list[DoubleScan]:
    """Text columns of *db* whose values an earlier conversion double-encoded. *kinds* gives, for
    non-utf8 columns (``table.column``), what they hold; *only(table, column)* narrows the scan."""
    conn = mysql.connect(ep, db)
    try:
        with conn.cursor() as cur:
            return [DoubleScan(t, c, len(hits), [key_text(keys, h[1]) for h in hits[:SHOWN]],
                               (hits[0][0], hits[0][2]))
                    for t, c, keys, hits in _double_rows(cur, db, kinds, only)]
    finally:
        conn.close()


# ---------------------------------------------------------------------- the conversion (target side)
def collation_for(source_collation: str | None, charset: str) -> str:
    """The target collation for a column or table: binary stays binary, the rest general_ci."""
    return f"{charset}_bin" if (source_collation or "").endswith("_bin") else f"{charset}_general_ci"


def _column_def(cur: Any, db: str, table: str, column: str, flavor: str, type_sql: str, charset: str = "",
                collation: str = "") -> str:
    """``MODIFY col <type_sql> …`` keeping NULLability, default and comment of the column as it is now."""
    cur.execute("SELECT is_nullable, column_default, column_comment FROM information_schema.columns WHERE "
                "table_schema=%s AND table_name=%s AND column_name=%s", (db, table, column))
    nullable, default, comment = cur.fetchone()
    parts = [f"MODIFY {_q(column)} {type_sql}"]
    if charset:
        parts.append(f"CHARACTER SET {charset} COLLATE {collation}")
    parts.append("NULL" if nullable == "YES" else "NOT NULL")
    if default is not None:
        # MariaDB (10.2.7 on) shows a default as an SQL expression ('text', NULL); MySQL as the bare value
        parts.append(f"DEFAULT {default if flavor == 'mariadb' else pymysql.converters.escape_str(default)}")
    if comment:
        parts.append(f"COMMENT {pymysql.converters.escape_str(comment)}")
    return " ".join(parts)


def _binary_type(column_type: str) -> str:
    """``varchar(255)`` → ``varbinary(255)``, ``text`` → ``blob``: the same capacity in bytes."""
    base, _, rest = column_type.partition("(")
    return BINARY_OF[base.lower()] + (f"({rest}" if rest else "")


def conversion_plan(cur: Any, db: str, tables: list[str], kinds: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per table to convert: its collation and its text columns with type, collation and kind."""
    out: dict[str, dict[str, Any]] = {}
    for t in tables:
        cur.execute("SELECT table_collation FROM information_schema.tables WHERE table_schema=%s AND table_name=%s",
                    (db, t))
        (coll,) = cur.fetchone()
        cur.execute("SELECT column_name, column_type, character_set_name, collation_name FROM information_schema."
                    "columns WHERE table_schema=%s AND table_name=%s AND data_type IN ('char', 'varchar', "
                    "'tinytext', 'text', 'mediumtext', 'longtext') ORDER BY ordinal_position", (db, t))
        cols = [{"column": c, "type": ty, "charset": cs, "collation": cl, "kind": kinds.get(f"{t}.{c}", "ascii")}
                for c, ty, cs, cl in cur.fetchall() if not is_utf8(cs)]
        out[t] = {"collation": coll, "columns": cols}
    return out


def convert(ep: DBEndpoint, db: str, tables: list[str], kinds: dict[str, str], charset: str,
            fks: list[dict[str, Any]], after_table: Callable[[str], None] = lambda _t: None) -> dict[str, Any]:
    """Convert *tables* of *db* on *ep* (the target) to *charset*, each column by what it holds.

    One session with foreign key checks off (``SET SESSION``: other clients keep theirs). MariaDB
    refuses to change the charset of a column a foreign key uses even then (error 1832), so the
    foreign keys touching a converted table are dropped first and re-created unchanged after. Per
    table: its ``utf8`` columns become binary (bytes kept), ``CONVERT TO`` converts the rest, then
    the binary columns get their text type back in *charset*; ``_bin`` collations stay binary.
    *after_table* runs after each table (a fail point for the crash tests).
    """
    conn = mysql.connect(ep, db)
    q = _q
    done: dict[str, Any] = {}
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            flavor = "mariadb" if "mariadb" in str(cur.fetchone()[0]).lower() else "mysql"
            plan = conversion_plan(cur, db, tables, kinds)
            cur.execute("SET SESSION foreign_key_checks = 0")
            touched = [fk for fk in fks if fk["table"] in tables or fk["parent"] in tables]
            for fk in touched:
                cur.execute(f"ALTER TABLE {q(fk['table'])} DROP FOREIGN KEY {q(fk['name'])}")
            for t in tables:
                cols = plan[t]["columns"]
                kept = [c for c in cols if c["kind"] == "utf8"]
                if kept:
                    cur.execute(f"ALTER TABLE {q(t)} " + ", ".join(
                        _column_def(cur, db, t, c["column"], flavor, _binary_type(c["type"])) for c in kept))
                cur.execute(f"ALTER TABLE {q(t)} CONVERT TO CHARACTER SET {charset} COLLATE "
                            f"{collation_for(plan[t]['collation'], charset)}")
                back = []
                for c in cols:
                    want = collation_for(c["collation"], charset)
                    if c["kind"] == "utf8":
                        back.append(_column_def(cur, db, t, c["column"], flavor, c["type"], charset, want))
                    elif want != collation_for(plan[t]["collation"], charset):
                        cur.execute("SELECT column_type FROM information_schema.columns WHERE table_schema=%s AND "
                                    "table_name=%s AND column_name=%s", (db, t, c["column"]))
                        back.append(_column_def(cur, db, t, c["column"], flavor, cur.fetchone()[0], charset, want))
                if back:
                    cur.execute(f"ALTER TABLE {q(t)} " + ", ".join(back))
                done[t] = {c["column"]: c["kind"] for c in cols}
                after_table(t)
            for fk in touched:
                cur.execute(f"ALTER TABLE {q(fk['table'])} ADD CONSTRAINT {q(fk['name'])} FOREIGN KEY "
                            f"({', '.join(map(q, fk['columns']))}) REFERENCES {q(fk['parent'])} "
                            f"({', '.join(map(q, fk['parent_columns']))}) ON DELETE {fk['on_delete']} "
                            f"ON UPDATE {fk['on_update']}")
            cur.execute("SET SESSION foreign_key_checks = 1")
    except pymysql.err.MySQLError as exc:
        raise StepError(f"converting {db} to {charset} on {ep.address}:{ep.port} failed: {exc.args[-1]}",
                        host=f"{ep.address}:{ep.port}") from None
    finally:
        conn.close()
    return done


def conversion_shown(db: str, charset: str) -> list[str]:
    """What :func:`convert` does, for `upgrade plan`."""
    return [f"  then, for every non-utf8 table T of {db}: SET SESSION foreign_key_checks = 0; "
            "ALTER TABLE .. DROP FOREIGN KEY (those touching T); ALTER TABLE T MODIFY C VARBINARY/BLOB (each column "
            f"holding UTF-8 bytes); ALTER TABLE T CONVERT TO CHARACTER SET {charset}; ALTER TABLE T MODIFY C <its "
            f"type> CHARACTER SET {charset} (the same columns, NULL/DEFAULT kept); ALTER TABLE .. ADD CONSTRAINT "
            "(the same foreign keys); SET SESSION foreign_key_checks = 1"]


# ---------------------------------------------------------------------- verification by meaning
def _rows(ep: DBEndpoint, db: str, table: str, exprs: list[str]) -> list[str]:
    conn = mysql.connect(ep, db)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(exprs)} FROM {_q(table)}")
            return sorted(repr(r) for r in cur.fetchall())
    finally:
        conn.close()


def meaning_digest(ep: DBEndpoint, db: str, table: str, columns: list[str], kinds: dict[str, str]) -> list[Any]:
    """[row count, sha256 of every row as the text it means]: the source's UTF-8-in-latin1 columns
    decoded as UTF-8, its latin1 text converted by the server, the target read as it is — both over
    a utf8mb4 connection. Equal iff every character of every row survived."""
    rows = _rows(ep, db, table, [meaning_sql(c, kinds.get(c, "")) for c in columns])
    return [len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()]


# ---------------------------------------------------------------------- repair of double-encoded text
def parse_targets(entries: Iterable[str], dbs: list[str]) -> list[tuple[str, str, str | None]]:
    """``db.table`` / ``db.table.column`` entries of the plan's ``repair_double_encoded`` → (db, table,
    column or None). Raises ValueError naming an entry outside the service's databases."""
    out = []
    for e in entries:
        parts = str(e).split(".")
        if len(parts) not in (2, 3) or parts[0] not in dbs or not all(parts):
            raise ValueError(f"repair_double_encoded entry {e!r} is not DATABASE.TABLE or DATABASE.TABLE.COLUMN of "
                             f"{', '.join(dbs)}")
        out.append((parts[0], parts[1], parts[2] if len(parts) == 3 else None))
    return out


def repair_rows(src: DBEndpoint, db: str, targets: list[tuple[str, str | None]],
                kinds: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Per column asked for that holds double-encoded text: its rows in the *source* (key, stored
    and repaired text). The source is only read, so run and undo find the same rows every time."""
    wanted = lambda t, c: any(t == tt and (cc is None or cc == c) for tt, cc in targets)  # noqa: E731
    conn = mysql.connect(src, db)
    out = []
    try:
        with conn.cursor() as cur:
            for table, col, keys, hits in _double_rows(cur, db, kinds, wanted):
                if not keys:
                    raise StepError(f"{db}.{table} has no primary or unique key: its double-encoded rows cannot "
                                    "be repaired row by row — repair them by hand, or leave the table out of "
                                    "repair_double_encoded")
                out.append({"table": table, "column": col, "keys": keys,
                            "rows": [{"key": list(k), "stored": text, "repaired": fixed} for text, k, fixed in hits]})
    finally:
        conn.close()
    return out


def apply_repair(ep: DBEndpoint, db: str, plan: list[dict[str, Any]], which: str) -> None:
    """Set every planned row of the target to its ``repaired`` (run) or ``stored`` (undo) text, in one
    transaction: a kill leaves all or nothing, and doing it again has the effect of doing it once."""
    conn = mysql.connect(ep, db)
    try:
        conn.autocommit(False)
        with conn.cursor() as cur:
            for col in plan:
                where = " AND ".join(f"{_q(k)} = %s" for k in col["keys"])
                for r in col["rows"]:
                    cur.execute(f"UPDATE {_q(col['table'])} SET {_q(col['column'])} = %s WHERE {where}",
                                (r[which], *r["key"]))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def column_charsets(ep: DBEndpoint, db: str) -> dict[str, str]:
    """``table.column`` → charset of every text column of *db*."""
    rows = mysql.query(ep, "SELECT table_name, column_name, character_set_name FROM information_schema.columns WHERE "
                           "table_schema=%s AND character_set_name IS NOT NULL", (db,))
    return {f"{t}.{c}": cs for t, c, cs in rows}
