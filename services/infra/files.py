"""Copying a data directory between controllers with per-file checksums (glance's file store).

Only the files the target lacks (or holds with other content) are streamed, as tar of a file list
(``-T``) from the source host into the target host (memory does not grow with the data); then every
file's sha256 is compared on both sides. The target's files that were there before the run are
never written: one that differs from the source's stops the step before anything is written.

A directory can be copied by a chain of steps: a pre-copy while the old service still serves
(``live``: files may vanish or grow under it, the later step settles them), then the copy after the
stop, which moves only the difference — new files, changed files, and the removal of files an
earlier step of the chain added that the source no longer has. That is how glance's images leave
the maintenance window.

Two kinds of manifest in the run's private artifact directory on the tool's machine make this
exact across kills:

- ``<first step>.before.json``: the target's files and directories before the chain's first byte,
  written once, durably, before anything is copied; every step of the chain reads it;
- ``<step>.writes.json``: every name the step is about to write, written durably before the tar
  starts. An interrupted step resumes (its partial files are its own, not a clash) and is undone
  exactly from it (its result is None then); a finished one is undone from its result's ``added``.

An undo removes only names its own step wrote and never a file that was there before the run, then
the directories under the copied one that the run created and that are empty again.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from services.infra.host import Host, check, command_text, wait_pipe
from statemachine.step import Result, Step, StepError

#: exit codes of the source's tar that mean success: on a live source 1 too ("file changed as we read it")
LIVE_TAR_OK = (0, 1)


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


def _listing(host: Host, root: str, kind: str, fmt: str) -> list[str]:
    """``find <root> -type <kind> -printf <fmt>`` lines ([] if *root* does not exist)."""
    if not host.exists(root):
        return []
    return check(host, ["find", root, "-type", kind, "-printf", fmt], f"listing {root}").stdout.splitlines()


def _sizes(host: Host, root: str) -> dict[str, int]:
    """relative path -> size of every regular file under *root*."""
    out = {}
    for line in _listing(host, root, "f", "%s %P\\n"):
        size, _, path = line.partition(" ")
        out[path] = int(size)
    return out


def _dirs(host: Host, root: str) -> list[str]:
    """Directories under *root*, relative ("" is *root* itself)."""
    return _listing(host, root, "d", "%P\\n")


# ---------------------------------------------------------------------- argv, for run and for `upgrade plan`
def tar_list_out(src: str, live: bool) -> list[str]:
    """Pack the NUL-separated names read from stdin, relative to *src*. A live source may lose a file
    before tar reads it (an image deleted meanwhile): that is not an error there."""
    return ["tar", "-C", src, "--numeric-owner", *(["--ignore-failed-read"] if live else []),
            "--null", "-T", "-", "-cf", "-"]


def tar_in(dst: str) -> list[str]:
    return ["tar", "-C", dst, "--numeric-owner", "-xpf", "-"]


# ---------------------------------------------------------------------- manifests
def _manifest(ctx: Any, step: str, kind: str) -> Path:
    return ctx.artifact_dir / f"{step}.{kind}.json"


def _write_json(path: Path, data: Any) -> None:
    """Durable replace (tmp, fsync, rename, fsync of the directory): a kill leaves the old or the new."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass(frozen=True)
class Before:
    """The target's copied directory before the run: files (path -> sha256) and directories."""

    files: dict[str, str]
    dirs: list[str]


def _read_before(ctx: Any, chain: tuple[str, ...]) -> Before | None:
    """The chain's before-manifest (the first of its steps' that exists), or None: nothing copied yet."""
    for step in chain:
        path = _manifest(ctx, step, "before")
        if path.exists():
            data = json.loads(path.read_text())
            return Before(data["files"], data["dirs"])
    return None


