"""Release commands as steps: render the release table's :class:`~services.releases.Cmd` rows for
a controller, run them with their exit-code contracts, and build the schema/status steps.

One renderer serves ``run`` and `upgrade plan`, so the plan shows exactly what runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from services.infra import mysql
from services.infra.host import check, command_text, noted
from services.releases import Cmd
from statemachine import failpoints
from statemachine.step import Result, Step, StepError

#: a runaway online-migration loop is a bug somewhere: stop after this many rounds
MAX_LOOPS = 100
TIMEOUT = 3600


Fill = Callable[[Any], dict[str, str]]


def tool(side: Any, name: str) -> str:
    """A command of the controller: under its ``bin`` (a venv, /usr/bin) or on its PATH."""
    return f"{side.bin.rstrip('/')}/{name}" if side.bin else name


def render(cmd: Cmd, side: Any, fill: dict[str, str] | None = None) -> list[str]:
    values = {"etc": side.etc.rstrip("/"), **(fill or {})}
    return [tool(side, cmd.tool), *(a.format(**values) for a in cmd.args)]


def shown(cmd: Cmd, side: Any, fill: dict[str, str] | None = None) -> str:
    """The command as `upgrade plan` prints it, with its condition and exit-code contract."""
    return command_text(render(cmd, side, fill)) + note(cmd)


def note(cmd: Cmd) -> str:
    """The comment `upgrade plan` shows after *cmd*: its condition and exit-code contract."""
    notes = []
    if cmd.when:
        notes.append(f"only if {cmd.when}")
    if cmd.loop:
        notes.append("repeated while it exits 1, until 0; any other exit fails")
    elif cmd.ok != (0,):
        notes.append(f"accepted exits {'/'.join(map(str, cmd.ok))}")
    return f"   # {'; '.join(notes)}" if notes else ""


def run_cmd(side: Any, cmd: Cmd, fill: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one command with its contract; returns rc, rounds and the output tail.

    ``loop`` commands (online data migrations) run until exit 0; exit 1 means "some migrated,
    run again", anything else (2 errors, 127 bad input) fails with the command's output.
    """
    argv = render(cmd, side, fill)
    what = command_text(argv)
    if not cmd.loop:
        with noted(note(cmd)):
            res = check(side.host, argv, what, ok=cmd.ok, timeout=TIMEOUT)
        return {"command": what, "rc": res.rc, "output": res.output[-2000:]}
    for round_ in range(1, MAX_LOOPS + 1):
        with noted(note(cmd)):
            res = side.host.run(argv, timeout=TIMEOUT)
        if res.rc == 0:
            return {"command": what, "rc": 0, "rounds": round_, "output": res.output[-2000:]}
        if res.rc != 1:
            raise StepError(f"`{what}` on {side.host.name} exited {res.rc} in round {round_} (0 = done, 1 = run "
                            "again; anything else needs the operator: read its output)",
                            host=side.host.name, command=what, rc=res.rc, output=res.output)
    raise StepError(f"`{what}` on {side.host.name} still exits 1 after {MAX_LOOPS} rounds", host=side.host.name,
                    command=what, rc=1)


def revisions(ep: Any, db: str) -> list[str]:
    """The schema version of *db*: alembic heads, else sqlalchemy-migrate rows (facts §1.3)."""
    tables = {r[0] for r in mysql.query(ep, "SELECT table_name FROM information_schema.tables WHERE "
                                            "table_schema=%s AND table_name IN ('alembic_version', "
                                            "'migrate_version')", (db,))}
    if "alembic_version" in tables:
        return sorted(r[0] for r in mysql.query(ep, "SELECT version_num FROM alembic_version", db=db))
    if "migrate_version" in tables:
        return sorted(f"{r[0]}:{r[1]}" for r in mysql.query(ep, "SELECT repository_id, version FROM "
                                                                 "migrate_version", db=db))
    return []


def commands_step(name: str, action: str, state: str, cmds: Sequence[Cmd], describe: str,
                  fill: Fill = lambda ctx: {}, dbs: Callable[[Any], list[str]] = lambda ctx: [],
                  skip: Callable[[Any, Cmd], str | None] = lambda ctx, cmd: None,
                  side_of: Callable[[Any], Any] = lambda ctx: ctx.target, host: str = "target",
                  shown_fill: Fill | None = None, kind: str = "other", provides: tuple[str, ...] = ()) -> Step:
    """A step that runs release commands in order on one controller, recording each command's rc
    and the schema revisions of *dbs* before and after. ``skip(ctx, cmd)`` returns a reason to
    leave a conditional command out (neutron's stamp when the DB is already under alembic).
    ``shown_fill`` fills the placeholders for `upgrade plan` when ``fill`` needs the controller
    (it reads a config file) or yields secrets: it must name what ``fill`` puts there, masked.

    The commands are idempotent (db sync, online migrations, status checks), so the step is;
    it has no undo of its own: the database it changes is restored by import_db's undo.

    Its commands in `upgrade plan` are what ``issue`` runs against recording hosts (``Step.acts``):
    every command, a conditional one with its condition noted (``skip`` asks the database, which
    `upgrade plan` never does), its placeholders filled by ``shown_fill``.
    """

    def issue(ctx: Any, values: dict[str, str], check_skip: bool) -> list[dict[str, Any]]:
        side = side_of(ctx)
        done: list[dict[str, Any]] = []
        for cmd in cmds:
            reason = skip(ctx, cmd) if check_skip else None
            if reason:
                done.append({"command": command_text(render(cmd, side, values)), "skipped": reason})
                continue
            done.append(run_cmd(side, cmd, values))
        return done

    def run(ctx: Any) -> Result:
        values = fill(ctx)
        before = {db: revisions(ctx.target.db, db) for db in dbs(ctx)}
        with failpoints.while_child_works(f"{name}.{action}:inside"):  # a crash mid-`db sync`
            done = issue(ctx, values, True)
        after = {db: revisions(ctx.target.db, db) for db in dbs(ctx)}
        return {"commands": done, "revisions_before": before, "revisions_after": after}

    return Step(f"{name}.{action}", state, run, host=host, describe=describe, kind=kind, provides=provides,
                acts=lambda ctx: issue(ctx, (shown_fill or fill)(ctx), False))


