"""MySQL/MariaDB operations of an upgrade: credentials on a pipe, streaming dump and import through
the vault, users and grants, and table checksums.

Passwords reach ``mysqldump``/``mysql`` through a pipe on fd 3 of the host that runs them (never a file,
never argv; DESIGN.md §6). Queries from the tool itself go through PyMySQL.
"""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import threading
import time
import uuid as uuid_mod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from journal import vault
from services.infra.deferkeys import DeferKeys, table_done_name
from services.infra.host import Host, command_text
from services.infra.settings import DBEndpoint
from statemachine.step import StepError

DUMP_OPTIONS = ("--single-transaction", "--routines", "--triggers", "--events", "--hex-blob",
                "--add-drop-table", "--skip-comments")


class DBConnectError(StepError):
    """The tool cannot reach or log in to a database server."""


class Connection(pymysql.connections.Connection):
    """PyMySQL's connection with one TLS context per process for its default ("preferred") mode.

    Without TLS options PyMySQL (1.2 on) builds a fresh ``ssl.create_default_context()`` for every connection,
    loading the system's CA store each time: some 20 ms of CPU, whether the server offers TLS or not. The tool
    opens hundreds of short connections in a run (each step's target check, every count and checksum), so that
    was seconds of CPU inside the maintenance window. The same context, built the same way once, serves them
    all (an SSLContext is safe to share between threads); explicit TLS options still build their own."""

    _preferred: Any = None
    _lock = threading.Lock()

    def _create_ssl_ctx(self, sslp: Any) -> Any:
        if not (isinstance(sslp, dict) and not sslp):
            return super()._create_ssl_ctx(sslp)
        with Connection._lock:
            if Connection._preferred is None:
                Connection._preferred = super()._create_ssl_ctx({})
            return Connection._preferred


def connect(ep: DBEndpoint, db: str | None = None) -> pymysql.connections.Connection:
    try:
        return Connection(host=ep.address, port=ep.port, user=ep.admin_user, password=ep.admin_password,
                          database=db, autocommit=True, connect_timeout=10, read_timeout=600, write_timeout=600,
                          charset="utf8mb4")
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else None
        if code == 1045:
            fix = f"check the admin user and password for {ep.address}:{ep.port} in the plan"
        elif code == 1049:
            fix = f"database {db!r} does not exist on {ep.address}:{ep.port}"
        else:
            fix = f"check that the DB server at {ep.address}:{ep.port} runs and is reachable from this host"
        raise DBConnectError(f"cannot connect to the database at {ep.address}:{ep.port} as "
                             f"{ep.admin_user!r}: {exc.args[-1] if exc.args else exc} — {fix}",
                             host=f"{ep.address}:{ep.port}") from None


def query(ep: DBEndpoint, sql: str, args: Any = None, db: str | None = None) -> list[tuple]:
    conn = connect(ep, db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()



def table_columns(ep: DBEndpoint, db: str, table: str) -> list[str]:
    """The columns of *db*.*table* in their order ([] when the table does not exist)."""
    return [r[0] for r in query(ep, "SELECT column_name FROM information_schema.columns WHERE table_schema=%s "
                                    "AND table_name=%s ORDER BY ordinal_position", (db, table))]

def execute_many(ep: DBEndpoint, statements: list[str], db: str | None = None) -> None:
    conn = connect(ep, db)
    try:
        with conn.cursor() as cur:
            for stmt in statements:
                cur.execute(stmt)
    finally:
        conn.close()


def quote_ident(name: str) -> str:
    if not name or "`" in name or "\x00" in name:
        raise ValueError(f"invalid identifier {name!r}")
    return f"`{name}`"


def db_exists(ep: DBEndpoint, db: str) -> bool:
    return bool(query(ep, "SELECT 1 FROM information_schema.schemata WHERE schema_name=%s", (db,)))


def db_charset(ep: DBEndpoint, db: str) -> tuple[str, str]:
    conn = connect(ep)
    try:
        with conn.cursor() as cur:
            return _charset(cur, ep, db)
    finally:
        conn.close()


def _charset(cur: Any, ep: DBEndpoint, db: str) -> tuple[str, str]:
    """The database's default charset and collation, through an open cursor."""
    cur.execute("SELECT default_character_set_name, default_collation_name FROM "
                "information_schema.schemata WHERE schema_name=%s", (db,))
    row = cur.fetchone()
    if not row:
        raise StepError(f"database {db!r} does not exist on {ep.address}:{ep.port}", host=ep.address)
    return row[0], row[1]


#: tables per checksum statement (one UNION ALL of counts, one CHECKSUM TABLE list)
CHECKSUM_BATCH = 100


def checksums(ep: DBEndpoint, db: str, tables: list[str] | None = None) -> dict[str, list[int | None]]:
    """Per table: [row count, CHECKSUM TABLE]. Compared after import to prove nothing was lost.
    *tables*: only these (one stream's, checked as soon as its import finishes); None: every table."""
    conn = connect(ep, db)
    try:
        with conn.cursor() as cur:
            return _checksums(cur, db, tables)
    finally:
        conn.close()


def _checksums(cur: Any, db: str, only: list[str] | None = None) -> dict[str, list[int | None]]:
    if only is None:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema=%s "
                    "AND table_type='BASE TABLE' ORDER BY table_name", (db,))
        tables = [r[0] for r in cur.fetchall()]
    else:
        tables = sorted(only)
    out: dict[str, list[int | None]] = {}
    # a few statements for all the tables, not two per table: a schema of 200 tables costs
    # a handful of round trips (the work per row stays the server's)
    for i in range(0, len(tables), CHECKSUM_BATCH):
        batch = tables[i:i + CHECKSUM_BATCH]
        cur.execute(" UNION ALL ".join(f"SELECT {n}, COUNT(*) FROM {quote_ident(t)}" for n, t in enumerate(batch)))
        counts = dict(cur.fetchall())
        cur.execute("CHECKSUM TABLE " + ", ".join(quote_ident(t) for t in batch))
        sums = [r[1] for r in cur.fetchall()]
        if len(sums) != len(batch) or len(counts) != len(batch):
            raise RuntimeError(f"{db}: the server answered for {len(sums)} of {len(batch)} tables")
        for n, t in enumerate(batch):
            out[t] = [counts[n], sums[n]]
    return out


