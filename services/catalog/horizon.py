"""Horizon: no database; ``local_settings`` carried over and edited by parsing the Python file
(``ast``: only the value of each assignment changes, every other byte stays), the web server
restarted, the login page checked (facts §8, the seed's "Upgrade Dashboard").

OPENSTACK_HOST goes to the plan's ``openstack_host``; OPENSTACK_KEYSTONE_URL follows the
identity API version of the target (v2.0 until Pike, v3 after); OPENSTACK_KEYSTONE_DEFAULT_ROLE
becomes the target's (Member -> _member_ -> member), which must exist in keystone's ``role``
table.
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Mapping
from typing import Any

from journal import vault
from services import options, releases
from services.infra import control, mysql
from services.infra.host import check, command_text, wait_pipe
from services.options import Option
from services.releases import DEFAULT_JUMP, Era, Jump
from services.spec import ServiceSpec
from services.steps.argv import tar_in, tar_out
from services.steps.specs import units_fn
from services.steps.verify import http_ok
from statemachine.step import Result, Step, StepError

NAME = "horizon"
#: OPENSTACK_KEYSTONE_DEFAULT_ROLE per release (facts §8)
DEFAULT_ROLE: tuple[Era, ...] = (Era("havana", "havana", "Member"), Era("icehouse", "xena", "_member_"),
                                 Era("yoga", None, "member"))
#: the identity API version horizon talks: v2.0 APIs removed in Queens (facts §2.6)
KEYSTONE_PATH: tuple[Era, ...] = (Era("havana", "pike", "/v2.0"), Era("queens", None, "/v3"))


class SettingsError(StepError):
    """local_settings cannot be parsed or edited."""


def assignments(source: str) -> dict[str, ast.Assign]:
    """Top-level ``NAME = value`` assignments (the last one wins, as Python reads it)."""
    out: dict[str, ast.Assign] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = node
    return out


def replace_value(source: str, name: str, new_expr: str) -> str:
    """*source* with the value of the top-level assignment to *name* replaced by *new_expr*
    (appended at the end when there is none). Comments, spacing and other lines stay."""
    nodes = assignments(source)
    raw = source.encode()
    if name not in nodes:
        tail = "" if source.endswith("\n") or not source else "\n"
        return f"{source}{tail}{name} = {new_expr}\n"
    v = nodes[name].value
    lines = source.splitlines(keepends=True)
    start = sum(len(x.encode()) for x in lines[:v.lineno - 1]) + v.col_offset
    end = sum(len(x.encode()) for x in lines[:v.end_lineno - 1]) + v.end_col_offset
    out = (raw[:start] + new_expr.encode() + raw[end:]).decode()
    ast.parse(out)  # never write a file Python cannot read
    return out


def value_of(source: str, name: str) -> Any:
    node = assignments(source).get(name)
    if node is None:
        return None
    try:
        return ast.literal_eval(node.value)
    except ValueError:
        return ast.get_source_segment(source, node.value)


def keystone_url_expr(source: str, jump: Jump, host: str | None) -> str | None:
    """The new OPENSTACK_KEYSTONE_URL expression: the identity path of the target release, the
    host through OPENSTACK_HOST where the file uses it (``"http://%s:5000/v2.0" % OPENSTACK_HOST``)."""
    node = assignments(source).get("OPENSTACK_KEYSTONE_URL")
    if node is None:
        return None
    want = releases.pick(KEYSTONE_PATH, jump.target)
    v = node.value
    if isinstance(v, ast.BinOp) and isinstance(v.op, ast.Mod) and isinstance(v.left, ast.Constant) \
            and isinstance(v.left.value, str):
        fmt = _versioned(v.left.value, want)
        rest = ast.get_source_segment(source, v.right)
        return None if fmt == v.left.value else f"{fmt!r} % {rest}"
    if isinstance(v, ast.Constant) and isinstance(v.value, str):
        url = _versioned(v.value, want)
        old_host = ast.literal_eval(assignments(source)["OPENSTACK_HOST"].value) \
            if "OPENSTACK_HOST" in assignments(source) else None
        if host and old_host and f"//{old_host}" in url:
            url = url.replace(f"//{old_host}", f"//{host}", 1)
        return None if url == v.value else repr(url)
    return None


def _versioned(url: str, want: str) -> str:
    for old in ("/v2.0", "/v3"):
        if url.rstrip("/").endswith(old):
            return url.rstrip("/")[: -len(old)] + want
    return url


def edit_settings(source: str, jump: Jump, host: str | None) -> tuple[str, list[str]]:
    notes = []
    role = releases.pick(DEFAULT_ROLE, jump.target)
    if host and value_of(source, "OPENSTACK_HOST") != host:
        source = replace_value(source, "OPENSTACK_HOST", repr(host))
        notes.append(f"OPENSTACK_HOST = {host!r}")
    expr = keystone_url_expr(source, jump, host)
    if expr:
        source = replace_value(source, "OPENSTACK_KEYSTONE_URL", expr)
        notes.append(f"OPENSTACK_KEYSTONE_URL = {expr}")
    if value_of(source, "OPENSTACK_KEYSTONE_DEFAULT_ROLE") != role:
        source = replace_value(source, "OPENSTACK_KEYSTONE_DEFAULT_ROLE", repr(role))
        notes.append(f"OPENSTACK_KEYSTONE_DEFAULT_ROLE = {role!r}")
    return source, notes


def _keystone_db(ctx: Any) -> str:
    return ctx.services[NAME].options.get("keystone_db_name") or "keystone"


def _paths(ctx: Any) -> tuple[str, str, str]:
    rel = ctx.services[NAME].options.get("local_settings") or "openstack-dashboard/local_settings"
    top = rel.split("/", 1)[0]
    return rel, top, f"{ctx.target.etc.rstrip('/')}/{rel}"


def steps(jump: Jump = DEFAULT_JUMP, options: Mapping[str, Any] | None = None) -> list[Step]:
    units = units_fn(SPEC, jump)
    role = releases.pick(DEFAULT_ROLE, jump.target)

    def install(ctx: Any) -> Result:
        s, t = ctx.source, ctx.target
        rel, top, path = _paths(ctx)
        out: dict[str, Any] = {"dir": f"{t.etc.rstrip('/')}/{top}"}
        if t.host.exists(out["dir"]):  # the target's own dashboard config, for undo
            art_path = ctx.artifact_path(f"{NAME}-target-config")
            argv = tar_out(t.etc, top)
            proc = t.host.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            stats = vault.encrypt_stream(proc.stdout, art_path, ctx.key)
            wait_pipe(proc, t.host, argv, f"backup of {out['dir']}")
            out["backup"] = ctx.record_artifact(f"{ctx.run_id}/{NAME}-target-config", f"{NAME}.install_settings",
                                                "backup", NAME, t.host.name, art_path, stats)
        check(t.host, ["mkdir", "-p", out["dir"]], f"creating {out['dir']}")
        src = s.host.popen(tar_out(s.etc, top), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        dst = t.host.popen(tar_in(t.etc), stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        while chunk := src.stdout.read(1 << 16):
            dst.stdin.write(chunk)
        dst.stdin.close()
        wait_pipe(src, s.host, tar_out(s.etc, top), f"reading {s.etc}/{top}")
        wait_pipe(dst, t.host, tar_in(t.etc), f"writing {out['dir']}")
        text = t.host.read_bytes(path).decode()
        try:
            new, notes = edit_settings(text, jump, ctx.services[NAME].options.get("openstack_host") or None)
        except SyntaxError as exc:
            raise SettingsError(f"{path} on {t.host.name} is not valid Python ({exc.msg}, line {exc.lineno}): "
                                "fix it on the source controller", host=t.host.name) from None
        if notes:
            t.host.write_bytes(path, new.encode(), mode=0o640)
        out["edits"] = notes
        return out

    def uninstall(ctx: Any, result: Result | None) -> None:
        t = ctx.target
        _rel, top, _path = _paths(ctx)
        d = f"{t.etc.rstrip('/')}/{top}"
        check(t.host, ["rm", "-rf", d], f"removing {d}")
        art = (result or {}).get("backup")
        if art:
            ctx.verified_artifact(art, f"{NAME}.install_settings")
            proc = t.host.popen(tar_in(t.etc), stdin=subprocess.PIPE, stderr=subprocess.PIPE)
            vault.decrypt_stream(art["path"], ctx.key, proc.stdin)
            proc.stdin.close()
            wait_pipe(proc, t.host, tar_in(t.etc), f"restoring {d}")

    def install_commands(ctx: Any) -> list[str]:
        s, t = ctx.source, ctx.target
        rel, top, path = _paths(ctx)
        host = ctx.services[NAME].options.get("openstack_host")
        return [f"{command_text(tar_out(t.etc, top))} | encrypt > <vault>/{NAME}-target-config.osuv   # if it exists",
                f"source: {command_text(tar_out(s.etc, top))} | target: {command_text(tar_in(t.etc))}",
                f"edit {path} (ast: values only): "
                + (f"OPENSTACK_HOST = {host!r}; " if host else "")
                + f"OPENSTACK_KEYSTONE_URL -> {releases.pick(KEYSTONE_PATH, jump.target)}; "
                f"OPENSTACK_KEYSTONE_DEFAULT_ROLE = {role!r}"]

    def check_role(ctx: Any) -> Result:
        db = _keystone_db(ctx)
        if not mysql.db_exists(ctx.target.db, db):
            raise StepError(f"keystone's database {db!r} is not on the target DB server: cannot check that role "
                            f"{role!r} exists — upgrade keystone first or set services.horizon.keystone_db_name",
                            host=ctx.target.host.name)
        rows = mysql.query(ctx.target.db, "SELECT id FROM role WHERE name=%s", (role,), db=db)
        if not rows:
            raise StepError(f"OPENSTACK_KEYSTONE_DEFAULT_ROLE is {role!r} for {jump.target}, but keystone has no "
                            f"such role — create it (`openstack role create {role}`) and `upgrade resume`",
                            host=ctx.target.host.name)
        return {"role": role, "role_id": rows[0][0]}

    def restart(ctx: Any) -> Result:
        out = []
        for u in units(ctx, "target"):
            if control.is_running(ctx.target, u):
                control.stop(ctx.target, u)
            control.start(ctx.target, u)
            out.append(u)
        return {"units": out}

    def stop_web(ctx: Any, result: Result | None) -> None:
        for u in units(ctx, "target"):
            if control.is_running(ctx.target, u):
                control.stop(ctx.target, u)

    def verify(ctx: Any) -> Result:
        url = ctx.services[NAME].verify_url
        return {"url": url or None, "http_status": http_ok(url) if url else None}

    return [
        Step(f"{NAME}.install_settings", "settings_installed", install, uninstall, host="target", kind="config",
             commands=install_commands, describe="copy the dashboard config from the source and edit local_settings"),
        Step(f"{NAME}.check_role", "role_checked", check_role, host="target",
             commands=lambda ctx: [f"SQL: SELECT id FROM {_keystone_db(ctx)}.role WHERE name={role!r}   # must exist"],
             describe="the default role exists in keystone"),
        Step(f"{NAME}.restart_web", "web_restarted", restart, stop_web, host="target", kind="start",
             commands=lambda ctx: [c for u in units(ctx, "target") for c in
                                   (command_text(ctx.target.control.argv("stop", u)) + "   # if it runs",
                                    command_text(ctx.target.control.argv("start", u)))],
             describe="restart the web server"),
        Step(f"{NAME}.verify", "verified", verify, host="target", kind="verify", window="closes", provides=("api",),
             commands=lambda ctx: [f"GET {ctx.services[NAME].verify_url}   # the login page answers"
                                   if ctx.services[NAME].verify_url else "(no verify_url: no page check)"],
             describe="the dashboard's login page answers"),
    ]


SPEC = ServiceSpec(
    name=NAME, order=70, steps=steps, after=frozenset({"keystone"}),  # its steps check keystone's roles
    units=(Era("havana", None, ("httpd",)),),
    options=(
        options.UNITS,
        Option("local_settings", str, "openstack-dashboard/local_settings", "relative to the controller's etc"),
        Option("openstack_host", str, "", "OPENSTACK_HOST for the new controller (empty: kept)"),
        Option("keystone_db_name", str, "keystone", "keystone's database (the default role must exist)"),
    ),
)
