"""Nova: nova, and from the releases that have them nova_api and nova_cell0 (facts §4).

After the generic import: ``api_db sync``, ``cell_v2 update_cell`` for every cell so that the
cell mappings name the new DB and message queue (cell0's URL always explicit: an omitted one
falls back to ``[database] connection``, facts §4.3), ``db sync``, ``online_data_migrations``
until exit 0, the old controller's ``services`` rows retired as the release allows, and
``nova-status upgrade check``. ``[upgrade_levels] compute`` is pinned to the source release
during the upgrade (``icehouse-compat`` for Havana) and unpinned by ``nova-unpin`` once the
computes run the new release. nova's metadata unit is never started while neutron's metadata
agent serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from services import options, releases
from services.fleet import compute
from services.infra import mysql, together
from services.infra.before import keep as keep_before
from services.infra.before import load as load_before
from services.infra.config import get_value, rewrite_db_url, set_value, with_database
from services.infra.host import command_text
from services.infra.listeners import Listen
from services.options import Option
from services.releases import DEFAULT_JUMP, Era, Jump
from services.spec import RequiredSection, ServiceSpec
from services.steps import legacy_config
from services.steps.commands import (
    commands_step,
    online_migrations_step,
    run_cmd,
    schema_step,
    shown,
    split_online,
    status_step,
)
from services.steps.configs import ConfigEdit
from services.steps.legacy_config import delete_key
from services.steps.specs import db_specs, new_db_specs, units_fn
from services.steps.standard import standard_steps
from services.steps.verify import api_verify_step
from statemachine.step import Result, Step, StepError

NAME = "nova"
NOVA_CONF = ("--config-file", "{etc}/nova/nova.conf")
_c = releases.cmd

#: cells v2 on a jump that creates nova_cell0 (newton -> ocata: "cell mappings required before Ocata",
#: facts §4): after ``api_db sync``, cell0 mapped with its URL always explicit (§4.3 pitfall), the
#: carried-over main database mapped as cell1; ``db sync`` then syncs cell0 too (§4.1 step 3)
CELL1 = "cell1"
CELL_SETUP: tuple[releases.Cmd, ...] = (
    _c("nova-manage", *NOVA_CONF, "cell_v2", "map_cell0", "--database_connection", "{cell0_db}"),
    _c("nova-manage", *NOVA_CONF, "cell_v2", "create_cell", "--name", CELL1, "--database_connection",
       "{cell_db}", "--transport-url", "{transport_url}"),
)
#: after the main schema is current: map the computes of the carried-over DB into cell1 (§4.3; rc 0
#: without --strict)
DISCOVER_HOSTS = _c("nova-manage", *NOVA_CONF, "cell_v2", "discover_hosts")
#: the unit that serves nova's metadata API (never started while neutron's metadata agent serves)
METADATA_UNITS = ("openstack-nova-metadata-api", "nova-metadata", "nova-api-metadata")
#: nova services rows of a replaced host: soft-deleted before Liberty (no forced_down column; the
#: API's service-delete does the same), forced down from Liberty on (reversible) (facts §4.5, §4.6)
STALE_SERVICE_ACTION: tuple[Era, ...] = (Era("havana", "kilo", "delete"), Era("liberty", None, "force_down"))
#: `[upgrade_levels] compute` while the computes still run the source release (facts §4.5, §4.6)
COMPUTE_PIN: tuple[Era, ...] = (Era("havana", "havana", "icehouse-compat"),)


def compute_pin(source: str) -> str:
    """The pin for computes of release *source*: ``icehouse-compat`` for Havana, else its alias."""
    return releases.pick(COMPUTE_PIN, source) or releases.code_name(source)

CELL0_UUID = "00000000-0000-0000-0000-000000000000"
CONF = "nova.conf"


def _conf(side: Any) -> str:
    return f"{side.etc.rstrip('/')}/nova/{CONF}"


# ---------------------------------------------------------------------- units and metadata
def neutron_serves_metadata(ctx: Any, settings: str = NAME) -> bool:
    st = ctx.services.get(settings)
    choice = st.options.get("metadata", "auto") if st is not None and settings == NAME else "auto"
    if choice == "auto":
        return "neutron" in ctx.services
    return choice == "neutron"


def _units(jump: Jump, settings: str = NAME) -> Any:
    base = units_fn(SPEC, jump, settings)

    def units(ctx: Any, role: str) -> list[str]:
        names = base(ctx, role)
        if role == "start" and neutron_serves_metadata(ctx, settings):
            names = [u for u in names if u not in METADATA_UNITS and "metadata" not in u]
        return names

    return units


# ---------------------------------------------------------------------- the compute RPC pin
def pin_edit(jump: Jump) -> ConfigEdit:
    pin = compute_pin(jump.source)

    def apply(ctx: Any, path: str, data: bytes) -> tuple[bytes, list[str]]:
        if not path.endswith(f"/{CONF}"):
            return data, []
        if get_value(data, "upgrade_levels", "compute") == pin:
            return data, []
        return set_value(data, "upgrade_levels", "compute", pin), [f"[upgrade_levels] compute = {pin}"]

    def shown_(ctx: Any) -> list[str]:
        return [f"set [upgrade_levels] compute = {pin} in {_conf(ctx.target)} (computes still run {jump.source}; "
                "nova-unpin removes it once they are upgraded)"]

    return ConfigEdit(apply, shown_)


# ---------------------------------------------------------------------- cells
def _main_url(data: bytes) -> str | None:
    """The main database's URL in nova.conf: the first of its option names present (facts §1.4)."""
    return next((v for sec, key in releases.DB_OPTION_ALIASES if (v := get_value(data, sec, key))), None)


