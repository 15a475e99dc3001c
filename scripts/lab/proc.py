"""Process bookkeeping for the lab: every process is tracked by the pid we launched, never by name.

Killing by name (pkill, killall) would hit processes of other labs or of other test runs on the
same machine; a pid file plus a check of the process's command line only ever touches our own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

# Variables that would make a venv's python pick up the caller's packages or interpreter.
_LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")


class LabError(RuntimeError):
    """A lab component failed to start, stop or answer; the message says what and shows a log tail."""


def clean_env(**extra: str) -> dict[str, str]:
    """Environment for a child running another interpreter (a keystone venv).

    Our own PYTHONPATH (pytest, ``-m scripts...``) must not leak into the venv, or keystone
    could import the system's packages instead of its pinned ones.
    """
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}
    env.update(extra)
    return env


def read_pid(path: Path) -> int | None:
    """The pid stored in ``path``, or None if the file is missing or garbage."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


#: what a launched unit runs first: it stores its own pid (atomically, under a name the parent's ``write_pid`` does
#: not use), then becomes the unit (``exec``: the same pid)
_OWN_PID = 'echo $$ > "$0.child"; /bin/mv -f "$0.child" "$0"; exec "$@"'


def own_pid_argv(pid_file: Path, argv: Sequence[str]) -> list[str]:
    """*argv* started so that the child writes *pid_file* itself before it becomes the unit (see :func:`spawn`)."""
    return ["/bin/sh", "-c", _OWN_PID, str(pid_file), *argv]


