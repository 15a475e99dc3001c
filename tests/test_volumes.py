"""Cinder's volume copy and old service rows on real parts: a real MariaDB holding the schema of the
real ``cinder-manage``/``nova-manage db sync`` (2026.1) with the lab's seeded volumes, attachments,
instances and block devices; a real tgtd exporting loop devices (LVM-free, as the block copy tests
do); the real ``cinder-manage service remove``.

The copy's volumes come from cinder's database: an in-use volume whose instance is not shut off is
refused (by `upgrade run` before anything changes, and again by the step), the source's exports are
taken down before the copy and put back exactly by the undo.
"""

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
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.mariadb import MariaDB, free_port
from scripts.lab.openstack import OLD_HOST, make_stack, seed
from scripts.lab.plan import DBAdmin, side_table, write_key
from services import releases
from services.catalog import cinder
from services.infra import exports
from services.infra.context import UpgradeContext
from services.infra.settings import DBEndpoint, ServiceControl, ServiceSettings, Side
from services.releases import Jump
from statemachine.step import StepError
from tests.conftest import require, require_mariadb, tree_digest, upgrade, upgrade_in_process
from upgrade.hosts import LocalHost

REL = "2026.1"
ADMIN, ADMIN_PW = "osu_admin", "vol-lab-Admin-51"
DBS = ("cinder", "nova", "nova_cell0", "nova_api")
SIZE = 4 << 20


