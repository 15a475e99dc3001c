"""Cinder: the source release's online data migrations finished on the imported copy before the
target's ``db sync`` (facts §7.1), the ``online_data_migrations`` loop after it; when the iSCSI
target address changes it is rewritten everywhere it is stored (cinder.conf's
``iscsi_ip_address``/``target_ip_address``, ``volumes.provider_location``, attachments' and
nova's ``connection_info``), with every row's before-value in the vault (connection_info holds
CHAP secrets: the journal gets ids and counts only); ``volume update_host`` when the host name
changes; the runbook's LVM volume data copy of the volumes cinder's database holds on the old
host (refused while an instance that is not shut off may write to one; their iSCSI exports stopped
first, re-exported by revert); the attachments refreshed where the storage address moved;
``cinder-manage service remove`` of the old host's service rows; ``cinder-status upgrade check``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services import options, releases
from services.infra import control, exports, iscsi, mysql, together, volumes
from services.infra.before import keep as keep_before
from services.infra.before import load as load_before
from services.infra.blockcopy import transfer_step
from services.infra.config import get_value, set_value
from services.infra.listeners import Listen
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
from statemachine.step import Result, Step, StepError

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
UPDATE_HOST = releases.Cmd("cinder-manage", ("--config-file", "{etc}/cinder/cinder.conf", "volume", "update_host",
                                             "--currenthost", "{current}", "--newhost", "{new}"))
SERVICE_REMOVE = releases.Cmd("cinder-manage", ("--config-file", "{etc}/cinder/cinder.conf", "service", "remove",
                                                "{binary}", "{host}"))


def _hosts(ctx: Any) -> tuple[str, str]:
    o = ctx.services[NAME].options
    return o.get("old_host") or "", o.get("new_host") or ""


def update_host_step(remove_services: bool) -> Step:
    """The old controller's host name replaced by the new one's in cinder's copy: ``volume update_host`` for
    each distinct host of its volumes (keeping each volume's @backend#pool), and, where the release has it
    (Liberty on), ``cinder-manage service remove`` of every service row of the old host (their old versions
    make the new services fail with ServiceTooOld, facts §7.1). The calls are independent of each other (one
    host's volumes, one service row each), so they run side by side: each is a cinder-manage start-up inside
    the window. The volumes' hosts and the whole service rows are kept in the vault first; undo puts both
    back."""

    def what(ctx: Any) -> tuple[bool, bool]:
        """(move the volumes, retire the service rows): volumes move to a known different new name; the old
        host's rows are retired whenever it is named and differs, a new name or not (options.NEW_HOST)."""
        old, new = _hosts(ctx)
        return bool(old and new and old != new), bool(remove_services and old and old != new)

    def found(ctx: Any, move: bool, retire: bool) -> tuple[list[tuple[Any, str]], list[str], list[tuple]]:
        old, _new = _hosts(ctx)
        st = ctx.services[NAME]
        vols = mysql.query(ctx.target.db, "SELECT id, host FROM volumes WHERE deleted=0 AND (host=%s OR host LIKE "
                                          "%s OR host LIKE %s)", (old, f"{old}@%", f"{old}#%"),
                           db=st.db_name) if move else []
        if not retire:
            return vols, [], []
        cols = mysql.table_columns(ctx.target.db, st.db_name, "services")
        rows = mysql.query(ctx.target.db, "SELECT * FROM services WHERE deleted=0 AND (host=%s OR host LIKE %s) "
                                          "ORDER BY id", (old, f"{old}@%"), db=st.db_name)
        return vols, cols, rows

    def run(ctx: Any) -> Result:
        old, new = _hosts(ctx)
        move, retire = what(ctx)
        out: Result = {"changed": [], "removed": []}
        step = f"{NAME}.update_host"
        vols, cols, rows = found(ctx, move, retire)
        calls: list[tuple[releases.Cmd, dict[str, str]]] = []
        # every before-value first (a kill after a command must not lose them): no secret in them
        if move:
            first, _art = keep_before(ctx, step, "hosts-before", {i: h for i, h in vols})
            out["changed"] = [{"id": i, "host": h} for i, h in sorted(first.items())]
            calls += [(UPDATE_HOST, {"current": h, "new": new + h[len(old):]}) for h in sorted({h for _i, h in vols})]
        if retire:
            kept, art = keep_before(ctx, step, "services-before",
                                    {str(r[cols.index("id")]): [None if x is None else str(x) for x in r]
                                     for r in rows})
            removed = [{"binary": r[cols.index("binary")], "host": r[cols.index("host")]} for r in rows]
            calls += [(SERVICE_REMOVE, row) for row in removed]
            out.update({"removed": removed, "columns": cols, "ids": sorted(kept), "artifact": art})
        together.each(lambda call: run_cmd(ctx.target, *call), calls)
        return out

    def undo(ctx: Any, result: Result | None) -> None:
        # the target's database only: the source's was never written. An interrupted attempt left no result:
        # import_db's undo restores the whole database
        changed, ids = (result or {}).get("changed") or [], (result or {}).get("ids") or []
        if not changed and not ids:
            return
        conn = mysql.connect(ctx.target.db, ctx.services[NAME].db_name)
        try:
            with conn.cursor() as cur:
                for r in changed:
                    cur.execute("UPDATE volumes SET host=%s WHERE id=%s", (r["host"], r["id"]))
                if ids:  # in place, not REPLACE: the soft-deleted row stays the parent of its volumes
                    rows = load_before(ctx, result["artifact"], f"{NAME}.update_host")
                    cols = result["columns"]
                    names = ", ".join(mysql.quote_ident(c) for c in cols)
                    marks = ", ".join(["%s"] * len(cols))
                    update = ", ".join(f"{mysql.quote_ident(c)}=VALUES({mysql.quote_ident(c)})" for c in cols)
                    for values in rows.values():
                        cur.execute(f"INSERT INTO services ({names}) VALUES ({marks}) ON DUPLICATE KEY UPDATE "
                                    f"{update}", values)
        finally:
            conn.close()

    def commands(ctx: Any) -> list[str]:
        old, new = _hosts(ctx)
        move, retire = what(ctx)
        if not move and not retire:
            return ["(host name unchanged: no update_host)"]
        out = [shown(UPDATE_HOST, ctx.target, {"current": f"{old}@BACKEND#POOL", "new": f"{new}@BACKEND#POOL"})
               + "   # for each distinct host of the old controller's volumes"] if move else []
        if retire:
            out.append(shown(SERVICE_REMOVE, ctx.target, {"binary": "BINARY", "host": f"{old}[@BACKEND]"})
                       + "   # for each service row of the old host; the rows are kept in the vault for revert")
        return out

    also = "; remove the old host's service rows (cinder-manage service remove)" if remove_services else ""
    return Step(f"{NAME}.update_host", "hosts_updated", run, undo, host="target", commands=commands, kind="fixup",
                describe=f"move the old controller's volumes to the new host name (volume update_host){also}, "
                         "the commands side by side")


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
    candidates = [iscsi_rows_step(), update_host_step("remove_old_services" in fix), stop_exports_step(),
                  transfer_step(NAME, _copy_list, shown=_copy_shown)]
    after: list[Step] = [s for s in candidates if s.name.split(".", 1)[1] in fix]
    extra = [s for s in (refresh_attachments_step(jump),) if s.name.split(".", 1)[1] in fix]
    status = SPEC.status_for(jump.target)
    if status:
        after.append(status_step(NAME, status))
    return standard_steps(
        NAME, dbs[0].conns, schema,
        api_verify_step(NAME, "volume", requires=("keystone:api",)),
        (lambda: extra) if extra else None,
        dbs=dbs, units=units_fn(SPEC, jump), edits=(legacy_config.edit(jump.target), iscsi_conf_edit(jump)),
        before_schema=tuple(before), after_schema=tuple(after),
        finish=(online_migrations_step(NAME, online, lambda ctx: [ctx.services[NAME].db_name]),) if online else (),
        listens=(Listen("cinder/cinder.conf", "DEFAULT", "osapi_volume_listen_port", 8776),))



# ---------------------------------------------------------------------- the volume copy
def _source_nova_dbs(ep: Any, st: Any) -> list[str]:
    main = st.options.get("nova_db_name") or "nova"
    return [db for db in (main, f"{main}_cell0") if mysql.db_exists(ep, db)]


def copied(ep: Any, st: Any) -> list[volumes.Volume]:
    """The volumes the copy moves: every live volume cinder's database (on *ep*, read only) holds on
    the old host, with the instances attached to each ([] when the plan copies none)."""
    o = st.options
    if not o.get("copy_volumes") or not o.get("old_host"):
        return []
    return volumes.on_host(ep, st.db_name, o["old_host"], _source_nova_dbs(ep, st))


def export_helper_refusals(conf: bytes | None, where: str) -> list[str]:
    """The copy takes the source's exports down with tgtadm (``services/infra/exports.py``): a backend
    exporting through another helper (LIO's ``lioadm``, ``scstadmin``, ``iscsictl``) would keep serving
    the volume's old blocks while they are copied — refused, naming the option and the fix."""
    if conf is None:
        return []
    backends = [b.strip() for b in (get_value(conf, "DEFAULT", "enabled_backends") or "").split(",") if b.strip()]
    out = []
    for section in ("DEFAULT", *backends):
        for key in ("target_helper", "iscsi_helper"):  # iscsi_helper: its name before Queens
            helper = (get_value(conf, section, key) or "").strip()
            if helper and helper not in ("tgtadm", "fake"):
                out.append(f"{where} [{section}] {key} = {helper}: the volume copy takes exports down with tgtadm "
                           "only — stop each copied volume's export by hand (e.g. `targetcli /iscsi delete IQN` "
                           "for lioadm) and set copy_volumes = false, or switch the backend to tgtadm first")
    return out


def copy_refusals(ep: Any, st: Any, plan: str = "the plan") -> list[str]:
    """Why the copy cannot start (exit 2 before anything changes): no old host to list the volumes
    of, an instance that may still write to a volume, an operation under way on one."""
    if not st.options.get("copy_volumes"):
        return []
    if not st.options.get("old_host"):
        return [f"services.cinder.copy_volumes needs services.cinder.old_host (the old controller's host name as "
                f"cinder's volumes.host names it) in {plan}"]
    return volumes.refusals(copied(ep, st))


def _dirs(ctx: Any) -> tuple[str, str]:
    o = ctx.services[NAME].options
    src = (o.get("volume_dir") or "/dev/cinder-volumes").rstrip("/")
    return src, (o.get("target_volume_dir") or src).rstrip("/")


def _entry(ctx: Any, lv: str) -> dict[str, str]:
    src, dst = _dirs(ctx)
    vg = dst[len("/dev/"):] if dst.startswith("/dev/") and dst.count("/") == 2 else ""
    return {"source": f"{src}/{lv}", "target": f"{dst}/{lv}", **({"target_vg": vg} if vg else {})}


def _copy_list(ctx: Any) -> list[dict[str, str]]:
    return [_entry(ctx, v.lv) for v in copied(ctx.source.db, ctx.services[NAME])]


def _copy_shown(ctx: Any) -> list[dict[str, str]]:
    """`upgrade plan`'s view: one line per command, ID standing for each volume the run reads."""
    return [_entry(ctx, volumes.NAME_TEMPLATE.format(id="ID"))] if ctx.services[NAME].options.get("copy_volumes") \
        else []


def _tgt_port(ctx: Any) -> int:
    return int(ctx.services[NAME].options.get("tgt_control_port") or 0)


def stop_exports_step() -> Step:
    """Take down the source's iSCSI export of each volume before its copy; undo exports it again."""

    def run(ctx: Any) -> Result:
        st = ctx.services[NAME]
        vols = copied(ctx.source.db, st)
        # asked again at the step: an instance started since the pre-flight must not lose writes
        if problems := volumes.refusals(vols):
            raise StepError("the volume copy cannot go on, nothing was changed by this step:\n  "
                            + "\n  ".join(problems))
        if not vols:
            return {"exports": []}
        s, port = ctx.source, _tgt_port(ctx)
        wanted = {v.iqn for v in vols}
        found = {t["iqn"]: t for t in exports.targets(s.host, port) if t["iqn"] in wanted}
        # every export is kept before the first goes: a re-run after a kill merges what the interrupted
        # attempt kept (the exports it already took down included), so revert restores them all
        kept, art = keep_before(ctx, f"{NAME}.stop_exports", "exports-before", found)
        for iqn in sorted(found):
            exports.remove(s.host, port, found[iqn])
        return {"exports": [kept[k] for k in sorted(kept)], "not_exported": sorted(wanted - set(kept)),
                "artifact": art}

    def undo(ctx: Any, result: Result | None) -> None:
        s, port = ctx.source, _tgt_port(ctx)
        if result is None:  # interrupted: what it kept before taking any export down
            art = ctx.journal.artifact(f"{ctx.run_id}/{NAME}-exports-before")
            kept = load_before(ctx, {k: art[k] for k in ("id", "path", "bytes", "sha256")},
                               f"{NAME}.stop_exports") if art is not None else {}
            targets = [kept[k] for k in sorted(kept)]
        else:
            targets = result.get("exports", [])
        for t in targets:
            exports.restore(s.host, port, t)

    def commands(ctx: Any) -> list[str]:
        if not ctx.services[NAME].options.get("copy_volumes"):
            return ["(no volume copy: no export to stop)"]
        port = _tgt_port(ctx)
        return ["refused unless every in-use volume's instance is shut off (cinder volume_attachment, nova "
                "block_device_mapping and instances, read on the source DB)",
                f"source: {exports.shown(port, '--mode', 'target', '--op', 'show')}",
                f"source: {exports.shown(port, '--mode', 'target', '--op', 'delete', '--force', '--tid', 'TID')}"
                f"   # for the target {volumes.TARGET_PREFIX}volume-ID of each copied volume; undo: --op new, "
                "logicalunit new, bind ACLs and accounts"]

    return Step(f"{NAME}.stop_exports", "exports_stopped", run, undo, host="source", commands=commands,
                kind="fixup", describe="stop the source's iSCSI export of each volume to copy (revert exports "
                                       "them again)")


# ---------------------------------------------------------------------- the attachments
REFRESH = releases.Cmd("nova-manage", ("--config-file", "{etc}/nova/nova.conf", "volume_attachment", "refresh",
                                       "{instance}", "{volume}", "{connector}"))
#: how the attachments learn the new storage address: ``nova-manage volume_attachment refresh`` from
#: Xena (facts §4.8), before it the runbook's restart of tgtd on the new controller
REFRESH_WAY: tuple[Era, ...] = (Era("havana", "wallaby", "tgtd"), Era("xena", None, "nova-manage"))


def refresh_attachments_step(jump: Jump) -> Step:
    way = releases.pick(REFRESH_WAY, jump.target)

    def attached(ctx: Any) -> list[tuple[str, str, str]]:
        """(instance, volume, connector JSON) of the shut-off instances' attachments to the old host's
        volumes, read on the target's imported copy."""
        st = ctx.services[NAME]
        # update_host has moved them to new_host on the target's copy when the name changes
        host = st.options.get("new_host") or st.options.get("old_host") or ""
        if not host:
            return []
        vols = volumes.on_host(ctx.target.db, st.db_name, host, _nova_dbs(ctx))
        if not mysql.table_columns(ctx.target.db, st.db_name, "volume_attachment"):
            return []
        out = []
        for v in vols:
            for inst in v.instances:
                if not inst.shut_off:
                    continue
                rows = mysql.query(ctx.target.db, "SELECT connector FROM volume_attachment WHERE deleted=0 AND "
                                                  "volume_id=%s AND instance_uuid=%s", (v.id, inst.uuid),
                                   db=st.db_name)
                out.append((inst.uuid, v.id, str(next((r[0] for r in rows if r[0]), "") or "")))
        return out

    def run(ctx: Any) -> Result:
        if not moves(ctx):
            return {"moved": False}
        t = ctx.target
        if way == "tgtd":
            control.stop(t, "tgtd")
            control.start(t, "tgtd")
            return {"moved": True, "way": "tgtd restarted"}
        done, left = [], []
        for inst, vol, connector in attached(ctx):
            if not connector:
                left.append({"instance": inst, "volume": vol, "why": "cinder holds no connector of its host"})
                continue
            d = t.host.private_tmpdir()
            path = f"{d}/connector.json"
            t.host.write_bytes(path, connector.encode(), mode=0o600)
            try:
                run_cmd(t, REFRESH, {"instance": inst, "volume": vol, "connector": path})
            finally:
                t.host.remove(path)
                t.host.remove(d)
            done.append({"instance": inst, "volume": vol})
        return {"moved": True, "way": "nova-manage volume_attachment refresh", "refreshed": done, "left": left}

    def commands(ctx: Any) -> list[str]:
        if not moves(ctx):
            return ["(iSCSI target address unchanged: no attachment to refresh)"]
        if way == "tgtd":
            return [f"target: restart tgtd   # {jump.target}: the exports are read again, as the runbook does"]
        fill = {"instance": "INSTANCE", "volume": "VOLUME",
                "connector": "<0600 file: the connector cinder holds for the attachment>"}
        return [f"target: {shown(REFRESH, ctx.target, fill)}   # for each shut-off instance's attachment to the "
                "old host's volumes"]

    # the refresh asks the new cinder for a connection: it runs once cinder serves on the target; the
    # imported databases (cinder's and nova's) are restored whole by the imports' undo
    return Step(f"{NAME}.refresh_attachments", "attachments_refreshed", run, host="target", commands=commands,
                kind="fixup", requires=("nova:schema",),
                describe="refresh the attachments of the moved storage address (nova-manage volume_attachment "
                         "refresh from Xena, tgtd restart before)")


SPEC = ServiceSpec(
    name=NAME, order=60, steps=steps, tool="cinder-manage",
    # the runbook starts api, volume, scheduler; upstream: scheduler, volume, backup, api (§7.1);
    # cinder-backup exists in every release of the table (since Grizzly)
    units=(Era("havana", None, ("openstack-cinder-api", "openstack-cinder-backup", "openstack-cinder-scheduler",
                                "openstack-cinder-volume")),),
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
        Option("copy_volumes", bool, False, "copy the blocks of every volume cinder's database holds on old_host "
                                            "to a same-size volume on the target (sha256 checked); refused while "
                                            "an instance that is not shut off has one attached"),
        Option("volume_dir", str, "/dev/cinder-volumes", "where the source holds the volumes' block devices "
                                                         "(volume-<id>, cinder's volume_name_template)"),
        Option("target_volume_dir", str, "", "where the target holds them (empty: volume_dir); a missing one is "
                                             "created with lvcreate when this is /dev/<volume group>"),
        Option("tgt_control_port", int, 0, "the management port of the source's tgtd (tgtadm -C); 0: its default",
               "a port from 1 to 32767 (tgtd refuses a larger -C), or 0 for tgtd's default",
               valid=lambda port: 0 <= port <= 32767),
    ),
    retired_options={"volumes": "the volumes to copy now come from cinder's own database (every live volume on "
                                "old_host, in-use ones refused while their instance runs): replace the list with "
                                "`copy_volumes = true` and set `old_host`"},
    # `cinder-manage service remove` exists from Liberty (facts §7.1)
    fixups=(Era("havana", "kilo", ("rewrite_iscsi", "update_host", "stop_exports", "transfer_volumes",
                                   "refresh_attachments")),
            # remove_old_services: the old host's service rows removed by update_host's step (from Liberty)
            Era("liberty", None, ("rewrite_iscsi", "update_host", "remove_old_services", "stop_exports",
                                  "transfer_volumes", "refresh_attachments"))),
    idle_writes={"services": ("updated_at", "report_count")},  # the heartbeat
)
