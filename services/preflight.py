"""What `upgrade check` asks of the controllers and their databases, read-only.

The knowledge lives here, next to the steps that need it: which privileges a dump and an import
need, how big the dumps will be, where a DB server keeps its data, which tables are not utf8,
and which release a service's ``*-manage`` belongs to. Nothing here changes anything.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from services import mysql
from services.host import Host
from services.releases import MANAGE_COMMAND
from services.settings import DBEndpoint
from statemachine.step import StepError

#: what the tool's DB account needs: mysqldump --single-transaction --routines --triggers --events
#: on the source; on the target DROP/CREATE DATABASE, CREATE USER and GRANT for the service user
SOURCE_PRIVILEGES = ("SELECT", "SHOW VIEW", "TRIGGER", "EVENT")
TARGET_PRIVILEGES = ("CREATE", "DROP", "CREATE USER", "GRANT OPTION")

_GRANT = re.compile(r"^GRANT (?P<privs>.+?) ON (?P<scope>\S+) TO ", re.IGNORECASE)


def granted(grants: Iterable[str], dbs: Iterable[str]) -> set[str]:
    """Privileges from SHOW GRANTS lines that apply server-wide or to the given databases.

    ``ALL PRIVILEGES`` stands for every privilege but GRANT OPTION, which ``WITH GRANT OPTION``
    adds (MariaDB and MySQL alike).
    """
    scopes = {"*.*"} | {f"`{d}`.*" for d in dbs}
    out: set[str] = set()
    for line in grants:
        m = _GRANT.match(line)
        if not m or m["scope"] not in scopes:
            continue
        for p in (x.strip().upper() for x in m["privs"].split(",")):
            out.add("ALL" if p in ("ALL", "ALL PRIVILEGES") else p)
        if "WITH GRANT OPTION" in line.upper():
            out.add("GRANT OPTION")
    return out


def missing_privileges(ep: DBEndpoint, needed: tuple[str, ...], dbs: Iterable[str]) -> list[str]:
    """The privileges of *needed* the plan's admin account lacks (raises DBConnectError when it cannot log in)."""
    have = granted((r[0] for r in mysql.query(ep, "SHOW GRANTS")), dbs)
    return [p for p in needed if p not in have and not ("ALL" in have and p != "GRANT OPTION")]


def data_bytes(ep: DBEndpoint, dbs: Iterable[str]) -> int:
    """data_length + index_length of the databases: the estimate of their dump (and import) size."""
    names = list(dbs)
    if not names:
        return 0
    marks = ", ".join(["%s"] * len(names))
    rows = mysql.query(ep, "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
                           f"WHERE table_schema IN ({marks})", names)
    return int(rows[0][0] or 0)


def datadir(ep: DBEndpoint) -> str:
    return str(mysql.query(ep, "SELECT @@datadir")[0][0])


def non_utf8_tables(ep: DBEndpoint, db: str) -> list[str]:
    """``db.table (collation)`` for every table whose collation is not a utf8 one."""
    rows = mysql.query(ep, "SELECT table_name, table_collation FROM information_schema.tables WHERE "
                           "table_schema=%s AND table_type='BASE TABLE' AND table_collation NOT LIKE 'utf8%%' "
                           "ORDER BY table_name", (db,))
    return [f"{db}.{t} ({c})" for t, c in rows]


def is_loopback(address: str) -> bool:
    """Whether the tool reaches this DB server on its own machine."""
    if address in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def manage_version(host: Host, bin_dir: str, service: str) -> str:
    """``<bin>/<service>-manage --version`` on *host*: the installed version (raises StepError when absent)."""
    tool = MANAGE_COMMAND.get(service, f"{service}-manage")
    argv = [f"{bin_dir.rstrip('/')}/{tool}" if bin_dir else tool, "--version"]
    res = host.run(argv, timeout=120)
    text = (res.stdout or res.stderr).strip()
    if res.rc != 0 or not text:
        raise StepError(f"`{' '.join(argv)}` exited {res.rc} on {host.name}", host=host.name, output=res.output)
    return text.splitlines()[-1].strip()


def major(version: str) -> int | None:
    m = re.match(r"\s*(\d+)\.", version)
    return int(m.group(1)) if m else None
