"""The plan's schema as data: every table and key, its type, default and meaning.

One description serves three readers, so they cannot drift apart: `upgrade init` writes its
comments from it, ``docs/operator-guide.md``'s plan reference is generated from it
(``scripts/gen-plan-reference``), and a test holds it against the keys ``upgrade.plan`` accepts.
The loader (``upgrade/plan.py``) stays the single authority on validation.
"""

from __future__ import annotations

from dataclasses import dataclass

from services import registry
from upgrade import tables


@dataclass(frozen=True)
class Key:
    """One key of a plan table. ``default`` is ``None`` for a required key."""

    name: str
    type: str
    default: str | None
    doc: str


@dataclass(frozen=True)
class Table:
    """A plan table; ``name`` as written in TOML (``source.db``), ``roles`` for tables that exist once per side."""

    name: str
    doc: str
    keys: tuple[Key, ...]

    def key(self, name: str) -> Key:
        return next(k for k in self.keys if k.name == name)


SIDE_DOC = ("a controller: `[source]` is the old one (only ever read), `[target]` the new one. The same keys for "
            "both; paths are absolute, as that controller sees them.")

TABLES: tuple[Table, ...] = (
    Table("upgrade", "what to upgrade, from which release to which, and where the journal lives", (
        Key("from", "string", None, "the release the old controller runs, e.g. \"2025.2\""),
        Key("to", "string", None, "the release to go to: the next release (N -> N+1), or from a SLURP release the "
                                  "next SLURP (2025.1 -> 2026.1)"),
        Key("services", "list of strings", None, "the services to upgrade; they run in the runbook's order "
                                                 "(keystone first) whatever the order here"),
        Key("journal", "string", "\"upgrade-journal\"", "the journal directory (SQLite journal, log, vault "
                                                         "artifacts), relative to the plan file; kept 0700"),
        Key("compute_pool", "integer", "10", "how many [[computes]] hosts are restarted at the same time (1-256)"),
        Key("compute_timeout", "integer", "300", "seconds a compute host may take, after its restart on the new "
                                                 "release, to report its heartbeat with the target's service "
                                                 "version (1-86400)"),
        Key("unpin", "string", "\"now\"", "\"now\": nova-unpin (when in services) runs after the compute hosts, "
                                          "refused unless every nova-compute reports the target's service version; "
                                          "\"later\": the run ends with nova pinned and `upgrade unpin PLAN` "
                                          "unpins once the computes are upgraded"),
        Key("service_pool", "integer", "2", "how many services are upgraded side by side (1-8; 1 = the runbook's "
                                             "strict sequence): services start by the size of their databases on "
                                             "the source, largest first, each after the services it waits for, "
                                             "and a step waits only for the step of another service it needs "
                                             "(every verify for keystone's, nova's status check and start for "
                                             "placement's verify, cinder's iSCSI rewrite for nova's schema "
                                             "migration), holding no slot while it waits; each step still "
                                             "journaled, resume unchanged; `upgrade revert` undoes them side "
                                             "by side too, each undo once the undos of the steps that waited "
                                             "for it are done, so the old controller serves again sooner"),
        Key("dump_streams", "integer", "0", "how many streams each database is dumped and imported in, cut by "
                                             "table, largest first (0-32; 0 = as many as the smaller controller "
                                             "has cores, at most 8, fewer for a small database; 1 = one "
                                             "mysqldump of the whole database): each stream goes into the vault "
                                             "as its own artifact and into the target's mysql as it is read"),
        Key("ignore", "table", "{}", "services the old controller runs that this plan leaves alone on purpose, "
                                     "each with its reason: {swift = \"swift stays on its own storage nodes\", "
                                     "cinder-backup = \"backups are moved by hand\"}. `upgrade check` and `upgrade "
                                     "run` refuse a service seen in the source keystone's catalog or among its "
                                     "running daemons that is neither in services nor here: it would keep running "
                                     "against the moved address"),
    )),
    Table("vault", "the key that encrypts every dump and backup (AES-256-GCM); exactly one of key_file and "
                   "passphrase_env", (
        Key("key_file", "string", "(this or passphrase_env)",
            "a 32-byte key file made by `upgrade keygen` (mode 0600), relative to the plan file; keep a copy: the "
            "dumps cannot be read without it"),
        Key("passphrase_env", "string", "(this or key_file)",
            "instead of key_file: the environment variable holding a passphrase (scrypt; the salt is kept in the "
            "journal directory)"),
        Key("dir", "string", "<journal>/artifacts",
            "where the encrypted dumps go, relative to the plan file; it needs room for the service databases "
            "(`upgrade check` says how much)"),
    )),
    Table("source", SIDE_DOC, (
        Key("host", "string", "\"local\"", "how the tool reaches this controller: \"local\" (this machine) or "
                                           "\"ssh://[user@]address[:port]\" (the system ssh, so ~/.ssh/config and "
                                           "agents apply)"),
        Key("name", "string", "\"\"", "the host's logical name (\"oldctl\"): its SSH HostKeyAlias (host keys "
                                     "stay valid when addresses move) and its name in messages"),
        Key("ssh_config", "string", "[ssh] config", "an ssh_config file for this host (ssh -F)"),
        Key("ssh_options", "list of strings", "[ssh] options", "extra ssh arguments for this host, e.g. "
                                                               "[\"-o\", \"Port=2222\"]"),
        Key("etc", "string", "\"/etc\"", "where the service configs live (`<etc>/keystone/keystone.conf`)"),
        Key("lib", "string", "\"/var/lib\"", "where the services keep their state (`<lib>/keystone`)"),
        Key("log", "string", "\"/var/log\"", "where the services log; paths in configs are re-pointed from the "
                                             "source's etc/lib/log to the target's"),
        Key("bin", "string", "\"\" (the PATH)", "where keystone-manage & co. of this controller's release live, "
                                               "e.g. \"/usr/bin\" or a venv's bin"),
        Key("service_control", "string", "\"systemd\"", "how services are started and stopped: \"systemd\" "
                                                        "(`systemctl ACTION UNIT`), \"sysvinit\" (`service UNIT "
                                                        "ACTION`) or \"template\" (the `control` command)"),
        Key("control", "list of strings", "(none)", "with service_control = \"template\": the command, with "
                                                    "\"{action}\" (start, stop, status) and \"{unit}\" placeholders"),
        Key("db", "table", None, "the controller's DB server, see `[source.db]`"),
        Key("members", "list of tables", "(none)", "an HA control plane: its controllers, each {name, host, "
                                                   "roles} (see `[source.members]`); `host` above is the member "
                                                   "the run works through. Both sides are groups or neither"),
        Key("vip", "table", "(none)", "with `members`: the VIP the clients use and what holds it, see "
                                      "`[source.vip]`"),
    )),
    Table("source.members", "one controller of an HA side (`members = [{...}]` or `[[source.members]]`); its "
                            "DB node answers on its own address at `db.port` with `db`'s account", (
        Key("name", "string", None, "its logical name (\"oldctl1\"), unique in the plan: HostKeyAlias and "
                                    "messages"),
        Key("host", "string", None, "\"ssh://[user@]address[:port]\": how the tool reaches it"),
        Key("roles", "list of strings", None, "what it runs: \"db\" (a Galera node), \"mq\" (a RabbitMQ "
                                              "cluster node), \"api\" (the API services behind HAProxy); some "
                                              "member holds each of db and api"),
        Key("ssh_config", "string", "[ssh] config", "an ssh_config file for this host (ssh -F)"),
        Key("ssh_options", "list of strings", "[ssh] options", "extra ssh arguments for this host"),
    )),
    Table("source.vip", "the VIP of an HA side (`vip = {...}`): the same address on both sides, moved by its "
                        "owner, never listed in [network] addresses", (
        Key("address", "string", None, "the VIP with its prefix length, e.g. \"10.0.0.10/24\""),
        Key("device", "string", None, "the interface that carries it, e.g. \"eth0\""),
        Key("owner", "string", None, "what holds it: \"keepalived\" (VRRP) or \"pacemaker\""),
        Key("resource", "string", "\"\"", "with owner = \"pacemaker\": the resource that holds the address "
                                          "(`upgrade run` moves a keepalived VIP only)"),
        Key("units", "list of strings", "[\"keepalived\"]", "the units that hold and serve the VIP on each "
                                                            "controller, in start order, e.g. [\"haproxy\", "
                                                            "\"keepalived\"]: stopped on every old member, "
                                                            "then started on every new one"),
        Key("service_control", "string", "the side's", "how those units are started: \"systemd\", \"sysvinit\" "
                                                       "or \"template\" (the `control` command)"),
        Key("control", "list of strings", "the side's", "with service_control = \"template\": the command, with "
                                                        "\"{action}\" and \"{unit}\" placeholders"),
        Key("check_from", "string", "\"local\"", "the host (\"ssh://...\" or \"local\") that must see the VIP "
                                                 "answer from one controller's MAC alone after the move"),
    )),
    Table("source.db", "the DB server of a controller (`[source.db]`, `[target.db]`), reached by the tool over TCP. "
          "The tool's own queries use TLS when the server offers it, without checking its certificate. The dumps "
          "and imports run on the controllers (`mysqldump`, `mysql`; their bytes reach the tool through ssh from a "
          "remote controller) and read the host's client config: `[client] ssl-ca` and `ssl-verify-server-cert` "
          "there make their way to the DB server verified TLS", (
        Key("address", "string", None, "the DB server's address as this machine reaches it"),
        Key("port", "integer", "3306", "its TCP port"),
        Key("admin_user", "string", "\"root\"", "an account with ALL (or CREATE, DROP, CREATE USER) and GRANT "
                                                "OPTION: the target's service users are recreated"),
        Key("admin_password", "string", "\"\"", "its password inline (keep the plan 0600), or use "
                                                "admin_password_env"),
        Key("admin_password_env", "string", "(none)", "the environment variable that holds the password"),
        Key("service_address", "string", "address", "the address the controller's services use for this DB "
                                                    "(written into the configs), when it differs from `address`"),
        Key("flavor", "string", "\"mariadb\"", "\"mariadb\" or \"mysql\": a MySQL server cannot read MariaDB's "
                                               "sandbox line, which is then stripped from dumps on import"),
    )),
    Table("services.<name>", "per service settings (`[services.keystone]`); every key has a default", (
        Key("unit", "string", "\"openstack-<name>\"", "the service's unit or init script name"),
        Key("db_name", "string", "\"<name>\"", "the service's database"),
        Key("owner", "string", "\"<name>:<name>\"", "USER:GROUP given to `<etc>/<name>` and `<lib>/<name>` on the "
                                                    "target (chown -R)"),
        Key("verify_url", "string", "\"\" (no API check)", "a URL of the service's API that must answer after the "
                                                          "upgrade, e.g. \"http://198.51.100.10:5000/v3\""),
        Key("grant_hosts", "list of strings", "[\"%\", \"localhost\"]", "MySQL host patterns the service's DB user "
                                                                       "is (re)created for on the target"),
        Key("db_user", "string", "the source config's", "the service's DB user on the target"),
        Key("db_password", "string", "the source config's", "the service's DB password on the target (or "
                                                            "db_password_env)"),
        Key("db_password_env", "string", "(none)", "the environment variable that holds db_password"),
    )),
    Table("ssh", "defaults for every ssh:// host of the plan (controllers, computes, check_from)", (
        Key("config", "string", "(ssh's own)", "an ssh_config file (ssh -F)"),
        Key("options", "list of strings", "[]",
            "extra ssh arguments, e.g. [\"-o\", \"Ciphers=aes128-gcm@openssh.com\"]"),
    )),
    Table("network", "the IP switchover, after every service: the service addresses move from the old "
                     "controller to the new one (leave the table out when no address moves)", (
        Key("addresses", "list of tables", None, "[{address = \"198.51.100.10/24\", device = \"eth0\", name = "
                                                 "\"management\"}]: address with prefix, the interface, a "
                                                 "lowercase name for the journal steps"),
        Key("check_from", "string", "\"local\"", "where the moved address is checked from: a compute's name, "
                                                 "\"local\" or ssh://..."),
        Key("nonlocal_bind", "boolean", "false", "set net.ipv4.ip_nonlocal_bind=1 on the new controller, so its "
                                                 "services can bind the address before it arrives"),
        Key("check_timeout", "integer", "30", "seconds to wait for the moved address to answer"),
    )),
    Table("amqp", "the new controller's message queue: every transport_url of the source configs is tried there "
                  "by `upgrade check` and before `upgrade run` stops anything (leave the table out: not tried)", (
        Key("broker", "string", None, "the new controller's RabbitMQ as this machine reaches it before the "
                                      "cut-over: \"HOST\" (each URL's port) or \"HOST:PORT\""),
    )),
    Table("cloud", "the run's last step: it waits until the cloud reports to the new controller — every "
                   "nova-compute (and [[computes]] host), every neutron agent and cinder-volume of the new "
                   "controller's databases with a heartbeat newer than the step's start, and, with auth_url, "
                   "every API of the keystone catalog answering an authenticated request and, with cinder, "
                   "cinder-scheduler holding a pool of every enabled cinder-volume backend; a timeout names each "
                   "one that did not and leaves the run resumable (leave the table out: not waited for)", (
        Key("timeout", "integer", "300", "seconds the cloud may take to report after the cut-over (1-86400)"),
        Key("auth_url", "string", "\"\" (no API asked)", "the new controller's keystone as this machine reaches it "
                                                          "after the cut-over, e.g. \"http://198.51.100.10:5000/v3\""),
        Key("username", "string", "\"admin\"", "the admin user a token is asked for"),
        Key("password", "string", "\"\"", "its password inline (keep the plan 0600), or use password_env"),
        Key("password_env", "string", "(none)", "the environment variable that holds the password"),
        Key("project", "string", "\"admin\"", "the project the token is scoped to"),
        Key("user_domain", "string", "\"Default\"", "the user's domain"),
        Key("project_domain", "string", "\"Default\"", "the project's domain"),
        Key("interface", "string", "\"public\"", "the endpoints of the catalog that are asked: \"public\", "
                                                 "\"internal\" or \"admin\""),
    )),
    Table("compute_defaults", "keys every [[computes]] entry inherits", (
        Key("service_control", "string", "\"systemd\"", "as in [source]"),
        Key("control", "list of strings", "(none)", "as in [source]"),
        Key("units", "list of strings", "(none)", "the units to restart on a compute, nova-compute first"),
        Key("ssh_config", "string", "[ssh] config", "as in [source]"),
        Key("ssh_options", "list of strings", "[ssh] options", "as in [source]"),
        Key("upgrade_command", "list of strings", "(none)", "as in [[computes]]"),
        Key("downgrade_command", "list of strings", "(none)", "as in [[computes]]"),
    )),
    Table("computes", "the compute hosts, one [[computes]] entry each: restarted against the new controller", (
        Key("name", "string", None, "the host's name (unique), e.g. \"compute1\""),
        Key("host", "string", None, "\"ssh://root@ADDRESS\" or \"local\""),
        Key("units", "list of strings", "[compute_defaults] units", "the units to restart, nova-compute first"),
        Key("service_control", "string", "\"systemd\"", "as in [source]"),
        Key("control", "list of strings", "(none)", "as in [source]"),
        Key("ssh_config", "string", "[ssh] config", "as in [source]"),
        Key("ssh_options", "list of strings", "[ssh] options", "as in [source]"),
        Key("upgrade_command", "list of strings", "(none: only restarted)",
            "the rolling upgrade of the host: its nova-compute service disabled, this command run there (a package "
            "upgrade, e.g. [\"apt-get\", \"install\", \"-y\", \"nova-compute\"]; \"{from}\" and \"{to}\" name "
            "the releases), its units restarted, its heartbeat with the target's service version awaited, the "
            "service enabled; the host is left for later without it"),
        Key("downgrade_command", "list of strings", "(none)", "with upgrade_command: what puts the host back on the "
                                                              "old release (a revert runs it)"),
        Key("nova_host", "string", "name", "the host's name in nova's services table ([DEFAULT] host of its "
                                           "nova.conf)"),
    )),
)

