"""The files a release ships in ``/etc/<service>``: paste pipelines, policy files, rootwrap filters.

They belong to the release, not to the operator's configuration: the new release's paste pipeline
names its own middleware, its rootwrap filters its own commands, and an old release's full
``policy.json`` overrides the new release's defaults in code. So the config carry-over
(``services/steps/configs.py``) copies the service's own configuration from the source but keeps
the target release's shipped files, deciding per file from what both sides hold:

- the target held the file before the run (its packages installed it, or the operator put the
  merged file there): the target's is kept, byte for byte;
- else the target release ships a copy (``<venv>/etc/<service>/`` beside ``target.bin``): that is
  installed;
- else the source's is the old release's shipped copy unchanged: it is left out (the new release
  no longer ships it);
- else it is the operator's own file (a ``policy.yaml`` of overrides, a filter for a driver of
  their own): it is carried, like any other configuration.

An operator's change to a shipped file (the source's differs from its release's shipped copy, in
the venv beside ``source.bin``) that the target does not take is never dropped silently: `upgrade
check` warns of it before the run, and the step's result reports it as an operator change to merge
by hand (a target file that differs from its own release's shipped copy counts as merged already),
like the ``.rpmnew`` / ``.dpkg-dist`` an operator knows from package upgrades. The source's file stays on the old
controller, which the run only reads, so nothing is lost and the two can be compared at any time.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from services.infra.files import sums
from services.infra.settings import Side

#: paths relative to ``/etc/<service>`` that a release ships; ``*`` never crosses a ``/``
PATTERNS = ("api-paste.ini", "*-paste.ini", "policy.json", "policy.yaml", "rootwrap.conf", "rootwrap.d/*")


def is_shipped(rel: str) -> bool:
    """Whether *rel* (relative to ``/etc/<service>``) is a file the release ships."""
    parts = rel.split("/")
    return any(len(p.split("/")) == len(parts) and all(fnmatchcase(a, b) for a, b in zip(parts, p.split("/"),
                                                                                          strict=True))
               for p in PATTERNS)


def shipped_dir(side: Side, name: str) -> str | None:
    """Where *side*'s release keeps its shipped copies of *name*'s files: ``<venv>/etc/<name>`` for a
    ``bin`` of a venv; None when the services come from ``PATH`` (packages keep no pristine copy
    there that this tool knows)."""
    if not side.bin:
        return None
    return f"{posixpath.dirname(side.bin.rstrip('/'))}/etc/{name}"


def tar_members(data: bytes, name: str) -> dict[str, str]:
    """relative path -> sha256 of every regular file (``symlink to TARGET`` of every link) under ``<name>/``
    of a tar: the target's config backup, what the target held before the run, the same on every resume."""
    out: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            if not m.name.startswith(f"{name}/"):
                continue
            if m.issym():
                out[m.name[len(name) + 1:]] = f"symlink to {m.linkname}"
            elif m.isfile():
                f = tar.extractfile(m)
                out[m.name[len(name) + 1:]] = hashlib.sha256(f.read() if f else b"").hexdigest()
    return out


def operator_changes(ctx: Any, name: str) -> list[str]:
    """The operator's changes to shipped files of *name* that a carry-over now would not take (for
    `upgrade check`: the target's /etc/<name> as it is now stands for what it holds before the run)."""
    s, t = ctx.source, ctx.target
    return [d.operator_change for d in decide(ctx, name, sums(s.host, f"{s.etc}/{name}"),
                                               sums(t.host, f"{t.etc}/{name}")) if d.operator_change]


@dataclass(frozen=True)
class Decision:
    """What the carry-over does with one shipped file of the source (``action``): ``kept_target``,
    ``installed_target_default``, ``left_out`` or ``carried_source``; ``operator_change`` says why the
    source's, which the target does not take, is an operator's change to merge by hand (else "")."""

    rel: str
    action: str
    operator_change: str = ""

    @property
    def carried(self) -> bool:
        return self.action == "carried_source"


def decide(ctx: Any, name: str, source_files: dict[str, str], target_before: dict[str, str]) -> list[Decision]:
    """The decision for every shipped file of the source (*source_files*: relative path -> sha256),
    given what the target held before the run (*target_before*, the same form)."""
    s, t = ctx.source, ctx.target
    old_dir, new_dir = shipped_dir(s, name), shipped_dir(t, name)
    old = sums(s.host, old_dir) if old_dir else {}
    new = sums(t.host, new_dir) if new_dir else {}
    out = []
    for rel, digest in sorted(source_files.items()):
        if not is_shipped(rel):
            continue
        if rel in target_before:
            action, kept = "kept_target", target_before[rel]
        elif rel in new:
            action, kept = "installed_target_default", new[rel]
        elif old.get(rel) == digest:
            action, kept = "left_out", None
        else:
            action, kept = "carried_source", digest
        why = ""
        merged = action == "kept_target" and rel in new and kept != new[rel]  # the target's own, not its release's
        if kept != digest and old.get(rel) != digest and action != "left_out" and not merged:
            where = f"{s.etc}/{name}/{rel}"
            why = (f"{where} on the source differs from {ctx.from_release}'s shipped copy ({old_dir}/{rel})"
                   if rel in old else
                   f"{where} on the source differs from the target's, and no shipped copy of {ctx.from_release} "
                   f"tells an operator's change from the release's ({old_dir or 'source.bin is not a venv'})")
            why += (f"; the target keeps {ctx.to_release}'s {t.etc}/{name}/{rel} — merge the change into it by hand "
                    "if the new release still needs it (the old controller keeps the source's file)")
        out.append(Decision(rel, action, why))
    return out


def shown(ctx: Any, name: str) -> list[str]:
    """What the carry-over does with shipped files, for `upgrade plan` (nothing is read: the files
    themselves are listed in the step's result)."""
    s, t = ctx.source, ctx.target
    new_dir, old_dir = shipped_dir(t, name), shipped_dir(s, name)
    return [f"keep the target's shipped files of {t.etc}/{name} ({', '.join(PATTERNS)}) as they are; one the target "
            f"lacks: {f'the copy its release ships in {new_dir} (if there), else ' if new_dir else ''}the source's if "
            "the operator made it, never the old release's unchanged copy",
            "report each of those the operator changed on the source (it differs from the old release's shipped copy"
            f"{f' in {old_dir}' if old_dir else ''}) and the target does not take: to merge by hand"]
