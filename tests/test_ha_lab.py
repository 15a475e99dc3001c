"""The HA flavour of the multi-host lab (scripts/lab/ha.py), built once for the module: checked as a client
sees it, then upgraded, resumed after kills and reverted by the real tool, then taken down.

Real parts only: network namespaces with sshd, three MariaDB Galera nodes per side (Debian's
galera-4), a RabbitMQ cluster per side, keepalived holding the VIP by VRRP, HAProxy in front of the
database, keystone, glance, placement, nova's API, neutron-server, cinder-api and AMQP, keystone, glance,
placement, nova (API, conductor, scheduler), neutron (server, RPC server) and cinder (API, scheduler, volume on
the fake driver) of the old release serving from the cluster on all three old controllers (glance's images on
a store every controller of a side shares), a real nova-compute (nova's fake driver) on the compute host.
The checks run from a compute host (the VIP is all it knows) and read each node's own view
of its cluster.

The upgrade (`upgrade run`, `resume`, `revert` of the lab's HA plan: keystone, glance, placement, nova, neutron
and cinder)
runs where an operator would (the deploy host), killed by SIGKILL (the fail points of
statemachine/failpoints.py) inside the import into one new Galera node and inside the VIP move, resumed each
time; then keystone and glance answer through the VIP from every new controller with the old data (the
images' bytes as uploaded), identical on the three new nodes; the network, the volume (and its snapshot) and
the server (ACTIVE on the compute host) made before the run by the real python-openstackclient through the
VIP are shown by it as made, the server's driver answering the new side's RPC, new ones of each are made and
deleted and another server boots; then revert: all through the VIP from the old controllers again, the
client shows the first three as made, the old cluster's keystone and glance tables unchanged
(CHECKSUM TABLE on each old node). Faults on the way: an old node down
before the run (`upgrade check` warns naming it, the run reads the working node), a new node down after
the import (the resume fails naming it; resumed again once it rejoined).

One lab for the module (minutes to build on a loaded 2-core machine; a second build would double that),
its tests in order on one pytest-xdist worker (tests/conftest.py XDIST_GROUPS): the lab's checks, the
upgrade chain, `down` leaving nothing. Needs root; under CI a missing part fails instead of skipping.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pymysql
import pytest

from scripts.lab import fullstack, grenade, grenade_netvol, netns, netvolhost, osclient, tablesums
from scripts.lab import ha as halab
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.hagalera import PROVIDER
from tests.conftest import require
from tests.test_multihost import journal_events, tool, wait_for
from upgrade import plan as plan_mod
from upgrade import window

pytestmark = [pytest.mark.lab, pytest.mark.slow]

OLD, NEW = "2025.2", "2026.1"
VIP = halab.VIP
COMPUTE = "compute1"
#: placement's and nova's processes on a controller that serves them
NOVA_PROGRAMS = ("placement_wsgi.py", "nova_wsgi.py", "bin/nova-conductor", "bin/nova-scheduler")
#: neutron's and cinder's (scripts.lab.netvolhost's units)
NETVOL_PROGRAMS = ("netvol_wsgi.py neutron", "neutron-rpc-server", "netvol_wsgi.py cinder", "cinder-scheduler",
                   "cinder-volume")
#: what a compute host sees on the VIP of a serving side (scripts.lab.ha.HaLab.vip_check), but the holder and AMQP
APIS_UP = {"keystone": True, "glance": True, "placement": True, "nova": True, "neutron": True, "cinder": True}


def _requirements() -> None:
    require(os.geteuid() == 0, "the HA lab needs root (network namespaces, mounts, sshd, VRRP)")
    for program in ("ip", "nsenter", "unshare", "/usr/sbin/sshd", "mariadbd", "rsync", "curl", "/usr/sbin/keepalived",
                    "/usr/sbin/haproxy"):
        require(shutil.which(program) is not None, f"{program} not installed (scripts/setup-system installs it)")
    require(PROVIDER.exists(), f"{PROVIDER} missing (scripts/setup-system installs galera-4)")
    for rel in (OLD, NEW):
        require((DEFAULT_VENV_ROOT / rel / "bin" / "keystone-manage").exists(), f"keystone missing in venv {rel}")


def _node_query(lab: halab.HaLab, host: str, sql: str) -> list[tuple]:
    """*sql* on *host*'s own node, after the node has applied every write the cluster committed before
    (``wsrep_sync_wait``: a causal read, no waiting on time)."""
    conn = pymysql.connect(unix_socket=lab.db_socket(host), user="root", password="", autocommit=True,
                           connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION wsrep_sync_wait = 1")
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def _wsrep(lab: halab.HaLab, host: str) -> dict[str, str]:
    return {k: v for k, v in lab.query(host, "SHOW GLOBAL STATUS LIKE 'wsrep%'")}


def _user_databases(lab: halab.HaLab, host: str) -> list[str]:
    own = {"information_schema", "mysql", "performance_schema", "sys"}
    return sorted(r[0] for r in lab.query(host, "SHOW DATABASES") if r[0] not in own)


def _through_vip_sql(lab: halab.HaLab, sql: str) -> str:
    """*sql* from the compute host to the VIP's database port (HAProxy), as the tool's DB account; the
    password goes in an option file on stdin, never in argv."""
    password = lab.state["controller"]["db_admin_password"]["old"]
    res = lab.inside(COMPUTE, ["mariadb", "--defaults-extra-file=/dev/stdin", "-h", VIP, "-P", "3306", "-u",
                               "osu_admin", "-N", "-B", "-e", sql], input=f"[client]\npassword={password}\n")
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def _curl(lab: halab.HaLab, args: list[str], stdin: str = "", timeout: int = 10) -> tuple[int, dict[str, str], str]:
    """curl from the compute host: status, headers (lower-case names), body."""
    res = lab.inside(COMPUTE, ["curl", "-s", "-i", "-m", str(timeout), *args], input=stdin)
    assert res.returncode == 0, res.stderr
    head, _, body = res.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _check_old_cluster(lab: halab.HaLab) -> str:
    uuids = set()
    for host in lab.old:
        status = _wsrep(lab, host)
        assert status["wsrep_cluster_size"] == "3", (host, status["wsrep_cluster_size"])
        assert status["wsrep_local_state_comment"] == "Synced", (host, status["wsrep_local_state_comment"])
        assert status["wsrep_cluster_status"] == "Primary"
        uuids.add(status["wsrep_cluster_state_uuid"])
    assert len(uuids) == 1, f"the old nodes are not one cluster: {uuids}"
    assert {"keystone", "glance"} <= set(_user_databases(lab, lab.old[2]))  # made on oldctl1, replicated
    return uuids.pop()


def _check_write_through_vip(lab: halab.HaLab) -> None:
    marker = secrets.token_hex(8)
    served_by = _through_vip_sql(lab, "CREATE DATABASE ha_probe; CREATE TABLE ha_probe.t (id INT PRIMARY KEY, "
                                      f"v VARCHAR(32)); INSERT INTO ha_probe.t VALUES (1, '{marker}'); "
                                      "SELECT @@hostname")
    assert served_by in lab.old, served_by
    try:
        for host in lab.old:
            assert _node_query(lab, host, "SELECT v FROM ha_probe.t WHERE id = 1") == [(marker,)], host
        for host in lab.new:
            assert "ha_probe" not in _user_databases(lab, host), host
    finally:
        _through_vip_sql(lab, "DROP DATABASE ha_probe")
    for host in lab.old:
        assert "ha_probe" not in _user_databases(lab, host)


def _check_one_vip_holder(lab: halab.HaLab) -> str:
    holders = lab.vip_holders()
    assert holders == ["oldctl1"], holders
    status, _, body = _curl(lab, [f"http://{VIP}:8080/"])
    assert status == 200 and json.loads(body)["host"] == holders[0], body
    neigh = json.loads(lab.inside(COMPUTE, ["ip", "-j", "neigh", "show", VIP]).stdout)
    assert [n["lladdr"] for n in neigh] == [lab.mac(holders[0])], neigh
    return holders[0]


def _check_glance_through_vip(lab: halab.HaLab, token: str) -> None:
    """From the compute host through HAProxy on the VIP, glance's real API: the lab's images listed, a new
    image uploaded through one glance-api and the same bytes downloaded from every old controller's (one
    shared store), then deleted (the lab ends as built)."""
    auth = f"X-Auth-Token: {token}\n"
    status, _, body = _curl(lab, ["-H", "@-", f"http://{VIP}:9292/v2/images"], auth)
    assert status == 200, body
    seeded = {i["id"]: i["checksum"] for i in lab.state["controller"]["images"]}
    assert len(seeded) == 2 and {i["id"]: i["checksum"] for i in json.loads(body)["images"]} == seeded, body
    status, _, body = _curl(lab, ["-X", "POST", "-H", "@-", "-H", "Content-Type: application/json", "-d",
                                  json.dumps({"name": "ha probe", "disk_format": "raw", "container_format": "bare"}),
                                  f"http://{VIP}:9292/v2/images"], auth)
    assert status == 201, body
    image = json.loads(body)["id"]
    data = secrets.token_hex(40000)
    status, headers, body = _curl(lab, ["-X", "PUT", "-H", f"X-Auth-Token: {token}", "-H",
                                        "Content-Type: application/octet-stream", "--data-binary", "@-",
                                        f"http://{VIP}:9292/v2/images/{image}/file"], data)
    assert status == 204, body
    stored_by, backends = headers["x-lab-backend"], set()
    for _ in range(2 * len(lab.old)):
        status, headers, body = _curl(lab, ["-H", "@-", f"http://{VIP}:9292/v2/images/{image}/file"], auth)
        assert status == 200 and body == data, (status, headers.get("x-lab-backend"), len(body))
        backends.add(headers["x-lab-backend"])
    assert backends == set(lab.old) and stored_by in backends, backends
    status, _, body = _curl(lab, ["-X", "DELETE", "-H", "@-", f"http://{VIP}:9292/v2/images/{image}"], auth)
    assert status == 204, body
    assert [r[0] for r in _node_query(lab, lab.old[2], "SELECT status FROM glance.images WHERE id = "
                                                       f"'{image}'")] == ["deleted"]


def _check_rabbit_cluster(lab: halab.HaLab) -> None:
    """Every old node sees the three running nodes of one cluster; AMQP through the VIP reaches it (what
    `status` reports the compute host sees there)."""
    nodes = [f"rabbit@{h}" for h in lab.old]
    for host in lab.old:
        assert lab.mq_nodes(host) == nodes, host
    assert halab.status(lab.dir)["from_compute"] == {"host": COMPUTE, "holder": "oldctl1", **APIS_UP,
                                                     "amqp_cluster": "osu-old"}


def _watch_vip_move(lab: halab.HaLab, expected: str) -> None:
    """Until the compute host reaches *expected* on the VIP; never two holders at any look meanwhile."""
    deadline = time.monotonic() + 60
    while True:
        holders = lab.vip_holders()
        assert len(holders) <= 1, f"two VIP holders: {holders}"
        if holders == [expected]:
            res = lab.inside(COMPUTE, ["curl", "-s", "-m", "2", f"http://{VIP}:8080/"])
            if res.returncode == 0 and json.loads(res.stdout)["host"] == expected:
                return
        assert time.monotonic() < deadline, f"the VIP did not move to {expected}: holders {holders}"
        time.sleep(0.1)


def _check_failover(lab: halab.HaLab, holder: str) -> None:
    """keepalived stops on the holder: the next priority takes the VIP (VRRP), keystone answers through
    it; started again, the first takes it back. The lab ends as it was built."""
    assert lab.vip_stop(holder) == {"keepalived": True}
    _watch_vip_move(lab, "oldctl2")
    status, headers, _ = _curl(lab, [f"http://{VIP}:5000/v3"])
    assert status == 200 and headers["x-lab-haproxy"] == "oldctl2"
    assert lab.vip_check(COMPUTE) == {"holder": "oldctl2", **APIS_UP, "amqp_cluster": "osu-old"}
    lab.vip(holder, ("keepalived",))
    _watch_vip_move(lab, holder)


def _check_new_side(lab: halab.HaLab, old_uuid: str) -> None:
    uuids = set()
    for host in lab.new:
        status = _wsrep(lab, host)
        assert status["wsrep_cluster_size"] == "3", (host, status["wsrep_cluster_size"])
        assert status["wsrep_local_state_comment"] == "Synced", host
        uuids.add(status["wsrep_cluster_state_uuid"])
        assert _user_databases(lab, host) == [], host
        assert (lab.upper(host) / "keystone" / "keystone.conf").is_file(), host
        assert f"({NEW})" in (lab.upper(host) / "glance" / "glance-api.conf").read_text(), host
        assert f"({NEW})" in (lab.upper(host) / "nova" / "nova.conf").read_text(), host
        for conf in ("neutron/neutron.conf", "cinder/cinder.conf"):
            assert f"({NEW})" in (lab.upper(host) / conf).read_text(), (host, conf)
        assert "host = new-ctl" in (lab.upper(host) / "cinder-host.conf").read_text(), host
        running = " ".join(lab.processes(host).values())
        for program in ("ks_wsgi.py", "glance-api", *NOVA_PROGRAMS, *NETVOL_PROGRAMS, "keepalived", "haproxy"):
            assert program not in running, (host, program)
        assert lab.mq_nodes(host) == [f"rabbit@{h}" for h in lab.new], host  # running: nova's RPC once the VIP moves
        images = lab.inside(host, ["ls", "-A", "/var/lib/glance/images"])  # a store of its own, empty
        assert images.returncode == 0 and images.stdout == "", (host, images.stdout)
        assert VIP not in lab.addresses(host)
    assert len(uuids) == 1 and old_uuid not in uuids, (old_uuid, uuids)


def _check_plan(lab: halab.HaLab) -> None:
    """The lab's plan names both groups as they are; `upgrade plan` shows them (reading the real source
    DB from the deploy host); the same plan with a VIP that pacemaker holds is refused by `upgrade run`
    (exit 2) before anything: no journal, the plan and the key unchanged. The lab is not upgraded here."""
    plan = plan_mod.load(lab.plan)
    for group, names in ((plan.source.group, lab.old), (plan.target.group, lab.new)):
        assert group is not None
        assert [m.name for m in group.members] == names
        assert [m.host.url for m in group.members] == [f"ssh://root@{lab.hosts[h]}" for h in names]
        assert (group.vip.address, group.vip.owner) == (f"{VIP}/24", "keepalived")
    assert plan.services == ("keystone", "glance", "placement", "nova", "neutron", "cinder"), plan.services
    res = tool(lab, "plan", str(lab.plan))
    assert res.returncode == 0, res.stderr
    assert "  group: oldctl1 ssh://root@198.51.100.31 (db, mq, api)" in res.stdout
    for step in ("ha.oldctl3.glance.stop_source", "glance.copy_images", "ha.newctl3.glance.start_target",
                 "ha.oldctl2.nova.stop_source", "nova.upgrade_schema", "ha.newctl3.placement.start_target",
                 "ha.newctl3.nova.start_target", "ha.oldctl2.neutron.stop_source", "ha.newctl3.neutron.start_target",
                 "ha.oldctl3.cinder.stop_source", "ha.newctl2.cinder.start_target", "ha.vip.start_new"):
        assert step in res.stdout, step
    pacemaker = lab.dir / "pacemaker-plan.toml"
    text = lab.plan.read_text()
    assert text.count('owner = "keepalived"') == 2
    pacemaker.write_text(text.replace('owner = "keepalived"', 'owner = "pacemaker", resource = "vip-management"'))
    try:
        before = {p.name: p.read_bytes() for p in (lab.plan, lab.dir / "dump.key", pacemaker)}
        res = tool(lab, "run", str(pacemaker))
        assert res.returncode == 2 and "whose VIP pacemaker holds (resource 'vip-management')" in res.stderr, \
            res.stderr
        assert not (lab.dir / "journal").exists()
        assert {p.name: p.read_bytes() for p in (lab.plan, lab.dir / "dump.key", pacemaker)} == before
    finally:
        pacemaker.unlink()


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """The module's one HA lab; taken down at the end unless the last test did (and checked) that."""
    _requirements()
    directory = tmp_path_factory.mktemp("ha") / "ha"
    halab.up(directory, computes=1, old=OLD, new=NEW)
    try:
        yield halab.HaLab.load(directory)
    finally:
        if (directory / "hostlab.json").exists():
            halab.down(directory)


