"""The tool's own work inside a step, timed by kind and reported in the step's result.

What a hand-run script would not do at all — the vault's hashing, encryption and decryption,
the row counts and checksums that prove an import complete, the status asked before and after a
stop — is the price of safety. ``make bench`` adds it up across the maintenance window (issue
#8: it must stay a small part of it), so each step measures its own and says so in its result
under ``overhead``.

Work that runs beside the data (the source's checksums while it dumps, the target's table by table
as each import ends, the vault's encryption and read-back while the import still runs) does not
hold the window up by its full length: a step reports the part it waited for under its kind, and
all of it under ``<kind>_beside`` (``work``), so both the window's cost and the work are known.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

#: the kinds of overhead a step reports
KINDS = ("checks", "vault")


class Tally:
    """Seconds per kind for one step run."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(KINDS, 0.0)
        self.beside: dict[str, float] = {}

    def add(self, kind: str, seconds: float) -> None:
        """Seconds of *kind* the step waited for (on the window's path)."""
        self.seconds[kind] += seconds

    def work(self, kind: str, seconds: float) -> None:
        """Seconds of *kind* done beside the data, whatever part of it the step waited for (``add``)."""
        self.beside[kind] = self.beside.get(kind, 0.0) + seconds

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.add(kind, time.monotonic() - started)

    def result(self) -> dict[str, float]:
        return {**{k: round(v, 3) for k, v in self.seconds.items()},
                **{f"{k}_beside": round(v, 3) for k, v in self.beside.items()}}
