"""The release facts: which releases exist, which jumps the tool supports, and the types in which
each service's spec states what it needs per release (:class:`Era` rows, :class:`Cmd` commands).

Nothing here is about one service: what a service needs per release is in its spec
(``services/catalog/``); no service module branches on a release name. Facts and their sources:
shared/reference/openstack-facts.md (§0 releases, §1 cross-cutting, §2-§8 per service); "[guess]"
marks what the facts file lists as unverified.

A jump is N -> N+1, or SLURP -> next SLURP (facts §1.1). Per-service tables are lists of
:class:`Era` rows (``since``/``until`` inclusive); :func:`pick` returns the row valid for a
release, so a value that changed in Ocata is one more row, not one more ``if``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: (series, is SLURP) in release order (facts §0: SLURP flags from openstack/releases series_status)
RELEASES: tuple[tuple[str, bool], ...] = (
    ("havana", False), ("icehouse", False), ("juno", False), ("kilo", False), ("liberty", False),
    ("mitaka", False), ("newton", False), ("ocata", False), ("pike", False), ("queens", False),
    ("rocky", False), ("stein", False), ("train", False), ("ussuri", False), ("victoria", False),
    ("wallaby", False), ("xena", False), ("yoga", False), ("zed", False),
    ("2023.1", True), ("2023.2", False), ("2024.1", True), ("2024.2", False),
    ("2025.1", True), ("2025.2", False), ("2026.1", True), ("2026.2", False),
)
NAMES = tuple(r for r, _ in RELEASES)

#: code names of the numbered series: nova's ``[upgrade_levels] compute`` aliases use them (facts §4.5)
CODE_NAMES = {"2023.1": "antelope", "2023.2": "bobcat", "2024.1": "caracal", "2024.2": "dalmatian",
              "2025.1": "epoxy", "2025.2": "flamingo", "2026.1": "gazpacho", "2026.2": "hibiscus"}


def index(release: str) -> int:
    return NAMES.index(release)


def at_least(release: str, since: str) -> bool:
    return index(release) >= index(since)


#: the install guides write ``mysql+pymysql://`` from Liberty on, and the releases' packages (and the lab's venvs)
#: carry PyMySQL, not MySQL-python: a carried ``mysql://`` would name a driver the target lacks
PYMYSQL_FROM = "liberty"


def db_scheme(target: str) -> str:
    """The SQLAlchemy scheme a DB URL rewritten for *target* gets (``upgrade plan`` shows the same)."""
    return "mysql+pymysql" if at_least(target, PYMYSQL_FROM) else "mysql"


def code_name(release: str) -> str:
    return CODE_NAMES.get(release, release)


def allowed_targets(source: str) -> list[str]:
    if source not in NAMES:
        return []
    i = NAMES.index(source)
    out = [NAMES[i + 1]] if i + 1 < len(NAMES) else []
    if dict(RELEASES)[source]:
        later_slurps = [r for r, s in RELEASES[i + 1:] if s]
        if later_slurps and later_slurps[0] not in out:
            out.append(later_slurps[0])
    return out


def jump_error(source: str, target: str) -> str | None:
    """None if source -> target is supported, else a message listing what is."""
    if source not in NAMES:
        return f"unknown source release {source!r}; known releases: {', '.join(NAMES)}"
    if target not in NAMES:
        return f"unknown target release {target!r}; known releases: {', '.join(NAMES)}"
    allowed = allowed_targets(source)
    if target not in allowed:
        return (f"the jump {source} -> {target} is not supported; from {source} the tool upgrades to "
                f"{' or '.join(allowed) or 'nothing yet'}")
    return None


# ---------------------------------------------------------------------- per-release rows
@dataclass(frozen=True)
class Era:
    """A value valid from release ``since`` to ``until`` (inclusive; None = still valid)."""

    since: str
    until: str | None
    value: Any


def pick(rows: Sequence[Era], release: str, default: Any = None) -> Any:
    for row in rows:
        if at_least(release, row.since) and (row.until is None or index(release) <= index(row.until)):
            return row.value
    return default


@dataclass(frozen=True)
class Cmd:
    """One command of a runbook step, as data.

    ``args`` may hold placeholders filled per controller: ``{etc}`` (the controller's /etc),
    ``{source}``/``{target}`` (release labels), ``{plugin}`` (neutron's plugin config) and
    ``{cell_uuid}``/``{transport_url}``/``{cell_db}`` (nova's cells). ``ok`` are the exit
    codes that mean success; ``loop`` marks the online-data-migrations contract (0 done,
    1 run again, anything else fails, facts §4.1/§5/§7.1); ``when`` names a runtime condition
    under which the command runs at all (shown in the plan).
    """

    tool: str
    args: tuple[str, ...]
    ok: tuple[int, ...] = (0,)
    loop: bool = False
    when: str = ""


def cmd(tool: str, *args: str, ok: tuple[int, ...] = (0,), loop: bool = False, when: str = "") -> Cmd:
    return Cmd(tool, args, ok, loop, when)


#: oslo.upgradecheck: 0 success, 1 warning (accepted, recorded), 2 failure, 255 error (facts §1.2)
STATUS_OK = (0, 1)


# ---------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Rename:
    """An option the target release no longer reads under its old name (facts §1.4)."""

    old: tuple[str, str]
    new: tuple[str, str]
    removed_in: str


#: DB connection option names, newest first; the first present in a file is the one in use
DB_OPTION_ALIASES: tuple[tuple[str, str], ...] = (
    ("database", "connection"), ("DEFAULT", "sql_connection"), ("DATABASE", "sql_connection"),
    ("sql", "connection"),
)
#: the aliases were accepted until oslo.db 15.0.0 (2024.1) removed them (facts §1.4)
RENAMES: tuple[Rename, ...] = tuple(Rename(old, ("database", "connection"), "2024.1")
                                    for old in DB_OPTION_ALIASES[1:])
#: oslo.messaging 9.0.0 (Stein) removed rpc_backend and rabbit_*: one transport_url instead (§1.4)
RABBIT_REMOVED_IN = "stein"
RABBIT_KEYS = ("rabbit_host", "rabbit_hosts", "rabbit_port", "rabbit_userid", "rabbit_password",
               "rabbit_virtual_host", "rpc_backend")



# ---------------------------------------------------------------------- jumps
@dataclass(frozen=True)
class Jump:
    """The release jump of a plan: what the step lists and commands are built for."""

    source: str
    target: str

    def __post_init__(self) -> None:
        if (msg := jump_error(self.source, self.target)) is not None:
            raise ValueError(msg)


#: steps built without a plan (e.g. `upgrade status` listing step names) use the lab's jump
DEFAULT_JUMP = Jump("2025.2", "2026.1")
