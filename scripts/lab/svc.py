"""The lab's service supervisor: start/stop/status of a controller's services, standing in for systemd.

    python -m scripts.lab.svc --root ROOT {start|stop|status} SERVICE
    python -m scripts.lab.svc --root ROOT {enable|disable|mask|unmask|is-enabled} SERVICE
    python -m scripts.lab.svc --root ROOT boot SERVICE...

Exit codes follow LSB init scripts, so the tool can drive the lab exactly like a real host's
service manager: ``start``/``stop`` 0 on success (also when there was nothing to do), 1 on
failure; ``status`` 0 running and answering, 3 stopped, 1 alive but not answering. Messages
are one line on stderr.

Enablement follows systemd and persists in the host's ``/etc`` (``ROOT/etc/lab-svc/{disabled,masked}/
SERVICE``, as systemd keeps its links in ``/etc/systemd/system``): ``is-enabled`` prints ``enabled``,
``disabled`` or ``masked`` and exits 0 only for ``enabled``; a masked service refuses ``start``;
``boot`` (what the lab runs when a host comes up) starts only the enabled services it is given.

A service is a detached process (own session, output to ``var/log/<service>/<service>-api.out``)
whose pid is kept in ``ROOT/run/<service>.pid``; it is found again only through that pid and
its command line, never by name. Add a service by adding a ``ServiceSpec`` to ``SERVICES``. Neutron's and
cinder's units, where the tree serves them for real (a multi-host lab's controller: ``scripts.lab.netvolhost``),
are handed to their lab (``scripts.lab.served``), enablement staying here.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scripts.lab import layout
from scripts.lab.proc import LabError, clean_env, pid_alive, port_open, read_pid, spawn, tail, terminate

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
KS_WSGI = Path(__file__).resolve().with_name("ks_wsgi.py")


@dataclass(frozen=True)
class ServiceSpec:
    """How to launch one service of a controller and how to tell that it is ready."""

    argv: Callable[[Path, layout.Descriptor], list[str]]
    env: Callable[[Path, layout.Descriptor], dict[str, str]]
    health_url: Callable[[layout.Descriptor], str]
    port: Callable[[layout.Descriptor], int]
    # Must appear in /proc/<pid>/cmdline: guards against a recycled pid in a stale pid file.
    cmdline_marker: str
    log_name: str


def _keystone_argv(root: Path, desc: layout.Descriptor) -> list[str]:
    """The release's own python runs the launcher, so it imports that release's keystone."""
    return [str(Path(desc.venv) / "bin" / "python"), str(KS_WSGI)]


def _keystone_env(root: Path, desc: layout.Descriptor) -> dict[str, str]:
    """Settings go through the environment: oslo.config would reject launcher arguments."""
    return {"OS_KEYSTONE_CONFIG_FILES": str(layout.keystone_conf(root)), "KS_PORT": str(desc.keystone_port),
            "KS_BIND": desc.bind}


def _glance_argv(root: Path, desc: layout.Descriptor) -> list[str]:
    """The release's own glance-api (eventlet, one worker: lab-recipes §6), on the controller's config."""
    return [str(Path(desc.venv) / "bin" / "glance-api"), "--config-file", str(layout.glance_conf(root))]


AGENT = Path(__file__).resolve().with_name("agent.py")


def _agent(name: str, port: int, bind: str = "127.0.0.1", config: str = "") -> ServiceSpec:
    """A host agent stand-in (scripts/lab/agent.py) for the multi-host lab's compute hosts."""
    return ServiceSpec(
        argv=lambda root, desc: [sys.executable, str(AGENT), name, str(port), bind, *([config] if config else [])],
        env=lambda root, desc: {},
        health_url=lambda d: f"http://127.0.0.1:{port}/",
        port=lambda d: port,
        cmdline_marker=f"{AGENT.name} {name} ",
        log_name=f"{name}.out",
    )