class TableChecks:
    """Row counts and ``CHECKSUM TABLE`` of tables on one server, each table as soon as it is told the
    table is complete (``done``): one thread with its own connection, so the checks of the tables imported
    so far run while the next ones import, and only the last table's is left when the import ends. Tables
    told at once are checked in one batch. ``finish`` checks any table it was never told of (a dump without
    marks), then returns every table's [count, checksum]; ``stop`` ends the thread without waiting for it."""

    def __init__(self, ep: DBEndpoint, db: str) -> None:
        self.ep, self.db = ep, db
        self.sums: dict[str, list[int | None]] = {}
        self.error: BaseException | None = None
        self.seconds = 0.0  # the time the checks took (beside the import)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"checks-{db}", daemon=True)
        self._thread.start()

    def done(self, table: str) -> None:
        self._queue.put(table)

    def _run(self) -> None:
        conn = None
        try:
            while (table := self._queue.get()) is not None:
                batch, end = [table], False
                while not self._queue.empty():  # what arrived meanwhile goes in the same statements
                    more = self._queue.get()
                    if more is None:
                        end = True
                        break
                    batch.append(more)
                started = time.monotonic()
                conn = conn or connect(self.ep, self.db)
                with conn.cursor() as cur:
                    self.sums.update(_checksums(cur, self.db, sorted(set(batch) - set(self.sums))))
                self.seconds += time.monotonic() - started
                if end:
                    break
        except BaseException as exc:  # reported by finish
            self.error = exc
        finally:
            if conn is not None:
                conn.close()

    def finish(self, tables: list[str]) -> dict[str, list[int | None]]:
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        missing = [t for t in tables if t not in self.sums]
        if missing:
            started = time.monotonic()
            self.sums.update(checksums(self.ep, self.db, missing))
            self.seconds += time.monotonic() - started
        return {t: self.sums[t] for t in tables}

    def stop(self) -> None:
        self._queue.put(None)


@dataclass(frozen=True)
class DBFacts:
    """What the dump step records of a source database, read through one connection (each new
    connection costs a TLS context set-up in PyMySQL): its charset and collation, per table its
    row count and checksum, and its collation (the charset audit)."""

    charset: str
    collation: str
    checksums: dict[str, list[int | None]]
    collations: dict[str, str]


def db_facts(ep: DBEndpoint, db: str, sums: bool = True) -> DBFacts:
    """*sums* False: no counts and checksums (the streamed dump reads them per table, stream by stream)."""
    conn = connect(ep, db)
    try:
        with conn.cursor() as cur:
            charset, collation = _charset(cur, ep, db)
            table_sums = _checksums(cur, db) if sums else {}
            cur.execute("SELECT table_name, table_collation FROM information_schema.tables WHERE "
                        "table_schema=%s AND table_type='BASE TABLE' ORDER BY table_name", (db,))
            collations = {r[0]: r[1] or "" for r in cur.fetchall()}
    finally:
        conn.close()
    return DBFacts(charset, collation, table_sums, collations)


