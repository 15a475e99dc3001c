"""The vault inside real runs: a full disk fails the dump cleanly and resume completes after space
is freed; no plaintext of the databases is left anywhere the tool writes."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import tmpfs, upgrade


@pytest.fixture
def small_tmpfs(tmp_path):
    d = tmp_path / "vault"
    d.mkdir()
    with tmpfs(d, "16k"):
        yield d


def test_disk_full_while_dumping_then_resume(lab, tmp_path, small_tmpfs):
    before = lab.state()
    plan = lab.write_plan(tmp_path)
    text = plan.read_text().replace('key_file = "dump.key"\n', f'key_file = "dump.key"\ndir = "{small_tmpfs}"\n')
    plan.write_text(text)
    journal = tmp_path / "journal"
    res = upgrade("run", str(plan))
    assert res.returncode == 1, res.stderr
    # the first write into the vault is the target's backup, made before anything stops on the old controller
    assert "keystone.backup_target failed" in res.stderr and "no space left" in res.stderr
    assert "upgrade resume" in res.stderr
    leftovers = [p for p in small_tmpfs.rglob("*") if p.is_file()]
    assert leftovers == [], f"partial artifacts left: {leftovers}"
    from scripts.lab import svc

    assert svc.status(lab.old.root, "keystone")  # the old controller never stopped serving
    # nothing on the target was touched: the backup only reads it
    after = lab.state()
    assert {k: after[k] for k in ("target_db", "target_etc", "target_users")} == \
        {k: before[k] for k in ("target_db", "target_etc", "target_users")}
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_tmpfs)], check=True)
    res = upgrade("resume", "--journal", str(journal))
    assert res.returncode == 0, res.stderr
    arts = sorted(p.name for p in small_tmpfs.rglob("*.osuv"))
    assert "keystone-source-db.osuv" in arts
    ver = upgrade("journal", "verify", "--journal", str(journal), "--key", str(tmp_path / "dump.key"))
    assert ver.returncode == 0, ver.stdout


def test_no_plaintext_row_left_anywhere(lab, tmp_path):
    marker = f"PLAINTEXT-MARKER-{uuid.uuid4().hex}"
    lab.db_old.execute("UPDATE project SET description=%s WHERE name='demo'", db="keystone", args=(marker,))
    plan = lab.write_plan(tmp_path)
    res = upgrade("run", str(plan))
    assert res.returncode == 0, res.stderr
    # the marker really went through the dump: it is in the target DB now
    assert lab.db_new.execute("SELECT COUNT(*) FROM project WHERE description=%s", db="keystone",
                              args=(marker,))[0][0] == 1
    needle = marker.encode()
    lab_dirs = (lab.base,)  # the lab's own MariaDB datadirs legitimately hold the row
    scanned = 0
    for top in (tmp_path / "journal", Path("/tmp")):
        for dirpath, _dirs, files in os.walk(top):
            if any(Path(dirpath).is_relative_to(d) for d in lab_dirs):
                continue
            for f in files:
                p = Path(dirpath) / f
                try:
                    if p.is_file() and p.stat().st_size < 512 * 1024 * 1024:
                        scanned += 1
                        assert needle not in p.read_bytes(), f"plaintext row found in {p}"
                except (PermissionError, FileNotFoundError):
                    continue
    assert scanned > 5
    assert any((tmp_path / "journal" / "artifacts").rglob("*.osuv"))


def test_resume_sweeps_private_dirs_a_killed_run_left(lab, tmp_path):
    """A killed run cannot remove its private directories; the resume removes them (and only those
    of dead processes of this machine), since they may hold a config with a DB password."""
    import tempfile

    from upgrade.hosts import tmp_prefix

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Path(tempfile.mkdtemp(prefix=tmp_prefix(dead.pid)))
    (stale / "cinder-previous.conf").write_text("[database]\nconnection = mysql://u:secret@h/db\n")
    mine = Path(tempfile.mkdtemp(prefix=tmp_prefix()))  # this pytest process is alive: kept
    plan = lab.write_plan(tmp_path)
    res = upgrade("run", str(plan), failpoint="keystone.dump_source:inside")
    assert res.returncode == -9
    res = upgrade("resume", "--journal", str(tmp_path / "journal"))
    assert res.returncode == 0, res.stderr
    assert not stale.exists()
    assert mine.exists()
    mine.rmdir()
    leftovers = list(Path(tempfile.gettempdir()).glob(tmp_prefix(0).rsplit("-", 2)[0] + "-*"))
    assert all(_pid_alive(int(p.name.split("-")[-2])) for p in leftovers), leftovers


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
