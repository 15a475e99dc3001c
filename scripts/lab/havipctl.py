"""The service control of an HA lab controller's VIP units (keepalived, HAProxy), for the tool's plan.

    python -m scripts.lab.havipctl {start|stop|status} {keepalived|haproxy}

The lab runs them as plain processes (``scripts.lab.havip``), not under systemd; the plan's ``vip.control``
names this command, so `upgrade run` drives them as it would ``systemctl``: LSB exit codes (``start``/``stop``
0 on success, also with nothing to do, 1 on failure; ``status`` 0 running, 3 stopped). HAProxy is ready once
it listens on keystone's port, read from its config (written when the lab was built): the hosts' python has
no pymysql, so the lab's modules that hold the port are not imported here.
"""

from __future__ import annotations

import re
import sys

from scripts.lab import havip
from scripts.lab.proc import LabError


def api_port() -> int:
    """The port HAProxy's ``keystone`` section binds on the VIP."""
    found = re.search(r"^listen keystone\n  bind \S+:(\d+)$", havip.HAPROXY_CFG.read_text(), re.M)
    if found is None:
        raise LabError(f"{havip.HAPROXY_CFG} has no keystone section")
    return int(found.group(1))


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop", "status") or argv[1] not in havip.PROGRAMS:
        print(f"usage: python -m scripts.lab.havipctl {{start|stop|status}} {{{'|'.join(havip.PROGRAMS)}}}",
              file=sys.stderr)
        return 2
    action, program = argv
    if action == "status":
        return 0 if havip.pid(program) else 3
    try:
        if action == "start":
            havip.start(program, api_port() if program == "haproxy" else 0)
        else:
            havip.stop(program)
    except LabError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
