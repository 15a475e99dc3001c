"""The plan file (TOML): what to upgrade, between which controllers, from which release to which.

Every validation error names the file, the key and what is expected. The plan's sha256 is
recorded in the run, so a plan edited under an unfinished run is refused (DESIGN.md §3 rule 3).
"""

from __future__ import annotations

import hashlib
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from journal.redact import MASK, is_secret_key
from services import options as service_options
from services.fleet.cloudcheck import CloudSettings
from services.infra.settings import DBEndpoint, ServiceControl, ServiceSettings
from services.registry import OPTIONS, ORDER, RETIRED_OPTIONS, SERVICES, unsupported
from services.releases import Jump, jump_error
from upgrade import plancloud, plangroup, planhosts, planvalues
from upgrade.hosts import HostSpec, hide_from_children
from upgrade.planreader import PlanError, Reader, did_you_mean

#: tables in tables: a plan needs four levels ([services.nova] volumes = [{...}]); far deeper is an error,
#: not a RecursionError in whatever reads the plan next (the redactor, the journal's JSON)
MAX_DEPTH = 16


@dataclass(frozen=True)
class SideSpec:
    role: str
    host: str
    etc: str
    lib: str
    bin: str
    db: DBEndpoint
    control: ServiceControl
    log: str = "/var/log"
    #: ``host`` with its logical name and SSH settings (upgrade/planhosts.py)
    host_spec: HostSpec | None = None
    #: an HA control plane: the side's controllers with their roles and its VIP (upgrade/plangroup.py)
    group: plangroup.Group | None = None


@dataclass(frozen=True)
class Plan:
    path: Path
    sha256: str
    from_release: str
    to_release: str
    services: tuple[str, ...]
    journal_dir: Path
    key_file: Path | None
    passphrase_env: str | None
    artifact_dir: Path | None
    source: SideSpec
    target: SideSpec
    service_settings: dict[str, ServiceSettings]
    raw: dict[str, Any]
    #: the IP switchover (``[network]``) and the compute hosts (``[[computes]]``), see upgrade/planhosts.py
    network: planhosts.NetworkPlan | None = None
    computes: tuple[planhosts.ComputePlan, ...] = ()
    compute_pool: int = 10
    #: ``[upgrade] unpin = "later"``: nova-unpin is left out of the run (the run ends pinned) until
    #: `upgrade unpin PLAN`
    unpin_later: bool = False
    #: services upgraded side by side (1: the runbook's strict sequence), see ServiceSpec.after
    service_pool: int = 2
    #: streams each database is dumped and imported in, by table (0: from the cores of both controllers)
    dump_streams: int = 0
    #: services the source runs that the plan leaves alone on purpose, with the reason (``[upgrade] ignore``)
    ignore: dict[str, str] = field(default_factory=dict)
    #: ``[amqp] broker``: the new controller's RabbitMQ (``host`` or ``host:port``), where every carried-over
    #: transport_url is tried before anything stops (upgrade/amqpcheck.py); None: not tried
    amqp_broker: str | None = None
    #: ``[cloud]``: the run's last step waits until the cloud reports to the new controller (upgrade/plancloud.py);
    #: None: not waited for
    cloud: CloudSettings | None = None

    @property
    def secrets(self) -> list[str]:
        out = [self.source.db.admin_password, self.target.db.admin_password]
        out += [s.db_password for s in self.service_settings.values() if s.db_password]
        out += [self.cloud.auth.password] if self.cloud and self.cloud.auth else []
        return [s for s in out if s]


