"""A cache of the fresh schemas a lab's setup makes: the first lab that syncs a release's schema for a
service (``keystone-manage db_sync``, ``nova-manage db sync``, ...) on empty databases keeps a dump of
them; every later lab loads that dump instead of running the sync again (tens of seconds of the real
tools per controller, on every lab of the suite).

Only a lab's *setup* uses it, and only when ``OSU_LAB_SCHEMA_CACHE`` names an existing directory:
tests/conftest.py sets it for the test run; ``python -m scripts.lab up`` (``make demo`` too) keeps one
across builds (:data:`DEFAULT`, ``--schema-cache``), so only its first build of a release syncs for
real. The dump is what the real sync of that release made, so the loaded schema is the same, rows
included (alembic versions, cinder's default volume type, nova's cell mappings); its key names the
venv's installed distributions with their versions, so a venv rebuilt with others syncs for real again.
The upgrade tool's own schema migrations never go through here.

A multi-host lab host has a ``/tmp`` of its own, where the run's cache is not: :func:`lent` links the
dumps into it for a setup inside the host and brings back what the host synced, so the multi-host lab
loads the schemas the local labs of the run synced (the same venvs, the same loopback URLs) and the
other way round.

What a sync writes about its own server (nova's cell mappings name the DB server's port) is stored
with a marker in place of the port and gets the loading server's port back. Several processes (the
pytest-xdist workers, a lab built by a subprocess) share one cache: one builds a key under a file
lock while the others wait, and a dump is written whole or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from scripts.lab.mariadb import MariaDB
from scripts.lab.proc import LabError

ENV = "OSU_LAB_SCHEMA_CACHE"
#: the server's own port inside the dump (``mysql+pymysql://nova:...@127.0.0.1:<port>/nova_cell0``)
_PORT_MARK = b"@@OSU_LAB_DB_PORT@@"
#: where ``python -m scripts.lab up`` keeps its cache across builds unless told otherwise
DEFAULT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "openstack-upgrade" / "lab-schemas"
#: the cache lent to a multi-host lab host, in its own /tmp
HOST_DIR = "lab-schema-cache"


def _installed(venv: Path) -> str:
    """What the venv holds: its distributions with their versions (``nova-32.0.0.dist-info``, ...)."""
    return ",".join(sorted(p.name for p in Path(venv).glob("lib/python*/site-packages/*.dist-info")))


def _empty(db: MariaDB, schemas: Sequence[str]) -> bool:
    """No table in any of ``schemas``: what a fresh controller has before its first sync."""
    marks = ", ".join(["%s"] * len(schemas))
    rows = db.execute(f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema IN ({marks})",
                      args=tuple(schemas))
    return not rows[0][0]


def _own_address(db: MariaDB) -> bytes:
    return f"@{db.host}:{db.port}/".encode()


def _dump(db: MariaDB, schemas: Sequence[str], path: Path) -> None:
    proc = subprocess.run(db._client("mariadb-dump") + ["--single-transaction", "--routines", "--triggers",
                                                         "--events", "--hex-blob", "--skip-dump-date",
                                                         "--databases", *schemas],
                          capture_output=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise LabError(f"mariadb-dump of {', '.join(schemas)} from port {db.port} failed (rc {proc.returncode}): "
                       f"{proc.stderr.decode(errors='replace').strip()}")
    tmp = path.with_name(path.name + ".partial")
    tmp.touch(mode=0o600)  # nova's cell mappings hold its DB password
    tmp.write_bytes(proc.stdout.replace(_own_address(db), b"@" + db.host.encode() + b":" + _PORT_MARK + b"/"))
    tmp.replace(path)


def _load(db: MariaDB, path: Path) -> None:
    sql = path.read_bytes().replace(_PORT_MARK, str(db.port).encode())
    proc = subprocess.run(db._client("mariadb"), input=sql, capture_output=True)
    if proc.returncode != 0:
        raise LabError(f"loading the cached schema {path} into port {db.port} failed (rc {proc.returncode}): "
                       f"{proc.stderr.decode(errors='replace').strip()}")


def synced(db: MariaDB, venv: Path, service: str, schemas: Sequence[str], sync: Callable[[], object]) -> None:
    """``sync()`` the fresh ``schemas`` of ``service`` on ``db`` (``venv``: the release's tools), or load
    what that sync made earlier in this run. Without the cache, or on databases that hold tables
    already, simply ``sync()``."""
    cache = os.environ.get(ENV)
    if not cache or not Path(cache).is_dir() or not _empty(db, schemas):
        sync()
        return
    key = hashlib.sha256(f"{Path(venv).resolve()}|{_installed(venv)}|{service}|{','.join(schemas)}|{db.host}"
                         .encode()).hexdigest()
    path = Path(cache) / f"{Path(venv).name}-{service}-{key[:16]}.sql"
    with Path(f"{path}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builds, the others wait and load
        if path.exists():
            _load(db, path)
            return
        sync()
        _dump(db, schemas, path)


def _place(src: Path, dst: Path) -> None:
    """*src* at *dst* whole or not at all (a hard link where both are on one file system, else a copy); two
    threads placing the same dump (a host's units started side by side) each use their own partial file."""
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.{threading.get_ident()}.partial")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
        tmp.chmod(0o600)
    tmp.replace(dst)


@contextlib.contextmanager
def lent(host_tmp: Path) -> Iterator[list[str]]:
    """The run's cache lent to a multi-host lab host whose ``/tmp`` is *host_tmp* seen from here: its dumps
    placed in the host's ``/tmp/lab-schema-cache``, the ``env`` words that name that to a process of the
    host (nothing secret), and the dumps that process made brought back into the run's cache after it.
    Without a run's cache: no words, and the host syncs for real."""
    cache = os.environ.get(ENV)
    if not cache or not Path(cache).is_dir():
        yield []
        return
    here, there = Path(cache), Path(host_tmp) / HOST_DIR
    there.mkdir(mode=0o700, exist_ok=True)
    for dump in here.glob("*.sql"):
        if not (there / dump.name).exists():
            _place(dump, there / dump.name)
    try:
        yield [f"{ENV}=/tmp/{HOST_DIR}"]
    finally:
        for dump in there.glob("*.sql"):
            if not (here / dump.name).exists():
                _place(dump, here / dump.name)
