"""Network namespaces for the multi-host lab: one L2 segment, one namespace per simulated host.

A bridge ``br0`` lives in its own "switch" namespace; every host namespace gets a veth whose
inside end is ``eth0`` and whose other end is a port of that bridge (lab-recipes §11.2). Only
198.51.100.0/24 (TEST-NET-2) and loopback are ever configured, IPv6 is switched off before any
link exists (no link-local addresses), and no namespace has a default route: nothing can leave
the segment. Nothing is configured in the root namespace.

Names are prefixed per lab (``osu<hash>-``), so several labs, and several test runs, can exist on
one machine at the same time. Everything is done with ``ip``; no process is found by name.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scripts.lab.proc import LabError

NETWORK = ipaddress.ip_network("198.51.100.0/24")
PREFIXLEN = NETWORK.prefixlen
SWITCH = "sw"
NETNS_DIR = Path("/run/netns")


def check_address(address: str) -> str:
    """Refuse anything outside 198.51.100.0/24: the lab must never touch a real network."""
    ip = ipaddress.ip_address(address.split("/")[0])
    if ip not in NETWORK or ip in (NETWORK.network_address, NETWORK.broadcast_address):
        raise LabError(f"{address} is not a host address in {NETWORK}; the lab uses no other addresses")
    return str(ip)


def ns_name(prefix: str, host: str) -> str:
    return f"{prefix}{host}"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise LabError(f"`ip {' '.join(args)}` failed (rc {res.returncode}): {res.stderr.strip()}")
    return res


def _batch(ns: str | None, lines: Iterable[str]) -> None:
    """Several ``ip`` commands in one process (``ip -batch``): 50 hosts come up in a fraction of a second."""
    text = "".join(f"{line}\n" for line in lines)
    argv = ["ip", *(["-n", ns] if ns else []), "-batch", "-"]
    res = subprocess.run(argv, input=text, capture_output=True, text=True)
    if res.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed (rc {res.returncode}): {res.stderr.strip()}\n{text}")


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def _base(name: str) -> None:
    """A namespace with IPv6 off (before any link exists: no fe80:: address ever) and lo up."""
    if exists(name):
        raise LabError(f"network namespace {name} already exists — another lab with this directory runs; "
                       "run `down` first")
    _ip("netns", "add", name)
    res = subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                          "net.ipv6.conf.default.disable_ipv6=1"], capture_output=True, text=True)
    if res.returncode != 0:
        raise LabError(f"disabling IPv6 in {name} failed: {res.stderr.strip()}")
    _ip("-n", name, "link", "set", "lo", "up")


def create(prefix: str, hosts: dict[str, str], extra: dict[str, list[str]] | None = None) -> None:
    """The switch namespace with br0, and one namespace per host with ``eth0`` at its address.

    ``hosts`` maps host name -> address; ``extra`` maps host name -> further addresses (the VIP).
    """
    for address in [*hosts.values(), *(a for v in (extra or {}).values() for a in v)]:
        check_address(address)
    sw = ns_name(prefix, SWITCH)
    names = [sw, *(ns_name(prefix, h) for h in hosts)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(_base, names))
    _batch(sw, ["link add br0 type bridge", "link set br0 up"])
    _batch(None, [f"link add eth0 netns {ns_name(prefix, h)} type veth peer name v-{h} netns {sw}" for h in hosts])
    _batch(sw, [f"link set v-{h} master br0 up" for h in hosts])

    def host_links(h: str) -> None:
        lines = [f"addr add {hosts[h]}/{PREFIXLEN} dev eth0", "link set eth0 up"]
        lines += [f"addr add {a}/{PREFIXLEN} dev eth0" for a in (extra or {}).get(h, [])]
        _batch(ns_name(prefix, h), lines)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(host_links, hosts))


def destroy(prefix: str, hosts: Iterable[str]) -> list[str]:
    """Delete every namespace of the lab (veths and the bridge go with them); returns what was deleted."""
    gone: list[str] = []
    for name in [ns_name(prefix, h) for h in hosts] + [ns_name(prefix, SWITCH)]:
        if exists(name):
            _ip("netns", "del", name)
            gone.append(name)
    return gone


def set_link(prefix: str, host: str, up: bool) -> None:
    """Plug or unplug a host's cable: its bridge port goes down, as a pulled cable or a dead switch port would."""
    _ip("-n", ns_name(prefix, SWITCH), "link", "set", f"v-{host}", "up" if up else "down")


def addresses(prefix: str, host: str) -> list[str]:
    """The IPv4 addresses on the host's eth0 (``ip -j``), for tests and status."""
    res = _ip("-n", ns_name(prefix, host), "-j", "addr", "show", "dev", "eth0")
    out = []
    for link in json.loads(res.stdout or "[]"):
        out += [a["local"] for a in link.get("addr_info", []) if a.get("family") == "inet"]
    return out


def mac(prefix: str, host: str) -> str:
    res = _ip("-n", ns_name(prefix, host), "-j", "link", "show", "dev", "eth0")
    return json.loads(res.stdout)[0]["address"]
