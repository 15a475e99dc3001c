"""Proof that a directory tree arrived intact: per-entry manifests compared on both hosts.

``services.steps.configs._copy_tree`` streams ``tar`` from the source host through the tool into the
target host (two SSH hosts, or local ones). Afterwards both hosts list the tree themselves —
type, mode, owner, group, symlink target and, for files, the sha256 of the content — and every
entry of the source must be on the target with the same values. That checks content, modes
and ownership end to end, whatever carried the bytes; the sha256 of the tar stream as it passed
through the tool is recorded next to it.
"""

from __future__ import annotations

from services.infra.host import Host, check
from statemachine.step import StepError

# Constant scripts; the directory and the entry name are their arguments ("$1", "$2").
_META = r'''cd -- "$1" && find "$2" -printf '%y\t%m\t%U\t%G\t%l\t%p\0' '''
_SUMS = r'''cd -- "$1" && find "$2" -type f -print0 | xargs -0r sha256sum -z --'''


def manifest(host: Host, base: str, name: str) -> dict[str, tuple[str, ...]]:
    """relative path -> (type, octal mode, uid, gid, symlink target, sha256 or "") under *base*/*name*."""
    meta = check(host, ["sh", "-c", _META, "osu-manifest", base, name], f"listing {base}/{name}", timeout=600)
    sums = check(host, ["sh", "-c", _SUMS, "osu-manifest", base, name], f"checksumming {base}/{name}",
                 timeout=1800)
    digests: dict[str, str] = {}
    for rec in sums.stdout.split("\0"):
        if rec:
            digest, _, path = rec.partition("  ")
            digests[path] = digest
    out: dict[str, tuple[str, ...]] = {}
    for rec in meta.stdout.split("\0"):
        if not rec:
            continue
        kind, mode, uid, gid, link, path = rec.split("\t", 5)
        out[path] = (kind, mode, uid, gid, link, digests.get(path, ""))
    return out


def content(entry: tuple[str, ...]) -> str:
    """What a manifest entry holds: a file's sha256, ``symlink to TARGET`` for a link, "" for the rest."""
    return f"symlink to {entry[4]}" if entry[0] == "l" else entry[5]


def verify_copy(src: Host, src_base: str, dst: Host, dst_base: str, name: str, skip: frozenset[str] = frozenset(),
                expect: dict[str, str] | None = None) -> dict[str, int]:
    """Every entry of the source tree is on the target, same content, mode and owner; else StepError.
    Entries in *skip* (``<name>/<path>``) were not copied; each of *expect* (the same keys) must be on
    the target with that :func:`content` (a file the target keeps of its own)."""
    before = {p: v for p, v in manifest(src, src_base, name).items() if p not in skip}
    after = manifest(dst, dst_base, name)
    bad = sorted(p for p, v in before.items() if after.get(p) != v)
    bad += sorted(p for p, want in (expect or {}).items() if p not in after or content(after[p]) != want)
    if bad:
        detail = "; ".join(f"{p}: {f'source {before[p]}' if p in before else f'kept {expect[p]}'}, "
                           f"target {after.get(p, 'missing')}" for p in bad[:5])
        raise StepError(f"the copy of {src_base}/{name} from {src.name} to {dst.name} differs in {len(bad)} "
                        f"entr{'y' if len(bad) == 1 else 'ies'}: {detail}", host=dst.name)
    return {"entries": len(before), "files_checksummed": sum(1 for v in before.values() if v[5])}
