"""Copying a data directory between controllers with per-file checksums (glance's file store).

Streamed as tar from the source host into the target host (memory does not grow with the
data), then every file's sha256 is compared on both sides. The target's files are only ever
added: a file that exists on the target with other content stops the step before anything is
written, and undo removes exactly the files the step added.

What "was there before" is written once, before the first byte is copied, to a manifest in the
run's private artifact directory on the tool's machine. A copy killed half way therefore
resumes (its partial files are its own, not a clash) and is undone exactly (everything not in
the manifest that the copy could have written), whether or not the step finished.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from services.host import Host, check, command_text, wait_pipe
from statemachine.step import Result, Step, StepError


def sums(host: Host, root: str) -> dict[str, str]:
    """relative path -> sha256 of every regular file under *root* ({} if it does not exist)."""
    if not host.exists(root):
        return {}
    res = check(host, ["find", root, "-type", "f", "-exec", "sha256sum", "{}", "+"], f"checksums under {root}")
    out = {}
    for line in res.stdout.splitlines():
        digest, _, path = line.partition("  ")
        out[path[len(root.rstrip("/")) + 1:]] = digest
    return out


def _manifest(ctx: Any, step: str) -> Path:
    return ctx.artifact_dir / f"{step}.before.json"


def _before(ctx: Any, step: str, host: Host, dst: str) -> dict[str, str]:
    """The target's files before this run's first copy attempt: read from the manifest if an earlier
    attempt wrote it, else listed now and written durably (tmp, fsync, rename) before any copy."""
    path = _manifest(ctx, step)
    if path.exists():
        return json.loads(path.read_text())
    before = sums(host, dst)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(before, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return before


def copy_dir_step(name: str, action: str, state: str, rel: Any, describe: str) -> Step:
    """Copy ``<lib>/<rel(ctx)>`` from source to target with checksums; undo removes what it added."""
    step = f"{name}.{action}"

    def dirs(ctx: Any) -> tuple[str, str]:
        r = rel(ctx)
        return f"{ctx.source.lib.rstrip('/')}/{r}", f"{ctx.target.lib.rstrip('/')}/{r}"

    def run(ctx: Any) -> Result:
        s, t = ctx.source, ctx.target
        src, dst = dirs(ctx)
        have = sums(s.host, src)
        before = _before(ctx, step, t.host, dst)
        clash = sorted(p for p in have if p in before and before[p] != have[p])
        if clash:
            raise StepError(f"{dst} on {t.host.name} already holds {len(clash)} file(s) that differ from the "
                            f"source's ({', '.join(clash[:5])}) — move them away, then `upgrade resume`",
                            host=t.host.name)
        check(t.host, ["mkdir", "-p", dst], f"creating {dst}")
        if have:
            out_argv = ["tar", "-C", src, "--numeric-owner", "-cf", "-", "."]
            in_argv = ["tar", "-C", dst, "--numeric-owner", "-xpf", "-"]
            p_out = s.host.popen(out_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            p_in = t.host.popen(in_argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                while chunk := p_out.stdout.read(1 << 16):
                    p_in.stdin.write(chunk)
                    ctx.failpoint(f"{step}:inside")
                p_in.stdin.close()
            except BaseException:
                p_out.kill()
                p_in.kill()
                raise
            wait_pipe(p_out, s.host, out_argv, f"reading {src}")
            wait_pipe(p_in, t.host, in_argv, f"writing {dst}")
        after = sums(t.host, dst)
        bad = sorted(p for p, d in have.items() if after.get(p) != d)
        if bad:
            raise StepError(f"after the copy, {len(bad)} file(s) under {dst} differ from the source: "
                            f"{', '.join(bad[:5])}", host=t.host.name)
        return {"source": src, "target": dst, "files": len(have), "added": sorted(set(have) - set(before)),
                "sha256": have}

    def undo(ctx: Any, result: Result | None) -> None:
        src, dst = dirs(ctx)
        added = (result or {}).get("added")
        if added is None:  # interrupted: what the copy may have written is the source's names not there before
            manifest = _manifest(ctx, step)
            if not manifest.exists():
                return  # killed before the manifest: nothing was copied
            before = json.loads(manifest.read_text())
            added = sorted(p for p in sums(ctx.source.host, src) if p not in before)
        for p in added:
            ctx.target.host.remove(f"{dst}/{p}")

    def commands(ctx: Any) -> list[str]:
        src, dst = dirs(ctx)
        return [f"source: find {src} -type f -exec sha256sum {{}} +   (and the same on the target)",
                f"source: {command_text(['tar', '-C', src, '--numeric-owner', '-cf', '-', '.'])} | target: "
                f"{command_text(['tar', '-C', dst, '--numeric-owner', '-xpf', '-'])}",
                f"target: find {dst} -type f -exec sha256sum {{}} +   # every file equal to the source's"]

    return Step(f"{name}.{action}", state, run, undo, host="target", describe=describe, commands=commands)
