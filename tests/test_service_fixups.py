"""Fix-ups of the service runbooks on real parts: the online-data-migrations loop against a real
program on disk (the loop is what is under test; the real nova-manage runs in
test_services_upgrade), block copies between real loop devices with their undo, the iSCSI
address edits, and horizon's local_settings edited through ``ast``."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from journal import vault
from journal.redact import Redactor
from journal.store import Journal
from services.catalog import horizon
from services.infra import iscsi
from services.infra.blockcopy import transfer_step
from services.infra.context import UpgradeContext
from services.infra.settings import DBEndpoint, ServiceControl, Side
from services.registry import spec
from services.releases import Jump
from services.steps.commands import run_cmd
from statemachine.step import StepError
from tests.conftest import require
from upgrade.hosts import LocalHost


def side(tmp: Path, role: str = "target") -> Side:
    return Side(role=role, host=LocalHost(role), etc=str(tmp / "etc"), lib=str(tmp / "lib"), bin=str(tmp / "bin"),
                db=DBEndpoint("127.0.0.1", 1, "root", ""), control=ServiceControl("systemd"))


# ---------------------------------------------------------------------- online data migrations loop
def fake_manage(tmp: Path, codes: list[int]) -> Path:
    """A program that exits with the next code of *codes* at each call and logs every call."""
    (tmp / "bin").mkdir(parents=True, exist_ok=True)
    prog = tmp / "bin" / "nova-manage"
    prog.write_text("#!/bin/sh\n"
                    f"n=$(cat {tmp}/count 2>/dev/null || echo 0); echo $((n+1)) > {tmp}/count\n"
                    f"set -- {' '.join(map(str, codes))}\n"
                    "shift $n\n"
                    "echo \"round $((n+1)): Error attempting to run populate_instance_compute_id\"\n"
                    "exit ${1:-0}\n")
    prog.chmod(0o755)
    return prog


ODM = spec("nova").schema_for("2026.1")[-1]


def test_online_migrations_run_until_exit_0(tmp_path: Path) -> None:
    fake_manage(tmp_path, [1, 1, 0])
    res = run_cmd(side(tmp_path), ODM)
    assert ODM.loop and res["rc"] == 0 and res["rounds"] == 3
    assert (tmp_path / "count").read_text().strip() == "3"
    assert res["command"] == f"{tmp_path}/bin/nova-manage --config-file {tmp_path}/etc/nova/nova.conf db " \
                             "online_data_migrations"


def test_online_migrations_exit_2_fails_with_the_output(tmp_path: Path) -> None:
    fake_manage(tmp_path, [1, 2, 0])
    with pytest.raises(StepError) as err:
        run_cmd(side(tmp_path), ODM)
    assert err.value.rc == 2 and "round 2" in str(err.value)
    assert "round 2: Error attempting to run populate_instance_compute_id" in err.value.output
    assert (tmp_path / "count").read_text().strip() == "2"  # never run again after a failure


# ---------------------------------------------------------------------- iSCSI edits
def test_connection_info_changes_only_the_portal_fields() -> None:
    doc = {"driver_volume_type": "iscsi", "serial": "v1", "data": {
        "target_portal": "192.168.1.4:3260", "target_portals": ["192.168.1.4:3260", "192.168.1.5:3260"],
        "device_path": "/dev/disk/by-path/ip-192.168.1.4:3260-iscsi-iqn.2010-10.org.openstack:volume-v1-lun-1",
        "auth_password": "eNJy8GZUta39wqEiCr23", "target_lun": 1, "qos_specs": None}}
    new = json.loads(iscsi.connection_info(json.dumps(doc), "192.168.1.4", "10.0.0.4"))
    assert new["data"].pop("target_portal") == "10.0.0.4:3260"
    assert new["data"].pop("target_portals") == ["10.0.0.4:3260", "192.168.1.5:3260"]
    assert new["data"].pop("device_path").startswith("/dev/disk/by-path/ip-10.0.0.4:3260-iscsi-")
    for k in ("target_portal", "target_portals", "device_path"):
        doc["data"].pop(k)
    assert new == doc
    assert iscsi.connection_info(json.dumps(doc), "192.168.1.4", "10.0.0.4") is None  # nothing to change
    assert iscsi.connection_info("not json", "192.168.1.4", "10.0.0.4") is None
    assert iscsi.provider_location("192.168.1.4:3260;192.168.1.44:3260,1 iqn.x 1", "192.168.1.4", "10.0.0.4") == \
        "10.0.0.4:3260;192.168.1.44:3260,1 iqn.x 1"
    assert iscsi.provider_location("192.168.1.44:3260,1 iqn.x 1", "192.168.1.4", "10.0.0.4") is None


# ---------------------------------------------------------------------- horizon local_settings
HAVANA_SETTINGS = '''\
import os

from django.utils.translation import ugettext_lazy as _

from openstack_dashboard import exceptions

DEBUG = False
TEMPLATE_DEBUG = DEBUG

# We recommend you use memcached for development; otherwise after every reload
# of the django development server, you will have to login again.
CACHES = {
    'default': {
        'BACKEND': 'django.core.cache.backends.memcached.MemcachedCache',
        'LOCATION': '127.0.0.1:11211',
    }
}

OPENSTACK_HOST = "192.168.0.2"   # the old controller
OPENSTACK_KEYSTONE_URL = "http://%s:5000/v2.0" % OPENSTACK_HOST
OPENSTACK_KEYSTONE_DEFAULT_ROLE = "Member"

# OPENSTACK_KEYSTONE_DEFAULT_ROLE = "admin" must stay a comment
'''


def test_local_settings_edited_through_ast_only_values_change() -> None:
    new, notes = horizon.edit_settings(HAVANA_SETTINGS, Jump("havana", "icehouse"), "10.0.0.4")
    assert notes == ["OPENSTACK_HOST = '10.0.0.4'", "OPENSTACK_KEYSTONE_DEFAULT_ROLE = '_member_'"]
    want = (HAVANA_SETTINGS.replace('OPENSTACK_HOST = "192.168.0.2"', "OPENSTACK_HOST = '10.0.0.4'")
            .replace('OPENSTACK_KEYSTONE_DEFAULT_ROLE = "Member"\n', "OPENSTACK_KEYSTONE_DEFAULT_ROLE = '_member_'\n"))
    assert new == want  # the comment lines, the v2.0 URL through OPENSTACK_HOST: as they were
    # a later jump: the identity API path follows the release, the role is 'member'
    later, notes = horizon.edit_settings(new, Jump("2025.2", "2026.1"), None)
    assert "OPENSTACK_KEYSTONE_URL = 'http://%s:5000/v3' % OPENSTACK_HOST\n" in later
    assert "OPENSTACK_KEYSTONE_DEFAULT_ROLE = 'member'\n" in later
    with pytest.raises(SyntaxError):
        horizon.edit_settings("OPENSTACK_HOST = (", Jump("havana", "icehouse"), "x")


# ---------------------------------------------------------------------- block copy on loop devices
def Ctx(source: Side, target: Side, key: vault.Key, directory: Path) -> UpgradeContext:  # noqa: N802
    """The run's real context over a real journal: artifacts are recorded and checked as in a run."""
    journal = Journal(directory / "journal", key=key)
    run_id = journal.create_run({}, "0" * 64, None, "a", "b", key.key_id)
    return UpgradeContext(run_id=run_id, source=source, target=target, journal=journal, key=key,
                          redactor=Redactor(), services={}, from_release="a", to_release="b",
                          artifact_root=directory / "vault")


