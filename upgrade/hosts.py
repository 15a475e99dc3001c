"""Host connections: the local machine, or a host over SSH, both through plumbum.

Implements the ``services.host.Host`` protocol. Commands are argument lists; for SSH they are
quoted for the remote shell with ``shlex`` and never assembled from input as shell text. The
environment of the tool never carries a secret into them: every child (local commands, and the
``ssh`` client itself, which could pass variables on with ``SendEnv``) gets :func:`child_env`, the
tool's environment without the variables the plan names for its secrets (``*_env``).

SSH goes through the system ``ssh`` (plumbum ``SshMachine``), so ``~/.ssh/config``, an
``ssh_config`` named in the plan, agents and jump hosts all work. Every connection is
multiplexed (ControlMaster; the first command opens it, later ones take ~10 ms instead of
~250 ms), pins the host key under the host's logical name (``HostKeyAlias``: a key belongs to a
host, not to an address that may move to another host) and sends keepalives, so a dead host
fails a step within seconds instead of hanging it.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from plumbum import local
from plumbum.commands.processes import CommandNotFound

from services.infra.host import Completed, command_text
from statemachine.step import StepError
from upgrade import planvalues

#: seconds for a TCP connection and SSH handshake; then keepalives every 2 s, 3 missed = dead
CONNECT_TIMEOUT = 10
ALIVE_INTERVAL = 2
ALIVE_COUNT = 3
CONTROL_PERSIST = 60


_SETPRIV = shutil.which("setpriv") is not None

#: the environment variables that hold the tool's secrets (every ``*_env`` a plan names)
_SECRET_ENV: set[str] = set()
_SECRET_ENV_LOCK = threading.Lock()


def hide_from_children(names: Iterable[str]) -> None:
    """Keep the variables *names* (a plan's ``admin_password_env``, ``passphrase_env``, ...) out of
    every child's environment from now on. The tool reads them itself; a child that needs a
    secret gets it on a file descriptor (services/mysql.py), never by inheritance, where any
    ``mysqldump``, ``keystone-manage`` or service it starts could read or pass it on."""
    with _SECRET_ENV_LOCK:
        for name in names:
            _SECRET_ENV.add(name)
            local.env.pop(name, None)  # plumbum's copy of the environment, which every plumbum child gets


@contextlib.contextmanager
def secrets_hidden() -> Iterator[None]:
    """While a library spawns its own children with the process environment (graphviz's ``dot``),
    the secret variables are out of it; they are back afterwards, for the tool to read."""
    with _SECRET_ENV_LOCK:
        saved = {k: os.environ.pop(k) for k in list(_SECRET_ENV) if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: the tool's own, less its secret variables, plus *extra*."""
    with _SECRET_ENV_LOCK:
        hidden = set(_SECRET_ENV)
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env.update(extra or {})
    return env


class LocalHost:
    """The machine the tool runs on (an operator's controller, or the built-in lab)."""

    def __init__(self, name: str = "local") -> None:
        self.name = name

    def _cmd(self, argv: list[str]) -> Any:
        try:
            return local[argv[0]][argv[1:]]
        except CommandNotFound:
            raise StepError(f"command {argv[0]!r} not found on {self.name} — install it or fix the "
                            "bin path in the plan", host=self.name, command=command_text(argv)) from None

    def run(self, argv: list[str], stdin: bytes | None = None, timeout: float = 900,
            env: dict[str, str] | None = None) -> Completed:
        rc, out, err = _communicate(self, argv, stdin, timeout, env)
        return Completed(tuple(argv), rc, out.decode(errors="replace"), err.decode(errors="replace"))

    def popen(self, argv: list[str], stdin: Any = None, stdout: Any = None, stderr: Any = None,
              env: dict[str, str] | None = None) -> Any:
        if shutil.which(argv[0]) is None:  # named here, not as setpriv's exit 127
            raise StepError(f"command {argv[0]!r} not found on {self.name} — install it or fix the bin path in "
                            "the plan", host=self.name, command=command_text(argv))
        # The child dies with the tool: a run killed mid-`db_sync` must not leave that db_sync running
        # while `upgrade resume` starts another one (setpriv is util-linux, on every Debian).
        cmd = local["setpriv"]["--pdeathsig", "KILL", "--", *argv] if _SETPRIV else self._cmd(argv)
        kwargs: dict[str, Any] = {"stdin": stdin, "stdout": stdout, "stderr": stderr, "env": child_env(env)}
        try:
            return cmd.popen(**kwargs)
        except FileNotFoundError:
            raise StepError(f"command {argv[0]!r} not found on {self.name} — install it or fix the bin path in "
                            "the plan", host=self.name, command=command_text(argv)) from None

    def read_bytes(self, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise StepError(f"cannot read {path} on {self.name}: {exc.strerror}", host=self.name) from None

    def write_bytes(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Atomic replace: a crash leaves the old file or the new one, never half of one."""
        p = Path(path)
        tmp = p.with_name(f".{p.name}.osu-tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if p.exists():
            st = p.stat()
            os.chown(tmp, st.st_uid, st.st_gid)
            os.chmod(tmp, st.st_mode & 0o7777)
        os.replace(tmp, p)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def remove(self, path: str) -> None:
        p = Path(path)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif os.path.lexists(p):
            p.unlink()

    def private_tmpdir(self) -> str:
        return tempfile.mkdtemp(prefix=tmp_prefix(), dir=tempfile.gettempdir())

    def check_reachable(self) -> None:
        """The local machine is always there (the SSH host's version connects)."""

    def close(self) -> None:
        """Nothing to close."""


# ---------------------------------------------------------------------- SSH
class HostSpecError(ValueError):
    """A ``host`` value that is neither "local" nor ``ssh://[user@]address[:port]``."""


@dataclass(frozen=True)
class HostSpec:
    """A host as the plan names it: ``local`` or ``ssh://[user@]address[:port]`` with its SSH settings.

    ``alias`` is the host's logical name (``oldctl``): it becomes the ``HostKeyAlias`` the host
    key is pinned under, and appears in messages next to the address.
    """

    url: str
    alias: str = ""
    ssh_config: str | None = None
    ssh_options: tuple[str, ...] = ()

    @property
    def is_local(self) -> bool:
        return self.url == "local"

    def target(self) -> tuple[str | None, str, int | None]:
        """(user, address, port) of an ``ssh://`` URL; HostSpecError names what is wrong."""
        parts = urlsplit(self.url)
        if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/") or parts.query \
                or parts.fragment or parts.password:
            raise HostSpecError(f"{self.url!r} is not \"local\" or ssh://[user@]address[:port]")
        try:
            port = parts.port
        except ValueError:
            raise HostSpecError(f"{self.url!r} has an invalid port") from None
        # ssh would read "-oProxyCommand=..." as an option: the address and the user are names, never options
        if (why := planvalues.host(parts.hostname)) is not None:
            raise HostSpecError(f"{self.url!r}: the address {parts.hostname!r} is not {why}")
        if parts.username is not None and (why := planvalues.user(parts.username)) is not None:
            raise HostSpecError(f"{self.url!r}: the user {parts.username!r} is not {why}")
        return parts.username, parts.hostname, port


def parse_spec(url: str) -> HostSpec:
    """Validate a plan's ``host`` value (raises HostSpecError with what is expected)."""
    spec = HostSpec(url)
    if not spec.is_local:
        spec.target()
    return spec


#: lines by which ssh itself (not the remote command) says the connection failed
_SSH_FAILURE = re.compile(
    r"^(ssh: .*|kex_exchange_identification: .*|ssh_exchange_identification: .*|Connection (closed|reset|timed "
    r"out).*|Timeout, server .* not responding.*|Host key verification failed.*|.*Permission denied \(.*|"
    r"mux_client_.*|Control socket connect.*|client_loop: .*|Connection to .* closed.*|"
    r".*REMOTE HOST IDENTIFICATION HAS CHANGED.*|No .* host key is known for .*)$", re.M)


def ssh_failure(rc: int, stderr: str) -> str | None:
    """The ssh client's own error line if *rc*/*stderr* say the connection (not the command) failed."""
    if rc != 255:
        return None
    m = _SSH_FAILURE.search(stderr)
    return m.group(0).strip() if m else None


class _ControlDir:
    """One private directory (0700) per tool process for the ControlMaster sockets; masters are
    closed and the directory removed when the process exits (a killed process leaves masters
    that end by themselves after ControlPersist seconds)."""

    path: str | None = None
    hosts: list[SshHost] = []
    lock = threading.Lock()

    @classmethod
    def get(cls, host: SshHost) -> str:
        with cls.lock:
            if cls.path is None:
                cls.path = tempfile.mkdtemp(prefix="osu-ssh-")
                atexit.register(cls.cleanup)
            cls.hosts.append(host)
            return cls.path

    @classmethod
    def cleanup(cls) -> None:
        for h in list(cls.hosts):
            with contextlib.suppress(Exception):
                h.close()
        if cls.path:
            shutil.rmtree(cls.path, ignore_errors=True)


# A constant script, with the path and the mode as its arguments ("$1", "$2"): never built from input.
_WRITE_SCRIPT = r'''set -e
p=$1
t="$(dirname -- "$p")/.$(basename -- "$p").osu-tmp"
rm -f -- "$t"
(umask 077 && cat > "$t")
if [ -e "$p" ]; then chown --reference="$p" -- "$t"; chmod --reference="$p" -- "$t"; else chmod "$2" -- "$t"; fi
sync -- "$t" 2>/dev/null || true
mv -f -- "$t" "$p"'''


@functools.cache
def _ssh_machine_class() -> type:
    """plumbum's ``SshMachine`` with ``--`` between ssh's options and the destination: whatever the
    address, ssh reads it as the host, never as an option (plumbum puts the destination right
    after the options). Its ssh client runs with plumbum's environment, which
    :func:`hide_from_children` keeps free of the tool's secrets."""
    from plumbum.machines.ssh_machine import SshMachine

    class SafeSshMachine(SshMachine):
        def popen(self, args: Any, ssh_opts: Any = (), env: Any = None, cwd: Any = None, **kwargs: Any) -> Any:
            return super().popen(args, (*ssh_opts, "--"), env=env, cwd=cwd, **kwargs)

    return SafeSshMachine


class SshHost:
    """A host reached over SSH (plumbum ``SshMachine`` over the system ssh client).

    The connection opens on first use (building a runner connects nothing) and becomes the
    ControlMaster every later command rides on. ``name`` is the host as messages and the journal
    show it.
    """

    def __init__(self, spec: HostSpec, name: str) -> None:
        self.spec = spec
        self.user, self.address, self.port = spec.target()
        self.name = name
        self.where = f"{self.user + '@' if self.user else ''}{self.address}{f':{self.port}' if self.port else ''}"
        self._machine: Any = None
        self._lock = threading.Lock()
        self._control = _ControlDir.get(self)

    # ------------------------------------------------------------------ connection
    def ssh_options(self) -> list[str]:
        """The plan's options first (ssh keeps the first value it sees), then the tool's defaults."""
        opts: list[str] = []
        if self.spec.ssh_config:
            opts += ["-F", self.spec.ssh_config]
        opts += list(self.spec.ssh_options)
        defaults = {"BatchMode": "yes", "ConnectTimeout": CONNECT_TIMEOUT, "ServerAliveInterval": ALIVE_INTERVAL,
                    "ServerAliveCountMax": ALIVE_COUNT, "ControlMaster": "auto",
                    "ControlPath": f"{self._control}/%C", "ControlPersist": CONTROL_PERSIST}
        if self.spec.alias:
            defaults["HostKeyAlias"] = self.spec.alias
        for k, v in defaults.items():
            opts += ["-o", f"{k}={v}"]
        return opts

    def _unreachable(self, detail: str) -> StepError:
        return StepError(f"cannot reach {self.name} ({self.where}) over SSH: {detail} — check that the host is up, "
                         "that sshd runs there and accepts this key, and the plan's ssh settings",
                         host=self.name, output=detail)

    def machine(self) -> Any:
        """The plumbum SshMachine, connected on first use."""
        with self._lock:
            if self._machine is None:
                try:
                    self._machine = _ssh_machine_class()(self.address, user=self.user, port=self.port,
                                               ssh_opts=self.ssh_options(), scp_opts=self.ssh_options(),
                                               connect_timeout=CONNECT_TIMEOUT + 5)
                except Exception as exc:  # plumbum raises several types; all mean "not connected"
                    raise self._unreachable(self._diagnose(exc)) from None
            return self._machine

    def _diagnose(self, exc: Exception) -> str:
        """ssh's own words for a failed connection (plumbum often reports only a broken pipe)."""
        try:
            res = subprocess.run(["ssh", *self.ssh_options(), "--", self.where_for_ssh(), "true"],
                                 capture_output=True, text=True, timeout=CONNECT_TIMEOUT + 5,
                                 stdin=subprocess.DEVNULL, env=child_env())
            said = ssh_failure(res.returncode, res.stderr) or res.stderr.strip()
        except (OSError, subprocess.TimeoutExpired) as err:
            said = str(err)
        text = said or " ".join(str(getattr(exc, "stderr", "") or exc).split()) or type(exc).__name__
        return text[-500:]

    def check_reachable(self) -> None:
        """Connect and run ``true``: a clear error before a run starts, not in the middle of it."""
        self.run(["true"], timeout=CONNECT_TIMEOUT + 10)

    def close(self) -> None:
        """End the ControlMaster and plumbum's session (the tool exits, or the host is done)."""
        with self._lock:
            m, self._machine = self._machine, None
        if m is None:
            return
        with contextlib.suppress(Exception):  # this process's command tracking: untracked, or it would recreate it
            subprocess.run(["ssh", *self.ssh_options(), "--", self.where_for_ssh(),
                            shlex.join(["sh", "-c", 'rm -rf -- "${TMPDIR:-/tmp}/$0"', f"{tmp_prefix()}{PROCS}"])],
                           capture_output=True, timeout=10, stdin=subprocess.DEVNULL, env=child_env())
        with contextlib.suppress(Exception):
            subprocess.run(["ssh", *self.ssh_options(), "-O", "exit", "--", self.where_for_ssh()],
                           capture_output=True, timeout=10, env=child_env())
        with contextlib.suppress(Exception):
            m.close()

    def where_for_ssh(self) -> str:
        return f"{self.user}@{self.address}" if self.user else self.address

    # ------------------------------------------------------------------ commands
    def _remote(self, argv: list[str], env: dict[str, str] | None) -> str:
        """The command line the remote shell parses: every word quoted (shlex), nothing interpolated.

        Every command is tracked: before it execs, it writes its pid and start time under the
        tool's private procs directory on the host (see ``sweep_stale_tmpdirs``). A killed tool
        cannot stop a remote command (no signal crosses SSH), so the next resume or revert
        kills what the dead run left running there before anything else runs."""
        words = ["env", *(f"{k}={v}" for k, v in env.items())] if env else []
        return shlex.join(["sh", "-c", _TRACK, f"{tmp_prefix()}{PROCS}", *words, *argv])

    def popen(self, argv: list[str], stdin: Any = None, stdout: Any = None, stderr: Any = None,
              env: dict[str, str] | None = None) -> Any:
        m = self.machine()
        return m.popen(self._remote(argv, env), stdin=stdin, stdout=stdout, stderr=stderr)

    def _run_bytes(self, argv: list[str], stdin: bytes | None = None, timeout: float = 900,
                   env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
        rc, out, err = _communicate(self, argv, stdin, timeout, env)
        failure = ssh_failure(rc, err.decode(errors="replace"))
        if failure:
            e = self._unreachable(failure)
            e.command = command_text(argv)
            e.rc = 255
            raise e
        return rc, out, err

    def run(self, argv: list[str], stdin: bytes | None = None, timeout: float = 900,
            env: dict[str, str] | None = None) -> Completed:
        rc, out, err = self._run_bytes(argv, stdin, timeout, env)
        return Completed(tuple(argv), rc, out.decode(errors="replace"), err.decode(errors="replace"))

    # ------------------------------------------------------------------ files
    def read_bytes(self, path: str) -> bytes:
        rc, out, err = self._run_bytes(["cat", "--", path], timeout=300)
        if rc != 0:
            raise StepError(f"cannot read {path} on {self.name}: {err.decode(errors='replace').strip()}",
                            host=self.name, command=command_text(["cat", "--", path]), rc=rc)
        return out

    def write_bytes(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Atomic replace on the host (temp file, fsync, rename); an existing file keeps its owner and mode."""
        argv = ["sh", "-c", _WRITE_SCRIPT, "osu-write", path, f"{mode:o}"]
        rc, _out, err = self._run_bytes(argv, stdin=data, timeout=300)
        if rc != 0:
            raise StepError(f"cannot write {path} on {self.name}: {err.decode(errors='replace').strip()}",
                            host=self.name, command=f"write {path}", rc=rc)

    def exists(self, path: str) -> bool:
        rc, _out, err = self._run_bytes(["sh", "-c", 'test -e "$1" || test -L "$1"', "osu-exists", path],
                                        timeout=120)
        if rc not in (0, 1):
            raise StepError(f"cannot check {path} on {self.name}: {err.decode(errors='replace').strip()}",
                            host=self.name, rc=rc)
        return rc == 0

    def remove(self, path: str) -> None:
        rc, _out, err = self._run_bytes(["rm", "-rf", "--", path], timeout=300)
        if rc != 0:
            raise StepError(f"cannot remove {path} on {self.name}: {err.decode(errors='replace').strip()}",
                            host=self.name, rc=rc)

    def private_tmpdir(self) -> str:
        """``mktemp -d``: a fresh 0700 directory on the host, for files only this run may read."""
        rc, out, err = self._run_bytes(["mktemp", "-d", "-t", f"{tmp_prefix()}XXXXXXXX"], timeout=120)
        if rc != 0:
            raise StepError(f"cannot create a private directory on {self.name}: {err.decode(errors='replace')}",
                            host=self.name, rc=rc)
        return out.decode().strip()


def _communicate(host: LocalHost | SshHost, argv: list[str], stdin: bytes | None, timeout: float,
                 env: dict[str, str] | None) -> tuple[int, bytes, bytes]:
    """Run *argv* on *host* to the end, or kill it after *timeout* seconds with a StepError."""
    proc = host.popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise StepError(f"`{command_text(argv)}` on {host.name} did not finish within {timeout:.0f} s",
                        host=host.name, command=command_text(argv),
                        output=(out + err).decode(errors="replace")) from None
    return proc.returncode, out, err


def tmp_prefix(pid: int | None = None) -> str:
    """Private directories are named for the tool process that made them (its host and pid), so a
    later run can tell which ones a killed run left behind: they may hold a secret (a service
    config with its DB URL) and must not outlive the process that needed them."""
    me = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())
    return f"osu-{me}-{os.getpid() if pid is None else pid}-"


_SWEEP = 'for d in "${TMPDIR:-/tmp}"/"$1"*; do [ -d "$d" ] && printf "%s\\n" "$d"; done; true'
#: the remote commands' tracking directory (in the tool's private namespace of directories)
PROCS = "procs"
# $0: the tracking directory's name; "$@": the command. Field 22 of /proc/PID/stat is the start
# time: with the pid it names this process even after the pid is reused. exec keeps the pid.
_TRACK = ('d="${TMPDIR:-/tmp}/$0"; { mkdir -p -m 700 "$d" && cut -d" " -f22 /proc/$$/stat > "$d/$$"; } '
          '2>/dev/null; exec "$@"')
# $1: a dead run's tracking directory. Kill the process group of each command still running
# (same pid, same start time), print its pid.
_KILL = ('for f in "$1"/*; do [ -f "$f" ] || continue; p=${f##*/}; [ -r "/proc/$p/stat" ] || continue; '
         '[ "$(cut -d" " -f22 "/proc/$p/stat")" = "$(cat "$f")" ] || continue; '
         'g=$(cut -d" " -f5 "/proc/$p/stat"); kill -KILL -- "-$g" 2>/dev/null || kill -KILL "$p"; echo "$p"; '
         'done; true')


def sweep_stale_tmpdirs(host: LocalHost | SshHost) -> list[str]:
    """Remove this machine's private directories on *host* whose tool process is gone; first kill
    the remote commands such a process left running (a db_sync must not race the resume's)."""
    stem = tmp_prefix().rsplit("-", 2)[0] + "-"  # osu-<this host>-
    res = host.run(["sh", "-c", _SWEEP, "osu-sweep", stem], timeout=120)
    removed = []
    for path in res.stdout.split():
        pid_text = path.rsplit("/", 1)[-1][len(stem):].split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            if path.endswith(f"-{PROCS}"):
                killed = host.run(["sh", "-c", _KILL, "osu-kill", path], timeout=120).stdout.split()
                removed += [f"{path}: killed pid {p}" for p in killed]
            host.remove(path)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def connect(spec: str | HostSpec, name: str) -> LocalHost | SshHost:
    """A host from the plan's ``host`` value (with its SSH settings); nothing connects until first use."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.is_local:
        return LocalHost(name)
    return SshHost(spec, name)
