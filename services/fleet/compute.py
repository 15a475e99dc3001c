"""Compute nodes: once the control plane has moved, restart their agents so they reconnect to it.

Each compute host is its own machine (``compute.<name>``) with its own journal steps, so the
runner can drive many of them at once (a bounded pool, ``[upgrade] compute_pool``), one failing
host fails only its own step, and ``resume`` retries only the hosts that did not finish:

1. ``compute.<name>.restart``: stop (if running) and start every unit — nova-compute first, then
   the network agent if the plan names one — by the host's own service control;
2. ``compute.<name>.verify``: every unit reports in (its status says running) within a timeout.

Undo restarts the units again, so that after a revert they reconnect to the old controller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from services.infra.host import Host, check, command_text
from services.infra.settings import ServiceControl
from statemachine.machine import ServiceMachine
from statemachine.step import Result, Step, StepError

PREFIX = "compute"


@dataclass(frozen=True)
class ComputeSettings:
    name: str
    units: tuple[str, ...]
    control: ServiceControl
    #: how long a restarted agent may take to report in
    verify_timeout: float = 60.0


def running(host: Host, control: ServiceControl, unit: str) -> bool:
    """LSB status: 0 running, the kind's "stopped" codes stopped, anything else an error (never guessed)."""
    argv = control.argv("status", unit)
    res = host.run(argv, timeout=120)
    if res.rc == 0:
        return True
    if res.rc in control.stopped_codes:
        return False
    raise StepError(f"cannot tell whether {unit} runs on {host.name}: `{command_text(argv)}` exited {res.rc}",
                    host=host.name, command=command_text(argv), rc=res.rc, output=res.output)


def restart(host: Host, s: ComputeSettings) -> dict[str, bool]:
    was: dict[str, bool] = {}
    for unit in s.units:
        was[unit] = running(host, s.control, unit)
        if was[unit]:
            check(host, s.control.argv("stop", unit), f"stopping {unit}", timeout=300)
        check(host, s.control.argv("start", unit), f"starting {unit}", timeout=300)
    return was


def machine(s: ComputeSettings, host: Host) -> ServiceMachine:
    base = f"{PREFIX}.{s.name}"

    def restart_run(ctx: object) -> Result:
        return {"host": host.name, "was_running": restart(host, s)}

    def restart_undo(ctx: object, result: Result | None) -> None:
        restart(host, s)

    def verify_run(ctx: object) -> Result:
        started = time.monotonic()
        for unit in s.units:
            while not running(host, s.control, unit):
                if time.monotonic() - started > s.verify_timeout:
                    raise StepError(f"{unit} on {host.name} did not report in within {s.verify_timeout:.0f} s "
                                    "after its restart", host=host.name)
                time.sleep(0.5)
        return {"units": list(s.units), "reported_in_after": round(time.monotonic() - started, 3)}

    return ServiceMachine(base, [
        Step(f"{base}.restart", "restarted", restart_run, restart_undo, host=host.name, acts=restart_run,
             describe=f"restart {', '.join(s.units)} on {s.name}"),
        Step(f"{base}.verify", "reported_in", verify_run, host=host.name, acts=verify_run,
             describe=f"{', '.join(s.units)} on {s.name} report in"),
    ])