def _redact_urls(ctx: Any, *urls: str) -> None:
    for url in urls:
        pw = urlsplit(url).password if "://" in url else None
        if pw:
            ctx.redactor.add(pw)


def _cell0_db(ctx: Any, jump: Jump) -> str:
    return next(d.db_name(ctx.services[NAME]) for d in new_db_specs(SPEC, jump) if d.label == "cell0")


def _setup_urls(ctx: Any, jump: Jump) -> dict[str, str]:
    """cell0's and cell1's URLs for a new cells v2 setup, from the target's nova.conf as install_config
    left it: cell0 is the main URL naming the cell0 database, cell1 the carried-over main database and
    the message queue of ``[DEFAULT] transport_url`` (or the one its rabbit_* options make)."""
    path = _conf(ctx.target)
    data = ctx.target.host.read_bytes(path)
    main, mq = _main_url(data), get_value(data, "DEFAULT", "transport_url") or legacy_config.transport_url(data)
    if not main or not mq:
        what = "[database] connection" if not main else "[DEFAULT] transport_url (or rabbit_host)"
        raise StepError(f"{path} on {ctx.target.host.name} has no {what}: cells v2 maps cell1 with it — set it in "
                        "the source controller's nova.conf, then `upgrade resume`", host=ctx.target.host.name)
    out = {"cell0_db": with_database(main, _cell0_db(ctx, jump)), "cell_db": main, "transport_url": mq}
    _redact_urls(ctx, *out.values())
    return out


def _setup_shown(jump: Jump) -> Any:
    """What _setup_urls gives, masked, for `upgrade plan` (it reads the target's nova.conf at run time)."""
    def fill(ctx: Any) -> dict[str, str]:
        t = ctx.target
        base = f"{releases.db_scheme(jump.target)}://USER:***@{t.db.address_for_services}:{t.db.port}"
        return {"cell0_db": f"{base}/{_cell0_db(ctx, jump)}", "cell_db": f"{base}/{ctx.services[NAME].db_name}",
                "transport_url": f"<[DEFAULT] transport_url of {_conf(t)}>"}

    return fill


