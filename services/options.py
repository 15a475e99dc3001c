"""The service-specific keys of a plan's ``[services.<name>]`` table, as data.

``upgrade/plan.py`` validates them through :func:`read` (type errors name the file and key);
the service modules read them from ``ServiceSettings.options``. Common keys (unit, db_name,
owner, …) stay in the plan loader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    name: str
    type: type | tuple[type, ...]
    default: Any
    doc: str
    expected: str = ""


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

OPTIONS: dict[str, tuple[Option, ...]] = {
    "keystone": (
        STATUS_ACCEPT, REPAIR,
        Option("old_address", str, "", "the old controller's address as endpoint URLs hold it: they are reported"),
        Option("new_address", str, "", "when it differs from old_address, endpoint URLs are rewritten to it"),
    ),
    "glance": (
        UNITS, STATUS_ACCEPT, REPAIR,
        Option("images_dir", str, "glance/images", "the file store, relative to the controller's lib "
                                                   "(copied with checksums)"),
    ),
    "placement": (UNITS, STATUS_ACCEPT, REPAIR),
    "nova": (
        UNITS, STATUS_ACCEPT, REPAIR, OLD_HOST, NEW_HOST,
        Option("api_db_name", str, "", "the API database (default <db_name>_api)"),
        Option("cell0_db_name", str, "", "cell0's database (default <db_name>_cell0)"),
        Option("metadata", str, "auto", "who serves the metadata API: \"neutron\" (its metadata agent: "
                                        "nova's metadata unit is never started), \"nova\", or \"auto\" "
                                        "(neutron when it is in the plan)"),
    ),
    "nova-unpin": (UNITS,),
    "neutron": (
        UNITS, STATUS_ACCEPT, REPAIR, OLD_HOST,
        Option("plugin_config", str, "", "the plugin config neutron-db-manage reads, relative to /etc/neutron; "
                                         "default: the one core_plugin names in neutron.conf"),
    ),
    "cinder": (
        UNITS, STATUS_ACCEPT, REPAIR, OLD_HOST, NEW_HOST,
        Option("iscsi_address_from", str, "", "the iSCSI target address volumes were exported on"),
        Option("iscsi_address_to", str, "", "the new iSCSI target address; when it differs, cinder.conf, "
                                            "provider_location and every connection_info are rewritten"),
        Option("nova_db_name", str, "nova", "nova's cell database holding block_device_mapping"),
        Option("volumes", list, [], "volume data to copy: [{source = \"/dev/...\", target = \"/dev/...\"}] or "
                                    "[{source = ..., target_vg = \"cinder-volumes\"}] (same size, sha256 "
                                    "checked)", "a list of tables"),
    ),
    "heat": (UNITS, STATUS_ACCEPT, REPAIR),
    "horizon": (
        UNITS,
        Option("local_settings", str, "openstack-dashboard/local_settings", "relative to the controller's etc"),
        Option("openstack_host", str, "", "OPENSTACK_HOST for the new controller (empty: kept)"),
        Option("keystone_db_name", str, "keystone", "keystone's database (the default role must exist)"),
    ),
}


def names(service: str) -> set[str]:
    return {o.name for o in OPTIONS.get(service, ())}


def read(service: str, get: Callable[..., Any]) -> dict[str, Any]:
    """The options of *service* through the plan reader's typed ``get(key, type, default, expected=)``."""
    out: dict[str, Any] = {}
    for o in OPTIONS.get(service, ()):
        value = get(o.name, o.type, o.default, expected=o.expected or getattr(o.type, "__name__", ""))
        if o.name == "units" and value is not None and (not value or not all(isinstance(u, str) and u
                                                                             for u in value)):
            value = get(o.name, str, expected="a non-empty list of unit names")  # raises the typed error
        out[o.name] = value
    return out