@dataclass(frozen=True)
class Tables:
    """What a database holds, for cutting its dump into streams: every base table with its size on
    disk (data and indexes), and whether it holds anything that is not a base table (views,
    sequences), whose definitions may name tables of other streams."""

    sizes: dict[str, int]
    others: bool


def tables_of(ep: DBEndpoint, db: str) -> Tables:
    rows = query(ep, "SELECT table_name, table_type, COALESCE(data_length, 0) + COALESCE(index_length, 0) "
                     "FROM information_schema.tables WHERE table_schema=%s", (db,))
    return Tables({r[0]: int(r[2]) for r in rows if r[1] == "BASE TABLE"}, any(r[1] != "BASE TABLE" for r in rows))


def end_sessions(ep: DBEndpoint, db: str, timeout: float = 120.0) -> None:
    """End every other session in *db* and wait until they are gone, before the database is dropped.

    A run killed while it imported leaves its ``mysql`` clients behind: they go on reading what is left
    in their pipe and would write the old attempt's rows (or triggers) into the database the next
    attempt has just re-created. The service on this side is stopped, and the database is about to be
    dropped, so nothing legitimate is lost."""
    conn = connect(ep)
    try:
        with conn.cursor() as cur:
            deadline = time.monotonic() + timeout
            while True:
                cur.execute("SELECT id FROM information_schema.processlist WHERE db=%s AND id<>CONNECTION_ID()",
                            (db,))
                ids = [r[0] for r in cur.fetchall()]
                if not ids:
                    return
                if time.monotonic() > deadline:
                    raise StepError(f"sessions {ids} in database {db} on {ep.address}:{ep.port} did not end "
                                    f"within {timeout:.0f} s; end them (KILL CONNECTION) and run again")
                for i in ids:
                    with contextlib.suppress(pymysql.err.OperationalError):  # ended meanwhile
                        cur.execute(f"KILL CONNECTION {int(i)}")
                time.sleep(0.05)
    finally:
        conn.close()


def recreate_db(ep: DBEndpoint, db: str, charset: str, collation: str) -> None:
    end_sessions(ep, db)
    execute_many(ep, [f"DROP DATABASE IF EXISTS {quote_ident(db)}",
                      f"CREATE DATABASE {quote_ident(db)} CHARACTER SET {charset} COLLATE {collation}"])


def drop_db(ep: DBEndpoint, db: str) -> None:
    end_sessions(ep, db)
    execute_many(ep, [f"DROP DATABASE IF EXISTS {quote_ident(db)}"])


# ---------------------------------------------------------------------- what a server is
@dataclass(frozen=True)
class ServerIdentity:
    """A DB server as it names itself, whatever address reached it (DESIGN.md §9.1).

    ``server_uuid`` is MySQL's (MariaDB has none: hostname + datadir + port stand for it);
    ``cluster_uuid`` is the Galera cluster's when wsrep is on: every node of one cluster holds the
    same data, so two nodes of one cluster are one server for the upgrade.
    """

    server_uuid: str
    hostname: str
    datadir: str
    port: int
    cluster_uuid: str = ""

    @property
    def key(self) -> str:
        return f"uuid {self.server_uuid}" if self.server_uuid else \
            f"hostname {self.hostname}, datadir {self.datadir}, port {self.port}"

    def describe(self) -> str:
        return self.key + (f", Galera cluster {self.cluster_uuid}" if self.cluster_uuid else "")

    def same_as(self, other: ServerIdentity) -> str | None:
        """Why *other* holds the same data as this server (its description), or None."""
        if self.cluster_uuid and self.cluster_uuid == other.cluster_uuid:
            return f"Galera cluster {self.cluster_uuid}"
        return self.key if self.key == other.key else None

    def as_dict(self) -> dict[str, Any]:
        return {"server_uuid": self.server_uuid, "hostname": self.hostname, "datadir": self.datadir,
                "port": self.port, "cluster_uuid": self.cluster_uuid}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServerIdentity:
        return cls(str(d.get("server_uuid") or ""), str(d.get("hostname") or ""), str(d.get("datadir") or ""),
                   int(d.get("port") or 0), str(d.get("cluster_uuid") or ""))


_NO_UUID = ("", "00000000-0000-0000-0000-000000000000")


