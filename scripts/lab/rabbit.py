"""RabbitMQ for a lab controller, without systemd: the broker heat-api and heat-engine talk RPC through.

Each controller tree has its own node (its name derived from the tree, so two labs on one machine
never meet), its own mnesia, log and config files under ``ROOT/var/lib/rabbitmq`` and
``ROOT/var/log/rabbitmq``, and its own Erlang cookie (``HOME`` is that directory, for the server and
for ``rabbitmqctl`` alike). A service that brings its own broker (neutron, cinder) names it by its unit,
``rabbitmq-<service>``: its own node, directories and pid file. Both controllers of a lab listen on
one loopback port: like keystone's, it stands for the management address, which moves to the new
controller at cut-over, so the ``transport_url`` carried over in the services' configs stays valid.
Only one side runs at a time.

The broker's one user (``openstack``, full rights on vhost ``/``) is created by the node itself at its
first boot from ``default_user``/``default_pass`` in its 0600 ``rabbitmq.conf``: the password is
never on a command line, in the environment of a child or in a log. Both controllers get the same
user and password, as an operator sets up the new controller's broker for the carried-over URL.

Readiness is a condition, never a sleep: ``rabbitmqctl wait PIDFILE`` returns once the node has
booted its applications, and the AMQP port then accepts connections. Stop is SIGTERM to the process
group found by its pid file (the node's own clean shutdown, as systemd stops it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.lab import layout
from scripts.lab.proc import LabError, clean_env, pid_alive, port_open, read_pid, spawn, tail, terminate

SBIN = Path("/usr/lib/rabbitmq/bin")
USER = "openstack"
#: a bound, never a wait: brokers boot side by side with a controller's other units on shared cores
START_TIMEOUT = 300.0
#: the launcher script (its process group holds the Erlang VM); the pid file is per tree
MARKER = "rabbitmq-server"
UNIT = "rabbitmq-server"


@dataclass(frozen=True)
class Broker:
    """One controller's broker: its tree, the shared AMQP port and the node's own distribution port."""

    root: Path
    port: int
    dist_port: int
    #: where AMQP listens: loopback, or (in a multi-host lab's namespace) every address of the host
    bind: str = "127.0.0.1"
    #: the broker's unit name: ``rabbitmq-server``, or ``rabbitmq-<service>`` for a service that brings its own
    unit: str = UNIT
    #: the Erlang node name where the broker is one node of a cluster (``rabbit@HOST``: its peers reach it by
    #: the host's name); empty: a name of its own derived from the tree (:attr:`node`)
    name: str = ""

    @property
    def _dir(self) -> str:
        return "rabbitmq" if self.unit == UNIT else self.unit

    @property
    def home(self) -> Path:
        return layout.var_lib(self.root, self._dir)

    @property
    def logs(self) -> Path:
        return layout.log_dir(self.root, self._dir)

    @property
    def conf(self) -> Path:
        return self.home / "rabbitmq.conf"

    @property
    def node(self) -> str:
        """``lab-<hash of the tree (and unit)>@localhost``: unique per broker of a tree on this machine (or the
        clustered node's own :attr:`name`)."""
        if self.name:
            return self.name
        key = str(self.root) if self.unit == UNIT else f"{self.root}:{self.unit}"
        return f"lab-{hashlib.sha256(key.encode()).hexdigest()[:12]}@localhost"

    @property
    def pid_file(self) -> Path:
        return layout.pid_file(self.root, self.unit)

    def env(self) -> dict[str, str]:
        """Everything the server and rabbitmqctl read, under the tree: nothing from /etc/rabbitmq or
        /var/lib/rabbitmq (the Debian package's own node), nothing secret."""
        h = self.home
        return clean_env(
            HOME=str(h), RABBITMQ_NODENAME=self.node, RABBITMQ_NODE_IP_ADDRESS=self.bind,
            RABBITMQ_NODE_PORT=str(self.port), RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(h / "mnesia"), RABBITMQ_LOG_BASE=str(self.logs),
            RABBITMQ_CONFIG_FILE=str(self.conf), RABBITMQ_ADVANCED_CONFIG_FILE=str(h / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(h / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(h / "enabled_plugins"), RABBITMQ_PID_FILE=str(h / "node.pid"))


def broker(root: Path, unit: str = UNIT) -> Broker:
    """The broker *unit* of the controller at *root*, from its ``rabbitmq.json`` (written by :func:`install`)."""
    path = Broker(Path(root).resolve(), 0, 0, unit=unit).home / "rabbitmq.json"
    try:
        data = json.loads(path.read_text())
        return Broker(Path(root).resolve(), int(data["port"]), int(data["dist_port"]), data.get("bind", "127.0.0.1"),
                      unit, data.get("node", ""))
    except (OSError, ValueError, KeyError) as exc:
        raise LabError(f"{root} has no lab broker ({path}: {exc})") from exc


def install(root: Path, port: int, dist_port: int, password: str, bind: str = "127.0.0.1",
            unit: str = UNIT, node: str = "", cookie: str = "") -> Broker:
    """The broker's files on a controller tree (not started): config with the one user, no plugins. A
    clustered node (the HA lab) has its *node* name and the *cookie* every node of its cluster shares
    (0400 ``.erlang.cookie`` in its HOME, read by the server and ``rabbitmqctl``)."""

    b = Broker(Path(root).resolve(), port, dist_port, bind, unit, node)
    for d in (b.home, b.logs, layout.run_dir(b.root)):
        d.mkdir(parents=True, exist_ok=True)
    b.home.chmod(0o700)
    fd = os.open(b.conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# the lab broker of {b.root}: loopback only, its own user (made at first boot)\n"
                f"listeners.tcp.default = {port}\n"
                f"default_user = {USER}\n"
                f"default_pass = {password}\n"
                "default_vhost = /\n"
                "default_permissions.configure = .*\n"
                "default_permissions.read = .*\n"
                "default_permissions.write = .*\n"
                "log.console = false\n"
                "log.file.level = info\n")
    (b.home / "enabled_plugins").write_text("[].\n")
    (b.home / "advanced.config").write_text("[].\n")
    (b.home / "rabbitmq-env.conf").write_text("")
    facts = {"port": port, "dist_port": dist_port, "bind": bind, **({"node": node} if node else {})}
    (b.home / "rabbitmq.json").write_text(json.dumps(facts) + "\n")
    if cookie:
        path = b.home / ".erlang.cookie"
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as f:
            f.write(cookie)
    return b


def transport_url(port: int, password: str, user: str = USER, vhost: str = "/", host: str = "127.0.0.1") -> str:
    """The ``transport_url`` a service of the lab names the broker with (loopback stands for the management
    address); a login of its own (``add_logins``) names its user and vhost."""
    return f"rabbit://{user}:{password}@{host}:{port}/{'' if vhost == '/' else vhost}"


def password_hash(password: str) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password)), 4 random salt bytes."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def add_logins(b: Broker, logins: dict[str, tuple[str, str]]) -> None:
    """Users with a vhost each (user -> (password, vhost)), full rights there, on the running node: one
    ``rabbitmqctl import_definitions`` of a 0600 file holding password hashes only (no password on a
    command line), removed after. Several services then share one broker apart (a vhost each)."""
    defs = {"users": [{"name": u, "password_hash": password_hash(pw), "tags": [],
                       "hashing_algorithm": "rabbit_password_hashing_sha256"} for u, (pw, _) in logins.items()],
            "vhosts": [{"name": vh} for _, vh in logins.values()],
            "permissions": [{"user": u, "vhost": vh, "configure": ".*", "write": ".*", "read": ".*"}
                            for u, (_, vh) in logins.items()]}
    path = b.home / "lab-logins.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(defs, f)
        res = ctl(b, "import_definitions", str(path))
    finally:
        path.unlink(missing_ok=True)
    if res.returncode != 0:
        raise LabError(f"{b.unit} of {b.root}: adding the logins {', '.join(logins)} failed: "
                       f"{(res.stdout + res.stderr).strip()[-500:]}")


def pid(b: Broker) -> int | None:
    p = read_pid(b.pid_file)
    return p if pid_alive(p, (MARKER,)) else None


def ctl(b: Broker, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``rabbitmqctl -n NODE ARGS`` with the node's own cookie (its HOME)."""
    return subprocess.run([str(SBIN / "rabbitmqctl"), "-n", b.node, *args], env=b.env(), capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def start(root: Path, unit: str = UNIT) -> int:
    """Start the controller's node detached and wait until it has booted and accepts AMQP; its pid."""
    b = broker(root, unit)
    running = pid(b)
    if running:
        return running
    if port_open(b.port):
        raise LabError(f"{b.unit}: 127.0.0.1:{b.port} is already in use by another process")
    log = b.logs / "rabbitmq-server.out"
    with log.open("ab") as out:
        out.write(f"--- lab rabbit start {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        out.flush()
        proc = spawn([str(SBIN / "rabbitmq-server")], b.pid_file, out, env=b.env(), cwd=b.home)
    # `wait PIDFILE` blocks until the node has written its pid file and booted its applications
    res = ctl(b, "--timeout", str(int(START_TIMEOUT)), "wait", str(b.home / "node.pid"), timeout=START_TIMEOUT + 30)
    if proc.poll() is not None or res.returncode != 0:
        if proc.poll() is None:
            terminate(proc.pid, 30)
        b.pid_file.unlink(missing_ok=True)
        raise LabError(f"{b.unit} of {b.root} did not start (rc {proc.returncode}, await_startup rc {res.returncode}: "
                       f"{(res.stdout + res.stderr).strip()[-500:]}); {log}:\n{tail(log)}")
    if not port_open(b.port):
        raise LabError(f"{b.unit} of {b.root} booted but does not accept AMQP on 127.0.0.1:{b.port}; "
                       f"{log}:\n{tail(log)}")
    return proc.pid


def stop(root: Path, unit: str = UNIT) -> bool:
    """SIGTERM to the node's process group (the node shuts down cleanly on it, as under systemd, without
    the cost of a ``rabbitmqctl`` VM), SIGKILL after a minute; True if it was running."""
    b = broker(root, unit)
    p = pid(b)
    if p:
        terminate(p, 60)
    b.pid_file.unlink(missing_ok=True)
    return p is not None


def status(root: Path, unit: str = UNIT) -> bool:
    """Running and accepting AMQP connections."""
    b = broker(root, unit)
    return pid(b) is not None and port_open(b.port)


def join_cluster(root: Path, seed: str, unit: str = UNIT) -> None:
    """Make the running node at *root* a member of the cluster of node *seed* (``stop_app``, ``join_cluster``,
    ``start_app``: its own empty state is replaced by the cluster's)."""
    b = broker(root, unit)
    for args in (("stop_app",), ("join_cluster", seed), ("start_app",)):
        res = ctl(b, *args)
        if res.returncode != 0:
            raise LabError(f"{b.node}: `rabbitmqctl {' '.join(args)}` failed: "
                           f"{(res.stdout + res.stderr).strip()[-500:]}")


def running_nodes(root: Path, unit: str = UNIT) -> list[str]:
    """The running nodes of the cluster as the node at *root* sees it (``cluster_status``), sorted."""
    b = broker(root, unit)
    res = ctl(b, "-q", "cluster_status", "--formatter", "json", timeout=60)
    if res.returncode != 0:
        raise LabError(f"{b.node}: `rabbitmqctl cluster_status` failed: {(res.stdout + res.stderr).strip()[-500:]}")
    return sorted(json.loads(res.stdout)["running_nodes"])


def consumers(root: Path, queue: str, unit: str = UNIT, vhost: str = "/") -> int:
    """How many consumers the node's *queue* (of *vhost*) has (0 when it does not exist): an RPC server
    such as heat-engine is ready once it consumes its topic."""
    try:
        res = ctl(broker(root, unit), "-q", "list_queues", "-p", vhost, "name", "consumers", timeout=60)
    except subprocess.TimeoutExpired:  # no answer yet (a loaded machine): not seen consuming; the caller's bound
        return 0
    if res.returncode != 0:
        return 0
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == queue and parts[1].isdigit():
            return int(parts[1])
    return 0