def cell_setup_step(jump: Jump, api_db: Any) -> Step:
    """Cells v2 on a jump that creates nova_cell0 (newton -> ocata): map_cell0 with its URL explicit,
    then the carried-over main database as cell1 — after api_db sync, before db sync (which then
    syncs cell0 too). map_cell0 is idempotent ("Cell0 is already setup"); create_cell is left out
    when cell1 is already mapped to this database (a re-run after a kill), never run twice.
    Its rows live in nova_api: import_db's undo restores that database, so this step has no undo."""

    def skip(ctx: Any, cmd: releases.Cmd) -> str | None:
        if "create_cell" not in cmd.args:
            return None
        want = _setup_urls(ctx, jump)["cell_db"]
        rows = mysql.query(ctx.target.db, "SELECT uuid FROM cell_mappings WHERE name=%s AND database_connection=%s "
                                          "AND uuid<>%s", (CELL1, want, CELL0_UUID), db=api_db(ctx))
        return f"{CELL1} is already mapped to this database ({rows[0][0]})" if rows else None

    return commands_step(NAME, "cell_setup", "cells_set_up", CELL_SETUP,
                         "cells v2 (required from ocata): map cell0 to the new cell0 database, the carried-over "
                         "main database as cell1", fill=lambda ctx: _setup_urls(ctx, jump),
                         shown_fill=_setup_shown(jump), skip=skip,
                         dbs=lambda ctx: [api_db(ctx)], kind="fixup")

def _cell_urls(ctx: Any, jump: Jump) -> list[dict[str, str]]:
    """Every cell mapping with the URLs it must hold on the new controller."""
    st = ctx.services[NAME]
    dbs = {d.label: d.db_name(st) for d in db_specs(SPEC, jump)}
    data = ctx.target.host.read_bytes(_conf(ctx.target))
    main_url = _main_url(data) or ""
    mq = get_value(data, "DEFAULT", "transport_url") or ""
    rows = mysql.query(ctx.target.db, "SELECT uuid, name, transport_url, database_connection FROM cell_mappings "
                                      "ORDER BY id", db=dbs["api"])
    out = []
    for uuid, name, old_mq, old_db in rows:
        if uuid == CELL0_UUID:
            new_db = with_database(main_url, dbs["cell0"])
            new_mq = old_mq or "none:///"
        else:
            old = urlsplit(old_db or "")
            if old.path.lstrip("/") == dbs["main"] or not old_db:
                new_db = main_url
            else:
                new_db = rewrite_db_url(old_db, ctx.target.db.address_for_services, ctx.target.db.port,
                                        scheme=releases.db_scheme(jump.target))
            new_mq = mq or old_mq
        out.append({"uuid": uuid, "name": name or "", "old_mq": old_mq or "", "old_db": old_db or "",
                    "new_mq": new_mq, "new_db": new_db})
    return out


