"""Glance, placement, nova, neutron and cinder on a lab controller tree: configs,
databases and users, the real schema of the controller's release (``glance-manage db sync``,
``placement-manage db sync``, ``nova-manage api_db sync``/``cell_v2``/``db sync``, ``neutron-db-manage upgrade heads``,
``cinder-manage db sync``), and realistic rows on the old controller: images with non-ASCII
properties and a file in the store, nova services of the old host, instances with iSCSI block
devices (CHAP secrets in connection_info), cinder volumes and attachments on the old portal,
neutron agents with Havana-era timers. With an ``Api`` (the full lab of ``python -m scripts.lab
up``), glance-api serves for real behind the lab's keystone and its images are made through that
API; with nova settings in the ``Api`` placement and nova serve for real too (``scripts.lab.novaserve``);
the other APIs are not served here: their units are stand-ins under ``scripts.lab.units``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.lab import novaconf, novaserve, schemacache
from scripts.lab.layout import UNITS as UNITS  # re-exported: the stack's units live with the layout
from scripts.lab.mariadb import MariaDB
from scripts.lab.proc import LabError, clean_env

SERVICES = ("glance", "placement", "nova", "neutron", "cinder")
DATABASES = {"glance": ("glance",), "placement": ("placement",), "nova": ("nova_api", "nova", "nova_cell0"),
             "neutron": ("neutron",), "cinder": ("cinder",)}
PASSWORDS = {"glance": "gl-DB-pw-1401", "placement": "pl-DB-pw-1502", "nova": "nova-DB-pw-2702",
             "neutron": "nt-DB-pw-3903", "cinder": "ci-DB-pw-4104"}
MQ_URL = "rabbit://openstack:mq-Secret-77@127.0.0.1:5672/"
#: documentation addresses (RFC 5737): data in rows and configs only, never contacted
OLD_PORTAL, NEW_PORTAL = "198.51.100.4", "198.51.100.9"
OLD_HOST, NEW_HOST = "old-ctl", "new-ctl"
IMAGE_BYTES = b"QFI\xfb" + bytes(range(256)) * 64


@dataclass(frozen=True)
class Api:
    """What a controller needs to serve glance for real: the lab keystone, glance's port (shared by
    both controllers: it stands for the management address), glance's service-user password, and
    where glance-api listens (loopback in the local lab; 0.0.0.0 on a multi-host lab host, so that
    the host's own address and the management address reach it)."""

    keystone_url: str
    glance_port: int
    glance_password: str
    bind: str = "127.0.0.1"
    #: placement and nova served for real (``scripts.lab.novaserve.Settings``); None: stand-ins
    nova: Any = None


@dataclass
class Stack:
    """One controller tree with glance/nova/neutron/cinder configs and databases of its release."""

    root: Path
    release: str
    venv: Path
    db: MariaDB
    api: Api | None = None

    def etc(self, service: str) -> Path:
        return self.root / "etc" / service

    def url(self, service: str, db: str) -> str:
        return f"mysql+pymysql://{service}:{PASSWORDS[service]}@127.0.0.1:{self.db.port}/{db}"

    def manage(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        argv = [str(self.venv / "bin" / tool), *args]
        res = subprocess.run(argv, env=clean_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             cwd=self.root)
        if res.returncode != 0:
            raise LabError(f"{' '.join(argv)} ({self.release}) rc {res.returncode}:\n"
                           f"{(res.stdout + res.stderr)[-3000:]}")
        return res


def _glance_api(s: Stack) -> tuple[str, str]:
    """[DEFAULT] lines and sections that make glance-api serve behind keystone (lab-recipes §6)."""
    if s.api is None:
        return "", ""
    lib, etc = s.root / "var" / "lib", s.etc("glance")
    return (f"bind_host = {s.api.bind}\nbind_port = {s.api.glance_port}\n", f"""
[keystone_authtoken]
www_authenticate_uri = {s.api.keystone_url}
auth_url = {s.api.keystone_url}
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = glance
password = {s.api.glance_password}

[paste_deploy]
flavor = keystone
config_file = {etc}/glance-api-paste.ini

[os_glance_staging_store]
filesystem_store_datadir = {lib}/glance/staging/

[os_glance_tasks_store]
filesystem_store_datadir = {lib}/glance/tasks/

[oslo_concurrency]
lock_path = {lib}/glance/lock
""")


def _configs(s: Stack) -> dict[str, dict[str, str]]:
    lib = s.root / "var" / "lib"
    api_defaults, api_sections = _glance_api(s)
    served = _served(s)
    if served:
        placement = {"placement.conf": novaserve.placement_conf(s.root, s.release, served,
                                                                s.url("placement", "placement"))}
        nova = {"nova.conf": novaserve.controller_conf(s.root, s.release, served, s.url("nova", "nova_api"),
                                                       s.url("nova", "nova"))}
    return {
        "glance": {"glance-api.conf": f"""\
# glance-api.conf of the lab controller {s.root} ({s.release})
[DEFAULT]
enabled_backends = fs:file
workers = 1
{api_defaults}
[database]
connection = {s.url("glance", "glance")}

[fs]
filesystem_store_datadir = {lib}/glance/images/

[glance_store]
default_backend = fs
{api_sections}"""},
        "placement": placement if served else {"placement.conf": f"""\
# placement.conf of the lab controller {s.root} ({s.release})
[DEFAULT]

[placement_database]
connection = {s.url("placement", "placement")}
"""},
        "nova": nova if served else {"nova.conf": f"""\
# nova.conf of the lab controller {s.root} ({s.release})
[DEFAULT]
transport_url = {MQ_URL}
my_ip = 127.0.0.1
state_path = {lib}/nova

[api_database]
connection = {s.url("nova", "nova_api")}

[database]
connection = {s.url("nova", "nova")}

[service_user]
send_service_user_token = true
"""},
        "neutron": {"neutron.conf": f"""\
# neutron.conf of the lab controller {s.root} ({s.release})
[DEFAULT]
core_plugin = ml2
service_plugins = router
transport_url = {MQ_URL}
# carried over from Havana days
agent_down_time = 9

[agent]
report_interval = 4

[database]
connection = {s.url("neutron", "neutron")}
""", "plugins/ml2/ml2_conf.ini": """\
[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = openvswitch
"""},
        "cinder": {"cinder.conf": f"""\
# cinder.conf of the lab controller {s.root} ({s.release})
[DEFAULT]
transport_url = {MQ_URL}
enabled_backends = lvm
state_path = {lib}/cinder

[database]
connection = {s.url("cinder", "cinder")}

[lvm]
volume_driver = cinder.volume.drivers.lvm.LVMVolumeDriver
volume_group = cinder-volumes
target_helper = tgtadm
target_ip_address = {OLD_PORTAL}
"""},
    }


def _served(s: Stack) -> Any:
    """The stack's nova settings where placement and nova serve for real (their configs hold secrets)."""
    return s.api.nova if s.api is not None else None


def make_stack(root: Path, release: str, db: MariaDB, venv_root: Path, services: tuple[str, ...] = SERVICES,
               api: Api | None = None) -> Stack:
    """Configs, databases, users and the release's real schema (a freshly deployed controller)."""
    s = install(root, release, db, venv_root, services, api)
    db.start()
    for service in services:
        for name in DATABASES[service]:
            db.execute(f"CREATE DATABASE IF NOT EXISTS `{name}`")
            db.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO %s@'127.0.0.1' IDENTIFIED BY %s",
                       args=(service, PASSWORDS[service]))
    sync(s, services)
    return s


def install(root: Path, release: str, db: MariaDB, venv_root: Path, services: tuple[str, ...] = SERVICES,
            api: Api | None = None) -> Stack:
    """The services' configs and directories only (no database touched): a controller whose packages are
    installed and configured, its database still to come (the HA lab's new controllers)."""
    s = Stack(Path(root).resolve(), release, Path(venv_root) / release, db, api)
    for service in services:
        for rel, text in _configs(s)[service].items():
            path = s.etc(service) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if _served(s) and service in ("placement", "nova"):
                novaconf.write_private(path, text)  # service users' and broker passwords: 0640
            else:
                path.write_text(text)
        (s.root / "var" / "lib" / service).mkdir(parents=True, exist_ok=True)
    for sub in ("images", "staging", "tasks", "lock"):
        (s.root / "var" / "lib" / "glance" / sub).mkdir(parents=True, exist_ok=True)
    if api and "glance" in services:  # the release's own paste pipeline, next to its config
        shutil.copyfile(s.venv / "etc" / "glance" / "glance-api-paste.ini", s.etc("glance") / "glance-api-paste.ini")
    return s


def sync(s: Stack, services: tuple[str, ...] = SERVICES) -> None:
    """Each service's real schema of the stack's release (loaded from the run's schema cache when a
    test run has one: scripts.lab.schemacache), the services side by side: each syncs databases of its
    own, and most of a ``*-manage`` run is its start-up and its round trips to the server, which overlap."""
    with ThreadPoolExecutor(max_workers=max(1, len(services))) as pool:
        jobs = [pool.submit(schemacache.synced, s.db, s.venv, service, DATABASES[service],
                            lambda service=service: _sync(s, service))
                for service in sorted(services, key=lambda x: x != "nova")]  # nova's five commands first
    for job in jobs:
        job.result()  # the first failure, as the loop raised it before


def _sync(s: Stack, service: str) -> None:
    if service == "glance":
        s.manage("glance-manage", "--config-file", str(s.etc("glance") / "glance-api.conf"), "db", "sync")
    if service == "placement":
        s.manage("placement-manage", "--config-file", str(s.etc("placement") / "placement.conf"), "db", "sync")
    if service == "nova":
        conf = ("--config-file", str(s.etc("nova") / "nova.conf"))
        s.manage("nova-manage", *conf, "api_db", "sync")
        s.manage("nova-manage", *conf, "cell_v2", "map_cell0", "--database_connection", s.url("nova", "nova_cell0"))
        if "cell1" not in s.manage("nova-manage", *conf, "cell_v2", "list_cells").stdout:
            s.manage("nova-manage", *conf, "cell_v2", "create_cell", "--name", "cell1")
        s.manage("nova-manage", *conf, "db", "sync")
    if service == "neutron":
        s.manage("neutron-db-manage", "--config-file", str(s.etc("neutron") / "neutron.conf"), "--config-file",
                 str(s.etc("neutron") / "plugins/ml2/ml2_conf.ini"), "upgrade", "heads")
    if service == "cinder":
        s.manage("cinder-manage", "--config-file", str(s.etc("cinder") / "cinder.conf"), "db", "sync")


# ---------------------------------------------------------------------- rows
def insert(db: MariaDB, schema: str, table: str, values: dict[str, Any]) -> None:
    """INSERT with every NOT NULL column without a default filled with a neutral value, so the
    rows fit the schema of any release."""
    cols = db.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema=%s AND "
                      "table_name=%s AND is_nullable='NO' AND column_default IS NULL AND extra NOT LIKE "
                      "'%%auto_increment%%'", args=(schema, table))
    row = dict(values)
    for name, typ in cols:
        if name in row:
            continue
        row[name] = ("2026-01-01 00:00:00" if typ in ("datetime", "timestamp") else
                     0 if typ in ("int", "tinyint", "smallint", "bigint", "float", "double", "decimal") else "")
    names = ", ".join(f"`{k}`" for k in row)
    marks = ", ".join(["%s"] * len(row))
    db.execute(f"INSERT INTO `{table}` ({names}) VALUES ({marks})", db=schema, args=tuple(row.values()))


