"""The HA flavour of the multi-host lab: three old controllers behind a VIP, three new ones waiting.

    python -m scripts.lab.ha up [--computes N] [--old 2025.2] [--new 2026.1] DIR
    python -m scripts.lab.ha down DIR
    python -m scripts.lab.ha status DIR

The same hosts as ``scripts.lab.hosts`` (network namespaces on one bridge, each with its own
PID/mount/UTS/IPC namespaces, copy-on-write ``/etc``, ``/var/lib``, ``/var/log`` and a real
sshd), another set of them: ``deploy`` (198.51.100.2), ``oldctl1..3`` (.31-.33), ``newctl1..3``
(.41-.43), ``compute1..N`` (.21 ...); the management VIP 198.51.100.10 (``controller`` in every
host's /etc/hosts) is on no host until keepalived puts it there.

- Old side (``--old`` release): a three-node MariaDB Galera cluster ``osu-old``
  (``scripts.lab.hagalera``: the first node bootstraps it, the others join by rsync SST);
  keepalived on each holding the VIP by unicast VRRP (oldctl1 MASTER) and HAProxy on each in
  front of the database, keystone, glance, placement, nova's API, neutron-server, cinder-api and AMQP on
  the VIP (``scripts.lab.havip``); keystone, glance, placement and nova (nova-api, nova-conductor,
  nova-scheduler: ``scripts.lab.novahost``'s controller), neutron and cinder (neutron-server and its RPC
  server, cinder-api, -scheduler and -volume on the fake driver: ``scripts.lab.netvolhost``'s controller;
  every cinder-volume of a side has the side's one host name, :data:`CINDER_HOSTS`) on all three (schemas,
  keys, bootstrap,
  the service users, the lab's images and the catalog made once on oldctl1 while its node is
  alone, the catalog on the VIP; the same trees copied to the other two), each on its own Galera
  node, glance's images in one store the three mount (``hosts/shared``); a RabbitMQ cluster
  ``osu-old`` (``rabbit@oldctl1..3``: Debian's rabbitmq-server without systemd,
  ``scripts.lab.rabbit``, one Erlang cookie, joined by ``rabbitmqctl join_cluster``), each
  controller's nova, neutron and cinder talking RPC to its own node (neutron and cinder with a user and
  vhost each).
- New side (``--new`` release): its own three-node cluster ``osu-new``, bootstrapped empty (no
  OpenStack database); keystone's, glance's, placement's, nova's, neutron's and cinder's trees and configs
  installed, not
  started (glance's image store the three share, empty); its RabbitMQ cluster ``osu-new`` formed and
  running, as its Galera cluster is (it serves the compute hosts once the VIP moves); keepalived and
  HAProxy configured, not started.
- Compute hosts: a real nova-compute of the old release on nova's fake driver (``scripts.lab.novalab``;
  the ``neutron-agent`` stand-in beside it), configured with the VIP (``controller``) only: keystone,
  AMQP, placement through the catalog; mapped into cell1. ``HaLab.vip_check`` asks one what it sees
  there (the holder, keystone, glance, placement, nova, neutron, cinder, the AMQP cluster's name). The
  servers boot with ``--nic none`` (no neutron agent on the compute hosts).
- ``DIR/plan.toml`` (``scripts.lab.haplan``): keystone, glance, placement, nova, neutron and cinder, both
  sides as groups (``members``, ``vip``) with ``DIR/dump.key``; `upgrade check`, `plan`, `run`, `resume` and `revert`
  read it.

``down`` is ``scripts.lab.hosts``' own: every host's PID 1 killed by its recorded pid (the kernel
ends every process of that PID namespace: MariaDB, RabbitMQ and its epmd, keepalived, HAProxy,
keystone, glance, placement, nova, neutron, cinder, sshd), the namespaces deleted, the files ``up`` made
removed (the shared image store too). Only 198.51.100.0/24 and loopback are used.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from scripts.lab import hanode, haplan, hosts, netns, netvol, novalab, novaserve, rabbit, schemacache
from scripts.lab.hagalera import PROVIDER
from scripts.lab.hostside import DB_PORT, GLANCE_PORT, KEYSTONE_PORT
from scripts.lab.plan import write_key
from scripts.lab.proc import LabError

NET = hosts.NET
VIP = hosts.VIP
OLD = ("oldctl1", "oldctl2", "oldctl3")
NEW = ("newctl1", "newctl2", "newctl3")
CONTROLLERS = OLD + NEW
ADDRESSES = {"deploy": f"{NET}.2", **{h: f"{NET}.{31 + i}" for i, h in enumerate(OLD)},
             **{h: f"{NET}.{41 + i}" for i, h in enumerate(NEW)}}
CLUSTERS = {"old": ("osu-old", OLD), "new": ("osu-new", NEW)}
#: cinder's host name on each side's controllers (``scripts.lab.openstack``'s, which the plan's update_host names)
CINDER_HOSTS = {"old": "old-ctl", "new": "new-ctl"}
#: keepalived priorities of a side's first, second and third controller
PRIORITIES = (150, 100, 50)
TOOLS = ("ip", "nsenter", "unshare", "ssh-keygen", "/usr/sbin/sshd", "rsync", "/usr/sbin/keepalived",
         "/usr/sbin/haproxy", "tar")
VIP_TIMEOUT = 20.0


class HaLab(hosts.Lab):
    """A running HA lab: the multi-host lab's helpers plus the two sides and in-host actions."""

    @property
    def old(self) -> list[str]:
        return list(OLD)

    @property
    def new(self) -> list[str]:
        return list(NEW)

    def node(self, host: str, action: str, payload: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        """``scripts.lab.hanode ACTION`` run in *host*; the payload (passwords too) goes through stdin."""
        with schemacache.lent(self.host_tmp(host)) as cache:  # a schema sync there loads the run's schemas
            argv = ["env", f"PYTHONPATH={hosts.INSIDE_REPO}", *cache, hosts._host_python(), "-m", "scripts.lab.hanode",
                    action]
            res = self.inside(host, argv, timeout=timeout, input=json.dumps(payload))
        if res.returncode != 0:
            raise LabError(f"HA lab action `{action}` on {host} failed (rc {res.returncode}):\n"
                           f"{res.stderr.strip()[-3000:]}")
        return json.loads(res.stdout or "{}")

    def raw(self, host: str, argv: list[str], data: bytes = b"") -> bytes:
        """*argv* in *host* with bytes in and out (a tar stream between two hosts); fails loudly."""
        res = subprocess.run(["nsenter", "-t", str(self.pid1(host)), "-a", "-r", "-w", *argv], input=data,
                             capture_output=True, timeout=120)
        if res.returncode != 0:
            raise LabError(f"`{' '.join(argv)}` on {host} failed (rc {res.returncode}): "
                           f"{res.stderr.decode(errors='replace').strip()}")
        return res.stdout

    def vip(self, host: str, start: tuple[str, ...] = ("haproxy", "keepalived")) -> dict[str, Any]:
        """Write *host*'s keepalived and HAProxy configs and start the *start* programs (if not running)."""
        members = OLD if host in OLD else NEW
        i = members.index(host)
        backends = {m: self.hosts[m] for m in members}
        return self.node(host, "vip", {
            "name": host, "address": self.hosts[host], "peers": list(backends.values()), "vip": VIP,
            "prefixlen": netns.PREFIXLEN, "priority": PRIORITIES[i], "master": i == 0, "backends": backends,
            "db_port": DB_PORT, "api_port": KEYSTONE_PORT, "keystone_port": hanode.KEYSTONE_BACKEND_PORT,
            "glance": [GLANCE_PORT, hanode.GLANCE_BACKEND_PORT], "amqp": [hanode.AMQP_PORT, hanode.AMQP_BACKEND_PORT],
            "apis": [list(a) for a in hanode.APIS], "start": list(start)})

    def vip_stop(self, host: str, programs: tuple[str, ...] = ("keepalived",)) -> dict[str, bool]:
        return self.node(host, "vip_stop", {"programs": list(programs)})

    def processes(self, host: str) -> dict[int, str]:
        """pid (as the machine sees it) -> command line, of every process in *host*'s PID namespace (its PID 1
        too): what ``down`` must leave none of."""
        pid1 = self.pid1(host)
        mine = os.readlink(f"/proc/{pid1}/ns/pid")
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "pid") == mine:
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        return found

    def mq_nodes(self, host: str) -> list[str]:
        """The running nodes of *host*'s RabbitMQ cluster as its node sees them ([] when it is stopped)."""
        return self.node(host, "mq_status", {})["running_nodes"]

    def vip_check(self, host: str) -> dict[str, Any]:
        """From *host* (a compute host: the VIP is the only controller address it knows): which controller
        holds the VIP, whether keystone and glance answer on it, which RabbitMQ cluster answers AMQP."""
        return self.node(host, "vip_check", {"vip": VIP})

    def vip_holders(self) -> list[str]:
        """Every controller that has the VIP on its eth0 right now (a healthy lab: exactly one)."""
        return [h for h in CONTROLLERS if VIP in self.addresses(h)]

    def side(self, host: str) -> str:
        return "old" if host in OLD else "new"

    def galera_payload(self, host: str) -> dict[str, Any]:
        cluster, members = CLUSTERS[self.side(host)]
        return {"address": self.hosts[host], "name": host, "cluster": cluster,
                "peers": [self.hosts[m] for m in members]}


