"""Independent commands of one step, run side by side.

A step that asks every unit of a service whether it runs, or points two cell mappings at the new
server, waits for commands that do not depend on each other. Run one after the other, their
process start-ups add up inside the maintenance window; run together, the step takes as long as
the slowest. The step stays one step: it is journaled, resumed and undone exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: commands at once on one controller (a service has a handful of units, nova two cells)
MAX_AT_ONCE = 8


def each(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, the calls side by side; results in the items' order. Every call
    finishes before this returns; the first item's error (in the items' order) is raised."""
    todo = list(items)
    if len(todo) < 2:
        return [fn(x) for x in todo]
    with ThreadPoolExecutor(max_workers=min(MAX_AT_ONCE, len(todo)), thread_name_prefix="together") as pool:
        futures = [pool.submit(fn, x) for x in todo]
    return [f.result() for f in futures]