def iscsi_info(volume_id: str, portal: str, lun: int) -> str:
    """connection_info as nova and cinder store it for an LVM/iSCSI volume with CHAP (seed, facts §4.8)."""
    iqn = f"iqn.2010-10.org.openstack:volume-{volume_id}"
    return json.dumps({"driver_volume_type": "iscsi", "serial": volume_id, "data": {
        "access_mode": "rw", "target_discovered": False, "encrypted": False, "qos_specs": None,
        "target_iqn": iqn, "target_portal": f"{portal}:3260", "volume_id": volume_id, "target_lun": lun,
        "device_path": f"/dev/disk/by-path/ip-{portal}:3260-iscsi-{iqn}-lun-{lun}",
        "auth_password": f"CHAP-{volume_id[:8]}-s3cret", "auth_username": f"chap-{volume_id[:6]}",
        "auth_method": "CHAP"}})


def to_latin1(db: MariaDB, schema: str) -> None:
    """Every table of *schema* latin1, as in a Havana-era dump. MariaDB will not change a column a
    foreign key uses (error 1832, even with checks off): drop the foreign keys, convert, re-add."""
    conn = db.connect(schema)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION foreign_key_checks = 0")
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema=%s", (schema,))
            tables = [r[0] for r in cur.fetchall()]
            fks = []
            for t in tables:
                cur.execute(f"SHOW CREATE TABLE `{t}`")
                for line in cur.fetchone()[1].splitlines():
                    line = line.strip().rstrip(",")
                    if line.startswith("CONSTRAINT") and "FOREIGN KEY" in line:
                        fks.append((t, line.split("`")[1], line))
            for t, name, _line in fks:
                cur.execute(f"ALTER TABLE `{t}` DROP FOREIGN KEY `{name}`")
            for t in tables:
                cur.execute(f"ALTER TABLE `{t}` CONVERT TO CHARACTER SET latin1")
            for t, _name, line in fks:
                cur.execute(f"ALTER TABLE `{t}` ADD {line}")
            cur.execute(f"ALTER DATABASE `{schema}` CHARACTER SET latin1")
    finally:
        conn.close()