_TYPES = {str: "string", int: "integer", bool: "boolean", list: "list", dict: "table"}


def service_keys(service: str) -> tuple[Key, ...]:
    """The keys of a ``[services.<service>]`` table: the common ones, then its own (services/options.py)."""
    own = tuple(Key(o.name, _TYPES.get(o.type, "value") if isinstance(o.type, type) else "value",
                    f"{o.default!r}".replace("'", '"') if o.default not in (None, "", [], ()) else "(none)", o.doc)
                for o in registry.OPTIONS.get(service, ()))
    return table("services.<name>").keys + own


def table(name: str) -> Table:
    """A table by its TOML name; ``target`` and ``target.db`` share the source's description."""
    name = {"target": "source", "target.db": "source.db", "target.members": "source.members",
            "target.vip": "source.vip"}.get(name, name)
    if name.startswith("services.") and name != "services.<name>":
        common = table("services.<name>")
        return Table(name, common.doc, service_keys(name.split(".", 1)[1]))
    return next(t for t in TABLES if t.name == name)


def top_level() -> set[str]:
    """The plan's top-level tables."""
    return {"upgrade", "vault", "source", "target", "services", "ssh", "network", "compute_defaults", "computes",
            "amqp", "cloud"}


#: the columns of every table of the plan reference
KEY_COLUMNS = ("key", "type", "default", "meaning")


