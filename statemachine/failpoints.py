"""Fail points: named places where a test can make the process die as a crash would.

``OPENSTACK_UPGRADE_FAILPOINT=keystone.import_db:inside`` kills the process with SIGKILL the
first time that point is reached (several points may be given, comma-separated). Unset, a fail
point costs one dictionary lookup. This is how the crash-injection tests kill a real `upgrade`
process at an exact place, on top of the tests that kill it from outside at arbitrary times.
"""

from __future__ import annotations

import os
import signal

ENV = "OPENSTACK_UPGRADE_FAILPOINT"


def _armed() -> frozenset[str]:
    raw = os.environ.get(ENV, "")
    return frozenset(p.strip() for p in raw.split(",") if p.strip())


def hit(name: str) -> None:
    """Die here, now, with SIGKILL if *name* is armed."""
    if name in _armed():
        os.kill(os.getpid(), signal.SIGKILL)