def seed(s: Stack, glance_rows: bool = True, services: tuple[str, ...] = SERVICES) -> dict[str, Any]:
    """Realistic rows on the old controller for *services*; returns their ids. ``glance_rows=False``
    when glance serves for real: its images are then made through its API (scripts.lab.glapi)."""
    out: dict[str, Any] = {"images": [], "volumes": [], "bdms": [], "attachments": [], "networks": []}
    if glance_rows and "glance" in services:
        _seed_glance_rows(s, out)
    _seed_compute_rows(s, out, services)
    if "neutron" in services:
        _seed_neutron_rows(s, out)
    return out


def _seed_glance_rows(s: Stack, out: dict[str, Any]) -> None:
    """Images with non-ASCII names/properties, one file in the store; every table latin1, as a
    Havana-era dump would have it (the runbook's CONVERT TO CHARACTER SET utf8)."""
    db = s.db
    for i, name in enumerate(("cirros café", "Übuntu jämmy")):
        img = str(uuid.uuid4())
        insert(db, "glance", "images", {"id": img, "name": name, "size": len(IMAGE_BYTES), "status": "active",
                                        "deleted": 0, "visibility": "public", "disk_format": "qcow2",
                                        "container_format": "bare", "created_at": "2026-01-02 03:04:05"})
        insert(db, "glance", "image_properties", {"image_id": img, "name": "description",
                                                  "value": f"Grüße aus der Küche {i}, naïve", "deleted": 0,
                                                  "created_at": "2026-01-02 03:04:05"})
        out["images"].append(img)
    (s.root / "var/lib/glance/images" / out["images"][0]).write_bytes(IMAGE_BYTES)
    to_latin1(db, "glance")