def test_ha_lab_serves_through_the_vip_from_one_cluster(lab: halab.HaLab) -> None:
    old_uuid = _check_old_cluster(lab)
    _check_write_through_vip(lab)
    holder = _check_one_vip_holder(lab)
    token = _keystone_through_vip(lab, lab.old, holder)
    _check_glance_through_vip(lab, token)
    _check_rabbit_cluster(lab)
    _check_failover(lab, holder)
    _check_new_side(lab, old_uuid)
    _check_plan(lab)
    for host in lab.old:
        running = " ".join(lab.processes(host).values())
        for program in ("mariadbd", "keepalived", "haproxy", "ks_wsgi.py", "glance-api", *NOVA_PROGRAMS,
                        *NETVOL_PROGRAMS, "beam.smp", "epmd", "sshd"):
            assert program in running, (host, program)
    assert "bin/nova-compute" in _running(lab, COMPUTE)


# ---------------------------------------------------------------------- the upgrade chain on the same lab
def _checksums(lab: halab.HaLab, host: str, db: str = "keystone") -> dict[str, tuple]:
    """Per table of *db* on *host*'s own node, read causally: (rows, fingerprint), keystone's login date stamp
    left out (``scripts/lab/tablesums.py``: a login after midnight changes it though no one wrote)."""
    sums = tablesums.table_sums(lambda sql: _node_query(lab, host, sql), db)
    assert sums, (host, db)
    return sums


