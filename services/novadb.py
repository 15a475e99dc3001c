"""What nova's databases on the old controller say before a run, read-only (facts §4.3, §4.5).

- **Cells.** ``nova_api.cell_mappings`` names every cell's database. The run carries nova's main
  database (the cell the old controller serves) and cell0's, and points every mapping at the new DB
  server (``nova.update_cells``): a cell whose database is another one would be re-pointed at a server
  that never received it. Such a plan is refused before anything changes, naming the cells and the fix.
- **Compute rows of hosts that no longer exist.** ``services`` rows of ``nova-compute`` that are
  neither deleted nor forced down count in nova's minimum compute version: a decommissioned host's
  old row keeps the new nova-conductor from starting (TooOldComputeService) or shows a compute that
  never comes back. `upgrade check` names them and the fix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from services.catalog import nova
from services.infra import mysql
from services.infra.settings import DBEndpoint
from services.releases import Jump
from services.steps.specs import db_specs

#: nova's ``[DEFAULT] service_down_time`` default: a row whose heartbeat is older is down
SERVICE_DOWN_TIME = 60
#: the oldest compute service version a release's nova-conductor starts with (``OLDEST_SUPPORTED_SERVICE_VERSION``
#: and its alias in nova/objects/service.py, facts §4.5): older rows stop it with TooOldComputeService
OLDEST_COMPUTE_VERSION = {"2025.1": 66, "2025.2": 68, "2026.1": 68}


def _dbs(settings: Any, jump: Jump) -> dict[str, str]:
    return {d.label: d.db_name(settings) for d in db_specs(nova.SPEC, jump)}


def cell_errors(ep: DBEndpoint, settings: Any, jump: Jump, plan: str) -> list[str]:
    """One message per cell whose database the plan does not carry (empty: every cell's is in it)."""
    dbs = _dbs(settings, jump)
    if "api" not in dbs or "database_connection" not in mysql.table_columns(ep, dbs["api"], "cell_mappings"):
        return []  # no cells before the API database (database_errors names a missing one)
    rows = mysql.query(ep, "SELECT uuid, name, database_connection FROM cell_mappings ORDER BY id", db=dbs["api"])
    out = []
    for uuid, name, url in rows:
        db = urlsplit(str(url or "")).path.lstrip("/").split("?")[0]
        cell0 = uuid == nova.CELL0_UUID
        want = dbs.get("cell0") if cell0 else dbs["main"]
        if not url or db == want:
            continue  # an empty URL is nova's [database] connection: the main database
        key = "cell0_db_name" if cell0 else "db_name"
        out.append(f"nova: cell {name or '(unnamed)'!r} ({uuid}) in {dbs['api']}.cell_mappings on the source DB "
                   f"server keeps its instances in database {db!r}, which the plan does not carry (it carries "
                   f"{dbs['main']!r} for the cell and {dbs.get('cell0', '-')!r} for cell0): the run would point "
                   f"that cell at the new DB server, which never receives {db!r} — if {db!r} is that database "
                   f"under its own name, set services.nova.{key} = \"{db}\" in {plan}; if the cell is an unused "
                   f"leftover, remove it on the old controller (`nova-manage cell_v2 delete_cell --cell_uuid {uuid}`)"
                   "; a cloud of several cells is not upgraded by this tool (nothing was changed)")
    return out


@dataclass(frozen=True)
class StaleCompute:
    """A nova-compute row that still counts, of a host that is gone."""

    id: int
    host: str
    version: int
    last_seen: str
    #: the new nova-conductor refuses to start while this row stands (its version is too old)
    blocks: bool


def stale_computes(ep: DBEndpoint, settings: Any, jump: Jump, hosts: Iterable[str] = (),
                   down_after: int = SERVICE_DOWN_TIME) -> list[StaleCompute]:
    """The ``nova-compute`` rows (not deleted, not forced down) of hosts that no longer exist: not among
    *hosts* (the plan's [[computes]]) when it names any, else silent longer than *down_after* seconds."""
    db = _dbs(settings, jump)["main"]
    if not mysql.db_exists(ep, db):
        return []
    cols = set(mysql.table_columns(ep, db, "services"))
    if not {"binary", "host", "deleted"} <= cols:
        return []
    version = "version" if "version" in cols else "0"
    forced = "AND forced_down=0" if "forced_down" in cols else ""
    rows = mysql.query(ep, f"SELECT id, host, {version}, COALESCE(updated_at, created_at), "
                           "TIMESTAMPDIFF(SECOND, COALESCE(updated_at, created_at), UTC_TIMESTAMP()) FROM services "
                           f"WHERE `binary`='nova-compute' AND deleted=0 {forced} ORDER BY id", db=db)
    known = set(hosts)
    oldest = OLDEST_COMPUTE_VERSION.get(jump.target)
    out = []
    for rid, host, ver, seen, silent in rows:
        gone = host not in known if known else (silent is None or int(silent) > down_after)
        if gone:
            when = seen.isoformat(sep=" ") if isinstance(seen, dt.datetime) else "never"
            out.append(StaleCompute(int(rid), str(host), int(ver or 0), when,
                                    oldest is not None and int(ver or 0) < oldest))
    return out


def describe(rows: list[StaleCompute], db: str, jump: Jump) -> tuple[str, str]:
    """(the detail, the fix) of `upgrade check`'s row for *rows*."""
    detail = "; ".join(f"{r.host} (services.id {r.id}, version {r.version}, last seen {r.last_seen}"
                       + (f", older than {jump.target}'s oldest supported {OLDEST_COMPUTE_VERSION[jump.target]}: "
                          "the new nova-conductor will not start" if r.blocks else "") + ")" for r in rows)
    ids = " ".join(str(r.id) for r in rows)
    fix = (f"on the old controller, delete the rows of hosts that are gone (`openstack compute service delete "
           f"{ids}`, or mark them forced down) — or list the hosts that exist as [[computes]] in the plan; "
           f"then check again ({db}.services)")
    return f"nova-compute rows of hosts that no longer exist: {detail}", fix
