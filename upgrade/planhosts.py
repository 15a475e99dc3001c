"""The plan's host-related parts: SSH host specs, ``[network]`` (IP switchover) and ``[[computes]]``.

Kept apart from ``upgrade/plan.py`` so that the plan loader stays small; both read through the typed
table readers of ``upgrade/planreader.py``, so every error still names the file, the key and what is
expected, and neither module imports the other's internals.

    [ssh]                                   # defaults for every ssh:// host below
    config = "/etc/openstack-upgrade/ssh_config"
    options = ["-o", "Ciphers=aes128-gcm@openssh.com"]

    [source]
    host = "ssh://root@10.0.0.11"           # the old controller's own admin address
    name = "oldctl"                         # logical name: HostKeyAlias and messages
    # ssh_config = "..." / ssh_options = [...]   override [ssh]

    [network]
    addresses = [{address = "10.0.0.10/24", device = "eth0", name = "management"}]
    check_from = "compute1"                 # a compute's name, "local", or ssh://...
    nonlocal_bind = true                    # sysctl net.ipv4.ip_nonlocal_bind=1 on the new controller

    [compute_defaults]                      # keys every [[computes]] entry inherits
    service_control = "systemd"
    units = ["openstack-nova-compute", "neutron-openvswitch-agent"]

    [[computes]]
    name = "compute1"
    host = "ssh://root@10.0.0.21"
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from services.fleet.compute import ComputeSettings
from services.fleet.network import AddressMove, NetworkSettings
from services.infra.settings import ServiceControl
from upgrade import planvalues
from upgrade.hosts import HostSpec, HostSpecError
from upgrade.planreader import CONTROL_KINDS, Reader

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
HOST_KEYS = {"host", "name", "ssh_config", "ssh_options"}


@dataclass(frozen=True)
class SshDefaults:
    config: str | None = None
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkPlan:
    settings: NetworkSettings
    check_from: HostSpec


@dataclass(frozen=True)
class ComputePlan:
    settings: ComputeSettings
    host: HostSpec


def _options(r: Reader, key: str) -> tuple[str, ...] | None:
    v = r.get(key, list, None, expected='a list of ssh arguments like ["-o", "Ciphers=aes128-gcm@openssh.com"]')
    if v is not None and not all(isinstance(a, str) and a for a in v):
        raise r.err(key, "must be a list of non-empty strings (ssh arguments)")
    return tuple(v) if v is not None else None


def ssh_defaults(r: Reader) -> SshDefaults:
    s = r.sub("ssh", required=False)
    s.unknown({"config", "options"})
    return SshDefaults(config=s.get("config", str, None), options=_options(s, "options") or ())


def spec(r: Reader, url: str, defaults: SshDefaults, key: str = "host", alias: str = "") -> HostSpec:
    """A HostSpec from *url* plus the table's ``name``/``ssh_config``/``ssh_options`` over ``[ssh]``."""
    try:
        if url != "local":
            HostSpec(url).target()
    except HostSpecError as exc:
        raise r.err(key, f"is {url!r}; expected \"local\" or \"ssh://[user@]address[:port]\" ({exc})") from None
    config = r.get("ssh_config", str, None) if key == "host" else None
    options = _options(r, "ssh_options") if key == "host" else None
    return HostSpec(url=url, alias=alias, ssh_config=config if config is not None else defaults.config,
                    ssh_options=options if options is not None else defaults.options)


def side_host(r: Reader, defaults: SshDefaults) -> HostSpec:
    """``host``/``name``/``ssh_config``/``ssh_options`` of a ``[source]`` or ``[target]`` table."""
    name = r.get("name", str, "")
    if name and not NAME.match(name):
        raise r.err("name", f"is {name!r}; expected a host name like \"oldctl\" (letters, digits, . _ -)")
    return spec(r, r.get("host", str, "local"), defaults, alias=name)


