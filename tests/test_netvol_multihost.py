"""Neutron and cinder real on both controllers of the multi-host lab (``scripts/lab/netvolhost.py``): the old
controller serves networks, subnets, routers, ports, security groups, volumes and snapshots through the
management address (the ``openstack`` client in the deploy host, as a non-admin user of its own project);
after `upgrade run` moved the address, the same resources are served by the new controller's release and
new ones can be made; after `upgrade revert`, by the old controller again. One lab from the seeded
snapshot. Needs root; under CI a missing part fails.
"""

from __future__ import annotations

import json
import time

from scripts.lab import netvolhost, served
from tests.test_multihost import _lab, journal_events, tool, vip_holders

OLD_UNITS = sorted(u for lab in served.labs() for u in lab.units if u != lab.broker)


def test_network_and_volume_resources_survive_the_ip_switchover(hostlab_snapshot, tmp_path):
    t0 = time.monotonic()
    with _lab(tmp_path / "lab", hostlab_snapshot, 1) as lab:
        timings = {"setup": netvolhost.setup(lab)}
        # the old release serves on oldctl; the new one is installed and stopped on newctl
        assert sorted(netvolhost.serving(lab, "oldctl")) == OLD_UNITS
        assert netvolhost.serving(lab, "newctl") == []
        assert lab.query("newctl", "SELECT COUNT(*) FROM alembic_version", db="neutron")[0][0] >= 1
        c = netvolhost.client(lab)
        # the catalog names both APIs on the management address: the client found them there
        catalog = {e["Type"]: e["Endpoints"] for e in c.json("catalog", "list")}
        for kind in ("network", "volumev3", "block-storage"):
            assert f"http://{lab.state['vip']}:" in json.dumps(catalog[kind]), catalog
        t = time.monotonic()
        made = netvolhost.create(c)
        timings["create"] = round(time.monotonic() - t, 1)
        ids = made["volume"]["ids"]
        # made by oldctl's services: rows in its databases, the volume on its cinder host (backend lvm, the
        # fake driver's pool)
        assert lab.query("oldctl", "SELECT host FROM volumes WHERE id=%s", (ids["volume"],), db="cinder") \
            == [("old-ctl@lvm#fake",)]
        assert lab.query("oldctl", "SELECT COUNT(*) FROM networks WHERE id=%s", (made["network"]["ids"]["network"],),
                         db="neutron") == [(1,)]

        plan = netvolhost.write_plan(lab)
        t = time.monotonic()
        res = tool(lab, "run", str(plan))
        timings["run"] = round(time.monotonic() - t, 1)
        assert res.returncode == 0, res.stderr[-4000:]
        assert vip_holders(lab) == ["newctl"]
        # the new release serves, the old controller's units are stopped (and kept from starting at boot)
        assert sorted(netvolhost.serving(lab, "newctl")) == OLD_UNITS
        assert netvolhost.serving(lab, "oldctl") == []
        t = time.monotonic()
        netvolhost.verify(c, made)  # same ids and states through the management address; new work served
        timings["verify"] = round(time.monotonic() - t, 1)
        assert lab.query("newctl", "SELECT host FROM volumes WHERE id=%s", (ids["volume"],), db="cinder") \
            == [("new-ctl@lvm#fake",)]
        events = journal_events(lab.dir / "journal")
        dones = [e["step"] for e in events if e["kind"] == "done"]
        for name in served.NAMES:  # verified on the new controller's own address before the address moved
            assert dones.index(f"{name}.verify") < dones.index("network.management.remove_old")
            url = next(json.loads(e["result"])["url"] for e in events
                       if e["step"] == f"{name}.verify" and e["kind"] == "done")
            assert url.startswith(f"http://{lab.hosts['newctl']}:")
        # revert: refused while the new work's rows are on the new controller (nothing changed: it serves on);
        # the operator's choice keeps them in the vault, and the old controller serves the same resources again
        refused = tool(lab, "revert", "--journal", str(lab.dir / "journal"))
        assert refused.returncode == 2 and "cinder.volumes" in refused.stderr, refused.stderr[-3000:]
        assert sorted(netvolhost.serving(lab, "newctl")) == OLD_UNITS and vip_holders(lab) == ["newctl"]
        t = time.monotonic()
        res = tool(lab, "revert", "--journal", str(lab.dir / "journal"), "--discard-new-writes")
        timings["revert"] = round(time.monotonic() - t, 1)
        assert res.returncode == 0, res.stderr[-4000:]
        assert vip_holders(lab) == ["oldctl"]
        assert sorted(netvolhost.serving(lab, "oldctl")) == OLD_UNITS
        assert netvolhost.serving(lab, "newctl") == []
        netvolhost.verify(c, made, new_work=False)
        assert lab.query("oldctl", "SELECT host FROM volumes WHERE id=%s", (ids["volume"],), db="cinder") \
            == [("old-ctl@lvm#fake",)]
        events = journal_events(lab.dir / "journal")
        # nothing secret of the services in the journal or the plan
        text = json.dumps(events) + plan.read_text()
        for s in lab.state["netvol"].values():
            assert s["password"] not in text and s["mq_password"] not in text
    print(f"netvol multihost timings: {timings}, total {time.monotonic() - t0:.0f} s")