def _before(ctx: Any, chain: tuple[str, ...], host: Host, dst: str) -> Before:
    """The target's state before the chain's first copy attempt: read back if an earlier step or
    attempt wrote it, else listed now and written durably before any copy."""
    found = _read_before(ctx, chain)
    if found is not None:
        return found
    before = Before(sums(host, dst), _dirs(host, dst))
    _write_json(_manifest(ctx, chain[0], "before"), {"files": before.files, "dirs": before.dirs})
    return before


def _written(ctx: Any, step: str) -> set[str]:
    """Every name *step* wrote or was about to write, over all its attempts."""
    path = _manifest(ctx, step, "writes")
    return set(json.loads(path.read_text())) if path.exists() else set()


def _record_writes(ctx: Any, step: str, names: list[str]) -> None:
    """Add *names* to the step's writes, durably, before the first byte of them is written."""
    have = _written(ctx, step)
    if not have.issuperset(names):
        _write_json(_manifest(ctx, step, "writes"), sorted(have.union(names)))


# ---------------------------------------------------------------------- the copy
def _feed(pipe: IO[bytes], names: list[str]) -> None:
    """Write the file list to the source tar's stdin (a thread: tar writes its output while it reads)."""
    try:
        for name in names:
            pipe.write(name.encode() + b"\0")
        pipe.close()
    except (BrokenPipeError, ValueError, OSError):
        pass  # tar died: its exit code says why


