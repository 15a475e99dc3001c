"""Before-values of a fix-up, kept in the vault before the fix-up changes anything.

A fix-up killed half-way is run again on resume (steps are idempotent): rows it already changed
then look "done" and their original values would be lost to its undo. So the values are written
to the vault first, and a re-run merges with what the interrupted attempt recorded — the values
recorded first win. The vault (not the journal) because some hold secrets (CHAP credentials in
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


def keep(ctx: Any, service: str, name: str, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Store *values* (merged under an interrupted attempt's) as artifact ``<service>-<name>``;
    returns the merged values and the artifact record."""
    path = ctx.artifact_path(f"{service}-{name}")
    merged = values
    if path.exists():
        try:
            merged = _merge(json.loads(vault.decrypt_bytes(path, ctx.key)), values)
        except (vault.VaultError, ValueError):
            merged = values  # a torn write of the interrupted attempt: nothing had changed yet
    stats = vault.encrypt_bytes(json.dumps(merged).encode(), path, ctx.key)
    art = ctx.record_artifact(f"{ctx.run_id}/{service}-{name}", "backup", service, ctx.target.host.name, path, stats)
    return merged, art


def load(ctx: Any, art: dict[str, Any]) -> Any:
    vault.verify_artifact(art["path"], ctx.key, art["bytes"], art["sha256"])
    return json.loads(vault.decrypt_bytes(art["path"], ctx.key))
