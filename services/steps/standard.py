"""The runbook's sequence for one service (DESIGN.md §3, the seed's "general methodology"):

stop target → back up target → stop source → dump source → carry config over → import →
<service-specific schema upgrade> → ownership → start → <service-specific verification>.
Each builder returns a :class:`Step` whose ``undo`` is the inverse of its ``run`` and uses
only the step's own result and the results of earlier steps it declares (``requires``)."""

from __future__ import annotations

from collections.abc import Callable

from services.infra.listeners import Listen
from services.steps.configs import ConfigEdit, install_config_step, new_db_config_edit
from services.steps.databases import (
    ConfigKey,
    DBSpec,
    default_dbs,
)
from services.steps.dumps import backup_target_step, dump_source_step
from services.steps.imports import create_db_step, import_db_step
from services.steps.ownership import ownership_step
from services.steps.units import UnitsFn, start_target_step, stop_step
from statemachine.step import Step


def standard_steps(name: str, conns: tuple[ConfigKey, ...], schema: Step, verify: Step,
                   extra: Callable[[], list[Step]] | None = None, *, dbs: tuple[DBSpec, ...] | None = None,
                   units: UnitsFn | None = None, edits: tuple[ConfigEdit, ...] = (), convert_utf8: str = "",
                   before_schema: tuple[Step, ...] = (), after_schema: tuple[Step, ...] = (),
                   new_dbs: tuple[DBSpec, ...] = (), finish: tuple[Step, ...] = (),
                   listens: tuple[Listen, ...] = ()) -> list[Step]:
    """The runbook's sequence for one service with its own schema upgrade and verification.

    A service adds only what differs: its databases (``dbs``, default the one ``conns[0]`` names),
    the databases new in the target release (``new_dbs``: backed up if the target has them,
    created after the import, named in the config), units, config edits, the utf8 conversion on
    import, fix-up steps right before and after its schema upgrade, ``finish`` steps (online
    data migrations) the runner runs once every service is verified, and where its API listens
    (``listens``: the revert waits for those ports on the old controller).

    The target is prepared (its units stopped, its databases and configs backed up into the vault)
    before the source stops: the new controller serves nothing yet, so this changes nothing a
    client sees. They are ``prepare`` steps: the runner runs every service's before the first
    source stops, so the maintenance window holds none of them.
    """
    carried = dbs or default_dbs(conns)
    if new_dbs:
        edits = (*edits, new_db_config_edit(name, new_dbs, carried)) if any(s.conns for s in new_dbs) else edits
    return [
        stop_step(name, "target", units),
        backup_target_step(name, conns[0], (*carried, *new_dbs) if new_dbs else dbs),
        stop_step(name, "source", units, listens),
        dump_source_step(name, carried, convert_utf8),
        install_config_step(name, conns, dbs, edits),
        import_db_step(name, conns[0], dbs, convert_utf8),
        *((create_db_step(name, new_dbs, carried),) if new_dbs else ()),
        *before_schema,
        schema,
        *after_schema,
        ownership_step(name),
        start_target_step(name, units),
        verify,
        *(extra() if extra else []),
        *finish,
    ]
