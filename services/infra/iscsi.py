"""The iSCSI target address where cinder and nova store it, as data edits (facts §4.8, §7.5).

``volumes.provider_location`` is ``"<ip>:<port>[;<ip2>:<port>],<tid> <iqn> <lun>"``; the
``connection_info`` columns (cinder's attachments, nova's block_device_mapping) are JSON whose
``data`` holds ``target_portal``, ``target_portals`` and ``device_path`` (``/dev/disk/by-path/
ip-<ip>:<port>-iscsi-...``). Only those fields change, only where the address is exactly the old
one; every other byte of the JSON document keeps its value (it is re-serialised the way nova
and cinder write it, ``json.dumps`` defaults).
"""

from __future__ import annotations

import json
from typing import Any


def _portal(value: str, old: str, new: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep:
        return new if value == old else value
    bracketed = host.startswith("[") and host.endswith("]")
    bare = host[1:-1] if bracketed else host
    if bare != old:
        return value
    return f"[{new}]:{port}" if bracketed or ":" in new else f"{new}:{port}"


def provider_location(value: str | None, old: str, new: str) -> str | None:
    """The new provider_location, or None if it does not name *old*."""
    if not value or "," not in value:
        return None
    portals, rest = value.split(",", 1)
    changed = ";".join(_portal(p, old, new) for p in portals.split(";"))
    return None if changed == portals else f"{changed},{rest}"


def connection_info(value: str | None, old: str, new: str) -> str | None:
    """The new connection_info JSON, or None if it does not name *old* (or is not JSON)."""
    if not value:
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        return None
    changed = False
    if isinstance(data.get("target_portal"), str):
        p = _portal(data["target_portal"], old, new)
        changed |= p != data["target_portal"]
        data["target_portal"] = p
    if isinstance(data.get("target_portals"), list):
        ps = [_portal(p, old, new) if isinstance(p, str) else p for p in data["target_portals"]]
        changed |= ps != data["target_portals"]
        data["target_portals"] = ps
    path = data.get("device_path")
    if isinstance(path, str) and f"ip-{old}:" in path:
        data["device_path"] = path.replace(f"ip-{old}:", f"ip-{new}:")
        changed = True
    return json.dumps(doc) if changed else None


#: (label, database option, table, column, rewrite) — where the address is stored
Where = tuple[str, str, str, str, Any]


def places(cinder_db: str, nova_dbs: list[str]) -> list[Where]:
    out: list[Where] = [("cinder volumes", cinder_db, "volumes", "provider_location", provider_location),
                        ("cinder attachments", cinder_db, "volume_attachment", "connection_info", connection_info)]
    out += [(f"nova {db} block devices", db, "block_device_mapping", "connection_info", connection_info)
            for db in nova_dbs]
    return out
