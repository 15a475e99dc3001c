"""`upgrade plan`: every keystone step with its host and exact command, no secret; `--graph` draws the
service machines (svg, png, dot) with one node per state and both transitions of every step."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from services.registry import steps_for
from statemachine.machine import ServiceMachine
from tests.conftest import ADMIN_PASSWORD, SOURCE_DB_PASSWORD, TARGET_DB_PASSWORD, TARGET_PW_ENV, upgrade

SVG = "{http://www.w3.org/2000/svg}"
MACHINE = ServiceMachine("keystone", steps_for("keystone"))

PLAN = f"""\
[upgrade]
from = "2025.2"
to = "2026.1"
services = ["keystone"]
journal = "journal"

[vault]
key_file = "dump.key"

[source]
host = "local"
etc = "/srv/old/etc"
lib = "/srv/old/lib"
bin = "/opt/ks-2025.2/bin"
service_control = "sysvinit"
[source.db]
address = "127.0.0.1"
port = 13306
admin_password = "{SOURCE_DB_PASSWORD}"

[target]
host = "local"
etc = "/srv/new/etc"
bin = "/opt/ks-2026.1/bin"
[target.db]
address = "127.0.0.1"
port = 13307
admin_password_env = "{TARGET_PW_ENV}"

[services.keystone]
unit = "openstack-keystone"
owner = "keystone:keystone"
verify_url = "http://admin:{ADMIN_PASSWORD}@127.0.0.1:5000/v3"
"""


def _plan(tmp_path: Path) -> Path:
    p = tmp_path / "plan.toml"
    p.write_text(PLAN)
    assert upgrade("keygen", str(tmp_path / "dump.key")).returncode == 0
    return p


def test_plan_lists_every_step_with_host_and_command_and_no_secret(tmp_path):
    res = upgrade("plan", str(_plan(tmp_path)))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for step in MACHINE.steps:
        side = "source" if step.name.endswith(("stop_source", "dump_source")) else "target"
        assert f"{step.name}  on {side} (local)  -> {step.state}" in out, step.name
    expected = [
        "service openstack-keystone stop",                      # source: sysvinit
        "systemctl stop openstack-keystone",                    # target: systemd
        "systemctl start openstack-keystone",
        "mysqldump --defaults-extra-file=/dev/fd/3 --single-transaction",
        "mysql --defaults-extra-file=/dev/fd/3 keystone",
        "tar -C /srv/old/etc --numeric-owner --anchored --no-wildcards --exclude=keystone/FILE -cf - keystone",
        "tar -C /srv/new/etc --numeric-owner -xpf -",
        "rewrite paths in /srv/new/etc/keystone/keystone.conf: /srv/old/etc -> /srv/new/etc, /srv/old/lib -> /var/lib",
        "/opt/ks-2026.1/bin/keystone-manage --config-file /srv/new/etc/keystone/keystone.conf db_sync",
        "/opt/ks-2026.1/bin/keystone-manage --config-file /srv/new/etc/keystone/keystone.conf db_sync --check",
        "chown -R keystone:keystone /srv/new/etc/keystone",
        "chown -R keystone:keystone /var/lib/keystone",
        "GET http://admin:***@127.0.0.1:5000/v3",
    ]
    for line in expected:
        assert line in out, line
    for secret in (SOURCE_DB_PASSWORD, TARGET_DB_PASSWORD, ADMIN_PASSWORD):
        assert secret not in res.stdout + res.stderr
    assert not (tmp_path / "journal").exists() and TARGET_DB_PASSWORD not in out


def _svg_nodes(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    return [g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g") if g.get("class") == "node"]


def test_graph_svg_has_one_node_per_state_and_both_transitions(tmp_path):
    svg = tmp_path / "machines.svg"
    res = upgrade("plan", str(_plan(tmp_path)), "--graph", str(svg))
    assert res.returncode == 0, res.stderr
    assert f"drew the service machines to {svg}" in res.stdout
    nodes = _svg_nodes(svg)
    assert sorted(nodes) == sorted(f"keystone.{s}" for s in MACHINE.states)
    assert len(nodes) == len(MACHINE.states) == 12
    labels = [t.text for t in ET.parse(svg).getroot().iter(f"{SVG}text")]
    for step in MACHINE.steps:
        assert f"run:{step.name}" in labels and f"undo:{step.name}" in labels


def test_graph_dot_and_png(tmp_path):
    plan = _plan(tmp_path)
    dot = tmp_path / "machines.dot"
    assert upgrade("plan", str(plan), "--graph", str(dot)).returncode == 0
    text = dot.read_text()
    assert text.startswith("digraph") and "subgraph cluster_keystone" in text
    for state in MACHINE.states:
        assert f'"keystone.{state}" [label="{state}' in text
    for before, step in zip(MACHINE.states, MACHINE.steps, strict=False):
        assert f'"keystone.{before}" -> "keystone.{step.state}" [label="run:{step.name}"]' in text
        assert f'"keystone.{step.state}" -> "keystone.{before}" [label="undo:{step.name}"]' in text
    png = tmp_path / "machines.png"
    assert upgrade("plan", str(plan), "--graph", str(png)).returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- every machine of the run
FLEET = PLAN.replace('services = ["keystone"]', 'services = ["keystone", "nova", "nova-unpin"]\ncompute_pool = 4') + """
[network]
addresses = [{address = "198.51.100.10/24", device = "eth0", name = "management"}]

