"""Cinder served for real on a lab controller tree: cinder-api (``cinder.wsgi.api``, the release's WSGI
application, served by ``netvol_wsgi.py``), cinder-scheduler and cinder-volume, with its own RabbitMQ.

The backend: cinder's shipped fake driver ``cinder.tests.fake_driver.FakeLoggingVolumeDriver`` (the one
cinder's own functional tests run), under the backend name ``lvm`` the old controller's rows and the
plan's iSCSI options use. No real backend fits this machine: LVM (and its thin pools) needs
device-mapper, which the lab's kernel does not offer; NFS, Ceph RBD, GlusterFS and the rest need a
storage server or a mount. The fake driver goes through cinder-volume's whole path (RPC from the
scheduler, the volume manager, the database, the quota) and only skips the block device, so
volumes and snapshots are created, listed and deleted through the API with real states.

The controller's host name is a property of the machine, not of cinder.conf (which the tool carries
over): ``ROOT/etc/cinder-host.conf`` (``[DEFAULT] host``: ``old-ctl`` or ``new-ctl``, the names the
plan's ``update_host`` moves volumes between) is read by the daemons after cinder.conf, as the
hostname of a real machine would be.

Units, in stop order (started in reverse): ``cinder-api``, ``cinder-scheduler``, ``cinder-volume``,
``rabbitmq-cinder`` (its broker: it belongs to the management address and moves with cinder).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from scripts.lab import layout, netvol, rabbit
from scripts.lab.proc import LabError

if TYPE_CHECKING:  # the unit supervisor imports this module: no pymysql at run time
    from scripts.lab.mariadb import MariaDB

NAME = "cinder"
BACKEND = "lvm"
DRIVER = "cinder.tests.fake_driver.FakeLoggingVolumeDriver"


class Cinder(netvol.Served):
    name = NAME
    units = ("cinder-api", "cinder-scheduler", "cinder-volume", f"rabbitmq-{NAME}")
    catalog = (("cinderv3", "volumev3", "/v3/$(project_id)s"), ("cinder", "block-storage", "/v3/$(project_id)s"))

    def conf_files(self, root: Path) -> list[Path]:
        return [Path(root) / "etc" / NAME / "cinder.conf", host_conf(root)]

    def argv(self, root: Path, unit: str) -> list[str]:
        if self.is_api(unit):
            return self.api_argv(root)
        return [str(self.venv(root) / "bin" / unit), *self.config_args(root)]

    def rpc_queue(self, root: Path, unit: str) -> str:
        if unit == "cinder-scheduler":
            return "cinder-scheduler"
        return f"cinder-volume.{host(root)}@{BACKEND}"  # the backend's own topic: it has initialised


LAB = Cinder()


def host_conf(root: Path) -> Path:
    return Path(root) / "etc" / "cinder-host.conf"


def host(root: Path) -> str:
    for line in host_conf(root).read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "host":
            return value.strip()
    raise LabError(f"{host_conf(root)} names no host")


def _conf(root: Path, release: str, db_url: str, s: netvol.Settings) -> str:
    from scripts.lab.openstack import OLD_PORTAL  # the address the old controller's rows name

    lib, log = layout.var_lib(root, NAME), layout.log_dir(root, NAME)
    return f"""\
# cinder.conf of the lab controller {root} ({release}): the fake driver (no device-mapper here)
[DEFAULT]
transport_url = {s.transport_url}
auth_strategy = keystone
enabled_backends = {BACKEND}
state_path = {lib}
log_dir = {log}
my_ip = 127.0.0.1
resource_query_filters_file = {root / "etc" / NAME / "resource_filters.json"}
osapi_volume_workers = 1
# the scheduler takes requests once the volume service reported (it asks at start), at most this late
scheduler_driver_init_wait_time = 5

[database]
connection = {db_url}

{netvol.authtoken(s, NAME)}
[oslo_concurrency]
lock_path = {lib}/lock

[{BACKEND}]
volume_driver = {DRIVER}
volume_backend_name = {BACKEND}
volume_group = cinder-volumes
# no iSCSI target daemon here: the fake target; the address stays for the tool's rewrite
target_helper = fake
target_ip_address = {OLD_PORTAL}
"""


def install(root: Path, release: str, venv: Path, db: MariaDB, s: netvol.Settings, dist_port: int,
            hostname: str, broker: rabbit.Broker | None = None) -> None:
    """Cinder's real config on a controller tree whose stack made its database and schema
    (``scripts.lab.openstack``), the machine's host name, the release's paste pipeline, its own broker's
    files (or the host's *broker*, where its login exists); not started."""
    from scripts.lab.openstack import Stack  # its database code: at install time only

    root = Path(root).resolve()
    etc = root / "etc" / NAME
    if not (venv / "bin" / "cinder-volume").exists():
        raise LabError(f"no cinder in the venv {venv}; build it with: scripts/build-venv {release}")
    for d in (etc, layout.var_lib(root, NAME) / "lock", layout.log_dir(root, NAME)):
        d.mkdir(parents=True, exist_ok=True)
    conf = etc / "cinder.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as f:
        f.write(_conf(root, release, Stack(root, release, venv, db).url(NAME, NAME), s))
    conf.chmod(0o640)
    host_conf(root).write_text(f"# the host name of this lab controller, as cinder's daemons know it\n"
                               f"[DEFAULT]\nhost = {hostname}\n")
    for name in ("api-paste.ini", "resource_filters.json"):
        shutil.copyfile(venv / "etc" / NAME / name, etc / name)
    LAB.install_broker(root, s, dist_port, broker)


def fit_seeded(root: Path, venv: Path, db: MariaDB) -> int:
    """The old controller's seeded cinder service rows carry the RPC and object versions its release's
    services write and ``frozen = 0``, as the rows of a running cloud do: a row without versions reads as
    a Liberty service, and the real services refuse to start beside it (ServiceTooOld); the scheduler
    asks for ``frozen = false`` backends, which a NULL is not. Returns the rows set."""
    import subprocess

    from scripts.lab.proc import clean_env

    res = subprocess.run([str(venv / "bin" / "python"), "-c", (
        "from cinder import objects; objects.register_all(); from cinder.objects import base; "
        "from cinder.volume import rpcapi; print(rpcapi.VolumeAPI.RPC_API_VERSION, base.OBJ_VERSIONS.get_current())")],
        env=clean_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=root)
    if res.returncode != 0 or len(res.stdout.split()) != 2:
        raise LabError(f"cannot read cinder's versions in {venv}: {res.stderr.strip()[-1500:]}")
    rpc, obj = res.stdout.split()
    rows = db.execute("SELECT id FROM services WHERE rpc_current_version IS NULL OR object_current_version IS NULL "
                      "OR frozen IS NULL", db=NAME)
    db.execute("UPDATE services SET rpc_current_version=COALESCE(rpc_current_version, %s), "
               "object_current_version=COALESCE(object_current_version, %s), frozen=COALESCE(frozen, 0)",
               db=NAME, args=(rpc, obj))
    return len(rows)
