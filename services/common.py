"""The runbook's generic steps, shared by every service (DESIGN.md §3, the seed's "general methodology").

stop source → dump source → stop target → back up target → carry config over → import →
<service-specific schema upgrade> → ownership → start → <service-specific verification>.
Each builder returns a :class:`Step` whose ``undo`` is the inverse of its ``run`` and uses
only the step's own result and the results of earlier steps.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from journal import vault
from services import charset, control, mysql, together, transfer
from services.config import db_url_credentials, get_value, rewrite_db_url, rewrite_paths, set_value, with_database
from services.context import UpgradeContext
from services.host import check, command_text, wait_pipe
from services.overhead import Tally
from services.settings import ServiceSettings, Side
from statemachine.step import Result, Step, StepError


@dataclass(frozen=True)
class ConfigKey:
    """A DB connection option in one of the service's config files, e.g. keystone.conf [database] connection."""

    file: str
    section: str
    key: str


def _svc(ctx: UpgradeContext, name: str) -> ServiceSettings:
    return ctx.services[name]


# ---------------------------------------------------------------------- the commands, for run and for `upgrade plan`
DUMP_TOOL = "mysqldump"
CLIENT_TOOL = "mysql"
VAULT_SHOWN = "<vault>"


def tar_out(etc: str, name: str) -> list[str]:
    """Pack ``<etc>/<name>`` to stdout with numeric owners (config copy and backup)."""
    return ["tar", "-C", etc, "--numeric-owner", "-cf", "-", name]


def tar_in(etc: str) -> list[str]:
    """Unpack stdin under ``<etc>`` keeping modes and numeric owners."""
    return ["tar", "-C", etc, "--numeric-owner", "-xpf", "-"]


def chown_argv(owner: str, path: str) -> list[str]:
    return ["chown", "-R", owner, path]


def _dump_shown(db: str, artifact: str) -> str:
    return f"{command_text(mysql.dump_argv(DUMP_TOOL, db))} | encrypt > {VAULT_SHOWN}/{artifact}.osuv"


def _import_shown(db: str, artifact: str) -> str:
    return f"decrypt {VAULT_SHOWN}/{artifact}.osuv | {command_text(mysql.import_argv(CLIENT_TOOL, db))}"


def service_db_credentials(ctx: UpgradeContext, name: str, conn: ConfigKey) -> tuple[str, str]:
    """The service's DB user and password on the target: plan override, else the source config's."""
    st = _svc(ctx, name)
    path = f"{ctx.source.etc}/{name}/{conn.file}"
    url = get_value(ctx.source.host.read_bytes(path), conn.section, conn.key)
    if not url:
        raise StepError(f"{path} on {ctx.source.host.name} has no [{conn.section}] {conn.key} — "
                        "the source controller's config must name the service's database",
                        host=ctx.source.host.name)
    user, password, _db = db_url_credentials(url)
    ctx.redactor.add(password)
    if st.db_password:
        ctx.redactor.add(st.db_password)
    return st.db_user or user, st.db_password or password


@dataclass(frozen=True)
class DBSpec:
    """One database of a service: a label (``main``, ``api``, ``cell0``), its name as a template of
    the plan's ``db_name`` (``{name}_api``), and the config options that name it (aliases, any of
    the service's files; none for a database named elsewhere, like nova_cell0 in cell_mappings).

    A plan overrides a non-main name with ``<label>_db_name`` in ``[services.<name>]``.
    """

    label: str
    template: str
    conns: tuple[ConfigKey, ...] = ()

    def db_name(self, st: ServiceSettings) -> str:
        override = st.options.get(f"{self.label}_db_name") if self.label != "main" else None
        return override or self.template.format(name=st.db_name)

    def suffix(self) -> str:
        """Artifact name suffix: none for the main DB (keystone's artifacts keep their names)."""
        return "" if self.label == "main" else f"-{self.label}"


#: who resolves a service's units: (ctx, role) -> units in stop order (started in reverse)
UnitsFn = Callable[[Any, str], list[str]]


def _single_unit(ctx: Any, role: str, name: str) -> list[str]:
    return [_svc(ctx, name).unit]


def _dbs_default(conns: tuple[ConfigKey, ...]) -> tuple[DBSpec, ...]:
    return (DBSpec("main", "{name}", conns[:1]),)


