"""The real client, as a user of the lab cloud sees it: ``openstack`` (python-openstackclient) of a
release venv, its credentials in a 0600 clouds.yaml (never on its argv or in its environment: the
environment names the file and the cloud only).

Two ways to run it. :func:`openstack`: one ``openstack`` process per command, as a user types it.
:class:`Shell`: one process per cloud kept running (``scripts.lab.osclient_driver``: the same
``OpenStackShell().run(argv)`` per command, the client's imports paid once), for the Grenade-style
resources (``scripts.lab.grenade``) that ask a hundred commands of a lab and the heat lab's stacks
(``scripts.lab.heatlab``): a command then costs its API round-trips, not 2-3 s of CPU.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import IO, Any

from scripts.lab.proc import LabError, clean_env

REGION = "RegionOne"


def write_clouds(path: Path, keystone_url: str, users: dict[str, tuple[str, str, str]]) -> Path:
    """A 0600 clouds.yaml with one cloud per entry of *users*: name -> (user, password, project)."""
    clouds = {name: {"auth": {"auth_url": keystone_url, "username": user, "password": password,
                              "project_name": project, "user_domain_name": "Default",
                              "project_domain_name": "Default"},
                     "region_name": REGION, "identity_api_version": 3}
              for name, (user, password, project) in users.items()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"clouds": clouds}, f)  # JSON is YAML
    return path


def openstack(venv: Path, clouds: Path, cloud: str, *args: str, json_out: bool = True,
              where: tuple[str, ...] = ()) -> Any:
    """``openstack ARGS [-f json]`` of *venv* as *cloud* of the clouds.yaml; its JSON answer (None when it
    prints nothing, as ``server delete`` does), or LabError with the client's own message. *where* runs it
    elsewhere (``ip netns exec NS``: a multi-host lab's host)."""
    argv = [*where, str(Path(venv) / "bin" / "openstack"), *_argv(args, json_out)]
    res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=clouds.parent,
                         env=clean_env(OS_CLIENT_CONFIG_FILE=str(clouds), OS_CLOUD=cloud), timeout=TIMEOUT)
    return _answer(args, res.returncode, res.stdout, res.stderr)


#: how long one command may take before the client counts as hung (``server create --wait`` included)
TIMEOUT = 600.0
#: how long the kept-running client may take to import itself and say it is ready
START_TIMEOUT = 180.0
#: the program the kept-running client is (run by the release venv's python, isolated: ``-I``)
DRIVER = Path(__file__).with_name("osclient_driver.py")


def _argv(args: tuple[str, ...], json_out: bool) -> list[str]:
    return [*args, *(("-f", "json") if json_out else ())]


def _answer(args: tuple[str, ...], rc: int, stdout: str, stderr: str) -> Any:
    """A command's JSON answer (None when it printed nothing), or LabError with its exit code and stderr."""
    if rc != 0:  # cliff says some refusals (an unknown command) on stdout
        raise LabError(f"openstack {' '.join(args)} rc {rc}: {(stderr.strip() or stdout.strip())[-1500:]}")
    # `stack create --wait` and `server create --wait` print progress before their JSON
    lines = stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(("{", "["))), None)
    return json.loads("\n".join(lines[start:])) if start is not None else None


class Shell:
    """One python-openstackclient kept running for one clouds.yaml (its clouds named per command): the
    release venv's python runs ``osclient_driver``, which imports the client once and runs each command
    as a fresh ``OpenStackShell().run(argv)`` (what ``bin/openstack`` runs), its output captured.

    The credentials stay in the 0600 clouds.yaml: the process's argv is the driver's path, its environment
    names the file (``OS_CLIENT_CONFIG_FILE``), a request names the cloud. It starts on the first command
    and ends with :meth:`close` (``with Shell(...)``), when the object is collected, or when the
    interpreter exits. A command that does not answer within *timeout* raises LabError naming it and kills
    the process (the next command starts a new one), so a hung client never hangs its caller.
    """

    def __init__(self, venv: Path, clouds: Path, where: tuple[str, ...] = (), timeout: float = TIMEOUT) -> None:
        self.venv, self.clouds, self.where, self.timeout = Path(venv), Path(clouds), tuple(where), timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._errors: IO[bytes] | None = None
        self._buf = b""
        self._finalizer: weakref.finalize | None = None
        self._last_errors = ""

    @property
    def pid(self) -> int | None:
        """The running client's process id (None before the first command and after :meth:`close`)."""
        return self._proc.pid if self._proc else None

    def __call__(self, cloud: str, *args: str, json_out: bool = True) -> Any:
        """``openstack ARGS [-f json]`` as *cloud* of the clouds.yaml: as :func:`openstack` answers."""
        if self._proc is None:
            self._start()
        what = f"openstack {' '.join(args)}"
        reply = self._request({"cloud": cloud, "argv": _argv(args, json_out)}, what, self.timeout)
        return _answer(args, reply["rc"], reply["stdout"], reply["stderr"])

    def _start(self) -> None:
        # the driver's own stderr (closed by _stop): its tail tells why it died, if it does
        errors = tempfile.TemporaryFile()  # noqa: SIM115
        proc = subprocess.Popen([*self.where, str(self.venv / "bin" / "python"), "-I", str(DRIVER)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, cwd=self.clouds.parent,
                                env=clean_env(OS_CLIENT_CONFIG_FILE=str(self.clouds)), start_new_session=True)
        self._proc, self._errors, self._buf = proc, errors, b""
        self._finalizer = weakref.finalize(self, _stop, proc, errors)
        self._request(None, f"the openstack client of {self.venv}", START_TIMEOUT)

    def _request(self, request: dict[str, Any] | None, what: str, timeout: float) -> dict[str, Any]:
        """Send *request* (None: only read the ready line) and read the one-line reply within *timeout*."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            if request is not None:
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                proc.stdin.flush()
            line = self._readline(proc, timeout)
        except BrokenPipeError:
            line = None
        if line is None:
            self.close()
            raise LabError(f"{what}: the openstack client of {self.venv} exited without an answer"
                           f"{self._died_because()}")
        if line is False:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session (start_new_session): only what it started
            self.close()
            raise LabError(f"{what}: no answer from the openstack client within {timeout:.0f} s (killed)")
        return json.loads(line)

    def _readline(self, proc: subprocess.Popen[bytes], timeout: float) -> bytes | None | bool:
        """The next reply line; None at end of output, False when *timeout* passed first."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _died_because(self) -> str:
        errors = self._last_errors
        return f": {errors.strip()[-1500:]}" if errors.strip() else ""

    def close(self) -> None:
        """End the client (its stdin closed: it exits; killed if it does not); nothing if not running."""
        self._last_errors = ""
        if self._finalizer is not None:
            self._last_errors = self._finalizer()
        self._proc, self._errors, self._finalizer = None, None, None

    def __enter__(self) -> Shell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(proc: subprocess.Popen[bytes], errors: IO[bytes]) -> str:
    """End *proc* (kept apart from :class:`Shell` so a finalizer can run it): EOF on its stdin, then a kill of
    its process group if it has not exited soon; what it wrote to its stderr."""
    try:
        if proc.stdin:
            proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session (start_new_session): only what it started
        proc.wait()
    if proc.stdout:
        proc.stdout.close()
    errors.seek(0)
    text = errors.read().decode(errors="replace")
    errors.close()
    return text
