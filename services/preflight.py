"""What `upgrade check` asks of the controllers and their databases, read-only.

The knowledge lives here, next to the steps that need it: which privileges a dump and an import
need, how big the dumps will be, where a DB server keeps its data, what the non-utf8 text holds,
and which release a service's ``*-manage`` belongs to. Nothing here changes anything.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from services import registry
from services.infra import broker, charset, mysql
from services.infra.config import ConfigSyntaxError, sections
from services.infra.host import Host
from services.infra.settings import DBEndpoint
from services.releases import Jump
from services.steps.specs import db_specs
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


@dataclass
class CharsetFindings:
    """What `upgrade check` and the run's preflight learn of one database's text: its non-utf8 tables,
    what each of their text columns holds, why they cannot be converted, and double-encoded text."""

    db: str
    #: the charset the run converts the non-utf8 tables to ("": they are carried over as they are)
    target: str
    tables: dict[str, str]
    scans: list[charset.ColumnScan]
    refusals: list[str]
    doubles: list[charset.DoubleScan] = field(default_factory=list)


def charset_findings(ep: DBEndpoint, name: str, jump: Jump, settings: Any,
                     doubles: bool = True) -> list[CharsetFindings]:
    """Per source database of *name*: every non-utf8 text column classified (UTF-8 bytes, true latin1,
    ASCII only, mixed), the refusals for the jump's conversion, and (``doubles``) the columns holding
    text an earlier conversion double-encoded. Read-only."""
    target = registry.spec(name).charset_for(jump.target)
    out = []
    for db in registry.databases(name, jump, settings):
        if not mysql.db_exists(ep, db):
            continue  # database_errors names it
        tables = charset.non_utf8_tables(ep, db)
        # the values are read only where they matter: a conversion, or the full report of `upgrade check`
        scans = charset.scan_db(ep, db) if tables and (target or doubles) else []
        found = CharsetFindings(db, target, tables, scans, charset.refusals(db, scans, target) if target else [])
        if doubles:
            found.doubles = charset.scan_double(ep, db, {s.name: s.kind for s in scans})
        out.append(found)
    return out


def repair_errors(name: str, jump: Jump, settings: Any) -> list[str]:
    """The plan's ``repair_double_encoded`` entries that name no database of the service."""
    try:
        charset.parse_targets(settings.options.get("repair_double_encoded") or [],
                              registry.databases(name, jump, settings))
    except ValueError as exc:
        return [f"services.{name}.{exc}"]
    return []


def is_loopback(address: str) -> bool:
    """Whether the tool reaches this DB server on its own machine."""
    if address in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def manage_version(host: Host, bin_dir: str, service: str, release: str) -> str:
    """``<bin>/<service>-manage --version`` (or the spec's version command for *release*) on *host*: the
    installed version (raises StepError when absent)."""
    tool = registry.spec(service).version_command_for(release)
    argv = [f"{bin_dir.rstrip('/')}/{tool}" if bin_dir else tool, "--version"]
    res = host.run(argv, timeout=120)
    text = (res.stdout or res.stderr).strip()
    if res.rc != 0 or not text:
        raise StepError(f"`{' '.join(argv)}` exited {res.rc} on {host.name}", host=host.name, output=res.output)
    return text.splitlines()[-1].strip()


def major(version: str) -> int | None:
    """The major of ``28.0.2`` or ``neutron-rpc-server 28.0.2`` (oslo.config prints the program's name
    before the version for some scripts)."""
    m = re.search(r"(?:^|\s)(\d+)\.\d", version)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------- what the jump carries over and creates