def _check_machine(venv_root: Path, releases: tuple[str, str]) -> None:
    if os.geteuid() != 0:
        raise LabError("the HA lab needs root (network namespaces, mounts, sshd, VRRP)")
    for tool in TOOLS:
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is not installed — run scripts/setup-system")
    if not PROVIDER.exists():
        raise LabError(f"{PROVIDER} (Debian package galera-4) is missing — run scripts/setup-system")
    for rel in releases:
        if not (venv_root / rel / "bin" / "keystone-manage").exists():
            raise LabError(f"venv {venv_root / rel} lacks keystone-manage; build it with: make openstack")


def up(lab: Path, computes: int = 1, old: str = "2025.2", new: str = "2026.1",
       venv_root: Path | None = None) -> dict[str, Any]:
    """Create the network and the hosts, build both clusters, the old side's VIP and services, the computes."""
    from scripts.lab.controller import DEFAULT_VENV_ROOT

    venv_root = Path(venv_root or DEFAULT_VENV_ROOT)
    lab = Path(lab).resolve()
    lab.mkdir(parents=True, exist_ok=True)
    if (lab / hosts.STATE).exists():
        raise LabError(f"{lab} already holds a multi-host lab; run `down {lab}` first")
    _check_machine(venv_root, (old, new))
    if not 0 <= computes <= 9:
        raise LabError(f"--computes {computes}: between 0 and 9")
    t0 = time.monotonic()
    addresses = {**ADDRESSES, **{f"compute{i}": f"{NET}.{hosts.FIRST_COMPUTE + i - 1}"
                                 for i in range(1, computes + 1)}}
    state: dict[str, Any] = {"prefix": hosts._prefix(lab), "vip": VIP, "complete": False, "flavour": "ha",
                             "controllers": False, "hosts": {h: {"address": a} for h, a in addresses.items()},
                             "timings": {}}
    hosts._save(lab, state)  # first, so that `down` can clean up after a failed `up`
    try:
        _up(lab, state, addresses, old, new, venv_root)
    except BaseException:
        with contextlib.suppress(Exception):
            hosts.down(lab)
        raise
    state["timings"]["total"] = round(time.monotonic() - t0, 2)
    state["complete"] = True
    hosts._save(lab, state)
    return status(lab)