_IDENTITY_VARIABLES = ("SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                       "('server_uuid', 'hostname', 'datadir', 'port', 'wsrep_on')")
_CLUSTER_STATUS = ("SHOW GLOBAL STATUS WHERE Variable_name IN "
                   "('wsrep_cluster_state_uuid', 'wsrep_local_state_uuid')")


def _identity(var: dict[str, str], status: dict[str, str]) -> ServerIdentity:
    cluster = ""
    if var.get("wsrep_on", "").upper() == "ON":
        cluster = next((status[k] for k in ("wsrep_cluster_state_uuid", "wsrep_local_state_uuid")
                        if status.get(k, "") not in _NO_UUID), "")
    uuid = var.get("server_uuid", "")
    return ServerIdentity(server_uuid="" if uuid in _NO_UUID else uuid, hostname=var.get("hostname", ""),
                          datadir=var.get("datadir", "").rstrip("/"), port=int(var.get("port") or 0),
                          cluster_uuid=cluster)


def server_identity(ep: DBEndpoint) -> ServerIdentity:
    """``@@server_uuid`` (MySQL), ``@@hostname``, ``@@datadir``, ``@@port`` and, with wsrep on, the Galera
    cluster's state UUID: the same statements work on MariaDB and MySQL (absent names are just absent)."""
    conn = connect(ep)
    try:
        with conn.cursor() as cur:
            cur.execute(_IDENTITY_VARIABLES)
            var = {str(k).lower(): str(v) for k, v in cur.fetchall()}
            status: dict[str, str] = {}
            if var.get("wsrep_on", "").upper() == "ON":
                cur.execute(_CLUSTER_STATUS)
                status = {str(k).lower(): str(v) for k, v in cur.fetchall()}
    finally:
        conn.close()
    return _identity(var, status)


def server_identity_from(host: Host, ep: DBEndpoint, client: str = "mysql") -> ServerIdentity:
    """The identity of the server *ep* reaches as *host* sees its address (``localhost`` on another
    machine is another server): asked through the ``mysql`` client on *host*, credentials on a pipe.
    Raises StepError with the client's message when it cannot log in there."""
    argv = [client, f"--defaults-extra-file={CREDENTIALS_FD}", "--batch", "--skip-column-names",
            "-e", f"{_IDENTITY_VARIABLES}; {_CLUSTER_STATUS}"]
    res = host.run(with_credentials(argv), stdin=credentials(ep), timeout=120)
    if res.rc != 0:
        raise StepError(f"`{client}` on {host.name} cannot log in to {ep.address}:{ep.port} as {ep.admin_user}",
                        host=host.name, rc=res.rc, output=res.output)
    pairs = dict(line.split("\t", 1) for line in res.stdout.splitlines() if "\t" in line)
    var = {k.lower(): v for k, v in pairs.items()}
    return _identity(var, var)


def shares_locks(a: DBEndpoint, b: DBEndpoint) -> bool:
    """Whether *a* and *b* reach one running server: a named lock taken through *a* is seen through *b*.

    Named locks live in the server's memory only (no table, no binlog, gone with the session), so the
    probe changes nothing; it proves sameness even where the server's own names are unreliable (a
    cloned VM with the same hostname keeps a different process).
    """
    name = f"openstack-upgrade-probe-{uuid_mod.uuid4().hex}"
    first = connect(a)
    try:
        with first.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", (name,))
            if (cur.fetchone() or (0,))[0] != 1:
                return False
            try:
                return query(b, "SELECT IS_USED_LOCK(%s)", (name,))[0][0] is not None
            finally:
                cur.execute("SELECT RELEASE_LOCK(%s)", (name,))
    finally:
        first.close()


# ---------------------------------------------------------------------- users and grants
def user_statements(ep: DBEndpoint, user: str, hosts: tuple[str, ...]) -> list[str]:
    """SHOW CREATE USER + SHOW GRANTS for every existing user@host: replaying them restores the users."""
    out: list[str] = []
    for h in hosts:
        if not query(ep, "SELECT 1 FROM mysql.user WHERE user=%s AND host=%s", (user, h)):
            continue
        out += [r[0] for r in query(ep, "SHOW CREATE USER %s@%s", (user, h))]
        out += [r[0] for r in query(ep, "SHOW GRANTS FOR %s@%s", (user, h))]
    return out


def restore_users(ep: DBEndpoint, user: str, hosts: tuple[str, ...], statements: list[str]) -> None:
    conn = connect(ep)
    try:
        with conn.cursor() as cur:
            for h in hosts:
                cur.execute("DROP USER IF EXISTS %s@%s", (user, h))
            for stmt in statements:
                cur.execute(stmt)
    finally:
        conn.close()


def grant_service_user(ep: DBEndpoint, db: str, user: str, password: str, hosts: tuple[str, ...]) -> None:
    """Dumps of one database carry no users: (re)create the service user and its grants."""
    conn = connect(ep)
    try:
        with conn.cursor() as cur:
            for h in hosts:
                cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, h, password))
                cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, h, password))
                cur.execute(f"GRANT ALL PRIVILEGES ON {quote_ident(db)}.* TO %s@%s", (user, h))
    finally:
        conn.close()


