"""What every service step receives: both controllers, the vault, the journal's artifact table,
results of earlier steps, and fail points."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from journal import private, vault
from journal.redact import Redactor
from journal.store import Journal
from services.infra.settings import ServiceSettings, Side
from services.infra.writeguard import Claimed
from statemachine import failpoints
from statemachine.step import StepError


@dataclass
class UpgradeContext:
    run_id: str
    source: Side
    target: Side
    journal: Journal
    key: vault.Key
    redactor: Redactor
    services: dict[str, ServiceSettings]
    from_release: str
    to_release: str
    results: dict[str, Any] = field(default_factory=dict)
    #: where the vault's artifacts go (the plan's ``vault.dir``; default ``<journal>/artifacts``)
    artifact_root: Path | None = None
    #: told (machine, bytes) for every chunk that dumps and imports move, for the live progress display
    #: (machines may overlap: the display keeps one line per machine)
    progress: Callable[[str, int], None] | None = None
    #: the run whose claim on the target this run writes under, and both DB servers' identities when it
    #: started: what every writing step asserts (``services/infra/writeguard.py``); None: nothing is written
    claimed: Claimed | None = None
    #: streams a database's dump and import are cut into, by table (the plan's ``dump_streams``; 0: as many
    #: as the smaller of the two controllers has cores, fewer for a small database)
    dump_streams: int = 0

    def progress_for(self, machine: str) -> Callable[[int], None] | None:
        """The byte counter a dump or import of *machine* reports to (None: nobody watches)."""
        report = self.progress
        return None if report is None else (lambda n: report(machine, n))

    @property
    def artifact_dir(self) -> Path:
        """The run's private vault directory: ours, 0700 at every level this creates, never a link."""
        try:
            private.make_dir(self.artifact_root or self.journal.dir / "artifacts", "vault directory")
            return private.make_dir((self.artifact_root or self.journal.dir / "artifacts") / self.run_id,
                                    "vault directory")
        except private.PrivatePathError as exc:
            raise StepError(str(exc)) from None

    def artifact_path(self, name: str) -> Path:
        return self.artifact_dir / f"{name}.osuv"

    def record_artifact(self, artifact_id: str, step: str, kind: str, service: str, host: str, path: Path,
                        stats: vault.StreamStats) -> dict[str, Any]:
        """Journal an artifact *step* just wrote; the record every later use is checked against."""
        self.journal.add_artifact(self.run_id, artifact_id, kind, service, host, str(path), stats.bytes,
                                  stats.sha256, self.key.key_id, step=step)
        return {"id": artifact_id, "path": str(path), "bytes": stats.bytes, "sha256": stats.sha256}

    # ------------------------------------------------------------------ the one gate before any use
    def _recorded(self, art: dict[str, Any], step: str) -> dict[str, Any]:
        """The journal's record of *art*, refused unless it is this run's, made by *step*, and the one the
        step's result names (path, size and plaintext sha256)."""
        row = self.journal.artifact(art.get("id", ""))
        path = art.get("path")
        if row is None:
            why = "the journal has no record of it"
        elif row["run"] != self.run_id:
            why = f"the journal records it for run {row['run']}, not for this run {self.run_id}"
        elif row["step"] != step:
            why = f"the journal records it as made by {row['step']}, not by {step}"
        elif (row["path"], row["bytes"], row["sha256"]) != (path, art.get("bytes"), art.get("sha256")):
            why = "the journal's record and the step's result name different files or contents"
        else:
            return row
        raise StepError(f"refusing artifact {path}: {why} — it is not the artifact {step} made in this run; restore "
                        "the vault directory from a copy (nothing was read from it)")

    def verified_artifact(self, art: dict[str, Any], step: str) -> vault.StreamStats:
        """Before an import or restore streams *art*: its record (run, step) and its whole content
        (authenticated, plaintext size and sha256 as recorded). Every use of an artifact passes here."""
        row = self._recorded(art, step)
        try:
            return vault.verify_artifact(row["path"], self.key, row["bytes"], row["sha256"])
        except vault.VaultError as exc:
            raise StepError(f"refusing artifact {row['path']} (run {self.run_id}, {step}): {exc}") from None

    def artifact_bytes(self, art: dict[str, Any], step: str) -> bytes:
        """A small artifact's content, checked in the same single pass against its record (run, step,
        size, plaintext sha256): what is checked is what is used."""
        row = self._recorded(art, step)
        try:
            data = vault.decrypt_bytes(row["path"], self.key)
        except vault.VaultError as exc:
            raise StepError(f"refusing artifact {row['path']} (run {self.run_id}, {step}): {exc}") from None
        if len(data) != row["bytes"] or hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise StepError(f"refusing artifact {row['path']} (run {self.run_id}, {step}): it decrypts to other "
                            f"content than {step} recorded (sha256 {hashlib.sha256(data).hexdigest()}, recorded "
                            f"{row['sha256']}) — it was replaced; restore the vault directory from a copy")
        return data

    def failpoint(self, name: str) -> None:
        failpoints.hit(name)
