"""Keystone: the runbook's first service (its spec: ``SPEC`` at the end).

Schema upgrade with the target release's ``keystone-manage db_sync``, checked with
``db_sync --check`` (exit 0 up to date, 2 expand needed, 4 contract needed; facts §2.1), and the
alembic revisions recorded before and after. From Havana, the expired tokens of the SQL ``token``
table are flushed first with Havana's own ``keystone-manage token_flush`` (§2.4) — on the imported
copy, not before the dump: the old controller is only read (DESIGN.md §9.1), so the vault's dump
keeps them and the new controller does not carry them into Icehouse's migrations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services import options, releases
from services.catalog.keystone import extra as keystone_extra
from services.infra import mysql
from services.infra.context import UpgradeContext
from services.infra.host import command_text
from services.infra.newwrites import EPHEMERAL
from services.options import Option
from services.releases import DEFAULT_JUMP, Era, Jump
from services.spec import ServiceSpec
from services.steps import legacy_config, oncopy
from services.steps.commands import render, run_manage, schema_step
from services.steps.databases import ConfigKey
from services.steps.specs import db_specs
from services.steps.standard import standard_steps
from services.steps.verify import api_verify_step
from statemachine.step import Result, Step, StepError

NAME = "keystone"
KS_CONF = ("--config-file", "{etc}/keystone/keystone.conf")
_c = releases.cmd
CONNECTION = ConfigKey("keystone.conf", "database", "connection")
CHECK_MEANING = {0: "up to date", 2: "expand needed", 4: "contract needed"}


def _sync_and_check(ctx: UpgradeContext) -> tuple[list[str], list[str]]:
    """The target release's two schema commands as its spec lists them (Pike on): ``db_sync``, then
    ``db_sync --check``; the step and `upgrade plan` render the same two."""
    sync, check = SPEC.schema_for(ctx.to_release)
    return render(sync, ctx.target), render(check, ctx.target)


def revisions(ctx: UpgradeContext) -> list[str]:
    db = ctx.services[NAME].db_name
    rows = mysql.query(ctx.target.db, "SELECT version_num FROM alembic_version ORDER BY version_num", db=db)
    return [r[0] for r in rows]


def _upgrade_schema(ctx: UpgradeContext) -> Result:
    t = ctx.target
    # the revisions before are read from the table, not by a `db_sync --check` of its own: that answer was only
    # recorded, and a keystone-manage start-up is seconds of the window
    before = revisions(ctx)
    sync, check = _sync_and_check(ctx)
    run_manage(t, sync, "keystone-manage db_sync")
    check_after = run_manage(t, check, "keystone-manage db_sync --check", ok=(0, 2, 4)).rc
    if check_after != 0:
        raise StepError(f"after db_sync, `keystone-manage db_sync --check` on {t.host.name} says "
                        f"{CHECK_MEANING.get(check_after, check_after)} (exit {check_after})", host=t.host.name)
    return {"revisions_before": before, "revisions_after": revisions(ctx), "check_after": check_after}


def _schema_commands(ctx: UpgradeContext) -> list[str]:
    sync, check = _sync_and_check(ctx)
    return ["SQL: SELECT version_num FROM alembic_version", command_text(sync),
            command_text(check) + "   # must exit 0"]


#: Havana's token flush, by the source's keystone-manage (Havana reads ``[sql] connection``, §2.4)
TOKEN_FLUSH = _c("keystone-manage", "--config-file", "{conf}", "token_flush")


def flush_tokens_step() -> Step:
    """Havana's ``keystone-manage token_flush`` on the imported copy, before Icehouse's db_sync."""
    return oncopy.old_release_step(NAME, "flush_tokens", "tokens_flushed", TOKEN_FLUSH,
                                   lambda ctx: f"{ctx.target.etc.rstrip('/')}/keystone/keystone.conf",
                                   "delete the expired tokens of Havana's SQL token table on the imported copy "
                                   "(Havana's token_flush)", section="sql")


def steps(jump: Jump = DEFAULT_JUMP, options: Mapping[str, Any] | None = None) -> list[Step]:
    dbs = db_specs(SPEC, jump)
    if releases.at_least(jump.target, "pike"):
        # written out (``commands``), not recorded: the run reads the schema revisions and fails on what
        # ``db_sync --check`` answers after the sync, which a recording host cannot answer
        schema = Step(f"{NAME}.upgrade_schema", "schema_upgraded", _upgrade_schema, host="target", kind="schema",
                      provides=("schema",),
                      describe="keystone-manage db_sync of the target release, checked with db_sync --check",
                      commands=_schema_commands)
    else:  # db_sync (+ extensions for Havana/Icehouse), no --check before Pike (facts §2.4)
        schema = schema_step(NAME, SPEC.schema_for(jump.target),
                             "keystone-manage db_sync of the target release (and its extensions)",
                             dbs=lambda ctx: [ctx.services[NAME].db_name])

    verify_step = api_verify_step(NAME, "identity", keystone_extra.verify_extra, keystone_extra.verify_extra_shown,
                                  " and the key repositories hold the source's keys")
    # the endpoint report is a step only where the plan names the old address (keystone's step list
    # stays the runbook's ten otherwise)
    endpoints = (keystone_extra.endpoints_step(),) \
        if (options or {}).get("old_address") and "endpoints" in SPEC.fixups_for(jump.target) else ()
    status = keystone_extra.status_check_step(SPEC.status_for(jump.target))
    return standard_steps(NAME, dbs[0].conns, schema, verify_step, dbs=dbs,
                          edits=(legacy_config.edit(jump.target),),
                          convert_utf8=SPEC.charset_for(jump.target),
                          before_schema=(flush_tokens_step(),) if jump.source == "havana" else (),
                          after_schema=(*endpoints, *((status,) if status else ())))


SPEC = ServiceSpec(
    name=NAME, order=10, steps=steps, tool="keystone-manage",
    units=(),  # keystone runs under the web server: the plan's ``unit`` (see ServiceSettings.unit)
    databases=(Era("havana", None, (("main", "{name}", "database"),)),),
    config_files=(Era("havana", None, ("keystone.conf",)),),
    schema=(
        # Havana/Icehouse: db_sync, then every extension's own repository (facts §2.4)
        Era("havana", "havana", (_c("keystone-manage", *KS_CONF, "db_sync"),
                                 _c("keystone-manage", *KS_CONF, "db_sync", "--extension", "endpoint_filter"),
                                 _c("keystone-manage", *KS_CONF, "db_sync", "--extension", "oauth1"))),
        Era("icehouse", "icehouse", (_c("keystone-manage", *KS_CONF, "db_sync"),
                                     *(_c("keystone-manage", *KS_CONF, "db_sync", "--extension", e)
                                       for e in ("endpoint_filter", "oauth1", "federation", "revoke")))),
        Era("juno", "ocata", (_c("keystone-manage", *KS_CONF, "db_sync"),)),
        # --check after the sync must answer 0 (2 expand, 4 contract, 3 before Yoga data migrations needed: §2.1);
        # the step (``_upgrade_schema``) runs these and reads the revisions before from the table
        Era("pike", None, (_c("keystone-manage", *KS_CONF, "db_sync"),
                           _c("keystone-manage", *KS_CONF, "db_sync", "--check"))),
    ),
    status=(Era("stein", None, _c("keystone-status", *KS_CONF, "upgrade", "check", ok=releases.STATUS_OK)),),
    options=(
        options.STATUS_ACCEPT, options.REPAIR,
        Option("old_address", str, "", "the old controller's address as endpoint URLs hold it: they are reported"),
        Option("new_address", str, "", "when it differs from old_address, endpoint URLs are rewritten to it"),
    ),
    fixups=(Era("havana", None, ("endpoints",)),),
    # utf8 (utf8mb3) where only it fits: keystone's Icehouse migrations convert their own tables to utf8
    # (the region workaround, §2.4), and a foreign key needs one charset on both sides
    convert_charset=(Era("icehouse", "icehouse", "utf8"),),
    # keystone's majors follow its release series
    major_versions={"2025.1": 27, "2025.2": 28, "2026.1": 29},
    step_options={"old_address": "192.0.2.1"},
    idle_writes={
        # revocations of tokens (logout, expiry sweeps): they guard tokens, they hold no tenant data
        "revocation_event": EPHEMERAL,
        # UUID/PKI tokens of old releases: issued at every login
        "token": EPHEMERAL,
        # written at every login (PCI-DSS lockout and inactivity): not a change of the account
        "local_user": ("failed_auth_count", "failed_auth_at"),
        "user": ("last_active_at",),
        "expiring_user_group_membership": ("last_verified",),
    },
)
