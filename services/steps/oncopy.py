"""An old release's ``*-manage`` command on the imported copy, never on the old controller's database.

Some work must be done by the source release's own code on the data it left (cinder's previous online
data migrations, facts §7.1; Havana keystone's ``token_flush``, §2.4), so it runs on the source host —
but against the copy on the new DB server only. The address the source host is given may lead
elsewhere (``127.0.0.1`` on the old controller is its own MySQL), so:

- the command logs in as a one-off DB user created for the step on the target alone (random password,
  granted only the service's database, dropped after the step, and by its undo after a kill): whatever
  the address resolves to, no other server lets it in, the old controller's own included;
- before the command runs, that user asks the server it reaches from the source host for its identity
  (``@@server_uuid``/hostname + datadir + port, Galera cluster), which must be the claimed target's;
  otherwise the step fails naming what it reached and the fix, and nothing ran.

The command's config is a 0600 file in a private directory on the source host holding only
``[database] connection``; it is removed after the command.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any

from services import releases
from services.infra import mysql
from services.infra.config import get_value, rewrite_db_url, with_database
from services.infra.settings import DBEndpoint
from services.steps.commands import run_cmd, shown
from statemachine.step import Result, Step, StepError

#: the host patterns of the one-off DB user
HOSTS = ("%", "localhost")


def one_off_user(ctx: Any, step: str) -> str:
    """The DB user only the target has, for this run and step: a re-run after a kill finds (and drops) it."""
    return "osu_prev_" + hashlib.sha256(f"{ctx.run_id}/{step}".encode()).hexdigest()[:12]


def drop_user(ctx: Any, step: str) -> None:
    conn = mysql.connect(ctx.target.db)
    try:
        with conn.cursor() as cur:
            for h in HOSTS:
                cur.execute("DROP USER IF EXISTS %s@%s", (one_off_user(ctx, step), h))
    finally:
        conn.close()


def reaches_target(ctx: Any, step: str, ep: DBEndpoint, tool: str) -> None:
    """*ep* (a user only the target has) reaches, from the source host, the DB server this run claimed."""
    s, t = ctx.source, ctx.target
    fix = (f"set `target.db.address` to an address the old controller {s.host.name} reaches the new controller's "
           "DB server by (not a loopback address when the controllers are two machines), then `upgrade resume` — "
           f"{tool} of the old release was not run, nothing was written")
    try:
        there = mysql.server_identity_from(s.host, ep)
    except StepError as exc:
        raise StepError(f"{step}: from the old controller {s.host.name}, {ep.address}:{ep.port} is not the new "
                        f"controller's DB server: the run's one-off DB user {ep.admin_user}, which only that server "
                        f"has, cannot log in there (another server, perhaps the old controller's own) — {fix}",
                        host=s.host.name, rc=exc.rc, output=exc.output) from None
    servers = getattr(getattr(ctx, "claimed", None), "servers", None)
    target = servers.target if servers is not None else mysql.server_identity(t.db)
    if target.same_as(there) is None:
        what = ("the old controller's own DB server" if servers is not None and servers.source.same_as(there)
                else "another DB server")
        raise StepError(f"{step}: from the old controller {s.host.name}, {ep.address}:{ep.port} reaches {what} "
                        f"({there.describe()}), not the new controller's ({target.describe()}) — {fix}",
                        host=s.host.name)


def old_release_step(name: str, action: str, state: str, cmd: releases.Cmd, conf: Callable[[Any], str],
                     describe: str, section: str = "database") -> Step:
    """Step ``<name>.<action>``: *cmd* (its ``{conf}`` the one-off config) by the source's tool, on the
    imported copy of *name*'s database only. *conf(ctx)* is the path of the target's config whose
    ``[database] connection`` gives the URL's scheme and query; the old release reads it from
    ``[section] connection`` (Havana keystone: ``[sql]``)."""
    step = f"{name}.{action}"
    shown_conf = f"<0600 file: [{section}] connection = that user at the target copy>"

    def run(ctx: Any) -> Result:
        s, t = ctx.source, ctx.target
        db = ctx.services[name].db_name
        url = get_value(t.host.read_bytes(conf(ctx)), "database", "connection") or "mysql+pymysql://x/"
        user, password = one_off_user(ctx, step), secrets.token_hex(24)
        ctx.redactor.add(password)
        mysql.grant_service_user(t.db, db, user, password, HOSTS)
        d = s.host.private_tmpdir()
        path = f"{d}/{name}-old-release.conf"
        try:
            reaches_target(ctx, step, DBEndpoint(t.db.address, t.db.port, user, password), cmd.tool)
            url = with_database(rewrite_db_url(url, t.db.address, t.db.port, user, password), db)
            s.host.write_bytes(path, f"[DEFAULT]\n[{section}]\nconnection = {url}\n".encode(), mode=0o600)
            return {"source_release": ctx.from_release, "db_user": user, **run_cmd(s, cmd, {"conf": path})}
        finally:
            s.host.remove(path)
            s.host.remove(d)
            drop_user(ctx, step)

    def undo(ctx: Any, result: Result | None) -> None:
        drop_user(ctx, step)  # a run killed inside the step leaves its one-off user; the import's undo the rest

    def commands(ctx: Any) -> list[str]:
        t = ctx.target
        return [f"target SQL: CREATE USER osu_prev_<run> (random password) + GRANT ALL ON "
                f"{ctx.services[name].db_name}.* — a user only the new DB server has",
                f"source: mysql -e 'SHOW GLOBAL VARIABLES ...' as that user at {t.db.address}:{t.db.port}   "
                "# must be the new controller's DB server",
                f"source: {shown(cmd, ctx.source, {'conf': shown_conf})}",
                "target SQL: DROP USER osu_prev_<run>"]

    return Step(step, state, run, undo, host="source", commands=commands, kind="schema",
                describe=f"{describe}, as a DB user only the new DB server has")
