"""What the lab's two real novas share: the multi-host lab's (``scripts.lab.novalab``) and the local
lab's (``scripts.lab.novaserve``).

``nova_conf`` writes nova.conf as devstack's lib/nova does for a cloud on nova's own fake virt driver:
``[DEFAULT] host``/``transport_url``/``state_path``, ``compute_driver`` and ``instances_path`` on a
compute, ``[api_database]``/``[database]`` on a controller only (a compute reaches the database
through the conductor), the caller's auth sections (``[placement]``, ``[keystone_authtoken]``, ...).
``write_private`` keeps secrets in a 0640 file, as a package installs nova.conf. ``launch`` starts a
unit detached and waits for a condition (nova's own start line, an API that answers, a consumer on
an RPC topic), never a sleep.

Standard library only: the multi-host lab runs this with each host's python3.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from scripts.lab import proc

#: nova's fake driver in its single-node form: a stable node name and uuid (``compute_id``), so the host
#: restarts like a real one (fake.FakeDriver refuses a restart without that file)
FAKE_DRIVER = "fake.FakeDriverWithoutFakeNodes"
#: the line in a unit's output that says it started: nova's own (nova/service.py), the WSGI launchers' banner
STARTED = {"nova-conductor": "Starting conductor node (version", "nova-compute": "Starting compute node (version",
           "nova-scheduler": "Starting scheduler node (version", "placement-api": "serving placement-api on",
           "nova-api": "serving nova-api on"}
#: written into a unit's output before each start: the start line counts only after the last one
MARK = b"--- lab nova start "
#: a bound, never a wait: a controller starts its units side by side, which share the cores
START_TIMEOUT = 300.0
STOP_TIMEOUT = 30.0


def nova_conf(title: str, *, transport_url: str, state_path: Path, host: str = "", report_interval: int = 0,
              compute: bool = False, db: tuple[str, str] | None = None, pin: str = "", sections: str = "") -> str:
    """nova.conf: *db* is (nova_api URL, nova URL) on a controller; *sections* the caller's auth sections."""
    text = f"# {title}\n[DEFAULT]\n" + (f"host = {host}\n" if host else "")
    text += f"transport_url = {transport_url}\nstate_path = {state_path}\n"
    if report_interval:
        text += f"report_interval = {report_interval}\n"
    # nova 2026.1 stops gracefully by waiting: its compute manager sleeps manager_shutdown_timeout (160 s)
    # for in-progress tasks, every service may take graceful_shutdown_timeout (180 s); the lab runs no task
    # to wait for, and its stop would SIGKILL them after the lab's stop timeout anyway
    text += "manager_shutdown_timeout = 0\ngraceful_shutdown_timeout = 5\n"
    if compute:
        text += f"compute_driver = {FAKE_DRIVER}\ninstances_path = {state_path}/instances\n"
    text += sections
    if db:
        text += (f"\n[api_database]\nconnection = {db[0]}\n\n[database]\nconnection = {db[1]}\n\n"
                 "[conductor]\nworkers = 1\n\n[scheduler]\nworkers = 1\n")
    if pin:
        text += f"\n[upgrade_levels]\ncompute = {pin}\n"
    return text + f"\n[oslo_concurrency]\nlock_path = {state_path}/tmp\n"


def password_auth(section: str, keystone: str, user: str, password: str, *extra: str) -> str:
    """A ``[section]`` that authenticates *user* of project ``service`` with keystone by password
    (``[keystone_authtoken]``, ``[service_user]``, ``[placement]``), plus *extra* ``key = value`` lines."""
    lines = [f"[{section}]", *extra, f"auth_url = {keystone}", "auth_type = password", "project_domain_name = Default",
             "user_domain_name = Default", "project_name = service", f"username = {user}", f"password = {password}",
             "region_name = RegionOne"]
    return "\n" + "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write *path* 0640 (created so, never readable by others in between)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o640)


def started_line(log: Path, unit: str) -> bool:
    """nova's (or the launcher's) start line of *unit* is in *log* after the last start mark."""
    try:
        data = log.read_bytes()
    except OSError:
        return False
    return STARTED[unit].encode() in data[data.rfind(MARK):]


def launch(unit: str, argv: list[str], pid_file: Path, log: Path, ready: Callable[[], bool],
           env: dict[str, str] | None = None, cwd: Path | None = None, poll: float = 0.2) -> int:
    """Start a nova or placement *unit* (``proc.launch``, under nova's start mark and timeouts); its pid."""
    return proc.launch(unit, argv, pid_file, log, ready, mark=MARK, timeout=START_TIMEOUT, stop_timeout=STOP_TIMEOUT,
                       env=env, cwd=cwd, poll=poll)