def database_errors(ep: DBEndpoint, name: str, jump: Jump, settings: Any, plan: str) -> list[str]:
    """Why the source's databases do not fit the release table for *jump*, one message per database.

    Every database of the source release must be there to be carried over; a database the target
    release adds (nova_api from mitaka, nova_cell0 from ocata) must not: the upgrade creates it on
    the target and gives it its schema, so one on the source means the source is not what the
    table says its release is (an earlier partial setup) and carrying on would leave it behind.
    """
    where = f"the source DB server {ep.address}:{ep.port}"
    out = []
    carried = () if name in registry.NO_DATABASE else db_specs(registry.spec(name), jump)
    for spec in carried:
        db = spec.db_name(settings)
        if not mysql.db_exists(ep, db):
            key = "db_name" if spec.label == "main" else f"{spec.label}_db_name"
            out.append(f"{where} has no database {db!r} for {name} — fix services.{name}.{key} in {plan}")
    for db in registry.new_databases(name, jump, settings):
        if mysql.db_exists(ep, db):
            out.append(f"{where} holds database {db!r}, which {name} of {jump.source} does not have: it comes with "
                       f"{jump.target}, whose upgrade creates it on the target — if it is an unused leftover, drop "
                       f"it on the source (DROP DATABASE {mysql.quote_ident(db)}) and run again; if {jump.source} "
                       "uses it already, this tool cannot carry it over")
    return out


def config_errors(read: Callable[[str], bytes | None], etc: str, name: str, jump: Jump) -> list[str]:
    """Config files of the service that oslo.config would not read (the carry-over reads and edits them
    the same way), and config sections the target release needs that the source release did without
    (nova's ``[placement]`` from ocata): *read(path)* gives a source config file, or None when it is absent."""
    out = []
    svc = registry.spec(name)
    files = sorted({c.file for d in db_specs(svc, jump) for c in d.conns}) if svc.has_database else []
    for file in files:
        path = f"{etc.rstrip('/')}/{name}/{file}"
        data = read(path)
        try:
            sections(data or b"")
        except ConfigSyntaxError as exc:
            out.append(f"{path} on the source: {exc}")
    for file, section, why in registry.spec(name).sections_needed(jump.source, jump.target):
        path = f"{etc.rstrip('/')}/{name}/{file}"
        data = read(path)
        try:
            have = sections(data) if data is not None else set()
        except ConfigSyntaxError as exc:
            out.append(f"{path} on the source: {exc}")
            continue
        if section not in have:
            out.append(f"{path} on the source has no [{section}] section: {why}")
    return out


# ---------------------------------------------------------------------- installed versions the steps cannot trust
#: target versions a service's steps cannot rely on, by the release that ships them: {(service, release):
#: {version: why and the fix}}. Keystone 27.0.0's ``db_sync --check`` compares the database with itself
#: (fixed by "Fix DB migrations after alembic integration": 27.0.1, 28.0.0; facts §2.1), so the schema
#: step could not tell a finished upgrade from one not done.
REFUSED_VERSIONS: dict[tuple[str, str], dict[str, str]] = {
    ("keystone", "2025.1"): {"27.0.0": "its `keystone-manage db_sync --check` is unreliable (it compares the "
                                       "database with itself; fixed in 27.0.1) — install keystone 27.0.1 or later "
                                       "of stable/2025.1 on the target controller"},
}


def version_refusal(service: str, release: str, version: str) -> str | None:
    """Why the installed *version* of *service* (of *release*) cannot be the target, or None."""
    return REFUSED_VERSIONS.get((service, release), {}).get(version.strip())


def refused_versions(host: Host, bin_dir: str, services: Iterable[str], release: str) -> list[str]:
    """One message per service whose installed target version is refused; asks only where the release
    ships such a version (one ``*-manage --version`` each), so other runs pay nothing."""
    out = []
    for name in services:
        if (name, release) not in REFUSED_VERSIONS:
            continue
        version = manage_version(host, bin_dir, name, release)
        if (why := version_refusal(name, release, version)) is not None:
            out.append(f"{name} {version} on the target {host.name}: {why}")
    return out


# ---------------------------------------------------------------------- the message queue
def source_logins(host: Host, etc: str, names: Iterable[str]) -> list[broker.Login]:
    """Every transport_url login in the ``*.conf`` files of ``/etc/<name>`` of the services *names* on the
    source (what the config carry-over takes to the new controller). Read-only."""
    paths: list[str] = []
    for name in names:
        d = f"{etc.rstrip('/')}/{name}"
        res = host.run(["find", d, "-maxdepth", "1", "-type", "f", "-name", "*.conf"], timeout=60)
        if res.rc == 0:
            paths += sorted(res.stdout.split())
    return broker.config_logins(lambda p: host.read_bytes(p) if host.exists(p) else None, paths)