# ---------------------------------------------------------------------- client programs on a host
def _cnf_value(v: str) -> str:
    """Option files read ``#`` as a comment and ``\\`` as an escape: quote and escape every value."""
    if "\n" in v or "\r" in v:
        raise StepError("a DB user or password with a line break cannot be passed in an option file — change it")
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: Where the client programs read their credentials: a pipe, never a file on disk.
CREDENTIALS_FD = "/dev/fd/3"

#: Reads the ``[client]`` options from stdin up to a NUL byte into fd 3 (a bash here-string, which is
#: a pipe for anything this small), then execs the client. The password is in no argv and in no file,
#: so a SIGKILL at any moment leaves nothing behind, locally and over SSH alike; the rest of stdin
#: (the dump, for an import) goes to the client untouched because ``read`` consumes byte by byte.
_WITH_CREDENTIALS = 'IFS= read -r -d "" cnf; exec 3<<<"$cnf"; unset cnf; exec "$@"'


def credentials(ep: DBEndpoint) -> bytes:
    """The ``[client]`` option text for *ep*, NUL-terminated, to be written first to the client's stdin."""
    body = (f"[client]\nuser={_cnf_value(ep.admin_user)}\npassword={_cnf_value(ep.admin_password)}\n"
            f"host={ep.address}\nport={ep.port}\nprotocol=TCP\n")
    return body.encode() + b"\0"


def with_credentials(argv: list[str]) -> list[str]:
    """Wrap a client command so that it reads its credentials from stdin (see ``_WITH_CREDENTIALS``)."""
    return ["bash", "-c", _WITH_CREDENTIALS, "osu-db-client", *argv]


#: what a MySQL/MariaDB client writes when it fails: ``ERROR 1100 (HY000) at line 65709: ...`` (a server
#: error) or ``mysqldump: Got error: ...`` / ``mariadb: ...`` (the client's own)
_ERROR_LINE = re.compile(rb"^(?:ERROR(?: \d+)?\b|(?:mysql|mysqldump|mariadb|mariadb-dump): )")
#: where a statement's rows begin: what follows (row data, possibly secrets) is never kept
_VALUES = re.compile(rb"^(INSERT(?: IGNORE)? INTO `(?:[^`]|``)+`(?: \([^)]*\))? VALUES)")
_ECHO = b"--------------\n"
#: a kept line is cut to this many bytes
_LINE_MOST = 400


class _Drain(threading.Thread):
    """Collects a child's stderr so a chatty process never blocks on a full pipe, keeping what says why it
    failed: its error lines, and the head of the statement it failed on.

    On a failed statement ``mysql`` echoes the whole statement between ``--------------`` lines before its
    ``ERROR`` line: megabytes of row data for a dump's ``INSERT``. Neither a head nor a tail of a fixed
    size holds the error then; and rows must not reach the journal or the log (a keystone ``password`` row
    is a secret). So error lines are kept wherever they are, of an echoed statement only its first line up
    to ``VALUES``, and of anything else a few KiB from the start and the end."""

    KEEP = 4096

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.errors: list[bytes] = []
        self.statement = b""
        self.head: list[bytes] = []
        self.tail: list[bytes] = []
        self._echo = 0  # 1: the next line starts an echoed statement; 2: inside one

    def run(self) -> None:
        for line in iter(self.stream.readline, b""):
            self._take(line)

    def _take(self, line: bytes) -> None:
        if line == _ECHO:
            self._echo = 1 if self._echo == 0 else 0
            return
        if self._echo:
            if self._echo == 1:
                m = _VALUES.match(line)
                self.statement = (m.group(1) if m else line.rstrip(b"\n"))[:_LINE_MOST]
                self._echo = 2
            return
        if _ERROR_LINE.match(line) and b"[Warning]" not in line:
            if len(self.errors) < 20:
                self.errors.append(line.rstrip(b"\n")[:_LINE_MOST])
            return
        short = line[:_LINE_MOST]
        if sum(map(len, self.head)) < self.KEEP:
            self.head.append(short)
        else:
            self.tail.append(short)
            while sum(map(len, self.tail)) > self.KEEP:
                self.tail.pop(0)

    @property
    def error(self) -> str:
        """The first error line and the statement it stopped at ("" when the client wrote no error)."""
        if not self.errors:
            return ""
        first = self.errors[0].decode(errors="replace")
        return first + (f" (in `{self.statement.decode(errors='replace')} ...`)" if self.statement else "")

    @property
    def text(self) -> str:
        self.join(timeout=5)
        kept = self.head + ([b"...\n"] if self.tail else []) + self.tail
        if self.statement:
            kept.append(b"failed statement: " + self.statement + b" ...\n")
        kept += [e + b"\n" for e in self.errors]
        return b"".join(kept).decode(errors="replace")