def _timed(state: dict[str, Any], name: str, t: float) -> None:
    state["timings"][name] = round(time.monotonic() - t, 2)
    print(f"ha lab: {name} {state['timings'][name]} s", file=sys.stderr, flush=True)


def _up(lab: Path, state: dict[str, Any], addresses: dict[str, str], old: str, new: str, venv_root: Path) -> None:
    t = time.monotonic()
    (lab / "ssh").mkdir(mode=0o700, exist_ok=True)
    hosts._keygen(lab / "ssh" / "id_ed25519", "osu-lab-client")
    served = [h for h in addresses if h != "deploy"]
    keep = hosts._hidden_pythons(venv_root)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda h: hosts._prepare_host(lab, h, addresses, keep), served))
    for h in CONTROLLERS:
        _share_images(lab, h)
    hosts._known_hosts(lab, addresses)
    (lab / "ssh" / "ssh_config").write_text(hosts._ssh_config(lab, addresses))
    netns.create(state["prefix"], addresses)
    state["network_ready"] = True
    with ThreadPoolExecutor(max_workers=8) as pool:
        for h, pids in zip(served, pool.map(lambda h: hosts._launch(lab, state, h), served), strict=True):
            state["hosts"][h].update(pids)
    hosts._save(lab, state)
    _timed(state, "hosts", t)
    info = HaLab(lab, state)
    ctl = {"old": old, "new": new, "venv_root": str(venv_root), "admin_password": secrets.token_urlsafe(12),
           "db_password": secrets.token_urlsafe(12),
           "db_admin_password": {side: secrets.token_urlsafe(16) for side in CLUSTERS},
           "glance_password": secrets.token_urlsafe(12), "mq_password": secrets.token_urlsafe(12),
           "mq_cookie": {side: secrets.token_hex(16).upper() for side in CLUSTERS}}
    ctl["nova"] = nova_settings(ctl["mq_password"])
    ctl["netvol"] = netvol_settings()
    state["controller"] = ctl
    hosts._save(lab, state)
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [pool.submit(info.helper, h, "compute", {"name": h}) for h in info.computes]
        sides = [pool.submit(_side, info, side, ctl) for side in CLUSTERS]
        for job in [*sides, *jobs]:
            job.result()
    hosts._save(lab, state)
    write_key(lab / "dump.key")
    fd = os.open(lab / hosts.PLAN, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # DB admin passwords inline
    with os.fdopen(fd, "w") as fh:
        fh.write(haplan.plan_text(info, {side: list(members) for side, (_, members) in CLUSTERS.items()}, VIP,
                                  netns.PREFIXLEN, hanode.KEYSTONE_BACKEND_PORT,
                                  hanode.GLANCE_BACKEND_PORT))


def nova_settings(mq_password: str) -> dict[str, Any]:
    """Placement's and nova's settings (``scripts.lab.novaserve.Settings``) for both sides: each controller's
    own keystone, placement-api and nova-api at their backend ports (every address) and its own node of the
    side's RabbitMQ cluster (loopback), the catalog and the compute hosts on the VIP (HAProxy's ports, AMQP
    too): the same nova.conf serves on either side, as the upgrade carries it over, and a new controller's
    nova hears nothing from the computes until the VIP moves."""
    s = novaserve.Settings.new(hanode.KEYSTONE_BACKEND_PORT, hanode.PLACEMENT_BACKEND_PORT, hanode.NOVA_BACKEND_PORT,
                               hanode.AMQP_BACKEND_PORT)
    return novaserve.settings_dict(novaserve.Settings(**{
        **novaserve.settings_dict(s), "mq_password": mq_password, "address": VIP, "bind": "0.0.0.0",
        "front": (KEYSTONE_PORT, hanode.PLACEMENT_PORT, hanode.NOVA_PORT, hanode.AMQP_PORT), "broker": rabbit.UNIT}))


def netvol_settings() -> dict[str, Any]:
    """Neutron's and cinder's settings (``scripts.lab.netvol.Settings``) for both sides: each controller's API on
    every address at its backend port behind HAProxy's usual port on the VIP (which the catalog names), its own
    keystone at the backend port, its RPC on its own node of the side's RabbitMQ cluster (loopback, a user and
    vhost each): valid unchanged on either side, as the upgrade carries the configs over."""
    return {name: dataclasses.asdict(netvol.Settings.new(
        hanode.KEYSTONE_BACKEND_PORT, backend, hanode.AMQP_BACKEND_PORT, bind="0.0.0.0", public=VIP, mq_user=name,
        mq_vhost=name, public_port=front)) for name, front, backend, _ in hanode.APIS if name in hanode.NETVOL}


def _share_images(lab: Path, host: str) -> None:
    """A side's ``/var/lib/glance/images`` is one directory of the lab (``hosts/shared/glance-images-SIDE``)
    its three controllers mount, as an NFS export is in production: any glance-api serves an image another
    stored. Each side has its own: the upgrade copies the old store into the new one (the glance steps'
    image copy from the first old controller to the first new one), the old one stays only read."""
    share = lab / "hosts" / "shared" / f"glance-images-{'old' if host in OLD else 'new'}"
    share.mkdir(parents=True, exist_ok=True)
    path = lab / "hosts" / host / "lab" / "init.json"
    cfg = json.loads(path.read_text())
    cfg["binds"] = [[str(share), "/var/lib/glance/images"]]
    path.write_text(json.dumps(cfg))


def _mq_cluster(info: HaLab, side: str, ctl: dict[str, Any]) -> None:
    """The side's RabbitMQ cluster: a node on each controller (started together), the others joined to the
    first (``rabbitmqctl join_cluster``). Both sides' keep running, as their Galera clusters do: the new
    side's serves once the VIP moves (nova's RPC goes through the VIP's AMQP port)."""
    t = time.monotonic()
    members = CLUSTERS[side][1]
    base = {"mq_password": ctl["mq_password"], "cookie": ctl["mq_cookie"][side]}
    with ThreadPoolExecutor(max_workers=len(members)) as pool:
        list(pool.map(lambda h: info.node(h, "mq", {**base, "node": f"rabbit@{h}"}), members))
    for h in members[1:]:
        info.node(h, "mq", {**base, "node": f"rabbit@{h}", "join": f"rabbit@{members[0]}",
                            **({"cluster_name": CLUSTERS[side][0]} if h == members[-1] else {})})
    running = info.mq_nodes(members[0])
    if running != sorted(f"rabbit@{h}" for h in members):
        raise LabError(f"the {side} side's RabbitMQ cluster runs {running}, not the nodes of {', '.join(members)}")
    _timed(info.state, f"rabbitmq_{side}", t)


def _side(info: HaLab, side: str, ctl: dict[str, Any]) -> None:
    """One side: its Galera cluster, its RabbitMQ cluster, the VIP configs; on the old side, keepalived,
    HAProxy, keystone, glance, placement, nova, neutron and cinder serving, then the compute hosts' nova; on the
    new side, their trees installed and stopped.

    The old side's schemas and seed are made while its first node is still alone (DDL on a one-node
    cluster is not certified by two others: a minute less on a loaded machine); the joining nodes receive
    them with their state transfer."""
    with ThreadPoolExecutor(max_workers=1) as pool:  # the brokers boot while the databases are made
        mq = pool.submit(_mq_cluster, info, side, ctl)
        _services(info, side, ctl, mq)
        mq.result()


def _services(info: HaLab, side: str, ctl: dict[str, Any], mq: Future) -> None:
    """The side's services; *mq*: its RabbitMQ cluster being formed, waited for before neutron's and cinder's
    logins are added to it."""
    state = info.state
    members = CLUSTERS[side][1]
    first, rest = members[0], members[1:]
    t = time.monotonic()
    info.node(first, "galera", {**info.galera_payload(first), "bootstrap": True,
                                "db_admin_password": ctl["db_admin_password"][side]})
    vip = info.vip
    running = ("haproxy", "keepalived") if side == "old" else ()
    keystone = {**info.galera_payload(first), "release": ctl[side], "venv_root": ctl["venv_root"],
                "db_password": ctl["db_password"], "admin_password": ctl["admin_password"], "vip": VIP,
                "glance_url": f"http://{VIP}:{GLANCE_PORT}"}
    glance = {**keystone, "glance_password": ctl["glance_password"]}
    nova = {**keystone, "nova": ctl["nova"]}
    # cinder's host name is one per side (every cinder-volume of a side serves its volumes: the fake driver keeps
    # nothing on the host); the plan's update_host moves the volumes from the old side's to the new side's
    netvol_payload = {**info.galera_payload(first), "release": ctl[side], "venv_root": ctl["venv_root"],
                      "settings": ctl["netvol"], "cinder_host": CINDER_HOSTS[side]}
    if side == "old":
        vip(first, running)
        wait_vip(info, first)
        state["controller"]["seed"] = info.node(first, "keystone", keystone)["seed"]
        _timed(state, "keystone_old", t)
        t = time.monotonic()
        seeded = info.node(first, "glance", {**glance, "seed": state["controller"]["seed"]})
        state["controller"]["images"] = seeded["images"]
        _timed(state, "glance_old", t)
        mq.result()
        t = time.monotonic()
        with ThreadPoolExecutor(max_workers=2) as pool:  # schemas and catalog while the node is alone; units below
            jobs = [pool.submit(info.node, first, "nova", nova, 1200),
                    pool.submit(info.node, first, "netvol", {**netvol_payload, "admin_password": ctl["admin_password"]},
                                1200)]
            for job in jobs:
                job.result()
        _timed(state, "nova_netvol_old", t)
        t = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(rest)) as pool:  # a second joiner waits for the donor by itself
        list(pool.map(lambda h: info.node(h, "galera", info.galera_payload(h)), rest))
    for h in members if side == "new" else rest:
        vip(h, running)
    _timed(state, f"galera_{side}", t)
    t = time.monotonic()
    if side == "new":
        mq.result()
        for h in members:
            for action, payload in (("keystone", keystone), ("glance", glance), ("nova", nova),
                                    ("netvol", {**netvol_payload, "logins": h == first})):
                info.node(h, action, {**payload, **info.galera_payload(h), "install_only": True})
        _timed(state, "installed_new", t)
        return
    tree = info.raw(first, ["tar", "-C", "/", "--exclude=var/lib/glance/images", "-cf", "-", "etc/keystone",
                            "etc/glance", "etc/lab.json", "var/lib/glance", "etc/nova", "etc/placement",
                            "etc/nova-lab.json", "var/lib/nova", "var/log/nova", "var/log/placement",
                            "etc/neutron", "etc/cinder", "etc/neutron-lab.json", "etc/cinder-lab.json",
                            "etc/cinder-host.conf", "var/lib/neutron", "var/lib/cinder", "var/log/neutron",
                            "var/log/cinder"])

    def serve(h: str) -> None:
        if h != first:
            info.raw(h, ["tar", "-C", "/", "-xpf", "-"], tree)
            info.node(h, "serve", {})
        with ThreadPoolExecutor(max_workers=2) as units:  # each waits on its own APIs and RPC topics: side by side
            jobs = [units.submit(info.node, h, "nova_serve", {"nova": ctl["nova"], "vip": VIP}, 1200),
                    units.submit(info.node, h, "netvol_serve", {"vip": VIP}, 1200)]
            for job in jobs:
                job.result()

    with ThreadPoolExecutor(max_workers=len(members)) as pool:
        list(pool.map(serve, members))
    wait_vip(info, first)
    _timed(state, "serve_old", t)
    t = time.monotonic()
    nova_computes(info)
    _timed(state, "computes", t)


