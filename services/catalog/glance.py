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

from typing import Any

from services import releases
from services.infra.files import copy_dir_step
from services.steps import legacy_config
from services.steps.commands import DEFAULT_JUMP, Jump, commands_step, db_specs, status_step, units_fn
from services.steps.standard import standard_steps
from services.steps.verify import api_verify_step
from statemachine.step import Step

NAME = "glance"


def _images_dir(ctx: Any) -> str:
    """The file store, relative to each controller's lib."""
    return ctx.services[NAME].options.get("images_dir") or "glance/images"


def steps(jump: Jump = DEFAULT_JUMP) -> list[Step]:
    dbs = db_specs(NAME, jump)
    schema = commands_step(NAME, "upgrade_schema", "schema_upgraded", releases.pick(releases.SCHEMA[NAME], jump.target),
                           "glance-manage db sync of the target release (db check before and after where it exists)",
                           dbs=lambda ctx: [d.db_name(ctx.services[NAME]) for d in dbs])
    after: list[Step] = []
    status = releases.pick(releases.STATUS[NAME], jump.target)
    if status:
        after.append(status_step(NAME, status))
    fixups = releases.fixups(NAME, jump.target)
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
        api_verify_step(NAME, "image"),
        dbs=dbs, units=units_fn(NAME, jump), edits=(legacy_config.edit(jump.target),),
        convert_utf8=releases.convert_charset(NAME, jump.target),
        after_schema=tuple(after))
