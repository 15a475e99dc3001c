"""Neutron: ``neutron-db-manage`` with the plugin config the deployment really uses (read from
``core_plugin`` in neutron.conf, or the plan's ``plugin_config``); a Havana/Icehouse DB made by
neutron-server's ``create_all`` has no ``alembic_version`` and is stamped with the source release
first (facts §6.3); later releases ``upgrade heads``. The old controller's agents are reported,
and carried-over ``agent_down_time``/``report_interval`` below the target's defaults warned
about (facts §6.4).
"""

from __future__ import annotations

from typing import Any

from services import releases
from services.infra import mysql
from services.infra.config import get_value
from services.steps import legacy_config
from services.steps.commands import DEFAULT_JUMP, Jump, commands_step, db_specs, shown, status_step, units_fn
from services.steps.standard import standard_steps
from services.steps.verify import api_verify_step
from statemachine.step import Result, Step, StepError

NAME = "neutron"


def plugin_rel(ctx: Any, jump: Jump) -> str:
    """The plugin config, relative to /etc/neutron: the plan's, else the one core_plugin names."""
    given = ctx.services[NAME].options.get("plugin_config")
    if given:
        return given
    host = getattr(ctx.source, "host", None)
    conf = f"{ctx.source.etc.rstrip('/')}/neutron/neutron.conf"
    try:
        data = host.read_bytes(conf) if host is not None and host.exists(conf) else b""
    except Exception:  # noqa: BLE001 — `upgrade plan` may hand a host that cannot be reached: use the default
        data = b""
    core = (get_value(data, "DEFAULT", "core_plugin") or "").strip()
    if core in releases.NEUTRON_PLUGIN_CONFIG:
        return releases.NEUTRON_PLUGIN_CONFIG[core]
    return releases.pick(releases.NEUTRON_DEFAULT_PLUGIN, jump.source)


def fill(jump: Jump) -> Any:
    def values(ctx: Any) -> dict[str, str]:
        return {"plugin": f"{ctx.target.etc.rstrip('/')}/neutron/{plugin_rel(ctx, jump)}",
                "source": jump.source, "target": jump.target}

    return values


def has_alembic(ctx: Any) -> bool:
    db = ctx.services[NAME].db_name
    return bool(mysql.query(ctx.target.db, "SELECT 1 FROM information_schema.tables WHERE table_schema=%s AND "
                                           "table_name='alembic_version'", (db,)))


def agents_step(jump: Jump) -> Step:
    """Report the old controller's agents and agent timers that flap with the target's defaults."""

    def run(ctx: Any) -> Result:
        t = ctx.target
        out: dict[str, Any] = {"warnings": []}
        data = t.host.read_bytes(f"{t.etc.rstrip('/')}/neutron/neutron.conf")
        for key, section in (("agent_down_time", "DEFAULT"), ("report_interval", "agent")):
            raw = get_value(data, section, key)
            default = releases.NEUTRON_TIMER_DEFAULTS[key]
            if raw is not None and raw.strip().isdigit() and int(raw) < default:
                out["warnings"].append(f"neutron.conf [{section}] {key} = {raw} (carried over) is below the "
                                       f"{jump.target} default {default}: agents may flap between up and down")
        old = ctx.services[NAME].options.get("old_host") or ""
        rows = mysql.query(t.db, "SELECT id, agent_type, `binary`, host, heartbeat_timestamp FROM agents "
                                 "WHERE host=%s ORDER BY id", (old,), db=ctx.services[NAME].db_name) if old else []
        out["old_host"] = old or None
        out["old_host_agents"] = [{"id": r[0], "type": r[1], "binary": r[2], "host": r[3],
                                   "heartbeat": r[4].isoformat(sep=" ") if r[4] else None} for r in rows]
        if rows:
            out["warnings"].append(f"{len(rows)} agent(s) of the old controller {old!r} stay registered (dead once "
                                   "it is off): remove them with `openstack network agent delete` after checking "
                                   "that routers and networks moved")
        return out

    def commands(ctx: Any) -> list[str]:
        db = ctx.services[NAME].db_name
        old = ctx.services[NAME].options.get("old_host") or "<old_host>"
        return [f"read [DEFAULT] agent_down_time, [agent] report_interval of the carried neutron.conf: warn below "
                f"{releases.NEUTRON_TIMER_DEFAULTS['agent_down_time']}/{releases.NEUTRON_TIMER_DEFAULTS['report_interval']}",
                f"SQL: SELECT id, agent_type, binary, host, heartbeat_timestamp FROM {db}.agents WHERE host={old!r}"]

    return Step(f"{NAME}.agents", "agents_reported", run, host="target", commands=commands,
                describe="report the old controller's agents and agent timers below the target's defaults")


def steps(jump: Jump = DEFAULT_JUMP) -> list[Step]:
    dbs = db_specs(NAME, jump)
    values = fill(jump)

    def skip(ctx: Any, cmd: releases.Cmd) -> str | None:
        if cmd.when and has_alembic(ctx):
            return "the database already has alembic_version"
        return None

    def check_plugin(ctx: Any) -> Result:
        path = values(ctx)["plugin"]
        if not ctx.target.host.exists(path):
            raise StepError(f"neutron's plugin config {path} does not exist on {ctx.target.host.name} — name the "
                            "real one with services.neutron.plugin_config", host=ctx.target.host.name)
        return {}

    schema = commands_step(NAME, "upgrade_schema", "schema_upgraded", releases.pick(releases.SCHEMA[NAME], jump.target),
                           "neutron-db-manage with neutron.conf and the deployment's plugin config", fill=values,
                           dbs=lambda ctx: [ctx.services[NAME].db_name], skip=skip)
    inner = schema.run

    def run_schema(ctx: Any) -> Result:
        check_plugin(ctx)
        return inner(ctx)

    schema = Step(schema.name, schema.state, run_schema, host="target", describe=schema.describe,
                  commands=schema.commands)
    after: list[Step] = [agents_step(jump)] if "agents" in releases.fixups(NAME, jump.target) else []
    status = releases.pick(releases.STATUS[NAME], jump.target)
    if status:
        after.append(status_step(NAME, status, fill=values))

    def heads(ctx: Any) -> Result:
        from services.steps.commands import revisions
        return {"revisions": revisions(ctx.target.db, ctx.services[NAME].db_name)}

    return standard_steps(
        NAME, dbs[0].conns, schema,
        api_verify_step(NAME, "network", heads,
                        lambda ctx: [f"SQL: SELECT version_num FROM {ctx.services[NAME].db_name}.alembic_version"],
                        ", alembic heads recorded"),
        dbs=dbs, units=units_fn(NAME, jump), edits=(legacy_config.edit(jump.target),), after_schema=tuple(after))


__all__ = ["steps", "shown"]