def reference_markdown() -> str:
    """The plan reference of docs/operator-guide.md, generated (never edited by hand)."""
    out = ["<!-- generated by scripts/gen-plan-reference from upgrade/planschema.py: do not edit -->", ""]
    for t in TABLES:
        both = {"source": "[source] and [target]", "source.db": "[source.db] and [target.db]",
                "computes": "[[computes]]"}
        title = both.get(t.name, f"[{t.name}]")
        out += [f"#### `{title}`", "", t.doc[0].upper() + t.doc[1:].rstrip(".") + ".", ""]
        out += tables.markdown(KEY_COLUMNS, [(f"`{k.name}`", k.type, "**required**" if k.default is None
                                              else f"`{k.default}`", k.doc) for k in t.keys])
        out.append("")
        if t.name == "services.<name>":
            out += _service_options()
    return "\n".join(out)


def _service_options() -> list[str]:
    """Per service, the keys only it takes (from services/options.py)."""
    out = []
    for service, opts in registry.OPTIONS.items():
        if not opts:
            continue
        base = len(table("services.<name>").keys)
        out += [f"##### `[services.{service}]` also takes", ""]
        out += tables.markdown(KEY_COLUMNS, [(f"`{k.name}`", k.type, f"`{k.default}`", k.doc)
                                             for k in service_keys(service)[base:]])
        out.append("")
    return out


BEGIN = "<!-- BEGIN plan-reference -->"
END = "<!-- END plan-reference -->"


def with_reference(doc: str) -> str:
    """*doc* with the text between the plan-reference markers replaced by :func:`reference_markdown`."""
    head, sep, rest = doc.partition(BEGIN)
    _old, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"the document has no {BEGIN} ... {END} block")
    return f"{head}{BEGIN}\n{reference_markdown()}{END}{tail}"