[[computes]]
name = "compute1"
host = "ssh://root@198.51.100.21"
units = ["nova-compute"]

[[computes]]
name = "compute2"
host = "ssh://root@198.51.100.22"
units = ["nova-compute", "neutron-openvswitch-agent"]
"""


def _fleet_plan(tmp_path, monkeypatch, text: str):
    """The plan *text* loaded (a key beside it, the target's password in the environment), with what
    `upgrade plan` prints of it and the steps of the runner a run builds from it."""
    import io

    from journal import vault
    from journal.store import Journal
    from upgrade import app, planview
    from upgrade import plan as plan_mod

    p = tmp_path / "plan.toml"
    p.write_text(text)
    vault.generate_key_file(tmp_path / "dump.key")
    monkeypatch.setenv(TARGET_PW_ENV, TARGET_DB_PASSWORD)
    plan = plan_mod.load(p)
    buf = io.StringIO()
    planview.render(plan, buf)
    key = vault.Key.from_file(tmp_path / "dump.key")
    journal = Journal(tmp_path / "j", key=key)
    runner = app.build_runner(plan, journal, key, journal.create_run({}, "0" * 64, None, "2025.2", "2026.1",
                                                                     key.key_id))
    return plan, buf.getvalue(), [(m.name, s.name) for m in runner.machines for s in m.steps]


def test_plan_shows_every_machine_the_run_drives_in_its_order(tmp_path, monkeypatch):
    """The switchover, the compute hosts and nova-unpin are in `upgrade plan`, in the order of the runner a
    run builds from the same plan, step for step; the compute hosts' commands are recorded from the steps
    (a recording host in place of each compute host: nothing connects); the DB URLs name the driver the
    rewrite writes."""
    from upgrade import planview

    plan, out, ran = _fleet_plan(tmp_path, monkeypatch, FLEET)
    shown = [(r["service"], r["step"]) for r in planview.steps(plan)]
    assert shown == ran
    machines = list(dict.fromkeys(m for m, _s in ran))
    assert machines == ["keystone", "nova", "network", "compute.compute1", "compute.compute2", "nova-unpin"]
    # each machine's heading, in that order, with when it runs
    headings = ["\nkeystone\n", "\nnova\n", "\nnetwork   [after every service above]\n",
                "\ncompute.compute1   [after every service above; side by side with the other 1 of its kind, "
                "at most 4 at once]\n",
                "\ncompute.compute2   [after every service above; side by side with the other 1 of its kind, "
                "at most 4 at once]\n",
                "\nnova-unpin   [after the hosts above]\n"]
    at = [out.index(h) for h in headings]
    assert at == sorted(at)
    for line in ("network.management.remove_old  on source (local)",
                 "ip addr del 198.51.100.10/24 dev eth0 on the old controller",
                 "network.management.add_new  on target (local)",
                 "network.management.check  on local",
                 "compute.compute2.restart  on compute:compute2  -> restarted",
                 "$ systemctl stop neutron-openvswitch-agent",
                 "$ systemctl start neutron-openvswitch-agent",
                 "compute.compute2.verify  on compute:compute2",
                 "$ systemctl is-active nova-compute",
                 "nova-unpin.unpin_compute  on target (local)",
                 "remove [upgrade_levels] compute from /srv/new/etc/nova/nova.conf",
                 "to mysql+pymysql://USER:***@127.0.0.1:13307/nova (if present",
                 "to mysql+pymysql://USER:***@127.0.0.1:13307/nova_api (if present"):
        assert line in out, line
    assert not (tmp_path / "journal").exists() and TARGET_DB_PASSWORD not in out


def test_plan_of_a_rolling_upgrade_left_pinned_shows_the_compute_steps_and_when_unpin_runs(tmp_path, monkeypatch):
    """With an upgrade command per compute host the rolling upgrade's steps are in `upgrade plan` (as the run
    builds them), and with ``unpin = "later"`` nova-unpin is shown as left for `upgrade unpin PLAN`, while the
    runner of `upgrade run` leaves it out."""
    from upgrade import planview

    text = FLEET.replace("compute_pool = 4", 'compute_pool = 4\nunpin = "later"').replace(
        'units = ["nova-compute"]\n', 'units = ["nova-compute"]\nupgrade_command = ["apt-get", "-y", "upgrade"]\n'
        'downgrade_command = ["apt-get", "-y", "install", "nova-compute=1:31*"]\n')
    plan, out, ran = _fleet_plan(tmp_path, monkeypatch, text)
    shown = [(r["service"], r["step"]) for r in planview.steps(plan)]
    for step in ("disable", "upgrade", "restart_upgraded", "report_version", "enable"):
        assert ("compute.compute1", f"compute.compute1.{step}") in shown, step
        assert ("compute.compute2", f"compute.compute2.{step}") not in shown, step  # no upgrade command there
    assert "\nnova-unpin   [not in `upgrade run`: left for `upgrade unpin PLAN`" in out
    assert ran == [(m, s) for m, s in shown if m != "nova-unpin"]