def client_failed(what: str, host: Host, argv: list[str], rc: int | None, drain: _Drain) -> StepError:
    """The error of a DB client that failed: the server's or client's first error line and the statement it
    failed on, then the command (the operator's first question is which table and why, not which rows)."""
    output = drain.text
    why = drain.error or f"`{command_text(argv)}` exited {rc}"
    return StepError(f"{what} failed on {host.name}: {why}" + (f" — `{command_text(argv)}` exited {rc}"
                                                                if drain.error else ""),
                     host=host.name, command=command_text(argv), rc=rc, output=output)


def _wait_client(proc: Any, host: Host, argv: list[str], what: str, drain: _Drain) -> None:
    """Wait for a DB client; a non-zero exit is a StepError naming its error (``client_failed``)."""
    rc = proc.wait()
    if rc != 0:
        raise client_failed(what, host, argv, rc, drain)


class _Tap:
    """A reader that calls *hook* once after the first chunk has gone through (for fail points)."""

    def __init__(self, src: Any, hook: Callable[[], None]) -> None:
        self.src = src
        self.hook = hook
        self.fired = False

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        if data and not self.fired:
            self.fired = True
            self.hook()
        return data


class _Counted:
    """A reader or writer that reports the bytes passing through (live progress); it buffers nothing."""

    def __init__(self, stream: Any, progress: Callable[[int], None] | None) -> None:
        self.stream = stream
        self.progress = progress or (lambda _n: None)

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        if data:
            self.progress(len(data))
        return data

    def write(self, data: bytes) -> int:
        n = self.stream.write(data)
        self.progress(len(data) if n is None else n)
        return n

    def flush(self) -> None:
        if hasattr(self.stream, "flush"):
            self.stream.flush()

    def close(self) -> None:
        self.stream.close()


def dump_argv(mysqldump: str, db: str, tables: tuple[str, ...] = (), objects: bool = True) -> list[str]:
    """The dump command; its credentials arrive on CREDENTIALS_FD. *tables*: only these (one stream of a
    database cut by table; none: the whole database); *objects* False: without the database's routines
    and events (one stream of the database carries them).

    A stream of a cut database leaves out ``LOCK TABLES ... WRITE`` around each table's rows
    (``--skip-add-locks``). Under LOCK TABLES the server fixes at the lock which tables an ``INSERT`` may
    touch; an ``INSERT`` into a parent table also opens its foreign-key children, so when another stream
    creates a child (keystone's ``password`` of ``local_user``) while this one still inserts, the next
    ``INSERT`` fails: ``ERROR 1100 ... Table 'password' was not locked with LOCK TABLES``. The lock only
    ever saved MyISAM key flushes; InnoDB commits each ``INSERT`` alike without it."""
    extra: tuple[str, ...] = () if objects else ("--skip-routines", "--skip-events")
    if tables:
        extra += ("--skip-add-locks",)
    return [mysqldump, f"--defaults-extra-file={CREDENTIALS_FD}", *DUMP_OPTIONS, *extra, db,
            *tables]


def import_argv(mysql: str, db: str, unbuffered: bool = False) -> list[str]:
    """The import command; credentials on CREDENTIALS_FD, the decrypted dump on stdin. *unbuffered*: its output
    flushed after each statement (``--unbuffered``): into a pipe, ``mysql`` would otherwise hold the tables'
    marks in its buffer until it exits, and every table's check would wait for the end of the stream."""
    return [mysql, f"--defaults-extra-file={CREDENTIALS_FD}", *(("--unbuffered",) if unbuffered else ()), db]


def _start_client(host: Host, ep: DBEndpoint, argv: list[str], stdout: Any) -> tuple[Any, _Drain]:
    """Start a DB client on *host* with its stderr drained and its credentials already on stdin."""
    proc = host.popen(with_credentials(argv), stdin=subprocess.PIPE, stdout=stdout, stderr=subprocess.PIPE)
    drain = _Drain(proc.stderr)
    drain.start()
    try:
        proc.stdin.write(credentials(ep))
    except BrokenPipeError:
        pass  # the client died at once: its exit code and stderr tell why (_wait_client)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, drain


