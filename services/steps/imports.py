"""Importing the source's dumps on the target (charset conversion, grants, checksums compared), the
databases new in the target release, and the restore of the target's own databases on undo."""

from __future__ import annotations

import json
from typing import Any

from services.infra import charset, mysql
from services.infra.context import UpgradeContext
from services.infra.overhead import Tally
from services.steps.databases import (
    CLIENT_TOOL,
    ConfigKey,
    DBSpec,
    db_credentials,
    default_dbs,
    import_shown,
    main_spec,
    svc,
)
from statemachine.deps import needed
from statemachine.step import Result, Step, StepError


# ---------------------------------------------------------------------- import
def foreign_keys(ep: Any, db: str) -> list[dict[str, Any]]:
    """The foreign keys of *db*: name, child table and columns, parent table and columns, rules."""
    rows = mysql.query(ep, "SELECT rc.constraint_name, rc.table_name, rc.referenced_table_name, rc.update_rule, "
                           "rc.delete_rule, GROUP_CONCAT(k.column_name ORDER BY k.ordinal_position SEPARATOR ','), "
                           "GROUP_CONCAT(k.referenced_column_name ORDER BY k.ordinal_position SEPARATOR ',') "
                           "FROM information_schema.referential_constraints rc JOIN information_schema."
                           "key_column_usage k ON k.constraint_schema = rc.constraint_schema AND k.constraint_name = "
                           "rc.constraint_name AND k.table_name = rc.table_name WHERE rc.constraint_schema = %s "
                           "GROUP BY rc.constraint_name, rc.table_name, rc.referenced_table_name, rc.update_rule, "
                           "rc.delete_rule ORDER BY rc.table_name, rc.constraint_name", (db,))
    return [{"name": r[0], "table": r[1], "parent": r[2], "on_update": r[3], "on_delete": r[4],
             "columns": r[5].split(","), "parent_columns": r[6].split(",")} for r in rows]


def _verify_converted(ctx: UpgradeContext, db: str, tables: list[str], kinds: dict[str, dict[str, str]],
                      where: str) -> None:
    """Every converted table reads the same *text* on both sides: the source decoded as what its
    columns hold, the target as it is, both over utf8mb4 (CHECKSUM TABLE differs after any conversion,
    and reading the source's UTF-8 bytes as latin1 would pass a double-encoded result)."""
    for table in tables:
        cols = mysql.table_columns(ctx.source.db, db, table)
        src = charset.meaning_digest(ctx.source.db, db, table, cols, kinds.get(table, {}))
        dst = charset.meaning_digest(ctx.target.db, db, table, cols, {})
        if src != dst:
            raise StepError(f"after the charset conversion of {where}.{table} its text differs from the source's "
                            f"(source {src}, target {dst})", host=where)


def grants_shown(db: str, hosts: tuple[str, ...]) -> list[str]:
    """What mysql.grant_service_user does, for `upgrade plan` (the user's name and password masked)."""
    return [f"SQL: CREATE USER IF NOT EXISTS / ALTER USER USER@{h!r}; GRANT ALL PRIVILEGES ON {db}.* TO USER@{h!r}"
            for h in hosts]


def target_charset(charset_: str, collation: str, convert_utf8: str) -> tuple[str, str]:
    """The charset and collation a source database gets on the target (the release's utf8 when it is not)."""
    if convert_utf8 and not charset.is_utf8(charset_):
        return convert_utf8, charset.collation_for(collation, convert_utf8)
    return charset_, collation


