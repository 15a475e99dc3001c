"""Fail points: named places where a test can make the process die as a crash would.

``OPENSTACK_UPGRADE_FAILPOINT=keystone.import_db:inside`` kills the process with SIGKILL the
first time that point is reached (several points may be given, comma-separated); a point armed
around a command (:func:`while_child_works`) kills it while that command runs. Unset, a fail
point costs one dictionary lookup. This is how the crash-injection tests kill a real `upgrade`
process at an exact place, on top of the tests that kill it from outside at arbitrary times.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

ENV = "OPENSTACK_UPGRADE_FAILPOINT"


def _armed() -> frozenset[str]:
    raw = os.environ.get(ENV, "")
    return frozenset(p.strip() for p in raw.split(",") if p.strip())


def hit(name: str) -> None:
    """Die here, now, with SIGKILL if *name* is armed."""
    if name in _armed():
        os.kill(os.getpid(), signal.SIGKILL)


def _children() -> list[int]:
    """This process's live children (read in /proc: the commands a step started)."""
    me, out = str(os.getpid()), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "(comm)": state, ppid, ...
        if fields[1] == me and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def _talks(pid: int) -> bool:
    """Whether *pid* holds a socket: a ``*-manage`` command connected to its database, at work."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:") for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:  # exited meanwhile
        return False


@contextlib.contextmanager
def while_child_works(name: str) -> Iterator[None]:
    """Armed, *name* kills the process while a command the block started is at work: once a child of
    the tool holds a socket (connected to its database, in the middle of its migration), not before
    it started nor after it ended. A crash between "the step began" and "the step ended" alone would
    not show that a half-done ``db sync`` is safe to run again."""
    if name not in _armed():
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            if any(_talks(pid) for pid in _children()):
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name=f"failpoint {name}", daemon=True).start()
    try:
        yield
    finally:
        done.set()
