"""The runbook's generic steps, shared by every service (DESIGN.md §3, the seed's "general methodology").

stop source → dump source → stop target → back up target → carry config over → import →
<service-specific schema upgrade> → ownership → start → <service-specific verification>.
Each builder returns a :class:`Step` whose ``undo`` is the inverse of its ``run`` and uses
only the step's own result and the results of earlier steps.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from journal import vault
from services import control, mysql
from services.config import db_url_credentials, get_value, rewrite_db_url, rewrite_paths, set_value
from services.context import UpgradeContext
from services.host import check, command_text, wait_pipe
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
DEFAULTS_SHOWN = "<0600 defaults file>"
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
    return f"{command_text(mysql.dump_argv(DUMP_TOOL, DEFAULTS_SHOWN, db))} | encrypt > {VAULT_SHOWN}/{artifact}.osuv"


def _import_shown(db: str, artifact: str) -> str:
    return f"decrypt {VAULT_SHOWN}/{artifact}.osuv | {command_text(mysql.import_argv(CLIENT_TOOL, DEFAULTS_SHOWN, db))}"


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


# ---------------------------------------------------------------------- stop / start
def stop_step(name: str, role: str) -> Step:
    def side(ctx: UpgradeContext) -> Side:
        return ctx.source if role == "source" else ctx.target

    def run(ctx: UpgradeContext) -> Result:
        unit = _svc(ctx, name).unit
        was = control.is_running(side(ctx), unit)
        if was:
            control.stop(side(ctx), unit)
        if control.is_running(side(ctx), unit):
            raise StepError(f"{unit} on {side(ctx).host.name} still runs after stop", host=side(ctx).host.name)
        return {"unit": unit, "was_running": was}

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        # the old controller must serve again after a revert; a target service is restarted
        # only if it ran before the upgrade touched it
        if result is None and role == "target":
            return
        if result is None or result["was_running"]:
            unit = _svc(ctx, name).unit
            if not control.is_running(side(ctx), unit):
                control.start(side(ctx), unit)

    def probe(ctx: UpgradeContext) -> bool:
        return not control.is_running(side(ctx), _svc(ctx, name).unit)

    def commands(ctx: UpgradeContext) -> list[str]:
        unit = _svc(ctx, name).unit
        return [command_text(side(ctx).control.argv("status", unit)),
                command_text(side(ctx).control.argv("stop", unit)) + "   # if it runs"]

    return Step(f"{name}.stop_{role}", f"{role}_stopped", run, undo, probe, host=role,
                describe=f"stop {name} on the {role} controller", commands=commands)


def start_target_step(name: str) -> Step:
    def run(ctx: UpgradeContext) -> Result:
        unit = _svc(ctx, name).unit
        control.start(ctx.target, unit)
        return {"unit": unit}

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        unit = _svc(ctx, name).unit
        if control.is_running(ctx.target, unit):
            control.stop(ctx.target, unit)

    def probe(ctx: UpgradeContext) -> bool:
        return control.is_running(ctx.target, _svc(ctx, name).unit)

    def commands(ctx: UpgradeContext) -> list[str]:
        return [command_text(ctx.target.control.argv("start", _svc(ctx, name).unit))]

    return Step(f"{name}.start_target", "target_started", run, undo, probe, host="target",
                describe=f"start {name} on the target controller", commands=commands)


# ---------------------------------------------------------------------- dump / backup
def dump_source_step(name: str) -> Step:
    def run(ctx: UpgradeContext) -> Result:
        st = _svc(ctx, name)
        ep = ctx.source.db
        charset, collation = mysql.db_charset(ep, st.db_name)
        sums = mysql.checksums(ep, st.db_name)
        path = ctx.artifact_path(f"{name}-source-db")
        stats = mysql.dump_to_vault(ctx.source.host, ep, DUMP_TOOL, st.db_name, str(path),
                                    ctx.key, inside=lambda: ctx.failpoint(f"{name}.dump_source:inside"),
                                    progress=ctx.progress)
        art = ctx.record_artifact(f"{ctx.run_id}/{name}-source-db", "dump", name, ctx.source.host.name, path, stats)
        return {"artifact": art, "charset": charset, "collation": collation, "checksums": sums,
                "tables": len(sums), "rows": sum(v[0] or 0 for v in sums.values())}

    def commands(ctx: UpgradeContext) -> list[str]:
        db = _svc(ctx, name).db_name
        return [f"SQL: SELECT COUNT(*), CHECKSUM TABLE for every table of {db}",
                _dump_shown(db, f"{name}-source-db")]

    return Step(f"{name}.dump_source", "source_dumped", run, host="source",
                describe=f"dump the {name} database of the source controller into the vault", commands=commands)


def backup_target_step(name: str, conn: ConfigKey) -> Step:
    def run(ctx: UpgradeContext) -> Result:
        st = _svc(ctx, name)
        t = ctx.target
        out: dict[str, Any] = {}
        if mysql.db_exists(t.db, st.db_name):
            charset, collation = mysql.db_charset(t.db, st.db_name)
            path = ctx.artifact_path(f"{name}-target-db")
            stats = mysql.dump_to_vault(t.host, t.db, DUMP_TOOL, st.db_name, str(path), ctx.key,
                                        progress=ctx.progress)
            out["db"] = {"existed": True, "charset": charset, "collation": collation,
                         "artifact": ctx.record_artifact(f"{ctx.run_id}/{name}-target-db", "backup", name,
                                                         t.host.name, path, stats)}
        else:
            out["db"] = {"existed": False}
        user, _pw = service_db_credentials(ctx, name, conn)
        stmts = mysql.user_statements(t.db, user, st.grant_hosts)
        upath = ctx.artifact_path(f"{name}-target-users")
        ustats = vault.encrypt_bytes("\n".join(stmts).encode(), upath, ctx.key)
        out["users"] = {"user": user, "artifact": ctx.record_artifact(
            f"{ctx.run_id}/{name}-target-users", "backup", name, t.host.name, upath, ustats)}
        cdir = f"{t.etc}/{name}"
        if t.host.exists(cdir):
            cpath = ctx.artifact_path(f"{name}-target-config")
            argv = tar_out(t.etc, name)
            proc = t.host.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            cstats = vault.encrypt_stream(proc.stdout, cpath, ctx.key)
            wait_pipe(proc, t.host, argv, f"backup of {cdir}")
            out["config"] = {"existed": True, "artifact": ctx.record_artifact(
                f"{ctx.run_id}/{name}-target-config", "backup", name, t.host.name, cpath, cstats)}
        else:
            out["config"] = {"existed": False}
        return out

    def commands(ctx: UpgradeContext) -> list[str]:
        st = _svc(ctx, name)
        hosts = ", ".join(f"USER@{h!r}" for h in st.grant_hosts)
        return [_dump_shown(st.db_name, f"{name}-target-db") + "   # if the database exists",
                f"SQL: SHOW CREATE USER, SHOW GRANTS for {hosts} (USER from the source config) | encrypt > "
                f"{VAULT_SHOWN}/{name}-target-users.osuv",
                f"{command_text(tar_out(ctx.target.etc, name))} | encrypt > {VAULT_SHOWN}/{name}-target-config.osuv"
                "   # if it exists"]

    return Step(f"{name}.backup_target", "target_backed_up", run, host="target",
                describe=f"back up the {name} database, users and /etc/{name} of the target controller into the vault",
                commands=commands)


# ---------------------------------------------------------------------- config
def _copy_tree(ctx: UpgradeContext, name: str) -> None:
    """Stream source:/etc/<name> into target:/etc/<name> (files of both: the source's win)."""
    s, t = ctx.source, ctx.target
    check(t.host, ["mkdir", "-p", f"{t.etc}/{name}"], f"creating {t.etc}/{name}")
    out_argv = tar_out(s.etc, name)
    in_argv = tar_in(t.etc)
    src = s.host.popen(out_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dst = t.host.popen(in_argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while chunk := src.stdout.read(1 << 16):
            dst.stdin.write(chunk)
        dst.stdin.close()
    except BaseException:
        src.kill()
        dst.kill()
        raise
    wait_pipe(src, s.host, out_argv, f"reading {s.etc}/{name}")
    wait_pipe(dst, t.host, in_argv, f"writing {t.etc}/{name}")


def install_config_step(name: str, conns: tuple[ConfigKey, ...]) -> Step:
    def run(ctx: UpgradeContext) -> Result:
        st = _svc(ctx, name)
        t = ctx.target
        user, password = service_db_credentials(ctx, name, conns[0])
        _copy_tree(ctx, name)
        ctx.failpoint(f"{name}.install_config:inside")
        changed: list[dict[str, Any]] = []
        mapping = {ctx.source.layout()[k]: v for k, v in t.layout().items()}
        for f in sorted({c.file for c in conns}):
            path = f"{t.etc}/{name}/{f}"
            data, moved = rewrite_paths(t.host.read_bytes(path), mapping)
            if moved:
                t.host.write_bytes(path, data, mode=0o640)
                changed.append({"file": path, "paths_rewritten": moved})
        for c in conns:
            path = f"{t.etc}/{name}/{c.file}"
            data = t.host.read_bytes(path)
            url = get_value(data, c.section, c.key)
            if not url:
                continue
            new = rewrite_db_url(url, t.db.address_for_services, t.db.port, user, password)
            _u, _p, db = db_url_credentials(new)
            if db != st.db_name:
                raise StepError(f"{path}: [{c.section}] {c.key} names database {db!r}, the plan says "
                                f"{st.db_name!r} — fix services.{name}.db_name in the plan", host=t.host.name)
            t.host.write_bytes(path, set_value(data, c.section, c.key, new), mode=0o640)
            changed.append({"file": path, "option": f"[{c.section}] {c.key}",
                            "db": f"{t.db.address_for_services}:{t.db.port}/{db}"})
        return {"rewritten": changed}

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        restore_config(ctx, name)

    def commands(ctx: UpgradeContext) -> list[str]:
        s, t = ctx.source, ctx.target
        db = _svc(ctx, name).db_name
        out = [command_text(["mkdir", "-p", f"{t.etc}/{name}"]),
               f"source: {command_text(tar_out(s.etc, name))} | target: {command_text(tar_in(t.etc))}"]
        moved = [f"{a} -> {b}" for a, b in zip(s.layout().values(), t.layout().values(), strict=True) if a != b]
        for f in sorted({c.file for c in conns}):
            if moved:
                out.append(f"rewrite paths in {t.etc}/{name}/{f}: {', '.join(moved)}")
        for c in conns:
            out.append(f"set [{c.section}] {c.key} in {t.etc}/{name}/{c.file} to "
                       f"mysql+pymysql://USER:***@{t.db.address_for_services}:{t.db.port}/{db}"
                       " (USER and password from the source config or the plan)")
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
    vault.verify_artifact(art["path"], ctx.key, art["bytes"], art["sha256"])
    argv = tar_in(t.etc)
    proc = t.host.popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    vault.decrypt_stream(art["path"], ctx.key, proc.stdin)
    proc.stdin.close()
    wait_pipe(proc, t.host, argv, f"restoring {cdir}")


# ---------------------------------------------------------------------- import
def import_db_step(name: str, conn: ConfigKey) -> Step:
    def run(ctx: UpgradeContext) -> Result:
        st = _svc(ctx, name)
        t = ctx.target
        dump = ctx.results[f"{name}.dump_source"]
        user, password = service_db_credentials(ctx, name, conn)
        art = dump["artifact"]
        vault.verify_artifact(art["path"], ctx.key, art["bytes"], art["sha256"])
        mysql.recreate_db(t.db, st.db_name, dump["charset"], dump["collation"])
        ctx.failpoint(f"{name}.import_db:inside")
        mysql.import_from_vault(t.host, t.db, CLIENT_TOOL, st.db_name, art["path"], ctx.key,
                                art["bytes"], art["sha256"], progress=ctx.progress)
        mysql.grant_service_user(t.db, st.db_name, user, password, st.grant_hosts)
        after = mysql.checksums(t.db, st.db_name)
        compare_checksums(dump["checksums"], after, f"{t.db.address}:{t.db.port}/{st.db_name}")
        return {"tables": len(after), "rows": sum(v[0] or 0 for v in after.values()), "checksums_equal": True,
                "grants": [f"{user}@{h}" for h in st.grant_hosts]}

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        restore_db(ctx, name)

    def commands(ctx: UpgradeContext) -> list[str]:
        st = _svc(ctx, name)
        db = mysql.quote_ident(st.db_name)
        return [f"SQL: DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} (the source's charset and collation)",
                _import_shown(st.db_name, f"{name}-source-db"),
                *(f"SQL: CREATE USER IF NOT EXISTS / ALTER USER USER@{h!r}; GRANT ALL PRIVILEGES ON {db}.* "
                  f"TO USER@{h!r}" for h in st.grant_hosts),
                f"SQL: SELECT COUNT(*), CHECKSUM TABLE for every table of {st.db_name}, compared with the source"]

    return Step(f"{name}.import_db", "db_imported", run, undo, host="target",
                describe=f"drop, create and import the {name} database on the target; recreate its grants",
                commands=commands)


def compare_checksums(before: dict[str, list], after: dict[str, list], where: str) -> None:
    bad = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
    if bad:
        detail = ", ".join(f"{t} (source {before.get(t)}, target {after.get(t)})" for t in bad[:10])
        raise StepError(f"after import, {len(bad)} table(s) of {where} differ from the source: {detail}",
                        host=where)


def restore_db(ctx: UpgradeContext, name: str) -> None:
    st = _svc(ctx, name)
    t = ctx.target
    backup = ctx.results[f"{name}.backup_target"]
    db = backup["db"]
    if db["existed"]:
        art = db["artifact"]
        vault.verify_artifact(art["path"], ctx.key, art["bytes"], art["sha256"])
        mysql.recreate_db(t.db, st.db_name, db["charset"], db["collation"])
        mysql.import_from_vault(t.host, t.db, CLIENT_TOOL, st.db_name, art["path"], ctx.key,
                                art["bytes"], art["sha256"], progress=ctx.progress)
    else:
        mysql.drop_db(t.db, st.db_name)
    users = backup["users"]
    stmts = [s for s in vault.decrypt_bytes(users["artifact"]["path"], ctx.key).decode().split("\n") if s]
    mysql.restore_users(t.db, users["user"], st.grant_hosts, stmts)


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
                   extra: Callable[[], list[Step]] | None = None) -> list[Step]:
    """The runbook's sequence for one service with its own schema upgrade and verification."""
    return [
        stop_step(name, "source"),
        dump_source_step(name),
        stop_step(name, "target"),
        backup_target_step(name, conns[0]),
        install_config_step(name, conns),
        import_db_step(name, conns[0]),
        schema,
        ownership_step(name),
        start_target_step(name),
        verify,
        *(extra() if extra else []),
    ]


__all__ = ["ConfigKey", "standard_steps", "http_ok", "run_manage", "command_text"]