def update_cells_step(jump: Jump) -> Step:
    cmd = releases.Cmd("nova-manage", ("--config-file", "{etc}/nova/nova.conf", "cell_v2", "update_cell",
                                       "--cell_uuid", "{cell_uuid}", "--database_connection", "{cell_db}",
                                       "--transport-url", "{transport_url}"))

    def api_db(ctx: Any) -> str:
        return next(d.db_name(ctx.services[NAME]) for d in db_specs(SPEC, jump) if d.label == "api")

    def run(ctx: Any) -> Result:
        cells = _cell_urls(ctx, jump)
        for c in cells:
            _redact_urls(ctx, c["old_db"], c["new_db"], c["old_mq"], c["new_mq"])
        # the old URLs hold credentials: the vault keeps them for undo (first: a re-run after a kill keeps
        # the originals), the journal only the uuids
        _kept, art = keep_before(ctx, f"{NAME}.update_cells", "cell-mappings",
                                 {c["uuid"]: {"old_mq": c["old_mq"], "old_db": c["old_db"]} for c in cells})
        # one mapping row per cell: the commands are independent, so they run side by side
        together.each(lambda c: run_cmd(ctx.target, cmd, {"cell_uuid": c["uuid"], "cell_db": c["new_db"],
                                                          "transport_url": c["new_mq"]}), cells)
        return {"cells": [c["uuid"] for c in cells], "artifact": art}

    def undo(ctx: Any, result: Result | None) -> None:
        if not result:
            return  # interrupted: import_db's undo restores the whole API database anyway
        rows = load_before(ctx, result["artifact"], f"{NAME}.update_cells")
        if not mysql.db_exists(ctx.target.db, api_db(ctx)):
            return
        conn = mysql.connect(ctx.target.db, api_db(ctx))
        try:
            with conn.cursor() as cur:
                for uuid, r in rows.items():
                    cur.execute("UPDATE cell_mappings SET transport_url=%s, database_connection=%s WHERE uuid=%s",
                                (r["old_mq"] or None, r["old_db"] or None, uuid))
        finally:
            conn.close()

    def commands(ctx: Any) -> list[str]:
        t = ctx.target
        st = ctx.services[NAME]
        dbs = {d.label: d.db_name(st) for d in db_specs(SPEC, jump)}
        base = f"{releases.db_scheme(jump.target)}://USER:***@{t.db.address_for_services}:{t.db.port}"
        return [f"SQL: SELECT uuid, transport_url, database_connection FROM {dbs['api']}.cell_mappings",
                shown(cmd, t, {"cell_uuid": CELL0_UUID, "cell_db": f"{base}/{dbs['cell0']}",
                               "transport_url": "none:///"}) + "   # cell0: its URL always explicit",
                shown(cmd, t, {"cell_uuid": "<each other cell>", "cell_db": f"{base}/<its database>",
                               "transport_url": f"<[DEFAULT] transport_url of {_conf(t)}>"})]

    return Step(f"{NAME}.update_cells", "cells_updated", run, undo, host="target", commands=commands, kind="fixup",
                describe="point every cell mapping at the new DB server and message queue (cell_v2 update_cell)")


# ---------------------------------------------------------------------- stale services rows
def stale_services_step(jump: Jump) -> Step:
    action = releases.pick(STALE_SERVICE_ACTION, jump.target)

    def main_db(ctx: Any) -> str:
        return ctx.services[NAME].db_name

    def hosts(ctx: Any) -> tuple[str, str]:
        o = ctx.services[NAME].options
        return o.get("old_host") or "", o.get("new_host") or ""

    def run(ctx: Any) -> Result:
        old, new = hosts(ctx)
        if not old or old == new:
            return {"old_host": old or None, "rows": [], "action": None,
                    "note": "no old_host, or the new controller keeps its name: no stale rows"}
        cols = "id, `binary`, host, deleted, deleted_at" + (", forced_down" if action == "force_down" else "")
        rows = mysql.query(ctx.target.db, f"SELECT {cols} FROM services WHERE host=%s AND deleted=0 ORDER BY id",
                           (old,), db=main_db(ctx))
        first, _art = keep_before(ctx, f"{NAME}.stale_services", "services-before", {
            str(r[0]): {"id": r[0], "binary": r[1], "deleted": r[3], "deleted_at": r[4].isoformat(sep=" ") if r[4]
                        else None, **({"forced_down": r[5]} if action == "force_down" else {})} for r in rows})
        before = [first[k] for k in sorted(first, key=int)]
        conn = mysql.connect(ctx.target.db, main_db(ctx))
        try:
            with conn.cursor() as cur:
                for r in before:
                    if action == "force_down":
                        cur.execute("UPDATE services SET forced_down=1 WHERE id=%s", (r["id"],))
                    else:  # nova's soft delete, what service-delete does (Icehouse API; Havana has none)
                        cur.execute("UPDATE services SET deleted=id, deleted_at=UTC_TIMESTAMP() WHERE id=%s",
                                    (r["id"],))
        finally:
            conn.close()
        return {"old_host": old, "action": action, "rows": before}

    def undo(ctx: Any, result: Result | None) -> None:
        if not result or not result.get("rows"):
            return
        conn = mysql.connect(ctx.target.db, main_db(ctx))
        try:
            with conn.cursor() as cur:
                for r in result["rows"]:
                    if result["action"] == "force_down":
                        cur.execute("UPDATE services SET forced_down=%s WHERE id=%s", (r["forced_down"], r["id"]))
                    else:
                        cur.execute("UPDATE services SET deleted=%s, deleted_at=%s WHERE id=%s",
                                    (r["deleted"], r["deleted_at"], r["id"]))
        finally:
            conn.close()

    def commands(ctx: Any) -> list[str]:
        old, new = hosts(ctx)
        if not old or old == new:
            return ["(no old_host, or the same host name: nothing to retire)"]
        db = main_db(ctx)
        change = ("SET forced_down=1" if action == "force_down" else "SET deleted=id, deleted_at=UTC_TIMESTAMP()")
        return [f"SQL: SELECT id, binary, host FROM {db}.services WHERE host={old!r} AND deleted=0",
                f"SQL: UPDATE {db}.services {change} WHERE id IN (those rows)"]

    return Step(f"{NAME}.stale_services", "stale_services_handled", run, undo, host="target", commands=commands,
                kind="fixup",
                describe="list the old controller's services rows, then force them down (or soft-delete them "
                         "where the release has no forced_down)")


