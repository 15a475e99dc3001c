"""The journal's verification: the hash chain of every event, and every artifact of the vault present
(and, given the key, authenticated). One check, shown by `upgrade journal verify` and in the header of
`upgrade report`, so that the page says exactly what the command would."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from journal import vault
from journal.store import Journal

PRESENT, AUTHENTICATED, MISSING = "present", "authenticated", "MISSING"


@dataclass
class Verification:
    """What `journal verify` found. ``artifacts`` maps an artifact id to ``present``, ``authenticated``,
    ``MISSING`` or ``BAD: <why>``; ``broken`` is the first bad event (seq, reason) of a tampered chain."""

    journal: str
    events: int
    broken: tuple[int, str] | None
    artifacts: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    key_given: bool = False

    @property
    def tampered(self) -> bool:
        return self.broken is not None

    @property
    def bad_artifacts(self) -> dict[str, str]:
        return {a: s for a, s in self.artifacts.items() if s not in (PRESENT, AUTHENTICATED)}

    @property
    def ok(self) -> bool:
        return not self.tampered and not self.bad_artifacts

    def lines(self) -> list[str]:
        """The verdict as `journal verify` prints it."""
        if self.broken:
            return [f"TAMPERED: journal {self.journal}: first bad event seq {self.broken[0]}: {self.broken[1]}"]
        bad = []
        for art, state in self.bad_artifacts.items():
            if state == MISSING:
                bad.append(f"MISSING: artifact {art} at {self.paths.get(art, '?')}")
            else:
                bad.append(f"BAD: artifact {art}: {state.removeprefix('BAD: ')}")
        if bad:
            return bad
        checked = "authenticated" if self.key_given else "present (pass --key to authenticate them)"
        return [f"OK: {self.events} events, hash chain intact; {len(self.artifacts)} artifacts {checked}"]


def verify(journal: Journal, key: vault.Key | None = None) -> Verification:
    """Recompute the whole journal's hash chain and look at every artifact (authenticate it with *key*)."""
    v = Verification(str(journal.path), len(journal.events()), journal.verify_chain(), key_given=key is not None)
    for art in journal.artifacts():
        p = Path(art["path"])
        v.paths[art["id"]] = art["path"]
        if not p.exists():
            v.artifacts[art["id"]] = MISSING
        elif key is None:
            v.artifacts[art["id"]] = PRESENT
        else:
            try:
                vault.verify_artifact(p, key, art["bytes"], art["sha256"])
                v.artifacts[art["id"]] = AUTHENTICATED
            except vault.VaultError as exc:
                v.artifacts[art["id"]] = f"BAD: {exc}"
    return v


#: what an auditor runs on an export, offline (Python's standard library only); docs/journal-format.md
#: shows the same text and its test runs it on real and tampered exports
SNIPPET = """\
import hashlib
import json
import sys

COLUMNS = ("seq", "run", "ts", "machine", "step", "kind", "from_state", "to_state",
           "host", "command", "rc", "output", "result", "prev_hash")


def event_hash(event):
    row = {c: event.get(c) for c in COLUMNS}
    if row["result"] is not None:                    # stored as text: re-encode as the journal did
        row["result"] = json.dumps(row["result"], sort_keys=True)
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def verify(path):
    prev = seq = None
    count = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            if prev is None:                         # genesis, or where a one-run export begins
                prev = "0" * 64 if e["seq"] == 1 else e["prev_hash"]
            elif e["seq"] != seq + 1:
                return f"BROKEN at seq {e['seq']}: expected seq {seq + 1} (a row was removed)"
            if e["prev_hash"] != prev:
                return f"BROKEN at seq {e['seq']}: prev_hash does not match (rows removed or reordered)"
            if event_hash(e) != e["hash"]:
                return f"BROKEN at seq {e['seq']}: content does not match its hash (row edited)"
            prev, seq, count = e["hash"], e["seq"], count + 1
    return f"OK: {count} events, chain intact, last hash {prev}"


if __name__ == "__main__":
    verdict = verify(sys.argv[1])
    print(verdict)
    sys.exit(0 if verdict.startswith("OK") else 1)
"""