def nova_computes(info: HaLab) -> None:
    """nova-compute of the old release on every compute host (``scripts.lab.novalab``, nova's fake driver), its
    nova.conf naming the VIP alone (keystone, the AMQP cluster; placement through the catalog), each mapped
    into cell1 once it registered (``nova-manage cell_v2 discover_hosts`` on the first old controller)."""
    ctl = info.state["controller"]
    for h in info.computes:  # one after the other: two cores
        novalab.run_inside(info, h, "compute", {"host": h, "release": ctl["old"], "venv_root": ctl["venv_root"],
                                                "nova": ctl["nova"]})
    if info.computes:
        info.helper(OLD[0], "nova_discover", {"address": info.hosts[OLD[0]], "hosts": info.computes}, 600)


def wait_vip(info: HaLab, holder: str, timeout: float = VIP_TIMEOUT) -> None:
    """Until *holder*, and no other controller, has the VIP (keepalived's VRRP decides)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if info.vip_holders() == [holder]:
            return
        time.sleep(0.05)
    raise LabError(f"the VIP {VIP} is held by {info.vip_holders() or 'nobody'}, not {holder}, after {timeout:.0f} s")


def down(lab: Path) -> list[str]:
    return hosts.down(lab)


def status(lab: Path) -> dict[str, Any]:
    report = hosts.status(lab)
    info = HaLab.load(lab)
    report.update({"flavour": "ha", "old": info.old, "new": info.new})
    if all(netns.exists(info.ns(h)) for h in CONTROLLERS):
        report["vip_holders"] = info.vip_holders()
        if info.computes and info.state.get("complete") and netns.exists(info.ns(info.computes[0])):
            with contextlib.suppress(LabError):
                report["from_compute"] = {"host": info.computes[0], **info.vip_check(info.computes[0])}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.lab.ha", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="create the hosts, both clusters, the VIP; prints a JSON summary")
    p_up.add_argument("dir", type=Path)
    p_up.add_argument("--computes", type=int, default=1)
    p_up.add_argument("--old", default="2025.2")
    p_up.add_argument("--new", default="2026.1")
    p_up.add_argument("--venv-root", type=Path)
    for name, text in (("down", "kill every host, delete the namespaces and the lab's files"),
                       ("status", "hosts, addresses, VIP holder, what a compute host sees on the VIP")):
        sub.add_parser(name, help=text).add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(json.dumps(up(args.dir, args.computes, args.old, args.new, args.venv_root), indent=2))
        elif args.command == "down":
            print(f"lab down: {', '.join(down(args.dir)) or 'nothing was running'}", file=sys.stderr)
        else:
            print(json.dumps(status(args.dir), indent=2))
    except LabError as exc:
        print(f"lab {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
