"""The workload of ``make demo``: what a user made on the cloud before the upgrade, shown as tables.

A project of its own and its non-admin user make, through the ``openstack`` client (``scripts.lab.grenade``,
as OpenStack's upgrade gate Grenade does): a server booted on the compute host with metadata, a volume
attached to it, a volume with a snapshot, a network with its subnet, router, port and security group. After
the upgrade the new controller's APIs must show each with the same id and state, the compute host must report
to it, and it must serve new work (a server booted, a volume attached, a network made, each then deleted);
after the revert the old controller's APIs must show the same again. Each table row is one resource: its
state before, its state now, OK or FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from scripts.lab import grenade
from scripts.lab.proc import LabError


def _short(ident: str) -> str:
    return ident[:8]


def states(made: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(resource, name and short id) -> its state in words, from the views ``grenade.create``/``verify`` keep
    (the server as the compute kind sees it, the others as their own kinds do)."""
    out: dict[tuple[str, str], str] = {}
    server = made["compute"]["server"]
    props = ", ".join(f"{k}={v}" for k, v in sorted(server["properties"].items()))
    out[("server", f"{server['name']} {_short(server['id'])}")] = \
        f"{server['status']} on {server['host']}, flavor {server['flavor']}, {props}"
    att = made["attachment"]
    out[("volume attached to the server", _short(att["id"]))] = \
        f"{att['status']}, on server {', '.join(_short(s) for s in att['attached_to'])}"
    vol, snap = made["volume"]["volume"], made["volume"]["snapshot"]
    out[("volume", f"{vol['name']} {_short(vol['id'])}")] = f"{vol['status']}, {vol['size']} GiB"
    out[("snapshot of it", f"{snap['name']} {_short(snap['id'])}")] = snap["status"]
    net = made["network"]
    out[("network", f"{net['network']['name']} {_short(net['network']['id'])}")] = net["network"]["status"]
    out[("subnet", _short(net["subnet"]["id"]))] = net["subnet"]["cidr"]
    out[("router", f"{net['router']['name']} {_short(net['router']['id'])}")] = \
        f"{net['router']['status']}, interface " + ", ".join(ip for _p, _s, ip in net["router_interfaces"])
    out[("port", _short(net["port"]["id"]))] = ", ".join(ip for _s, ip in net["port"]["fixed_ips"])
    out[("security group", f"{net['security_group']['name']} {_short(net['security_group']['id'])}")] = \
        f"{len(net['security_group']['rules'])} rules"
    return out


def views(record: dict[str, Any]) -> dict[str, Any]:
    """``states``' input from what ``grenade.create`` recorded (each kind's view)."""
    return {"compute": record["compute"], "attachment": record["attachment"]["view"],
            "volume": record["volume"]["view"], "network": record["network"]["view"]}


@dataclass
class Workload:
    """The demo's Grenade project in the lab at *lab*; ``made``: its resources as created."""

    lab: Path
    made: dict[str, Any] = field(default_factory=dict)

    def create(self) -> list[tuple[str, str, str]]:
        """The project, its user and its resources, through the old controller's APIs; the table's rows."""
        with grenade.setup(self.lab) as cloud:  # one client process for the whole creation
            record = grenade.create(cloud)
        self.made = views(record)
        return [(what, name, state) for (what, name), state in states(self.made).items()]

    def check(self, side: str, since: datetime) -> tuple[list[tuple[str, str, str, str, str]], list[str]]:
        """Every resource through *side*'s APIs (its release's client) against how it was made, and that
        side's nova-compute reporting with a heartbeat newer than *since*: rows and what failed."""
        try:
            with grenade.cloud(self.lab, side) as cloud:
                seen = grenade.verify(cloud, since)
        except LabError as exc:
            return [("workload", "-", "-", str(exc), "FAILED")], [f"the workload through the {side} controller: {exc}"]
        before, now = states(self.made), states(seen)
        rows = [(what, name, state, now.get((what, name), "MISSING"), "OK" if now.get((what, name)) == state
                 else "FAILED") for (what, name), state in before.items()]
        service = seen["compute"]["service"]
        rows.append(("nova-compute", service["host"], "-", f"{service['state']}, heartbeat {service['updated_at']}",
                     "OK" if service["state"] == "up" else "FAILED"))
        return rows, [f"{what} {name}: {now_}" for what, name, _b, now_, ok in rows if ok != "OK"]

    def new_work(self, side: str) -> list[tuple[str, str, str]]:
        """New work on *side*'s cloud: each kind's new resources made (and attached), then deleted."""
        with grenade.cloud(self.lab, side) as cloud:
            work = grenade.new_work(cloud)
        return [
            ("a new server booted", _short(work["compute"]["booted"]),
             f"ACTIVE on {work['compute']['host']}, then deleted"),
            ("a new volume", _short(work["volume"]["volume"]), f"{work['volume']['status']}, then deleted"),
            ("a new volume attached to the server", _short(work["attachment"]["volume"]),
             f"in-use on server {', '.join(_short(s) for s in work['attachment']['attached_to'])}, detached, deleted"),
            ("a new network", _short(work["network"]["network"]), f"{work['network']['status']}, then deleted"),
        ]
