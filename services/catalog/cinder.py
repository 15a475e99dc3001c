"""Cinder: the source release's online data migrations finished on the imported copy before the
target's ``db sync`` (facts §7.1), the ``online_data_migrations`` loop after it; when the iSCSI
target address changes it is rewritten everywhere it is stored (cinder.conf's
``iscsi_ip_address``/``target_ip_address``, ``volumes.provider_location``, attachments' and
nova's ``connection_info``), with every row's before-value in the vault (connection_info holds
CHAP secrets: the journal gets ids and counts only); ``volume update_host`` when the host name
changes; the runbook's LVM volume data copy; ``cinder-status upgrade check``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services import options, releases
from services.infra import iscsi, mysql
from services.infra.before import keep as keep_before
from services.infra.before import load as load_before
from services.infra.blockcopy import transfer_step
from services.infra.config import get_value, set_value
from services.options import Option
from services.releases import DEFAULT_JUMP, Era, Jump
from services.spec import ServiceSpec
from services.steps import legacy_config, oncopy
from services.steps.commands import (
    online_migrations_step,
    run_cmd,
    schema_step,
    shown,
    split_online,
    status_step,
)
from services.steps.configs import ConfigEdit
from services.steps.specs import db_specs, units_fn
from services.steps.standard import standard_steps
from services.steps.verify import api_verify_step
from statemachine.step import Result, Step

NAME = "cinder"
CONF = "cinder.conf"
CINDER_CONF = ("--config-file", "{etc}/cinder/cinder.conf")
_c = releases.cmd
#: the iSCSI target address option: iscsi_ip_address until Rocky (removed in Stein, renamed in
#: Queens), target_ip_address from Queens (facts §7.4)
ISCSI_OPTION: tuple[Era, ...] = (Era("havana", "pike", "iscsi_ip_address"), Era("queens", None, "target_ip_address"))


def addresses(ctx: Any) -> tuple[str, str]:
    o = ctx.services[NAME].options
    return o.get("iscsi_address_from") or "", o.get("iscsi_address_to") or ""


def moves(ctx: Any) -> bool:
    old, new = addresses(ctx)
    return bool(old and new and old != new)


# ---------------------------------------------------------------------- cinder.conf
def iscsi_conf_edit(jump: Jump) -> ConfigEdit:
    option = releases.pick(ISCSI_OPTION, jump.target)
    legacy = "iscsi_ip_address"

    def apply(ctx: Any, path: str, data: bytes) -> tuple[bytes, list[str]]:
        if not path.endswith(f"/{CONF}") or not moves(ctx):
            return data, []
        old, new = addresses(ctx)
        notes = []
        for section in ("DEFAULT", *_backend_sections(data)):
            for key in dict.fromkeys((legacy, option)):
                value = get_value(data, section, key)
                if value is not None and value.strip() == old:
                    if key != option:  # renamed in Queens, removed in Stein (facts §7.4)
                        data = legacy_config.delete_key(data, section, key)
                    data = set_value(data, section, option, new)
                    notes.append(f"[{section}] {key} {old} -> {option} {new}")
        return data, notes

    def shown_(ctx: Any) -> list[str]:
        if not moves(ctx):
            return ["(iSCSI target address unchanged: cinder.conf keeps it)"]
        old, new = addresses(ctx)
        return [f"set {option} = {new} where iscsi_ip_address/target_ip_address is {old} in "
                f"{ctx.target.etc.rstrip('/')}/cinder/{CONF} ([DEFAULT] and backend sections)"]

    return ConfigEdit(apply, shown_)


def _backend_sections(data: bytes) -> list[str]:
    raw = get_value(data, "DEFAULT", "enabled_backends") or ""
    return [b.strip() for b in raw.split(",") if b.strip()]


# ---------------------------------------------------------------------- stored addresses
def _nova_dbs(ctx: Any) -> list[str]:
    main = ctx.services[NAME].options.get("nova_db_name") or "nova"
    return [db for db in (main, f"{main}_cell0") if mysql.db_exists(ctx.target.db, db)]


def _columns(ep: Any, db: str, table: str, column: str) -> bool:
    return bool(mysql.query(ep, "SELECT 1 FROM information_schema.columns WHERE table_schema=%s AND table_name=%s "
                                "AND column_name=%s", (db, table, column)))


def _set_values(ep: Any, db: str, table: str, column: str, values: Mapping[Any, Any]) -> None:
    """``UPDATE table SET column = value WHERE id = ...`` for each id -> value: the rewrite of the iSCSI
    addresses and its undo (which sets the values kept before it)."""
    conn = mysql.connect(ep, db)
    try:
        with conn.cursor() as cur:
            for i, value in values.items():
                cur.execute(f"UPDATE {mysql.quote_ident(table)} SET {mysql.quote_ident(column)}=%s WHERE id=%s",
                            (value, i))
    finally:
        conn.close()


def iscsi_rows_step() -> Step:
    def run(ctx: Any) -> Result:
        if not moves(ctx):
            return {"moved": False}
        old, new = addresses(ctx)
        ep = ctx.target.db
        before: dict[str, dict[str, str]] = {}
        planned: dict[str, dict[str, str]] = {}
        labels: dict[str, str] = {}
        skipped = []
        for label, db, table, column, rewrite in iscsi.places(ctx.services[NAME].db_name, _nova_dbs(ctx)):
            key = f"{db}.{table}.{column}"
            if not _columns(ep, db, table, column):
                skipped.append(f"{key} (no such column in this release)")
                continue
            rows = mysql.query(ep, f"SELECT id, {mysql.quote_ident(column)} FROM {mysql.quote_ident(table)}", db=db)
            changes = {str(i): (v, rewrite(v, old, new)) for i, v in rows}
            before[key] = {i: pair[0] for i, pair in changes.items() if pair[1] is not None}
            planned[key] = {i: pair[1] for i, pair in changes.items() if pair[1] is not None}
            labels[key] = label
        # the before-values hold CHAP secrets: the vault keeps them (first, so that a re-run after a
        # kill keeps the originals), the journal only ids and counts
        before, art = keep_before(ctx, f"{NAME}.rewrite_iscsi", "iscsi-before", before)
        counts = {labels[k]: len(v) for k, v in before.items() if k in labels}
        for key, changes in planned.items():
            db, table, column = key.split(".")
            if changes:
                _set_values(ep, db, table, column, changes)
            ctx.failpoint(f"{NAME}.rewrite_iscsi:{table}")
        return {"moved": True, "from": old, "to": new, "counts": counts,
                "ids": {k: sorted(v) for k, v in before.items()}, "skipped": skipped, "artifact": art}

    def undo(ctx: Any, result: Result | None) -> None:
        if not result or not result.get("moved"):
            return  # interrupted: import_db's undo restores both databases whole
        before = load_before(ctx, result["artifact"], f"{NAME}.rewrite_iscsi")
        for key, rows in before.items():
            db, table, column = key.split(".")
            if not rows or not mysql.db_exists(ctx.target.db, db):
                continue
            _set_values(ctx.target.db, db, table, column, rows)

    def commands(ctx: Any) -> list[str]:
        if not moves(ctx):
            return ["(iSCSI target address unchanged: no rows to rewrite)"]
        old, new = addresses(ctx)
        st = ctx.services[NAME]
        nova = st.options.get("nova_db_name") or "nova"
        return [f"SQL: {st.db_name}.volumes.provider_location: portal {old}:PORT -> {new}:PORT",
                f"SQL: {st.db_name}.volume_attachment.connection_info (JSON): data.target_portal(s), data.device_path",
                f"SQL: {nova}.block_device_mapping.connection_info and {nova}_cell0's (JSON): data.target_portal(s), "
                "data.device_path",
                "every before-value encrypted into <vault>/cinder-iscsi-before.osuv (the journal: ids, counts)"]

    # nova's block devices are rewritten once nova's databases are imported and migrated
    return Step(f"{NAME}.rewrite_iscsi", "iscsi_rewritten", run, undo, host="target", commands=commands,
                kind="fixup", requires=("nova:schema",),
                describe="rewrite the iSCSI target address in provider_location and every connection_info")


# ---------------------------------------------------------------------- host name
def update_host_step() -> Step:
    cmd = releases.Cmd("cinder-manage", ("--config-file", "{etc}/cinder/cinder.conf", "volume", "update_host",
                                         "--currenthost", "{current}", "--newhost", "{new}"))

    def hosts(ctx: Any) -> tuple[str, str]:
        o = ctx.services[NAME].options
        return o.get("old_host") or "", o.get("new_host") or ""

    def run(ctx: Any) -> Result:
        old, new = hosts(ctx)
        if not old or not new or old == new:
            return {"changed": []}
        db = ctx.services[NAME].db_name
        rows = mysql.query(ctx.target.db, "SELECT id, host FROM volumes WHERE deleted=0 AND (host=%s OR host LIKE "
                                          "%s OR host LIKE %s)", (old, f"{old}@%", f"{old}#%"), db=db)
        first, _art = keep_before(ctx, f"{NAME}.update_host", "hosts-before", {i: h for i, h in rows})
        # update_host sets host to --newhost whole: keep each volume's @backend#pool
        for current in sorted({h for _i, h in rows}):
            run_cmd(ctx.target, cmd, {"current": current, "new": new + current[len(old):]})
        return {"changed": [{"id": i, "host": h} for i, h in sorted(first.items())]}

    def undo(ctx: Any, result: Result | None) -> None:
        rows = (result or {}).get("changed") or []
        if not rows:
            return
        conn = mysql.connect(ctx.target.db, ctx.services[NAME].db_name)
        try:
            with conn.cursor() as cur:
                for r in rows:
                    cur.execute("UPDATE volumes SET host=%s WHERE id=%s", (r["host"], r["id"]))
        finally:
            conn.close()

    def commands(ctx: Any) -> list[str]:
        old, new = hosts(ctx)
        if not old or not new or old == new:
            return ["(host name unchanged: no update_host)"]
        return [shown(cmd, ctx.target, {"current": f"{old}@BACKEND#POOL", "new": f"{new}@BACKEND#POOL"})
                + "   # for each distinct host of the old controller's volumes"]

    return Step(f"{NAME}.update_host", "hosts_updated", run, undo, host="target", commands=commands, kind="fixup",
                describe="move the old controller's volumes to the new host name (volume update_host)")


# ---------------------------------------------------------------------- N's online migrations
def previous_migrations_step(jump: Jump) -> Step | None:
    """The source release's online data migrations, run by the source's cinder-manage against the
    imported copy — and only ever against it (``services/steps/oncopy.py``: a DB user only the new DB
    server has, whose server is identified from the source host before anything runs)."""
    base = SPEC.previous_online_migrations_for(jump.source)
    if base is None:
        return None
    cmd = releases.Cmd(base.tool, ("--config-file", "{conf}", *base.args[2:]), base.ok, base.loop)
    return oncopy.old_release_step(NAME, "previous_online_migrations", "previous_migrated", cmd,
                                   lambda ctx: f"{ctx.target.etc.rstrip('/')}/cinder/{CONF}",
                                   f"finish {jump.source}'s online data migrations on the imported copy (before "
                                   "db sync)")


def steps(jump: Jump = DEFAULT_JUMP, options: Mapping[str, Any] | None = None) -> list[Step]:
    dbs = db_specs(SPEC, jump)
    before = [s for s in (previous_migrations_step(jump),) if s]
    cmds, online = split_online(SPEC.schema_for(jump.target))
    schema = schema_step(NAME, cmds, "cinder-manage db sync",
                         dbs=lambda ctx: [ctx.services[NAME].db_name])
    fix = SPEC.fixups_for(jump.target)
    candidates = [iscsi_rows_step(), update_host_step(),
                  transfer_step(NAME, lambda ctx: list(ctx.services[NAME].options.get("volumes") or []))]
    after: list[Step] = [s for s in candidates if s.name.split(".", 1)[1] in fix]
    status = SPEC.status_for(jump.target)
    if status:
        after.append(status_step(NAME, status))
    return standard_steps(
        NAME, dbs[0].conns, schema,
        api_verify_step(NAME, "volume", requires=("keystone:api",)),
        dbs=dbs, units=units_fn(SPEC, jump), edits=(legacy_config.edit(jump.target), iscsi_conf_edit(jump)),
        before_schema=tuple(before), after_schema=tuple(after),
        finish=(online_migrations_step(NAME, online, lambda ctx: [ctx.services[NAME].db_name]),) if online else ())




SPEC = ServiceSpec(
    name=NAME, order=60, steps=steps, tool="cinder-manage",
    # the runbook starts api, volume, scheduler; upstream: scheduler, volume, backup, api (§7.1)
    units=(Era("havana", None, ("openstack-cinder-api", "openstack-cinder-scheduler", "openstack-cinder-volume")),),
    databases=(Era("havana", None, (("main", "{name}", "database"),)),),
    config_files=(Era("havana", None, ("cinder.conf",)),),
    schema=(
        Era("havana", "newton", (_c("cinder-manage", *CINDER_CONF, "db", "sync"),)),
        # online data migrations exist from Ocata [guess]; rc 0 done, 1 again, 2 errors (§7.1)
        Era("ocata", None, (_c("cinder-manage", *CINDER_CONF, "db", "sync"),
                            _c("cinder-manage", *CINDER_CONF, "db", "online_data_migrations", loop=True))),
    ),
    status=(Era("stein", None, _c("cinder-status", *CINDER_CONF, "upgrade", "check", ok=releases.STATUS_OK)),),
    # the source release's, finished on the imported copy before the target's db sync ("you won't be
    # able to apply N+1's schema migrations before completing N's", §7.1)
    previous_online_migrations=(Era("ocata", None, _c("cinder-manage", *CINDER_CONF, "db", "online_data_migrations",
                                                      loop=True)),),
    options=(
        options.UNITS, options.STATUS_ACCEPT, options.REPAIR, options.OLD_HOST, options.NEW_HOST,
        Option("iscsi_address_from", str, "", "the iSCSI target address volumes were exported on"),
        Option("iscsi_address_to", str, "", "the new iSCSI target address; when it differs, cinder.conf, "
                                            "provider_location and every connection_info are rewritten"),
        Option("nova_db_name", str, "nova", "nova's cell database holding block_device_mapping"),
        Option("volumes", list, [], "volume data to copy: [{source = \"/dev/...\", target = \"/dev/...\"}] or "
                                    "[{source = ..., target_vg = \"cinder-volumes\"}] (same size, sha256 "
                                    "checked)", "a list of tables"),
    ),
    fixups=(Era("havana", None, ("rewrite_iscsi", "update_host", "transfer_volumes")),),
    idle_writes={"services": ("updated_at", "report_count")},  # the heartbeat
)
