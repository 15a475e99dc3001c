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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from services.infra import mysql, together
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


def _suffix(key: str) -> str:
    """The plan key without its side (``target.etc`` -> ``etc``): the same directory of any controller."""
    return key.split(".", 1)[1]


def overlaps(a: SideDirs, b: SideDirs, roots_only: bool = False) -> list[tuple[DirIdentity, str, DirIdentity]]:
    """(directory of *a*, relation, directory of *b*) for each of *a*'s directories that meets *b*'s of the
    same kind on one machine: a root (``etc``, ``lib``) that is the same directory, a service's directory
    that is, lies inside or contains the other's. *roots_only*: the roots alone (one machine twice)."""
    (boot_a, da), (boot_b, db) = a, b
    if boot_a != boot_b or boot_a == "-":
        return []  # two kernels: two machines, their directories cannot be one
    theirs = {_suffix(k): d for k, d in db.items()}
    out = []
    for key, t in da.items():
        s = theirs.get(_suffix(key))
        root = "/" not in key.replace("`", "")
        rel = relation(t, s) if s is not None and (root or not roots_only) else None
        if rel is None or (rel != "is the same directory as" and root):
            continue
        out.append((t, rel, s))
    return out


def _where(d: DirIdentity) -> str:
    return f" ({d.path} -> {d.resolved})" if d.resolved != d.path.rstrip("/") else f" ({d.path})"


def conflicts(source: SideDirs, target: SideDirs, side: Side) -> list[str]:
    """:func:`directory_conflicts` of two sides' identified directories (*side*: the target)."""
    return [f"{t.key}{_where(t)} {rel} {s.key} ({s.resolved}) on {side.host.name} (device:inode "
            f"{t.inode or '-'} / {s.inode or '-'}): the run would write into the old controller's files — "
            f"point {t.key.split('/')[0]} at the new controller's directory"
            for t, rel, s in overlaps(target, source)]


@dataclass(frozen=True)
class Servers:
    """Both DB servers as they name themselves."""

    source: mysql.ServerIdentity
    target: mysql.ServerIdentity
    #: an HA plan's members whose DB server answered, by :attr:`Controller.key` (``source:oldctl2``)
    members: dict[str, mysql.ServerIdentity] = field(default_factory=dict, compare=False)


def one_server(named: str | None, a: Side, b: Side) -> str | None:
    """Why *a*'s and *b*'s DB servers are one: *named*, what their own names say (None: they differ), else a
    named lock taken through one address and held through the other (one running server whatever it is
    called); None: two servers."""
    if named is None and mysql.shares_locks(a.db, b.db):
        return "one running server (a named lock taken through one address is held through the other)"
    return named


def server_conflict(source: Side, target: Side) -> tuple[Servers, str | None]:
    """Both servers' identities, and why they are one server (None: two servers)."""
    ids = Servers(mysql.server_identity(source.db), mysql.server_identity(target.db))
    why = one_server(ids.source.same_as(ids.target), source, target)
    if why is None:
        return ids, None
    s, t = source.db, target.db
    return ids, (f"`source.db` ({s.address}:{s.port}) and `target.db` ({t.address}:{t.port}) reach the same "
                 f"database server ({why}) — the import would drop and overwrite the old controller's "
                 "databases; set `target.db.address` and `target.db.port` to the new controller's DB server")


# ---------------------------------------------------------------------- every member of an HA plan
@dataclass(frozen=True)
class Controller:
    """One controller of a side as the member guard compares it: its plan name, and the side it is
    (its own host, DB node and the side's layout). ``working``: the member the run works through."""

    role: str
    name: str
    side: Side
    working: bool = False

    @property
    def label(self) -> str:
        return f"{self.role} member {self.name}"

    @property
    def key(self) -> str:
        """How the journal names it: ``source:oldctl2``."""
        return f"{self.role}:{self.name}"


T = TypeVar("T")


def pairs(old: Sequence[T], new: Sequence[T]) -> list[tuple[T, T, bool]]:
    """Every pair of controllers the guard compares, ``(a, b, across)``: every new one against every old
    one (``across``: a new member must never be an old one), then every two of one side (a side lists each
    controller once). Pure: n old and m new give n*m + n(n-1)/2 + m(m-1)/2 pairs."""
    out = [(o, n, True) for n in new for o in old]
    for side in (old, new):
        out += [(a, b, False) for i, a in enumerate(side) for b in side[i + 1:]]
    return out


