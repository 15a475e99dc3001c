"""The run's last step, ``cloud.verify`` (``[cloud]``): it waits until the cloud reports to the new controller,
on the multi-host lab with real nova (``scripts/lab/novalab.py``): nova-conductor of the target release on
newctl, a real nova-compute on each of two compute hosts, heartbeats read in newctl's nova database.

The check on that lab (a silent compute named, a kill inside the check, the completed run) is
tests/test_compute_upgrade.py::test_silent_compute_named_then_resumed_after_a_kill_inside_the_check, on that
module's one nova lab (a lab of its own here would be a second build of real nova). Neutron agents,
cinder-volume and the catalog's APIs are read in process against the session's keystone lab (real keystone
and MariaDB); the plan's keys without any lab.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from journal.redact import Redactor
from services.fleet import cloudcheck
from services.infra.settings import DBEndpoint
from statemachine.step import StepError
from tests.conftest import ADMIN_PASSWORD, DB_ADMIN, TARGET_DB_PASSWORD
from tests.test_compute_upgrade import PLAN
from upgrade import check
from upgrade import plan as plan_mod
from upgrade.plan import Plan

# ---------------------------------------------------------------------- agents, volumes and the catalog (real keystone)
CLOUD_PLAN = """
[upgrade]
from = "2025.2"
to = "2026.1"
services = ["neutron", "cinder"]
[vault]
key_file = "dump.key"
[source]
host = "local"
[source.db]
address = "127.0.0.1"
port = {port}
admin_user = "{user}"
admin_password = "{password}"
[target]
host = "local"
etc = "/srv/new/etc"
[target.db]
address = "127.0.0.1"
port = 1
[services.neutron]
db_name = "{neutron}"
[services.cinder]
db_name = "{cinder}"
[cloud]
timeout = 30
"""


def cloud_check_plan(tmp_path: Path, port: int, neutron: str, cinder: str) -> Plan:
    path = tmp_path / "plan.toml"
    path.write_text(CLOUD_PLAN.format(port=port, user=DB_ADMIN, password=TARGET_DB_PASSWORD, neutron=neutron,
                                      cinder=cinder))
    return plan_mod.load(path)


def test_agents_volumes_and_the_catalog_apis(keystone_lab, tmp_path, monkeypatch):
    """The other reporters of the check, in process against real MariaDB and a real keystone (the session's
    keystone lab: its catalog holds keystone's own endpoints): neutron agents and cinder-volume services whose
    heartbeats stay still are named at the timeout (a cinder-scheduler is not waited for), a refused token is
    named without its password; once an agent and a volume service beat, the check is done, the identity API
    of the catalog asked with the token. `upgrade check`'s reading of the same on the old controller warns
    while they are down and passes once they beat."""
    keystone_lab.reset()
    db = keystone_lab.db_new
    ep = DBEndpoint("127.0.0.1", db.port, DB_ADMIN, TARGET_DB_PASSWORD)
    neutron, cinder = "osu_cloud_neutron", "osu_cloud_cinder"
    for stmt in (f"DROP DATABASE IF EXISTS {neutron}", f"DROP DATABASE IF EXISTS {cinder}",
                 f"CREATE DATABASE {neutron}", f"CREATE DATABASE {cinder}",
                 f"CREATE TABLE {neutron}.agents (id INT PRIMARY KEY, `binary` VARCHAR(255), host VARCHAR(255), "
                 "heartbeat_timestamp DATETIME NOT NULL)",
                 f"INSERT INTO {neutron}.agents VALUES (1, 'neutron-openvswitch-agent', 'compute1', "
                 "UTC_TIMESTAMP() - INTERVAL 1 HOUR)",
                 f"CREATE TABLE {cinder}.services (id INT PRIMARY KEY, host VARCHAR(255), `binary` VARCHAR(255), "
                 "updated_at DATETIME NULL, deleted TINYINT)",
                 f"INSERT INTO {cinder}.services VALUES (1, 'newctl@lvm', 'cinder-volume', NULL, 0), "
                 "(2, 'newctl', 'cinder-scheduler', NULL, 0), (3, 'gone@lvm', 'cinder-volume', NULL, 1)"):
        db.execute(stmt)
    ctx = SimpleNamespace(target=SimpleNamespace(db=ep, host=SimpleNamespace(name="newctl")), services={},
                          redactor=Redactor())
    seed = keystone_lab.seed
    auth = cloudcheck.Auth(seed["keystone_url"], seed["admin_user"], ADMIN_PASSWORD, project=seed["admin_project"],
                           interface="admin")
    s = cloudcheck.CloudSettings(timeout=2, neutron_db=neutron, cinder_db=cinder, auth=auth)
    try:
        with pytest.raises(StepError) as err:
            cloudcheck.verify(ctx, s)
        msg = str(err.value)
        assert "neutron-openvswitch-agent on compute1" in msg and "cinder-volume on newctl@lvm" in msg, msg
        assert "cinder-scheduler" not in msg and "gone@lvm" not in msg and "API identity" not in msg, msg

        plan = cloud_check_plan(tmp_path, db.port, neutron, cinder)
        [row] = check.cloud(plan)  # `upgrade check` reads the same on the old controller: down there already
        assert row.status == check.WARN and "neutron-openvswitch-agent on compute1 (last heartbeat" in row.detail
        assert "cinder-volume on newctl@lvm (last heartbeat never)" in row.detail
        assert "cinder-scheduler" not in row.detail

        wrong = replace(s, auth=replace(auth, password="not-the-" + ADMIN_PASSWORD))
        with pytest.raises(StepError) as err:
            cloudcheck.verify(ctx, wrong)
        msg = str(err.value)
        assert f"keystone {auth.auth_url}" in msg and "refused a token for admin" in msg and "HTTP 401" in msg, msg
        assert ADMIN_PASSWORD not in msg

        beating, read = threading.Event(), threading.Event()
        real_heartbeats = cloudcheck.heartbeats

        def heartbeats(*args, **kwargs):  # the real read; tells the writer that the check has its before-values
            try:
                return real_heartbeats(*args, **kwargs)
            finally:
                read.set()

        monkeypatch.setattr(cloudcheck, "heartbeats", heartbeats)

        def beat() -> None:  # what the agent and the volume service write every report_interval, once the
            # check has read the heartbeats it starts from (a loaded machine may start it late)
            read.wait()
            while not beating.wait(0.2):
                db.execute(f"UPDATE {neutron}.agents SET heartbeat_timestamp=UTC_TIMESTAMP()")
                db.execute(f"UPDATE {cinder}.services SET updated_at=UTC_TIMESTAMP()")

        writer = threading.Thread(target=beat)
        writer.start()
        try:
            result = cloudcheck.verify(ctx, replace(s, timeout=60))
        finally:
            beating.set()
            read.set()  # a check that failed before its first read must not leave the writer waiting
            writer.join()
        assert set(result["reported"]) == {"neutron-openvswitch-agent on compute1", "cinder-volume on newctl@lvm"}
        assert result["reported"]["cinder-volume on newctl@lvm"]["before"] is None
        assert [a.split(" ")[1] for a in result["apis"]] == ["identity"]
        assert "pools" not in result  # no block-storage API in this catalog: cinder-scheduler's pools not asked
        assert ADMIN_PASSWORD not in json.dumps(result)
        [row] = check.cloud(plan)
        assert row.status == check.OK, row
    finally:
        db.execute(f"DROP DATABASE IF EXISTS {neutron}")
        db.execute(f"DROP DATABASE IF EXISTS {cinder}")


# ---------------------------------------------------------------------- the plan (in process, no lab)
def test_plan_shows_the_check_and_bad_cloud_keys_are_refused(tmp_path, capsys):
    """`upgrade plan` shows cloud.verify as the run's last step; a bad [cloud] key is refused (exit 2) naming
    it, and nothing is made."""
    from upgrade import cli

    plan = tmp_path / "plan.toml"
    (tmp_path / "dump.key").write_bytes(b"k" * 32)
    (tmp_path / "dump.key").chmod(0o600)
    plan.write_text(PLAN.format(upgrade="", compute="") + "[cloud]\ntimeout = 120\n")
    assert cli.main(["plan", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "cloud.verify" in out and "wait (at most 120 s) until the cloud reports" in out, out
    assert out.rindex("cloud.verify") > out.rindex("compute.compute1.")
    assert "cloud   [the run's last: after every machine above]" in out, out
    for bad, message in (("timeout = 0", "`cloud.timeout` is 0"),
                         ('auth_url = "http://127.0.0.1:5000/v3"', "`cloud.password` is missing"),
                         ('auth_url = "keystone:5000"', "`cloud.auth_url` is 'keystone:5000'"),
                         ('auth_url = "http://x/v3"\npassword = "pw-1234"\ninterface = "private"',
                          "`cloud.interface` is 'private'")):
        plan.write_text(PLAN.format(upgrade="", compute="") + f"[cloud]\n{bad}\n")
        assert cli.main(["plan", str(plan)]) == 2
        assert message in capsys.readouterr().err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.key", "plan.toml"]  # nothing made