# ---------------------------------------------------------------------- the steps
def steps(jump: Jump = DEFAULT_JUMP, options: Mapping[str, Any] | None = None) -> list[Step]:
    dbs = db_specs(SPEC, jump)
    new = new_db_specs(SPEC, jump)  # nova_api on liberty -> mitaka, nova_cell0 on newton -> ocata
    labels = {d.label for d in dbs}
    cmds = list(SPEC.schema_for(jump.target))
    api_cmds = [c for c in cmds if "api_db" in c.args]
    main_cmds = [c for c in cmds if "api_db" not in c.args]

    def names(ctx: Any, which: set[str]) -> list[str]:
        return [d.db_name(ctx.services[NAME]) for d in (*dbs, *new) if d.label in which]

    before: list[Step] = []
    if api_cmds:
        before.append(commands_step(NAME, "api_db_sync", "api_db_synced", api_cmds,
                                    "nova-manage api_db sync of the target release", kind="schema",
                                    dbs=lambda ctx: names(ctx, {"api"})))
    fix = SPEC.fixups_for(jump.target)
    if "cell0" in labels and "update_cells" in fix:
        before.append(update_cells_step(jump))
    new_cells = any(d.label == "cell0" for d in new)
    if new_cells:
        before.append(cell_setup_step(jump, lambda ctx: names(ctx, {"api"})[0]))
    main_cmds, online = split_online(main_cmds)
    schema = schema_step(NAME, main_cmds,
                         "nova-manage db sync (cell0 too)", dbs=lambda ctx: names(ctx, {"main", "cell0"}))
    after: list[Step] = []
    if new_cells:
        after.append(commands_step(NAME, "discover_hosts", "hosts_discovered", (DISCOVER_HOSTS,),
                                   "map the computes of the carried-over database into cell1 (cell_v2 "
                                   "discover_hosts)", dbs=lambda ctx: names(ctx, {"api"}), kind="fixup"))
    if "stale_services" in fix:
        after.append(stale_services_step(jump))
    status = SPEC.status_for(jump.target)
    if status:
        after.append(status_step(NAME, status))
    built = standard_steps(
        NAME, next(d for d in dbs if d.label == "main").conns, schema,
        api_verify_step(NAME, "compute", requires=("keystone:api",)),
        dbs=dbs, units=_units(jump),
        edits=(legacy_config.edit(jump.target), *((pin_edit(jump),) if "pin_compute" in fix else ())),
        before_schema=tuple(before), after_schema=tuple(after), new_dbs=new,
        finish=(online_migrations_step(NAME, online, lambda ctx: names(ctx, {"main", "cell0"})),) if online else (),
        listens=(Listen("nova/nova.conf", "DEFAULT", "osapi_compute_listen_port", 8774),))
    # the status check asks the placement API, and nova starts against it: "upgrade placement before
    # any nova services" (facts §4.1)
    return [replace(s, requires=(*s.requires, "placement:api"))
            if s.name in (f"{NAME}.status_check", f"{NAME}.start_target") else s for s in built]


