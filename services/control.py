"""Starting, stopping and asking about services on a controller, by the controller's own means."""

from __future__ import annotations

from services.host import check
from services.settings import Side


def is_running(side: Side, unit: str) -> bool:
    """LSB semantics for every kind: exit 0 means running, anything else means not."""
    return side.host.run(side.control.argv("status", unit), timeout=120).rc == 0


def start(side: Side, unit: str) -> None:
    check(side.host, side.control.argv("start", unit), f"starting {unit}", timeout=300)


def stop(side: Side, unit: str) -> None:
    check(side.host, side.control.argv("stop", unit), f"stopping {unit}", timeout=300)
