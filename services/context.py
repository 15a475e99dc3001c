"""What every service step receives: both controllers, the vault, the journal's artifact table,
results of earlier steps, and fail points."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from journal import vault
from journal.redact import Redactor
from journal.store import Journal
from services.settings import ServiceSettings, Side
from statemachine import failpoints


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

    def progress_for(self, machine: str) -> Callable[[int], None] | None:
        """The byte counter a dump or import of *machine* reports to (None: nobody watches)."""
        report = self.progress
        return None if report is None else (lambda n: report(machine, n))

    @property
    def artifact_dir(self) -> Path:
        d = (self.artifact_root or self.journal.dir / "artifacts") / self.run_id
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        return d

    def artifact_path(self, name: str) -> Path:
        return self.artifact_dir / f"{name}.osuv"

    def record_artifact(self, artifact_id: str, kind: str, service: str, host: str, path: Path,
                        stats: vault.StreamStats) -> dict[str, Any]:
        self.journal.add_artifact(self.run_id, artifact_id, kind, service, host, str(path), stats.bytes,
                                  stats.sha256, self.key.key_id)
        return {"id": artifact_id, "path": str(path), "bytes": stats.bytes, "sha256": stats.sha256}

    def failpoint(self, name: str) -> None:
        failpoints.hit(name)
