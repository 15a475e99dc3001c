"""The lab's unit supervisor for every service of a controller tree, LSB exit codes like ``svc``:

    python -m scripts.lab.units --root ROOT {start|stop|status} UNIT
    python -m scripts.lab.units --root ROOT {enable|disable|mask|unmask|is-enabled} UNIT

``keystone`` (and ``glance-api`` where the controller's lab.json gives glance a port) is served
for real by ``scripts.lab.svc``, heat's units and its broker by ``scripts.lab.heatlab``, neutron's and
cinder's (where the tree serves them for real) by ``scripts.lab.netvol``, placement's and nova's with
nova's broker by ``scripts.lab.novaserve`` where the tree serves them; every
other unit is a stand-in process (``standin.py``; ``httpd`` answers HTTP on the port
``ROOT/units.json`` names), tracked by pid file and command line, never by name. ``status``: 0 running, 3 stopped.
Enablement is systemd's, kept by ``svc`` for every unit (a masked unit refuses ``start``): the run's switchover
disables and masks what it stopped on the old controller, as on a real host.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from scripts.lab import heatlab, layout, novaserve, served, svc
from scripts.lab.proc import LabError, pid_alive, port_open, read_pid, spawn, terminate

STANDIN = Path(__file__).resolve().with_name("standin.py")
UNITS_FILE = "units.json"


def ports(root: Path) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in json.loads((root / UNITS_FILE).read_text()).items()}
    except (OSError, ValueError):
        return {}


def _pid_file(root: Path, unit: str) -> Path:
    return layout.run_dir(root) / f"unit-{unit}.pid"


def _marker(unit: str) -> str:
    return f"{STANDIN.name} {unit}"


def pid(root: Path, unit: str) -> int | None:
    p = read_pid(_pid_file(root, unit))
    return p if pid_alive(p, (_marker(unit),)) else None


class _Svc:
    """The keystone/glance supervisor (``scripts.lab.svc``) with the four verbs the others have."""

    start, stop, status = staticmethod(svc.start), staticmethod(svc.stop), staticmethod(svc.status)

    @staticmethod
    def alive(root: Path, unit: str) -> bool:
        return svc.service_pid(root, unit) is not None


def _runner(root: Path, unit: str) -> Any:
    """What runs *unit* of the tree for real (a module or served lab with start, stop, alive and status),
    or None: the unit is a stand-in, run here."""
    if novaserve.owns(root, unit):
        return novaserve
    if lab := served.owner(root, unit):
        return lab
    if heatlab.owns(root, unit):
        return heatlab
    return _Svc if svc.serves(root, unit) else None


def start(root: Path, unit: str) -> None:
    if svc.enablement(root, unit) == "masked":
        raise LabError(f"{unit} is masked (`unmask {unit}` first)")
    if runner := _runner(root, unit):
        runner.start(root, unit)
        return
    if pid(root, unit):
        return
    port = ports(root).get(unit)
    if port and port_open(port):
        raise LabError(f"{unit}: 127.0.0.1:{port} is already in use")
    layout.run_dir(root).mkdir(parents=True, exist_ok=True)
    log = layout.log_dir(root, "units") / f"{unit}.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = spawn([sys.executable, str(STANDIN), unit, *([str(port)] if port else [])], _pid_file(root, unit), out)
    deadline = time.monotonic() + 15
    while port and not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"{unit} did not listen on 127.0.0.1:{port}")
        time.sleep(0.05)


def start_all(root: Path, names: list[str], start: Callable[[Path, str], Any] = start) -> None:
    """Start the units *names* (in start order) of the tree at *root* with *start* (this supervisor's, or
    ``svc.start``), each waited for by its own readiness condition: the brokers first, all at once; then the
    services side by side, each service's units one after the other in their order, as the tool starts them
    (``services/steps/units.py``). One after the other for the whole controller, it waited for every unit's
    start-up (a Python service's imports, an Erlang VM's boot) in turn; all at once, a unit could come up
    before the one of its service it needs: cinder-scheduler asks the volume services for their capabilities
    once, when it starts, and a cinder-volume not yet consuming then stays unknown to it until its periodic
    report a minute or two later (a volume made meanwhile fails with "No valid backend was found"). A unit's
    service is its name up to the first ``-`` (``cinder-volume``: cinder). The first failure is raised once
    every start has ended."""
    brokers = [n for n in names if n.startswith("rabbitmq")]
    services: dict[str, list[str]] = {}
    for name in names:
        if name not in brokers:
            services.setdefault(name.split("-", 1)[0], []).append(name)

    def in_order(chain: list[str]) -> None:
        for name in chain:
            start(root, name)

    for wave in ([[b] for b in brokers], list(services.values())):
        if not wave:
            continue
        with ThreadPoolExecutor(max_workers=len(wave)) as pool:
            jobs = [pool.submit(in_order, chain) for chain in wave]
        for job in jobs:
            job.result()


def stop(root: Path, unit: str) -> None:
    if runner := _runner(root, unit):
        runner.stop(root, unit)
        return
    p = pid(root, unit)
    if p:
        terminate(p, 10)
    _pid_file(root, unit).unlink(missing_ok=True)


def alive(root: Path, unit: str) -> bool:
    """The unit's process exists (answering or not): what ``down`` must stop."""
    if runner := _runner(root, unit):
        return runner.alive(root, unit)
    return pid(root, unit) is not None


def status(root: Path, unit: str) -> bool:
    if runner := _runner(root, unit):
        return runner.status(root, unit)
    return pid(root, unit) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.lab.units")
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("action", choices=("start", "stop", "status", "enable", "disable", "mask", "unmask",
                                           "is-enabled"))
    parser.add_argument("unit")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    known = {*svc.SERVICES, *heatlab.UNITS, *served.known_units(),
             *(u for names in layout.UNITS.values() for u in names)}
    if args.unit not in known:  # a usage error, never "stopped": the caller must not take it for a stopped unit
        print(f"{args.unit}: unknown unit (known: {', '.join(sorted(known))})", file=sys.stderr)
        return 2
    if args.action == "is-enabled":
        state = svc.enablement(root, args.unit)
        print(state)
        return 0 if state == "enabled" else 1
    if args.action in ("enable", "disable", "mask", "unmask"):
        svc.set_enablement(root, args.action, args.unit)
        return 0
    try:
        if args.action == "start":
            start(root, args.unit)
        elif args.action == "stop":
            stop(root, args.unit)
        else:
            return 0 if status(root, args.unit) else 3
    except LabError as exc:
        print(f"{args.unit}: {args.action} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
