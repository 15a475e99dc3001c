"""Before-values of a fix-up, kept in the vault before the fix-up changes anything.

A fix-up killed half-way is run again on resume (steps are idempotent): rows it already changed
then look "done" and their original values would be lost to its undo. So the values are written
to the vault first, and a re-run merges with what the interrupted attempt recorded — the values
recorded first win, read only through the journal's record of them (run, step, content).
The vault (not the journal) because some hold secrets (CHAP credentials in
connection_info, DB passwords in cell mappings).
"""

from __future__ import annotations

import json
from typing import Any

from journal import vault


def _merge(first: Any, later: Any) -> Any:
    if isinstance(first, dict) and isinstance(later, dict):
        out = dict(later)
        for k, v in first.items():
            out[k] = _merge(v, later[k]) if k in later else v
        return out
    return first


def keep(ctx: Any, step: str, name: str, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Store *values* (merged under an interrupted attempt's) as artifact ``<service>-<name>`` of *step*;
    returns the merged values and the artifact record.

    An interrupted attempt's values count only as the journal recorded them for this run and step (a
    file that differs is refused). The new file never replaces the recorded one: the two names take
    turns, so a kill between writing the file and recording it leaves the recorded values intact.
    """
    service = step.split(".", 1)[0]
    artifact_id = f"{ctx.run_id}/{service}-{name}"
    path = ctx.artifact_path(f"{service}-{name}")
    merged = values
    prior = ctx.journal.artifact(artifact_id)
    if prior is not None:
        earlier = {k: prior[k] for k in ("id", "path", "bytes", "sha256")}
        merged = _merge(json.loads(ctx.artifact_bytes(earlier, step)), values)
        if prior["path"] == str(path):
            path = ctx.artifact_path(f"{service}-{name}.1")
    stats = vault.encrypt_bytes(json.dumps(merged).encode(), path, ctx.key)
    art = ctx.record_artifact(artifact_id, step, "backup", service, ctx.target.host.name, path, stats)
    return merged, art


def load(ctx: Any, art: dict[str, Any], step: str) -> Any:
    """The before-values *step* kept, checked against the journal's record (run, step, content)."""
    return json.loads(ctx.artifact_bytes(art, step))
