"""The service-specific keys of a plan's ``[services.<name>]`` table, as data.

Each service's spec lists the keys it takes (``ServiceSpec.options``): its own, and the shared ones
defined here. ``upgrade/plan.py`` validates them through :func:`read` (type errors name the file
and key); the service modules read them from ``ServiceSettings.options``. Common keys (unit,
db_name, owner, …) stay in the plan loader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    name: str
    type: type | tuple[type, ...]
    default: Any
    doc: str
    expected: str = ""
    #: a value of the right type may still be out of range (a port a daemon refuses): refused at plan load
    valid: Callable[[Any], bool] | None = None


UNITS = Option("units", list, None, "the service's units in stop order (started in reverse); default: the "
                                    "release's RDO unit names", "a list of unit names")
OLD_HOST = Option("old_host", str, "", "the old controller's host name as the service's DB rows name it "
                                       "(services, agents, volumes); empty: no host-name fix-ups")
NEW_HOST = Option("new_host", str, "", "the new controller's host name; rows of old_host are moved or "
                                       "retired only when it differs")

STATUS_ACCEPT = Option("status_accept", list, [], "names of `<service>-status upgrade check` checks whose "
                                                 "Failure is accepted (recorded as a warning), e.g. [\"Placement "
                                                 "API\"] while placement is not reachable yet", "a list of check names")

REPAIR = Option("repair_double_encoded", list, [], "text an earlier bad conversion double-encoded (`upgrade "
                                                 "check` names it: CafÃ© for Café) to repair on the target right "
                                                 "after the import, as [\"DATABASE.TABLE\", "
                                                 "\"DATABASE.TABLE.COLUMN\"]; journaled, undone by revert",
                "a list of DATABASE.TABLE[.COLUMN] names")

def names(options: Sequence[Option]) -> set[str]:
    return {o.name for o in options}


def read(options: Sequence[Option], get: Callable[..., Any]) -> dict[str, Any]:
    """The *options* of a service (its spec's) through the plan reader's typed ``get(key, type, default,
    expected=)``."""
    out: dict[str, Any] = {}
    for o in options:
        value = get(o.name, o.type, o.default, expected=o.expected or getattr(o.type, "__name__", ""))
        if o.name == "units" and value is not None and (not value or not all(isinstance(u, str) and u
                                                                             for u in value)):
            value = get(o.name, str, expected="a non-empty list of unit names")  # raises the typed error
        if o.valid is not None and value is not None and not o.valid(value):
            value = get(o.name, type(None), expected=o.expected)  # raises the typed error naming key and value
        out[o.name] = value
    return out
