"""Starting, stopping and asking about services on a controller, by the controller's own means."""

from __future__ import annotations

from services.infra.host import check, command_text
from services.infra.settings import Side
from statemachine.step import StepError


def is_running(side: Side, unit: str) -> bool:
    """LSB status semantics: exit 0 is running, the kind's "stopped" codes are stopped, and any
    other exit is an error — never guessed as "stopped", which would let the tool dump a
    database that its service is still writing to."""
    argv = side.control.argv("status", unit)
    res = side.host.run(argv, timeout=120)
    if res.rc == 0:
        return True
    if res.rc in side.control.stopped_codes:
        return False
    raise StepError(f"cannot tell whether {unit} runs on {side.host.name}: `{command_text(argv)}` exited {res.rc} "
                    f"(expected 0 = running or {'/'.join(map(str, sorted(side.control.stopped_codes)))} = stopped)"
                    " — fix the service control settings of this controller in the plan",
                    host=side.host.name, command=command_text(argv), rc=res.rc, output=res.output)


def start(side: Side, unit: str) -> None:
    check(side.host, side.control.argv("start", unit), f"starting {unit}", timeout=300)


def stop(side: Side, unit: str) -> None:
    check(side.host, side.control.argv("stop", unit), f"stopping {unit}", timeout=300)
