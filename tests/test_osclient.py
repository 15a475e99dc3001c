"""The kept-running client (``scripts.lab.osclient.Shell``) answers as the ``openstack`` command does: the same
output, the same refusals with the client's own message, for the releases' clients the labs use. No cloud
is needed for that: the commands here need no token, or fail on an address where nothing listens (the
API round-trips themselves are checked by tests/test_grenade.py on its lab, with the hang and the
credentials' check)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from scripts.lab import grenade, osclient
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.proc import LabError, pid_alive
from tests.conftest import ADMIN_PASSWORD, NEW, OLD, require

#: needs the releases' venvs (python-openstackclient), no service
pytestmark = pytest.mark.lab


def _closed_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same(error: LabError) -> tuple[str, str]:
    """What must agree of two refusals: the command and exit code, and the client's last line without object
    addresses (a usage text lists the auth plugins' options in an order that differs per process)."""
    text = re.sub(r"0x[0-9a-f]+", "0x", str(error))
    return text.split(": ", 1)[0], text.splitlines()[-1]


def test_the_kept_client_answers_as_the_command_does(tmp_path: Path) -> None:
    """(The new release's client; tests/test_grenade.py runs both releases' against a real cloud.)"""
    release = NEW
    venv = DEFAULT_VENV_ROOT / release
    require((venv / "bin" / "openstack").exists(), f"openstack {release} missing (scripts/build-venv installs it)")
    clouds = osclient.write_clouds(tmp_path / "clouds.yaml", f"http://127.0.0.1:{_closed_port()}/v3",
                                   {"lab": ("someone", "Not-On-Argv-1", "lab")})
    with osclient.Shell(venv, clouds) as shell:
        # the same JSON as `openstack command list -f json`, from one process
        listed = shell("lab", "command", "list")
        pid = shell.pid
        assert listed == osclient.openstack(venv, clouds, "lab", "command", "list")
        assert any("server create" in group["Commands"] for group in listed)
        # refusals: the client's own words and exit code, as LabError naming the command
        refusals = {("no-such-thing",): "is not an openstack command",
                    ("--os-compute-api-version",): "expected one argument",
                    ("flavor", "list"): "Unable to establish connection"}
        for args, message in refusals.items():
            with pytest.raises(LabError, match=message) as kept:
                shell("lab", *args)
            with pytest.raises(LabError) as once:
                osclient.openstack(venv, clouds, "lab", *args)
            assert _same(kept.value) == _same(once.value), args
            assert str(kept.value).startswith(f"openstack {' '.join(args)} rc "), kept.value
        assert shell.pid == pid  # one process answered them all
    assert shell.pid is None and not pid_alive(pid)


def test_each_command_runs_as_the_cloud_it_names(keystone_lab) -> None:
    """The client keeps no user between commands: after the admin's ``project list`` in the same process,
    the project's member gets what a process of its own gets, not the admin's view (osc-lib caches a client
    per API on its class, with the first command's session: dropped after each command), then the admin
    again the admin's (the session's keystone lab; the old release's client)."""
    keystone_lab.reset()
    venv = DEFAULT_VENV_ROOT / OLD
    require((venv / "bin" / "openstack").exists(), f"openstack {OLD} missing (scripts/build-venv installs it)")
    url = f"http://127.0.0.1:{keystone_lab.old.keystone_port}/v3"
    password = grenade.project_user(url, ADMIN_PASSWORD)
    directory = keystone_lab.base / "osclient"
    directory.mkdir(mode=0o700, exist_ok=True)
    clouds = osclient.write_clouds(directory / "clouds.yaml", url, {"admin": ("admin", ADMIN_PASSWORD, "admin"),
                                                                    grenade.USER: (grenade.USER, password,
                                                                                   grenade.PROJECT)})
    def outcome(call) -> tuple[str, ...]:
        try:
            return ("served", *sorted(p["Name"] for p in call("project", "list")))
        except LabError as exc:
            return ("refused", _same(exc)[1])

    # what the member gets from a process of its own, and that it differs from what the admin gets
    alone = outcome(lambda *a: osclient.openstack(venv, clouds, grenade.USER, *a))
    with osclient.Shell(venv, clouds) as shell:
        admin = outcome(lambda *a: shell("admin", *a))
        assert admin[0] == "served" and admin != alone, (admin, alone)
        assert outcome(lambda *a: shell(grenade.USER, *a)) == alone  # after the admin's command, in one process
        assert outcome(lambda *a: shell("admin", *a)) == admin
        # a command that changes the client's module state once it is authenticated (the volume plugin drops
        # a version from its table: KeyError '2' the second time) answers the same again in one process
        with pytest.raises(LabError) as once:
            osclient.openstack(venv, clouds, "admin", "volume", "list")
        for _ in range(2):
            with pytest.raises(LabError) as kept:
                shell("admin", "volume", "list")
            assert _same(kept.value) == _same(once.value)
        pid = shell.pid
        # no connection to the API left open between commands
        assert not [f for f in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(f).startswith("socket:")]
    keystone_lab.reset()
