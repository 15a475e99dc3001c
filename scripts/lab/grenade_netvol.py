"""Grenade-style resources of neutron and cinder, made and checked as a cloud's user does: through the
``openstack`` command line (python-openstackclient of a release venv), as the non-admin user of its own project
that ``scripts.lab.grenade`` makes (a 0600 clouds.yaml: the password is never on a command line or
in an environment); ``scripts.lab.grenade`` runs these kinds beside its compute kind.

Each kind has ``create`` (before the upgrade: its resources, and the view :func:`verify` compares),
``verify`` (after the upgrade or the revert: the same ids in the same states, read again) and
``new_work`` (the upgraded cloud serves new requests: a resource made and deleted again).

- :class:`Network`: a network, a subnet, a router with the subnet as an interface, a port on the
  network, a security group with an SSH and an ICMP rule.
- :class:`Volume`: a volume and a snapshot of it (both ``available``).

No agent runs in the lab (``scripts.lab.neutronlab``): ports stay ``DOWN`` and unbound, and that is
part of the state compared; volumes live on cinder's fake driver (``scripts.lab.cinderlab``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from scripts.lab.proc import LabError

#: how long a volume or snapshot may take to reach a state (a bound on a condition, not a pause)
SETTLE = 180.0
#: documentation addresses (RFC 5737): the subnets' ranges, data only, never reached
CIDR, NEW_CIDR = "198.51.100.0/26", "198.51.100.64/26"


class Client(Protocol):
    """What the kinds ask of a client (``scripts.lab.grenade.Cloud`` as the project's user)."""

    def json(self, *args: str) -> Any:
        """``openstack ARGS -f json``: its answer."""

    def run(self, *args: str) -> None:
        """``openstack ARGS`` for a command that prints nothing (add, delete)."""


def wait(c: Client, what: str, ident: str, status: str) -> dict[str, Any]:
    """``openstack WHAT show ID`` until its status is *status* (an error state ends the wait)."""
    deadline = time.monotonic() + SETTLE
    while True:
        shown = c.json(what, "show", ident)
        if shown["status"] == status:
            return shown
        if "error" in shown["status"] or time.monotonic() > deadline:
            raise LabError(f"{what} {ident} is {shown['status']!r}, not {status!r}")
        time.sleep(1.0)


def wait_gone(c: Client, what: str, ident: str) -> None:
    deadline = time.monotonic() + SETTLE
    while ident in {x["ID"] for x in c.json(what, "list")}:
        if time.monotonic() > deadline:
            raise LabError(f"{what} {ident} was not deleted within {SETTLE:.0f} s")
        time.sleep(1.0)


class Network:
    """network + subnet + router (the subnet as its interface) + port + security group with rules."""

    name = "network"

    def create(self, c: Client) -> dict[str, Any]:
        net = c.json("network", "create", "gn-net")["id"]
        subnet = c.json("subnet", "create", "--network", net, "--subnet-range", CIDR, "gn-subnet")["id"]
        router = c.json("router", "create", "gn-router")["id"]
        c.run("router", "add", "subnet", router, subnet)
        port = c.json("port", "create", "--network", net, "gn-port")["id"]
        sg = c.json("security", "group", "create", "gn-sg")["id"]
        c.json("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", "--ingress", sg)
        c.json("security", "group", "rule", "create", "--protocol", "icmp", "--ingress", sg)
        ids = {"network": net, "subnet": subnet, "router": router, "port": port, "security_group": sg}
        return {"ids": ids, "view": self.view(c, ids)}

    def view(self, c: Client, ids: dict[str, str]) -> dict[str, Any]:
        """What must read the same after the upgrade and after the revert (lists, not tuples: a view kept
        as JSON compares equal)."""
        net, sub = c.json("network", "show", ids["network"]), c.json("subnet", "show", ids["subnet"])
        router, port = c.json("router", "show", ids["router"]), c.json("port", "show", ids["port"])
        sg = c.json("security", "group", "show", ids["security_group"])
        interfaces = c.json("port", "list", "--router", ids["router"], "--long")
        return {
            "network": {k: net[k] for k in ("id", "name", "status", "admin_state_up", "provider:network_type",
                                            "mtu", "created_at") if k in net} | {"subnets": sorted(net["subnets"])},
            "subnet": {k: sub[k] for k in ("id", "network_id", "cidr", "gateway_ip", "ip_version", "enable_dhcp",
                                           "allocation_pools")},
            "router": {k: router[k] for k in ("id", "name", "status", "admin_state_up")},
            "router_interfaces": sorted([p["ID"], ip["subnet_id"], ip["ip_address"]]
                                        for p in interfaces for ip in p["Fixed IP Addresses"]),
            "port": {k: port[k] for k in ("id", "network_id", "mac_address", "status", "admin_state_up")}
                    | {"fixed_ips": sorted([ip["subnet_id"], ip["ip_address"]] for ip in port["fixed_ips"])},
            "security_group": {"id": sg["id"], "name": sg["name"], "rules": sorted(
                [r["id"], r["direction"], r["ethertype"], r["protocol"] or "", r["port_range_min"] or 0]
                for r in sg["rules"])},
        }

    def verify(self, c: Client, made: dict[str, Any]) -> dict[str, Any]:
        now = self.view(c, made["ids"])
        if now != made["view"]:
            raise LabError(f"the network resources changed: before {made['view']}, now {now}")
        return now

    def new_work(self, c: Client) -> dict[str, Any]:
        """A network with a subnet made and deleted on the cloud as it is now."""
        net = c.json("network", "create", "gn-new-net")
        sub = c.json("subnet", "create", "--network", net["id"], "--subnet-range", NEW_CIDR, "gn-new-subnet")
        c.run("subnet", "delete", sub["id"])
        c.run("network", "delete", net["id"])
        left = {n["ID"] for n in c.json("network", "list")}
        if net["id"] in left:
            raise LabError(f"network {net['id']} is still listed after its delete")
        return {"network": net["id"], "status": net["status"], "subnet": sub["id"]}


class Volume:
    """A 1 GiB volume and a snapshot of it."""

    name = "volume"

    def create(self, c: Client) -> dict[str, Any]:
        vol = c.json("volume", "create", "--size", "1", "gn-vol")["id"]
        wait(c, "volume", vol, "available")
        snap = c.json("volume", "snapshot", "create", "--volume", vol, "gn-snap")["id"]
        self._wait_snapshot(c, snap)
        ids = {"volume": vol, "snapshot": snap}
        return {"ids": ids, "view": self.view(c, ids)}

    @staticmethod
    def _wait_snapshot(c: Client, snap: str) -> None:
        deadline = time.monotonic() + SETTLE
        while (status := c.json("volume", "snapshot", "show", snap)["status"]) != "available":
            if "error" in status or time.monotonic() > deadline:
                raise LabError(f"snapshot {snap} is {status!r}, not 'available'")
            time.sleep(1.0)

    def view(self, c: Client, ids: dict[str, str]) -> dict[str, Any]:
        vol = c.json("volume", "show", ids["volume"])
        snap = c.json("volume", "snapshot", "show", ids["snapshot"])
        return {"volume": {k: vol[k] for k in ("id", "name", "status", "size", "bootable", "created_at")},
                "snapshot": {k: snap[k] for k in ("id", "name", "status", "size", "volume_id", "created_at")}}

    def verify(self, c: Client, made: dict[str, Any]) -> dict[str, Any]:
        now = self.view(c, made["ids"])
        if now != made["view"]:
            raise LabError(f"the volume resources changed: before {made['view']}, now {now}")
        return now

    def new_work(self, c: Client) -> dict[str, Any]:
        """A volume made (``available``) and deleted on the cloud as it is now."""
        vol = c.json("volume", "create", "--size", "1", "gn-new-vol")["id"]
        shown = wait(c, "volume", vol, "available")
        c.run("volume", "delete", vol)
        wait_gone(c, "volume", vol)
        return {"volume": vol, "status": shown["status"], "host": shown.get("os-vol-host-attr:host")}


class Attachment:
    """A volume attached to the compute kind's server (``server add volume``: nova-compute's fake
    driver on the compute host, cinder's attachment API): ``in-use`` and attached to that server."""

    name = "attachment"

    def __init__(self, server: Callable[[], str]) -> None:
        self.server = server  # the server the compute kind made (its id, read from the record)

    def create(self, c: Client) -> dict[str, Any]:
        server = self.server()
        vol = c.json("volume", "create", "--size", "1", "gn-attached")["id"]
        wait(c, "volume", vol, "available")
        c.run("server", "add", "volume", server, vol)
        wait(c, "volume", vol, "in-use")
        ids = {"volume": vol, "server": server}
        return {"ids": ids, "view": self.view(c, ids)}

    def view(self, c: Client, ids: dict[str, str]) -> dict[str, Any]:
        vol = c.json("volume", "show", ids["volume"])
        return {"id": vol["id"], "status": vol["status"],
                "attached_to": sorted(a["server_id"] for a in vol["attachments"])}

    def verify(self, c: Client, made: dict[str, Any]) -> dict[str, Any]:
        now = self.view(c, made["ids"])
        if now != made["view"]:
            raise LabError(f"the attached volume changed: before {made['view']}, now {now}")
        return now

    def new_work(self, c: Client) -> dict[str, Any]:
        """A new volume attached to the server, detached and deleted on the cloud as it is now."""
        server = self.server()
        vol = c.json("volume", "create", "--size", "1", "gn-new-attached")["id"]
        wait(c, "volume", vol, "available")
        c.run("server", "add", "volume", server, vol)
        attached = wait(c, "volume", vol, "in-use")
        c.run("server", "remove", "volume", server, vol)
        wait(c, "volume", vol, "available")
        c.run("volume", "delete", vol)
        wait_gone(c, "volume", vol)
        return {"volume": vol, "attached_to": sorted(a["server_id"] for a in attached["attachments"])}


NETWORK, VOLUME = Network(), Volume()