def control(r: Reader, base: dict[str, Any] | None = None) -> ServiceControl:
    """``service_control`` and its ``control`` template, falling back to *base* (``[compute_defaults]``)."""
    base = base or {}
    kind = r.get("service_control", str, base.get("service_control", "systemd"))
    if kind not in CONTROL_KINDS:
        raise r.err("service_control", f"is {kind!r}; expected one of {', '.join(CONTROL_KINDS)}")
    if kind != "template":
        return ServiceControl(kind)
    t = r.get("control", list, base.get("control", ...), expected='a list like ["svcctl", "{action}", "{unit}"]')
    if not t or not all(isinstance(a, str) for a in t) or not any("{action}" in a for a in t):
        raise r.err("control", "must be a non-empty list of strings containing \"{action}\"")
    return ServiceControl(kind, tuple(t))


def computes(r: Reader, defaults: SshDefaults, timeout: int = 300) -> tuple[ComputePlan, ...]:
    raw = r.table.get("computes", [])
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        raise r.err("computes", "must be an array of tables: [[computes]] name = ... host = ...")
    base_r = r.sub("compute_defaults", required=False)
    base_r.unknown({"service_control", "control", "units", "ssh_config", "ssh_options", *UPGRADE_KEYS[:2]})
    out: list[ComputePlan] = []
    seen: set[str] = set()
    for i, table in enumerate(raw):
        c = Reader(r.path, {**{k: v for k, v in base_r.table.items()}, **table}, f"computes[{i}]")
        c.unknown({"name", "host", "units", "service_control", "control", "ssh_config", "ssh_options",
                   *UPGRADE_KEYS})
        name = c.get("name", str, expected='the compute host\'s name, e.g. "compute1"')
        if not NAME.match(name) or name in seen:
            raise c.err("name", f"is {name!r}; expected a unique host name (letters, digits, . _ -)")
        seen.add(name)
        units = c.get("units", list, expected='the units to restart, e.g. ["nova-compute"]')
        if not units or not all(isinstance(u, str) and u for u in units):
            raise c.err("units", "must be a non-empty list of unit names, nova-compute first")
        for u in units:
            if (why := planvalues.unit(u)) is not None:
                raise c.err("units", f"holds {u!r}; expected {why}")
        host = c.get("host", str, expected='"ssh://root@ADDRESS" or "local"')
        up, down = _command(c, "upgrade_command"), _command(c, "downgrade_command")
        if bool(up) != bool(down):
            raise c.err("downgrade_command" if up else "upgrade_command",
                        "is missing: the rolling upgrade needs both upgrade_command and downgrade_command (the "
                        "revert puts the host back on the old release with it)")
        nova_host = c.get("nova_host", str, "")
        if nova_host and not NAME.match(nova_host):
            raise c.err("nova_host", f"is {nova_host!r}; expected its [DEFAULT] host in nova.conf")
        out.append(ComputePlan(ComputeSettings(name=name, units=tuple(units), control=control(c),
                                               upgrade_command=up, downgrade_command=down, nova_host=nova_host,
                                               version_timeout=float(timeout)),
                               spec(c, host, defaults, alias=name)))
    return tuple(out)


#: the rolling upgrade's keys of a [[computes]] entry (or [compute_defaults])
UPGRADE_KEYS = ("upgrade_command", "downgrade_command", "nova_host")


def _command(c: Reader, key: str) -> tuple[str, ...]:
    """``upgrade_command``/``downgrade_command``: an argv (``{from}``/``{to}`` name the releases)."""
    v = c.get(key, list, [], expected='a command as a list, e.g. ["apt-get", "install", "-y", "nova-compute"]')
    if not all(isinstance(a, str) and a for a in v):
        raise c.err(key, "must be a list of non-empty strings (the command and its arguments)")
    for a in v:
        try:
            a.format(**{"from": "", "to": ""})
        except (KeyError, IndexError, ValueError):
            raise c.err(key, f"holds {a!r}; only {{from}} and {{to}} may be filled in") from None
    return tuple(v)


def compute_timeout(r: Reader) -> int:
    """``[upgrade] compute_timeout``: seconds a compute host may take to report the new service version."""
    n = r.get("compute_timeout", int, 300)
    if not 1 <= n <= 86400:
        raise r.err("compute_timeout", f"is {n}; expected 1-86400 seconds")
    return n


