"""What a lab controller serves, read the way an operator checks an upgrade: through the APIs on
the management address (keystone and glance), and the schema revisions in its database.

``api_view`` and ``db_view`` return plain data, so a test or ``make demo`` compares the old
controller's view before the run with the new controller's after it (and the old one's again
after a revert). Nothing here writes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from scripts.lab import glapi, ksapi
from scripts.lab.mariadb import MariaDB

#: listing 100k users or their role assignments (the benchmark's grown lab) on a loaded machine takes minutes
LIST_TIMEOUT = 600.0
#: databases that carry an alembic_version table, per service of the full lab
ALEMBIC_DBS = {"keystone": ("keystone",), "glance": ("glance",), "placement": ("placement",),
               "nova": ("nova_api", "nova", "nova_cell0"), "neutron": ("neutron",), "cinder": ("cinder",)}


def api_view(seed: dict[str, Any], keystone_url: str, glance_url: str | None) -> dict[str, Any]:
    """Keystone and glance as an operator sees them: a token for the seeded admin (old password),
    the old admin token still valid, the demo user's login, projects, users, role assignments,
    the catalog, the credential decrypted, every image listed and downloaded (md5 of the bytes)."""
    out: dict[str, Any] = {}
    admin = ksapi.issue_token(keystone_url, seed["admin_user"], seed["admin_password"], project="admin")
    out["admin_token_issue"] = admin.status
    if admin.status != 201:
        return out
    token = admin.headers["x-subject-token"]
    old = ksapi.request("GET", f"{keystone_url}/auth/tokens", token=token,
                        headers={"X-Subject-Token": seed["admin_token"]})
    out["old_token_validates"] = old.status
    out["demo_token_issue"] = ksapi.issue_token(keystone_url, seed["demo_user"], seed["demo_password"],
                                                project=seed["demo_project"]).status
    out["projects"] = sorted(p["name"] for p in ksapi.call("GET", f"{keystone_url}/projects", token)["projects"])
    out["users"] = sorted(u["name"] for u in ksapi.call("GET", f"{keystone_url}/users", token,
                                                        timeout=LIST_TIMEOUT)["users"])
    out["role_assignments"] = sorted(
        f"{a['user']['id']}:{a['role']['id']}:{a['scope'].get('project', {}).get('id', '-')}"
        for a in ksapi.call("GET", f"{keystone_url}/role_assignments", token,
                                timeout=LIST_TIMEOUT)["role_assignments"] if "user" in a)
    out["endpoints"] = sorted(f"{e['service_id']} {e['interface']} {e['url']}"
                              for e in ksapi.call("GET", f"{keystone_url}/endpoints", token)["endpoints"])
    cred = ksapi.request("GET", f"{keystone_url}/credentials/{seed['credential_id']}", token=token)
    out["credential_blob"] = (cred.body or {}).get("credential", {}).get("blob")
    if glance_url:
        out["images"] = []
        for image in glapi.images(glance_url, token):
            status, md5 = glapi.download_md5(glance_url, token, image["id"])
            out["images"].append({"id": image["id"], "name": image["name"], "status": image["status"],
                                  "size": image["size"], "checksum": image["checksum"], "download": status,
                                  "download_md5": md5})
    return out


#: the seeded rows of the services the lab runs at DB level (their APIs are not served): counted
ROWS = {"nova": (("nova", "instances"), ("nova", "block_device_mapping"), ("nova", "services")),
        "neutron": (("neutron", "networks"), ("neutron", "subnets"), ("neutron", "agents")),
        "cinder": (("cinder", "volumes"), ("cinder", "volume_attachment"))}


def db_view(db: MariaDB, services: tuple[str, ...]) -> dict[str, Any]:
    """Alembic revisions per database, nova's cell mappings (which DB server each cell names) and
    the live row counts of the seeded tables of the services without an API in the lab."""
    present = {r[0] for r in db.execute("SELECT table_schema FROM information_schema.tables "
                                        "WHERE table_name = 'alembic_version'")}
    out: dict[str, Any] = {"revisions": {}}
    for service in services:
        for name in ALEMBIC_DBS.get(service, ()):
            if name in present:
                out["revisions"][name] = sorted(r[0] for r in db.execute(
                    f"SELECT version_num FROM `{name}`.alembic_version"))
    out["counts"] = {f"{schema}.{table}": _live_rows(db, schema, table)
                     for s in services for schema, table in ROWS.get(s, ())}
    if "nova" in services:  # host:port/db only: the URLs hold nova's DB password
        out["cell_mappings"] = {r[0]: urlsplit(r[1]).netloc.rpartition("@")[2] + urlsplit(r[1]).path for r in
                                db.execute("SELECT name, database_connection FROM nova_api.cell_mappings")}
    return out


def _live_rows(db: MariaDB, schema: str, table: str) -> int:
    """Rows not soft-deleted (nova's online migrations add a deleted marker instance)."""
    soft = db.execute("SELECT COUNT(*) FROM information_schema.columns WHERE table_schema=%s AND table_name=%s "
                      "AND column_name='deleted'", args=(schema, table))[0][0]
    where = " WHERE deleted = 0" if soft else ""
    return db.execute(f"SELECT COUNT(*) FROM `{schema}`.`{table}`{where}")[0][0]


def checksums(db: MariaDB, services: tuple[str, ...]) -> dict[str, Any]:
    """CHECKSUM TABLE of every table of every database of ``services``: "data unchanged"."""
    return {name: db.checksums(name) for s in services for name in ALEMBIC_DBS.get(s, ())}
