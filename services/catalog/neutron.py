"""Neutron: ``neutron-db-manage`` with the plugin config the deployment really uses (read from
``core_plugin`` in neutron.conf, or the plan's ``plugin_config``); a Havana/Icehouse DB made by
neutron-server's ``create_all`` has no ``alembic_version`` and is stamped with the source release
first (facts §6.3); later releases ``upgrade heads``. The old controller's agents are reported,
and carried-over ``agent_down_time``/``report_interval`` below the target's defaults warned
about (facts §6.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from services import options, releases
from services.infra import mysql
from services.infra.config import get_value
from services.infra.listeners import Listen
from services.options import Option
from services.releases import DEFAULT_JUMP, Era, Jump
from services.spec import ServiceSpec
from services.steps import legacy_config
from services.steps.commands import schema_step, status_step
from services.steps.specs import db_specs, units_fn
from services.steps.standard import standard_steps
from services.steps.verify import api_verify_step
from statemachine.step import Result, Step, StepError

NAME = "neutron"
NEUTRON_CONF = ("--config-file", "{etc}/neutron/neutron.conf", "--config-file", "{plugin}")
_c = releases.cmd

#: neutron agent timers: defaults from 2013.2.4/Icehouse on; lower carried values flap (facts §6.4)
TIMER_DEFAULTS = {"agent_down_time": 75, "report_interval": 30}
#: neutron's plugin config by core_plugin (the deployment's real one is read from neutron.conf)
PLUGIN_CONFIG = {
    "ml2": "plugins/ml2/ml2_conf.ini",
    "neutron.plugins.ml2.plugin.Ml2Plugin": "plugins/ml2/ml2_conf.ini",
    "openvswitch": "plugins/openvswitch/ovs_neutron_plugin.ini",
    "neutron.plugins.openvswitch.ovs_neutron_plugin.OVSNeutronPluginV2": "plugins/openvswitch/ovs_neutron_plugin.ini",
    "linuxbridge": "plugins/linuxbridge/linuxbridge_conf.ini",
    "neutron.plugins.linuxbridge.lb_neutron_plugin.LinuxBridgePluginV2": "plugins/linuxbridge/linuxbridge_conf.ini",
}
DEFAULT_PLUGIN: tuple[Era, ...] = (Era("havana", "havana", "plugins/openvswitch/ovs_neutron_plugin.ini"),
                                   Era("icehouse", None, "plugins/ml2/ml2_conf.ini"))


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
    if core in PLUGIN_CONFIG:
        return PLUGIN_CONFIG[core]
    return releases.pick(DEFAULT_PLUGIN, jump.source)


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
            default = TIMER_DEFAULTS[key]
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
                f"{TIMER_DEFAULTS['agent_down_time']}/{TIMER_DEFAULTS['report_interval']}",
                f"SQL: SELECT id, agent_type, binary, host, heartbeat_timestamp FROM {db}.agents WHERE host={old!r}"]

    return Step(f"{NAME}.agents", "agents_reported", run, host="target", commands=commands, kind="fixup",
                describe="report the old controller's agents and agent timers below the target's defaults")


def steps(jump: Jump = DEFAULT_JUMP, options: Mapping[str, Any] | None = None) -> list[Step]:
    dbs = db_specs(SPEC, jump)
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

    schema = schema_step(NAME, SPEC.schema_for(jump.target),
                         "neutron-db-manage with neutron.conf and the deployment's plugin config", fill=values,
                         dbs=lambda ctx: [ctx.services[NAME].db_name], skip=skip)
    inner = schema.run

    def run_schema(ctx: Any) -> Result:
        check_plugin(ctx)
        return inner(ctx)

    schema = replace(schema, run=run_schema)
    after: list[Step] = [agents_step(jump)] if "agents" in SPEC.fixups_for(jump.target) else []
    status = SPEC.status_for(jump.target)
    if status:
        after.append(status_step(NAME, status, fill=values))

    def heads(ctx: Any) -> Result:
        from services.steps.commands import revisions
        return {"revisions": revisions(ctx.target.db, ctx.services[NAME].db_name)}

    return standard_steps(
        NAME, dbs[0].conns, schema,
        api_verify_step(NAME, "network", heads,
                        lambda ctx: [f"SQL: SELECT version_num FROM {ctx.services[NAME].db_name}.alembic_version"],
                        ", alembic heads recorded", requires=("keystone:api",)),
        dbs=dbs, units=units_fn(SPEC, jump), edits=(legacy_config.edit(jump.target),), after_schema=tuple(after),
        listens=(Listen("neutron/neutron.conf", "DEFAULT", "bind_port", 9696),))




SPEC = ServiceSpec(
    name=NAME, order=50, steps=steps, tool="neutron-db-manage",
    # neutron-db-manage takes no --version: the server answers it (from 2025.2 only the RPC server is a
    # script, the API runs under a WSGI server)
    version_command=(Era("havana", "2025.1", "neutron-server"), Era("2025.2", None, "neutron-rpc-server")),
    major_versions={"2025.1": 26, "2025.2": 27, "2026.1": 28},
    # neutron-server first down, agents after; started in reverse (agents' server must answer first
    # is not required: agents retry) — the runbook's "for i in /etc/init.d/neutron-*"
    units=(Era("havana", None, ("neutron-server", "neutron-dhcp-agent", "neutron-l3-agent",
                                "neutron-metadata-agent", "neutron-openvswitch-agent")),),
    databases=(Era("havana", None, (("main", "{name}", "database"),)),),
    config_files=(Era("havana", None, ("neutron.conf",)),),
    schema=(
        # H/I: a DB made by neutron-server's create_all has no alembic_version: stamp it first (§6.3)
        Era("havana", "icehouse", (_c("neutron-db-manage", *NEUTRON_CONF, "stamp", "{source}",
                                      when="the database has no alembic_version"),
                                   _c("neutron-db-manage", *NEUTRON_CONF, "upgrade", "{target}"))),
        Era("juno", None, (_c("neutron-db-manage", *NEUTRON_CONF, "upgrade", "heads"),)),
    ),
    status=(Era("stein", None, _c("neutron-status", "--config-file", "{etc}/neutron/neutron.conf",
                                  "upgrade", "check", ok=releases.STATUS_OK)),),
    options=(
        options.UNITS, options.STATUS_ACCEPT, options.REPAIR, options.OLD_HOST,
        Option("plugin_config", str, "", "the plugin config neutron-db-manage reads, relative to /etc/neutron; "
                                         "default: the one core_plugin names in neutron.conf"),
    ),
    fixups=(Era("havana", None, ("agents",)),),
    # agents report their state every 30 s: the heartbeat, the configuration and load they report
    idle_writes={"agents": ("heartbeat_timestamp", "started_at", "configurations", "resource_versions", "load")},
)