def unpin(r: Reader) -> str:
    """``[upgrade] unpin``: "now" (nova-unpin in the run, after the computes) or "later" (the run ends
    pinned; `upgrade unpin PLAN` unpins once every compute reports the target's service version)."""
    v = r.get("unpin", str, "now")
    if v not in ("now", "later"):
        raise r.err("unpin", f"is {v!r}; expected \"now\" or \"later\"")
    return v


def pool(r: Reader, key: str = "compute_pool", default: int = 10, most: int = 256,
         what: str = "parallel compute hosts", least: int = 1) -> int:
    """A pool size of ``[upgrade]``: ``compute_pool`` (compute hosts restarted at the same time),
    ``service_pool`` (services upgraded side by side) or ``dump_streams`` (streams per database)."""
    n = r.get(key, int, default)
    if not least <= n <= most:
        raise r.err(key, f"is {n}; expected {least}-{most} {what}")
    return n


def network(r: Reader, defaults: SshDefaults, comp: tuple[ComputePlan, ...],
            sides: tuple[tuple[str, HostSpec], ...]) -> NetworkPlan | None:
    """``[network]``: the addresses to move from the old controller to the new one, as the last machine."""
    if "network" not in r.table:
        return None
    n = r.sub("network")
    n.unknown({"addresses", "check_from", "nonlocal_bind", "check_timeout"})
    raw = n.get("addresses", list, expected='a list like [{address = "10.0.0.10/24", device = "eth0", '
                                            'name = "management"}]')
    moves: list[AddressMove] = []
    for i, a in enumerate(raw):
        if not isinstance(a, dict) or set(a) - {"address", "device", "name"} or not {"address", "device"} <= set(a):
            raise n.err(f"addresses[{i}]", "must be a table {address = \"A.B.C.D/PREFIX\", device = \"eth0\", "
                                           "name = \"management\"}")
        try:
            iface = ipaddress.ip_interface(str(a["address"]))
        except ValueError:
            raise n.err(f"addresses[{i}].address", f"is {a['address']!r}; expected ADDRESS/PREFIX like "
                                                   "\"10.0.0.10/24\"") from None
        if "/" not in str(a["address"]):
            raise n.err(f"addresses[{i}].address", f"is {a['address']!r}; give the prefix length too (/24)")
        name = str(a.get("name", f"address{i + 1}"))
        if not re.match(r"^[a-z0-9_]+$", name):
            raise n.err(f"addresses[{i}].name", f"is {name!r}; expected lowercase letters, digits and _ "
                                                "(it names the journal steps)")
        if not isinstance(a["device"], str) or (why := planvalues.device(a["device"])) is not None:
            raise n.err(f"addresses[{i}].device", f"is {a['device']!r}; expected {why or 'an interface name'}")
        moves.append(AddressMove(name=name, address=str(iface), device=a["device"]))
    if not moves:
        raise n.err("addresses", "is empty; name at least one address to move, or leave out [network]")
    if len({m.name for m in moves}) != len(moves) or len({m.ip for m in moves}) != len(moves):
        raise n.err("addresses", "names an address or a name twice")
    for role, hs in sides:
        if hs.is_local:
            continue
        _user, address, _port = hs.target()
        if address in {m.ip for m in moves}:
            raise n.err("addresses", f"includes {address}, which `{role}.host` uses to reach the {role} "
                                     "controller: deleting it would cut the tool's own SSH session — reach "
                                     f"the controller through its own admin address in `{role}.host`")
    check = n.get("check_from", str, "local")
    by_name = {c.settings.name: c.host for c in comp}
    check_spec = by_name.get(check) or spec(n, check, defaults, key="check_from")
    timeout = n.get("check_timeout", int, 30)
    return NetworkPlan(NetworkSettings(addresses=tuple(moves), nonlocal_bind=n.get("nonlocal_bind", bool, False),
                                       check_timeout=float(timeout)), check_spec)