def _side(r: Reader, role: str) -> SideSpec:
    s = r.sub(role)
    s.unknown({"host", "etc", "lib", "log", "bin", "service_control", "control", "db", "members", "vip"}
              | planhosts.HOST_KEYS)
    d = s.sub("db")
    d.unknown({"address", "port", "admin_user", "admin_password", "admin_password_env", "service_address",
               "flavor"})
    flavor = d.get("flavor", str, "mariadb")
    if flavor not in ("mariadb", "mysql"):
        raise d.err("flavor", f"is {flavor!r}; expected \"mariadb\" or \"mysql\"")
    port = d.get("port", int, 3306)
    if not 0 < port < 65536:
        raise d.err("port", f"is {port}; expected a TCP port 1-65535")
    db = DBEndpoint(address=d.checked("address", ..., planvalues.host,
                                      expected="the DB server address, e.g. \"127.0.0.1\""),
                    port=port, admin_user=d.checked("admin_user", "root", planvalues.db_user),
                    admin_password=d.secret("admin_password"),
                    service_address=d.checked("service_address", "", planvalues.host), flavor=flavor)
    host = s.get("host", str, "local")
    host_spec = planhosts.side_host(s, planhosts.ssh_defaults(r))
    return SideSpec(role=role, host=host, etc=s.abspath("etc", "/etc"), lib=s.abspath("lib", "/var/lib"),
                    bin=s.abspath("bin", ""), db=db, control=planhosts.control(s),
                    log=s.abspath("log", "/var/log"), host_spec=host_spec,
                    group=plangroup.group(s, planhosts.ssh_defaults(r), host_spec))


def _service(r: Reader, name: str) -> ServiceSettings:
    s = r.sub("services", required=False).sub(name, required=False)
    s.unknown({"unit", "db_name", "owner", "verify_url", "grant_hosts", "db_user", "db_password", "db_password_env"}
              | service_options.names(OPTIONS[name]), RETIRED_OPTIONS[name])
    hosts = s.get("grant_hosts", list, ["%", "localhost"])
    if not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise s.err("grant_hosts", "must be a non-empty list of MySQL host patterns, e.g. [\"%\", \"localhost\"]")
    for h in hosts:
        if (why := planvalues.grant_host(h)) is not None:
            raise s.err("grant_hosts", f"holds {h!r}; expected {why}")
    owner = s.checked("owner", f"{name}:{name}", planvalues.owner)
    options = service_options.read(OPTIONS[name], s.get)
    _names_in_options(s, options)
    return ServiceSettings(name=name, unit=s.checked("unit", f"openstack-{name}", planvalues.unit),
                           db_name=s.checked("db_name", name, planvalues.db_name), owner=owner,
                           verify_url=s.get("verify_url", str, ""), grant_hosts=tuple(hosts),
                           db_user=s.checked("db_user", "", planvalues.db_user), db_password=s.secret("db_password"),
                           options=options)


#: service options that name a path below a controller's directory (services/options.py)
_RELATIVE_PATHS = ("images_dir", "plugin_config", "local_settings")
#: service options that name a directory of block devices (they reach ``dd`` and ``lvcreate``)
_DEVICE_DIRS = ("volume_dir", "target_volume_dir")


def _names_in_options(s: Reader, options: dict[str, Any]) -> None:
    """The service options that reach a command or a statement: database names (``*_db_name``),
    unit names (``units``) and relative paths."""
    for key, v in options.items():
        if key.endswith("_db_name") and v:
            s.checked(key, "", planvalues.db_name)
        elif key in _RELATIVE_PATHS and v:
            s.checked(key, "", planvalues.relative_path)
        elif key in _DEVICE_DIRS and v:
            s.checked(key, "", planvalues.device_path)
        elif key == "units" and v is not None:
            for u in v:
                if not isinstance(u, str) or (why := planvalues.unit(u)) is not None:
                    raise s.err("units", f"holds {u!r}; expected {why or 'a unit name'}")


