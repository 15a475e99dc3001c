"""An HA control plane in the plan (upgrade/plangroup.py): `upgrade init --layout ubuntu-ha`, what the
loader accepts and refuses, and `upgrade run` refusing a VIP that pacemaker holds before anything exists
(a keepalived VIP is run on the HA lab: tests/test_ha_lab.py).

Pure input validation: in-process, no lab. Every refusal is exit 2 with the key and the fix named,
and leaves the plan's directory exactly as it was (checked by file hashes).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from upgrade import cli, fleet
from upgrade import plan as plan_mod
from upgrade.planinit import HA_MEMBERS, render


@pytest.fixture
def ha_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOURCE_DB_PASSWORD", "s3cret-src")
    monkeypatch.setenv("TARGET_DB_PASSWORD", "s3cret-tgt")
    plan = tmp_path / "plan.toml"
    plan.write_text(render("ubuntu-ha"))
    assert cli.main(["keygen", str(tmp_path / "dump.key")]) == 0
    return plan


def _tree(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_ha_sample_loads_with_both_groups(ha_plan: Path) -> None:
    p = plan_mod.load(ha_plan)
    for side, group in (("source", p.source.group), ("target", p.target.group)):
        assert group is not None
        assert [m.name for m in group.members] == [n for n, _ in HA_MEMBERS[side]]
        assert [m.host.url for m in group.members] == [f"ssh://root@{a}" for _, a in HA_MEMBERS[side]]
        assert all(m.roles == ("db", "mq", "api") for m in group.members)
        assert [m.name for m in group.with_role("db")] == [n for n, _ in HA_MEMBERS[side]]
        assert (group.vip.address, group.vip.device, group.vip.owner) == ("198.51.100.10/24", "eth0", "keepalived")
    assert p.source.host == p.source.group.members[0].host.url
    assert p.target.db.address == HA_MEMBERS["target"][0][1]


def test_single_controller_layouts_name_no_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DB_PASSWORD", "a")
    monkeypatch.setenv("TARGET_DB_PASSWORD", "b")
    plan = tmp_path / "plan.toml"
    plan.write_text(render("ubuntu-systemd"))
    (tmp_path / "dump.key").write_bytes(b"")  # key_file is only named here, never read by load
    p = plan_mod.load(plan)
    assert p.source.group is None and p.target.group is None
    assert re.search(r"^# members = \[", plan.read_text(), re.M)  # documented, commented out


def test_run_refuses_a_pacemaker_vip_before_anything_exists(ha_plan: Path, capsys: pytest.CaptureFixture) -> None:
    text = ha_plan.read_text().replace('owner = "keepalived"}', 'owner = "pacemaker", resource = "vip-management"}')
    assert re.search(r'^vip = .*owner = "pacemaker"', text, re.M)
    ha_plan.write_text(text)
    before = _tree(ha_plan.parent)
    assert cli.main(["run", str(ha_plan)]) == 2
    err = capsys.readouterr().err
    assert "whose VIP pacemaker holds (resource 'vip-management')" in err and "keepalived only" in err
    assert _tree(ha_plan.parent) == before
    assert not (ha_plan.parent / "upgrade-journal").exists()


def test_plan_shows_both_groups(ha_plan: Path, capsys: pytest.CaptureFixture) -> None:
    # `upgrade plan` asks the source DB for sizes: closed loopback ports here, never the documentation addresses
    text = re.sub(r'^address = "198\.51\.100\.(31|41)"$', 'address = "127.0.0.1"', ha_plan.read_text(), flags=re.M)
    text = re.sub(r"^port = 3306$", "port = 1", text, count=1, flags=re.M)
    ha_plan.write_text(re.sub(r"^port = 3306$", "port = 2", text, count=1, flags=re.M))
    assert cli.main(["plan", str(ha_plan)]) == 0
    out = capsys.readouterr().out
    for side in ("source", "target"):
        members = ", ".join(f"{n} ssh://root@{a} (db, mq, api)" for n, a in HA_MEMBERS[side])
        assert f"  group: {members}; VIP 198.51.100.10/24 on eth0 held by keepalived" in out
    # the other members' steps and the VIP move, as a run builds them
    for step in ("ha.oldctl2.keystone.stop_source", "ha.cluster.replicated", "ha.newctl3.keystone.install_config",
                 "ha.newctl3.keystone.start_target", "ha.vip.stop_old", "ha.vip.start_new", "ha.vip.check"):
        assert step in out, step


def test_vip_units_control_and_check_host_load(ha_plan: Path) -> None:
    text = ha_plan.read_text().replace(
        'owner = "keepalived"}', 'owner = "keepalived", units = ["haproxy", "keepalived"], service_control = '
        '"template", control = ["vipctl", "{action}", "{unit}"], check_from = "ssh://root@198.51.100.21"}')
    ha_plan.write_text(text)
    vip = plan_mod.load(ha_plan).source.group.vip
    assert vip.units == ("haproxy", "keepalived")
    assert vip.control is not None and vip.control.argv("stop", "keepalived") == ["vipctl", "stop", "keepalived"]
    assert vip.check_from is not None and vip.check_from.url == "ssh://root@198.51.100.21"


EDITS = [
    # (what, old text, new text, the key named, words of the fix)
    ("a role no one knows", 'host = "ssh://root@198.51.100.32", roles = ["db", "mq", "api"]',
     'host = "ssh://root@198.51.100.32", roles = ["db", "web"]', "source.members[1].roles", "distinct roles"),
    ("a member twice", 'name = "oldctl2"', 'name = "oldctl1"', "source.members[1].name", "unique host name"),
    ("no db member", "members", 'roles = ["mq", "api"]', "source.members", "role 'db'"),
    ("host outside the group", '\nhost = "ssh://root@198.51.100.31"\n', '\nhost = "ssh://root@198.51.100.39"\n',
     "source.host", "none of `members`"),
    ("one member", None, None, "source.members", "2 to 9 controllers"),
    ("a VIP without prefix", 'vip = {address = "198.51.100.10/24", device = "eth0", owner = "keepalived"}\n'
     '\n# the DB server of a controller (`[source.db]`',
     'vip = {address = "198.51.100.10", device = "eth0", owner = "keepalived"}\n'
     '\n# the DB server of a controller (`[source.db]`', "source.vip.address", "prefix length"),
    ("an unknown owner", 'owner = "keepalived"}', 'owner = "vrrpd"}', "source.vip.owner", "keepalived, pacemaker"),
    ("pacemaker without its resource", 'owner = "keepalived"}', 'owner = "pacemaker"}', "source.vip.resource",
     "name the resource"),
    ("an unknown key", 'device = "eth0", owner', 'device = "eth0", priority = 100, owner', "source.vip.priority",
     "not a known key"),
    ("a VIP unit twice", 'owner = "keepalived"}', 'owner = "keepalived", units = ["keepalived", "keepalived"]}',
     "source.vip.units", "distinct unit names"),
    ("a VIP control without its action", 'owner = "keepalived"}',
     'owner = "keepalived", service_control = "template", control = ["vipctl"]}', "source.vip.control",
     "containing \"{action}\""),
    ("a check host that is no URL", 'owner = "keepalived"}', 'owner = "keepalived", check_from = "compute1"}',
     "source.vip.check_from", "ssh://[user@]address[:port]"),
]


def _one_member(text: str) -> str:
    line = next(x for x in text.splitlines() if x.startswith("members = ") and "oldctl1" in x)
    return text.replace(line, 'members = [{name = "oldctl1", host = "ssh://root@198.51.100.31", roles = ["db", '
                                '"api"]}]', 1)


@pytest.mark.parametrize("what,old,new,key,fix", EDITS, ids=[e[0] for e in EDITS])
def test_bad_groups_are_refused_by_key(ha_plan: Path, capsys: pytest.CaptureFixture, what: str, old: str | None,
                                       new: str | None, key: str, fix: str) -> None:
    text = ha_plan.read_text()
    if old is None:
        edited = _one_member(text)
    elif old == "members":  # every source member's roles
        line = next(x for x in text.splitlines() if x.startswith("members = ") and "oldctl1" in x)
        edited = text.replace(line, line.replace('roles = ["db", "mq", "api"]', new), 1)
    else:
        assert old in text, what
        edited = text.replace(old, new, 1)
    ha_plan.write_text(edited)
    before = _tree(ha_plan.parent)
    with pytest.raises(plan_mod.PlanError) as err:
        plan_mod.load(ha_plan)
    assert f"`{key}`" in str(err.value) and fix in str(err.value), str(err.value)
    assert cli.main(["check", str(ha_plan)]) == 2
    assert key in capsys.readouterr().out
    assert _tree(ha_plan.parent) == before


def _without_target_group(text: str) -> str:
    lines = text.splitlines(keepends=True)
    target = lines.index("[target]\n")
    out = lines[:target] + [x for x in lines[target:] if not x.startswith(("members = ", "vip = "))]
    return "".join(out)


def test_both_sides_are_groups_or_neither(ha_plan: Path) -> None:
    text = _without_target_group(ha_plan.read_text())
    ha_plan.write_text(text.replace('host = "ssh://root@198.51.100.41"', 'host = "local"', 1))
    with pytest.raises(plan_mod.PlanError, match=r"`source` names a group .* give `target.members`"):
        plan_mod.load(ha_plan)


def test_one_vip_for_both_sides_and_not_in_network(ha_plan: Path) -> None:
    text = ha_plan.read_text()
    target_vip = text.rindex('vip = {address = "198.51.100.10/24"')
    ha_plan.write_text(text[:target_vip] + text[target_vip:].replace("198.51.100.10/24", "198.51.100.20/24", 1))
    with pytest.raises(plan_mod.PlanError, match="give both the same"):
        plan_mod.load(ha_plan)
    ha_plan.write_text(text + '\n[network]\naddresses = [{address = "198.51.100.10/24", device = "eth0", '
                              'name = "management"}]\ncheck_from = "local"\n')
    with pytest.raises(plan_mod.PlanError, match=r"moves 198\.51\.100\.10, the groups' VIP .*\(keepalived\)"):
        plan_mod.load(ha_plan)


def test_the_run_works_through_a_healthy_old_member_when_the_plans_own_is_down(ha_plan: Path) -> None:
    """The old member an HA run works through (upgrade/fleet.py): the plan's own `host` while its node is
    healthy, else the first healthy old DB member in the plan's order, with its host and its node on the
    side's DB port and account (what the run then records for resume and revert; tests/test_ha_lab.py runs it)."""
    nodes = ["oldctl1", "oldctl2", "oldctl3"]
    assert fleet.choose_working("oldctl1", nodes, dict.fromkeys(nodes)) == "oldctl1"
    down = {"oldctl1": "cannot be reached", "oldctl2": None, "oldctl3": None}
    assert fleet.choose_working("oldctl1", nodes, down) == "oldctl2"
    assert fleet.choose_working("oldctl3", nodes, {**down, "oldctl2": "Donor/Desynced"}) == "oldctl3"
    assert fleet.choose_working("oldctl1", nodes, dict.fromkeys(nodes, "cannot be reached")) is None
    assert fleet.choose_working("api1", nodes, dict.fromkeys(nodes, "cannot be reached")) == "api1"  # not a DB node

    p = plan_mod.load(ha_plan)
    first, second = p.source.group.members[:2]
    assert p.source.host_spec == first.host and fleet.through_member(p, first.name) is p
    moved = fleet.through_member(p, second.name)
    assert moved.source.host_spec == second.host and moved.source.host == second.host.url
    assert moved.source.db.address == second.host.target()[1] != p.source.db.address
    assert (moved.source.db.port, moved.source.db.admin_user, moved.source.db.admin_password) == \
        (p.source.db.port, p.source.db.admin_user, p.source.db.admin_password)
    assert (moved.target, moved.raw, moved.sha256) == (p.target, p.raw, p.sha256)  # the plan as it was written
