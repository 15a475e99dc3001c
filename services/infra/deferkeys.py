"""Secondary indexes built after the data on import: a writer between a dump and ``mysql``'s stdin.

InnoDB ignores mariadb-dump's ``ALTER TABLE ... DISABLE KEYS`` (MyISAM only) and MariaDB 10.11's
client has no option to leave indexes out of ``CREATE TABLE`` (Percona's ``--innodb-optimize-keys``),
so every row of a table would update each of its secondary indexes as it arrives. This writer takes
the table's trailing plain ``KEY`` definitions out of its ``CREATE TABLE`` and adds them back, in
their order, with one ``ALTER TABLE ... ADD KEY ...`` after the table's rows (where the dump writes
``ENABLE KEYS``): InnoDB then builds each index once, sorted. ``SHOW CREATE TABLE`` on the target
is the same as on the source: only a trailing run of plain keys moves, so their order stays.

Kept where they are: primary, unique, fulltext and spatial keys (a table with fulltext or spatial
keys is left whole), and any key whose columns begin with a foreign key's (InnoDB needs it to create
the constraint). Only lines of ``CREATE TABLE`` blocks are examined; rows (``INSERT`` lines, however
long) and routine bodies (between ``DELIMITER`` lines) pass through untouched.

With ``marks`` it also says when each table is complete on the target: before the next table's
``CREATE TABLE`` (the previous one's rows, deferred keys and triggers all sent before it) and at the
end, it adds ``SELECT '<hex of the name>' AS osu_table_done;``, a statement that touches no table.
``mysql`` executes statements in order, so the line it prints for it (``table_done_name``) means every
statement of that table has been executed: its checks can start while the next table imports. The
marks go to ``mysql`` only, never into the artifact (the vault stores the dump as the source wrote it).
"""

from __future__ import annotations

import re
from typing import Any

_CREATE = re.compile(rb"CREATE TABLE `((?:[^`]|``)+)` \(\n")
_ENABLE = re.compile(rb"/\*!40000 ALTER TABLE `((?:[^`]|``)+)` ENABLE KEYS \*/;\n")
_COLUMNS = re.compile(rb"\(((?:`(?:[^`]|``)+`(?:\(\d+\))?(?: (?:ASC|DESC))?,?)+)\)")
_FOREIGN = re.compile(rb"  CONSTRAINT `(?:[^`]|``)+` FOREIGN KEY \(((?:`(?:[^`]|``)+`(?:, ?)?)+)\)")
#: a line longer than this at its start is no ``CREATE TABLE`` nor ``ENABLE KEYS`` line: it streams on
_PROBE = 256
#: the column name of the marks' output (``mysql`` prints it above each mark's value in batch mode)
MARK_COLUMN = b"osu_table_done"


def table_mark(table: bytes) -> bytes:
    """The statement that marks *table* (its name as dumped, backquotes doubled) complete: hex, so no name
    can break out of the literal."""
    return b"SELECT '" + table.replace(b"``", b"`").hex().encode() + b"' AS " + MARK_COLUMN + b";\n"


def table_done_name(line: bytes) -> str | None:
    """The table a line of ``mysql``'s output marks complete, or None (the column header, anything else)."""
    text = line.strip()
    if not text or text == MARK_COLUMN:
        return None
    try:
        return bytes.fromhex(text.decode("ascii")).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _columns(spec: bytes) -> list[bytes]:
    """The column names of a key's or foreign key's column list (prefix lengths and order dropped)."""
    return re.findall(rb"`((?:[^`]|``)+)`", spec)


