"""The journal's seal: MACs, keyed from the vault key, over every row and over the journal's head.

The hash chain (``journal.chain``) shows accidental damage to anyone, but it has no secret: a writer
can recompute it. The seal adds what only a holder of the vault key can make:

- every event carries ``mac = HMAC-SHA256(K, "event:" + hash)``; its ``hash`` covers the event's
  content and the previous hash, so the MACs chain too;
- every ``runs`` and ``artifacts`` row carries ``mac = HMAC-SHA256(K, "<table>:" + canonical row)``;
- the ``head`` row carries a MAC over the format, the key id, the last event's seq and hash, the
  number of events and a digest of every run's and artifact's MAC — so removing the last events,
  removing or adding a run or artifact, or putting back an older (validly sealed) row all show;
- (format 3) every ``marks`` row — per run, machine, step and kind of event, how many events it has and
  the seq of the last — carries ``mac = HMAC-SHA256(K, "marks:" + canonical row)``. A mark's count only
  grows, so a mark put back from an older copy, or one removed, makes the marks' counts sum to less than
  the events the head seals: with that sum checked, the marks are the journal's current index, and
  `resume` reads the last event of each step through them (each read row's MAC checked) without walking
  the chain (``Journal.authenticate``).

``K`` is derived from the vault key with HKDF-SHA256 and its own purpose string, so the MAC key is
never the key that encrypts the dumps, and a MAC reveals nothing of either.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: the journal format this version writes: 3 = sealed with sealed marks; 2 = sealed (keyed MACs), no marks
#: (continued as it is: its seal is checked by walking the whole chain); 1 = hash chain only (no key)
FORMAT = 3
#: the first sealed format: an earlier journal is never written to
SEALED = 2
#: HKDF's purpose string: a key derived for the journal is useless for anything else
PURPOSE = b"openstack-upgrade journal mac v1"

RUN_COLUMNS = ("id", "created", "updated", "operator", "plan_path", "plan", "plan_sha256", "from_release",
               "to_release", "key_id", "status")
ARTIFACT_COLUMNS = ("id", "run", "step", "created", "kind", "service", "host", "path", "bytes", "sha256",
                    "key_id")
#: a mark: the number of events of one (run, machine, step, kind) and the seq of the last ("" for no step)
MARK_COLUMNS = ("run", "machine", "step", "kind", "count", "last")


def mac_key(vault_key: bytes) -> bytes:
    """The journal's MAC key: HKDF-SHA256 of the vault key, no salt, info :data:`PURPOSE`."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(vault_key)


#: one encoder for every MAC (``json.dumps`` with options builds one per call): the same bytes
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical(obj: dict[str, Any]) -> bytes:
    return _ENCODER.encode(obj).encode()


def _mac(key: bytes, label: str, data: bytes) -> str:
    return hmac.digest(key, label.encode() + b":" + data, "sha256").hex()  # one-shot: hmac.new's bytes, faster


def event_mac(key: bytes, event_hash: str) -> str:
    return _mac(key, "event", event_hash.encode())


def row_mac(key: bytes, table: str, row: dict[str, Any]) -> str:
    """MAC of a ``runs``, ``artifacts`` or ``marks`` row: its columns (not ``mac``) as canonical JSON."""
    columns = {"runs": RUN_COLUMNS, "artifacts": ARTIFACT_COLUMNS, "marks": MARK_COLUMNS}[table]
    return _mac(key, table, _canonical({c: row.get(c) for c in columns}))


def digest(rows: Iterable[dict[str, Any]]) -> str:
    """sha256 over ``id mac`` lines in id order: one value that changes with any row's presence or MAC."""
    lines = sorted(f"{r['id']} {r.get('mac') or ''}" for r in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def head_fields(fmt: int, key_id: str, seq: int, last_hash: str, events: int, runs: str,
                artifacts: str) -> dict[str, Any]:
    """What the head's MAC covers; *fmt* is the journal's own format (a format 2 journal stays one)."""
    return {"format": fmt, "key_id": key_id, "seq": seq, "hash": last_hash, "events": events,
            "runs": runs, "artifacts": artifacts}


def head_mac(key: bytes, fields: dict[str, Any]) -> str:
    return _mac(key, "head", _canonical(fields))


def equal(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two MACs (a missing one never matches)."""
    return a is not None and b is not None and hmac.compare_digest(a, b)
