"""The release table and the commands every step issues, per service and per jump, checked
against shared/reference/openstack-facts.md (§1.1 jumps, §2-§8 commands) and, for Havana ->
Icehouse, against the runbook (tests/golden/havana-icehouse.txt, written from its text)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services import releases
from services.infra import recording
from services.infra.settings import DBEndpoint, ServiceControl, ServiceSettings, Side
from services.registry import ORDER, steps_for, unsupported
from services.releases import Jump

GOLDEN = Path(__file__).with_name("golden") / "havana-icehouse.txt"


# ---------------------------------------------------------------------- jumps (facts §1.1)
def test_every_adjacent_jump_and_slurp_skip_is_allowed() -> None:
    names = releases.NAMES
    assert names[0] == "havana" and names[1] == "icehouse" and names[-1] == "2026.2"
    for a, b in zip(names, names[1:], strict=False):
        assert releases.jump_error(a, b) is None, (a, b)
    for a, b in (("2023.1", "2024.1"), ("2024.1", "2025.1"), ("2025.1", "2026.1")):
        assert releases.jump_error(a, b) is None
    assert [r for r, slurp in releases.RELEASES if slurp] == ["2023.1", "2024.1", "2025.1", "2026.1"]


@pytest.mark.parametrize(("src", "dst", "allowed"), [
    ("2025.2", "2026.2", "2026.1"),            # not-SLURP -> not-SLURP
    ("2024.1", "2026.1", "2024.2 or 2025.1"),  # spans two SLURP cycles
    ("havana", "juno", "icehouse"),            # before SLURP: adjacent only
    ("2026.1", "2025.2", "2026.2"),            # downgrade
])
def test_other_jumps_are_refused_listing_the_allowed_targets(src: str, dst: str, allowed: str) -> None:
    msg = releases.jump_error(src, dst)
    assert msg is not None and f"from {src} the tool upgrades to {allowed}" in msg


def test_unknown_release_names_the_known_ones() -> None:
    assert "unknown source release 'folsom'" in releases.jump_error("folsom", "grizzly")
    assert "unknown target release '2027.1'" in releases.jump_error("2026.1", "2027.1")
    with pytest.raises(ValueError, match="not supported"):
        Jump("2025.2", "2026.2")


def test_placement_does_not_exist_before_stein() -> None:
    assert "placement does not exist before stein" in unsupported("placement", Jump("havana", "icehouse"))
    assert unsupported("placement", Jump("2025.2", "2026.1")) is None


# ---------------------------------------------------------------------- plan-time context
@dataclass
class NameOnly:
    """A host `upgrade plan` may hand: it has a name and nothing else."""

    name: str


@dataclass
class PlanCtx:
    source: Side
    target: Side
    services: dict[str, ServiceSettings]
    from_release: str = ""
    to_release: str = ""


def ctx(jump: Jump, services: tuple[str, ...], units: dict[str, list[str]] | None = None,
        **options: dict[str, Any]) -> PlanCtx:
    def side(role: str, address: str) -> Side:
        return Side(role=role, host=NameOnly(role), etc="/etc", lib="/var/lib", bin="/usr/bin",
                    db=DBEndpoint(address, 3306, "root", "pw"), control=ServiceControl("sysvinit"))

    st = {}
    for name in services:
        opts = {"units": (units or {}).get(name), **options.get(name.replace("-", "_"), {})}
        st[name] = ServiceSettings(name=name, unit=f"openstack-{name}", db_name=name, owner=f"{name}:{name}",
                                   options=opts)
    return PlanCtx(side("source", "10.0.0.3"), side("target", "10.0.0.4"), st, jump.source, jump.target)


def commands(name: str, jump: Jump, c: PlanCtx, step: str) -> list[str]:
    s = next(s for s in steps_for(name, jump, c.services[name].options) if s.name == f"{name}.{step}")
    return [line.split("   #")[0] for line in recording.command_lines(s, c)]


# ---------------------------------------------------------------------- every service, every jump
JUMPS = [(a, b) for a in releases.NAMES for b in releases.allowed_targets(a)]


@pytest.mark.parametrize(("src", "dst"), JUMPS, ids=[f"{a}-{b}" for a, b in JUMPS])
def test_every_service_builds_for_every_jump_with_commands(src: str, dst: str) -> None:
    jump = Jump(src, dst)
    names = [n for n in ORDER if unsupported(n, jump) is None]
    c = ctx(jump, tuple(names), neutron={"plugin_config": "plugins/ml2/ml2_conf.ini"})
    for name in names:
        steps = steps_for(name, jump, c.services[name].options)
        assert len({s.name for s in steps}) == len(steps)
        for s in steps:
            assert s.name.startswith(f"{name}."), s.name
            assert recording.command_lines(s, c), f"{s.name} shows no command for {src} -> {dst}"


M = "/usr/bin"
KS, GL = f"{M}/keystone-manage --config-file /etc/keystone/keystone.conf", \
    f"{M}/glance-manage --config-file /etc/glance/glance-api.conf"
NOVA = f"{M}/nova-manage --config-file /etc/nova/nova.conf"
NEUTRON = (f"{M}/neutron-db-manage --config-file /etc/neutron/neutron.conf --config-file "
           "/etc/neutron/plugins/ml2/ml2_conf.ini")
CINDER = f"{M}/cinder-manage --config-file /etc/cinder/cinder.conf"
PLACEMENT = f"{M}/placement-manage --config-file /etc/placement/placement.conf"

#: facts §10 per service, for the current jumps (all of them: 2024.1 -> 2025.1 SLURP and N -> N+1)
CURRENT = {
    ("keystone", "upgrade_schema"): None,  # keystone.py's own step (db_sync, then check), tested below
    ("glance", "upgrade_schema"): [f"{GL} db sync", f"{GL} db check"],
    ("glance", "status_check"): [f"{M}/glance-status --config-file /etc/glance/glance-api.conf upgrade check"],
    ("placement", "upgrade_schema"): [f"{PLACEMENT} db sync"],
    ("placement", "online_migrations"): [f"{PLACEMENT} db online_data_migrations"],
    ("placement", "status_check"): [f"{M}/placement-status --config-file /etc/placement/placement.conf upgrade check"],
    ("nova", "api_db_sync"): [f"{NOVA} api_db sync"],
    ("nova", "upgrade_schema"): [f"{NOVA} db sync"],
    ("nova", "online_migrations"): [f"{NOVA} db online_data_migrations"],
    ("nova", "status_check"): [f"{M}/nova-status --config-file /etc/nova/nova.conf upgrade check"],
    ("neutron", "upgrade_schema"): [f"{NEUTRON} upgrade heads"],
    ("neutron", "status_check"): [f"{M}/neutron-status --config-file /etc/neutron/neutron.conf upgrade check"],
    ("cinder", "upgrade_schema"): [f"{CINDER} db sync"],
    ("cinder", "online_migrations"): [f"{CINDER} db online_data_migrations"],
    ("keystone", "status_check"): [f"{M}/keystone-status --config-file /etc/keystone/keystone.conf upgrade check"],
    ("cinder", "status_check"): [f"{M}/cinder-status --config-file /etc/cinder/cinder.conf upgrade check"],
    ("heat", "upgrade_schema"): [f"{M}/heat-manage --config-file /etc/heat/heat.conf db_sync"],
    ("heat", "status_check"): [f"{M}/heat-status --config-file /etc/heat/heat.conf upgrade check"],
}


@pytest.mark.parametrize(("src", "dst"), [("2024.1", "2025.1"), ("2025.1", "2025.2"), ("2025.2", "2026.1"),
                                          ("2025.1", "2026.1"), ("2026.1", "2026.2")])
def test_current_commands_follow_the_facts(src: str, dst: str) -> None:
    jump = Jump(src, dst)
    c = ctx(jump, ("keystone", "glance", "placement", "nova", "neutron", "cinder", "heat"),
            neutron={"plugin_config": "plugins/ml2/ml2_conf.ini"})
    for (name, step), want in CURRENT.items():
        if want is not None:
            assert commands(name, jump, c, step) == want, (name, step)
    assert commands("keystone", jump, c, "upgrade_schema")[1:] == [f"{KS} db_sync", f"{KS} db_sync --check"]
    # update_cell for cell0 with its URL explicit, then every other cell (facts §4.3)
    cells = commands("nova", jump, c, "update_cells")
    assert cells[1].startswith(f"{NOVA} cell_v2 update_cell --cell_uuid 00000000-0000-0000-0000-000000000000 "
                               "--database_connection 'mysql+pymysql://USER:***@10.0.0.4:3306/nova_cell0' "
                               "--transport-url none:///")
    # the compute RPC pin names the source release (facts §4.5)
    install = commands("nova", jump, c, "install_config")
    assert any(f"[upgrade_levels] compute = {releases.code_name(src)}" in line for line in install)
    # cinder: the previous release's online migrations by the source's cinder-manage, as a DB user only the
    # target has, its server identified from the source host first
    prev = commands("cinder", jump, c, "previous_online_migrations")
    assert prev[0].startswith("target SQL: CREATE USER osu_prev_<run>")
    assert prev[-1] == "target SQL: DROP USER osu_prev_<run>"
    assert prev[2] == (f"source: {M}/cinder-manage --config-file '<0600 file: [database] connection = that user at "
                       "the target copy>' db online_data_migrations")
    # placement before nova in the registry order
    assert ORDER.index("placement") < ORDER.index("nova")


def test_heat_status_check_from_stein_and_its_units_per_release() -> None:
    """heat-status exists from Stein (the upgrade-checkers goal); heat-api-cloudwatch went in Queens."""
    def names(jump: Jump) -> list[str]:
        return [s.name for s in steps_for("heat", jump)]

    assert "heat.status_check" not in names(Jump("queens", "rocky"))
    assert names(Jump("rocky", "stein")).index("heat.status_check") == names(Jump("rocky", "stein")).index(
        "heat.upgrade_schema") + 1
    jump = Jump("pike", "queens")
    c = ctx(jump, ("heat",))
    assert "openstack-heat-api-cloudwatch" in " ".join(commands("heat", jump, c, "stop_source"))
    assert "openstack-heat-api-cloudwatch" not in " ".join(commands("heat", jump, c, "start_target"))
    assert commands("heat", jump, c, "start_target")[-1] == "service openstack-heat-api start"  # in reverse


def test_renamed_options_follow_the_target_release() -> None:
    """sql_connection & co. and rabbit_* rewritten only where the target no longer reads them (§1.4)."""
    from services.steps.legacy_config import rewrite

    havana = (b"[DEFAULT]\n# keep me\nsql_connection = mysql://nova:pw@10.0.0.3/nova\nrabbit_host = 10.0.0.3\n"
              b"rabbit_userid = nova\nrabbit_password = s3cret\nrpc_backend = nova.openstack.common.rpc.impl_kombu\n")
    same, notes = rewrite(havana, "icehouse")
    assert same == havana and notes == []  # the runbook keeps sql_connection for Icehouse
    new, notes = rewrite(havana, "2024.1")
    assert notes == ["[DEFAULT] sql_connection -> [database] connection", "[DEFAULT] rabbit_* -> transport_url"]
    assert new == (b"[DEFAULT]\n# keep me\ntransport_url = rabbit://nova:s3cret@10.0.0.3:5672/\n\n"
                   b"[database]\nconnection = mysql://nova:pw@10.0.0.3/nova\n")


# ---------------------------------------------------------------------- Havana -> Icehouse: the runbook
RUNBOOK_UNITS = {
    "keystone": ["openstack-keystone"],
    "glance": ["openstack-glance-api", "openstack-glance-registry"],
    "nova": ["openstack-nova-api", "openstack-nova-cert", "openstack-nova-conductor", "openstack-nova-consoleauth",
             "openstack-nova-metadata-api", "openstack-nova-novncproxy", "openstack-nova-scheduler"],
    "neutron": ["neutron-server", "neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent",
                "neutron-openvswitch-agent"],
    "cinder": ["openstack-cinder-api", "openstack-cinder-scheduler", "openstack-cinder-volume"],
    "horizon": ["httpd"],
}


def render_plan(jump: Jump, c: PlanCtx, names: tuple[str, ...]) -> list[str]:
    out = []
    for name in names:
        out.append(f"== {name} ==")
        for s in steps_for(name, jump, c.services[name].options):
            out.append(f"{s.name} [{s.host}]")
            out += [f"  {line}" for line in recording.command_lines(s, c)]
    return out


def test_havana_icehouse_reproduces_the_runbook() -> None:
    jump = Jump("havana", "icehouse")
    names = ("keystone", "glance", "nova", "neutron", "cinder", "horizon")
    c = ctx(jump, names, units={k: v for k, v in RUNBOOK_UNITS.items() if k != "keystone"},
            neutron={"plugin_config": "plugins/openvswitch/ovs_neutron_plugin.ini"},
            cinder={"iscsi_address_from": "192.168.1.4", "iscsi_address_to": "10.0.0.4", "copy_volumes": True,
                    "old_host": "controller"},
            horizon={"openstack_host": "10.0.0.4"}, nova={"metadata": "neutron"})
    got = render_plan(jump, c, names)
    want = [line for line in GOLDEN.read_text().splitlines() if line and not line.startswith("#")]
    assert got == want


def test_plan_and_status_see_the_run_s_steps() -> None:
    """`upgrade plan` and `upgrade status` build the steps the run builds, from the plan or its stored TOML."""
    from services.registry import steps_for_plan, steps_for_raw

    @dataclass
    class P:
        from_release: str
        to_release: str
        service_settings: dict[str, ServiceSettings]

    st = ServiceSettings(name="keystone", unit="k", db_name="keystone", options={"old_address": "10.0.0.3"})
    plan = P("havana", "icehouse", {"keystone": st})
    names = [s.name for s in steps_for_plan(plan, "keystone")]
    assert "keystone.endpoints" in names
    raw = {"upgrade": {"from": "havana", "to": "icehouse"}, "services": {"keystone": {"old_address": "10.0.0.3"}}}
    assert [s.name for s in steps_for_raw(raw, "keystone")] == names
    assert [s.name for s in steps_for_raw({"upgrade": {"from": "2024.1", "to": "2025.1"}}, "nova")][6:8] == \
        ["nova.api_db_sync", "nova.update_cells"]


def _era(release: str, *rows: tuple[str, Any]) -> Any:
    """The value of the last row whose release is <= *release* (rows oldest first)."""
    out = None
    for since, value in rows:
        if releases.at_least(release, since):
            out = value
    return out


def _online(name: str, jump: Jump, c: PlanCtx) -> list[str]:
    """The commands of *name*'s finishing step (its online data migrations), or none without it; the
    step is the service's last and marked ``finish`` (run once every service is verified)."""
    steps = steps_for(name, jump)
    if steps[-1].name != f"{name}.online_migrations":
        assert not any(s.name == f"{name}.online_migrations" for s in steps)
        return []
    assert steps[-1].finish and not any(s.finish for s in steps[:-1])
    return commands(name, jump, c, "online_migrations")