# ---------------------------------------------------------------------- nova-unpin: after the computes
def unpin_steps(jump: Jump = DEFAULT_JUMP, options: Mapping[str, Any] | None = None) -> list[Step]:
    """``nova-unpin``: once every compute runs the new release, drop ``[upgrade_levels] compute``
    and restart nova on the new controller (facts §4.1 step 6). Its own service in the plan, after
    the computes (the compute restarts of the plan, or a later run)."""
    from services.infra import control

    units = _units(jump, UNPIN.name)

    def restart(ctx: Any) -> None:
        for u in units(ctx, "target"):
            if control.is_running(ctx.target, u):
                control.stop(ctx.target, u)
        for u in reversed(units(ctx, "start")):
            control.start(ctx.target, u)

    def run(ctx: Any) -> Result:
        if old := unpin_refusal(ctx):
            raise StepError(old, host=ctx.target.host.name)
        path = _conf(ctx.target)
        data = ctx.target.host.read_bytes(path)
        old = get_value(data, "upgrade_levels", "compute")
        if old is not None:
            ctx.target.host.write_bytes(path, delete_key(data, "upgrade_levels", "compute"), mode=0o640)
            restart(ctx)
        return {"removed": old}

    def undo(ctx: Any, result: Result | None) -> None:
        if not result or result.get("removed") is None:
            return
        path = _conf(ctx.target)
        data = ctx.target.host.read_bytes(path)
        ctx.target.host.write_bytes(path, set_value(data, "upgrade_levels", "compute", result["removed"]),
                                    mode=0o640)
        restart(ctx)

    def commands(ctx: Any) -> list[str]:
        t = ctx.target
        out = [f"SQL: SELECT host, version FROM {ctx.services[NAME].db_name if NAME in ctx.services else NAME}"
               ".services WHERE binary='nova-compute' AND deleted=0   # every row at the target's SERVICE_VERSION, "
               "else refused", f"remove [upgrade_levels] compute from {_conf(t)}"]
        out += [command_text(t.control.argv("stop", u)) for u in units(ctx, "target")]
        out += [command_text(t.control.argv("start", u)) for u in reversed(units(ctx, "start"))]
        return out

    return [Step("nova-unpin.unpin_compute", "unpinned", run, undo, host="target", commands=commands,
                 describe="once every nova-compute reports the target's service version: remove the compute RPC "
                          "pin and restart nova")]


def restart_conductors(ctx: Any) -> list[str]:
    """Restart nova-conductor on the new controller (the units of nova-unpin's, else nova's, plan table, else
    the release's, whose name holds "conductor"): a conductor caches the lowest service version of each
    kind for its lifetime (``Service.enable_min_version_cache``), so a compute put back on the old release
    would be refused (ServiceTooOld) until it reads the table again."""
    from services.infra import control

    jump = Jump(ctx.from_release, ctx.to_release)
    settings = UNPIN.name if UNPIN.name in ctx.services else NAME
    names = [u for u in _units(jump, settings)(ctx, "target") if "conductor" in u]
    for u in names:
        if control.is_running(ctx.target, u):
            control.stop(ctx.target, u)
        control.start(ctx.target, u)
    return names


def unpin_refusal(ctx: Any) -> str | None:
    """Why nova cannot be unpinned yet: the ``nova-compute`` rows of the new controller's nova database
    that do not report the target's service version (the runbook: "when all the computes are upgraded,
    unset the compute version option"), or None."""
    old = compute.old_computes(ctx)
    if not old:
        return None
    return (f"nova stays pinned: {len(old)} nova-compute service(s) do not report {ctx.to_release}'s service version "
            f"({compute.target_version(ctx)}): {', '.join(old)} — upgrade those compute hosts (their "
            "upgrade_command in the plan, or by hand) and restart nova-compute there, then unpin")




