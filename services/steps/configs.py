"""Carrying a service's config over from the source: the tree copied, the DB connection and paths
rewritten for the target, release edits applied; restored from the backup on undo."""

from __future__ import annotations

import hashlib
import posixpath
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from journal import vault
from services import releases
from services.infra import transfer
from services.infra.config import db_url_credentials, get_value, rewrite_db_url, rewrite_paths, set_value, with_database
from services.infra.context import UpgradeContext
from services.infra.host import check, command_text, wait_pipe
from services.steps import shipped
from services.steps.argv import tar_in, tar_out
from services.steps.databases import (
    ConfigKey,
    DBSpec,
    db_credentials,
    default_dbs,
    main_spec,
    svc,
)
from statemachine.deps import needed
from statemachine.step import Result, Step, StepError


# ---------------------------------------------------------------------- config
def _copy_tree(ctx: UpgradeContext, name: str) -> dict[str, Any]:
    """Stream source:/etc/<name> into target:/etc/<name> (files of both: the source's win), except the
    files the release ships that the target keeps (services/steps/shipped.py), then prove it arrived:
    per-entry sha256, mode and owner compared on both hosts (services/transfer.py), and every file the
    target keeps of its own unchanged."""
    s, t = ctx.source, ctx.target
    before = _target_before(ctx, name)
    source_files = {p[len(name) + 1:]: transfer.content(v) for p, v in transfer.manifest(s.host, s.etc, name).items()
                    if v[0] in ("f", "l")}
    decisions = shipped.decide(ctx, name, source_files, before)
    skip = tuple(d.rel for d in decisions if not d.carried)
    check(t.host, ["mkdir", "-p", f"{t.etc}/{name}"], f"creating {t.etc}/{name}")
    out_argv = tar_out(s.etc, name, skip)
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
    expect = {f"{name}/{rel}": digest for rel, digest in before.items()
              if shipped.is_shipped(rel) or rel not in source_files}
    for d in decisions:
        if d.action == "installed_target_default":
            expect[f"{name}/{d.rel}"] = _install_default(t, name, d.rel)
    verified = transfer.verify_copy(s.host, s.etc, t.host, t.etc, name, frozenset(f"{name}/{r}" for r in skip),
                                    expect)
    return {**verified, "tar_bytes": size, "tar_sha256": stream.hexdigest(),
            "from_source": sorted(r for r in source_files if r not in skip),
            "from_target": sorted(r for r in before if r in skip or r not in source_files),
            "shipped": {d.rel: d.action for d in decisions},
            "operator_changes": [{"file": f"{t.etc}/{name}/{d.rel}", "why": d.operator_change}
                                 for d in decisions if d.operator_change]}


def _target_before(ctx: UpgradeContext, name: str) -> dict[str, str]:
    """relative path -> sha256 of the files the target's /etc/<name> held before the run: read from
    the step's own backup in the vault, so a resumed step decides as the first attempt did."""
    backup = needed(ctx.results, name, "target_backup")["config"]
    if not backup["existed"]:
        return {}
    return shipped.tar_members(ctx.artifact_bytes(backup["artifact"], f"{name}.backup_target"), name)


def _install_default(t: Any, name: str, rel: str) -> str:
    """Copy the target release's shipped *rel* into the target's /etc/<name>; its sha256."""
    data = t.host.read_bytes(f"{shipped.shipped_dir(t, name)}/{rel}")
    path = f"{t.etc}/{name}/{rel}"
    check(t.host, ["mkdir", "-p", posixpath.dirname(path)], f"creating the directory of {path}")
    t.host.write_bytes(path, data, mode=0o640)
    return hashlib.sha256(data).hexdigest()


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
    specs = dbs or default_dbs(conns)
    all_conns = tuple(dict.fromkeys([*conns, *(c for s in specs for c in s.conns)]))
    files = sorted({c.file for c in all_conns})

    def run(ctx: UpgradeContext) -> Result:
        st = svc(ctx, name)
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
                new = rewrite_db_url(url, t.db.address_for_services, t.db.port, user, password,
                                     releases.db_scheme(ctx.to_release))
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
        st = svc(ctx, name)
        out = [command_text(["mkdir", "-p", f"{t.etc}/{name}"]),
               f"source: {command_text(tar_out(s.etc, name, ('FILE',)))} | target: {command_text(tar_in(t.etc))}"
               "   # one --exclude per shipped FILE the target keeps (below)",
               *shipped.shown(ctx, name)]
        moved = [f"{a} -> {b}" for a, b in zip(s.layout().values(), t.layout().values(), strict=True) if a != b]
        for f in files:
            if moved:
                out.append(f"rewrite paths in {shlex.quote(f'{t.etc}/{name}/{f}')}: {', '.join(moved)}")
        for spec in specs:
            for c in spec.conns:
                out.append(f"set [{c.section}] {c.key} in {shlex.quote(f'{t.etc}/{name}/{c.file}')} to "
                           f"{releases.db_scheme(ctx.to_release)}://USER:***@{t.db.address_for_services}:{t.db.port}/"
                           f"{spec.db_name(st)}"
                           " (if present; USER and password from the source config or the plan)")
        for edit in edits:
            out += edit.shown(ctx)
        return out

    return Step(f"{name}.install_config", "config_installed", run, undo, host="target", kind="config",
                requires=("target_backup",),
                describe=f"copy /etc/{name} from source to target, pointing its DB connection at the target DB",
                commands=commands)


