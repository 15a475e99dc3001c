"""Refusals that several verbs (and `upgrade check`) share, each with the fix in its message."""

from __future__ import annotations

from pathlib import Path

from journal import private
from upgrade.errors import UserError


def private_dir_problem(directory: Path, what: str = "journal directory") -> str | None:
    """Why *directory* may not hold the journal (or the vault), or None: it must be the user's own
    (not another user's, not a symbolic link) and closed to group and others. A missing one is fine:
    the tool creates it 0700."""
    return private.dir_problem(Path(directory), what)


def require_private_dir(directory: Path, what: str = "journal directory") -> None:
    if (problem := private_dir_problem(directory, what)) is not None:
        raise UserError(problem)
