"""An HA control plane in the plan: a side's group of controllers with roles, and its VIP's owner.

Production clouds run three controllers (MariaDB Galera, RabbitMQ clustered, HAProxy in front of the
APIs) behind a virtual IP that keepalived or pacemaker holds. A side names them so:

    [source]
    host = "ssh://root@10.0.0.31"        # the member the run works through (dumped from / imported into)
    name = "oldctl1"
    members = [{name = "oldctl1", host = "ssh://root@10.0.0.31", roles = ["db", "mq", "api"]},
               {name = "oldctl2", host = "ssh://root@10.0.0.32", roles = ["db", "mq", "api"]},
               {name = "oldctl3", host = "ssh://root@10.0.0.33", roles = ["db", "mq", "api"]}]
    vip = {address = "10.0.0.10/24", device = "eth0", owner = "keepalived"}

(``[[source.members]]`` tables are the same.) Both sides are groups or neither; the VIP is the same
address on both (it moves with its owner, not by ``[network]``). The VIP table may also name the
``units`` that serve it on each controller, in start order (default: the owner's own, ``keepalived``;
HAProxy in front of the APIs too: ``["haproxy", "keepalived"]``), the ``control`` template that starts and
stops them (default: the side's own service control) and ``check_from``, the host that must see the VIP
answer from exactly one controller's MAC after it moved (default: the tool's own host).

`upgrade run` drives such a plan through the services' own steps on the members the sides name in
``host`` (``services/fleet/hagroup.py`` adds the other members and the VIP move); a VIP held by
pacemaker is refused by `upgrade run` before anything happens (its resource move is not implemented).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from services.infra.settings import ServiceControl
from upgrade import planhosts, planvalues
from upgrade.hosts import HostSpec
from upgrade.planreader import PlanError, Reader

ROLES = ("db", "mq", "api")
OWNERS = ("keepalived", "pacemaker")
MEMBER_KEYS = {"name", "host", "roles", "ssh_config", "ssh_options"}
VIP_KEYS = {"address", "device", "owner", "resource", "units", "service_control", "control", "check_from"}
MAX_MEMBERS = 9


@dataclass(frozen=True)
class Member:
    name: str
    host: HostSpec
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Vip:
    #: ``10.0.0.10/24``
    address: str
    device: str
    #: ``keepalived`` or ``pacemaker``
    owner: str
    #: the pacemaker resource that holds the address (empty for keepalived)
    resource: str = ""
    #: the units that hold and serve the VIP on each controller, in start order (stopped in reverse)
    units: tuple[str, ...] = ("keepalived",)
    #: how they are started and stopped (None: the side's own service control)
    control: ServiceControl | None = None
    #: the host that checks who answers for the VIP (None: the tool's own host)
    check_from: HostSpec | None = None


@dataclass(frozen=True)
class Group:
    members: tuple[Member, ...]
    vip: Vip

    def with_role(self, role: str) -> tuple[Member, ...]:
        return tuple(m for m in self.members if role in m.roles)


def group(s: Reader, defaults: planhosts.SshDefaults, host: HostSpec) -> Group | None:
    """The side's ``members`` and ``vip`` (both or neither); *host* (the side's own ``host``) must be a member."""
    has_members, has_vip = "members" in s.table, "vip" in s.table
    if not has_members and not has_vip:
        return None
    if not has_members:
        raise s.err("members", "is missing: a `vip` belongs to a group of controllers; list them in `members`")
    if not has_vip:
        raise s.err("vip", "is missing: a group of controllers is reached through its VIP; give "
                           "{address = \"10.0.0.10/24\", device = \"eth0\", owner = \"keepalived\"}")
    raw = s.table["members"]
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw) or not 2 <= len(raw) <= MAX_MEMBERS:
        raise s.err("members", f"must list 2 to {MAX_MEMBERS} controllers as tables "
                               "{name = ..., host = \"ssh://root@ADDRESS\", roles = [\"db\", \"mq\", \"api\"]}")
    members: list[Member] = []
    for i, table in enumerate(raw):
        m = Reader(s.path, table, f"{s.prefix}.members[{i}]")
        m.unknown(MEMBER_KEYS)
        name = m.get("name", str, expected='the controller\'s name, e.g. "oldctl1"')
        if not planhosts.NAME.match(name) or name in {x.name for x in members}:
            raise m.err("name", f"is {name!r}; expected a unique host name (letters, digits, . _ -)")
        roles = m.get("roles", list, expected=f"a non-empty list from {', '.join(ROLES)}")
        if not roles or any(r not in ROLES for r in roles) or len(set(roles)) != len(roles):
            raise m.err("roles", f"is {roles!r}; expected a non-empty list of distinct roles from {', '.join(ROLES)}")
        url = m.get("host", str, expected='"ssh://root@ADDRESS"')
        spec = planhosts.spec(m, url, defaults, alias=name)
        if url in {x.host.url for x in members}:
            raise m.err("host", f"is {url!r}, which another member names too; each controller once")
        members.append(Member(name, spec, tuple(roles)))
    for role in ("db", "api"):
        if not any(role in m.roles for m in members):
            raise s.err("members", f"has no member with role {role!r}; name the controllers that hold it")
    if host.url not in {m.host.url for m in members}:
        raise s.err("host", f"is {host.url!r}, which is none of `members`; name the member the run works through")
    return Group(tuple(members), _vip(s.sub("vip"), defaults))


def _vip(v: Reader, defaults: planhosts.SshDefaults) -> Vip:
    v.unknown(VIP_KEYS)
    address = v.get("address", str, expected='the VIP with its prefix length, e.g. "10.0.0.10/24"')
    try:
        iface = ipaddress.ip_interface(address)
    except ValueError:
        raise v.err("address", f"is {address!r}; expected an address with its prefix length, "
                               "e.g. \"10.0.0.10/24\"") from None
    if "/" not in address:
        raise v.err("address", f"is {address!r}; expected it with its prefix length, e.g. \"{address}/24\"")
    device = v.get("device", str, expected='the interface that carries it, e.g. "eth0"')
    if not device or not planhosts.NAME.match(device) or len(device) > 15:
        raise v.err("device", f"is {device!r}; expected an interface name like \"eth0\"")
    owner = v.get("owner", str, expected=f"one of {', '.join(OWNERS)}")
    if owner not in OWNERS:
        raise v.err("owner", f"is {owner!r}; expected one of {', '.join(OWNERS)}")
    resource = v.get("resource", str, "")
    if owner == "pacemaker" and not (resource and planhosts.NAME.match(resource)):
        raise v.err("resource", f"is {resource!r}; with owner = \"pacemaker\" name the resource that holds "
                                "the address, e.g. \"vip-management\"")
    if owner == "keepalived" and resource:
        raise v.err("resource", "is for owner = \"pacemaker\"; keepalived has no resource — remove it")
    units = v.get("units", list, [owner] if owner == "keepalived" else [],
                  expected='the units that serve the VIP in start order, e.g. ["haproxy", "keepalived"]')
    if not all(isinstance(u, str) and planvalues.unit(u) is None for u in units) or len(set(units)) != len(units):
        raise v.err("units", f"is {units!r}; expected distinct unit names, e.g. [\"haproxy\", \"keepalived\"]")
    control = planhosts.control(v) if "service_control" in v.table or "control" in v.table else None
    check_from = planhosts.spec(v, v.get("check_from", str), defaults, key="check_from",
                                                alias="vip-check") \
        if "check_from" in v.table else None
    return Vip(str(iface), device, owner, resource, tuple(units), control, check_from)


def check_pair(path: object, source: Group | None, target: Group | None, network_addresses: list[str]) -> None:
    """Both sides groups or neither, one VIP for both, and the VIP not also moved by ``[network]``."""
    if source is None and target is None:
        return
    if source is None or target is None:
        have, lack = ("source", "target") if source else ("target", "source")
        raise PlanError(f"{path}: `{have}` names a group of controllers (`members`, `vip`) and `{lack}` does not — "
                        f"an HA control plane is replaced by another: give `{lack}.members` and `{lack}.vip` too")
    if source.vip.address != target.vip.address:
        raise PlanError(f"{path}: `source.vip.address` is {source.vip.address} and `target.vip.address` "
                        f"{target.vip.address} — the clients know one VIP, which moves to the new group: "
                        "give both the same")
    ip = source.vip.address.split("/")[0]
    if any(a.split("/")[0] == ip for a in network_addresses):
        raise PlanError(f"{path}: [network] addresses moves {ip}, the groups' VIP — its owner moves it "
                        f"({source.vip.owner}): leave it out of [network] addresses")


def refuse_run(path: object, source: Group | None) -> None:
    """`upgrade run` of an HA plan whose VIP pacemaker holds: refused before anything (journal, claim,
    connection) is made — the tool moves a keepalived VIP only."""
    if source is not None and source.vip.owner != "keepalived":
        raise PlanError(f"{path}: names an HA control plane whose VIP {source.vip.owner} holds (resource "
                        f"{source.vip.resource!r}); this version moves a VIP held by keepalived only (it checks such "
                        "a plan: `upgrade check`, `upgrade plan`) — hand the VIP to keepalived (`vip.owner = "
                        "\"keepalived\"`), or move the resource by hand after a run of a plan without `vip`")