def _seed_compute_rows(s: Stack, out: dict[str, Any], services: tuple[str, ...]) -> None:
    """nova: the old controller's services, a compute, instances with iSCSI block devices; cinder:
    volumes and attachments on the old portal (the same volumes and instances where both run)."""
    db = s.db
    nova, cinder = "nova" in services, "cinder" in services
    for binary, host in (("nova-conductor", OLD_HOST), ("nova-scheduler", OLD_HOST), ("nova-compute", "compute-1")):
        if nova:
            insert(db, "nova", "services", {"host": host, "binary": binary, "topic": binary.split("-")[1],
                                            "deleted": 0, "disabled": 0, "forced_down": 0, "version": 70,
                                            "uuid": str(uuid.uuid4()), "created_at": "2026-01-01 00:00:00"})
    vols = [str(uuid.uuid4()) for _ in range(3)]
    svc_uuid = {OLD_HOST: str(uuid.uuid4()), "other": str(uuid.uuid4())}
    for host, backend in ((OLD_HOST, "lvm"), ("other", "ceph")):
        if cinder:
            insert(db, "cinder", "services", {"host": f"{host}@{backend}", "binary": "cinder-volume",
                                              "topic": "cinder-volume", "deleted": 0, "disabled": 0,
                                              "uuid": svc_uuid[host], "created_at": "2026-01-01 00:00:00"})
    for n, vol in enumerate(vols):
        portal = OLD_PORTAL if n < 2 else "203.0.113.7"  # the third lives on another backend: untouched
        inst = str(uuid.uuid4())
        if nova:
            insert(db, "nova", "instances", {"uuid": inst, "deleted": 0, "host": "compute-1", "vm_state": "active",
                                             "created_at": "2026-01-01 00:00:00"})
            insert(db, "nova", "block_device_mapping", {
                "instance_uuid": inst, "volume_id": vol, "source_type": "volume", "destination_type": "volume",
                "device_name": "/dev/vdb", "connection_info": iscsi_info(vol, portal, n + 1), "deleted": 0,
                "uuid": str(uuid.uuid4()), "created_at": "2026-01-01 00:00:00"})
        if not cinder:
            continue
        insert(db, "cinder", "volumes", {
            "id": vol, "deleted": 0, "size": 1, "status": "in-use", "host": f"{OLD_HOST}@lvm#lvm" if n < 2
            else "other@ceph#ceph", "provider_location": f"{portal}:3260,{n + 1} iqn.2010-10.org.openstack:volume-"
            f"{vol} 1", "created_at": "2026-01-01 00:00:00", "use_quota": 1,
            "service_uuid": svc_uuid[OLD_HOST if n < 2 else "other"]})
        att = str(uuid.uuid4())
        insert(db, "cinder", "volume_attachment", {
            "id": att, "volume_id": vol, "instance_uuid": inst, "attach_status": "attached", "deleted": 0,
            "connection_info": iscsi_info(vol, portal, n + 1), "created_at": "2026-01-01 00:00:00"})
        out["volumes"].append(vol)
        out["attachments"].append(att)