@pytest.mark.parametrize(("src", "dst"), JUMPS, ids=[f"{a}-{b}" for a, b in JUMPS])
def test_schema_and_status_commands_per_era_follow_the_facts(src: str, dst: str) -> None:
    """facts §2.1/§2.4 keystone, §3 glance, §4 nova, §6 neutron, §7 cinder, §1.2 status checks — restated
    here per era, independently of services/releases.py, for every supported jump."""
    jump = Jump(src, dst)
    names = ("keystone", "glance", "nova", "neutron", "cinder")
    c = ctx(jump, names, neutron={"plugin_config": "plugins/ml2/ml2_conf.ini"})
    ext = {"havana": ["endpoint_filter", "oauth1"], "icehouse": ["endpoint_filter", "oauth1", "federation", "revoke"]}
    want_ks = _era(dst, ("havana", [f"{KS} db_sync", *(f"{KS} db_sync --extension {e}" for e in ext.get(dst, []))]),
                   ("juno", [f"{KS} db_sync"]),
                   ("pike", [f"{KS} db_sync", f"{KS} db_sync --check"]))
    got_ks = commands("keystone", jump, c, "upgrade_schema")
    assert [x for x in got_ks if not x.startswith("SQL:")] == want_ks
    assert commands("glance", jump, c, "upgrade_schema") == _era(
        dst, ("havana", [f"{GL} db_sync"]), ("juno", [f"{GL} db sync"]),
        ("rocky", [f"{GL} db sync", f"{GL} db check"]))
    # the online data migrations (mitaka on) are a finishing step, run with the services up (§4.1 step 7)
    assert commands("nova", jump, c, "upgrade_schema") == [f"{NOVA} db sync"]
    assert _online("nova", jump, c) == _era(dst, ("havana", []),
                                                      ("mitaka", [f"{NOVA} db online_data_migrations"]))
    steps = [s.name for s in steps_for("nova", jump)]
    assert ("nova.api_db_sync" in steps) == releases.at_least(dst, "mitaka")
    assert ("nova.update_cells" in steps) == releases.at_least(src, "ocata")
    plugin = NEUTRON
    assert commands("neutron", jump, c, "upgrade_schema") == _era(
        dst, ("havana", [f"{plugin} stamp {src}", f"{plugin} upgrade {dst}"]), ("juno", [f"{plugin} upgrade heads"]))
    assert commands("cinder", jump, c, "upgrade_schema") == [f"{CINDER} db sync"]
    assert _online("cinder", jump, c) == _era(dst, ("havana", []),
                                                        ("ocata", [f"{CINDER} db online_data_migrations"]))
    for name, since in (("keystone", "stein"), ("glance", "stein"), ("nova", "ocata"), ("neutron", "stein"),
                        ("cinder", "stein")):
        has = any(s.name == f"{name}.status_check" for s in steps_for(name, jump))
        assert has == releases.at_least(dst, since), (name, dst)


@pytest.mark.parametrize("release", ["2025.2", "2026.1"])
def test_every_installed_service_answers_its_version_command(release: str) -> None:
    """What `upgrade check` asks for ``--version`` runs in a real release venv and gives the major its spec
    expects — neutron's through the server (neutron-db-manage takes no --version, there is no
    neutron-manage)."""
    from services import preflight
    from services.registry import spec
    from tests.conftest import DEFAULT_VENV_ROOT, require
    from upgrade.hosts import LocalHost

    bin_dir = DEFAULT_VENV_ROOT / release / "bin"
    require(bin_dir.is_dir(), f"the {release} venv is missing (make openstack)")
    for name in ("keystone", "neutron"):
        version = preflight.manage_version(LocalHost("target"), str(bin_dir), name, release)
        assert preflight.major(version) == spec(name).expected_major(release), (name, version)
