"""What a service is: one :class:`ServiceSpec`, exported as ``SPEC`` by its module under ``services/catalog/``.

Everything the tool knows about one service lives in its spec and its module: the units it stops
and starts, its databases and config files, the commands of each release (schema upgrade, status
check, online data migrations), the plan options it takes, its fix-ups, what it waits for, and the
builder of its steps. The registry (``services/registry.py``) finds the specs; nothing else keeps a
table per service. Per-release values are rows of :class:`~services.releases.Era` (``since`` and
``until`` inclusive), read with the spec's ``*_for(release)`` methods, so a value that changed in
Ocata is one more row, not one more ``if``.

``docs/adding-a-service.md`` walks through writing one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services import releases
from services.options import Option
from services.releases import Cmd, Era, Jump
from statemachine.step import Step

#: ``steps(jump, options) -> list[Step]``: the service's steps for a plan's jump and its plan options
StepsBuilder = Callable[[Jump, Mapping[str, Any]], list[Step]]


@dataclass(frozen=True)
class RequiredSection:
    """A config section the release *since* needs and earlier releases did without: checked on the
    source before a jump that crosses *since* (the config is carried over)."""

    since: str
    file: str
    section: str
    why: str


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the catalog.

    name:        the plan's name for it (``[services.<name>]``) and the prefix of its journal steps.
    order:       its place in the runbook's order (lower first); ties are not allowed.
    steps:       ``steps(jump, options) -> list[Step]``, the builder of its machine.
    since:       the first release it exists in (placement: stein).
    tool:        the command whose presence under the target's ``bin`` proves it is installed
                 (``*-manage``); None: nothing to look for. Its ``--version`` is compared with
                 ``major_versions`` by `upgrade check`.
    units:       Era rows of its units in stop order (started in reverse); the plan's ``units`` replaces them.
    databases:   Era rows of ``(label, name template, config section)`` per database (``main``,
                 ``api``, ``cell0``); section "" for one named elsewhere (nova_cell0 in cell_mappings).
    config_files: Era rows of the files under ``/etc/<name>`` whose DB connection is rewritten.
    schema:      Era rows of the target release's schema commands (:class:`~services.releases.Cmd`),
                 in order; ``loop`` ones are the online data migrations (run as a finishing step).
    status:      Era rows of ``<name>-status upgrade check``, from the release that has it.
    previous_online_migrations: Era rows of the *source* release's online migrations, finished on
                 the imported copy before the target's schema upgrade (cinder).
    options:     the keys its ``[services.<name>]`` table takes beyond the common ones.
    retired_options: keys an earlier version took, each with what replaces it: a plan written for that
                 version is refused with the replacement named, not with a bare "unknown key".
    fixups:      Era rows (by target release) of the names of fix-up steps its builder includes.
    convert_charset: Era rows (by target release) of the charset its non-utf8 tables get on import.
    required_sections: config sections a newer release needs (checked before the run).
    major_versions: ``{release: major}`` of its tool's ``--version`` (what `upgrade check` compares).
    version_command: Era rows of the command answering ``--version`` where its tool does not
                 (``neutron-db-manage`` has no ``--version`` and neutron ships no ``neutron-manage``).
    after:       services whose machines must be complete before this one starts when services overlap.
    after_computes: runs alone, after the compute hosts (nova-unpin).
    settings_of: the service whose ``[services.<name>]`` settings it reads (nova-unpin: its own).
    step_options: plan options that add steps, with a value that adds them: ``every_step`` builds with
                 them so that the catalog of steps (window kinds) is complete.
    idle_writes: what the service writes by itself while nobody uses it (heartbeats, login bookkeeping):
                 ``{table: columns}`` left out of the change marker `upgrade revert` compares, or
                 ``{table: ()}`` for a table never compared (services/infra/newwrites.py); applies to
                 every database of the service.
    """

    name: str
    order: int
    steps: StepsBuilder
    since: str = releases.NAMES[0]
    tool: str | None = None
    units: tuple[Era, ...] = ()
    databases: tuple[Era, ...] = ()
    config_files: tuple[Era, ...] = ()
    schema: tuple[Era, ...] = ()
    status: tuple[Era, ...] = ()
    previous_online_migrations: tuple[Era, ...] = ()
    options: tuple[Option, ...] = ()
    fixups: tuple[Era, ...] = ()
    convert_charset: tuple[Era, ...] = ()
    required_sections: tuple[RequiredSection, ...] = ()
    major_versions: Mapping[str, int] = field(default_factory=dict)
    after: frozenset[str] = frozenset()
    after_computes: bool = False
    step_options: Mapping[str, Any] = field(default_factory=dict)
    idle_writes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    retired_options: Mapping[str, str] = field(default_factory=dict)
    version_command: tuple[Era, ...] = ()

    # ------------------------------------------------------------------ per release
    @property
    def has_database(self) -> bool:
        """Whether any release of it has a database of its own (horizon, nova-unpin: none)."""
        return any(row.value for row in self.databases)

    def units_for(self, release: str) -> tuple[str, ...]:
        return tuple(releases.pick(self.units, release, ()))

    def databases_for(self, release: str) -> tuple[tuple[str, str, str], ...]:
        return tuple(releases.pick(self.databases, release, ()))

    def config_files_for(self, release: str) -> tuple[str, ...]:
        return tuple(releases.pick(self.config_files, release, ()))

    def schema_for(self, release: str) -> tuple[Cmd, ...]:
        return tuple(releases.pick(self.schema, release, ()))

    def status_for(self, release: str) -> Cmd | None:
        return releases.pick(self.status, release)

    def previous_online_migrations_for(self, release: str) -> Cmd | None:
        return releases.pick(self.previous_online_migrations, release)

    def fixups_for(self, release: str) -> tuple[str, ...]:
        return tuple(releases.pick(self.fixups, release, ()))

    def charset_for(self, release: str) -> str:
        """The charset its non-utf8 tables get on the way to *release* ("": imported as they are)."""
        return str(releases.pick(self.convert_charset, release) or "")

    def sections_needed(self, source: str, target: str) -> list[tuple[str, str, str]]:
        """(file, section, why) the target needs in its config and the source did not."""
        return [(r.file, r.section, r.why) for r in self.required_sections
                if not releases.at_least(source, r.since) and releases.at_least(target, r.since)]

    def expected_major(self, release: str) -> int | None:
        """Its tool's major version in *release*, or None when the spec does not know it."""
        return self.major_versions.get(release)

    def release_of(self, major: int) -> str | None:
        """The release whose tool has this major version (for messages), or None."""
        return next((r for r, m in self.major_versions.items() if m == major), None)

    def unsupported(self, jump: Jump) -> str | None:
        """Why it cannot be upgraded across *jump*, or None."""
        if not releases.at_least(jump.source, self.since):
            return f"{self.name} does not exist before {self.since} (the plan upgrades {jump.source} -> {jump.target})"
        return None

    def version_command_for(self, release: str) -> str:
        """The command `upgrade check` asks for ``--version`` on a host of *release*: its spec's
        ``version_command``, else its ``tool`` where the spec knows the tool's major versions, else
        ``<name>-manage``."""
        if cmd := releases.pick(self.version_command, release):
            return str(cmd)
        return self.tool if self.tool and self.major_versions else f"{self.name}-manage"
