"""The end of a revert: the old controller listens again where its services listened before the run.

Starting a unit is not serving: an API binds its port seconds after its start returns, and an operator (or a
check from a compute host) that uses the cloud as soon as `upgrade revert` ends would be refused. Each source
stop recorded where its service's API listened (``services/infra/listeners.py``); the revert ends when all of
them listen again, or fails naming those that do not (every step is undone then: the old service's own log
says why it does not bind).
"""

from __future__ import annotations

import json

from journal.store import Journal
from services.infra import listeners
from services.infra.host import Host
from upgrade.errors import EXIT_FAILED, UserError

#: how long the old controller's services may take to bind their ports again after the revert started them
WAIT = 300.0


def closed_by_stops(journal: Journal, run_id: str) -> dict[str, str]:
    """Each address a source stop of the run recorded as its service's API listener, with that service: the
    services' own ``<service>.stop_source`` (not an HA member's copy of it on another host), read through the
    journal's last event per step and kind (``Journal.step_rows``), not by decoding the whole run."""
    out: dict[str, str] = {}
    for machine, step, kind, _output, result in journal.step_rows(run_id):
        if kind == "done" and step == f"{machine}.stop_source" and result:
            for address in json.loads(result).get("listeners") or []:
                out.setdefault(address, machine)
    return out


def wait_back(journal: Journal, run_id: str, host: Host, timeout: float = WAIT) -> dict[str, str]:
    """Wait until the old controller listens again where the run's stops recorded API listeners; raise, naming
    each address and service that does not within *timeout*. Returns what was waited for."""
    wanted = closed_by_stops(journal, run_id)
    missing = listeners.wait_listening(host, set(wanted), timeout) if wanted else set()
    if missing:
        names = ", ".join(f"{a} ({wanted[a]})" for a in sorted(missing))
        err = UserError(f"the revert undid every step and started the old services, but on {host.name} nothing "
                        f"listens again after {timeout:.0f} s on {names}, where the service's API listened before "
                        f"the run stopped it — read that service's log on {host.name} and start it by hand; the run "
                        "stays reverted (nothing is left to undo)")
        err.exit_code = EXIT_FAILED
        raise err
    return wanted
