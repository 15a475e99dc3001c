"""Refusals that several verbs (and `upgrade check`) share, each with the fix in its message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from journal import private
from statemachine.step import StepError
from upgrade.errors import UserError


def private_dir_problem(directory: Path, what: str = "journal directory") -> str | None:
    """Why *directory* may not hold the journal (or the vault), or None: it must be the user's own
    (not another user's, not a symbolic link) and closed to group and others. A missing one is fine:
    the tool creates it 0700."""
    return private.dir_problem(Path(directory), what)


def require_private_dir(directory: Path, what: str = "journal directory") -> None:
    if (problem := private_dir_problem(directory, what)) is not None:
        raise UserError(problem)


def refuse_findings(find: Callable[[], list[tuple[str, str]]], unreadable: str, headline: str, plan: Path,
                    sep: str = " — fix: ") -> None:
    """Before `upgrade run` changes anything: raise the (problem, fix) pairs *find* returns as one user
    error (exit 2); a source that cannot be read is refused too, not taken for "no problem"."""
    try:
        found = find()
    except StepError as exc:
        raise UserError(f"cannot read {unreadable}: {exc} — nothing was changed (plan {plan})") from None
    if found:
        raise UserError(f"{headline} — nothing was changed:\n" + "\n".join(f"  {p}{sep}{fix}" for p, fix in found))
