"""Is the target really another controller? Servers and directories by what they are (DESIGN.md §9.1).

A plan spells its controllers: ``localhost`` and ``127.0.0.1`` on one port are one DB server, and
``/srv/old/etc/.`` or a symlink are the old controller's ``/etc``. Writing to such a "target"
destroys what the upgrade reads. So a DB server is known by its own names (``@@server_uuid``, or
hostname + datadir + port, and the Galera cluster), and by a named lock both addresses see; a
directory by device and inode on its host, with symlinks and ``..`` resolved. Two hosts with
different kernels (boot ids) share no directory; on one kernel (one machine, or containers and
network namespaces on it) device + inode name a file whatever the mount namespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.infra import mysql
from services.infra.host import Host
from services.infra.settings import Side
from statemachine.step import StepError

#: the service directories the runbook writes on the target under etc and lib (``/etc/keystone``, ...)
KINDS = ("etc", "lib")

# A constant script; the paths are its arguments. Prints the kernel's boot id, then one line per path:
# device:inode of the path (or "-" when it does not exist), those of every existing ancestor, the
# resolved path (symlinks and ".." resolved: `readlink -m`, which needs no component to exist).
_STAT = r'''ups() {  # device:inode of every existing ancestor of $1, nearest first, one stat for all
  a=$1; set --
  while [ "$a" != / ]; do a=${a%/*}; a=${a:-/}; set -- "$@" "$a"; done
  [ $# -eq 0 ] || echo $(stat -L -c %d:%i -- "$@" 2>/dev/null)
}
cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo -
for p do
  r=$(readlink -m -- "$p") || exit 3
  self=$(stat -L -c %d:%i -- "$r" 2>/dev/null) || self=-
  printf '%s\t%s\t%s\n' "$self" "$(ups "$r")" "$r"
done'''


@dataclass(frozen=True)
class DirIdentity:
    """A directory on a host: what the plan says, where it resolves, device:inode of it and its parents."""

    key: str          # the plan key, e.g. ``target.etc`` or ``target.etc``/keystone
    path: str
    resolved: str
    inode: str | None
    parents: tuple[str, ...]


def dir_identities(host: Host, paths: dict[str, str]) -> tuple[str, dict[str, DirIdentity]]:
    """(the host's boot id, {key: identity}) for the directories *paths* ({key: path}) on *host*."""
    items = list(paths.items())
    for key, path in items:
        if "\n" in path or "\t" in path:
            raise StepError(f"`{key}` ({path!r}) holds a line break or tab — give a plain absolute path",
                            host=host.name)
    argv = ["sh", "-c", _STAT, "osu-stat", *(p for _k, p in items)]
    res = host.run(argv, timeout=120)
    lines = res.stdout.split("\n")
    if res.rc != 0 or len(lines) < len(items) + 1:
        raise StepError(f"cannot identify the directories {', '.join(p for _k, p in items)} on {host.name}: "
                        f"the stat script exited {res.rc}", host=host.name, rc=res.rc, output=res.output)
    out = {}
    for (key, path), line in zip(items, lines[1:], strict=False):
        inode, up, resolved = line.split("\t", 2)
        out[key] = DirIdentity(key, path, resolved, None if inode == "-" else inode, tuple(up.split()))
    return lines[0].strip(), out


def relation(t: DirIdentity, s: DirIdentity) -> str | None:
    """How target directory *t* overlaps source directory *s* on one machine, or None."""
    if t.inode and t.inode == s.inode:
        return "is the same directory as"
    if s.inode and s.inode in t.parents:
        return "lies inside"
    if t.inode and t.inode in s.parents:
        return "contains"
    return None


def _paths(side: Side, services: Iterable[str]) -> dict[str, str]:
    out = {}
    for kind in KINDS:
        root = getattr(side, kind)
        out[f"`{side.role}.{kind}`"] = root
        for name in services:
            out[f"`{side.role}.{kind}`/{name}"] = f"{root.rstrip('/')}/{name}"
    return out


def directory_conflicts(source: Side, target: Side, services: Iterable[str]) -> list[str]:
    """Why the target's directories are the source's, one message each (empty: they are distinct).

    The roots (``etc``, ``lib``) must not be the same directory; each service's directory on the
    target must not be, lie inside or contain the source's. A root inside the source's root is
    fine (a container tree under the old ``/var/lib``), as long as no service directory meets.
    """
    names = list(services)
    return conflicts(side_dirs(source, names), side_dirs(target, names), target)


#: a controller's directories as :func:`side_dirs` finds them: (its boot id, {plan key: identity})
SideDirs = tuple[str, dict[str, DirIdentity]]


def side_dirs(side: Side, services: Iterable[str]) -> SideDirs:
    """*side*'s ``etc``/``lib`` and each service's directory in them, identified on its host."""
    return dir_identities(side.host, _paths(side, list(services)))


def conflicts(source: SideDirs, target: SideDirs, side: Side) -> list[str]:
    """:func:`directory_conflicts` of two sides' identified directories (*side*: the target)."""
    (boot_s, src), (boot_t, dst) = source, target
    if boot_s != boot_t or boot_s == "-":
        return []  # two kernels: two machines, their directories cannot be one
    out = []
    for key, t in dst.items():
        s = src[key.replace("`target.", "`source.", 1)]
        rel = relation(t, s)
        if rel is None or (rel != "is the same directory as" and "/" not in key.replace("`", "")):
            continue
        where = f" ({t.path} -> {t.resolved})" if t.resolved != t.path.rstrip("/") else f" ({t.path})"
        out.append(f"{key}{where} {rel} {s.key} ({s.resolved}) on {side.host.name} (device:inode "
                   f"{t.inode or '-'} / {s.inode or '-'}): the run would write into the old controller's files — "
                   f"point {key.split('/')[0]} at the new controller's directory")
    return out


@dataclass(frozen=True)
class Servers:
    """Both DB servers as they name themselves."""

    source: mysql.ServerIdentity
    target: mysql.ServerIdentity


def server_conflict(source: Side, target: Side) -> tuple[Servers, str | None]:
    """Both servers' identities, and why they are one server (None: two servers)."""
    ids = Servers(mysql.server_identity(source.db), mysql.server_identity(target.db))
    why = ids.source.same_as(ids.target)
    if why is None and mysql.shares_locks(source.db, target.db):
        why = "one running server (a named lock taken through one address is held through the other)"
    if why is None:
        return ids, None
    s, t = source.db, target.db
    return ids, (f"`source.db` ({s.address}:{s.port}) and `target.db` ({t.address}:{t.port}) reach the same "
                 f"database server ({why}) — the import would drop and overwrite the old controller's "
                 "databases; set `target.db.address` and `target.db.port` to the new controller's DB server")
