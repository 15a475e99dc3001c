"""Services the plan does not name (real keystone lab): a service in the old keystone's catalog (swift,
registered through the real API) and a daemon running on the old controller (heat-engine, a real
process on its config) are refused by `upgrade check` and `upgrade run` (exit 2, each named with where
it was seen and the fix; nothing changed, no journal); listed under `[upgrade] ignore` with a reason,
the run goes through."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from scripts.lab import ksapi, svc
from tests.conftest import ADMIN_PASSWORD, upgrade
from tests.test_check import _check

IGNORE = 'ignore = {glance = "the lab\'s glance is not part of this upgrade"}'


@pytest.fixture
def unplanned(lab, tmp_path) -> Iterator[str]:
    """swift in the old catalog (with an endpoint), heat-engine running on the old controller's config."""
    url = lab.seed["keystone_url"]
    token = ksapi.get_token(url, "admin", ADMIN_PASSWORD, project="admin")
    sid = ksapi.call("POST", f"{url}/services", token, {"service": {"name": "swift", "type": "object-store"}})
    ksapi.call("POST", f"{url}/endpoints", token, {"endpoint": {
        "service_id": sid["service"]["id"], "interface": "public", "url": "http://198.51.100.10:8080/v1/AUTH_%(project_id)s"}})
    daemon = tmp_path / "bin" / "heat-engine"
    daemon.parent.mkdir()
    daemon.write_text("import signal\nsignal.pause()\n")
    conf = lab.old.root / "etc" / "heat" / "heat.conf"
    proc = subprocess.Popen([sys.executable, str(daemon), "--config-file", str(conf)])
    try:
        yield str(conf)
    finally:
        proc.kill()
        proc.wait()


def test_unplanned_services_are_refused_by_check_and_run(lab, tmp_path, unplanned):
    plan = lab.write_plan(tmp_path / "plan")
    before = lab.state()
    code, rows, out = _check(plan)
    assert code == 2, out
    assert rows["service swift"][0] == "FAIL" and rows["service heat"][0] == "FAIL", out
    assert "catalog: object-store 'swift' at public http://198.51.100.10:8080/v1/AUTH_%(project_id)s" in out
    assert "process heat-engine" in out
    assert "this tool does not upgrade swift" in out and '[upgrade] ignore = {heat = "REASON"}' in out
    assert "glance" not in {name.split()[-1] for name in rows if name.startswith("service ")}  # the lab ignores it
    res = upgrade("run", str(plan))
    assert res.returncode == 2, res.stderr
    err = res.stderr
    assert "the old controller runs 2 service(s) the plan does not name" in err and "nothing was changed" in err
    assert "swift (catalog: object-store 'swift'" in err and "heat (process heat-engine)" in err
    assert f'[upgrade] ignore = {{swift = "REASON"}} in {plan.resolve()}' in err
    assert lab.state() == before and not (tmp_path / "plan" / "journal").exists()
    assert svc.status(lab.old.root, "keystone") and not svc.status(lab.new.root, "keystone")


def test_a_service_the_tool_upgrades_but_the_plan_leaves_out_is_named_with_its_fix(lab, tmp_path):
    """The lab's catalog names glance: without the lab's ignore the run is refused, the fix adds it to services."""
    plan = lab.write_plan(tmp_path)
    plan.write_text(plan.read_text().replace(IGNORE + "\n", ""))
    before = lab.state()
    res = upgrade("run", str(plan))
    assert res.returncode == 2, res.stderr
    assert "glance (catalog: image 'glance' at public" in res.stderr
    assert 'add "glance" to upgrade.services, or say why it stays as it is' in res.stderr
    assert lab.state() == before and not (tmp_path / "journal").exists()


def test_ignored_services_let_the_run_go_through(lab, tmp_path, unplanned):
    plan = lab.write_plan(tmp_path / "plan")
    text = plan.read_text()
    assert IGNORE in text
    plan.write_text(text.replace(IGNORE, 'ignore = {glance = "not in this lab\'s upgrade", swift = "swift stays '
                                         'on its storage nodes", heat = "moved by hand after the upgrade"}'))
    code, rows, out = _check(plan)
    assert rows["services"][0] == "OK", out
    assert "swift (swift stays on its storage nodes)" in rows["services"][1]
    assert not any(name.startswith("service ") for name in rows), out
    res = upgrade("run", str(plan))
    assert res.returncode == 0, res.stderr
    assert svc.status(lab.new.root, "keystone") and not svc.status(lab.old.root, "keystone")