def db_credentials(ctx: UpgradeContext, name: str, spec: DBSpec, dbs: tuple[DBSpec, ...]) -> tuple[str, str]:
    """Credentials for *spec*: from the first of its options present in the source config, else
    (a DB named elsewhere) from the main DB's."""
    specs = [spec] + [d for d in dbs if d.label == "main" and d is not spec]
    for d in specs:
        for conn in d.conns:
            path = f"{ctx.source.etc}/{name}/{conn.file}"
            if ctx.source.host.exists(path) and get_value(ctx.source.host.read_bytes(path), conn.section, conn.key):
                return service_db_credentials(ctx, name, conn)
    first = (spec.conns or specs[-1].conns)[0]
    return service_db_credentials(ctx, name, first)  # raises the clear "names no database" error


# ---------------------------------------------------------------------- stop / start
def stop_step(name: str, role: str, units: UnitsFn | None = None) -> Step:
    def side(ctx: UpgradeContext) -> Side:
        return ctx.source if role == "source" else ctx.target

    def names(ctx: Any) -> list[str]:
        return units(ctx, role) if units else _single_unit(ctx, role, name)

    def run(ctx: UpgradeContext) -> Result:
        # the units are asked side by side (before: what undo restarts; after: none may still write),
        # stopped one by one in their order
        units = names(ctx)
        tally = Tally()
        with tally.timed("checks"):
            was = together.each(lambda u: control.is_running(side(ctx), u), units)
        for unit, running in zip(units, was, strict=True):
            if running:
                control.stop(side(ctx), unit)
        with tally.timed("checks"):
            after = together.each(lambda u: control.is_running(side(ctx), u), units)
        still = [u for u, r in zip(units, after, strict=True) if r]
        if still:
            raise StepError(f"{', '.join(still)} on {side(ctx).host.name} still run(s) after stop",
                            host=side(ctx).host.name)
        return {"units": [{"unit": u, "was_running": r} for u, r in zip(units, was, strict=True)],
                "overhead": tally.result()}

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        # the old controller must serve again after a revert; a target service is restarted
        # only if it ran before the upgrade touched it
        if result is None and role == "target":
            return
        was = {u["unit"]: u["was_running"] for u in (result or {}).get("units", [])}
        for unit in reversed(names(ctx)):
            if (result is None or was.get(unit)) and not control.is_running(side(ctx), unit):
                control.start(side(ctx), unit)

    def probe(ctx: UpgradeContext) -> bool:
        return not any(control.is_running(side(ctx), u) for u in names(ctx))

    def commands(ctx: UpgradeContext) -> list[str]:
        out = []
        for unit in names(ctx):
            out += [command_text(side(ctx).control.argv("status", unit)),
                    command_text(side(ctx).control.argv("stop", unit)) + "   # if it runs"]
        return out

    return Step(f"{name}.stop_{role}", f"{role}_stopped", run, undo, probe, host=role,
                describe=f"stop {name} on the {role} controller", commands=commands,
                prepare=role == "target")  # the new controller serves nothing yet


def start_target_step(name: str, units: UnitsFn | None = None) -> Step:
    def names(ctx: Any) -> list[str]:
        # role "start": a service may hold a unit back on start (nova's metadata API under neutron)
        return list(reversed(units(ctx, "start"))) if units else _single_unit(ctx, "target", name)

    def run(ctx: UpgradeContext) -> Result:
        started = []
        for unit in names(ctx):
            control.start(ctx.target, unit)
            started.append(unit)
        return {"units": started}

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        for unit in reversed(names(ctx)):
            if control.is_running(ctx.target, unit):
                control.stop(ctx.target, unit)

    def probe(ctx: UpgradeContext) -> bool:
        return all(control.is_running(ctx.target, u) for u in names(ctx))

    def commands(ctx: UpgradeContext) -> list[str]:
        return [command_text(ctx.target.control.argv("start", u)) for u in names(ctx)]

    return Step(f"{name}.start_target", "target_started", run, undo, probe, host="target",
                describe=f"start {name} on the target controller", commands=commands)