def restore_config(ctx: UpgradeContext, name: str) -> None:
    restore_dir(ctx, ctx.target, name, needed(ctx.results, name, "target_backup")["config"], f"{name}.backup_target")


def backup_dir(ctx: UpgradeContext, t: Any, service: str, artifact: str, step: str) -> dict[str, Any]:
    """``<etc>/<service>`` on side *t* into the vault as *artifact*, recorded for *step*: what
    :func:`restore_dir` puts back (``{"existed": False}`` when there is none, so undo removes what came)."""
    cdir = f"{t.etc}/{service}"
    if not t.host.exists(cdir):
        return {"existed": False}
    path = ctx.artifact_path(artifact)
    argv = tar_out(t.etc, service)
    proc = t.host.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stats = vault.encrypt_stream(proc.stdout, path, ctx.key)
    wait_pipe(proc, t.host, argv, f"backup of {cdir}")
    return {"existed": True, "artifact": ctx.record_artifact(f"{ctx.run_id}/{artifact}", step, "backup", service,
                                                             t.host.name, path, stats)}


def restore_dir(ctx: UpgradeContext, t: Any, service: str, backup: dict[str, Any], step: str) -> None:
    """``<etc>/<service>`` on side *t* back as *backup* (what *step* recorded) found it: removed, and if it
    existed, unpacked from its vault artifact, verified first (a forged or damaged one is never unpacked)."""
    cdir = f"{t.etc}/{service}"
    check(t.host, ["rm", "-rf", cdir], f"removing {cdir}")
    if not backup["existed"]:
        return
    art = backup["artifact"]
    ctx.verified_artifact(art, step)
    argv = tar_in(t.etc)
    proc = t.host.popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    vault.decrypt_stream(art["path"], ctx.key, proc.stdin)
    proc.stdin.close()
    wait_pipe(proc, t.host, argv, f"restoring {cdir}")


def new_db_config_edit(name: str, new: tuple[DBSpec, ...], dbs: tuple[DBSpec, ...]) -> ConfigEdit:
    """Name the new databases in the config (nova's ``[api_database] connection`` on liberty -> mitaka):
    the main database's URL on the target with the database name swapped — same server, user and
    password, as the install guides set them."""
    main = main_spec(dbs)
    options = [(spec, c) for spec in new for c in spec.conns]

    def apply(ctx: Any, path: str, data: bytes) -> tuple[bytes, list[str]]:
        mine = [(spec, c) for spec, c in options if path.endswith(f"/{c.file}")]
        if not mine:
            return data, []
        main_url = next((u for c in main.conns
                         if path.endswith(f"/{c.file}") and (u := get_value(data, c.section, c.key))), None)
        if not main_url:
            new_opts = ", ".join(f"[{c.section}] {c.key}" for _s, c in mine)
            raise StepError(f"{path} names no {main.db_name(svc(ctx, name))} database, so the new {new_opts} cannot "
                            "be derived from it — fix the source controller's config", host=ctx.target.host.name)
        notes = []
        for spec, c in mine:
            url = with_database(main_url, spec.db_name(svc(ctx, name)))
            if get_value(data, c.section, c.key) != url:
                data = set_value(data, c.section, c.key, url)
                notes.append(f"[{c.section}] {c.key} -> {ctx.target.db.address_for_services}:{ctx.target.db.port}/"
                             f"{spec.db_name(svc(ctx, name))} (new in the target release)")
        return data, notes

    def shown(ctx: Any) -> list[str]:
        t = ctx.target
        return [f"set [{c.section}] {c.key} in {shlex.quote(f'{t.etc}/{name}/{c.file}')} to "
                f"{releases.db_scheme(ctx.to_release)}://USER:***@"
                f"{t.db.address_for_services}:{t.db.port}/{spec.db_name(svc(ctx, name))} (server, USER and password "
                f"of the {main.db_name(svc(ctx, name))} connection; new in the target release)"
                for spec, c in options]

    return ConfigEdit(apply, shown)