def import_db_step(name: str, conn: ConfigKey, dbs: tuple[DBSpec, ...] | None = None,
                   convert_utf8: str = "") -> Step:
    """``convert_utf8``: the charset the target release takes for the source's non-utf8 tables
    (``utf8mb4``, or ``utf8`` where only utf8mb3 fits; empty: tables are imported as they are)."""
    specs = dbs or default_dbs((conn,))

    def run(ctx: UpgradeContext) -> Result:
        st = svc(ctx, name)
        t = ctx.target
        dump = needed(ctx.results, name, "source_dump")["databases"]
        out: dict[str, Any] = {"databases": {}, "grants": []}
        tally = Tally()
        for spec in specs:
            db = spec.db_name(st)
            d = dump[db]
            user, password = db_credentials(ctx, name, spec, specs)
            art = d["artifact"]
            convert = sorted(d.get("non_utf8_tables", {})) if convert_utf8 else []
            kinds: dict[str, dict[str, str]] = {}
            if convert:
                # what every column holds, read from the stopped source (the dump's rows) before the
                # target is touched: a mixed column, or a 4-byte character the target cannot hold, stops here
                with tally.timed("checks"):
                    scans = charset.scan_db(ctx.source.db, db)
                if problems := charset.refusals(db, scans, convert_utf8):
                    raise StepError("; ".join(problems), host=ctx.source.host.name)
                for s in scans:
                    kinds.setdefault(s.table, {})[s.column] = s.kind
            if d.get("imported") and not convert:
                # dump_source imported it while it dumped, table by table checked equal to the source; nothing
                # but this step's grants touches the target database since (a rerun grants again)
                ctx.failpoint(f"{name}.import_db:inside")
                mysql.grant_service_user(t.db, db, user, password, st.grant_hosts)
                out["databases"][db] = {"tables": d["tables"], "rows": d["rows"], "checksums_equal": True,
                                        "converted_to_utf8": [], "imported_while_dumped": True}
                out["grants"] += [f"{user}@{h} on {db}" for h in st.grant_hosts]
                continue
            # the whole dump is proved intact before the target is touched, so the import need not again
            arts = d.get("artifacts") or [art]
            for a in arts:
                tally.add("vault", ctx.verified_artifact(a, f"{name}.dump_source").seconds)
            mysql.recreate_db(t.db, db, *target_charset(d["charset"], d["collation"], convert_utf8))
            ctx.failpoint(f"{name}.import_db:inside")
            for a in arts:
                stats = mysql.import_from_vault(
                    t.host, t.db, CLIENT_TOOL, db, a["path"], ctx.key, a["bytes"], a["sha256"],
                    progress=ctx.progress_for(name), verified=True)
                tally.add("vault", stats.seconds)
            if convert:
                flat = {f"{tb}.{c}": k for tb, cols in kinds.items() for c, k in cols.items()}
                charset.convert(t.db, db, convert, flat, convert_utf8,
                                foreign_keys(ctx.source.db, db),
                                after_table=lambda _t: ctx.failpoint(f"{name}.import_db:converting"))
            mysql.grant_service_user(t.db, db, user, password, st.grant_hosts)
            where = f"{t.db.address}:{t.db.port}/{db}"
            with tally.timed("checks"):
                after = mysql.checksums(t.db, db)
                compare_checksums({k: v for k, v in d["checksums"].items() if k not in convert},
                                  {k: v for k, v in after.items() if k not in convert}, where)
                _verify_converted(ctx, db, convert, kinds, where)
            out["databases"][db] = {"tables": len(after), "rows": sum(v[0] or 0 for v in after.values()),
                                    "checksums_equal": True, "converted_to_utf8": convert,
                                    **({"charset": convert_utf8, "columns": kinds} if convert else {})}
            out["grants"] += [f"{user}@{h} on {db}" for h in st.grant_hosts]
        out["overhead"] = tally.result()
        return out

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        restore_db(ctx, name, specs)

    def commands(ctx: UpgradeContext) -> list[str]:
        st = svc(ctx, name)
        out = []
        for spec in specs:
            db = mysql.quote_ident(spec.db_name(st))
            if convert_utf8:
                out.append(f"SQL: for every text column of every non-utf8 table of {db} on the source: UTF-8 bytes, "
                           "true latin1 text, ASCII only, or mixed (refused, rows named)")
            out += [f"SQL: DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} (the source's charset and collation"
                    + (f"; {convert_utf8} if it is not utf8)" if convert_utf8 else ")"),
                    import_shown(spec.db_name(st), f"{name}-source-db{spec.suffix()}")]
            if convert_utf8:
                out += charset.conversion_shown(db, convert_utf8)
            out += [*grants_shown(db, st.grant_hosts),
                    f"SQL: SELECT COUNT(*), CHECKSUM TABLE for every table of {db}, compared with the source"]
            if convert_utf8:
                out.append(f"SQL: SELECT every row of every converted table of {db} on both sides, compared as text "
                           "(the source decoded as what each column holds)")
        return out

    return Step(f"{name}.import_db", "db_imported", run, undo, host="target", kind="import",
                requires=("source_dump", "target_backup"), provides=("imported",),
                describe=f"drop, create and import the {name} database(s) on the target; recreate the grants",
                commands=commands)


def compare_checksums(before: dict[str, list], after: dict[str, list], where: str) -> None:
    bad = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
    if bad:
        detail = ", ".join(f"{t} (source {before.get(t)}, target {after.get(t)})" for t in bad[:10])
        raise StepError(f"after import, {len(bad)} table(s) of {where} differ from the source: {detail}",
                        host=where)


