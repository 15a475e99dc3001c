"""The tool's own work inside a step, timed by kind and reported in the step's result.

What a hand-run script would not do at all — the vault's hashing, encryption and decryption,
the row counts and checksums that prove an import complete, the status asked before and after a
stop — is the price of safety. ``make bench`` adds it up across the maintenance window (issue
#8: it must stay a small part of it), so each step measures its own and says so in its result
under ``overhead``.
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

    def add(self, kind: str, seconds: float) -> None:
        self.seconds[kind] += seconds

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.add(kind, time.monotonic() - started)

    def result(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}