def split_keys(lines: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """A ``CREATE TABLE`` block (its lines, the first ``CREATE TABLE `t` (``, the last ``) ENGINE=...``)
    cut into the block without its deferrable keys and those keys' definitions (``KEY `k` (...)``)."""
    body = lines[1:-1]
    if any(line.startswith((b"  FULLTEXT ", b"  SPATIAL ")) for line in body):
        return lines, []
    foreign = [_columns(m.group(1)) for line in body if (m := _FOREIGN.match(line))]
    keys = [i for i, line in enumerate(body) if line.startswith((b"  PRIMARY KEY ", b"  UNIQUE KEY ", b"  KEY "))]
    deferred: list[int] = []
    for i in reversed(keys):
        line = body[i]
        cols = _columns(m.group(1)) if (m := _COLUMNS.search(line)) else None
        if not line.startswith(b"  KEY ") or cols is None or any(cols[:len(fk)] == fk for fk in foreign):
            break
        deferred.insert(0, i)
    if not deferred or deferred[-1] != keys[-1]:
        return lines, []
    # the deferred keys are contiguous (a suffix of the key lines); what follows them (constraints) stays
    kept = body[:deferred[0]] + body[deferred[-1] + 1:]
    if not kept:
        return lines, []
    last = kept[-1]
    if deferred[-1] == len(body) - 1:  # the keys ended the definitions: the new last one loses its comma
        kept[-1] = last[:-2] + b"\n" if last.endswith(b",\n") else last
    defs = [body[i].strip().rstrip(b",") for i in deferred]
    return [lines[0], *kept, lines[-1]], defs


class DeferKeys:
    """A writer (``write``/``close``) passing a dump to *dst* with secondary keys built after each table's
    rows (module docstring). Memory: one ``CREATE TABLE`` block and a line's first bytes at most."""

    def __init__(self, dst: Any, defer: bool = True, marks: bool = False) -> None:
        self.dst = dst
        self.defer = defer       # False: keys stay in CREATE TABLE (only the marks, if any)
        self.marks = marks
        self.table: bytes | None = None  # the table whose rows go through now (its mark comes next)
        self.head = b""          # the start of a line not classified yet
        self.streaming = False   # inside a long line that streams on to its newline
        self.block: list[bytes] | None = None  # the lines of a CREATE TABLE being read
        self.routine = False     # between DELIMITER ;; and DELIMITER ;
        self.pending: dict[bytes, list[bytes]] = {}  # table -> keys to add after its rows
        self.deferred = 0        # keys moved after the data (what the import reports)

    def write(self, data: bytes | memoryview) -> int:
        if not isinstance(data, bytes):  # the vault hands on memoryviews of its buffers
            data = bytes(data)
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            nl = data.find(b"\n", pos)
            if self.streaming:
                stop = end if nl < 0 else nl + 1
                out.append(data[pos:stop])
                self.streaming = nl < 0
                pos = stop
                continue
            if nl < 0:
                self.head += data[pos:]
                if self.block is None and len(self.head) > _PROBE:
                    out.append(self.head)
                    self.head, self.streaming = b"", True
                break
            line = self.head + data[pos:nl + 1]
            self.head, pos = b"", nl + 1
            out.append(self._line(line))
        if out:
            self.dst.write(b"".join(out))
        return len(data)

    def _line(self, line: bytes) -> bytes:
        if self.block is not None:
            self.block.append(line)
            if not line.startswith(b")"):
                return b""
            block, self.block = self.block, None
            lines, keys = split_keys(block) if self.defer else (block, [])
            if keys:
                self.pending[_CREATE.match(block[0]).group(1)] = keys  # type: ignore[union-attr]
                self.deferred += len(keys)
            return b"".join(lines)
        if line.startswith(b"DELIMITER "):
            self.routine = line.strip() != b"DELIMITER ;"
            return line
        if self.routine:
            return line
        if m := _CREATE.fullmatch(line):
            self.block = [line]
            out = self._flush() + self._mark()
            self.table = m.group(1)
            return out
        if m := _ENABLE.fullmatch(line):
            return line + self._alter(m.group(1))
        return line

    def _alter(self, table: bytes) -> bytes:
        keys = self.pending.pop(table, None)
        if not keys:
            return b""
        return b"ALTER TABLE `" + table + b"` " + b", ".join(b"ADD " + k for k in keys) + b";\n"

    def _flush(self) -> bytes:
        """Keys of tables whose rows ended without an ``ENABLE KEYS`` line (none are expected)."""
        return b"".join(self._alter(t) for t in list(self.pending))

    def _mark(self) -> bytes:
        """The mark of the table whose rows have all been sent (none before the first table)."""
        table, self.table = self.table, None
        return table_mark(table) if self.marks and table is not None else b""

    def close(self) -> None:
        tail = (b"".join(self.block) if self.block else b"") + self.head + self._flush()
        mark = self._mark()
        if mark and tail and not tail.endswith(b"\n"):
            tail += b"\n"  # a mark starts on its own line
        tail += mark
        if tail:
            self.dst.write(tail)
        self.dst.close()