def _identities(lab: halab.HaLab, host: str) -> dict[str, list]:
    """What a client sees of keystone's data: users, projects and roles (ids and names)."""
    return {table: sorted(_node_query(lab, host, f"SELECT id, name FROM keystone.`{table}`"))
            for table in ("local_user", "project", "role")}


def _events(lab: halab.HaLab) -> list[dict]:
    return journal_events(lab.dir / "journal")


def _done(lab: halab.HaLab) -> set[str]:
    return {e["step"] for e in _events(lab) if e["kind"] == "done"}


def _running(lab: halab.HaLab, host: str) -> str:
    return " ".join(lab.processes(host).values())


def _keystone_through_vip(lab: halab.HaLab, side: list[str], holder: str | None = None) -> str:
    """A token through the VIP from the holder's HAProxy (*holder*'s when named), validated by every keystone
    of *side* (round robin), and the seeded project found: the data the clients know, served by that side.
    Returns the token."""
    ctl = lab.state["controller"]
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": ctl["admin_password"]}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    status, headers, body = _curl(lab, ["-X", "POST", "-H", "Content-Type: application/json", "-d", "@-",
                                        f"http://{VIP}:5000/v3/auth/tokens"], json.dumps(auth))
    assert status == 201, body
    assert headers["x-lab-haproxy"] in side and headers["x-lab-haproxy"] == (holder or headers["x-lab-haproxy"]), \
        headers
    token = headers["x-subject-token"]
    backends = set()
    for _ in range(3 * len(side)):
        status, headers, body = _curl(lab, ["-H", "@-", f"http://{VIP}:5000/v3/auth/tokens"],
                                      f"X-Auth-Token: {token}\nX-Subject-Token: {token}\n")
        assert status == 200, body
        assert json.loads(body)["token"]["project"]["name"] == "admin"
        backends.add(headers["x-lab-backend"])
    assert backends == set(side), backends
    status, _, body = _curl(lab, ["-H", "@-", f"http://{VIP}:5000/v3/projects?name=demo"], f"X-Auth-Token: {token}\n")
    assert status == 200 and len(json.loads(body)["projects"]) == 1, body
    return token