def load(path: str | Path) -> Plan:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise PlanError(f"plan file {p} does not exist — write one with "
                        f"`upgrade init > {shlex.quote(str(p))}`") from None
    except OSError as exc:
        raise PlanError(f"cannot read plan file {p}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"{p}: not valid TOML: {exc}{_toml_line(data, str(exc))} — fix that line") from None
    except RecursionError:
        raise PlanError(f"{p}: arrays or tables nested far too deeply (the parser gave up) — a plan nests at "
                        f"most {MAX_DEPTH} levels; fix the file") from None
    hide_from_children(_values(p, raw))
    r = Reader(p, raw, "")
    r.unknown({"upgrade", "vault", "source", "target", "services", "ssh", "network", "computes", "compute_defaults",
               "amqp", "cloud"})
    u = r.sub("upgrade")
    u.unknown({"from", "to", "services", "journal", "compute_pool", "service_pool", "dump_streams", "ignore",
               "compute_timeout", "unpin"})
    src_rel = u.get("from", str, expected='a release like "2025.2"')
    dst_rel = u.get("to", str, expected='a release like "2026.1"')
    if (msg := jump_error(src_rel, dst_rel)) is not None:
        raise u.err("to", msg)
    services = u.get("services", list, expected=f"a list of services from {', '.join(ORDER)}")
    if not services:
        raise u.err("services", "is empty; name at least one service")
    for s in services:
        if s not in SERVICES:
            known = ", ".join(SERVICES)
            hint = did_you_mean(s, tuple(SERVICES)) if isinstance(s, str) else ""
            raise u.err("services", f"names unknown service {s!r};{hint} this version upgrades: {known}")
    if len(set(services)) != len(services):
        twice = next(s for s in services if services.count(s) > 1)
        raise u.err("services", f"names {twice!r} twice; list each service once")
    ordered = tuple(sorted(services, key=ORDER.index))
    for s in ordered:
        if (why := unsupported(s, Jump(src_rel, dst_rel))) is not None:
            raise u.err("services", f"names {s!r}, but {why}")
    base = p.resolve().parent
    journal = base / u.get("journal", str, "upgrade-journal")
    v = r.sub("vault")
    v.unknown({"key_file", "passphrase_env", "dir"})
    artifact_dir = v.get("dir", str, None)
    key_file = v.get("key_file", str, None)
    pass_env = v.get("passphrase_env", str, None)
    if bool(key_file) == bool(pass_env):
        raise v.err("key_file", "or `vault.passphrase_env` must be given (exactly one); create a key with "
                                "`upgrade keygen dump.key`")
    source, target = _side(r, "source"), _side(r, "target")
    _distinct(p, source, target)
    ssh = planhosts.ssh_defaults(r)
    computes = planhosts.computes(r, ssh, planhosts.compute_timeout(u))
    network = planhosts.network(r, ssh, computes, (("source", source.host_spec), ("target", target.host_spec)))
    plangroup.check_pair(p, source.group, target.group,
                         [m.address for m in network.settings.addresses] if network else [])
    settings = {s: _service(r, s) for s in ordered}
    return Plan(
        path=p.resolve(), sha256=hashlib.sha256(data).hexdigest(), from_release=src_rel, to_release=dst_rel,
        services=ordered, journal_dir=journal, key_file=(base / key_file) if key_file else None,
        passphrase_env=pass_env, artifact_dir=(base / artifact_dir) if artifact_dir else None,
        source=source, target=target,
        service_settings=settings, raw=raw,
        network=network, computes=computes, compute_pool=planhosts.pool(u),
        service_pool=planhosts.pool(u, "service_pool", 2, 8, "services upgraded side by side"),
        dump_streams=planhosts.pool(u, "dump_streams", 0, 32, "streams per database (0: from the cores of both "
                                    "controllers)", least=0),
        ignore=_ignore(u, ordered), amqp_broker=_amqp(r),
        cloud=plancloud.cloud(r, settings, tuple(c.settings.host_in_nova for c in computes)),
        unpin_later=planhosts.unpin(u) == "later",
    )


def _amqp(r: Reader) -> str | None:
    """``[amqp] broker = "198.51.100.12"`` (or ``host:port``): the new controller's message queue."""
    if "amqp" not in r.table:
        return None
    a = r.sub("amqp")
    a.unknown({"broker"})
    value = a.get("broker", str, expected='the new controller\'s RabbitMQ as this machine reaches it, like '
                                          '"10.0.0.12" or "10.0.0.12:5672"')
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if not host or any(c.isspace() for c in value) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise a.err("broker", f"is {value!r}; expected HOST or HOST:PORT")
    return value


def _ignore(u: Reader, services: tuple[str, ...]) -> dict[str, str]:
    """``[upgrade] ignore = {swift = "reason"}``: services the source runs that this plan leaves alone,
    each with its reason; a service cannot be both upgraded and ignored."""
    table = u.get("ignore", dict, {}, expected='a table like {swift = "swift stays on its own nodes"}')
    for name, reason in table.items():
        if (why := planvalues.service_name(name)) is not None:
            raise u.err("ignore", f"names {name!r}; expected {why}")
        if not isinstance(reason, str) or (why := planvalues.ignore_reason(reason)) is not None:
            raise u.err(f"ignore.{name}", f"is {reason!r}; expected {why or 'a reason in words'}")
        if name in services:
            raise u.err(f"ignore.{name}", f"names {name!r}, which upgrade.services upgrades — remove it from one "
                                          "of the two")
    return dict(table)


def _values(p: Path, raw: dict[str, Any]) -> list[str]:
    """Walk the whole plan once (iteratively: depth is what is checked): refuse nesting deeper than
    MAX_DEPTH and control characters (a line break, a NUL) in any value but a secret, and return the
    environment variables it names for secrets (every ``*_env`` key), which no child may inherit."""
    env: list[str] = []
    todo: list[tuple[str, Any, int]] = [("", raw, 0)]
    while todo:
        where, v, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise PlanError(f"{p}: key `{where}` is nested more than {MAX_DEPTH} levels deep — a plan nests tables "
                            "and arrays a few levels at most; fix the file")
        if isinstance(v, dict):
            for k, sub in v.items():
                key = f"{where}.{k}" if where else str(k)
                if isinstance(sub, str) and str(k).endswith("_env"):
                    env.append(sub)
                if not (is_secret_key(str(k)) and isinstance(sub, str)):
                    todo.append((key, sub, depth + 1))
        elif isinstance(v, list):
            todo += [(f"{where}[{i}]", sub, depth + 1) for i, sub in enumerate(v)]
        elif isinstance(v, str) and planvalues.control(v):
            raise PlanError(f"{p}: key `{where}` is {v!r}, which holds a control character (a line break, tab or "
                            "NUL) — no plan value needs one; fix the value")
    return env


def _distinct(p: Path, source: SideSpec, target: SideSpec) -> None:
    """The old and the new controller must be two: an upgrade onto itself would drop the data it reads."""
    if source.host == target.host and source.etc.rstrip("/") == target.etc.rstrip("/"):
        raise PlanError(f"{p}: `source` and `target` name the same controller (host {source.host!r}, etc "
                        f"{source.etc!r}) — the target must be the new controller: fix `target.host` or `target.etc`")
    if (source.db.address, source.db.port) == (target.db.address, target.db.port):
        raise PlanError(f"{p}: `source.db` and `target.db` name the same DB server {source.db.address}:"
                        f"{source.db.port} — the import would drop the database it reads; fix `target.db.address` "
                        "or `target.db.port`")


def _toml_line(data: bytes, message: str) -> str:
    """The offending line of a TOML error, quoted, so the operator sees it without opening the file;
    a secret's value in it is masked (see :func:`_masked_lines`)."""
    m = re.search(r"at line (\d+), column (\d+)", message)
    if not m:
        return ""
    lines = _masked_lines(data.decode(errors="replace").splitlines())
    n, col = int(m.group(1)), int(m.group(2))
    # found at the start of a line, the cause is usually the end of the one before (an unclosed [ or ")
    shown = [k for k in ((n - 1, n) if col == 1 else (n,)) if 0 < k <= len(lines)]
    return "".join(f"\n  line {k}: {lines[k - 1]}" for k in shown)


#: ``key =`` of a TOML line, bare or quoted, also inside an inline table (``db = {admin_password = ...``)
_TOML_KEY = re.compile(r"""(?:^|[{,\s])(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_.-]+))\s*=""")


def _masked_lines(lines: list[str]) -> list[str]:
    """*lines* with everything after a secret-named key's ``=`` masked, whatever the value's type or
    shape, including the following lines of a value that goes on (a multi-line string or array): a
    broken file is not parsed, so its values are masked by where they stand, not by what they are."""
    out: list[str] = []
    closing: str | None = None  # the value of a secret goes on until this
    for line in lines:
        if closing is not None:
            out.append(MASK)
            if closing in line:
                closing = None
            continue
        hit = next((m for m in _TOML_KEY.finditer(line)
                    if is_secret_key((m.group(1) or m.group(2) or m.group(3)).rsplit(".", 1)[-1])), None)
        if hit is None:
            out.append(line)
            continue
        value = line[hit.end():].strip()
        out.append(f"{line[:hit.end()]} {MASK}")
        for opening, close in (('"""', '"""'), ("'''", "'''"), ("[", "]")):
            if value.startswith(opening) and close not in value[len(opening):]:
                closing = close
                break
    return out

