"""Volume data transfer for the runbook's LVM case (seed, "Upgrade Cinder" 1.): a same-size
volume on the target, the blocks copied with a sha256 over the stream and of the target after.

A target is a device path (an existing same-size volume, a loop device) or a volume group in
which ``lvcreate`` makes the volume. Undo puts the target back: the created LV is removed; an
existing device gets its previous content back (backed up into the vault when it was not all
zeros, zeroed again when it was).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from typing import Any

from journal import vault
from services.infra.host import Host, check, command_text, wait_pipe
from statemachine.step import Result, Step, StepError

CHUNK = 4 << 20


def size_of(host: Host, dev: str) -> int:
    return int(check(host, ["blockdev", "--getsize64", dev], f"size of {dev}").stdout.strip())


def read_argv(dev: str) -> list[str]:
    return ["dd", f"if={dev}", f"bs={CHUNK}", "status=none"]


def write_argv(dev: str) -> list[str]:
    return ["dd", f"of={dev}", f"bs={CHUNK}", "iflag=fullblock", "conv=fsync,notrunc", "status=none"]


def device_sha256(host: Host, dev: str, size: int) -> str:
    """sha256 of the first *size* bytes of *dev*, read on *host*."""
    argv = read_argv(dev)
    proc = host.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h = hashlib.sha256()
    left = size
    while left > 0 and (chunk := proc.stdout.read(min(CHUNK, left))):
        h.update(chunk)
        left -= len(chunk)
    proc.stdout.close()
    proc.wait()
    if left:
        raise StepError(f"{dev} on {host.name} ended {left} bytes before its size {size}", host=host.name)
    return h.hexdigest()


def zeros_sha256(size: int) -> str:
    h = hashlib.sha256()
    block = bytes(CHUNK)
    left = size
    while left > 0:
        h.update(block[:min(CHUNK, left)])
        left -= min(CHUNK, left)
    return h.hexdigest()


class _Zeros:
    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = CHUNK) -> bytes:
        n = min(n if n > 0 else CHUNK, self.left)
        self.left -= n
        return bytes(n)


def pump(src: Any, host: Host, dev: str, size: int) -> str:
    """Write *size* bytes from reader *src* onto *dev* on *host*; returns their sha256."""
    argv = write_argv(dev)
    proc = host.popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    h = hashlib.sha256()
    left = size
    try:
        while left > 0 and (chunk := src.read(min(CHUNK, left))):
            h.update(chunk)
            proc.stdin.write(chunk)
            left -= len(chunk)
        proc.stdin.close()
    except BaseException:
        proc.kill()
        raise
    wait_pipe(proc, host, argv, f"writing {dev}")
    if left:
        raise StepError(f"the copy onto {dev} ended {left} bytes short", host=host.name)
    return h.hexdigest()


def transfer_step(name: str, volumes: Any, shown: Any = None) -> Step:
    """``volumes(ctx)`` -> [{"source": dev, "target": dev} | {"source": dev, "target_vg": vg}] (with both
    target and target_vg, the target is created in the group when it does not exist); ``shown(ctx)``
    the same for `upgrade plan` when the list is only known at run time (read from a database)."""

    def target_of(v: dict[str, str]) -> str:
        return v.get("target") or f"/dev/{v['target_vg']}/{os.path.basename(v['source'])}"

    def run(ctx: Any) -> Result:
        s, t = ctx.source, ctx.target
        out = []
        for i, v in enumerate(volumes(ctx)):
            src, dst = v["source"], target_of(v)
            size = size_of(s.host, src)
            entry: dict[str, Any] = {"source": src, "target": dst, "bytes": size, "created": False}
            if v.get("target_vg") and not t.host.exists(dst):
                lv = os.path.basename(dst)
                check(t.host, ["lvcreate", "-y", "-L", f"{size}b", "-n", lv, v["target_vg"]],
                      f"creating {dst}")
                entry["created"] = True
            tsize = size_of(t.host, dst)
            if tsize != size:
                raise StepError(f"{dst} on {t.host.name} has {tsize} bytes, {src} on {s.host.name} {size}: the "
                                "runbook needs a same-size volume on the target", host=t.host.name)
            if not entry["created"]:
                before = device_sha256(t.host, dst, size)
                entry["was_zero"] = before == zeros_sha256(size)
                if not entry["was_zero"]:  # keep what was there, for undo
                    path = ctx.artifact_path(f"{name}-volume-{i}-target")
                    proc = t.host.popen(read_argv(dst), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    stats = vault.encrypt_stream(proc.stdout, path, ctx.key)
                    wait_pipe(proc, t.host, read_argv(dst), f"backup of {dst}")
                    entry["backup"] = ctx.record_artifact(f"{ctx.run_id}/{name}-volume-{i}-target",
                                                          f"{name}.transfer_volumes", "backup", name,
                                                          t.host.name, path, stats)
            reader = s.host.popen(read_argv(src), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            streamed = pump(reader.stdout, t.host, dst, size)
            reader.stdout.close()
            reader.wait()
            after = device_sha256(t.host, dst, size)
            if after != streamed or device_sha256(s.host, src, size) != streamed:
                raise StepError(f"{dst} on {t.host.name} does not hold {src}'s blocks after the copy (sha256 "
                                f"{after} vs {streamed})", host=t.host.name)
            entry["sha256"] = streamed
            out.append(entry)
        return {"volumes": out}

    def undo(ctx: Any, result: Result | None) -> None:
        t = ctx.target
        for e in reversed((result or {}).get("volumes", [])):
            if e["created"]:
                check(t.host, ["lvremove", "-y", e["target"]], f"removing {e['target']}")
            elif e.get("backup"):
                art = e["backup"]
                ctx.verified_artifact(art, f"{name}.transfer_volumes")
                argv = write_argv(e["target"])
                proc = t.host.popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
                vault.decrypt_stream(art["path"], ctx.key, proc.stdin)
                proc.stdin.close()
                wait_pipe(proc, t.host, argv, f"restoring {e['target']}")
            else:
                pump(_Zeros(e["bytes"]), t.host, e["target"], e["bytes"])

    def commands(ctx: Any) -> list[str]:
        out = []
        for v in (shown or volumes)(ctx):
            src, dst = v["source"], target_of(v)
            out.append(f"source: blockdev --getsize64 {src}")
            if v.get("target_vg"):
                out.append(f"target: lvcreate -y -L <that size>b -n {os.path.basename(dst)} {v['target_vg']}"
                           "   # if it does not exist")
            out.append(f"source: {command_text(read_argv(src))} | sha256 | target: {command_text(write_argv(dst))}")
            out.append(f"target: dd if={dst} | sha256sum   # equal to the stream's")
        return out or ["(no volume copy in the plan)"]

    return Step(f"{name}.transfer_volumes", "volumes_transferred", run, undo, host="target", commands=commands,
                kind="copy",
                describe="copy volume blocks to same-size volumes on the target, sha256 checked")