def same_node(a: mysql.ServerIdentity, b: mysql.ServerIdentity) -> str | None:
    """Why *a* and *b* are one DB server by its own names (``server_uuid``, or hostname + datadir + port), or
    None. Unlike :meth:`ServerIdentity.same_as` the Galera cluster does not count: the nodes of one side's
    cluster hold one data set by design, and are still three servers."""
    return a.key if a.key == b.key else None


@dataclass
class MemberFindings:
    """What comparing every pair of members found: the DB servers that answered (by :attr:`Controller.key`),
    why two members are one controller (one message each, naming both and the fix), and the members whose
    DB server did not answer (compared by their directories alone)."""

    servers: dict[str, mysql.ServerIdentity]
    problems: list[str]
    unreached: list[str]


def _ep(c: Controller) -> str:
    return f"{c.side.db.address}:{c.side.db.port}"


def _db_problem(a: Controller, b: Controller, across: bool, ids: dict[str, mysql.ServerIdentity]) -> str | None:
    ia, ib = ids.get(a.key), ids.get(b.key)
    if ia is None or ib is None:
        return None
    why = one_server(ia.same_as(ib) if across else same_node(ia, ib), a.side, b.side)
    if why is None:
        return None
    if across:
        return (f"{b.label} ({_ep(b)}) reaches the DB server of {a.label} ({_ep(a)}): {why} — the run would write "
                f"to the old controllers' databases; a new member is never an old one: take {a.name}'s address out "
                f"of `target.members` and name the new controller there")
    return (f"{a.label} ({_ep(a)}) and {b.label} ({_ep(b)}) reach one DB server ({why}): one controller listed "
            f"twice under two names — list each controller of `{a.role}.members` once")


def _dir_problems(a: Controller, b: Controller, across: bool, dirs: dict[str, SideDirs]) -> list[str]:
    if across:
        return [f"{b.label}: {t.key}{_where(t)} {rel} {a.label}'s {s.key} ({s.resolved}) on {b.side.host.name} "
                f"(device:inode {t.inode or '-'} / {s.inode or '-'}): it is the old controller {a.name}, the run would "
                f"write into its files — take {a.name} out of `target.members` and name the new "
                "controller there"
                for t, rel, s in overlaps(dirs[b.key], dirs[a.key])]
    return [f"{a.label} and {b.label}: {t.key}{_where(t)} is the same directory on both (device:inode "
            f"{t.inode or '-'}): one machine listed twice under two names — list each controller of "
            f"`{a.role}.members` once"
            for t, _rel, _s in overlaps(dirs[a.key], dirs[b.key], roots_only=True)]


def member_conflicts(old: Sequence[Controller], new: Sequence[Controller], services: Iterable[str],
                     skip: tuple[str, str] | None = None, strict: bool = True) -> MemberFindings:
    """Every pair of :func:`pairs` compared by what the controllers are: DB servers by their own names (and
    across the sides by their Galera cluster) and a named lock, directories by device + inode (the same
    rules as the source against the target). *skip*: the pair (old key, new key) already compared as the
    plan's source and target. The working members' DB servers must answer (*strict*; a StepError otherwise);
    another member's that does not is listed in ``unreached`` (a node down, or another side's password: an old
    controller listed as a new member) and compared by its directories alone. Reads only."""
    names = list(services)
    everyone = [*old, *new]

    def server(c: Controller) -> mysql.ServerIdentity | None:
        try:
            return mysql.server_identity(c.side.db)
        except mysql.DBConnectError:
            if c.working and strict:
                raise
            return None

    found = dict(zip([c.key for c in everyone], together.each(server, everyone), strict=True))
    ids = {k: v for k, v in found.items() if v is not None}
    dirs = dict(zip([c.key for c in everyone], together.each(lambda c: side_dirs(c.side, names), everyone),
                    strict=True))
    problems: list[str] = []
    for a, b, across in pairs(old, new):
        if skip is not None and (a.key, b.key) == skip:
            continue
        if (why := _db_problem(a, b, across, ids)) is not None:
            problems.append(why)
        problems += _dir_problems(a, b, across, dirs)
    return MemberFindings(ids, problems, [c.label for c in everyone if c.key not in ids])
