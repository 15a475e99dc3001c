"""Glance: API and registry (registry only while the release has it), the file store copied with
checksums, non-utf8 tables converted to utf8mb4 right after the import, each column by what it
holds (the runbook's ALTER TABLE ... CONVERT TO only for true latin1 text; services/charset.py,
facts §1.5/§3.3), ``glance-manage db sync`` and ``db check``,
``glance-status upgrade check`` where it exists.

Image files are immutable and named by image id, and they can be large: they are pre-copied before
the old API stops (``precopy_images``, outside the maintenance window), and after the stop
``copy_images`` moves only what changed since — new images, recreated ones, and the removal of
copies of images deleted meanwhile (services/files.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services import options, releases
from services.infra.files import copy_dir_step
from services.infra.listeners import Listen
from services.options import Option
from services.releases import DEFAULT_JUMP, Era, Jump
from services.spec import ServiceSpec
from services.steps import legacy_config
from services.steps.commands import schema_step, status_step
from services.steps.specs import db_specs, units_fn
from services.steps.standard import standard_steps
from services.steps.verify import api_verify_step
from statemachine.step import Step

NAME = "glance"
GL_CONF = ("--config-file", "{etc}/glance/glance-api.conf")
_c = releases.cmd


def _images_dir(ctx: Any) -> str:
    """The file store, relative to each controller's lib."""
    return ctx.services[NAME].options.get("images_dir") or "glance/images"


def steps(jump: Jump = DEFAULT_JUMP, options: Mapping[str, Any] | None = None) -> list[Step]:
    dbs = db_specs(SPEC, jump)
    schema = schema_step(NAME, SPEC.schema_for(jump.target),
                         "glance-manage db sync of the target release (db check before and after where it exists)",
                         dbs=lambda ctx: [d.db_name(ctx.services[NAME]) for d in dbs])
    after: list[Step] = []
    status = SPEC.status_for(jump.target)
    if status:
        after.append(status_step(NAME, status))
    fixups = SPEC.fixups_for(jump.target)
    first: list[Step] = []
    if "precopy_images" in fixups:
        first.append(copy_dir_step(NAME, "precopy_images", "images_precopied", _images_dir,
                                   "while the old API still serves: copy the image files the target does not "
                                   "have yet, sha256 per file", live=True))
    if "copy_images" in fixups:
        after.append(copy_dir_step(NAME, "copy_images", "images_copied", _images_dir,
                                   "copy the image files new or changed since the pre-copy (all of them without "
                                   "one), remove copies of images deleted meanwhile; sha256 per file",
                                   after=tuple(s.name for s in first)))
    return first + standard_steps(
        NAME, dbs[0].conns, schema,
        api_verify_step(NAME, "image", requires=("keystone:api",)),
        dbs=dbs, units=units_fn(SPEC, jump), edits=(legacy_config.edit(jump.target),),
        convert_utf8=SPEC.charset_for(jump.target),
        after_schema=tuple(after), listens=(Listen("glance/glance-api.conf", "DEFAULT", "bind_port", 9292),))


SPEC = ServiceSpec(
    name=NAME, order=20, steps=steps, tool="glance-manage",
    # the registry is gone from Victoria (§3.3)
    units=(Era("havana", "ussuri", ("openstack-glance-api", "openstack-glance-registry")),
           Era("victoria", None, ("openstack-glance-api",))),
    databases=(Era("havana", None, (("main", "{name}", "database"),)),),
    config_files=(Era("havana", "ussuri", ("glance-api.conf", "glance-registry.conf")),
                  Era("victoria", None, ("glance-api.conf",))),
    schema=(
        Era("havana", "icehouse", (_c("glance-manage", *GL_CONF, "db_sync"),)),
        Era("juno", "queens", (_c("glance-manage", *GL_CONF, "db", "sync"),)),
        # db check after the sync: 0 current (3 expand, 4 migrate, 5 contract needed fail the step; §3.1);
        # [guess] present from Rocky. None before it: the revisions before are read from the table
        Era("rocky", None, (_c("glance-manage", *GL_CONF, "db", "sync"),
                            _c("glance-manage", *GL_CONF, "db", "check"))),
    ),
    status=(Era("stein", None, _c("glance-status", *GL_CONF, "upgrade", "check", ok=releases.STATUS_OK)),),
    options=(
        options.UNITS, options.STATUS_ACCEPT, options.REPAIR,
        Option("images_dir", str, "glance/images", "the file store, relative to the controller's lib "
                                                   "(copied with checksums)"),
    ),
    fixups=(Era("havana", None, ("precopy_images", "copy_images")),),
    # utf8mb4 where the target release takes it: Icehouse's check asks only for a collation LIKE '%utf8%',
    # and no later glance release handles the charset (§1.5), so 4-byte characters survive
    convert_charset=(Era("havana", None, "utf8mb4"),),
)