def _download(lab: halab.HaLab, token: str, image: str) -> tuple[str, bytes]:
    """An image's bytes from the compute host through the VIP (binary: curl's output read as bytes), with
    the glance-api that served them (HAProxy's header)."""
    res = subprocess.run(["nsenter", "-t", str(lab.pid1(COMPUTE)), "-a", "-r", "-w", "curl", "-s", "-f", "-m", "30",
                          "-D", "/dev/stderr", "-H", "@-", f"http://{VIP}:9292/v2/images/{image}/file"],
                         input=f"X-Auth-Token: {token}\n".encode(), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    backend = re.search(r"^x-lab-backend: *(\S+)", res.stderr.decode(), re.M | re.I)
    assert backend is not None, res.stderr
    return backend.group(1), res.stdout


def _glance_through_vip(lab: halab.HaLab, token: str, side: list[str]) -> None:
    """Glance's real API through the VIP served by *side*: the lab's images listed (ids, checksums), each
    downloaded from every glance-api of the side (round robin) with the bytes the lab uploaded."""
    status, headers, body = _curl(lab, ["-H", "@-", f"http://{VIP}:9292/v2/images"], f"X-Auth-Token: {token}\n")
    assert status == 200 and headers["x-lab-haproxy"] in side, (status, headers, body)
    seeded = lab.state["controller"]["images"]
    assert {i["id"]: i["checksum"] for i in json.loads(body)["images"]} == \
        {i["id"]: i["checksum"] for i in seeded}, body
    uploaded = dict(fullstack.IMAGES)
    backends = set()
    for n in range(2 * len(side)):
        image = seeded[n % len(seeded)]
        backend, data = _download(lab, token, image["id"])
        assert data == uploaded[image["name"]], (image["name"], backend, len(data))
        assert hashlib.md5(data).hexdigest() == image["checksum"]
        backends.add(backend)
    assert backends == set(side), backends


def _compute(lab: halab.HaLab, token: str, method: str, path: str, body: dict | None = None,
             timeout: int = 10) -> tuple[int, dict]:
    """nova's compute API through HAProxy on the VIP, from the compute host (microversion 2.79): status, body.
    What the client does not show: the list filtered by host across projects, the instance actions and the
    diagnostics (an RPC to the compute host's driver)."""
    args = ["-X", method, "-H", "@-", *(["-H", "Content-Type: application/json", "-d", json.dumps(body)] if body
                                       else [])]
    status, _, text = _curl(lab, [*args, f"http://{VIP}:8774/v2.1{path}"],
                            f"X-Auth-Token: {token}\nOpenStack-API-Version: compute 2.79\n", timeout)
    return status, json.loads(text) if text.strip() else {}


def _active_on_compute(lab: halab.HaLab, token: str) -> list[str]:
    """The servers of every project ACTIVE on the compute host, as the serving side's nova-api lists them."""
    status, body = _compute(lab, token, "GET", f"/servers?all_tenants=1&status=ACTIVE&host={COMPUTE}")
    assert status == 200, body
    return sorted(s["id"] for s in body["servers"])


def _reports_since(lab: halab.HaLab, token: str, since: float) -> str:
    """Until the compute host's nova-compute is ``up`` with a heartbeat newer than *since* (epoch seconds), as
    the serving side's nova records it (the compute reconnected to the side's RabbitMQ cluster through the
    VIP: its heartbeats reach that side's conductors); the heartbeat."""
    def fresh() -> str | None:
        status, body = _compute(lab, token, "GET", f"/os-services?binary=nova-compute&host={COMPUTE}")
        assert status == 200, body
        [row] = body["services"]
        beat = row["updated_at"]
        ok = row["state"] == "up" and beat and datetime.fromisoformat(beat).replace(tzinfo=UTC).timestamp() > since
        return beat if ok else None

    return wait_for(f"nova-compute on {COMPUTE} reporting after {since}", fresh, timeout=180, interval=1)


def _running_on_compute(lab: halab.HaLab, token: str, server: str) -> dict:
    """The server as its compute host's driver reports it to the serving side's nova (an RPC through the side's
    RabbitMQ cluster to the compute host), and the instance actions nova keeps of it."""
    status, diagnostics = _compute(lab, token, "GET", f"/servers/{server}/diagnostics", timeout=90)
    assert status == 200 and diagnostics["state"] == "running", diagnostics
    status, body = _compute(lab, token, "GET", f"/servers/{server}/os-instance-actions")
    assert status == 200, body
    return {"state": diagnostics["state"], "actions": sorted(a["action"] for a in body["instanceActions"])}

def _nova_serving(lab: halab.HaLab, side: list[str], other: list[str]) -> None:
    """Placement, nova, neutron and cinder run on every controller of *side*, on none of *other*; their APIs
    answer on the VIP."""
    for host in side:
        running = _running(lab, host)
        assert all(p in running for p in (*NOVA_PROGRAMS, *NETVOL_PROGRAMS)), (host, running)
    for host in other:
        running = _running(lab, host)
        assert not any(p in running for p in (*NOVA_PROGRAMS, *NETVOL_PROGRAMS)), (host, running)
    seen = lab.vip_check(COMPUTE)
    assert seen["placement"] and seen["nova"] and seen["neutron"] and seen["cinder"], seen


def _cloud(lab: halab.HaLab) -> grenade.Cloud:
    """The real python-openstackclient (the new release's, one long-lived shell) in the deploy host, with a
    0600 clouds.yaml naming keystone on the VIP alone: the lab's admin and a non-admin user of its own project
    (made through keystone on the VIP)."""
    ctl = lab.state["controller"]
    keystone = f"http://{VIP}:5000/v3"
    password = secrets.token_urlsafe(12)
    netvolhost._run(lab, None, "user", {"keystone": keystone, "admin_password": ctl["admin_password"],
                                        "project": grenade.PROJECT, "user": grenade.USER, "password": password})
    directory = lab.dir / "grenade"
    directory.mkdir(mode=0o700)
    osclient.write_clouds(directory / "clouds.yaml", keystone, {"admin": ("admin", ctl["admin_password"], "admin"),
                                                               grenade.PROJECT: (grenade.USER, password,
                                                                                 grenade.PROJECT)})
    return grenade.Cloud(directory, DEFAULT_VENV_ROOT / NEW, COMPUTE, ctl["images"][0]["id"],
                         where=tuple(lab.in_deploy([])))


#: what the client makes before the run and finds after the resume and the revert (scripts.lab.grenade's kinds)
KINDS = (grenade.COMPUTE, grenade._netvol(grenade_netvol.NETWORK), grenade._netvol(grenade_netvol.VOLUME))


def _client_verify(c: grenade.Cloud, made: dict, since: float) -> None:
    """Every resource the client made before the run, shown by it through the VIP as made (the server ACTIVE on
    the compute host, whose nova-compute reports after *since*)."""
    for kind in KINDS:
        kind.verify(c, made[kind.name], datetime.fromtimestamp(since, UTC))


def _stop_node(lab: halab.HaLab, host: str) -> None:
    """The Galera node of *host* shut down (SIGTERM to its mariadbd), until its process is gone."""
    pids = [pid for pid, cmd in lab.processes(host).items() if cmd.split(" ")[0].endswith("mariadbd")]
    assert len(pids) == 1, (host, pids)
    os.kill(pids[0], signal.SIGTERM)
    while os.path.exists(f"/proc/{pids[0]}"):
        time.sleep(0.05)


def _start_node(lab: halab.HaLab, host: str) -> None:
    """The node of *host* started again: it rejoins its cluster by a state transfer."""
    lab.node(host, "galera", lab.galera_payload(host))


def _one_holder(lab: halab.HaLab, side: list[str]) -> str:
    holders = lab.vip_holders()
    assert len(holders) == 1 and holders[0] in side, holders
    neigh = lab.inside(COMPUTE, ["arping", "-b", "-c", "2", "-I", "eth0", VIP])
    assert lab.mac(holders[0]) in neigh.stdout.lower() and neigh.stdout.lower().count("reply from") >= 1
    for other in lab.hosts:
        if other not in (holders[0], "deploy") and other in halab.CONTROLLERS:
            assert lab.mac(other) not in neigh.stdout.lower(), (other, neigh.stdout)
    return holders[0]


def _config_hashes(lab: halab.HaLab) -> dict[str, str]:
    """sha256 of every file of keystone's and glance's configuration on each controller."""
    out = {}
    for host in (*lab.old, *lab.new):
        res = lab.inside(host, ["sh", "-c", "find /etc/keystone /etc/glance -type f -print0 | sort -z | "
                                            "xargs -0 -r sha256sum"])
        assert res.returncode == 0 and "/etc/keystone/" in res.stdout, (host, res.stderr)
        out[host] = res.stdout
    return out


def test_ha_member_guard_refuses_an_old_member_among_the_new_and_one_controller_twice(lab: halab.HaLab) -> None:
    """Every pair of members compared by what they are: the lab's plan with an old controller listed as a new
    member (its own name and address, copied over), or with one new controller listed twice (its address
    spelled with the port, its host key named) is refused by `upgrade check` and `upgrade run` (exit 2)
    naming both members and the fix — and nothing changed anywhere: no journal, the plan and key, every old
    node's tables (CHECKSUM TABLE), the new nodes' databases, every controller's keystone and glance
    configuration files. (The lab's own plan passes the same guard: the chain's `upgrade run` below.)"""
    text = lab.plan.read_text()
    third = f'{{name = "newctl3", host = "ssh://root@{lab.hosts["newctl3"]}"'
    assert text.count(third) == 1
    old2, new2 = lab.hosts["oldctl2"], lab.hosts["newctl2"]
    bad = {
        # its DB node refuses the new side's account: the directories prove it is oldctl2
        "old-as-new": (text.replace(third, f'{{name = "oldctl2", host = "ssh://root@{old2}"'), [
            "target member oldctl2: `target.etc` (/etc) is the same directory as source member oldctl2's "
            "`source.etc` (/etc)", "it is the old controller oldctl2, the run would write into its files",
            "take oldctl2 out of `target.members`"]),
        "twice": (text.replace(third, f'{{name = "newctl3", host = "ssh://root@{new2}:22", '
                                      'ssh_options = ["-o", "HostKeyAlias=newctl2"]'), [
            f"target member newctl2 ({new2}:3306) and target member newctl3 ({new2}:3306) reach one DB server "
            "(hostname newctl2",
            "target member newctl2 and target member newctl3: `target.etc` (/etc) is the same directory on both",
            "list each controller of `target.members` once"]),
    }
    journal = lab.dir / "journal"
    old_sums = {h: _checksums(lab, h) for h in lab.old}
    new_dbs = {h: _user_databases(lab, h) for h in lab.new}
    configs = _config_hashes(lab)
    for name, (variant, needles) in bad.items():
        plan = lab.dir / f"member-{name}-plan.toml"
        assert variant != text
        plan.write_text(variant)
        try:
            files = {p.name: p.read_bytes() for p in (lab.plan, lab.dir / "dump.key", plan)}
            if name == "old-as-new":  # what `upgrade check` shows of it (a second check would show the same)
                res = tool(lab, "check", str(plan))
                assert res.returncode == 2 and re.search(r"^FAIL +identity members +target member oldctl2: ",
                                                         res.stdout, re.M), (name, res.stdout)
            res = tool(lab, "run", str(plan))
            assert res.returncode == 2, (name, res.stdout + res.stderr)
            assert "the groups' members are not distinct controllers — nothing was changed" in res.stderr, res.stderr
            for needle in needles:
                assert needle in res.stderr, (name, needle, res.stderr)
            assert "Traceback" not in res.stderr
            assert lab.state["controller"]["db_admin_password"]["old"] not in res.stdout + res.stderr
            assert not journal.exists()
            assert {p.name: p.read_bytes() for p in (lab.plan, lab.dir / "dump.key", plan)} == files
        finally:
            plan.unlink()
    assert {h: _checksums(lab, h) for h in lab.old} == old_sums  # neither refused plan changed anything
    assert {h: _user_databases(lab, h) for h in lab.new} == new_dbs
    assert _config_hashes(lab) == configs


def test_ha_run_killed_in_the_import_and_the_vip_move_resumed_then_reverted(lab: halab.HaLab) -> None:
    # the workload, made by the real client through the VIP (its user, flavor, network, volume first: the keystone
    # tables below are read after): a network, a volume and a server ACTIVE on the compute host, its driver
    # answering
    token = _keystone_through_vip(lab, lab.old)
    c = _cloud(lab)
    made = {kind.name: kind.create(c) for kind in KINDS}
    server = made["compute"]["server"]["id"]
    assert made["compute"]["server"]["status"] == "ACTIVE" and made["compute"]["server"]["host"] == COMPUTE
    assert _active_on_compute(lab, token) == [server]
    assert _running_on_compute(lab, token, server) == {"state": "running", "actions": ["create"]}
    old_sums = {h: _checksums(lab, h) for h in lab.old}
    assert all(s == old_sums[lab.old[0]] for s in old_sums.values())
    old_data = _identities(lab, lab.old[0])
    old_glance = {h: _checksums(lab, h, "glance") for h in lab.old}
    journal = lab.dir / "journal"

    # an old node down before the run: reported, and the run reads the working one (oldctl1)
    _stop_node(lab, "oldctl3")
    res = tool(lab, "check", str(lab.plan))
    assert re.search(r"^WARN +cluster oldctl3 +source DB node oldctl3 \(198\.51\.100\.33:3306\) cannot be reached",
                     res.stdout, re.M), res.stdout
    assert re.search(r"^OK +cluster oldctl1 +source DB node oldctl1: Synced, in a cluster of 2; the run works "
                     r"through it", res.stdout, re.M), res.stdout
    # the run itself by a plan that works through the node that is down (oldctl3): `check` names the healthy
    # member the run takes instead, the first in the plan's order (oldctl1), and the run records it, so the
    # resumes and the revert below (which read this plan from the journal) work through the same member
    down = lab.dir / "down-source-plan.toml"
    text = lab.plan.read_text()
    first, third = lab.hosts[lab.old[0]], lab.hosts["oldctl3"]
    source = text[text.index("[source]"):text.index("[target]")]
    down.write_text(text.replace(source, source.replace(f"root@{first}\"     #", f"root@{third}\"     #")
                                 .replace(f'address = "{first}"', f'address = "{third}"')
                                 .replace(f'\nname = "{lab.old[0]}"\n', '\nname = "oldctl3"\n')))
    assert down.read_text() != text and plan_mod.load(down).source.host_spec.alias == "oldctl3"
    rows = {r["check"]: r for r in json.loads(tool(lab, "check", str(down), "-f", "json").stdout)}
    assert rows["cluster oldctl3"]["status"] == "WARN" and "cannot be reached" in rows["cluster oldctl3"]["detail"] \
        and rows["cluster oldctl3"]["remedy"].startswith("the run works through oldctl1 instead"), rows
    assert rows["cluster oldctl1"]["status"] == "OK" and "the run works through it" in rows["cluster oldctl1"]["detail"]
    assert rows["db source"]["status"] == "OK", rows  # oldctl1's node, not the one down

    # killed inside the import into newctl1's Galera node: every old keystone stopped, the VIP still old
    res = tool(lab, "run", str(down), failpoint="keystone.import_db:inside")
    assert res.returncode == -signal.SIGKILL, res.stderr
    [chosen] = [json.loads(e["result"]) for e in _events(lab) if e["machine"] == "working-source"]
    assert chosen == {"working": "oldctl1", "planned": "oldctl3"}, chosen
    done = _done(lab)
    assert {"ha.oldctl2.keystone.stop_source", "ha.oldctl3.keystone.stop_source", "keystone.dump_source"} <= done
    assert "keystone.import_db" not in done
    for host in lab.old:
        assert "ks_wsgi.py" not in _running(lab, host), host
    assert lab.vip_holders() == ["oldctl1"]

    # a new node down: the resume imports, then fails naming it; it rejoins, and the next resume goes on
    _stop_node(lab, "newctl3")
    res = tool(lab, "resume", "--journal", str(journal))
    assert res.returncode == 1, res.stderr
    assert "ha.cluster.replicated failed on newctl3: the new cluster does not hold the import on every node" \
        in res.stderr and "target DB node newctl3 (198.51.100.43:3306) cannot be reached" in res.stderr, res.stderr
    assert "keystone.import_db" in _done(lab) and "ha.newctl2.keystone.start_target" not in _done(lab)
    assert lab.vip_holders() == ["oldctl1"]
    _start_node(lab, "newctl3")

    # resumed, killed again inside the VIP move (the old keepalived stopped, the new one started)
    res = tool(lab, "resume", "--journal", str(journal), failpoint="ha.vip.start_new:inside")
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert len(lab.vip_holders()) <= 1, lab.vip_holders()
    done = _done(lab)
    assert {"keystone.import_db", "ha.cluster.replicated", "ha.newctl2.keystone.start_target",
            "ha.newctl3.keystone.start_target", "ha.vip.stop_old"} <= done
    assert "ha.vip.start_new" not in done

    res = tool(lab, "resume", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    _one_holder(lab, lab.new)
    token = _keystone_through_vip(lab, lab.new)
    _glance_through_vip(lab, token, lab.new)
    # nova's databases went through the import into newctl1 and were found on all three new nodes
    [replicated] = [json.loads(e["result"]) for e in _events(lab)
                    if e["step"] == "ha.cluster.replicated" and e["kind"] == "done"]
    assert {"nova_api", "nova", "nova_cell0", "placement", "neutron", "cinder"} <= set(replicated["databases"]), \
        replicated
    # the workload through the VIP, now the new side's (its RabbitMQ cluster too): the server ACTIVE on the
    # compute host, whose driver answers the new side's nova; a new server boots there
    _nova_serving(lab, lab.new, lab.old)
    assert lab.vip_check(COMPUTE)["amqp_cluster"] == "osu-new"
    [moved] = [e["ts"] for e in _events(lab) if e["step"] == "ha.vip.check" and e["kind"] == "done"]
    # the window the tool reports lasts until the VIP answers from the new side (the cut-over), not only
    # until the first new member verified its services
    win = json.loads(tool(lab, "status", "--journal", str(journal), "-f", "json").stdout)["window"]
    cut = next(r for r in win["services"] if r["service"] == "cutover")
    assert cut["closed_by"] == "verified" and cut["end"] == win["total"]["end"] == window.stamp(moved), win
    _reports_since(lab, token, moved)
    # the client through the VIP, now served by the new side: the network, the volume and the server as made,
    # new ones of each made and deleted, and one more server left running (a write the old side never saw)
    _client_verify(c, made, moved)
    for kind in KINDS:
        kind.new_work(c)
    assert _active_on_compute(lab, token) == [server]
    assert _running_on_compute(lab, token, server) == {"state": "running", "actions": ["create"]}
    after = grenade._boot(c, "ha-after")["id"]
    assert _active_on_compute(lab, token) == sorted([server, after])
    for host in lab.new:
        assert "glance-api" in _running(lab, host), host
    new_sums = {h: _checksums(lab, h) for h in lab.new}
    assert all(s == new_sums[lab.new[0]] for s in new_sums.values()), new_sums
    assert _identities(lab, lab.new[2]) == old_data
    for host in lab.old:
        running = _running(lab, host)
        assert "keepalived" not in running and "ks_wsgi.py" not in running and "glance-api" not in running, host
    _start_node(lab, "oldctl3")  # back into the old cluster, for the revert's keystone there
    assert {h: _checksums(lab, h) for h in lab.old} == old_sums  # only read
    assert {h: _checksums(lab, h, "glance") for h in lab.old} == old_glance

    # the server booted on the new side is a write the old databases never saw: going back drops it, by the
    # operator's explicit choice (kept in the vault)
    res = tool(lab, "revert", "--journal", str(journal), "--discard-new-writes")
    assert res.returncode == 0, res.stderr
    reverted = time.time()
    assert _one_holder(lab, lab.old) == "oldctl1"
    token = _keystone_through_vip(lab, lab.old)
    _glance_through_vip(lab, token, lab.old)
    _nova_serving(lab, lab.old, lab.new)
    assert lab.vip_check(COMPUTE)["amqp_cluster"] == "osu-old"
    _reports_since(lab, token, reverted)
    _client_verify(c, made, reverted)  # the client through the VIP again: the old side shows them as made
    c.close()
    assert _active_on_compute(lab, token) == [server]  # the server booted on the new side went with its data
    assert _running_on_compute(lab, token, server) == {"state": "running", "actions": ["create"]}
    assert {h: _checksums(lab, h) for h in lab.old} == old_sums
    assert {h: _checksums(lab, h, "glance") for h in lab.old} == old_glance
    for host in lab.new:
        running = _running(lab, host)
        assert "keepalived" not in running and "ks_wsgi.py" not in running and "glance-api" not in running, host
    undone = {e["step"] for e in _events(lab) if e["kind"] == "undone"}
    assert {"ha.vip.start_new", "ha.vip.stop_old", "ha.oldctl2.keystone.stop_source",
            "ha.newctl3.keystone.install_config", "ha.oldctl3.glance.stop_source",
            "ha.newctl2.glance.start_target"} <= undone


def test_down_leaves_nothing(lab: halab.HaLab) -> None:
    """`down` after all that: no process of any host left, no namespace, no state file."""
    processes: dict[int, str] = {}
    for host in lab.hosts:
        if host != "deploy":
            processes.update(lab.processes(host))
    assert processes
    started = {pid: _start_time(pid) for pid in processes}
    halab.down(lab.dir)
    alive = {pid: processes[pid] for pid, t in started.items() if t is not None and _start_time(pid) == t}
    assert not alive, alive
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lab.prefix not in left and not netns.exists(f"{lab.prefix}{netns.SWITCH}")
    assert not (lab.dir / "hostlab.json").exists()
