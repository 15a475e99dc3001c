"""Grenade-style resources of neutron and cinder, made and checked as a cloud's user does: through the
``openstack`` command line (python-openstackclient of a release venv), as a non-admin user of a project
of its own, authenticated by a 0600 clouds.yaml (``heatlab.write_clouds``: the password is never on a
command line or in an environment).

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

import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.lab import heatlab, ksapi
from scripts.lab.proc import LabError, clean_env

#: how long a volume or snapshot may take to reach a state (a bound on a condition, not a pause)
SETTLE = 180.0
#: documentation addresses (RFC 5737): the subnets' ranges, data only, never reached
CIDR, NEW_CIDR = "198.51.100.0/26", "198.51.100.64/26"


@dataclass(frozen=True)
class Client:
    """The ``openstack`` CLI of one release venv as one user (its clouds.yaml)."""

    venv: Path
    clouds: Path

    def json(self, *args: str) -> Any:
        """``openstack ARGS -f json``: its answer."""
        return heatlab.openstack(self.venv, self.clouds, *args)

    def run(self, *args: str) -> None:
        """``openstack ARGS`` for a command that prints nothing (add, delete)."""
        res = subprocess.run([str(self.venv / "bin" / "openstack"), *args], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, cwd=self.clouds.parent, timeout=600,
                             env=clean_env(OS_CLIENT_CONFIG_FILE=str(self.clouds), OS_CLOUD="lab"))
        if res.returncode != 0:
            raise LabError(f"openstack {' '.join(args)} rc {res.returncode}: {res.stderr.strip()[-1500:]}")

    def wait(self, what: str, ident: str, status: str) -> dict[str, Any]:
        """``openstack WHAT show ID`` until its status is *status* (an error state ends the wait)."""
        deadline = time.monotonic() + SETTLE
        while True:
            shown = self.json(what, "show", ident)
            if shown["status"] == status:
                return shown
            if "error" in shown["status"] or time.monotonic() > deadline:
                raise LabError(f"{what} {ident} is {shown['status']!r}, not {status!r}")
            time.sleep(1.0)

    def wait_gone(self, what: str, ident: str) -> None:
        deadline = time.monotonic() + SETTLE
        while ident in {x["ID"] for x in self.json(what, "list")}:
            if time.monotonic() > deadline:
                raise LabError(f"{what} {ident} was not deleted within {SETTLE:.0f} s")
            time.sleep(1.0)


def make_user(keystone_url: str, admin_token: str, name: str) -> tuple[str, str]:
    """A project *name* and its member user *name* (not an admin anywhere) through the keystone API;
    returns (user, password). The password stays with the caller (the clouds.yaml)."""
    url, password = f"{keystone_url.rstrip('/')}", secrets.token_urlsafe(12)
    member = ksapi.call("GET", f"{url}/roles?name=member", admin_token)["roles"]
    if not member:
        raise LabError("the lab keystone has no role 'member' (keystone-manage bootstrap makes it)")
    project = ksapi.call("POST", f"{url}/projects", admin_token,
                         {"project": {"name": name, "domain_id": "default"}})["project"]["id"]
    user = ksapi.call("POST", f"{url}/users", admin_token, {"user": {
        "name": name, "domain_id": "default", "password": password, "default_project_id": project}})["user"]["id"]
    ksapi.call("PUT", f"{url}/projects/{project}/users/{user}/roles/{member[0]['id']}", admin_token)
    return name, password


def client(venv: Path, directory: Path, keystone_url: str, user: str, password: str) -> Client:
    """A client for *user* (in its project of the same name) with its clouds.yaml in *directory*."""
    clouds = heatlab.write_clouds(Path(directory) / "clouds.yaml", keystone_url, user, password, user)
    return Client(Path(venv), clouds)


# ---------------------------------------------------------------------- the kinds
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
        """What must read the same after the upgrade and after the revert."""
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
            "router_interfaces": sorted((p["ID"], ip["subnet_id"], ip["ip_address"])
                                        for p in interfaces for ip in p["Fixed IP Addresses"]),
            "port": {k: port[k] for k in ("id", "network_id", "mac_address", "status", "admin_state_up")}
                    | {"fixed_ips": sorted((ip["subnet_id"], ip["ip_address"]) for ip in port["fixed_ips"])},
            "security_group": {"id": sg["id"], "name": sg["name"], "rules": sorted(
                (r["id"], r["direction"], r["ethertype"], r["protocol"] or "", r["port_range_min"] or 0)
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
        c.wait("volume", vol, "available")
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
        shown = c.wait("volume", vol, "available")
        c.run("volume", "delete", vol)
        c.wait_gone("volume", vol)
        return {"volume": vol, "status": shown["status"], "host": shown.get("os-vol-host-attr:host")}


KINDS = (Network(), Volume())
