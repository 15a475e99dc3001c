"""One independent MariaDB server as a plain background process (no systemd, no shared state).

Each instance owns its datadir, socket, pid file, error log and a 127.0.0.1 port under
``base``, so several can run side by side (the old and the new controller's databases, plus
spares for tests). Recipe and measurements: lab-recipes §2.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pymysql

from scripts.lab import tablesums
from scripts.lab.proc import LabError, pid_alive, port_open, read_pid, tail, terminate, wait_exit, write_pid
from services.infra.mysql import Connection

# A unix socket path must fit in sockaddr_un.sun_path (108 bytes with the NUL); deep test
# directories (pytest's tmp_path plus a long test name) easily exceed it.
MAX_SOCKET_PATH = 100
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
#: set to 1 (the test suite does, tests/conftest.py): a lab server runs with Debian's libeatmydata preloaded,
#: so its fsyncs return at once. ``innodb_flush_method=nosync`` spares the data files only: every CREATE, DROP
#: and ALTER TABLE still fsyncs MariaDB's DDL recovery log and the redo log (a keystone database's DROP and
#: re-import: ~1000 fdatasyncs, 1.5-3.5 s; with the library 0.3 s). Off by default: what the benchmarks
#: measure stays as an operator's server writes.
NOSYNC_ENV = "OSU_LAB_NOSYNC"


def server_env() -> dict[str, str] | None:
    """The environment of a lab server's processes: with libeatmydata preloaded when :data:`NOSYNC_ENV`
    asks for it and Debian's ``libeatmydata1`` is installed (scripts/setup-system), else the caller's."""
    if os.environ.get(NOSYNC_ENV) != "1":
        return None
    lib = next(iter(sorted(Path("/usr/lib").glob("*/libeatmydata.so.1"))), None)
    if lib is None:
        return None
    preload = " ".join(p for p in (os.environ.get("LD_PRELOAD"), str(lib)) if p)
    return {**os.environ, "LD_PRELOAD": preload}


#: lab ports are drawn from here up to the kernel's ephemeral range (ip_local_port_range)
LAB_PORTS_FROM = 20000
#: where a drawn port is reserved (a file named by the port), for every process and thread of the machine
PORT_RESERVATIONS = Path(tempfile.gettempdir()) / "osu-lab-ports"
#: how long a reservation holds: a lab binds what it drew within seconds, a long build within minutes
PORT_RESERVED_FOR = 900.0


def _reserve(port: int) -> bool:
    """Reserve *port* for this draw (False: another draw holds it). ``O_EXCL`` makes the claim atomic across
    processes; a reservation older than :data:`PORT_RESERVED_FOR` is stale (its port is bound by now, which
    the probe sees, or was never used) and is taken over."""
    PORT_RESERVATIONS.mkdir(exist_ok=True)
    path = PORT_RESERVATIONS / str(port)
    for _ in range(2):
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return True
        except FileExistsError:
            try:
                if time.time() - path.stat().st_mtime < PORT_RESERVED_FOR:
                    return False
                path.unlink()
            except FileNotFoundError:
                pass  # released meanwhile: claim it on the next pass
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now, below the kernel's ephemeral range, that no other draw
    of the machine handed out in the last :data:`PORT_RESERVED_FOR` seconds.

    Not one the kernel picks (``bind(0)``): those are ephemeral ports, which any outgoing connection of the
    host may take before the lab binds one it reserved minutes earlier (a broker's distribution port was
    seen taken so: RabbitMQ's ``dist_port_already_used ... not_erlang``). Outgoing connections never take a
    port below the range. A free port is only free until its caller binds it: two labs built at once (the
    test suite's workers) could draw the same one and the later start failed "already in use", so each
    draw is reserved (:func:`_reserve`).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    draw = random.SystemRandom()
    for _ in range(200 if low > LAB_PORTS_FROM + 1000 else 0):
        port = draw.randrange(LAB_PORTS_FROM, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if _reserve(port):
            return port
    while True:  # no room below the range: the kernel's, reserved as well
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if _reserve(port):
            return port


class MariaDB:
    """One independent MariaDB server as a plain background process (own datadir, socket, pid file, 127.0.0.1 port).

    State lives only in files under ``base``, so a second ``MariaDB(base, port)`` object (in
    another process, e.g. ``python -m scripts.lab down``) can stop a server this one started.
    """

    host: str = "127.0.0.1"
    #: the account mariadbd runs as, and further arguments (a Galera node: ``mysql``, ``--wsrep-new-cluster``)
    user: str = "root"
    args: tuple[str, ...] = ()

    def __init__(self, base: Path, port: int) -> None:
        self.base = Path(base).resolve()
        self.port = int(port)
        self.defaults_file = self.base / "my.cnf"
        self.datadir = self.base / "data"
        self.run_dir = self.base / "run"
        self.socket = self.run_dir / "mysqld.sock"
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            digest = hashlib.sha256(str(self.base).encode()).hexdigest()[:16]
            self.socket = Path(tempfile.gettempdir()) / f"lab-mariadb-{digest}.sock"
        self.error_log = self.base / "error.log"
        # its own tmpdir: every starting mariadbd deletes /tmp/#sql* — other servers' temp tables
        self.tmp_dir = self.base / "tmp"
        # mariadbd writes run/mysqld.pid only once it is up and removes it on shutdown; we
        # record the pid we launched ourselves, immediately, so that a server that hangs
        # during start can still be found and killed.
        self.pid_file = self.run_dir / "lab-mariadbd.pid"
        self._initialized_marker = self.base / ".initialized"

    def __repr__(self) -> str:
        return f"MariaDB(base={str(self.base)!r}, port={self.port})"

    # -- lifecycle -----------------------------------------------------------------------

    def _config(self) -> str:
        """my.cnf per lab-recipes §2.2; the 16M redo log keeps a fresh datadir at ~46 MB, not 184.

        A lab server keeps every commit through the death of any process, its own included (the redo log
        reaches the kernel at each commit), but does not force it to the disk: a lab does not outlive a power
        loss, and the fsyncs were most of what a schema migration waited for (every test lab is built by them).
        """
        return (
            "[mysqld]\n"
            f"datadir={self.datadir}\n"
            f"socket={self.socket}\n"
            f"pid-file={self.run_dir / 'mysqld.pid'}\n"
            f"port={self.port}\n"
            "bind-address=127.0.0.1\n"
            f"log-error={self.error_log}\n"
            f"tmpdir={self.tmp_dir}\n"
            "skip-name-resolve\n"
            "innodb_buffer_pool_size=64M\n"
            "innodb_log_file_size=16M\n"
            "innodb_flush_log_at_trx_commit=2\n"
            "innodb_flush_method=nosync\n"
            "innodb_doublewrite=0\n"
            "character-set-server=utf8mb4\n"
            "collation-server=utf8mb4_general_ci\n"
            "[client]\n"
            f"socket={self.socket}\n"
        )

    def _pid(self) -> int | None:
        return read_pid(self.pid_file)

    def running(self) -> bool:
        """True if the mariadbd we launched for this ``base`` is alive (checked by pid and cmdline)."""
        return pid_alive(self._pid(), cmdline_has=("mariadbd", str(self.defaults_file)))

    def _install_db(self) -> None:
        """Create the system tables once; a half-initialized datadir (no marker) is wiped and redone."""
        if self._initialized_marker.exists():
            return
        if self.datadir.exists():
            subprocess.run(["rm", "-rf", "--", str(self.datadir)], check=True)
        self.datadir.mkdir(parents=True)
        log = self.base / "install-db.log"
        with log.open("wb") as out:
            proc = subprocess.run(
                [
                    "mariadb-install-db",
                    f"--defaults-file={self.defaults_file}",
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_env(),
            )
        if proc.returncode != 0:
            raise LabError(f"mariadb-install-db failed (rc {proc.returncode}) for {self.base}:\n{tail(log)}")
        self._initialized_marker.write_text("")

    def start(self) -> None:
        """Initialize on first start, launch mariadbd, wait until it answers. No-op if already running."""
        if self.running():
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        config = self._config()
        if not self.defaults_file.exists() or self.defaults_file.read_text() != config:
            self.defaults_file.write_text(config)
        self._install_db()
        if port_open(self.port):
            raise LabError(f"cannot start mariadbd for {self.base}: 127.0.0.1:{self.port} is already in use")
        with (self.base / "mariadbd.out").open("ab") as out:
            proc = subprocess.Popen(
                ["mariadbd", f"--defaults-file={self.defaults_file}", f"--user={self.user}", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the caller (``lab up`` exits) and its Ctrl-C
                env=server_env(),
            )
        write_pid(self.pid_file, proc.pid)
        deadline = time.monotonic() + START_TIMEOUT
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise LabError(
                    f"mariadbd for {self.base} exited with rc {proc.returncode} during start:\n{tail(self.error_log)}"
                )
            try:
                (datadir,) = self.execute("SELECT @@datadir")[0]
            except pymysql.err.OperationalError as exc:
                last_error = exc
                time.sleep(0.1)
                continue
            if Path(datadir).resolve() != self.datadir:  # someone else grabbed the port meanwhile
                terminate(proc.pid, 5)
                self.pid_file.unlink(missing_ok=True)
                raise LabError(f"127.0.0.1:{self.port} answers with datadir {datadir}, not {self.datadir}")
            return
        terminate(proc.pid, 5)
        self.pid_file.unlink(missing_ok=True)
        raise LabError(
            f"mariadbd for {self.base} did not answer on 127.0.0.1:{self.port} within {START_TIMEOUT:.0f} s"
            f" ({last_error}):\n{tail(self.error_log)}"
        )

    def stop(self) -> None:
        """Shut down cleanly and wait for the pid to exit (shutdown is asynchronous). Idempotent."""
        pid = self._pid()
        if not self.running() or pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        with contextlib.suppress(subprocess.TimeoutExpired):  # a hung server: the kill below handles it
            subprocess.run(
                self._client("mariadb-admin") + ["shutdown"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                timeout=STOP_TIMEOUT,
                check=False,
            )
        if not wait_exit(pid, max(0.0, deadline - time.monotonic())):
            terminate(pid, 0)  # no clean exit after 30 s: SIGKILL right away
        self.pid_file.unlink(missing_ok=True)

    # -- SQL -----------------------------------------------------------------------------

    def _client(self, program: str) -> list[str]:
        """argv prefix for a MariaDB client talking to this server as root over TCP.

        ``--defaults-file`` (which must come first) keeps the machine's /etc/mysql config out.
        """
        return [program, f"--defaults-file={self.defaults_file}", f"-h{self.host}", f"-P{self.port}", "-uroot"]

    def connect(self, db: str | None = None) -> pymysql.Connection:
        """Root over TCP 127.0.0.1 with the empty password (skip-name-resolve: root@127.0.0.1), autocommit."""
        return Connection(
            host=self.host,
            port=self.port,
            user="root",
            password="",
            database=db,
            autocommit=True,
            charset="utf8mb4",
            connect_timeout=5,
        )

    def execute(self, sql: str, db: str | None = None, args: Any = None) -> list[tuple]:
        """Run one statement on a fresh connection; rows as tuples ([] for statements without rows)."""
        conn = self.connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def checksums(self, db: str) -> dict[str, tuple[int, Any]]:
        """table -> (row count, fingerprint), sorted by table: compares two copies of a DB, or one DB before
        and after (``scripts/lab/tablesums.py``: CHECKSUM TABLE, keystone's login date stamp left out).

        CHECKSUM TABLE depends on the row format too, so only compare servers of the same version.
        """
        conn = self.connect(db)
        try:
            with conn.cursor() as cur:
                def query(sql: str) -> list[tuple]:
                    cur.execute(sql)
                    return list(cur.fetchall())

                return tablesums.table_sums(query, db)
        finally:
            conn.close()

    def snapshot(self, db: str, path: Path) -> None:
        """Dump ``db`` (schema, data, routines, triggers, events) to ``path`` as root, like an operator would."""
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        with tmp.open("wb") as out:
            proc = subprocess.run(
                self._client("mariadb-dump")
                + [
                    "--single-transaction",
                    "--routines",
                    "--triggers",
                    "--events",
                    "--hex-blob",
                    "--databases",
                    db,
                ],
                stdout=out,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
            )
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise LabError(
                f"mariadb-dump of {db} from port {self.port} failed (rc {proc.returncode}): "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        tmp.replace(path)  # never leave a truncated dump under the final name

    def restore(self, db: str, path: Path) -> None:
        """Replace ``db`` with the content of a ``snapshot`` file (DROP DATABASE IF EXISTS, then import)."""
        self.execute(f"DROP DATABASE IF EXISTS {tablesums.quote(db)}")
        with Path(path).open("rb") as src:
            proc = subprocess.run(self._client("mariadb"), stdin=src, capture_output=True)
        if proc.returncode != 0:
            raise LabError(
                f"import of {path} into port {self.port} failed (rc {proc.returncode}): "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