# ---------------------------------------------------------------------- dump / backup
def dump_source_step(name: str, dbs: tuple[DBSpec, ...] | None = None) -> Step:
    def run(ctx: UpgradeContext) -> Result:
        st = _svc(ctx, name)
        ep = ctx.source.db
        out: dict[str, Any] = {"databases": {}}
        tally = Tally()
        for spec in dbs or _dbs_default(()):
            db = spec.db_name(st)
            path = ctx.artifact_path(f"{name}-source-db{spec.suffix()}")
            # the source is stopped (stop_source checked it): the counts and checksums read the same
            # rows as the dump, so they are read side by side with it; the window grows only by the
            # time they take beyond the dump
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="facts") as pool:
                facts_of = pool.submit(mysql.db_facts, ep, db)
                stats = mysql.dump_to_vault(ctx.source.host, ep, DUMP_TOOL, db, str(path),
                                            ctx.key, inside=lambda: ctx.failpoint(f"{name}.dump_source:inside"),
                                            progress=ctx.progress_for(name))
                with tally.timed("checks"):
                    facts = facts_of.result()
            tally.add("vault", stats.seconds)
            charset, collation, sums, collations = facts.charset, facts.collation, facts.checksums, facts.collations
            art = ctx.record_artifact(f"{ctx.run_id}/{name}-source-db{spec.suffix()}", f"{name}.dump_source",
                                      "dump", name, ctx.source.host.name, path, stats)
            out["databases"][db] = {
                "artifact": art, "charset": charset, "collation": collation, "checksums": sums,
                "non_utf8_tables": {t: c for t, c in collations.items() if not c.startswith("utf8")},
                "tables": len(sums), "rows": sum(v[0] or 0 for v in sums.values())}
        out["tables"] = sum(d["tables"] for d in out["databases"].values())
        out["rows"] = sum(d["rows"] for d in out["databases"].values())
        out["overhead"] = tally.result()
        return out

    def commands(ctx: UpgradeContext) -> list[str]:
        out = []
        for spec in dbs or _dbs_default(()):
            db = spec.db_name(_svc(ctx, name))
            out += [f"SQL: SELECT COUNT(*), CHECKSUM TABLE, table_collation for every table of {db}",
                    _dump_shown(db, f"{name}-source-db{spec.suffix()}")]
        return out

    return Step(f"{name}.dump_source", "source_dumped", run, host="source",
                describe=f"dump the {name} database(s) of the source controller into the vault", commands=commands)


def backup_target_step(name: str, conn: ConfigKey, dbs: tuple[DBSpec, ...] | None = None) -> Step:
    specs = dbs or _dbs_default((conn,))

    def run(ctx: UpgradeContext) -> Result:
        st = _svc(ctx, name)
        t = ctx.target
        out: dict[str, Any] = {"databases": {}}
        for spec in specs:
            db = spec.db_name(st)
            if mysql.db_exists(t.db, db):
                charset, collation = mysql.db_charset(t.db, db)
                path = ctx.artifact_path(f"{name}-target-db{spec.suffix()}")
                stats = mysql.dump_to_vault(t.host, t.db, DUMP_TOOL, db, str(path), ctx.key,
                                            progress=ctx.progress_for(name))
                out["databases"][db] = {"existed": True, "charset": charset, "collation": collation,
                                        "artifact": ctx.record_artifact(
                                            f"{ctx.run_id}/{name}-target-db{spec.suffix()}", f"{name}.backup_target",
                                            "backup", name, t.host.name, path, stats)}
            else:
                out["databases"][db] = {"existed": False}
        users = sorted({db_credentials(ctx, name, spec, specs)[0] for spec in specs})
        stmts = {u: mysql.user_statements(t.db, u, st.grant_hosts) for u in users}
        upath = ctx.artifact_path(f"{name}-target-users")
        ustats = vault.encrypt_bytes(json.dumps(stmts).encode(), upath, ctx.key)
        out["users"] = {"users": users, "artifact": ctx.record_artifact(
            f"{ctx.run_id}/{name}-target-users", f"{name}.backup_target", "backup", name, t.host.name, upath, ustats)}
        cdir = f"{t.etc}/{name}"
        if t.host.exists(cdir):
            cpath = ctx.artifact_path(f"{name}-target-config")
            argv = tar_out(t.etc, name)
            proc = t.host.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            cstats = vault.encrypt_stream(proc.stdout, cpath, ctx.key)
            wait_pipe(proc, t.host, argv, f"backup of {cdir}")
            out["config"] = {"existed": True, "artifact": ctx.record_artifact(
                f"{ctx.run_id}/{name}-target-config", f"{name}.backup_target", "backup", name, t.host.name, cpath,
                cstats)}
        else:
            out["config"] = {"existed": False}
        return out

    def commands(ctx: UpgradeContext) -> list[str]:
        st = _svc(ctx, name)
        hosts = ", ".join(f"USER@{h!r}" for h in st.grant_hosts)
        return [*(_dump_shown(spec.db_name(st), f"{name}-target-db{spec.suffix()}") + "   # if the database exists"
                  for spec in specs),
                f"SQL: SHOW CREATE USER, SHOW GRANTS for {hosts} (USER from the source config) | encrypt > "
                f"{VAULT_SHOWN}/{name}-target-users.osuv",
                f"{command_text(tar_out(ctx.target.etc, name))} | encrypt > {VAULT_SHOWN}/{name}-target-config.osuv"
                "   # if it exists"]

    return Step(f"{name}.backup_target", "target_backed_up", run, host="target",
                describe=f"back up the {name} database, users and /etc/{name} of the target controller into the vault",
                commands=commands, prepare=True)