def _stream(ctx: Any, step: str, src: str, dst: str, names: list[str], live: bool) -> None:
    """Stream *names* (relative to *src*) from the source into *dst* on the target as one tar."""
    s, t = ctx.source, ctx.target
    out_argv, in_argv = tar_list_out(src, live), tar_in(dst)
    p_out = s.host.popen(out_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p_in = t.host.popen(in_argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    feeder = threading.Thread(target=_feed, args=(p_out.stdin, names), daemon=True)
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(p_out.stderr.read()), daemon=True)
    feeder.start()
    drain.start()
    try:
        while chunk := p_out.stdout.read(1 << 16):
            p_in.stdin.write(chunk)
            ctx.failpoint(f"{step}:inside")
        p_in.stdin.close()
    except BaseException:
        p_out.kill()
        p_in.kill()
        raise
    feeder.join()
    drain.join()
    if p_out.wait() not in (LIVE_TAR_OK if live else (0,)):
        wait_pipe(p_out, s.host, out_argv, f"reading {src}", b"".join(errors).decode(errors="replace"))
    wait_pipe(p_in, t.host, in_argv, f"writing {dst}")


def _refuse_clash(have: dict[str, str], before: Before, dst: str, host: str) -> None:
    clash = sorted(p for p in have if p in before.files and before.files[p] != have[p])
    if clash:
        raise StepError(f"{dst} on {host} already holds {len(clash)} file(s) that differ from the "
                        f"source's ({', '.join(clash[:5])}) — move them away, then `upgrade resume`", host=host)


def _changed_since(host: Host, src: str, have: dict[str, str], paths: list[str]) -> list[str]:
    """Of *paths*, those the source no longer holds with the content listed in *have* (removed or
    rewritten while a live copy ran)."""
    out = []
    for p in paths:
        path = f"{src}/{p}"
        digest = check(host, ["sha256sum", "--", path], f"checksum of {path}").stdout[:64] if host.exists(path) else ""
        if digest != have[p]:
            out.append(p)
    return out


def _sync(ctx: Any, step: str, chain: tuple[str, ...], src: str, dst: str, live: bool) -> Result:
    """Make *dst* hold the files it held before the run plus the source's, copying only the difference.

    The one piece of logic of every step of a chain: the first copies nearly everything, a later one
    what is new or changed since, and each removes the files a step of the chain added that the
    source no longer has (never one that was there before the run)."""
    s, t = ctx.source, ctx.target
    have = sums(s.host, src)
    before = _before(ctx, chain, t.host, dst)
    _refuse_clash(have, before, dst, t.host.name)
    now = sums(t.host, dst)
    ours = set().union(*(_written(ctx, c) for c in chain))
    todo = sorted(p for p in have if p not in before.files and now.get(p) != have[p])
    stale = sorted(p for p in now if p in ours and p not in have and p not in before.files)
    _record_writes(ctx, step, todo)
    check(t.host, ["mkdir", "-p", dst], f"creating {dst}")
    if todo:
        _stream(ctx, step, src, dst, todo, live)
    for p in stale:
        t.host.remove(f"{dst}/{p}")
    after = sums(t.host, dst)
    bad = sorted(p for p, d in have.items() if after.get(p) != d)
    unsettled = _changed_since(s.host, src, have, bad) if live and bad else []
    wrong = [p for p in bad if p not in unsettled]
    if wrong:
        raise StepError(f"after the copy, {len(wrong)} file(s) under {dst} on {t.host.name} differ from the "
                        f"source's: {', '.join(wrong[:5])} — check the target's disk, then `upgrade resume`",
                        host=t.host.name)
    sizes = _sizes(t.host, dst) if todo else {}
    return {"source": src, "target": dst, "files": len(have), "sha256": have,
            "new": [p for p in todo if p not in now], "changed": [p for p in todo if p in now],
            "removed": stale, "unsettled": unsettled,
            "copied_files": len(todo), "copied_bytes": sum(sizes.get(p, 0) for p in todo),
            "added": sorted(_written(ctx, step))}


def _undo(ctx: Any, step: str, chain: tuple[str, ...], dst: str, result: Result | None) -> None:
    """Remove what *step* wrote (its result's ``added``, or its writes manifest when it was
    interrupted), never a file of the before-manifest, then the run's directories left empty."""
    before = _read_before(ctx, chain)
    if before is None:
        return  # killed before the manifest: nothing was copied
    added = (result or {}).get("added")
    for p in sorted(_written(ctx, step) if added is None else added):
        if p not in before.files:
            ctx.target.host.remove(f"{dst}/{p}")
    for d in sorted(set(_dirs(ctx.target.host, dst)) - set(before.dirs), key=lambda d: (d == "", -d.count("/"))):
        path = f"{dst}/{d}" if d else dst
        check(ctx.target.host, ["rmdir", "--ignore-fail-on-non-empty", path], f"removing the empty {path}")


def copy_dir_step(name: str, action: str, state: str, rel: Callable[[Any], str], describe: str, *,
                  after: tuple[str, ...] = (), live: bool = False) -> Step:
    """Copy ``<lib>/<rel(ctx)>`` from source to target with checksums; undo removes what it added.

    ``after``: the earlier copy steps of the same directory (a pre-copy), whose before-manifest and
    writes this step shares. ``live``: the source still serves, so files may vanish or change under
    the copy; those are left to the next step of the chain instead of failing this one."""
    step = f"{name}.{action}"
    chain = (*after, step)

    def dirs(ctx: Any) -> tuple[str, str]:
        r = rel(ctx)
        return f"{ctx.source.lib.rstrip('/')}/{r}", f"{ctx.target.lib.rstrip('/')}/{r}"

    def run(ctx: Any) -> Result:
        return _sync(ctx, step, chain, *dirs(ctx), live)

    def undo(ctx: Any, result: Result | None) -> None:
        _undo(ctx, step, chain, dirs(ctx)[1], result)

    def commands(ctx: Any) -> list[str]:
        src, dst = dirs(ctx)
        return [f"source: find {src} -type f -exec sha256sum {{}} +   (and the same on the target; its list before "
                "the run kept in the run's artifacts)",
                f"source: {command_text(tar_list_out(src, live))} | target: {command_text(tar_in(dst))}   "
                "# stdin: the names of the source's files the target lacks or holds with other content",
                f"target: rm {dst}/FILE   # each file this run copied earlier that the source no longer has",
                f"target: find {dst} -type f -exec sha256sum {{}} +   # every file equal to the source's"]

    return Step(step, state, run, undo, host="target", describe=describe, commands=commands, prepare=live,
                kind="copy")