SERVICES: dict[str, ServiceSpec] = {
    "keystone": ServiceSpec(
        argv=_keystone_argv,
        env=_keystone_env,
        health_url=lambda d: f"http://127.0.0.1:{d.keystone_port}/v3",
        port=lambda d: d.keystone_port,
        cmdline_marker=KS_WSGI.name,
        log_name="keystone-api.out",
    ),
    # served for real only by a controller whose lab.json names a glance port (see serves())
    "glance-api": ServiceSpec(
        argv=_glance_argv,
        env=lambda root, desc: {},
        health_url=lambda d: f"http://127.0.0.1:{d.glance_port}/versions",
        port=lambda d: d.glance_port,
        cmdline_marker="glance-api",
        log_name="glance-api.out",
    ),
    # multi-host lab (scripts/lab/hosts.py): compute agents, and a probe that says which host answers
    "nova-compute": _agent("nova-compute", 18775, config="/etc/nova/nova.conf"),
    "neutron-agent": _agent("neutron-agent", 18776),
    "whoami": _agent("whoami", 8080, bind="0.0.0.0"),
}


def _spec(service: str) -> ServiceSpec:
    try:
        return SERVICES[service]
    except KeyError:
        raise LabError(f"unknown service {service!r} (known: {', '.join(sorted(SERVICES))})") from None


def serves(root: Path, service: str) -> bool:
    """Whether this supervisor runs ``service`` for real on the controller at ``root`` (else the
    caller's stand-in does): glance only where lab.json gives it a port."""
    if service not in SERVICES or not layout.descriptor_path(Path(root)).exists():
        return False
    return _spec(service).port(layout.read_descriptor(Path(root))) > 0


def _served(root: Path, service: str) -> Any:
    """Neutron's or cinder's lab where the tree serves *service* for real (``scripts.lab.served``), else None;
    imported only for a unit not of ``SERVICES``, so this supervisor's own calls stay as cheap as they were."""
    if service in SERVICES:
        return None
    from scripts.lab import served

    return served.owner(Path(root), service)


def log_file(root: Path, service: str) -> Path:
    """Where the service's stdout/stderr go (the first place to look when it does not start)."""
    return layout.log_dir(root, service) / _spec(service).log_name


def service_pid(root: Path, service: str) -> int | None:
    """The service's pid if it is alive and really ours, else None."""
    if lab := _served(root, service):
        return lab.pid(Path(root).resolve(), service)
    pid = read_pid(layout.pid_file(root, service))
    return pid if pid_alive(pid, (_spec(service).cmdline_marker,)) else None


def _answers(url: str, timeout: float = 3.0) -> bool:
    """GET *url* answers 200. A plain HTTP/1.0 request: importing urllib.request would be a third of
    the supervisor's CPU per call, which adds up when a run drives dozens of hosts at once."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout) as sock:
            sock.sendall(f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode())
            status = sock.makefile("rb").readline()
    except (OSError, ValueError):
        return False
    return status.split()[1:2] == [b"200"]


def start(root: Path, service: str) -> int:
    """Launch ``service`` detached and wait until it answers; returns its pid. No-op if already running."""
    root = Path(root).resolve()
    if enablement(root, service) == "masked":
        raise LabError(f"{service} is masked (`svc unmask {service}` first)")
    if lab := _served(root, service):
        lab.start(root, service)
        return lab.pid(root, service) or 0
    spec = _spec(service)
    desc = layout.read_descriptor(root)
    running = service_pid(root, service)
    if running:
        return running
    if port_open(spec.port(desc)):
        raise LabError(f"{service}: 127.0.0.1:{spec.port(desc)} is already in use by another process")
    pid_path = layout.pid_file(root, service)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_file(root, service)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"--- lab svc start {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        out.flush()
        # detached: survives the caller, and stop() can signal its group
        child = spawn(spec.argv(root, desc), pid_path, out, env=clean_env(**spec.env(root, desc)), cwd=root)
    url = spec.health_url(desc)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            pid_path.unlink(missing_ok=True)
            raise LabError(f"{service} exited with rc {child.returncode} during start; {log}:\n{tail(log)}")
        if _answers(url, timeout=2.0):
            return child.pid
        time.sleep(0.2)
    terminate(child.pid, STOP_TIMEOUT)
    pid_path.unlink(missing_ok=True)
    raise LabError(f"{service} did not answer {url} within {START_TIMEOUT:.0f} s; {log}:\n{tail(log)}")


def _mark(root: Path, kind: str, service: str) -> Path:
    return Path(root) / "etc" / "lab-svc" / kind / service


def enablement(root: Path, service: str) -> str:
    """``masked``, ``disabled`` or ``enabled`` (what ``systemctl is-enabled`` would print)."""
    root = Path(root).resolve()
    for kind in ("masked", "disabled"):
        if _mark(root, kind, service).exists():
            return kind
    return "enabled"


def set_enablement(root: Path, action: str, service: str) -> None:
    """enable/disable/mask/unmask, persisted under ROOT/etc (so it survives a reboot of the host)."""
    kind = {"enable": "disabled", "disable": "disabled", "mask": "masked", "unmask": "masked"}[action]
    mark = _mark(Path(root).resolve(), kind, service)
    if action in ("disable", "mask"):
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text(f"{action}d by `svc {action}`\n")
    else:
        mark.unlink(missing_ok=True)


def boot(root: Path, services: list[str]) -> list[str]:
    """Start the enabled ones of *services* (a host coming up); returns those started."""
    started = [s for s in services if enablement(root, s) == "enabled"]
    for s in started:
        start(root, s)
    return started


def stop(root: Path, service: str) -> bool:
    """SIGTERM the service's process group, SIGKILL after 15 s; True if it was running."""
    root = Path(root).resolve()
    pid = service_pid(root, service)
    if lab := _served(root, service):
        lab.stop(root, service)
        return pid is not None
    if pid:
        terminate(pid, STOP_TIMEOUT)
    layout.pid_file(root, service).unlink(missing_ok=True)
    return pid is not None


