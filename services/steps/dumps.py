"""Dumps into the vault: the source's databases, and the target's databases, users and config as they
were before the upgrade touched them (what a revert puts back)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from journal import vault
from services.infra import mysql
from services.infra.context import UpgradeContext
from services.infra.host import command_text
from services.infra.overhead import Tally
from services.steps.argv import tar_out
from services.steps.configs import backup_dir
from services.steps.databases import (
    CLIENT_TOOL,
    DUMP_TOOL,
    VAULT_SHOWN,
    ConfigKey,
    DBSpec,
    db_credentials,
    default_dbs,
    dump_shown,
    svc,
)
from services.steps.imports import compare_checksums, existed_on_target, restore_one_db, target_charset
from statemachine.deps import needed
from statemachine.step import Result, Step, StepError


# ---------------------------------------------------------------------- dump / backup
def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """*fn(*args)* and the seconds it took (work done beside the data, whose time the step does not wait)."""
    started = time.monotonic()
    return fn(*args), time.monotonic() - started


#: with ``dump_streams = 0`` a stream is worth its processes only from this many bytes of table on
AUTO_STREAM_BYTES = 64 << 20
#: and there are at most this many per database
AUTO_STREAMS_MOST = 8


def host_cores(host: Any) -> int:
    """The cores of a controller (``nproc`` there); 1 when it cannot tell."""
    try:
        res = host.run(["nproc"], timeout=30)
        return max(1, int(res.stdout.strip())) if res.rc == 0 else 1
    except (ValueError, OSError, StepError):
        return 1


def stream_count(ctx: UpgradeContext, tables: mysql.Tables) -> int:
    """How many streams a database is cut into: the plan's ``dump_streams``, or (0) the cores of the smaller
    controller, fewer for a small database; one for a database with views or sequences (their definitions
    name tables another stream may not have made yet) and at most one per table."""
    if tables.others or len(tables.sizes) < 2:
        return 1
    n = ctx.dump_streams
    if n <= 0:
        worth = -(-sum(tables.sizes.values()) // AUTO_STREAM_BYTES)
        n = min(host_cores(ctx.source.host), host_cores(ctx.target.host), AUTO_STREAMS_MOST, worth)
    return max(1, min(n, len(tables.sizes)))


def cut_by_table(sizes: dict[str, int], n: int) -> list[tuple[str, ...]]:
    """*n* streams of tables, largest table first, each to the stream with the fewest bytes so far: the
    streams end close together, and the largest table starts at once."""
    bins: list[tuple[int, list[str]]] = [(0, []) for _ in range(n)]
    for table in sorted(sizes, key=lambda t: (-sizes[t], t)):
        i = min(range(n), key=lambda k: (bins[k][0], k))
        bins[i] = (bins[i][0] + sizes[table], [*bins[i][1], table])
    return [tuple(b[1]) for b in bins if b[1]]


def dump_source_step(name: str, dbs: tuple[DBSpec, ...] | None = None, convert_utf8: str = "") -> Step:
    """Dump the source's databases into the vault (provides ``source_dump``) and, read once, into the
    target's databases at the same time: the import need not wait for the whole dump, nor read it back.

    Each database goes in one stream or several cut by table (``dump_streams``), largest first; the source
    is stopped (stop_source checked it), so every stream reads the same data. Each stream is its own
    artifact; as each one ends its artifact is read back whole (authenticated, size and sha256 as written)
    and recorded, and its tables' row counts and checksums are compared on both sides, the source's read
    while it dumps: the step is done only when every artifact is complete, checked and recorded and every
    table is equal. A failure (the dump, the vault, the import, a check) stops every stream and puts the
    target database back from backup_target's dump; a kill is resumed by running the step again (it
    drops and recreates the target database first) or reverted by its undo, which does the same restore.

    A database with a table the import converts to utf8 goes into the vault only: import_db imports it
    from there and converts it. Its commands are written out: it streams through the vault and reads the
    tables' counts and checksums over a DB connection, which no recording host stands in for (the same
    holds for the backup, import and restore steps)."""
    specs = dbs or default_dbs(())

    def run(ctx: UpgradeContext) -> Result:
        st = svc(ctx, name)
        out: dict[str, Any] = {"databases": {}}
        tally = Tally()
        touched: list[str] = []
        try:
            for spec in specs:
                db = spec.db_name(st)
                out["databases"][db] = _dump_db(ctx, name, spec, db, convert_utf8, tally, touched)
        except BaseException as exc:
            if touched:  # never a half-imported target database: back to what backup_target found
                try:
                    restore_dbs(ctx, name, touched)
                except Exception as again:
                    raise StepError(f"{exc}; then the target's database(s) {', '.join(touched)} could not be put "
                                    f"back from the backup: {again} — `upgrade revert` (or `upgrade resume` once "
                                    "the cause is fixed) does it again", host=ctx.target.host.name) from exc
            raise
        out["tables"] = sum(d["tables"] for d in out["databases"].values())
        out["rows"] = sum(d["rows"] for d in out["databases"].values())
        out["overhead"] = tally.result()
        return out

    def undo(ctx: UpgradeContext, result: Result | None) -> None:
        dbs_ = result["databases"] if result else None
        restore_dbs(ctx, name, [spec.db_name(svc(ctx, name)) for spec in specs
                                if dbs_ is None or dbs_.get(spec.db_name(svc(ctx, name)), {}).get("imported", True)])

    def commands(ctx: UpgradeContext) -> list[str]:
        out = []
        for spec in specs:
            db = spec.db_name(svc(ctx, name))
            out += [f"SQL: SELECT COUNT(*), CHECKSUM TABLE, table_collation for every table of {db}",
                    dump_shown(db, f"{name}-source-db{spec.suffix()}"),
                    f"  and as it is read: | {command_text(mysql.import_argv(CLIENT_TOOL, db, unbuffered=True))}"
                    f"   # into the target's {db}, dropped and created first (unless a table of it is converted to "
                    "utf8); by table in `dump_streams` streams, each its own artifact"]
        return out

    return Step(f"{name}.dump_source", "source_dumped", run, undo, host="source", undo_host="target", kind="dump",
                requires=("target_backup",), provides=("source_dump",),
                describe=f"dump the {name} database(s) of the source controller into the vault and into the target",
                commands=commands)


def restore_dbs(ctx: UpgradeContext, name: str, names: list[str]) -> None:
    """Put the target databases *names* back as backup_target found them (each artifact checked first)."""
    for dbname in names:
        if existed_on_target(ctx, name, dbname):
            ctx.verified_artifact(needed(ctx.results, name, "target_backup")["databases"][dbname]["artifact"],
                                  f"{name}.backup_target")
    for dbname in names:
        restore_one_db(ctx, name, dbname, verified=True)


def _dump_db(ctx: UpgradeContext, name: str, spec: DBSpec, db: str, convert_utf8: str, tally: Tally,
             touched: list[str]) -> dict[str, Any]:
    """One database: its streams side by side, each checked and recorded as it ends (see dump_source_step)."""
    ep, t = ctx.source.db, ctx.target
    with tally.timed("checks"):  # the charset audit's collations
        facts = mysql.db_facts(ep, db, sums=False)
    non_utf8 = {tb: c for tb, c in facts.collations.items() if not c.startswith("utf8")}
    into = not (convert_utf8 and non_utf8)
    tables = mysql.tables_of(ep, db)
    n = stream_count(ctx, tables)
    streams = cut_by_table(tables.sizes, n) if n > 1 else [tuple(sorted(tables.sizes))]
    base = f"{name}-source-db{spec.suffix()}"
    names = [base] if len(streams) == 1 else [f"{base}.{k + 1}" for k in range(len(streams))]
    where = f"{t.db.address}:{t.db.port}/{db}"
    if into:
        touched.append(db)
        mysql.recreate_db(t.db, db, *target_charset(facts.charset, facts.collation, convert_utf8))
    children = mysql.Children()
    progress = ctx.progress_for(name)
    lock = threading.Lock()

    moved: list[float] = []   # when each stream's data was in (dump and import ended)
    closed: list[float] = []  # when each stream's checks ended (its verification may end later)

    def one(k: int) -> tuple[dict[str, Any], dict[str, list[int | None]]]:
        tabs = streams[k]
        path = ctx.artifact_path(names[k])
        # the checks of both sides run beside the data: the source's (stopped: the same rows as the dump) from the
        # start, the target's table by table as each one's import ends, the artifact's read-back as soon as it is
        # written; what the step waits for after the data is in is the last table's check and the read-back's end
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="beside") as beside:
            source_sums = beside.submit(_timed, mysql.checksums, ep, db, list(tabs))
            target = mysql.TableChecks(t.db, db) if into else None
            readback: list[Any] = []
            hook = (lambda: ctx.failpoint(f"{name}.dump_source:inside")) if k == 0 else \
                (lambda: ctx.failpoint(f"{name}.dump_source:table_stream"))
            try:
                stats = mysql.dump_streamed(
                    (ctx.source.host, ep), (t.host, t.db) if into else None, DUMP_TOOL, CLIENT_TOOL, db, str(path),
                    ctx.key, tables=tabs if n > 1 else (), objects=k == 0, inside=hook, progress=progress,
                    children=children, table_done=target.done if target else None,
                    written=lambda st: readback.append(beside.submit(_timed, vault.verify_artifact, path, ctx.key,
                                                                     st.bytes, st.sha256)))
                moved_at = time.monotonic()
                ctx.failpoint(f"{name}.dump_source:written")
                sums, source_seconds = source_sums.result()
                if target is not None:
                    compare_checksums(sums, target.finish(list(tabs)), where)
            finally:
                if target is not None:
                    target.stop()  # its thread ends (at once when finish ran)
            checks_end = time.monotonic()
            try:  # read back whole before it is recorded: what the journal names is what is on disk
                _, checked = readback[0].result() if readback else _timed(vault.verify_artifact, path, ctx.key,
                                                                          stats.bytes, stats.sha256)
            except vault.VaultError as exc:
                raise StepError(f"the artifact of {db} just written is not what was dumped: {exc}") from None
            art = ctx.record_artifact(f"{ctx.run_id}/{names[k]}", f"{name}.dump_source", "dump", name,
                                      ctx.source.host.name, path, stats)
        with lock:
            moved.append(moved_at)
            closed.append(checks_end)
            tally.work("vault", stats.seconds + checked)
            tally.work("checks", source_seconds + (target.seconds if target else 0.0))
        return art, sums

    first: BaseException | None = None
    with ThreadPoolExecutor(max_workers=len(streams), thread_name_prefix="stream") as pool:
        futures = [pool.submit(one, k) for k in range(len(streams))]
        try:
            for fut in as_completed(futures):
                if fut.exception() is not None and first is None:
                    first = fut.exception()
                    children.kill_all()  # the other streams stop now; the first failure is the one reported
        except BaseException:  # Ctrl-C while the streams run: they stop too
            children.kill_all()
            raise
    if first is not None:
        raise first
    # the step's wait for its own work: from the last stream's data in to the end of the checks, then of the
    # read-backs (they ran side by side); the rest of it ran beside the data
    tail = time.monotonic() - max(moved)
    waited_checks = min(tail, max(0.0, max(closed) - max(moved)))
    tally.add("checks", waited_checks)
    tally.add("vault", tail - waited_checks)
    arts = [f.result()[0] for f in futures]
    sums = {tb: v for f in futures for tb, v in f.result()[1].items()}
    return {"artifact": arts[0], **({"artifacts": arts, "streams": [list(s) for s in streams]} if n > 1 else {}),
            "imported": into, "charset": facts.charset, "collation": facts.collation, "checksums": sums,
            "non_utf8_tables": non_utf8, "tables": len(sums), "rows": sum(v[0] or 0 for v in sums.values())}


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
        out["config"] = backup_dir(ctx, t, name, f"{name}-target-config", f"{name}.backup_target")
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