def restore_db(ctx: UpgradeContext, name: str, dbs: tuple[DBSpec, ...] | None = None) -> None:
    st = svc(ctx, name)
    t = ctx.target
    backup = needed(ctx.results, name, "target_backup")
    names = [spec.db_name(st) for spec in dbs or default_dbs(())]
    # every artifact of the restore is checked before the first database is touched
    users = backup["users"]
    stmts = json.loads(ctx.artifact_bytes(users["artifact"], f"{name}.backup_target").decode())
    for dbname in names:
        if existed_on_target(ctx, name, dbname):
            ctx.verified_artifact(backup["databases"][dbname]["artifact"], f"{name}.backup_target")
    for dbname in names:
        restore_one_db(ctx, name, dbname, verified=True)
    for user in users["users"]:
        mysql.restore_users(t.db, user, st.grant_hosts, stmts.get(user, []))


def existed_on_target(ctx: UpgradeContext, name: str, dbname: str) -> bool:
    """Whether *dbname* was on the target before the upgrade touched it (backup_target's record)."""
    return bool(needed(ctx.results, name, "target_backup")["databases"][dbname]["existed"])


def restore_one_db(ctx: UpgradeContext, name: str, dbname: str, verified: bool = False) -> None:
    """Put one target database back as backup_target found it: its dump re-imported, or dropped
    when it was not there (a database that existed before is never left dropped). *verified*: the
    caller passed its artifact through the gate already (the import pass still checks size and hash)."""
    t = ctx.target
    db = needed(ctx.results, name, "target_backup")["databases"][dbname]
    if not db["existed"]:
        mysql.drop_db(t.db, dbname)
        return
    art = db["artifact"]
    if not verified:
        ctx.verified_artifact(art, f"{name}.backup_target")
    mysql.recreate_db(t.db, dbname, db["charset"], db["collation"])
    mysql.import_from_vault(t.host, t.db, CLIENT_TOOL, dbname, art["path"], ctx.key,
                            art["bytes"], art["sha256"], progress=ctx.progress_for(name), verified=True)


# ---------------------------------------------------------------------- databases new in the target release
def create_db_step(name: str, new: tuple[DBSpec, ...], dbs: tuple[DBSpec, ...]) -> Step:
    """The databases the target release has and the source's has not (nova_api on liberty -> mitaka,
    nova_cell0 on newton -> ocata): there is nothing to import, so they are created empty on the
    target with the service user's grants like the imported ones, and the release's own commands
    give them their schema (api_db sync, cell_v2 map_cell0 + db sync).

    A name the target already held was dumped by backup_target; undo puts it back from there, and
    drops only what this step created where nothing was (upgrade revert leaves the target as before).
    """
    main = main_spec(dbs)
    every = (*dbs, *new)

    def run(ctx: UpgradeContext) -> Result:
        st = svc(ctx, name)
        t = ctx.target
        charset, collation = mysql.db_charset(t.db, main.db_name(st))  # like the imported main database
        out: dict[str, Any] = {"databases": {}, "grants": []}
        for spec in new:
            db = spec.db_name(st)
            user, password = db_credentials(ctx, name, spec, every)
            mysql.recreate_db(t.db, db, charset, collation)
            ctx.failpoint(f"{name}.create_databases:inside")
            mysql.grant_service_user(t.db, db, user, password, st.grant_hosts)
            out["databases"][db] = {"created": True, "existed_before": existed_on_target(ctx, name, db),
                                    "charset": charset, "collation": collation}
            out["grants"] += [f"{user}@{h} on {db}" for h in st.grant_hosts]
        return out

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        # backup_target's record, not this result, says what was there: an interrupted run has none
        for spec in new:
            restore_one_db(ctx, name, spec.db_name(svc(ctx, name)))

    def commands(ctx: UpgradeContext) -> list[str]:
        st = svc(ctx, name)
        out = []
        for spec in new:
            db = mysql.quote_ident(spec.db_name(st))
            out += [f"SQL: DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} (charset and collation of the "
                    f"imported {mysql.quote_ident(main.db_name(st))}; a {db} the target had is in the backup)",
                    *grants_shown(db, st.grant_hosts)]
        return out

    names = ", ".join(s.template.format(name=name) for s in new)
    return Step(f"{name}.create_databases", "databases_created", run, undo, host="target", commands=commands,
                kind="create", requires=("target_backup",),
                describe=f"create the database(s) new in the target release ({names}) empty on the target, "
                         "with the service user's grants")