def status(root: Path, service: str) -> bool:
    """True if the service's process is alive and its health URL answers 200."""
    root = Path(root).resolve()
    if lab := _served(root, service):
        return lab.status(root, service)
    if not service_pid(root, service):
        return False
    return _answers(_spec(service).health_url(layout.read_descriptor(root)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.lab.svc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, type=Path, help="controller tree (contains lab.json)")
    parser.add_argument("action", choices=("start", "stop", "status", "enable", "disable", "mask", "unmask",
                                           "is-enabled", "boot"))
    parser.add_argument("service", nargs="+", help=f"one of {', '.join(sorted(SERVICES))}, or a unit of neutron or "
                        "cinder where the tree serves them for real")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    for name in args.service:
        if name not in SERVICES and _served(root, name) is None:
            parser.error(f"argument service: invalid choice: {name!r} (choose from {', '.join(sorted(SERVICES))}; "
                         "neutron's and cinder's units where the tree serves them)")
    if args.action == "boot":
        try:
            started = boot(root, args.service)
        except LabError as exc:
            print(f"boot failed: {' | '.join(str(exc).splitlines())}", file=sys.stderr)
            return 1
        print(f"boot: started {', '.join(started) or 'nothing'}", file=sys.stderr)
        return 0
    if len(args.service) != 1:
        parser.error(f"{args.action} takes one service")
    name = args.service[0]
    if args.action == "is-enabled":
        state = enablement(root, name)
        print(state)
        return 0 if state == "enabled" else 1
    if args.action in ("enable", "disable", "mask", "unmask"):
        set_enablement(root, args.action, name)
        print(f"{name}: {enablement(root, name)}", file=sys.stderr)
        return 0
    try:
        if args.action == "start":
            t0 = time.monotonic()
            already = service_pid(root, name)
            pid = start(root, name)
            if already:
                print(f"{name}: already running (pid {pid})", file=sys.stderr)
            else:
                print(f"{name}: started (pid {pid}) in {time.monotonic() - t0:.1f} s", file=sys.stderr)
            return 0
        if args.action == "stop":
            was = stop(root, name)
            print(f"{name}: {'stopped' if was else 'not running'}", file=sys.stderr)
            return 0
        pid = service_pid(root, name)
        if pid is None:
            print(f"{name}: stopped", file=sys.stderr)
            return 3
        if status(root, name):
            print(f"{name}: running (pid {pid})", file=sys.stderr)
            return 0
        print(f"{name}: pid {pid} alive but not answering", file=sys.stderr)
        return 1
    except LabError as exc:
        print(f"{name}: {args.action} failed: {' | '.join(str(exc).splitlines())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
