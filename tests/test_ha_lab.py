"""The HA flavour of the multi-host lab (scripts/lab/ha.py), built once and checked as a client sees it.

Real parts only: network namespaces with sshd, three MariaDB Galera nodes per side (Debian's
galera-4), a RabbitMQ cluster per side, keepalived holding the VIP by VRRP, HAProxy in front of the
database, keystone, glance and AMQP, keystone and glance of the old release serving from the cluster
(glance's images on a store every controller shares). The checks run from a compute host (the
VIP is all it knows) and read each node's own view of its cluster. One lab for the module,
built in one test (its phases in order): the lab takes two minutes to build, a second build
would double that. Needs root; under CI a missing part fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pymysql
import pytest

from scripts.lab import ha as halab
from scripts.lab import netns
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.hagalera import PROVIDER
from tests.conftest import require
from tests.test_multihost import tool
from upgrade import plan as plan_mod

pytestmark = [pytest.mark.lab, pytest.mark.slow]

OLD, NEW = "2025.2", "2026.1"
VIP = halab.VIP
COMPUTE = "compute1"


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


def _curl(lab: halab.HaLab, args: list[str], stdin: str = "") -> tuple[int, dict[str, str], str]:
    """curl from the compute host: status, headers (lower-case names), body."""
    res = lab.inside(COMPUTE, ["curl", "-s", "-i", "-m", "10", *args], input=stdin)
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


def _check_keystone_through_vip(lab: halab.HaLab, holder: str) -> str:
    ctl = lab.state["controller"]
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": ctl["admin_password"]}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    status, headers, body = _curl(lab, ["-X", "POST", "-H", "Content-Type: application/json", "-d", "@-",
                                        f"http://{VIP}:5000/v3/auth/tokens"], json.dumps(auth))
    assert status == 201, body
    assert headers["x-lab-haproxy"] == holder
    token = headers["x-subject-token"]
    backends = set()
    for _ in range(2 * len(lab.old)):  # round robin: every old keystone validates it from the cluster
        status, headers, body = _curl(lab, ["-H", "@-", f"http://{VIP}:5000/v3/auth/tokens"],
                                      f"X-Auth-Token: {token}\nX-Subject-Token: {token}\n")
        assert status == 200, body
        assert json.loads(body)["token"]["project"]["name"] == "admin"
        backends.add(headers["x-lab-backend"])
    assert backends == set(lab.old), backends
    status, _, body = _curl(lab, ["-H", "@-", f"http://{VIP}:5000/v3/projects?name=demo"], f"X-Auth-Token: {token}\n")
    assert status == 200 and len(json.loads(body)["projects"]) == 1, body
    return token


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
    assert halab.status(lab.dir)["from_compute"] == {"host": COMPUTE, "holder": "oldctl1", "keystone": True,
                                                     "glance": True, "amqp_cluster": "osu-old"}


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
    assert lab.vip_check(COMPUTE) == {"holder": "oldctl2", "keystone": True, "glance": True,
                                      "amqp_cluster": "osu-old"}
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
        running = " ".join(lab.processes(host).values())
        for program in ("ks_wsgi.py", "glance-api", "beam.smp", "keepalived", "haproxy"):
            assert program not in running, (host, program)
        assert lab.mq_nodes(host) == [], host
        images = lab.inside(host, ["ls", "-A", "/var/lib/glance/images"])  # a store of its own, empty
        assert images.returncode == 0 and images.stdout == "", (host, images.stdout)
        assert VIP not in lab.addresses(host)
    assert len(uuids) == 1 and old_uuid not in uuids, (old_uuid, uuids)


def _check_plan(lab: halab.HaLab) -> None:
    """The lab's plan names both groups as they are; `upgrade plan` shows them (reading the real source
    DB from the deploy host); `upgrade run` refuses it, leaving no journal."""
    plan = plan_mod.load(lab.plan)
    for group, names in ((plan.source.group, lab.old), (plan.target.group, lab.new)):
        assert group is not None
        assert [m.name for m in group.members] == names
        assert [m.host.url for m in group.members] == [f"ssh://root@{lab.hosts[h]}" for h in names]
        assert (group.vip.address, group.vip.owner) == (f"{VIP}/24", "keepalived")
    res = tool(lab, "plan", str(lab.plan))
    assert res.returncode == 0, res.stderr
    assert "  group: oldctl1 ssh://root@198.51.100.31 (db, mq, api)" in res.stdout
    before = {p.name: p.read_bytes() for p in (lab.plan, lab.dir / "dump.key")}
    res = tool(lab, "run", str(lab.plan))
    assert res.returncode == 2 and "names an HA control plane" in res.stderr, res.stderr
    assert not (lab.dir / "journal").exists()
    assert {p.name: p.read_bytes() for p in (lab.plan, lab.dir / "dump.key")} == before


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def test_ha_lab_serves_through_the_vip_from_one_cluster_and_down_leaves_nothing(tmp_path: Path) -> None:
    _requirements()
    directory = tmp_path / "ha"
    halab.up(directory, computes=1, old=OLD, new=NEW)
    processes: dict[int, str] = {}
    try:
        lab = halab.HaLab.load(directory)
        old_uuid = _check_old_cluster(lab)
        _check_write_through_vip(lab)
        holder = _check_one_vip_holder(lab)
        token = _check_keystone_through_vip(lab, holder)
        _check_glance_through_vip(lab, token)
        _check_rabbit_cluster(lab)
        _check_failover(lab, holder)
        _check_new_side(lab, old_uuid)
        _check_plan(lab)
        for host in lab.old:
            running = " ".join(lab.processes(host).values())
            for program in ("mariadbd", "keepalived", "haproxy", "ks_wsgi.py", "glance-api", "beam.smp", "epmd",
                            "sshd"):
                assert program in running, (host, program)
        for host in lab.hosts:
            if host != "deploy":
                processes.update(lab.processes(host))
        started = {pid: _start_time(pid) for pid in processes}
        prefix = lab.prefix
    finally:
        halab.down(directory)
    alive = {pid: processes[pid] for pid, t in started.items() if t is not None and _start_time(pid) == t}
    assert not alive, alive
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in left and not netns.exists(f"{prefix}{netns.SWITCH}")
    assert not (directory / "hostlab.json").exists()