# ---------------------------------------------------------------------- config
def _copy_tree(ctx: UpgradeContext, name: str) -> dict[str, Any]:
    """Stream source:/etc/<name> into target:/etc/<name> (files of both: the source's win), then
    prove it arrived: per-entry sha256, mode and owner compared on both hosts (services/transfer.py)."""
    s, t = ctx.source, ctx.target
    check(t.host, ["mkdir", "-p", f"{t.etc}/{name}"], f"creating {t.etc}/{name}")
    out_argv = tar_out(s.etc, name)
    in_argv = tar_in(t.etc)
    src = s.host.popen(out_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dst = t.host.popen(in_argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    stream, size = hashlib.sha256(), 0
    try:
        while chunk := src.stdout.read(1 << 16):
            stream.update(chunk)
            size += len(chunk)
            dst.stdin.write(chunk)
        dst.stdin.close()
    except OSError:  # the target end went away (its host or the connection died): say why
        src.kill()
        src.wait()
        wait_pipe(dst, t.host, in_argv, f"writing {t.etc}/{name}")
        raise StepError(f"writing {t.etc}/{name} on {t.host.name} stopped reading", host=t.host.name) from None
    except BaseException:
        src.kill()
        dst.kill()
        raise
    wait_pipe(src, s.host, out_argv, f"reading {s.etc}/{name}")
    wait_pipe(dst, t.host, in_argv, f"writing {t.etc}/{name}")
    return {**transfer.verify_copy(s.host, s.etc, t.host, t.etc, name), "tar_bytes": size,
            "tar_sha256": stream.hexdigest()}


@dataclass(frozen=True)
class ConfigEdit:
    """A release-specific config rewrite applied after the copy (renamed options, pins, addresses).

    ``apply(ctx, path, data) -> (data, notes)`` edits one file of the service; ``shown(ctx)`` says
    what it does for `upgrade plan`. Undone with the rest of /etc/<name> by install_config's undo.
    """

    apply: Callable[[Any, str, bytes], tuple[bytes, list[str]]]
    shown: Callable[[Any], list[str]]


def install_config_step(name: str, conns: tuple[ConfigKey, ...], dbs: tuple[DBSpec, ...] | None = None,
                        edits: tuple[ConfigEdit, ...] = ()) -> Step:
    specs = dbs or _dbs_default(conns)
    all_conns = tuple(dict.fromkeys([*conns, *(c for s in specs for c in s.conns)]))
    files = sorted({c.file for c in all_conns})

    def run(ctx: UpgradeContext) -> Result:
        st = _svc(ctx, name)
        t = ctx.target
        creds = {s.label: db_credentials(ctx, name, s, specs) for s in specs if s.conns}
        copied = _copy_tree(ctx, name)
        ctx.failpoint(f"{name}.install_config:inside")
        changed: list[dict[str, Any]] = []
        mapping = {ctx.source.layout()[k]: v for k, v in t.layout().items()}
        present = [f for f in files if t.host.exists(f"{t.etc}/{name}/{f}")]
        for f in present:
            path = f"{t.etc}/{name}/{f}"
            data, moved = rewrite_paths(t.host.read_bytes(path), mapping)
            if moved:
                t.host.write_bytes(path, data, mode=0o640)
                changed.append({"file": path, "paths_rewritten": moved})
        for spec in specs:
            want = spec.db_name(st)
            for c in spec.conns:
                path = f"{t.etc}/{name}/{c.file}"
                if c.file not in present:
                    continue
                data = t.host.read_bytes(path)
                url = get_value(data, c.section, c.key)
                if not url:
                    continue
                user, password = creds[spec.label]
                new = rewrite_db_url(url, t.db.address_for_services, t.db.port, user, password)
                _u, _p, db = db_url_credentials(new)
                if db != want:
                    key = "db_name" if spec.label == "main" else f"{spec.label}_db_name"
                    raise StepError(f"{path}: [{c.section}] {c.key} names database {db!r}, the plan says "
                                    f"{want!r} — fix services.{name}.{key} in the plan", host=t.host.name)
                t.host.write_bytes(path, set_value(data, c.section, c.key, new), mode=0o640)
                changed.append({"file": path, "option": f"[{c.section}] {c.key}",
                                "db": f"{t.db.address_for_services}:{t.db.port}/{db}"})
        for edit in edits:
            for f in present:
                path = f"{t.etc}/{name}/{f}"
                data, notes = edit.apply(ctx, path, t.host.read_bytes(path))
                if notes:
                    t.host.write_bytes(path, data, mode=0o640)
                    changed.append({"file": path, "edits": notes})
        return {"rewritten": changed, "copied": copied}

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        restore_config(ctx, name)

    def commands(ctx: UpgradeContext) -> list[str]:
        s, t = ctx.source, ctx.target
        st = _svc(ctx, name)
        out = [command_text(["mkdir", "-p", f"{t.etc}/{name}"]),
               f"source: {command_text(tar_out(s.etc, name))} | target: {command_text(tar_in(t.etc))}"]
        moved = [f"{a} -> {b}" for a, b in zip(s.layout().values(), t.layout().values(), strict=True) if a != b]
        for f in files:
            if moved:
                out.append(f"rewrite paths in {shlex.quote(f'{t.etc}/{name}/{f}')}: {', '.join(moved)}")
        for spec in specs:
            for c in spec.conns:
                out.append(f"set [{c.section}] {c.key} in {shlex.quote(f'{t.etc}/{name}/{c.file}')} to "
                           f"mysql+pymysql://USER:***@{t.db.address_for_services}:{t.db.port}/{spec.db_name(st)}"
                           " (if present; USER and password from the source config or the plan)")
        for edit in edits:
            out += edit.shown(ctx)
        return out

    return Step(f"{name}.install_config", "config_installed", run, undo, host="target",
                describe=f"copy /etc/{name} from source to target, pointing its DB connection at the target DB",
                commands=commands)


def restore_config(ctx: UpgradeContext, name: str) -> None:
    t = ctx.target
    backup = ctx.results[f"{name}.backup_target"]["config"]
    cdir = f"{t.etc}/{name}"
    check(t.host, ["rm", "-rf", cdir], f"removing {cdir}")
    if not backup["existed"]:
        return
    art = backup["artifact"]
    ctx.verified_artifact(art, f"{name}.backup_target")
    argv = tar_in(t.etc)
    proc = t.host.popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    vault.decrypt_stream(art["path"], ctx.key, proc.stdin)
    proc.stdin.close()
    wait_pipe(proc, t.host, argv, f"restoring {cdir}")


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
        cols = charset.table_columns(ctx.source.db, db, table)
        src = charset.meaning_digest(ctx.source.db, db, table, cols, kinds.get(table, {}))
        dst = charset.meaning_digest(ctx.target.db, db, table, cols, {})
        if src != dst:
            raise StepError(f"after the charset conversion of {where}.{table} its text differs from the source's "
                            f"(source {src}, target {dst})", host=where)


def _grants_shown(db: str, hosts: tuple[str, ...]) -> list[str]:
    """What mysql.grant_service_user does, for `upgrade plan` (the user's name and password masked)."""
    return [f"SQL: CREATE USER IF NOT EXISTS / ALTER USER USER@{h!r}; GRANT ALL PRIVILEGES ON {db}.* TO USER@{h!r}"
            for h in hosts]


def import_db_step(name: str, conn: ConfigKey, dbs: tuple[DBSpec, ...] | None = None,
                   convert_utf8: str = "") -> Step:
    """``convert_utf8``: the charset the target release takes for the source's non-utf8 tables
    (``utf8mb4``, or ``utf8`` where only utf8mb3 fits; empty: tables are imported as they are)."""
    specs = dbs or _dbs_default((conn,))

    def run(ctx: UpgradeContext) -> Result:
        st = _svc(ctx, name)
        t = ctx.target
        dump = ctx.results[f"{name}.dump_source"]["databases"]
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
            # the whole dump is proved intact before the target is touched, so the import need not again
            tally.add("vault", ctx.verified_artifact(art, f"{name}.dump_source").seconds)
            cs, collation = (d["charset"], d["collation"])
            if convert_utf8 and not charset.is_utf8(cs):
                cs, collation = convert_utf8, charset.collation_for(collation, convert_utf8)
            mysql.recreate_db(t.db, db, cs, collation)
            ctx.failpoint(f"{name}.import_db:inside")
            stats = mysql.import_from_vault(
                t.host, t.db, CLIENT_TOOL, db, art["path"], ctx.key, art["bytes"], art["sha256"],
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
        st = _svc(ctx, name)
        out = []
        for spec in specs:
            db = mysql.quote_ident(spec.db_name(st))
            if convert_utf8:
                out.append(f"SQL: for every text column of every non-utf8 table of {db} on the source: UTF-8 bytes, "
                           "true latin1 text, ASCII only, or mixed (refused, rows named)")
            out += [f"SQL: DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} (the source's charset and collation"
                    + (f"; {convert_utf8} if it is not utf8)" if convert_utf8 else ")"),
                    _import_shown(spec.db_name(st), f"{name}-source-db{spec.suffix()}")]
            if convert_utf8:
                out += charset.conversion_shown(db, convert_utf8)
            out += [*_grants_shown(db, st.grant_hosts),
                    f"SQL: SELECT COUNT(*), CHECKSUM TABLE for every table of {db}, compared with the source"]
            if convert_utf8:
                out.append(f"SQL: SELECT every row of every converted table of {db} on both sides, compared as text "
                           "(the source decoded as what each column holds)")
        return out

    return Step(f"{name}.import_db", "db_imported", run, undo, host="target",
                describe=f"drop, create and import the {name} database(s) on the target; recreate the grants",
                commands=commands)


def compare_checksums(before: dict[str, list], after: dict[str, list], where: str) -> None:
    bad = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
    if bad:
        detail = ", ".join(f"{t} (source {before.get(t)}, target {after.get(t)})" for t in bad[:10])
        raise StepError(f"after import, {len(bad)} table(s) of {where} differ from the source: {detail}",
                        host=where)


def restore_db(ctx: UpgradeContext, name: str, dbs: tuple[DBSpec, ...] | None = None) -> None:
    st = _svc(ctx, name)
    t = ctx.target
    backup = ctx.results[f"{name}.backup_target"]
    names = [spec.db_name(st) for spec in dbs or _dbs_default(())]
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
    return bool(ctx.results[f"{name}.backup_target"]["databases"][dbname]["existed"])


def restore_one_db(ctx: UpgradeContext, name: str, dbname: str, verified: bool = False) -> None:
    """Put one target database back as backup_target found it: its dump re-imported, or dropped
    when it was not there (a database that existed before is never left dropped). *verified*: the
    caller passed its artifact through the gate already (the import pass still checks size and hash)."""
    t = ctx.target
    db = ctx.results[f"{name}.backup_target"]["databases"][dbname]
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
def _main_spec(dbs: tuple[DBSpec, ...]) -> DBSpec:
    return next(d for d in dbs if d.label == "main")


def create_db_step(name: str, new: tuple[DBSpec, ...], dbs: tuple[DBSpec, ...]) -> Step:
    """The databases the target release has and the source's has not (nova_api on liberty -> mitaka,
    nova_cell0 on newton -> ocata): there is nothing to import, so they are created empty on the
    target with the service user's grants like the imported ones, and the release's own commands
    give them their schema (api_db sync, cell_v2 map_cell0 + db sync).

    A name the target already held was dumped by backup_target; undo puts it back from there, and
    drops only what this step created where nothing was (upgrade revert leaves the target as before).
    """
    main = _main_spec(dbs)
    every = (*dbs, *new)

    def run(ctx: UpgradeContext) -> Result:
        st = _svc(ctx, name)
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
            restore_one_db(ctx, name, spec.db_name(_svc(ctx, name)))

    def commands(ctx: UpgradeContext) -> list[str]:
        st = _svc(ctx, name)
        out = []
        for spec in new:
            db = mysql.quote_ident(spec.db_name(st))
            out += [f"SQL: DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} (charset and collation of the "
                    f"imported {mysql.quote_ident(main.db_name(st))}; a {db} the target had is in the backup)",
                    *_grants_shown(db, st.grant_hosts)]
        return out

    names = ", ".join(s.template.format(name=name) for s in new)
    return Step(f"{name}.create_databases", "databases_created", run, undo, host="target", commands=commands,
                describe=f"create the database(s) new in the target release ({names}) empty on the target, "
                         "with the service user's grants")


def new_db_config_edit(name: str, new: tuple[DBSpec, ...], dbs: tuple[DBSpec, ...]) -> ConfigEdit:
    """Name the new databases in the config (nova's ``[api_database] connection`` on liberty -> mitaka):
    the main database's URL on the target with the database name swapped — same server, user and
    password, as the install guides set them."""
    main = _main_spec(dbs)
    options = [(spec, c) for spec in new for c in spec.conns]

    def apply(ctx: Any, path: str, data: bytes) -> tuple[bytes, list[str]]:
        mine = [(spec, c) for spec, c in options if path.endswith(f"/{c.file}")]
        if not mine:
            return data, []
        main_url = next((u for c in main.conns
                         if path.endswith(f"/{c.file}") and (u := get_value(data, c.section, c.key))), None)
        if not main_url:
            new_opts = ", ".join(f"[{c.section}] {c.key}" for _s, c in mine)
            raise StepError(f"{path} names no {main.db_name(_svc(ctx, name))} database, so the new {new_opts} cannot "
                            "be derived from it — fix the source controller's config", host=ctx.target.host.name)
        notes = []
        for spec, c in mine:
            url = with_database(main_url, spec.db_name(_svc(ctx, name)))
            if get_value(data, c.section, c.key) != url:
                data = set_value(data, c.section, c.key, url)
                notes.append(f"[{c.section}] {c.key} -> {ctx.target.db.address_for_services}:{ctx.target.db.port}/"
                             f"{spec.db_name(_svc(ctx, name))} (new in the target release)")
        return data, notes

    def shown(ctx: Any) -> list[str]:
        t = ctx.target
        return [f"set [{c.section}] {c.key} in {shlex.quote(f'{t.etc}/{name}/{c.file}')} to mysql+pymysql://USER:***@"
                f"{t.db.address_for_services}:{t.db.port}/{spec.db_name(_svc(ctx, name))} (server, USER and password "
                f"of the {main.db_name(_svc(ctx, name))} connection; new in the target release)"
                for spec, c in options]

    return ConfigEdit(apply, shown)


# ---------------------------------------------------------------------- ownership
def ownership_step(name: str) -> Step:
    def paths(ctx: UpgradeContext) -> list[str]:
        t = ctx.target
        return [p for p in (f"{t.etc}/{name}", f"{t.lib}/{name}") if t.host.exists(p)]

    def run(ctx: UpgradeContext) -> Result:
        owner = _svc(ctx, name).owner
        t = ctx.target
        before = {}
        for p in paths(ctx):
            before[p] = check(t.host, ["stat", "-c", "%u:%g", p], f"reading the owner of {p}").stdout.strip()
        for p in before:
            check(t.host, chown_argv(owner, p), f"chown of {p}")
        return {"owner": owner, "before": before}

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        # /etc/<name> comes back with its owners when install_config is undone; /var/lib needs this
        if not result:
            return
        for p, owner in result["before"].items():
            if p.startswith(f"{ctx.target.lib}/") and ctx.target.host.exists(p):
                check(ctx.target.host, chown_argv(owner, p), f"chown of {p}")

    def commands(ctx: UpgradeContext) -> list[str]:
        t, owner = ctx.target, _svc(ctx, name).owner
        paths = (f"{t.etc}/{name}", f"{t.lib}/{name}")
        return [command_text(chown_argv(owner, p)) + "   # if it exists" for p in paths]

    return Step(f"{name}.fix_ownership", "ownership_fixed", run, undo, host="target",
                describe=f"chown -R the service owner on /etc/{name} and /var/lib/{name} of the target",
                commands=commands)


# ---------------------------------------------------------------------- verification helpers
def http_ok(url: str, timeout: float = 60.0) -> int:
    """Poll *url* until it answers 2xx/3xx; returns the status or raises StepError with the last error."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (plan-given URL)
                return resp.status
        except urllib.error.HTTPError as exc:
            if exc.code < 400:
                return exc.code
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() > deadline:
            raise StepError(f"{url} did not answer within {timeout:.0f} s (last: {last})", host=url)
        time.sleep(0.5)


def run_manage(side: Side, argv: list[str], what: str, ok: tuple[int, ...] = (0,)) -> Any:
    return check(side.host, argv, what, ok=ok, timeout=1800)


def standard_steps(name: str, conns: tuple[ConfigKey, ...], schema: Step, verify: Step,
                   extra: Callable[[], list[Step]] | None = None, *, dbs: tuple[DBSpec, ...] | None = None,
                   units: UnitsFn | None = None, edits: tuple[ConfigEdit, ...] = (), convert_utf8: str = "",
                   before_schema: tuple[Step, ...] = (), after_schema: tuple[Step, ...] = (),
                   new_dbs: tuple[DBSpec, ...] = (), finish: tuple[Step, ...] = ()) -> list[Step]:
    """The runbook's sequence for one service with its own schema upgrade and verification.

    A service adds only what differs: its databases (``dbs``, default the one ``conns[0]`` names),
    the databases new in the target release (``new_dbs``: backed up if the target has them,
    created after the import, named in the config), units, config edits, the utf8 conversion on
    import, fix-up steps right before and after its schema upgrade, and ``finish`` steps (online
    data migrations) the runner runs once every service is verified.

    The target is prepared (its units stopped, its databases and configs backed up into the vault)
    before the source stops: the new controller serves nothing yet, so this changes nothing a
    client sees. They are ``prepare`` steps: the runner runs every service's before the first
    source stops, so the maintenance window holds none of them.
    """
    carried = dbs or _dbs_default(conns)
    if new_dbs:
        edits = (*edits, new_db_config_edit(name, new_dbs, carried)) if any(s.conns for s in new_dbs) else edits
    return [
        stop_step(name, "target", units),
        backup_target_step(name, conns[0], (*carried, *new_dbs) if new_dbs else dbs),
        stop_step(name, "source", units),
        dump_source_step(name, carried),
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


def api_verify_step(name: str, api: str, extra: Callable[[Any], Result] | None = None,
                    extra_shown: Callable[[Any], list[str]] | None = None, also: str = "") -> Step:
    """``<name>.verify``, the step that closes the service's maintenance window: its API answers on the
    plan's verify URL (2xx/3xx). The schema is not checked again here: the schema step checked it
    right after the migration, and nothing since (ownership, start) changes it. ``extra`` adds what
    only this service verifies (keystone: its key repositories and status check)."""

    def run(ctx: Any) -> Result:
        url = ctx.services[name].verify_url
        out: dict[str, Any] = {"url": url or None, "http_status": http_ok(url) if url else None}
        return {**out, **(extra(ctx) if extra else {})}

    def commands(ctx: Any) -> list[str]:
        url = ctx.services[name].verify_url
        return [f"GET {url}   # until it answers 2xx/3xx, 60 s at most" if url else "(no verify_url: no API check)",
                *(extra_shown(ctx) if extra_shown else [])]

    return Step(f"{name}.verify", "verified", run, host="target", commands=commands,
                describe=f"the {api} API answers on its verify URL{also}")


__all__ = ["ConfigKey", "api_verify_step", "DBSpec", "ConfigEdit", "standard_steps", "http_ok", "run_manage",
           "command_text"]
