"""The events hash chain: each row's hash covers its canonical content and the previous hash,
so that editing, deleting or reordering any row breaks every hash after it."""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

GENESIS = "0" * 64

#: The event columns covered by the hash in journals of format 1 (before the seal) ...
HASHED_COLUMNS_V1 = (
    "seq", "run", "ts", "machine", "step", "kind", "from_state", "to_state",
    "host", "command", "rc", "output", "result", "prev_hash",
)
#: ... and of format 2, which adds the monotonic clock reading and the boot it belongs to
HASHED_COLUMNS = (*HASHED_COLUMNS_V1, "mono", "boot")


#: compact JSON, one encoder for every row (``json.dumps`` with options builds one per call)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@functools.lru_cache(maxsize=4)
def _sorted(columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(columns))


def canonical(row: dict[str, Any], columns: tuple[str, ...] = HASHED_COLUMNS) -> bytes:
    """Canonical bytes of an event row: the hashed columns as sorted, compact JSON (the dict is built in
    sorted key order, so the bytes are those of ``json.dumps(..., sort_keys=True)``: `journal verify`
    re-hashes every event with this)."""
    return _ENCODER.encode({c: row.get(c) for c in _sorted(columns)}).encode()


def row_hash(row: dict[str, Any], columns: tuple[str, ...] = HASHED_COLUMNS) -> str:
    """sha256 of the row's canonical content (which includes ``prev_hash``)."""
    return hashlib.sha256(canonical(row, columns)).hexdigest()


def first_break(rows: list[dict[str, Any]], columns: tuple[str, ...] = HASHED_COLUMNS) -> tuple[int, str] | None:
    """Walk rows in seq order; return (seq, reason) of the first row that breaks the chain, or None."""
    prev = GENESIS
    expected_seq = None
    for row in rows:
        seq = row["seq"]
        if expected_seq is not None and seq != expected_seq:
            return seq, f"sequence gap: expected seq {expected_seq}, found {seq} (a row was removed)"
        if row["prev_hash"] != prev:
            return seq, "prev_hash does not match the previous row (rows removed or reordered)"
        if row_hash(row, columns) != row["hash"]:
            return seq, "content does not match its hash (row edited)"
        prev = row["hash"]
        expected_seq = seq + 1
    return None