def dump_to_vault(host: Host, ep: DBEndpoint, mysqldump: str, db: str, dest: str, key: vault.Key,
                  inside: Callable[[], None] = lambda: None,
                  progress: Callable[[int], None] | None = None) -> vault.StreamStats:
    """Stream ``mysqldump db`` on *host* into an encrypted artifact at *dest* (on the tool's host)."""
    argv = dump_argv(mysqldump, db)
    proc, drain = _start_client(host, ep, argv, subprocess.PIPE)
    try:
        proc.stdin.close()
        stats = vault.encrypt_stream(_Counted(_Tap(proc.stdout, inside), progress), dest, key)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    try:
        _wait_client(proc, host, argv, f"dump of database {db}", drain)
    except BaseException:
        Path(dest).unlink(missing_ok=True)  # a truncated dump must never sit under the final name
        raise
    return stats


class Children:
    """The client processes of every stream of one step: when one stream fails, the others are
    stopped at once (their dumps and imports killed) instead of running to their end."""

    def __init__(self) -> None:
        self.procs: list[Any] = []
        self.lock = threading.Lock()
        self.stopped = False

    def add(self, proc: Any) -> None:
        with self.lock:
            self.procs.append(proc)
            if self.stopped:
                proc.kill()

    def kill_all(self) -> None:
        with self.lock:
            self.stopped = True
            for proc in self.procs:
                if proc.poll() is None:
                    proc.kill()


def dump_streamed(src: tuple[Host, DBEndpoint], dst: tuple[Host, DBEndpoint] | None, mysqldump: str, mysql: str,
                  db: str, dest: str, key: vault.Key, tables: tuple[str, ...] = (), objects: bool = True,
                  inside: Callable[[], None] = lambda: None, progress: Callable[[int], None] | None = None,
                  children: Children | None = None, table_done: Callable[[str], None] | None = None,
                  written: Callable[[vault.StreamStats], None] | None = None) -> vault.StreamStats:
    """Stream ``mysqldump db [tables]`` on the source into an encrypted artifact at *dest* and, read once,
    at the same time into ``mysql db`` on the target (*dst*; None: into the vault only).

    The bytes go from the dump's pipe in chunks to the encrypting writer and, through a bounded queue
    (``vault.Tee``), to the import's stdin: memory stays at a few chunks per stream whatever the size.
    Any failure (the dump, the vault write, the import) kills both clients and leaves no artifact; the
    caller puts the target database back. Success: both clients exited 0 and the artifact is in place
    (not yet verified or recorded: the caller does both).

    *table_done*: called with each table's name as soon as ``mysql`` has executed every statement of it (the
    marks of ``deferkeys``), so its checks need not wait for the whole stream. *written*: called once the
    artifact is complete under its final name and the dump exited 0, while the import may still run (its
    last rows, its last table's keys): the caller may start reading it back then."""
    children = children or Children()
    dump_host, dump_ep = src
    argv = dump_argv(mysqldump, db, tables, objects)
    # one name for the import's failure, whether it shows as a broken pipe (the dump still writing) or as the
    # client's exit once the whole dump was read (a small one, a slow import)
    imported = f"import into {db}" + (f" (tables {', '.join(tables)})" if tables else "")
    proc, drain = _start_client(dump_host, dump_ep, argv, subprocess.PIPE)
    children.add(proc)
    imp = tee = marks = None
    try:
        proc.stdin.close()
        if dst is not None:
            imp_host, imp_ep = dst
            imp_argv = import_argv(mysql, db, unbuffered=table_done is not None)
            imp, imp_drain = _start_client(imp_host, imp_ep, imp_argv,
                                           subprocess.PIPE if table_done else subprocess.DEVNULL)
            children.add(imp)
            if table_done is not None:
                marks = _read_marks(imp.stdout, table_done)
            tee = vault.Tee(import_sink(imp.stdin, imp_ep, marks=table_done is not None))
        try:
            stats = vault.encrypt_stream(_Counted(_Tap(proc.stdout, inside), progress), dest, key, tee=tee)
            _wait_client(proc, dump_host, argv, f"dump of database {db}", drain)
            if written is not None:
                written(stats)
            if tee is not None:
                tee.finish()
        except BrokenPipeError:
            if imp is None:
                raise
            # the import stopped reading: its exit code and stderr say why
            proc.kill()
            imp.wait()
            raise client_failed(imported, imp_host, imp_argv, imp.returncode, imp_drain) from None
        if imp is not None:
            _wait_client(imp, imp_host, imp_argv, imported, imp_drain)
            if marks is not None:
                marks.join()  # every mark read: the last table's too
    except BaseException:
        if tee is not None:
            tee.abort()
        for p in (proc, imp):
            if p is not None and p.poll() is None:
                p.kill()
            if p is not None:
                p.wait()
        Path(dest).unlink(missing_ok=True)  # a truncated dump must never sit under the final name
        raise
    return stats


