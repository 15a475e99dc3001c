"""The lab's hooks for the services served for real on ``scripts.lab.netvol`` (neutron, cinder):
which of them a controller tree serves, the units each runs there, and what runs before they start.
Apart from ``netvol`` so that module stays below the services built on it (no import cycle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.lab import cinderlab, neutronlab
from scripts.lab.netvol import Served


def labs() -> tuple[Served, ...]:
    """Every service served for real by the modules built on ``scripts.lab.netvol``."""
    return (neutronlab.LAB, cinderlab.LAB)


NAMES = ("neutron", "cinder")


def owner(root: Path, unit: str) -> Served | None:
    """The served service whose unit *unit* of the tree at *root* is, or None (a stand-in or another's)."""
    return next((lab for lab in labs() if lab.owns(root, unit)), None)


def served(root: Path | None, service: str) -> Served | None:
    """The service's real lab when the tree at *root* serves it for real."""
    return next((lab for lab in labs() if lab.name == service and root is not None and lab.installed(root)), None)


def unit_names(root: Path | None, service: str, standins: list[str]) -> list[str]:
    """The units *service* runs on the tree in start order: its real ones (the broker first), else the
    stand-ins given."""
    lab = served(root, service)
    return list(reversed(lab.tree_units(root))) if lab and root is not None else list(standins)


def known_units() -> set[str]:
    return {u for lab in labs() for u in lab.units}


def before_start(root: Path, venv: Path, db: Any) -> None:
    """After the old controller's rows are seeded, before its units start: what the real services need
    of those rows (cinder: its service rows' versions, ``cinderlab.fit_seeded``)."""
    if cinderlab.LAB.installed(root):
        cinderlab.fit_seeded(root, venv, db)