def _standard_attr(db: MariaDB, resource: str) -> int:
    """A row of neutron's ``standardattributes`` (every network, subnet, port has one); its id."""
    insert(db, "neutron", "standardattributes", {"resource_type": resource, "created_at": "2026-01-01 00:00:00",
                                                 "revision_number": 1, "description": "lab seed"})
    return db.execute("SELECT MAX(id) FROM standardattributes WHERE resource_type=%s", db="neutron",
                      args=(resource,))[0][0]


def _seed_neutron_rows(s: Stack, out: dict[str, Any]) -> None:
    """Agents of the old controller (Havana-era timers are in the config) and of a compute, and a
    tenant network with its subnet (documentation addresses: data only, never reached)."""
    db = s.db
    for agent_type, binary, host in (("DHCP agent", "neutron-dhcp-agent", OLD_HOST),
                                     ("L3 agent", "neutron-l3-agent", OLD_HOST),
                                     ("Open vSwitch agent", "neutron-openvswitch-agent", "compute-1")):
        insert(db, "neutron", "agents", {"id": str(uuid.uuid4()), "agent_type": agent_type, "binary": binary,
                                         "topic": "q-agent", "host": host, "admin_state_up": 1,
                                         "created_at": "2026-01-01 00:00:00", "started_at": "2026-01-01 00:00:00",
                                         "heartbeat_timestamp": "2026-01-01 00:00:00", "configurations": "{}"})
    for name, cidr, gateway in (("demo-net", "203.0.113.0/26", "203.0.113.1"),
                                ("ops-net", "203.0.113.64/26", "203.0.113.65")):
        net, sub = str(uuid.uuid4()), str(uuid.uuid4())
        insert(db, "neutron", "networks", {"id": net, "name": name, "status": "ACTIVE", "admin_state_up": 1,
                                           "mtu": 1450, "standard_attr_id": _standard_attr(db, "networks"),
                                           "project_id": "demo"})
        insert(db, "neutron", "subnets", {"id": sub, "name": f"{name}-v4", "network_id": net, "ip_version": 4,
                                          "cidr": cidr, "gateway_ip": gateway, "enable_dhcp": 1,
                                          "standard_attr_id": _standard_attr(db, "subnets"), "project_id": "demo"})
        out["networks"].append(net)