#: Exactly what mariadb-dump writes as its first line (note the space after the comment).
SANDBOX_LINE = b"/*M!999999\\- enable the sandbox mode */ "
_SANDBOX_PROBE = len(SANDBOX_LINE) + 16


class SandboxStrip:
    """A writer that drops MariaDB's sandbox-mode first line (mariadb-dump >= 10.5.25/10.6.18/10.11.8).

    MySQL and older MariaDB clients fail on it (``Unknown command '\\-'``). It is only ever the
    very first line, so only the first bytes are examined; everything else passes untouched.
    """

    def __init__(self, dst: Any) -> None:
        self.dst = dst
        self.head = b""
        self.decided = False

    def write(self, data: bytes) -> int:
        if self.decided:
            return self.dst.write(data)
        self.head += data
        if b"\n" not in self.head and len(self.head) < _SANDBOX_PROBE:
            return len(data)
        self.decided = True
        first, sep, rest = self.head.partition(b"\n")
        out = rest if sep and first.rstrip(b" \t\r") == SANDBOX_LINE.rstrip() else first + sep + rest
        self.head = b""
        if out:
            self.dst.write(out)
        return len(data)

    def close(self) -> None:
        if not self.decided and self.head:
            self.dst.write(self.head)
        self.dst.close()


#: Secondary keys built after each table's rows on import (``DeferKeys``): a 1 GiB nova-like import takes
#: 0.80x as long (BENCHMARKS.md). A switch, so that it can be turned off alone if an import needs it.
DEFER_KEYS = True


def import_sink(stdin: Any, ep: DBEndpoint, marks: bool = False) -> Any:
    """What a dump goes through into the import's stdin: for a MySQL target without MariaDB's sandbox line
    (and, with ``DEFER_KEYS``, its secondary keys moved after each table's rows; with *marks*, a statement
    after each table that ``mysql`` answers once the table is complete: ``deferkeys``)."""
    sink = SandboxStrip(stdin) if ep.flavor == "mysql" else stdin
    return DeferKeys(sink, defer=DEFER_KEYS, marks=marks) if DEFER_KEYS or marks else sink


def _read_marks(stdout: Any, table_done: Callable[[str], None]) -> threading.Thread:
    """A thread reading the import's output: each table mark it prints is handed to *table_done*."""
    def run() -> None:
        for line in iter(stdout.readline, b""):
            if (name := table_done_name(line)) is not None:
                table_done(name)

    thread = threading.Thread(target=run, name="marks", daemon=True)
    thread.start()
    return thread


def import_from_vault(host: Host, ep: DBEndpoint, mysql: str, db: str, src: str, key: vault.Key,
                      expected_bytes: int | None, expected_sha256: str | None,
                      progress: Callable[[int], None] | None = None,
                      verified: bool = False) -> vault.StreamStats:
    """Verify the artifact completely, then stream it decrypted into ``mysql db`` on *host*.

    The full verification first means a corrupt or truncated artifact is refused before the
    target database is touched at all. ``verified``: the caller verified it already, before it
    touched the target (one full decryption less); the import pass still checks size and hash.
    The result's ``seconds`` is the vault's own time of both passes.
    """
    checked = 0.0 if verified else vault.verify_artifact(src, key, expected_bytes, expected_sha256).seconds
    argv = import_argv(mysql, db)
    proc, drain = _start_client(host, ep, argv, subprocess.DEVNULL)
    try:
        sink = _Counted(import_sink(proc.stdin, ep), progress)
        stats = vault.decrypt_stream(src, key, sink)
        sink.close()
    except BrokenPipeError:
        proc.wait()
        raise client_failed(f"import into {db}", host, argv, proc.returncode, drain) from None
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    _wait_client(proc, host, argv, f"import of database {db}", drain)
    if (expected_bytes is not None and stats.bytes != expected_bytes) or \
            (expected_sha256 is not None and stats.sha256 != expected_sha256):
        # the file changed between the verification pass and the import pass
        raise StepError(f"artifact {src} changed while it was imported into {db}: it no longer matches the "
                        "recorded dump — the import step will redo it from a good dump; check who writes there",
                        host=host.name)
    stats.seconds += checked
    return stats
