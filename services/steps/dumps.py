"""Dumps into the vault: the source's databases, and the target's databases, users and config as they
were before the upgrade touched them (what a revert puts back)."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from journal import vault
from services.infra import mysql
from services.infra.context import UpgradeContext
from services.infra.host import command_text, wait_pipe
from services.infra.overhead import Tally
from services.steps.argv import tar_out
from services.steps.databases import (
    DUMP_TOOL,
    VAULT_SHOWN,
    ConfigKey,
    DBSpec,
    db_credentials,
    default_dbs,
    dump_shown,
    svc,
)
from statemachine.step import Result, Step


# ---------------------------------------------------------------------- dump / backup
def dump_source_step(name: str, dbs: tuple[DBSpec, ...] | None = None) -> Step:
    """Dump the source's databases into the vault (provides ``source_dump``). Its commands are written
    out: it streams through the vault and reads the tables' counts and checksums over a DB connection,
    which no recording host stands in for (the same holds for the backup, import and restore steps)."""
    def run(ctx: UpgradeContext) -> Result:
        st = svc(ctx, name)
        ep = ctx.source.db
        out: dict[str, Any] = {"databases": {}}
        tally = Tally()
        for spec in dbs or default_dbs(()):
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
        for spec in dbs or default_dbs(()):
            db = spec.db_name(svc(ctx, name))
            out += [f"SQL: SELECT COUNT(*), CHECKSUM TABLE, table_collation for every table of {db}",
                    dump_shown(db, f"{name}-source-db{spec.suffix()}")]
        return out

    return Step(f"{name}.dump_source", "source_dumped", run, host="source", kind="dump", provides=("source_dump",),
                describe=f"dump the {name} database(s) of the source controller into the vault", commands=commands)


def backup_target_step(name: str, conn: ConfigKey, dbs: tuple[DBSpec, ...] | None = None) -> Step:
    specs = dbs or default_dbs((conn,))

    def run(ctx: UpgradeContext) -> Result:
        st = svc(ctx, name)
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
        st = svc(ctx, name)
        hosts = ", ".join(f"USER@{h!r}" for h in st.grant_hosts)
        return [*(dump_shown(spec.db_name(st), f"{name}-target-db{spec.suffix()}") + "   # if the database exists"
                  for spec in specs),
                f"SQL: SHOW CREATE USER, SHOW GRANTS for {hosts} (USER from the source config) | encrypt > "
                f"{VAULT_SHOWN}/{name}-target-users.osuv",
                f"{command_text(tar_out(ctx.target.etc, name))} | encrypt > {VAULT_SHOWN}/{name}-target-config.osuv"
                "   # if it exists"]

    return Step(f"{name}.backup_target", "target_backed_up", run, host="target", kind="backup",
                provides=("target_backup",),
                describe=f"back up the {name} database, users and /etc/{name} of the target controller into the vault",
                commands=commands, prepare=True)
