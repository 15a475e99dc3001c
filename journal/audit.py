"""The journal's verification: the hash chain of every event and, given the vault key, every MAC of the
seal; every artifact of the vault present (and, given the key, authenticated). One check, shown by
`upgrade journal verify` and in the header of `upgrade report`, so that the page says exactly what the
command would."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from journal import seal, vault
from journal.store import Journal, Verdict

PRESENT, AUTHENTICATED, MISSING = "present", "authenticated", "MISSING"


@dataclass
class Verification:
    """What `journal verify` found. ``verdict`` is the journal's own check (hash chain, and with the key
    every MAC); ``artifacts`` maps an artifact id to ``present``, ``authenticated``, ``MISSING`` or
    ``BAD: <why>``; ``old_format``: a key was given but the journal predates the seal."""

    journal: str
    verdict: Verdict
    artifacts: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    key_id: str | None = None
    old_format: bool = False

    @property
    def tampered(self) -> bool:
        return self.verdict.fault is not None

    @property
    def empty(self) -> bool:
        return self.verdict.runs == 0 and self.verdict.events == 0

    @property
    def bad_artifacts(self) -> dict[str, str]:
        return {a: s for a, s in self.artifacts.items() if s not in (PRESENT, AUTHENTICATED)}

    @property
    def ok(self) -> bool:
        return not (self.tampered or self.empty or self.old_format or self.bad_artifacts)

    def lines(self) -> list[str]:
        """The verdict as `journal verify` prints it."""
        v = self.verdict
        if self.old_format:
            return [f"NOT AUTHENTICATED: journal {self.journal} has format {v.format}, written by an earlier version "
                    "without a key: nothing in it can be authenticated (`--unkeyed` checks its hash chain, which a "
                    "writer could have recomputed)"]
        if v.fault:
            return [f"TAMPERED: journal {self.journal}: {v.fault}"]
        if self.empty:
            return [f"NO RUNS: journal {self.journal} holds no run and no event — nothing to verify (if it held runs, "
                    "they are gone: compare with earlier exports)"]
        bad = []
        for art, state in self.bad_artifacts.items():
            if state == MISSING:
                bad.append(f"MISSING: artifact {art} at {self.paths.get(art, '?')}")
            else:
                bad.append(f"BAD: artifact {art}: {state.removeprefix('BAD: ')}")
        if bad:
            return bad
        if not v.authenticated:
            return [f"UNKEYED: {v.events} events, {v.runs} runs: hash chain intact — NOT authenticated (anyone who "
                    f"can write the journal could have recomputed it; pass --key to authenticate); "
                    f"{len(self.artifacts)} artifacts present"]
        return [f"OK: {v.events} events, {v.runs} runs, {v.artifacts} artifacts: hash chain intact, authenticated "
                f"with key id {self.key_id} (every event, run and artifact row and the head); "
                f"{len(self.artifacts)} artifacts authenticated"]


def verify(journal: Journal, key: vault.Key | None = None) -> Verification:
    """Verify the whole journal — with *key*, every MAC (the journal is unlocked with it; a key of another
    journal raises :class:`JournalError`) — and look at every artifact (authenticated with *key*)."""
    old = key is not None and journal.format < seal.SEALED
    if key is not None and not old:
        journal.unlock(key)
    v = Verification(str(journal.path), journal.verify(), key_id=key.key_id if key else None, old_format=old)
    for art in journal.artifacts():
        p = Path(art["path"])
        v.paths[art["id"]] = art["path"]
        if not p.exists():
            v.artifacts[art["id"]] = MISSING
        elif key is None or v.tampered:
            v.artifacts[art["id"]] = PRESENT
        else:
            try:
                vault.verify_artifact(p, key, art["bytes"], art["sha256"])
                v.artifacts[art["id"]] = AUTHENTICATED
            except vault.VaultError as exc:
                v.artifacts[art["id"]] = f"BAD: {exc}"
    return v


#: what an auditor runs on an export, offline (Python's standard library only): the module
#: journal/verify_export.py, whose text docs/journal-format.md shows and its tests run on real and tampered exports
SNIPPET = (Path(__file__).parent / "verify_export.py").read_text(encoding="utf-8")