@pytest.fixture
def loops(tmp_path: Path):
    require(os.geteuid() == 0 and shutil.which("losetup") is not None and Path("/dev/loop-control").exists(),
            "loop devices need root, losetup and /dev/loop-control")
    made: list[str] = []

    def make(name: str, size: int, data: bytes | None = None) -> str:
        img = tmp_path / f"{name}.img"
        img.write_bytes(data if data is not None else bytes(size))
        dev = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True,
                             check=True).stdout.strip()
        made.append(dev)
        return dev

    yield make
    for dev in made:
        subprocess.run(["losetup", "-d", dev], check=False)


def _sha(dev: str) -> str:
    return hashlib.sha256(Path(dev).read_bytes()).hexdigest()


@pytest.mark.parametrize("target_was", ["zeros", "data"])
def test_volume_blocks_copied_with_checksums_and_undone(tmp_path: Path, loops: Any, target_was: str) -> None:
    size = 6 << 20
    payload = secrets.token_bytes(size)
    src = loops("src", size, payload)
    dst = loops("dst", size, None if target_was == "zeros" else secrets.token_bytes(size))
    before = _sha(dst)
    ctx = Ctx(side(tmp_path, "source"), side(tmp_path), vault.Key.from_bytes(secrets.token_bytes(32)), tmp_path)
    step = transfer_step("cinder", lambda c: [{"source": src, "target": dst}])
    result = step.run(ctx)
    assert result["volumes"][0]["sha256"] == hashlib.sha256(payload).hexdigest() == _sha(dst)
    assert ("backup" in result["volumes"][0]) == (target_was == "data")
    assert result["volumes"][0]["was_zero"] == (target_was == "zeros")
    step.undo(ctx, json.loads(json.dumps(result)))  # the journal's copy of the result
    assert _sha(dst) == before
    assert _sha(src) == hashlib.sha256(payload).hexdigest()  # the source was only read


def test_a_replaced_volume_backup_is_refused_and_the_volume_left_alone(tmp_path: Path, loops: Any) -> None:
    """Another backup (validly encrypted with the run's key) in place of this run's: the undo refuses
    it, naming the file, before one block is written."""
    size = 2 << 20
    src, dst = loops("src", size, secrets.token_bytes(size)), loops("dst", size, secrets.token_bytes(size))
    ctx = Ctx(side(tmp_path, "source"), side(tmp_path), vault.Key.from_bytes(secrets.token_bytes(32)), tmp_path)
    step = transfer_step("cinder", lambda c: [{"source": src, "target": dst}])
    result = json.loads(json.dumps(step.run(ctx)))
    art = Path(result["volumes"][0]["backup"]["path"])
    vault.encrypt_bytes(secrets.token_bytes(size), art, ctx.key)
    copied = _sha(dst)
    with pytest.raises(StepError, match=f"refusing artifact {art} .*cinder.transfer_volumes.*recorded"):
        step.undo(ctx, result)
    assert _sha(dst) == copied


def test_volume_of_another_size_is_refused(tmp_path: Path, loops: Any) -> None:
    src, dst = loops("src", 4 << 20), loops("dst", 3 << 20)
    ctx = Ctx(side(tmp_path, "source"), side(tmp_path), vault.Key.from_bytes(secrets.token_bytes(32)), tmp_path)
    with pytest.raises(StepError, match="same-size volume"):
        transfer_step("cinder", lambda c: [{"source": src, "target": dst}]).run(ctx)