@pytest.fixture(scope="module")
def volume_lab(tmp_path_factory) -> Any:
    """One MariaDB with nova's and cinder's real schema and the lab's rows, a tgtd on loopback
    exporting a loop device per volume (the third volume lives on another host: never touched)."""
    require_mariadb()
    for tool in ("cinder-manage", "nova-manage"):
        require((DEFAULT_VENV_ROOT / REL / "bin" / tool).exists(), f"{tool} {REL} missing (make openstack)")
    require(os.geteuid() == 0 and shutil.which("losetup") is not None and Path("/dev/loop-control").exists(),
            "loop devices need root, losetup and /dev/loop-control")
    require(shutil.which("tgtd") is not None and shutil.which("tgtadm") is not None,
            "tgtd/tgtadm missing (Debian package tgt, scripts/setup-system)")
    base = tmp_path_factory.mktemp("vollab")
    # the target's DB server only answers the plan loader and the pre-flight (the run is refused first)
    db, other = MariaDB(base / "db", free_port()), MariaDB(base / "db-new", free_port())
    loops: list[str] = []
    tgtd = None
    try:
        for server in (db, other):
            server.start()
            server.execute("CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s", args=(ADMIN, ADMIN_PW))
            server.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'127.0.0.1' WITH GRANT OPTION", args=(ADMIN,))
        stack = make_stack(base / "ctl", REL, db, DEFAULT_VENV_ROOT, services=("nova", "cinder"))
        ids = seed(stack, services=("nova", "cinder"))
        # tgtd takes a management port up to 32767 only (-C); one free of another tgtd's socket
        port = next(p for p in range(17000 + os.getpid() % 15000, 32768) if not Path(f"/var/run/tgtd/socket.{p}")
                    .exists())
        Path("/var/run/tgtd").mkdir(parents=True, exist_ok=True)
        tgtd = subprocess.Popen(["tgtd", "-f", "-C", str(port), "--iscsi", f"portal=127.0.0.1:{free_port()}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        host = LocalHost("source")
        while host.run(exports.tgtadm(port, "--mode", "target", "--op", "show")).rc != 0:
            assert tgtd.poll() is None, "tgtd exited"
        src_dir, dst_dir = base / "src-vg", base / "dst-vg"
        src_dir.mkdir()
        dst_dir.mkdir()
        for n, vol in enumerate(ids["volumes"]):
            for d, data in ((src_dir, secrets.token_bytes(SIZE)), (dst_dir, bytes(SIZE))):
                img = base / f"{d.name}-{n}.img"
                img.write_bytes(data)
                dev = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True,
                                     check=True).stdout.strip()
                loops.append(dev)
                (d / f"volume-{vol}").symlink_to(dev)
            tid, iqn = str(n + 1), f"iqn.2010-10.org.openstack:volume-{vol}"
            for args in (("--mode", "target", "--op", "new", "--tid", tid, "-T", iqn),
                         ("--mode", "logicalunit", "--op", "new", "--tid", tid, "--lun", "1", "-b",
                          str(src_dir / f"volume-{vol}")),
                         ("--mode", "target", "--op", "bind", "--tid", tid, "-I", "198.51.100.21"),
                         ("--mode", "account", "--op", "new", "--user", f"chap-{n}", "--password", f"Chap-pw-{n}1x"),
                         ("--mode", "account", "--op", "bind", "--tid", tid, "--user", f"chap-{n}")):
                subprocess.run(exports.tgtadm(port, *args), check=True, capture_output=True)
        yield {"stack": stack, "db": db, "other": other, "ids": ids, "port": port, "src": src_dir, "dst": dst_dir,
               "base": base}
    finally:
        if tgtd is not None:  # tgtd ignores SIGTERM while it holds targets
            tgtd.kill()
            tgtd.wait()
        for dev in loops:
            subprocess.run(["losetup", "-d", dev], check=False)
        for server in (db, other):
            server.stop()


def _states(lab: Any, vm_state: str, power_state: int) -> None:
    """The instances of the seeded attachments as nova would record them (the test's own setup)."""
    lab["db"].execute("UPDATE instances SET vm_state=%s, power_state=%s", db="nova", args=(vm_state, power_state))


def _sums(lab: Any) -> dict[str, Any]:
    """Every table's checksum on both DB servers (the target's has no service database yet)."""
    return {"source": {db: lab["db"].checksums(db) for db in DBS},
            "target": [r[0] for r in lab["other"].execute("SHOW DATABASES")]}


def _exported(lab: Any) -> str:
    return subprocess.run(exports.tgtadm(lab["port"], "--mode", "target", "--op", "show"), check=True,
                          capture_output=True, text=True).stdout


def _sha(path: Path) -> str:
    return hashlib.sha256(path.resolve().read_bytes()).hexdigest()


def _devices(lab: Any) -> dict[str, str]:
    return {f"{d.name}/{p.name}": _sha(p) for d in (lab["src"], lab["dst"]) for p in sorted(d.iterdir())}


def _options(lab: Any, **more: Any) -> dict[str, Any]:
    return {"copy_volumes": True, "old_host": OLD_HOST, "volume_dir": str(lab["src"]),
            "target_volume_dir": str(lab["dst"]), "tgt_control_port": lab["port"], **more}


def _ctx(lab: Any, tmp: Path, **more: Any) -> UpgradeContext:
    s = lab["stack"]
    ep = DBEndpoint("127.0.0.1", lab["db"].port, ADMIN, ADMIN_PW)

    def side(role: str) -> Side:
        return Side(role=role, host=LocalHost(role), etc=str(s.root / "etc"), lib=str(s.root / "var/lib"),
                    bin=str(s.venv / "bin"), db=ep, control=ServiceControl("systemd"))

    key = vault.Key.from_bytes(secrets.token_bytes(32))
    journal = Journal(tmp / "journal", key=key)
    run_id = journal.create_run({}, "0" * 64, None, "2025.2", REL, key.key_id)
    st = ServiceSettings(name="cinder", unit="openstack-cinder", db_name="cinder", options=_options(lab, **more))
    return UpgradeContext(run_id=run_id, source=side("source"), target=side("target"), journal=journal, key=key,
                          redactor=Redactor(), services={"cinder": st}, from_release="2025.2", to_release=REL,
                          artifact_root=tmp / "vault")


def _step(name: str) -> Any:
    return next(s for s in cinder.steps(Jump("2025.2", REL)) if s.name == f"cinder.{name}")


def _refused_plan(lab: Any, tmp_path: Path) -> tuple[Path, Path]:
    """A plan copying the lab's volumes to an empty target tree (the run is refused before it)."""
    s = lab["stack"]
    write_key(tmp_path / "dump.key")
    target_root = tmp_path / "new"
    (target_root / "etc").mkdir(parents=True)
    admin = DBAdmin(ADMIN, password=ADMIN_PW)
    plan = tmp_path / "plan.toml"
    plan.write_text(f'[upgrade]\nfrom = "2025.2"\nto = "{REL}"\nservices = ["cinder"]\njournal = "journal"\n\n'
                    '[vault]\nkey_file = "dump.key"\n\n'
                    + side_table("source", s.root, s.venv, "127.0.0.1", lab["db"].port, admin)
                    + side_table("target", target_root, s.venv, "127.0.0.1", lab["other"].port, admin)
                    + "[services.cinder]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in _options(lab).items()))
    return plan, target_root


def test_running_instance_refuses_the_copy_and_nothing_changes(volume_lab: Any, tmp_path: Path) -> None:
    """`upgrade run` refuses before it writes anything: each volume and its instance named with the
    fix, exit 2, both sides' databases, trees, devices and exports as they were."""
    lab = volume_lab
    _states(lab, "active", 1)
    s = lab["stack"]
    plan, target_root = _refused_plan(lab, tmp_path)
    before = (_sums(lab), tree_digest(s.root), tree_digest(target_root), _devices(lab), _exported(lab))
    res = upgrade_in_process("run", str(plan))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "nothing was changed" in res.stderr
    for vol in lab["ids"]["volumes"][:2]:  # the old host's two; the third is another host's
        line = next(x for x in res.stderr.splitlines() if f"volume {vol}" in x)
        inst = lab["db"].execute("SELECT instance_uuid FROM block_device_mapping WHERE volume_id=%s", db="nova",
                                 args=(vol,))[0][0]
        assert f"instance {inst}" in line and "vm_state active, power_state running" in line
        assert f"openstack server stop {inst}" in line
    assert lab["ids"]["volumes"][2] not in res.stderr
    chk = upgrade("check", str(plan), "-f", "json")  # `upgrade check` names the same (its own process: its stdout)
    assert chk.returncode == 2
    rows = [r for r in json.loads(chk.stdout) if r["check"] == "volumes"]
    assert sorted(r["status"] for r in rows) == ["FAIL", "FAIL"] and all("openstack server stop" in r["detail"]
                                                                         for r in rows)
    assert (_sums(lab), tree_digest(s.root), tree_digest(target_root), _devices(lab), _exported(lab)) == before
    assert not (tmp_path / "journal").exists()


def test_exports_through_lio_refuse_the_copy_and_nothing_changes(volume_lab: Any, tmp_path: Path) -> None:
    """The copy takes exports down with tgtadm only: a source backend exporting through LIO
    (``target_helper = lioadm``) would go on serving the old blocks — `upgrade check` and `upgrade run`
    refuse naming the file, section and option with the fix, exit 2, nothing changed."""
    lab = volume_lab
    _states(lab, "stopped", 4)  # at rest: only the helper stands in the way
    s = lab["stack"]
    conf = s.root / "etc" / "cinder" / "cinder.conf"
    kept = conf.read_bytes()
    conf.write_bytes(kept.replace(b"target_helper = tgtadm", b"target_helper = lioadm"))
    try:
        plan, target_root = _refused_plan(lab, tmp_path)
        before = (_sums(lab), tree_digest(s.root), tree_digest(target_root), _devices(lab), _exported(lab))
        res = upgrade_in_process("run", str(plan))
        assert res.returncode == 2, res.stdout + res.stderr
        assert f"{conf} [lvm] target_helper = lioadm" in res.stderr and "targetcli" in res.stderr
        chk = upgrade("check", str(plan), "-f", "json")
        assert chk.returncode == 2
        assert [r["status"] for r in json.loads(chk.stdout) if r["check"] == "volumes"] == ["FAIL"]
        assert (_sums(lab), tree_digest(s.root), tree_digest(target_root), _devices(lab), _exported(lab)) == before
        assert not (tmp_path / "journal").exists()
    finally:
        conf.write_bytes(kept)


def test_copy_stops_exports_copies_and_revert_exports_again(volume_lab: Any, tmp_path: Path) -> None:
    """Shut-off instances: the old host's exports go down, their blocks land on the target with the
    same sha256, the other host's export stays; the undo puts every export back as it was."""
    lab = volume_lab
    _states(lab, "stopped", 4)
    ctx = _ctx(lab, tmp_path)
    vols = lab["ids"]["volumes"]
    shown, src_before = _exported(lab), {n: h for n, h in _devices(lab).items()}
    stop, copy = _step("stop_exports"), _step("transfer_volumes")
    stopped = json.loads(json.dumps(stop.run(ctx)))  # the journal's copy of the result
    assert sorted(t["iqn"] for t in stopped["exports"]) == sorted(f"iqn.2010-10.org.openstack:volume-{v}"
                                                                  for v in vols[:2])
    now = _exported(lab)
    assert vols[0] not in now and vols[1] not in now and f"volume-{vols[2]}" in now
    copied = json.loads(json.dumps(copy.run(ctx)))
    assert sorted(e["source"] for e in copied["volumes"]) == sorted(str(lab["src"] / f"volume-{v}") for v in vols[:2])
    for v in vols[:2]:
        assert _sha(lab["dst"] / f"volume-{v}") == _sha(lab["src"] / f"volume-{v}") == src_before[f"src-vg/volume-{v}"]
    assert _sha(lab["dst"] / f"volume-{vols[2]}") == hashlib.sha256(bytes(SIZE)).hexdigest()  # not copied
    copy.undo(ctx, copied)
    stop.undo(ctx, stopped)
    assert _exported(lab) == shown  # same tids, IQNs, backing stores, ACLs and CHAP accounts
    # killed before its result was journaled: the undo restores what the step kept in the vault first
    stop.run(ctx)
    assert _exported(lab) != shown
    stop.undo(ctx, None)
    assert _exported(lab) == shown
    assert _devices(lab) == src_before  # targets zero again, sources only read


def test_an_instance_started_after_the_preflight_stops_the_step(volume_lab: Any, tmp_path: Path) -> None:
    lab = volume_lab
    _states(lab, "stopped", 4)
    lab["db"].execute("UPDATE instances SET vm_state='active', power_state=1 ORDER BY id LIMIT 1", db="nova")
    ctx = _ctx(lab, tmp_path)
    shown, devices = _exported(lab), _devices(lab)
    with pytest.raises(StepError, match="nothing was changed") as err:
        _step("stop_exports").run(ctx)
    assert "openstack server stop" in str(err.value)
    assert _exported(lab) == shown and _devices(lab) == devices


def test_old_host_moved_by_cinder_manage_side_by_side_and_put_back(volume_lab: Any, tmp_path: Path) -> None:
    """One step, the real `cinder-manage` calls side by side: `volume update_host` for the old host's volumes
    and `service remove` for each of its service rows, on the target's copy; the undo puts the service rows
    back byte for byte and each volume's host back; the other host's rows are never touched."""
    lab = volume_lab
    ctx = _ctx(lab, tmp_path, new_host="new-ctl")
    db = lab["db"]
    hosts = "SELECT id, host FROM volumes ORDER BY id"
    # a second row of the old host (its scheduler): one call per row
    db.execute("INSERT INTO services (created_at, deleted, host, `binary`, topic, report_count, disabled) "
               f"VALUES (NOW(), 0, '{OLD_HOST}', 'cinder-scheduler', 'cinder-scheduler', 1, 0)", db="cinder")
    try:
        before, vols = db.checksums("cinder"), db.execute(hosts, db="cinder")
        assert any(h.startswith(f"{OLD_HOST}@") for _i, h in vols)
        step = _step("update_host")
        res = json.loads(json.dumps(step.run(ctx)))
        assert res["removed"] == [{"binary": "cinder-volume", "host": f"{OLD_HOST}@lvm"},  # in the rows' id order
                                  {"binary": "cinder-scheduler", "host": OLD_HOST}], res["removed"]
        assert {r["id"] for r in res["changed"]} == {i for i, h in vols if h.startswith(f"{OLD_HOST}@")}
        live = db.execute("SELECT host FROM services WHERE deleted=0", db="cinder")
        assert [h for (h,) in live] == ["other@ceph"]
        moved = db.execute(hosts, db="cinder")
        assert [h for _i, h in moved] == [h.replace(OLD_HOST, "new-ctl", 1) if h.startswith(f"{OLD_HOST}@") else h
                                          for _i, h in vols]
        assert str(res["artifact"]["path"]).startswith(str(tmp_path / "vault"))
        step.undo(ctx, res)
        after = db.checksums("cinder")
        assert after["services"] == before["services"]  # byte for byte
        # volume update_host also stamps updated_at, which the hosts' undo leaves (revert restores the whole copy)
        assert db.execute(hosts, db="cinder") == vols
        assert {t: v for t, v in after.items() if t != "volumes"} == {t: v for t, v in before.items() if t != "volumes"}
    finally:
        db.execute(f"DELETE FROM services WHERE host='{OLD_HOST}' AND `binary`='cinder-scheduler'", db="cinder")


def test_old_host_rows_retired_without_a_new_host_name_volumes_left(volume_lab: Any, tmp_path: Path) -> None:
    """old_host named, new_host not (options.NEW_HOST: rows are retired whenever the old name differs): the
    real `service remove` retires the old host's service row, no volume is moved, the undo puts the row back."""
    db = volume_lab["db"]
    ctx = _ctx(volume_lab, tmp_path)
    hosts = "SELECT id, host FROM volumes ORDER BY id"
    before, vols = db.checksums("cinder"), db.execute(hosts, db="cinder")
    step = _step("update_host")
    res = json.loads(json.dumps(step.run(ctx)))
    assert res["changed"] == [] and res["removed"] == [{"binary": "cinder-volume", "host": f"{OLD_HOST}@lvm"}]
    assert db.execute(hosts, db="cinder") == vols
    assert [h for (h,) in db.execute("SELECT host FROM services WHERE deleted=0", db="cinder")] == ["other@ceph"]
    step.undo(ctx, res)
    assert db.checksums("cinder") == before


@pytest.mark.parametrize(("src", "dst", "want"), [
    ("havana", "icehouse", "restart tgtd"),
    ("victoria", "wallaby", "restart tgtd"),
    ("wallaby", "xena", "nova-manage --config-file /etc/nova/nova.conf volume_attachment refresh INSTANCE VOLUME"),
    ("2025.2", "2026.1", "nova-manage --config-file /etc/nova/nova.conf volume_attachment refresh INSTANCE VOLUME"),
])
def test_attachments_are_refreshed_the_way_the_target_release_documents(src: str, dst: str, want: str) -> None:
    """`nova-manage volume_attachment refresh` from Xena (its real argv: instance, volume, connector
    file), tgtd restarted before; nothing when the address stays."""
    from tests.test_release_table import commands, ctx

    jump = Jump(src, dst)
    moved = ctx(jump, ("cinder",), cinder={"iscsi_address_from": "192.168.1.4", "iscsi_address_to": "10.0.0.4"})
    assert any(want in line for line in commands("cinder", jump, moved, "refresh_attachments"))
    stays = ctx(jump, ("cinder",))
    assert commands("cinder", jump, stays, "refresh_attachments") == ["(iSCSI target address unchanged: no "
                                                                     "attachment to refresh)"]
    # the old host's service rows are removed by update_host's step where the release has `service remove`
    removes = any("service remove" in line for line in commands("cinder", jump, ctx(jump, ("cinder",), cinder={
        "old_host": "old-ctl", "new_host": "new-ctl"}), "update_host"))
    assert removes == releases.at_least(dst, "liberty")
    assert "openstack-cinder-backup" in cinder.SPEC.units_for(dst)
