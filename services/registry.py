"""The services the tool knows, in the order the runbook upgrades them."""

from __future__ import annotations

from collections.abc import Callable

from services import keystone
from statemachine.step import Step

ORDER = ("keystone", "glance", "nova", "neutron", "cinder", "horizon")

SERVICES: dict[str, Callable[[], list[Step]]] = {
    "keystone": keystone.steps,
}


def steps_for(name: str) -> list[Step]:
    return SERVICES[name]()
