"""Refusals that several verbs (and `upgrade check`) share, each with the fix in its message."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

from upgrade.errors import UserError


def private_dir_problem(directory: Path, what: str = "journal directory") -> str | None:
    """Why *directory* may not hold the journal (readable by group or others), or None."""
    try:
        mode = directory.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot inspect the {what} {directory}: {exc.strerror}"
    if mode & 0o077:
        return (f"the {what} {directory} is open to other users (mode {stat.filemode(mode)}); it holds the journal, "
                f"the log and the encrypted dumps — make it private: chmod 700 {shlex.quote(str(directory))}")
    return None


def require_private_dir(directory: Path) -> None:
    if (problem := private_dir_problem(directory)) is not None:
        raise UserError(problem)
