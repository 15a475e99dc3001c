"""Keystone's release specifics and horizon on the real keystone lab (2025.2 -> 2026.1): endpoint
URLs on the old address reported and rewritten (undo from its done state), the key
repositories checked in verify and keystone-status before the start, horizon's local_settings edited with the
role checked in keystone's real ``role`` table, the "web server" (a stand-in HTTP server under
the lab's unit supervisor: horizon itself is not served) restarted and its login page checked."""

from __future__ import annotations

import json
from pathlib import Path

from scripts.lab import units
from scripts.lab.mariadb import free_port
from scripts.lab.plan import lab_ignore
from tests.conftest import tree_digest, upgrade

SETTINGS = '''\
# local_settings of the old controller
import os

OPENSTACK_HOST = "198.51.100.10"  # the old controller's address
OPENSTACK_KEYSTONE_URL = "http://%s:5000/v2.0" % OPENSTACK_HOST
OPENSTACK_KEYSTONE_DEFAULT_ROLE = "_member_"
# OPENSTACK_KEYSTONE_DEFAULT_ROLE = "Member" (Havana) stays a comment
'''


def _plan(lab, tmp_path: Path, services: list[str], port: int, **keystone: str) -> Path:
    plan = lab.write_plan(tmp_path, **keystone)
    text = plan.read_text().replace('services = ["keystone"]', f"services = {json.dumps(services)}")
    text = text.replace(lab_ignore(["keystone"]), lab_ignore(services))  # the catalog's services left alone
    text = text.replace('"scripts.lab.svc"', '"scripts.lab.units"')  # keystone via svc, httpd as a stand-in
    text += (f'\n[services.horizon]\nunits = ["httpd"]\nowner = "root:root"\nopenstack_host = "127.0.0.1"\n'
             f'verify_url = "http://127.0.0.1:{port}/dashboard/auth/login/"\n')
    plan.write_text(text)
    return plan


def _setup(lab) -> int:
    d = lab.old.root / "etc/openstack-dashboard"
    d.mkdir(parents=True, exist_ok=True)
    (d / "local_settings").write_text(SETTINGS)
    port = free_port()
    (lab.new.root / units.UNITS_FILE).write_text(json.dumps({"httpd": port}))
    return port


def _events(journal: Path) -> list[dict]:
    exp = upgrade("journal", "export", "--journal", str(journal), "--format", "jsonl")
    return [json.loads(line) for line in exp.stdout.splitlines()]


def _done(ev: list[dict], step: str) -> dict:
    return next(e for e in ev if e["step"] == step and e["kind"] == "done")["result"]


def _urls(db) -> dict[str, str]:
    return dict(db.execute("SELECT id, url FROM endpoint ORDER BY id", db="keystone"))


def test_keystone_and_horizon_run_and_revert(lab, tmp_path):
    port = _setup(lab)
    before = lab.state()
    plan = _plan(lab, tmp_path, ["keystone", "horizon"], port, old_address="127.0.0.1", new_address="127.0.0.2")
    res = upgrade("run", str(plan))
    assert res.returncode == 0, res.stdout + res.stderr
    ev = _events(tmp_path / "journal")

    # endpoints on the old address: reported, and rewritten since the plan says the address changes
    ep = _done(ev, "keystone.endpoints")
    source = _urls(lab.db_old)
    assert ep["rewritten"] and {e["id"] for e in ep["endpoints"]} == {i for i, u in source.items()
                                                                       if "//127.0.0.1:" in u}
    assert all(u == source[i].replace("//127.0.0.1:", "//127.0.0.2:") for i, u in _urls(lab.db_new).items())
    # verify: the key repositories hold the source's keys; keystone-status (with the venv workaround)
    # passed before the start
    verify = _done(ev, "keystone.verify")
    assert [r["option"] for r in verify["key_repositories"]] == ["[fernet_tokens] key_repository",
                                                                 "[fernet_receipts] key_repository",
                                                                 "[credential] key_repository"]
    assert all(r["keys"] >= 2 for r in verify["key_repositories"])
    status = _done(ev, "keystone.status_check")
    assert status["rc"] == 0 and status["meaning"] == "success", status
    assert status.get("stock_rc") == 1 and "workaround" in status  # lab-recipes §4.5, seen for real

    # horizon: only the values changed; the role exists in keystone; the login page answers
    new_settings = (lab.new.root / "etc/openstack-dashboard/local_settings").read_text()
    assert new_settings == (SETTINGS.replace('OPENSTACK_HOST = "198.51.100.10"', "OPENSTACK_HOST = '127.0.0.1'")
                            .replace('"http://%s:5000/v2.0" % OPENSTACK_HOST', "'http://%s:5000/v3' % OPENSTACK_HOST")
                            .replace('OPENSTACK_KEYSTONE_DEFAULT_ROLE = "_member_"\n',
                                     "OPENSTACK_KEYSTONE_DEFAULT_ROLE = 'member'\n"))
    assert _done(ev, "horizon.check_role")["role"] == "member"
    assert _done(ev, "horizon.verify")["http_status"] == 200
    assert units.status(lab.new.root, "httpd")

    # revert, killed right after the endpoint step's undo: the imported URLs are back, byte for byte
    journal = tmp_path / "journal"
    rev = upgrade("revert", "--journal", str(journal), failpoint="keystone.endpoints:undo_after")
    assert rev.returncode != 0
    assert _urls(lab.db_new) == source
    rev = upgrade("revert", "--journal", str(journal))
    assert rev.returncode == 0, rev.stdout + rev.stderr
    after = lab.state()
    assert after["target_db"] == before["target_db"] and after["source_db"] == before["source_db"]
    assert tree_digest(lab.new.root / "etc") == before["target_etc"]
    assert not units.status(lab.new.root, "httpd")


def test_horizon_refuses_a_role_keystone_does_not_have(lab, tmp_path):
    """The new controller's keystone DB (fresh db_sync, no bootstrap) has no 'member' role."""
    port = _setup(lab)
    before = tree_digest(lab.new.root / "etc")
    plan = _plan(lab, tmp_path, ["horizon"], port)
    res = upgrade("run", str(plan))
    assert res.returncode == 1
    assert ("OPENSTACK_KEYSTONE_DEFAULT_ROLE is 'member' for 2026.1, but keystone has no such role — create it "
            "(`openstack role create member`) and `upgrade resume`") in res.stderr
    assert upgrade("revert", "--journal", str(tmp_path / "journal")).returncode == 0
    assert tree_digest(lab.new.root / "etc") == before
