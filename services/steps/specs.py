"""What a service's spec says, turned into the inputs of the shared steps: its units on each side,
its databases with every config option that may name them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services import releases
from services.releases import Jump
from services.steps.databases import ConfigKey, DBSpec


def units_fn(spec: Any, jump: Jump, settings: str | None = None) -> Callable[[Any, str], list[str]]:
    """A service's units on each side: the plan's ``units`` (of the ``settings`` service, default
    the spec's), else the spec's for that side's release."""
    name = spec.name

    def units(ctx: Any, role: str) -> list[str]:
        st = ctx.services.get(settings or name)
        given = st.options.get("units") if st is not None else None
        if given:
            return list(given)
        return list(spec.units_for(jump.source if role == "source" else jump.target))

    return units


def _specs(spec: Any, rows: Any, files_release: str) -> tuple[DBSpec, ...]:
    """DBSpecs for release-table *rows*, each with every option that may name it in every config
    file of the service in *files_release* (old aliases included while that release reads them)."""
    files = spec.config_files_for(files_release)
    out = []
    for label, template, section in rows:
        if not section:
            out.append(DBSpec(label, template, ()))
            continue
        keys = [(section, "connection")]
        if section == "database" and not all(releases.at_least(files_release, r.removed_in)
                                             for r in releases.RENAMES):
            keys = list(releases.DB_OPTION_ALIASES)  # the source may still name its DB the old way
        out.append(DBSpec(label, template, tuple(ConfigKey(f, s, k) for f in files for s, k in keys)))
    return tuple(out)


def db_specs(spec: Any, jump: Jump) -> tuple[DBSpec, ...]:
    """The service's databases for the jump (the source's: that is what is carried over), each with
    every option that may name it in every config file of the service (old aliases included)."""
    return _specs(spec, spec.databases_for(jump.source), jump.source)


def new_db_specs(spec: Any, jump: Jump) -> tuple[DBSpec, ...]:
    """The databases the target release has and the source release has not (nova_api on liberty ->
    mitaka, nova_cell0 on newton -> ocata): nothing to carry over, so they are created on the target
    and the release's own commands give them their schema."""
    had = {label for label, _t, _s in spec.databases_for(jump.source)}
    rows = [r for r in spec.databases_for(jump.target) if r[0] not in had]
    return _specs(spec, rows, jump.target)
