"""A service's databases as the shared steps see them: the options that name them in its config,
their names from the plan, the service user's credentials, and how dumps and imports are shown."""

from __future__ import annotations

from dataclasses import dataclass

from services.infra import mysql
from services.infra.config import db_url_credentials, get_value
from services.infra.context import UpgradeContext
from services.infra.host import command_text
from services.infra.settings import ServiceSettings
from statemachine.step import StepError


@dataclass(frozen=True)
class ConfigKey:
    """A DB connection option in one of the service's config files, e.g. keystone.conf [database] connection."""

    file: str
    section: str
    key: str


def svc(ctx: UpgradeContext, name: str) -> ServiceSettings:
    return ctx.services[name]


# ---------------------------------------------------------------------- the commands, for run and for `upgrade plan`
DUMP_TOOL = "mysqldump"
CLIENT_TOOL = "mysql"
VAULT_SHOWN = "<vault>"


def dump_shown(db: str, artifact: str) -> str:
    return f"{command_text(mysql.dump_argv(DUMP_TOOL, db))} | encrypt > {VAULT_SHOWN}/{artifact}.osuv"


def import_shown(db: str, artifact: str) -> str:
    return f"decrypt {VAULT_SHOWN}/{artifact}.osuv | {command_text(mysql.import_argv(CLIENT_TOOL, db))}"


def service_db_credentials(ctx: UpgradeContext, name: str, conn: ConfigKey) -> tuple[str, str]:
    """The service's DB user and password on the target: plan override, else the source config's."""
    st = svc(ctx, name)
    path = f"{ctx.source.etc}/{name}/{conn.file}"
    url = get_value(ctx.source.host.read_bytes(path), conn.section, conn.key)
    if not url:
        raise StepError(f"{path} on {ctx.source.host.name} has no [{conn.section}] {conn.key} — "
                        "the source controller's config must name the service's database",
                        host=ctx.source.host.name)
    user, password, _db = db_url_credentials(url)
    ctx.redactor.add(password)
    if st.db_password:
        ctx.redactor.add(st.db_password)
    return st.db_user or user, st.db_password or password


@dataclass(frozen=True)
class DBSpec:
    """One database of a service: a label (``main``, ``api``, ``cell0``), its name as a template of
    the plan's ``db_name`` (``{name}_api``), and the config options that name it (aliases, any of
    the service's files; none for a database named elsewhere, like nova_cell0 in cell_mappings).

    A plan overrides a non-main name with ``<label>_db_name`` in ``[services.<name>]``.
    """

    label: str
    template: str
    conns: tuple[ConfigKey, ...] = ()

    def db_name(self, st: ServiceSettings) -> str:
        override = st.options.get(f"{self.label}_db_name") if self.label != "main" else None
        return override or self.template.format(name=st.db_name)

    def suffix(self) -> str:
        """Artifact name suffix: none for the main DB (keystone's artifacts keep their names)."""
        return "" if self.label == "main" else f"-{self.label}"


#: who resolves a service's units: (ctx, role) -> units in stop order (started in reverse)


def default_dbs(conns: tuple[ConfigKey, ...]) -> tuple[DBSpec, ...]:
    return (DBSpec("main", "{name}", conns[:1]),)


def db_credentials(ctx: UpgradeContext, name: str, spec: DBSpec, dbs: tuple[DBSpec, ...]) -> tuple[str, str]:
    """Credentials for *spec*: from the first of its options present in the source config, else
    (a DB named elsewhere) from the main DB's."""
    specs = [spec] + [d for d in dbs if d.label == "main" and d is not spec]
    for d in specs:
        for conn in d.conns:
            path = f"{ctx.source.etc}/{name}/{conn.file}"
            if ctx.source.host.exists(path) and get_value(ctx.source.host.read_bytes(path), conn.section, conn.key):
                return service_db_credentials(ctx, name, conn)
    first = (spec.conns or specs[-1].conns)[0]
    return service_db_credentials(ctx, name, first)  # raises the clear "names no database" error


def main_spec(dbs: tuple[DBSpec, ...]) -> DBSpec:
    return next(d for d in dbs if d.label == "main")