def spawn(argv: Sequence[str], pid_file: Path, out: IO[bytes], env: Mapping[str, str] | None = None,
          cwd: Path | str | None = None) -> subprocess.Popen[bytes]:
    """Start a unit detached (its own session, so it survives its launcher and its group can be signalled),
    output to *out*, and store its pid in *pid_file* twice over: the child writes it before it becomes the
    unit, and the parent once ``Popen`` returns. The launcher is a command of the tool's (``scripts.lab.units
    start``), which dies with the tool (``setpriv --pdeathsig``): killed between starting the unit and writing
    the pid file, it left a unit running that no pid file named, so the next start ran a second one. The
    parent's write stays: a stop right after the start must find the file before the child's shell wrote it."""
    child = subprocess.Popen(own_pid_argv(pid_file, argv), env=env, cwd=cwd,
                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    write_pid(pid_file, child.pid)
    return child


def write_pid(path: Path, pid: int) -> None:
    """Store a pid atomically, so a concurrent reader never sees a half-written number."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own exited child; otherwise it would linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


#: how often (every 10 ms) an empty command line is read again before it counts as not the process wanted
EXEC_RETRIES = 50


def stat_fields(pid: int | str) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the parenthesised command name (which may hold spaces): state,
    ppid, pgrp, session, ... (``proc(5)`` field 3 on, so field N is index N - 3). Raises OSError once it is gone."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()


def pid_alive(pid: int | None, cmdline_has: Iterable[str] = ()) -> bool:
    """True if ``pid`` runs (zombies count as dead) and its command line contains every marker.

    The markers guard against pid reuse: after a reboot or a long time, the number in a stale
    pid file may belong to an unrelated process, which we must neither report nor kill.
    """
    if not pid or pid <= 0:
        return False
    _reap(pid)
    try:
        if stat_fields(pid)[0] in ("Z", "X"):  # the state
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        for _ in range(EXEC_RETRIES if cmdline_has and not cmdline else 0):
            # in the middle of an exec the command line reads empty for an instant (Popen returns there): read
            # as "not ours", a unit stopped right after its start was left running with no pid file
            time.sleep(0.01)
            if cmdline := Path(f"/proc/{pid}/cmdline").read_bytes():
                break
    except OSError:
        return False
    cmdline = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return all(marker in cmdline for marker in cmdline_has)


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` is gone; True if it exited within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def terminate(pid: int, timeout: float, group: bool = True) -> None:
    """SIGTERM ``pid`` (its process group if it leads one), then SIGKILL after ``timeout`` seconds.

    Our services are launched as session leaders, so signalling the group also stops any
    helper they forked; a pid that is not a group leader is signalled alone.
    """

    def send(sig: signal.Signals) -> None:
        try:
            if group and os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    if not wait_exit(pid, timeout):
        send(signal.SIGKILL)
        if not wait_exit(pid, 10):
            raise LabError(f"pid {pid} survived SIGKILL")


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages (empty if the file does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


#: how many times a unit that exits during its start is started again: a distribution's OpenStack units run
#: with systemd's ``Restart=on-failure``, so a daemon that dies of a transient fault at start-up (a Galera
#: certification conflict between two members writing their service row, a broker not yet accepting) is
#: restarted by the host, not reported failed; one that dies every time still fails, with each attempt's log
START_ATTEMPTS = 3


def launch(unit: str, argv: list[str], pid_file: Path, log: Path, ready: Callable[[], bool], *,
           mark: bytes, timeout: float, stop_timeout: float, env: Mapping[str, str] | None = None,
           cwd: Path | None = None, poll: float = 0.2, own_logs: Sequence[Path] = ()) -> int:
    """Start *unit* detached (its own session), its output appended to *log* after a *mark* line, its pid
    kept in *pid_file*; wait until ``ready()`` and return its pid. A unit that exits non-zero before it is
    ready is started again, up to :data:`START_ATTEMPTS` starts in all (systemd's ``Restart=on-failure``);
    one that exits cleanly, keeps failing, or is not ready in *timeout* is stopped and named with the tails
    of *log* and of *own_logs* (the daemon's own log files, where oslo.log writes its traceback)."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    for attempt in range(1, START_ATTEMPTS + 1):
        with log.open("ab") as out:
            out.write(mark + f"{time.strftime('%Y-%m-%d %H:%M:%S')} (start {attempt}) ---\n".encode())
            out.flush()
            proc = spawn(argv, pid_file, out, env=clean_env(**(env or {})), cwd=cwd)
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                return proc.pid
            time.sleep(poll)
        if proc.returncode is None:
            break
        pid_file.unlink(missing_ok=True)
        why = f"{unit} exited with rc {proc.returncode} during start {attempt}"
        if proc.returncode == 0 or attempt == START_ATTEMPTS or time.monotonic() >= deadline:
            raise LabError(f"{why}; {_tails(log, own_logs)}")
        with log.open("ab") as out:  # what the next attempt's reader needs to know, in the unit's own output
            out.write(f"--- lab: {why}; started again (Restart=on-failure) ---\n".encode())
    terminate(proc.pid, stop_timeout)
    pid_file.unlink(missing_ok=True)
    raise LabError(f"{unit} was not ready within {timeout:.0f} s; {_tails(log, own_logs)}")


def _tails(log: Path, own_logs: Sequence[Path]) -> str:
    return "\n".join(f"{p}:\n{tail(p)}" for p in (log, *own_logs) if p == log or p.exists())


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Something accepts connections on ``host:port``.

    Checked before a launch: if another process already listens there, a readiness probe
    would succeed against the wrong server while ours dies on "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def http_answers(port: int, path: str = "/", host: str = "127.0.0.1") -> bool:
    """GET *path* on host:port answers with any HTTP status below 500 (an API's version list may be a
    300, its root a 401): the server is up and serving. A plain HTTP/1.0 request, no urllib."""
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            status = sock.makefile("rb").readline().split()
    except OSError:
        return False
    return len(status) > 1 and status[1].isdigit() and 200 <= int(status[1]) < 500


def session_connected(sid: int, port: int) -> bool:
    """A process of session *sid* (a unit started in its own session: its workers too) holds an
    established TCP connection to remote *port* (its broker): read in /proc, no process started. An RPC
    server consumes its topic only once connected, so this is the cheap first half of its readiness: the
    broker's own word (a ``rabbitmqctl`` call, an Erlang VM of its own) is asked only after it."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{sid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # remote address "HEX:PORT" (field 2), state 01 (ESTABLISHED, field 3), inode (field 9)
            if len(fields) > 9 and fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if int(stat_fields(entry.name)[3]) != sid:  # state ppid pgrp session
                continue
            if any(os.readlink(f"{entry.path}/fd/{fd}") in inodes for fd in os.listdir(f"{entry.path}/fd")):
                return True
        except (OSError, ValueError):  # exited meanwhile
            continue
    return False


def run_action(prog: str, actions: Mapping[str, Callable[[dict], dict]], argv: list[str]) -> int:
    """``python3 -m PROG ACTION < payload.json`` inside a lab host: the payload (passwords too) on stdin, never
    in argv; the action's result as JSON on stdout. Exit 2 for an unknown action, 1 when it fails."""
    action = actions.get(argv[0]) if len(argv) == 1 else None
    if action is None:
        print(f"usage: python3 -m {prog} {{{','.join(actions)}}} < payload.json", file=sys.stderr)
        return 2
    try:
        print(json.dumps(action(json.loads(sys.stdin.read() or "{}"))))
    except LabError as exc:
        print(f"{prog} {argv[0]}: {exc}", file=sys.stderr)
        return 1
    return 0
