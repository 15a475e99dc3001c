"""The release table: which jumps the tool supports, and what each service needs per release.

Everything release-specific is data here, read by the service modules; no service module
branches on a release name. Facts and their sources: shared/reference/openstack-facts.md
(§0 releases, §1 cross-cutting, §2-§8 per service); "[guess]" marks what the facts file lists
as unverified.

A jump is N -> N+1, or SLURP -> next SLURP (facts §1.1). Per-service tables are lists of
:class:`Era` rows (``since``/``until`` inclusive); :func:`pick` returns the row valid for a
release, so a value that changed in Ocata is one more row, not one more ``if``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: (series, is SLURP) in release order (facts §0: SLURP flags from openstack/releases series_status)
RELEASES: tuple[tuple[str, bool], ...] = (
    ("havana", False), ("icehouse", False), ("juno", False), ("kilo", False), ("liberty", False),
    ("mitaka", False), ("newton", False), ("ocata", False), ("pike", False), ("queens", False),
    ("rocky", False), ("stein", False), ("train", False), ("ussuri", False), ("victoria", False),
    ("wallaby", False), ("xena", False), ("yoga", False), ("zed", False),
    ("2023.1", True), ("2023.2", False), ("2024.1", True), ("2024.2", False),
    ("2025.1", True), ("2025.2", False), ("2026.1", True), ("2026.2", False),
)
NAMES = tuple(r for r, _ in RELEASES)

#: code names of the numbered series: nova's ``[upgrade_levels] compute`` aliases use them (facts §4.5)
CODE_NAMES = {"2023.1": "antelope", "2023.2": "bobcat", "2024.1": "caracal", "2024.2": "dalmatian",
              "2025.1": "epoxy", "2025.2": "flamingo", "2026.1": "gazpacho", "2026.2": "hibiscus"}


def index(release: str) -> int:
    return NAMES.index(release)


def at_least(release: str, since: str) -> bool:
    return index(release) >= index(since)


def code_name(release: str) -> str:
    return CODE_NAMES.get(release, release)


def allowed_targets(source: str) -> list[str]:
    if source not in NAMES:
        return []
    i = NAMES.index(source)
    out = [NAMES[i + 1]] if i + 1 < len(NAMES) else []
    if dict(RELEASES)[source]:
        later_slurps = [r for r, s in RELEASES[i + 1:] if s]
        if later_slurps and later_slurps[0] not in out:
            out.append(later_slurps[0])
    return out


def jump_error(source: str, target: str) -> str | None:
    """None if source -> target is supported, else a message listing what is."""
    if source not in NAMES:
        return f"unknown source release {source!r}; known releases: {', '.join(NAMES)}"
    if target not in NAMES:
        return f"unknown target release {target!r}; known releases: {', '.join(NAMES)}"
    allowed = allowed_targets(source)
    if target not in allowed:
        return (f"the jump {source} -> {target} is not supported; from {source} the tool upgrades to "
                f"{' or '.join(allowed) or 'nothing yet'}")
    return None


# ---------------------------------------------------------------------- per-release rows
@dataclass(frozen=True)
class Era:
    """A value valid from release ``since`` to ``until`` (inclusive; None = still valid)."""

    since: str
    until: str | None
    value: Any


def pick(rows: Sequence[Era], release: str, default: Any = None) -> Any:
    for row in rows:
        if at_least(release, row.since) and (row.until is None or index(release) <= index(row.until)):
            return row.value
    return default


@dataclass(frozen=True)
class Cmd:
    """One command of a runbook step, as data.

    ``args`` may hold placeholders filled per controller: ``{etc}`` (the controller's /etc),
    ``{source}``/``{target}`` (release labels), ``{plugin}`` (neutron's plugin config) and
    ``{cell_uuid}``/``{transport_url}``/``{cell_db}`` (nova's cells). ``ok`` are the exit
    codes that mean success; ``loop`` marks the online-data-migrations contract (0 done,
    1 run again, anything else fails, facts §4.1/§5/§7.1); ``when`` names a runtime condition
    under which the command runs at all (shown in the plan).
    """

    tool: str
    args: tuple[str, ...]
    ok: tuple[int, ...] = (0,)
    loop: bool = False
    when: str = ""


def _c(tool: str, *args: str, ok: tuple[int, ...] = (0,), loop: bool = False, when: str = "") -> Cmd:
    return Cmd(tool, args, ok, loop, when)


KS_CONF = ("--config-file", "{etc}/keystone/keystone.conf")
GL_CONF = ("--config-file", "{etc}/glance/glance-api.conf")
NOVA_CONF = ("--config-file", "{etc}/nova/nova.conf")
NEUTRON_CONF = ("--config-file", "{etc}/neutron/neutron.conf", "--config-file", "{plugin}")
CINDER_CONF = ("--config-file", "{etc}/cinder/cinder.conf")
PLACEMENT_CONF = ("--config-file", "{etc}/placement/placement.conf")
#: oslo.upgradecheck: 0 success, 1 warning (accepted, recorded), 2 failure, 255 error (facts §1.2)
STATUS_OK = (0, 1)

#: the schema upgrade of each service, per target release, in order (facts §10)
SCHEMA: dict[str, tuple[Era, ...]] = {
    "keystone": (
        # Havana/Icehouse: db_sync, then every extension's own repository (facts §2.4)
        Era("havana", "havana", (_c("keystone-manage", *KS_CONF, "db_sync"),
                                 _c("keystone-manage", *KS_CONF, "db_sync", "--extension", "endpoint_filter"),
                                 _c("keystone-manage", *KS_CONF, "db_sync", "--extension", "oauth1"))),
        Era("icehouse", "icehouse", (_c("keystone-manage", *KS_CONF, "db_sync"),
                                     *(_c("keystone-manage", *KS_CONF, "db_sync", "--extension", e)
                                       for e in ("endpoint_filter", "oauth1", "federation", "revoke")))),
        Era("juno", "ocata", (_c("keystone-manage", *KS_CONF, "db_sync"),)),
        # --check: 0 current, 2 expand needed, 4 contract needed, 3 (before Yoga) data migrations (§2.1)
        Era("pike", None, (_c("keystone-manage", *KS_CONF, "db_sync", "--check", ok=(0, 2, 3, 4)),
                           _c("keystone-manage", *KS_CONF, "db_sync"),
                           _c("keystone-manage", *KS_CONF, "db_sync", "--check"))),
    ),
    "glance": (
        Era("havana", "icehouse", (_c("glance-manage", *GL_CONF, "db_sync"),)),
        Era("juno", "queens", (_c("glance-manage", *GL_CONF, "db", "sync"),)),
        # db check: 0 current, 3 expand, 4 migrate, 5 contract (§3.1); [guess] present from Rocky
        Era("rocky", None, (_c("glance-manage", *GL_CONF, "db", "check", ok=(0, 3, 4, 5)),
                            _c("glance-manage", *GL_CONF, "db", "sync"),
                            _c("glance-manage", *GL_CONF, "db", "check"))),
    ),
    "placement": (
        Era("stein", None, (_c("placement-manage", *PLACEMENT_CONF, "db", "sync"),
                            _c("placement-manage", *PLACEMENT_CONF, "db", "online_data_migrations",
                               loop=True))),
    ),
    "nova": (
        Era("havana", "liberty", (_c("nova-manage", *NOVA_CONF, "db", "sync"),)),
        # API DB required since Mitaka (§4); online data migrations loop from Mitaka [guess: Mitaka]
        Era("mitaka", None, (_c("nova-manage", *NOVA_CONF, "api_db", "sync"),
                             _c("nova-manage", *NOVA_CONF, "db", "sync"),
                             _c("nova-manage", *NOVA_CONF, "db", "online_data_migrations", loop=True))),
    ),
    "neutron": (
        # H/I: a DB made by neutron-server's create_all has no alembic_version: stamp it first (§6.3)
        Era("havana", "icehouse", (_c("neutron-db-manage", *NEUTRON_CONF, "stamp", "{source}",
                                      when="the database has no alembic_version"),
                                   _c("neutron-db-manage", *NEUTRON_CONF, "upgrade", "{target}"))),
        Era("juno", None, (_c("neutron-db-manage", *NEUTRON_CONF, "upgrade", "heads"),)),
    ),
    "cinder": (
        Era("havana", "newton", (_c("cinder-manage", *CINDER_CONF, "db", "sync"),)),
        # online data migrations exist from Ocata [guess]; rc 0 done, 1 again, 2 errors (§7.1)
        Era("ocata", None, (_c("cinder-manage", *CINDER_CONF, "db", "sync"),
                            _c("cinder-manage", *CINDER_CONF, "db", "online_data_migrations", loop=True))),
    ),
}

#: cells v2 on a jump that creates nova_cell0 (newton -> ocata: "cell mappings required before Ocata",
#: facts §4): after ``api_db sync``, cell0 mapped with its URL always explicit (§4.3 pitfall), the
#: carried-over main database mapped as cell1; ``db sync`` then syncs cell0 too (§4.1 step 3)
NOVA_CELL1 = "cell1"
NOVA_CELL_SETUP: tuple[Cmd, ...] = (
    _c("nova-manage", *NOVA_CONF, "cell_v2", "map_cell0", "--database_connection", "{cell0_db}"),
    _c("nova-manage", *NOVA_CONF, "cell_v2", "create_cell", "--name", NOVA_CELL1, "--database_connection",
       "{cell_db}", "--transport-url", "{transport_url}"),
)
#: after the main schema is current: map the computes of the carried-over DB into cell1 (§4.3; rc 0
#: without --strict)
NOVA_DISCOVER_HOSTS = _c("nova-manage", *NOVA_CONF, "cell_v2", "discover_hosts")

#: the source release's online data migrations, finished on the imported copy before the target's
#: db sync ("you won't be able to apply N+1's schema migrations before completing N's", §7.1)
PREVIOUS_ONLINE_MIGRATIONS: dict[str, tuple[Era, ...]] = {
    "cinder": (Era("ocata", None, _c("cinder-manage", *CINDER_CONF, "db", "online_data_migrations",
                                     loop=True)),),
}

#: `<service>-status upgrade check`, from the release that has it (Stein goal; nova-status Ocata, §1.2)
STATUS: dict[str, tuple[Era, ...]] = {
    "keystone": (Era("stein", None, _c("keystone-status", *KS_CONF, "upgrade", "check", ok=STATUS_OK)),),
    "glance": (Era("stein", None, _c("glance-status", *GL_CONF, "upgrade", "check", ok=STATUS_OK)),),
    "placement": (Era("stein", None, _c("placement-status", *PLACEMENT_CONF, "upgrade", "check",
                                        ok=STATUS_OK)),),
    "nova": (Era("ocata", None, _c("nova-status", *NOVA_CONF, "upgrade", "check", ok=STATUS_OK)),),
    "neutron": (Era("stein", None, _c("neutron-status", "--config-file", "{etc}/neutron/neutron.conf",
                                      "upgrade", "check", ok=STATUS_OK)),),
    "cinder": (Era("stein", None, _c("cinder-status", *CINDER_CONF, "upgrade", "check", ok=STATUS_OK)),),
}

#: the service's units in the order they stop (started in reverse), RDO names (the runbook's);
#: a plan's ``units`` replaces them. Glance's registry is gone from Victoria (§3.3).
UNITS: dict[str, tuple[Era, ...]] = {
    "glance": (Era("havana", "ussuri", ("openstack-glance-api", "openstack-glance-registry")),
               Era("victoria", None, ("openstack-glance-api",))),
    "placement": (Era("stein", None, ("openstack-placement-api",)),),
    "nova": (Era("havana", "icehouse", ("openstack-nova-api", "openstack-nova-cert", "openstack-nova-conductor",
                                        "openstack-nova-consoleauth", "openstack-nova-novncproxy",
                                        "openstack-nova-scheduler")),
             Era("juno", "stein", ("openstack-nova-api", "openstack-nova-conductor",
                                   "openstack-nova-consoleauth", "openstack-nova-novncproxy",
                                   "openstack-nova-scheduler")),
             Era("train", None, ("openstack-nova-api", "openstack-nova-conductor", "openstack-nova-novncproxy",
                                 "openstack-nova-scheduler"))),
    # neutron-server first down, agents after; started in reverse (agents' server must answer first
    # is not required: agents retry) — the runbook's "for i in /etc/init.d/neutron-*"
    "neutron": (Era("havana", None, ("neutron-server", "neutron-dhcp-agent", "neutron-l3-agent",
                                     "neutron-metadata-agent", "neutron-openvswitch-agent")),),
    # the runbook starts api, volume, scheduler; upstream: scheduler, volume, backup, api (§7.1)
    "cinder": (Era("havana", None, ("openstack-cinder-api", "openstack-cinder-scheduler",
                                    "openstack-cinder-volume")),),
    "horizon": (Era("havana", None, ("httpd",)),),
}

#: the unit that serves nova's metadata API (never started while neutron's metadata agent serves)
NOVA_METADATA_UNITS = ("openstack-nova-metadata-api", "nova-metadata", "nova-api-metadata")


# ---------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Rename:
    """An option the target release no longer reads under its old name (facts §1.4)."""

    old: tuple[str, str]
    new: tuple[str, str]
    removed_in: str


#: DB connection option names, newest first; the first present in a file is the one in use
DB_OPTION_ALIASES: tuple[tuple[str, str], ...] = (
    ("database", "connection"), ("DEFAULT", "sql_connection"), ("DATABASE", "sql_connection"),
    ("sql", "connection"),
)
#: the aliases were accepted until oslo.db 15.0.0 (2024.1) removed them (facts §1.4)
RENAMES: tuple[Rename, ...] = tuple(Rename(old, ("database", "connection"), "2024.1")
                                    for old in DB_OPTION_ALIASES[1:])
#: oslo.messaging 9.0.0 (Stein) removed rpc_backend and rabbit_*: one transport_url instead (§1.4)
RABBIT_REMOVED_IN = "stein"
RABBIT_KEYS = ("rabbit_host", "rabbit_hosts", "rabbit_port", "rabbit_userid", "rabbit_password",
               "rabbit_virtual_host", "rpc_backend")

#: config files per service whose DB connection the tool rewrites (file, extra DBs' option sections)
CONFIG_FILES: dict[str, tuple[Era, ...]] = {
    "keystone": (Era("havana", None, ("keystone.conf",)),),
    "glance": (Era("havana", "ussuri", ("glance-api.conf", "glance-registry.conf")),
               Era("victoria", None, ("glance-api.conf",))),
    "placement": (Era("stein", None, ("placement.conf",)),),
    "nova": (Era("havana", None, ("nova.conf",)),),
    "neutron": (Era("havana", None, ("neutron.conf",)),),
    "cinder": (Era("havana", None, ("cinder.conf",)),),
    "heat": (Era("havana", None, ("heat.conf",)),),  # heat: the rest of its facts live in services/heat.py
}

#: cinder's iSCSI target address option: iscsi_ip_address until Rocky (removed in Stein, renamed
#: in Queens), target_ip_address from Queens (facts §7.4)
CINDER_ISCSI_OPTION: tuple[Era, ...] = (Era("havana", "pike", "iscsi_ip_address"),
                                        Era("queens", None, "target_ip_address"))

#: horizon's OPENSTACK_KEYSTONE_DEFAULT_ROLE per release (facts §8)
HORIZON_DEFAULT_ROLE: tuple[Era, ...] = (Era("havana", "havana", "Member"), Era("icehouse", "xena", "_member_"),
                                         Era("yoga", None, "member"))
#: the identity API version horizon talks: v2.0 APIs removed in Queens (facts §2.6)
HORIZON_KEYSTONE_PATH: tuple[Era, ...] = (Era("havana", "pike", "/v2.0"), Era("queens", None, "/v3"))

#: neutron agent timers: defaults from 2013.2.4/Icehouse on; lower carried values flap (facts §6.4)
NEUTRON_TIMER_DEFAULTS = {"agent_down_time": 75, "report_interval": 30}
#: neutron's plugin config by core_plugin (the deployment's real one is read from neutron.conf)
NEUTRON_PLUGIN_CONFIG = {
    "ml2": "plugins/ml2/ml2_conf.ini",
    "neutron.plugins.ml2.plugin.Ml2Plugin": "plugins/ml2/ml2_conf.ini",
    "openvswitch": "plugins/openvswitch/ovs_neutron_plugin.ini",
    "neutron.plugins.openvswitch.ovs_neutron_plugin.OVSNeutronPluginV2": "plugins/openvswitch/ovs_neutron_plugin.ini",
    "linuxbridge": "plugins/linuxbridge/linuxbridge_conf.ini",
    "neutron.plugins.linuxbridge.lb_neutron_plugin.LinuxBridgePluginV2": "plugins/linuxbridge/linuxbridge_conf.ini",
}
NEUTRON_DEFAULT_PLUGIN: tuple[Era, ...] = (Era("havana", "havana", "plugins/openvswitch/ovs_neutron_plugin.ini"),
                                           Era("icehouse", None, "plugins/ml2/ml2_conf.ini"))


# ---------------------------------------------------------------------- databases and data
#: the databases of each service, per release: (label, default name, config option section)
DATABASES: dict[str, tuple[Era, ...]] = {
    "keystone": (Era("havana", None, (("main", "{name}", "database"),)),),
    "glance": (Era("havana", None, (("main", "{name}", "database"),)),),
    "placement": (Era("stein", None, (("main", "{name}", "placement_database"),)),),
    # nova_api from Mitaka, nova_cell0 from Ocata (its URL lives in nova_api.cell_mappings) (§4)
    "nova": (Era("havana", "liberty", (("main", "{name}", "database"),)),
             Era("mitaka", "newton", (("api", "{name}_api", "api_database"), ("main", "{name}", "database"))),
             Era("ocata", None, (("api", "{name}_api", "api_database"), ("main", "{name}", "database"),
                                 ("cell0", "{name}_cell0", "")))),
    "neutron": (Era("havana", None, (("main", "{name}", "database"),)),),
    "cinder": (Era("havana", None, (("main", "{name}", "database"),)),),
    "heat": (Era("havana", None, (("main", "{name}", "database"),)),),  # heat: see services/heat.py
    "horizon": (Era("havana", None, ()),),
}

#: config sections a release needs that an older one did without, checked on the source before a
#: jump that crosses *since* (the config is carried over): nova needs the placement API from Ocata
#: (until Stein it is part of nova: nova-placement-api, its tables in nova_api; facts §5 history)
REQUIRED_SECTIONS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "nova": (("ocata", "nova.conf", "placement",
              "from ocata nova-compute and the scheduler need the placement API (part of nova until stein: "
              "nova-placement-api, its tables in nova_api) — deploy it on the source's release and configure "
              "[placement] in nova.conf (auth_url, auth_type, credentials, os_region_name) before the upgrade"),),
}


def required_sections(service: str, source: str, target: str) -> list[tuple[str, str, str]]:
    """(file, section, why) the target needs in *service*'s config and the source did not."""
    return [(f, sec, why) for since, f, sec, why in REQUIRED_SECTIONS.get(service, ())
            if not at_least(source, since) and at_least(target, since)]


#: the data fix-ups per service and target release: the fix-up steps (and nova's pin, a config edit)
#: a service module includes; keystone's endpoint step also needs the plan's old_address
FIXUPS: dict[str, tuple[Era, ...]] = {
    "keystone": (Era("havana", None, ("endpoints",)),),
    "glance": (Era("havana", None, ("precopy_images", "copy_images")),),
    "nova": (Era("havana", "newton", ("pin_compute", "stale_services")),
             Era("ocata", None, ("pin_compute", "update_cells", "stale_services"))),
    "neutron": (Era("havana", None, ("agents",)),),
    "cinder": (Era("havana", None, ("rewrite_iscsi", "update_host", "transfer_volumes")),),
}


def fixups(service: str, target: str) -> tuple[str, ...]:
    return tuple(pick(FIXUPS.get(service, ()), target, ()))

#: the charset the import gives every non-utf8 table of these services (the runbook converts them
#: for Icehouse's sanity check, §1.5, §3.3), per target release; each column goes by what it holds
#: (services/charset.py). ``utf8mb4`` where the target release takes it: Icehouse's check asks only
#: for a collation LIKE '%utf8%', and no later glance release handles the charset (§1.5), so 4-byte
#: characters survive. ``utf8`` (utf8mb3) where only it fits: keystone's Icehouse migrations convert
#: their own tables to utf8 (the region workaround, §2.4), and a foreign key needs one charset on both
#: sides; a 4-byte character is then refused by the check, its row named, never stored as '?'.
CONVERT_TO_UTF8: dict[str, tuple[Era, ...]] = {
    "glance": (Era("havana", None, "utf8mb4"),),
    "keystone": (Era("icehouse", "icehouse", "utf8"),),
}


def convert_charset(service: str, target: str) -> str:
    """The charset *service*'s non-utf8 tables get on the way to *target* ("" : imported as they are)."""
    return str(pick(CONVERT_TO_UTF8.get(service, ()), target) or "")


#: nova services rows of a replaced host: soft-deleted before Liberty (no forced_down column; the
#: API's service-delete does the same), forced down from Liberty on (reversible) (facts §4.5, §4.6)
NOVA_STALE_SERVICE_ACTION: tuple[Era, ...] = (Era("havana", "kilo", "delete"), Era("liberty", None, "force_down"))

#: `[upgrade_levels] compute` while the computes still run the source release (facts §4.5, §4.6)
NOVA_COMPUTE_PIN: tuple[Era, ...] = (Era("havana", "havana", "icehouse-compat"),)


def compute_pin(source: str) -> str:
    """The pin for computes of release *source*: ``icehouse-compat`` for Havana, else its alias."""
    return pick(NOVA_COMPUTE_PIN, source) or code_name(source)


#: the major version each service's ``*-manage --version`` prints per release (`upgrade check`
#: compares it with the plan's ``to``); keystone's majors follow its release series
MANAGE_COMMAND: dict[str, str] = {"keystone": "keystone-manage"}
MAJOR_VERSIONS: dict[str, dict[str, int]] = {
    "keystone": {"2025.1": 27, "2025.2": 28, "2026.1": 29},
}


def expected_major(service: str, release: str) -> int | None:
    """The major version of *service* in *release*, or None when the table does not know it."""
    return MAJOR_VERSIONS.get(service, {}).get(release)


def release_of(service: str, major: int) -> str | None:
    """The release whose *service* has this major version (for messages), or None."""
    return next((r for r, m in MAJOR_VERSIONS.get(service, {}).items() if m == major), None)
