"""Typed reading of the plan's TOML tables: every error names the file, the key and what is expected.

The bottom of the plan loader: ``upgrade/plan.py`` (services, sides, vault) and ``upgrade/planhosts.py``
(hosts, network, computes) both read through it, so neither has to import the other's reader.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from journal.redact import MASK, is_secret_key
from upgrade.errors import UserError

#: how services are started and stopped on a host: systemd, SysV init scripts, or a command template
CONTROL_KINDS = ("systemd", "sysvinit", "template")


class PlanError(UserError):
    """The plan is missing, unreadable or invalid."""


class Reader:
    """Typed access to a TOML table with errors that say file, key and expectation."""

    def __init__(self, path: Path, table: dict[str, Any], prefix: str) -> None:
        self.path, self.table, self.prefix = path, table, prefix

    def err(self, key: str, expected: str) -> PlanError:
        full = f"{self.prefix}.{key}" if self.prefix else key
        return PlanError(f"{self.path}: key `{full}` {expected}")

    def get(self, key: str, typ: type | tuple[type, ...], default: Any = ..., expected: str = "") -> Any:
        if key not in self.table:
            if default is ...:
                raise self.err(key, f"is missing; expected {expected or typ.__name__}")  # type: ignore[union-attr]
            return default
        v = self.table[key]
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            shown = MASK if is_secret_key(key) else repr(v)  # a secret is masked whatever its type
            raise self.err(key, f"is {shown}; expected {expected or getattr(typ, '__name__', typ)}")
        return v

    def checked(self, key: str, default: Any, grammar: Callable[[str], str | None], expected: str = "") -> Any:
        """A string that reaches a command line or a statement (``get`` then *grammar*, see planvalues)."""
        v = self.get(key, str, default, expected)
        if isinstance(v, str) and (v or default is ...) and (why := grammar(v)) is not None:
            raise self.err(key, f"is {v!r}; expected {why}")
        return v

    def sub(self, key: str, required: bool = True) -> Reader:
        v = self.table.get(key)
        if v is None and not required:
            return Reader(self.path, {}, f"{self.prefix}.{key}" if self.prefix else key)
        if not isinstance(v, dict):
            raise self.err(key, "is missing or not a table; see `upgrade init` for a complete example")
        return Reader(self.path, v, f"{self.prefix}.{key}" if self.prefix else key)

    def secret(self, key: str) -> str:
        """A secret given inline (``key``) or by environment variable (``key_env``)."""
        env = self.get(f"{key}_env", str, None)
        if env is not None:
            if env not in os.environ:
                raise self.err(f"{key}_env", f"names environment variable {env!r}, which is not set — export it")
            return os.environ[env]
        return self.get(key, str, "")

    def unknown(self, allowed: set[str], retired: Mapping[str, str] | None = None) -> None:
        """Refuse keys outside *allowed*; a *retired* key (one an earlier version took) is named with
        what replaces it."""
        extra = sorted(set(self.table) - allowed)
        for key in extra:
            if retired and key in retired:
                raise self.err(key, f"is no longer taken: {retired[key]}")
        if extra:
            raise self.err(extra[0], f"is not a known key here;{did_you_mean(extra[0], allowed)} "
                                     f"known keys: {', '.join(sorted(allowed))}")

    def abspath(self, key: str, default: str) -> str:
        """A directory of a controller: absolute, since it names a place on that host, not here (and
        so never read as an option by the commands it reaches)."""
        v = self.get(key, str, default)
        if v and not v.startswith("/"):
            raise self.err(key, f"is {v!r}; expected an absolute path like {default or '/usr/bin'!r}")
        return v


def did_you_mean(word: str, choices: set[str] | tuple[str, ...]) -> str:
    """' did you mean `x`?' for a near miss (difflib), else ''."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" did you mean `{close[0]}`?" if close else ""