SPEC = ServiceSpec(
    name=NAME, order=40, steps=steps, tool="nova-manage",
    units=(Era("havana", "icehouse", ("openstack-nova-api", "openstack-nova-cert", "openstack-nova-conductor",
                                      "openstack-nova-consoleauth", "openstack-nova-novncproxy",
                                      "openstack-nova-scheduler")),
           Era("juno", "stein", ("openstack-nova-api", "openstack-nova-conductor",
                                 "openstack-nova-consoleauth", "openstack-nova-novncproxy",
                                 "openstack-nova-scheduler")),
           Era("train", None, ("openstack-nova-api", "openstack-nova-conductor", "openstack-nova-novncproxy",
                               "openstack-nova-scheduler"))),
    # nova_api from Mitaka, nova_cell0 from Ocata (its URL lives in nova_api.cell_mappings) (§4)
    databases=(Era("havana", "liberty", (("main", "{name}", "database"),)),
               Era("mitaka", "newton", (("api", "{name}_api", "api_database"), ("main", "{name}", "database"))),
               Era("ocata", None, (("api", "{name}_api", "api_database"), ("main", "{name}", "database"),
                                   ("cell0", "{name}_cell0", "")))),
    config_files=(Era("havana", None, ("nova.conf",)),),
    schema=(
        Era("havana", "liberty", (_c("nova-manage", *NOVA_CONF, "db", "sync"),)),
        # API DB required since Mitaka (§4); online data migrations loop from Mitaka [guess: Mitaka]
        Era("mitaka", None, (_c("nova-manage", *NOVA_CONF, "api_db", "sync"),
                             _c("nova-manage", *NOVA_CONF, "db", "sync"),
                             _c("nova-manage", *NOVA_CONF, "db", "online_data_migrations", loop=True))),
    ),
    # nova-status from Ocata (§1.2)
    status=(Era("ocata", None, _c("nova-status", *NOVA_CONF, "upgrade", "check", ok=releases.STATUS_OK)),),
    options=(
        options.UNITS, options.STATUS_ACCEPT, options.REPAIR, options.OLD_HOST, options.NEW_HOST,
        Option("api_db_name", str, "", "the API database (default <db_name>_api)"),
        Option("cell0_db_name", str, "", "cell0's database (default <db_name>_cell0)"),
        Option("metadata", str, "auto", "who serves the metadata API: \"neutron\" (its metadata agent: "
                                        "nova's metadata unit is never started), \"nova\", or \"auto\" "
                                        "(neutron when it is in the plan)"),
    ),
    fixups=(Era("havana", "newton", ("pin_compute", "stale_services")),
            Era("ocata", None, ("pin_compute", "update_cells", "stale_services"))),
    # nova needs the placement API from Ocata (until Stein it is part of nova: nova-placement-api, its
    # tables in nova_api; facts §5 history)
    required_sections=(RequiredSection(
        "ocata", "nova.conf", "placement",
        "from ocata nova-compute and the scheduler need the placement API (part of nova until stein: "
        "nova-placement-api, its tables in nova_api) — deploy it on the source's release and configure "
        "[placement] in nova.conf (auth_url, auth_type, credentials, os_region_name) before the upgrade"),),
    idle_writes={
        # every service's heartbeat (report_interval, 10 s)
        "services": ("updated_at", "report_count", "last_seen_up"),
        # the resource tracker's periodic save of the hypervisor's numbers
        "compute_nodes": ("updated_at",),
        # _heal_instance_info_cache refreshes every instance's network info once a minute
        "instance_info_caches": ("updated_at",),
    },
)

#: ``nova-unpin``: the second service of this module, after the compute hosts (facts §4.1 step 6)
UNPIN = ServiceSpec(
    name="nova-unpin", order=90, steps=unpin_steps, tool="nova-manage", units=SPEC.units,
    options=(options.UNITS,), after_computes=True,
)