def schema_step(name: str, cmds: Sequence[Cmd], describe: str, **kw: Any) -> Step:
    """``<name>.upgrade_schema``: the target release's schema commands (a :func:`commands_step` of kind
    ``schema``); it provides ``schema`` (what waits for the service's migrated databases reads)."""
    return commands_step(name, "upgrade_schema", "schema_upgraded", cmds, describe, kind="schema",
                         provides=("schema",), **kw)


def split_online(cmds: Sequence[Cmd] | None) -> tuple[list[Cmd], list[Cmd]]:
    """A release's schema commands -> (the ones before the start, its online data migrations). The
    releases document the online migrations as run with the services up (facts §4.1 step 7, §7.1
    step 5): they become a finishing step, after the last API is verified."""
    cmds = cmds or ()
    return [c for c in cmds if not c.loop], [c for c in cmds if c.loop]


def online_migrations_step(name: str, cmds: Sequence[Cmd], dbs: Callable[[Any], list[str]]) -> Step:
    """``<name>.online_migrations``: the target release's online data migrations until exit 0, as a
    finishing step (``Step.finish``): the service already serves, so they run outside the window."""
    step = commands_step(name, "online_migrations", "online_migrated", cmds,
                         "online_data_migrations until exit 0, with the service up (outside the window)",
                         dbs=dbs)
    return replace(step, finish=True, kind="migrate")


_CHECK = re.compile(r"^\|\s*Check:\s*(?P<name>.*?)\s*\|\s*$")
_RESULT = re.compile(r"^\|\s*Result:\s*(?P<result>\w+)")


def failed_checks(output: str) -> list[str]:
    """Names of the checks whose result is Failure in oslo.upgradecheck's table."""
    out, name = [], None
    for line in output.splitlines():
        if m := _CHECK.match(line):
            name = m["name"]
        elif (m := _RESULT.match(line)) and name is not None:
            if m["result"].lower() == "failure":
                out.append(name)
            name = None
    return out


def status_run(ctx: Any, cmd: Cmd, values: dict[str, str] | None = None,
               fallback: Callable[[Any, Any], dict[str, Any] | None] | None = None,
               accept: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``<service>-status upgrade check`` (oslo.upgradecheck, facts §1.2): 0 success, 1 warning
    (recorded, the run goes on), 2 failure and 255 error raise with the check's output.
    ``fallback(ctx, completed)`` may re-run the check another way when the stock command is
    known to be broken (keystone-status from a venv, lab-recipes §4.5)."""
    t = ctx.target
    argv = render(cmd, t, values)
    with noted(note(cmd) + STATUS_NOTE):
        res = t.host.run(argv, timeout=TIMEOUT)
    out: dict[str, Any] = {"command": command_text(argv), "rc": res.rc}
    if fallback is not None:
        alt = fallback(ctx, res)
        if alt is not None:
            res = alt.pop("_completed")
            out.update(alt)
    meaning = {0: "success", 1: "warning", 2: "failure", 255: "error"}.get(res.rc, "unknown")
    out.update({"rc": res.rc, "meaning": meaning, "output": res.output[-2000:]})
    failed = failed_checks(res.output)
    out["failed_checks"] = failed
    accepted = set(accept)
    if res.rc == 2 and failed and set(failed) <= accepted:
        out["accepted_failures"] = failed  # the plan accepts exactly these: recorded, the run goes on
        return out
    if res.rc not in cmd.ok:
        raise StepError(f"`{out['command']}` on {t.host.name} reports {meaning} (exit {res.rc}); fix what "
                        "it names, then `upgrade resume`", host=t.host.name, command=out["command"],
                        rc=res.rc, output=res.output)
    return out


STATUS_NOTE = "   # 0 success, 1 warning (recorded), 2 failure, 255 error"


def status_shown(cmd: Cmd, side: Any, values: dict[str, str] | None = None) -> str:
    return shown(cmd, side, values) + STATUS_NOTE


def status_step(name: str, cmd: Cmd, fill: Fill = lambda ctx: {},
                fallback: Callable[[Any, Any], dict[str, Any] | None] | None = None) -> Step:
    """The status check as a step of its own (before the service starts, as nova's docs order it). Its
    commands in `upgrade plan` are what ``run`` issues against a recording host (``Step.acts``; the
    recorder answers 0, so a ``fallback`` never runs there)."""
    def run(ctx: Any) -> Result:
        return status_run(ctx, cmd, fill(ctx), fallback, ctx.services[name].options.get("status_accept") or ())

    return Step(f"{name}.status_check", "status_checked", run, kind="status",
                host="target", describe=f"{cmd.tool} upgrade check of the target release",
                acts=lambda ctx: status_run(ctx, cmd, fill(ctx)))


def run_manage(side: Any, argv: list[str], what: str, ok: tuple[int, ...] = (0,)) -> Any:
    """One hand-built command of a service's own tool on *side* (keystone's db_sync --check)."""
    return check(side.host, argv, what, ok=ok, timeout=1800)
