"""Text is never corrupted on the way to utf8: real MariaDB servers, the real CLI, real glance.

The source holds what Havana-era clouds hold: latin1 InnoDB tables with Havana's foreign keys
(image_properties, image_members, image_tags, image_locations -> images) whose columns hold true
latin1 text, UTF-8 bytes (CJK, Polish, a 4-byte character), ASCII only, and a table an earlier
bad conversion left double-encoded. Each column is converted by what it holds (services/charset.py)
and every row reads back as the intended Unicode over a utf8mb4 connection; a mixed column is
refused before anything changes; a SIGKILL inside the conversion and inside the repair, then
resume and revert, end exactly where an uninterrupted run and the untouched target do.

The glance upgrade itself is 2025.2 -> 2026.1 (the releases the lab can run; glance converts its
non-utf8 tables on every jump); the Havana schema itself, as its migrations made it, is carried
through a real dump and import and converted in ``test_havana_schema_keeps_its_definitions``.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from scripts.lab import units
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.mariadb import MariaDB, free_port
from scripts.lab.openstack import UNITS, Stack, insert, make_stack, to_latin1
from scripts.lab.plan import DBAdmin, service_sections, side_table, write_key
from services.infra import charset, mysql
from services.infra.settings import DBEndpoint
from tests.conftest import require, require_mariadb, tree_digest, upgrade

OLD, NEW = "2025.2", "2026.1"
ADMIN, ADMIN_PW = "osu_admin", "chr-lab-Admin-31"
WHEN = "2026-01-02 03:04:05"

#: image name -> (how its bytes are stored) — images.name holds UTF-8 bytes in latin1 (and ASCII)
NAMES = {"日本語のイメージ": "utf8", "Zażółć gęślą jaźń": "utf8", "rocket 🚀 launch": "utf8", "cirros-0.6.2": "ascii"}
#: image_properties.value holds true latin1 text (€ and ‰ are MySQL latin1's cp1252 bytes 0x80, 0x89)
VALUES = ["Grüße aus der Küche", "naïve café", "€ 5 ‰ — «ok»", "plain ascii"]
#: image_tags.value holds UTF-8 bytes: Polish and Chinese
TAGS = ["źdźbło", "中文标签", "ascii-tag"]
#: metadef_namespaces.display_name: an earlier CONVERT TO utf8 double-encoded these (UTF-8 bytes in latin1)
DOUBLED = ["Przestrzeń nazw – łódź", "名前空間", "Café"]
MIXED_NAME = "crème brûlée"          # true latin1 bytes in images.name, which holds UTF-8 bytes: mixed


def _utf8_into_latin1(text: str) -> tuple[str, tuple]:
    """SQL and args storing *text*'s UTF-8 bytes as they are in a latin1 column (what a Havana
    service on a latin1 connection did)."""
    return "CONVERT(UNHEX(%s) USING latin1)", (text.encode().hex(),)


def _set(db: MariaDB, table: str, column: str, key: str, key_value: Any, text: str, how: str) -> None:
    if how == "utf8":
        expr, args = _utf8_into_latin1(text)
    else:  # latin1 text or ASCII: the server converts from the utf8mb4 connection
        expr, args = "%s", (text,)
    db.execute(f"UPDATE `{table}` SET `{column}` = {expr} WHERE `{key}` = %s", db="glance", args=(*args, key_value))


def seed(db: MariaDB) -> dict[str, Any]:
    """Every table latin1 with Havana's foreign keys, then rows of each kind; metadef_namespaces is
    utf8 after an earlier bad conversion. Returns the ids and the intended text per row."""
    to_latin1(db, "glance")
    want: dict[str, dict[Any, str]] = {"images.name": {}, "image_properties.value": {}, "image_tags.value": {},
                                       "metadef_namespaces.display_name": {}}
    images = []
    for name, how in NAMES.items():
        img = str(uuid.uuid4())
        insert(db, "glance", "images", {"id": img, "name": "x", "size": 1, "status": "active", "deleted": 0,
                                        "visibility": "public", "disk_format": "qcow2", "container_format": "bare",
                                        "created_at": WHEN})
        _set(db, "images", "name", "id", img, name, how)
        want["images.name"][img] = name
        images.append(img)
    for i, value in enumerate(VALUES):
        insert(db, "glance", "image_properties", {"image_id": images[i], "name": "description", "value": "x",
                                                  "deleted": 0, "created_at": WHEN})
        (pid,) = db.execute("SELECT MAX(id) FROM image_properties", db="glance")[0]
        _set(db, "image_properties", "value", "id", pid, value, "latin1")
        want["image_properties.value"][pid] = value
    for i, tag in enumerate(TAGS):
        insert(db, "glance", "image_tags", {"image_id": images[i], "value": "x", "deleted": 0, "created_at": WHEN})
        (tid,) = db.execute("SELECT MAX(id) FROM image_tags", db="glance")[0]
        _set(db, "image_tags", "value", "id", tid, tag, "utf8" if not tag.isascii() else "ascii")
        want["image_tags.value"][tid] = tag
    insert(db, "glance", "image_members", {"image_id": images[0], "member": "tenant-a", "can_share": 0,
                                           "status": "accepted", "deleted": 0, "created_at": WHEN})
    for i, text in enumerate(DOUBLED):
        insert(db, "glance", "metadef_namespaces", {"namespace": f"OS::Lab::{i}", "display_name": "x",
                                                    "visibility": "public", "protected": 0, "owner": "admin",
                                                    "created_at": WHEN})
        (nid,) = db.execute("SELECT id FROM metadef_namespaces WHERE namespace=%s", db="glance",
                            args=(f"OS::Lab::{i}",))[0]
        _set(db, "metadef_namespaces", "display_name", "id", nid, text, "utf8")
        want["metadef_namespaces.display_name"][nid] = text
    # the earlier bad conversion: CONVERT TO read the UTF-8 bytes as latin1 characters
    conn = db.connect("glance")
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION foreign_key_checks = 0")
            cur.execute("ALTER TABLE metadef_namespaces CONVERT TO CHARACTER SET utf8mb3")
    finally:
        conn.close()
    return {"images": images, "want": want}


def texts(db: MariaDB, schema: str = "glance") -> dict[str, dict[Any, str]]:
    """Every seeded text column as a utf8mb4 connection reads it, by key."""
    return {"images.name": dict(db.execute("SELECT id, name FROM images", db=schema)),
            "image_properties.value": dict(db.execute("SELECT id, value FROM image_properties", db=schema)),
            "image_tags.value": dict(db.execute("SELECT id, value FROM image_tags", db=schema)),
            "metadef_namespaces.display_name": dict(db.execute("SELECT id, display_name FROM metadef_namespaces",
                                                               db=schema))}


def ep(db: MariaDB) -> DBEndpoint:
    return DBEndpoint("127.0.0.1", db.port, ADMIN, ADMIN_PW)


def write_plan(directory: Path, old: Stack, new: Stack, repair: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_key(directory / "dump.key")
    extra = 'repair_double_encoded = ["glance.metadef_namespaces"]\n' if repair else ""
    body = (f'[upgrade]\nfrom = "{OLD}"\nto = "{NEW}"\nservices = ["glance"]\njournal = "journal"\n\n'
            '[vault]\nkey_file = "dump.key"\n\n'
            + side_table("source", old.root, old.venv, "127.0.0.1", old.db.port, DBAdmin(ADMIN, password=ADMIN_PW))
            + side_table("target", new.root, new.venv, "127.0.0.1", new.db.port, DBAdmin(ADMIN, password=ADMIN_PW))
            + service_sections(("glance",)).replace("[services.glance]\n", "[services.glance]\n" + extra))
    plan = directory / "plan.toml"
    plan.write_text(body)
    return plan


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_mariadb()
    for rel in (OLD, NEW):
        require((DEFAULT_VENV_ROOT / rel / "bin" / "glance-manage").exists(), f"glance-manage {rel} missing")
    base = tmp_path_factory.mktemp("charset")
    dbs = [MariaDB(base / "db-old", free_port()), MariaDB(base / "db-new", free_port())]
    try:
        for db in dbs:
            db.start()
            db.execute("CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s", args=(ADMIN, ADMIN_PW))
            db.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'127.0.0.1' WITH GRANT OPTION", args=(ADMIN,))
        old = make_stack(base / "old", OLD, dbs[0], DEFAULT_VENV_ROOT, services=("glance",))
        new = make_stack(base / "new", NEW, dbs[1], DEFAULT_VENV_ROOT, services=("glance",))
        seeded = seed(old.db)
        for unit in UNITS["glance"]:
            units.start(old.root, unit)
        yield old, new, seeded
    finally:
        for root in (base / "old", base / "new"):
            for unit in UNITS["glance"]:
                units.stop(root, unit)
        for db in dbs:
            db.stop()


def _check(plan: Path) -> tuple[int, dict[str, tuple[str, str]], str]:
    res = upgrade("check", str(plan), "--format", "json")
    assert res.stdout.startswith("["), res.stdout[-2000:] + res.stderr[-3000:]
    rows = {r["check"]: (r["status"], r["detail"] + " | " + r["remedy"]) for r in json.loads(res.stdout)}
    return res.returncode, rows, res.stdout + res.stderr


def _state(old: Stack, new: Stack) -> tuple[Any, ...]:
    return old.db.checksums("glance"), new.db.checksums("glance"), tree_digest(new.root / "etc")


# ---------------------------------------------------------------------- detection
def test_release_table_says_which_targets_take_utf8mb4():
    from services.registry import spec

    def convert_charset(service: str, release: str) -> str:
        return spec(service).charset_for(release)

    assert [convert_charset("glance", r) for r in ("icehouse", "juno", "2026.1")] == ["utf8mb4"] * 3
    assert (convert_charset("keystone", "icehouse"), convert_charset("keystone", "juno")) == ("utf8", "")
    assert convert_charset("nova", "icehouse") == ""  # nova's non-utf8 tables are carried as they are


def test_detection_per_column_on_the_source(lab):
    old, _new, _seeded = lab
    scans = {s.name: s for s in charset.scan_db(ep(old.db), "glance")}
    assert (scans["images.name"].kind, scans["images.name"].utf8, scans["images.name"].ascii) == ("utf8", 3, 1)
    assert (scans["image_properties.value"].kind, scans["image_properties.value"].native) == ("native", 3)
    assert scans["image_tags.value"].kind == "utf8" and scans["image_tags.value"].utf8 == 2
    assert scans["image_members.member"].kind == "ascii"
    assert "metadef_namespaces.display_name" not in scans  # utf8 already: not a conversion's business
    rocket = next(i for i, n in lab[2]["want"]["images.name"].items() if "🚀" in n)
    assert scans["images.name"].four_byte == [rocket]
    # utf8mb4 holds it; a target that takes only utf8mb3 refuses it, naming the row
    assert charset.refusals("glance", scans.values(), "utf8mb4") == []
    (msg,) = charset.refusals("glance", scans.values(), "utf8")
    assert "glance.images.name" in msg and rocket in msg and "4-byte" in msg
    doubles = charset.scan_double(ep(old.db), "glance", {k: s.kind for k, s in scans.items()})
    assert [(d.name, d.rows) for d in doubles] == [("metadef_namespaces.display_name", 3)]
    assert doubles[0].sample[1] in DOUBLED and doubles[0].sample[0] != doubles[0].sample[1]


def test_check_reports_counts_and_double_encoding(lab, tmp_path):
    old, new, _seeded = lab
    before = _state(old, new)
    code, rows, out = _check(write_plan(tmp_path / "warn", old, new, repair=False))
    status, detail = rows["charset glance"]
    assert status == "WARN" and code == 1, out
    assert "converted to utf8mb4" in detail
    assert "images.name (3 UTF-8, 1 ASCII-only)" in detail and "image_properties.value (3 latin1" in detail
    assert "glance.metadef_namespaces.display_name" in detail and "double-encoded" in detail
    assert "repair_double_encoded" in detail  # the remedy names the plan option
    code, rows, out = _check(write_plan(tmp_path / "ok", old, new))
    assert rows["charset glance"][0] == "OK" and "repaired on the target" in rows["charset glance"][1], out
    assert _state(old, new) == before
    assert not (tmp_path / "ok" / "journal").exists()


def test_mixed_column_is_refused_and_nothing_changes(lab, tmp_path):
    old, new, seeded = lab
    img = seeded["images"][1]
    (was,) = old.db.execute("SELECT HEX(name) FROM images WHERE id=%s", db="glance", args=(img,))[0]
    _set(old.db, "images", "name", "id", img, MIXED_NAME, "latin1")
    try:
        before = _state(old, new)
        plan = write_plan(tmp_path, old, new)
        code, rows, out = _check(plan)
        status, detail = rows["charset glance"]
        assert code == 2 and status == "FAIL", out
        assert "glance.images.name is mixed" in detail and img in detail and "by hand" in detail
        res = upgrade("run", str(plan))
        assert res.returncode == 2, res.stdout + res.stderr
        assert "glance.images.name is mixed" in res.stderr and img in res.stderr
        assert _state(old, new) == before
        assert not (tmp_path / "journal" / "journal.db").exists()
        assert all(units.status(old.root, u) for u in UNITS["glance"])  # nothing stopped
    finally:
        old.db.execute("UPDATE images SET name = CONVERT(UNHEX(%s) USING latin1) WHERE id=%s", db="glance",
                       args=(was, img))


# ---------------------------------------------------------------------- the run
def _events(journal: Path) -> list[dict]:
    exp = upgrade("journal", "export", "--journal", str(journal), "--format", "jsonl")
    assert exp.returncode == 0, exp.stderr
    return [json.loads(line) for line in exp.stdout.splitlines()]


def test_killed_conversion_and_repair_resume_and_revert_exactly(lab, tmp_path):
    old, new, seeded = lab
    want = seeded["want"]
    src_before = old.db.checksums("glance")
    tgt_before = new.db.checksums("glance")
    tgt_texts_before = texts(new.db)
    etc_before = tree_digest(new.root / "etc")
    plan = write_plan(tmp_path, old, new)
    journal = tmp_path / "journal"

    res = upgrade("run", str(plan), failpoint="glance.import_db:converting")
    assert res.returncode == -signal.SIGKILL, res.stdout + res.stderr
    # killed inside the conversion: one table converted, the rest not (the foreign keys dropped)
    collations = dict(new.db.execute("SELECT table_name, table_collation FROM information_schema.tables WHERE "
                                     "table_schema='glance'"))
    assert any(c.startswith("utf8mb4") for c in collations.values())
    assert any(c.startswith("latin1") for c in collations.values())

    res = upgrade("resume", "--journal", str(journal), failpoint="glance.repair_text:inside")
    assert res.returncode == -signal.SIGKILL, res.stdout + res.stderr
    res = upgrade("resume", "--journal", str(journal))
    assert res.returncode == 0, res.stdout + res.stderr

    # every row reads back as the intended text over utf8mb4; the double-encoded table repaired
    got = texts(new.db)
    assert got == want
    assert old.db.checksums("glance") == src_before  # the source was only read
    tables = dict(new.db.execute("SELECT table_name, table_collation FROM information_schema.tables WHERE "
                                 "table_schema='glance'"))
    assert all(c.startswith("utf8") for c in tables.values()), tables
    assert tables["images"] == "utf8mb4_general_ci" and tables["metadef_namespaces"].startswith("utf8mb3")
    cols = dict(new.db.execute("SELECT CONCAT(table_name, '.', column_name), CONCAT(column_type, ' ', is_nullable, "
                               "' ', IFNULL(column_default, '-')) FROM information_schema.columns WHERE "
                               "table_schema='glance' AND table_name IN ('images', 'image_tags')"))
    src_cols = dict(old.db.execute("SELECT CONCAT(table_name, '.', column_name), CONCAT(column_type, ' ', "
                                   "is_nullable, ' ', IFNULL(column_default, '-')) FROM information_schema.columns "
                                   "WHERE table_schema='glance' AND table_name IN ('images', 'image_tags')"))
    assert cols == src_cols  # types, lengths, NULL and defaults kept
    fks = new.db.execute("SELECT COUNT(*) FROM information_schema.referential_constraints WHERE "
                         "constraint_schema='glance' AND referenced_table_name='images'")[0][0]
    assert fks == old.db.execute("SELECT COUNT(*) FROM information_schema.referential_constraints WHERE "
                                 "constraint_schema='glance' AND referenced_table_name='images'")[0][0] >= 4

    ev = _events(journal)
    imported = [e for e in ev if e["step"] == "glance.import_db" and e["kind"] == "done"][-1]["result"]
    kinds = imported["databases"]["glance"]["columns"]
    assert (kinds["images"]["name"], kinds["image_properties"]["value"], kinds["image_members"]["member"]) == \
        ("utf8", "native", "ascii")
    repaired = [e for e in ev if e["step"] == "glance.repair_text" and e["kind"] == "done"][-1]["result"]
    assert repaired["databases"]["glance"]["metadef_namespaces.display_name"]["rows"] == 3
    assert [e["kind"] for e in ev if e["step"] == "glance.repair_text" and e["kind"] != "note"] == \
        ["intent", "intent", "done"]  # killed once inside, run again on resume

    res = upgrade("revert", "--journal", str(journal), failpoint="glance.repair_text:undo_after")
    assert res.returncode == -signal.SIGKILL, res.stdout + res.stderr
    assert texts(new.db)["metadef_namespaces.display_name"] != want["metadef_namespaces.display_name"]
    res = upgrade("revert", "--journal", str(journal))
    assert res.returncode == 0, res.stdout + res.stderr
    assert new.db.checksums("glance") == tgt_before
    assert texts(new.db) == tgt_texts_before
    assert tree_digest(new.root / "etc") == etc_before
    assert old.db.checksums("glance") == src_before
    assert all(units.status(old.root, u) for u in UNITS["glance"])


# ---------------------------------------------------------------------- Havana's own schema
HAVANA = [
    """CREATE TABLE images (
      id varchar(36) NOT NULL, name varchar(255) DEFAULT NULL, size bigint(20) DEFAULT NULL,
      status varchar(30) NOT NULL, is_public tinyint(1) NOT NULL, created_at datetime NOT NULL,
      updated_at datetime DEFAULT NULL, deleted_at datetime DEFAULT NULL, deleted tinyint(1) NOT NULL,
      disk_format varchar(20) DEFAULT NULL, container_format varchar(20) DEFAULT NULL,
      checksum varchar(32) DEFAULT NULL, owner varchar(255) DEFAULT NULL, min_disk int(11) NOT NULL,
      min_ram int(11) NOT NULL, protected tinyint(1) DEFAULT NULL,
      PRIMARY KEY (id), KEY ix_images_deleted (deleted), KEY ix_images_is_public (is_public),
      KEY checksum_image_idx (checksum), KEY owner_image_idx (owner)
    ) ENGINE=InnoDB DEFAULT CHARSET=latin1""",
    """CREATE TABLE image_properties (
      id int(11) NOT NULL AUTO_INCREMENT, image_id varchar(36) NOT NULL, name varchar(255) NOT NULL,
      value text, created_at datetime NOT NULL, updated_at datetime DEFAULT NULL,
      deleted_at datetime DEFAULT NULL, deleted tinyint(1) NOT NULL,
      PRIMARY KEY (id), UNIQUE KEY ix_image_properties_image_id_name (image_id, name),
      KEY ix_image_properties_deleted (deleted),
      CONSTRAINT image_properties_ibfk_1 FOREIGN KEY (image_id) REFERENCES images (id)
    ) ENGINE=InnoDB DEFAULT CHARSET=latin1""",
    """CREATE TABLE image_members (
      id int(11) NOT NULL AUTO_INCREMENT, image_id varchar(36) NOT NULL, member varchar(255) NOT NULL,
      can_share tinyint(1) NOT NULL, created_at datetime NOT NULL, updated_at datetime DEFAULT NULL,
      deleted_at datetime DEFAULT NULL, deleted tinyint(1) NOT NULL,
      status varchar(20) NOT NULL DEFAULT 'pending',
      PRIMARY KEY (id), UNIQUE KEY image_members_image_id_member_deleted_at_key (image_id, member, deleted_at),
      KEY ix_image_members_deleted (deleted), KEY ix_image_members_image_id_member (image_id, member),
      CONSTRAINT image_members_ibfk_1 FOREIGN KEY (image_id) REFERENCES images (id)
    ) ENGINE=InnoDB DEFAULT CHARSET=latin1""",
    """CREATE TABLE image_tags (
      id int(11) NOT NULL AUTO_INCREMENT, image_id varchar(36) NOT NULL, value varchar(255) NOT NULL,
      created_at datetime NOT NULL, updated_at datetime DEFAULT NULL, deleted_at datetime DEFAULT NULL,
      deleted tinyint(1) NOT NULL,
      PRIMARY KEY (id), KEY ix_image_tags_image_id (image_id), KEY ix_image_tags_image_id_tag_value (image_id, value),
      CONSTRAINT image_tags_ibfk_1 FOREIGN KEY (image_id) REFERENCES images (id)
    ) ENGINE=InnoDB DEFAULT CHARSET=latin1""",
    """CREATE TABLE image_locations (
      id int(11) NOT NULL AUTO_INCREMENT, image_id varchar(36) NOT NULL, value text NOT NULL,
      created_at datetime NOT NULL, updated_at datetime DEFAULT NULL, deleted_at datetime DEFAULT NULL,
      deleted tinyint(1) NOT NULL, meta_data text,
      PRIMARY KEY (id), KEY ix_image_locations_image_id (image_id), KEY ix_image_locations_deleted (deleted),
      CONSTRAINT image_locations_ibfk_1 FOREIGN KEY (image_id) REFERENCES images (id)
    ) ENGINE=InnoDB DEFAULT CHARSET=latin1""",
    """CREATE TABLE migrate_version (
      repository_id varchar(250) NOT NULL, repository_path text, version int(11) DEFAULT NULL,
      PRIMARY KEY (repository_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=latin1""",
]


def _definitions(db: MariaDB, schema: str) -> tuple[Any, ...]:
    cols = db.execute("SELECT table_name, column_name, column_type, is_nullable, column_default FROM "
                      "information_schema.columns WHERE table_schema=%s ORDER BY 1, 2", args=(schema,))
    idx = db.execute("SELECT table_name, index_name, non_unique, seq_in_index, column_name, sub_part FROM "
                     "information_schema.statistics WHERE table_schema=%s ORDER BY 1, 2, 4", args=(schema,))
    fks = db.execute("SELECT constraint_name, table_name, referenced_table_name FROM information_schema."
                     "referential_constraints WHERE constraint_schema=%s ORDER BY 1", args=(schema,))
    return cols, idx, fks


#: a Havana keystone table (latin1) for the jump whose target takes only utf8mb3
KEYSTONE_HAVANA = """CREATE TABLE project (
  id varchar(64) NOT NULL, name varchar(64) NOT NULL, extra text, description text, enabled tinyint(1) DEFAULT NULL,
  domain_id varchar(64) NOT NULL, PRIMARY KEY (id), UNIQUE KEY ixu_project_name_domain_id (domain_id, name)
) ENGINE=InnoDB DEFAULT CHARSET=latin1"""


@pytest.fixture(scope="module")
def havana(lab):
    """glance_havana and keystone_havana on the source: Havana's DDL (latin1, InnoDB, its foreign keys)
    holding UTF-8 bytes (with a 4-byte character), latin1 text and ASCII."""
    old = lab[0]
    for schema in ("glance_havana", "keystone_havana"):
        old.db.execute(f"CREATE DATABASE {schema} CHARACTER SET latin1")
    try:
        for ddl in HAVANA:
            old.db.execute(ddl, db="glance_havana")
        img = str(uuid.uuid4())
        old.db.execute("INSERT INTO images (id, name, status, is_public, created_at, deleted, min_disk, min_ram) "
                       "VALUES (%s, CONVERT(UNHEX(%s) USING latin1), 'active', 1, %s, 0, 0, 0)", db="glance_havana",
                       args=(img, "Łódź 🚀 東京".encode().hex(), WHEN))
        old.db.execute("INSERT INTO image_properties (image_id, name, value, created_at, deleted) VALUES "
                       "(%s, 'os_distro', %s, %s, 0)", db="glance_havana", args=(img, "Ærø straße", WHEN))
        old.db.execute("INSERT INTO image_locations (image_id, value, created_at, deleted, meta_data) VALUES "
                       "(%s, CONVERT(UNHEX(%s) USING latin1), %s, 0, '{}')", db="glance_havana",
                       args=(img, "file:///var/lib/glance/images/żółw".encode().hex(), WHEN))
        old.db.execute("INSERT INTO image_members (image_id, member, can_share, created_at, deleted) VALUES "
                       "(%s, 'tenant-b', 0, %s, 0)", db="glance_havana", args=(img, WHEN))
        old.db.execute("INSERT INTO migrate_version VALUES ('Glance Migrations', '/usr/lib/glance/migrate_repo', 29)",
                       db="glance_havana")
        old.db.execute(KEYSTONE_HAVANA, db="keystone_havana")
        project = "b5f0c9a1e3d24f6b8c7d9e0f1a2b3c4d"
        old.db.execute("INSERT INTO project (id, name, extra, enabled, domain_id) VALUES (%s, CONVERT(UNHEX(%s) "
                       "USING latin1), '{}', 1, 'default'), ('a1', 'admin', '{}', 1, 'default')", db="keystone_havana",
                       args=(project, "Zespół 🚀".encode().hex()))
        yield {"image": img, "project": project}
    finally:
        for schema in ("glance_havana", "keystone_havana"):
            old.db.execute(f"DROP DATABASE IF EXISTS {schema}")


def test_havana_icehouse_detects_and_refuses_what_utf8mb3_cannot_hold(lab, havana, tmp_path):
    """havana -> icehouse: glance's text goes to utf8mb4 (a 4-byte character survives), keystone's to
    utf8 (utf8mb3): its 4-byte character is refused by `upgrade check` and by `upgrade run`, naming
    the row, with nothing changed."""
    old, new, _seeded = lab
    tmp_path.mkdir(exist_ok=True)
    write_key(tmp_path / "dump.key")
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[upgrade]\nfrom = "havana"\nto = "icehouse"\nservices = ["keystone", "glance"]\njournal = "journal"\n\n'
        '[vault]\nkey_file = "dump.key"\n\n'
        + side_table("source", old.root, old.venv, "127.0.0.1", old.db.port, DBAdmin(ADMIN, password=ADMIN_PW))
        + side_table("target", new.root, new.venv, "127.0.0.1", new.db.port, DBAdmin(ADMIN, password=ADMIN_PW))
        + '[services.keystone]\nunit = "keystone"\ndb_name = "keystone_havana"\nowner = "root:root"\n'
          'grant_hosts = ["127.0.0.1"]\n\n'
        + '[services.glance]\nunits = ["glance-api"]\ndb_name = "glance_havana"\nowner = "root:root"\n'
          'grant_hosts = ["127.0.0.1"]\n')
    before = old.db.checksums("glance_havana"), old.db.checksums("keystone_havana"), _state(old, new)
    code, rows, out = _check(plan)
    assert code == 2, out
    status, detail = rows["charset keystone"]
    assert status == "FAIL" and "keystone_havana.project.name" in detail and havana["project"] in detail, detail
    assert "4-byte" in detail and "utf8" in detail
    status, detail = rows["charset glance"]
    assert status == "OK" and "converted to utf8mb4" in detail, detail
    assert "images.name (1 UTF-8)" in detail and "image_properties.value (1 latin1" in detail
    assert "image_members.member (1 ASCII-only)" in detail
    res = upgrade("run", str(plan))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "keystone_havana.project.name" in res.stderr and havana["project"] in res.stderr
    assert (old.db.checksums("glance_havana"), old.db.checksums("keystone_havana"), _state(old, new)) == before
    assert not (tmp_path / "journal" / "journal.db").exists()


def test_havana_schema_keeps_its_definitions(lab, havana, tmp_path):
    """Havana's glance DDL with each kind of text, dumped and imported for real, converted to
    utf8mb4 by the import's own code: every column keeps type, length, NULL and default (TEXT stays
    TEXT where it held UTF-8 bytes), every index and foreign key stays, and the text means the same."""
    from services.steps.imports import foreign_keys
    old, new, _seeded = lab
    schema = "glance_havana"
    try:
        scans = charset.scan_db(ep(old.db), schema)
        kinds = {s.name: s.kind for s in scans}
        assert kinds["images.name"] == "utf8" and kinds["image_locations.value"] == "utf8"
        assert kinds["image_properties.value"] == "native" and kinds["image_members.member"] == "ascii"
        dump = tmp_path / "havana.sql"
        old.db.snapshot(schema, dump)
        new.db.restore(schema, dump)
        before = _definitions(new.db, schema)
        tables = sorted(charset.non_utf8_tables(ep(new.db), schema))
        charset.convert(ep(new.db), schema, tables, kinds, "utf8mb4", foreign_keys(ep(old.db), schema))
        cols, idx, fks = _definitions(new.db, schema)
        text_promoted = {("image_properties", "value"), ("migrate_version", "repository_path"),
                         ("image_locations", "meta_data")}  # true latin1/ASCII TEXT: CONVERT TO widens it
        assert [c for c in cols if c[:2] not in text_promoted] == [c for c in before[0] if c[:2] not in text_promoted]
        assert (idx, fks) == before[1:] and len(fks) == 4
        assert not charset.non_utf8_tables(ep(new.db), schema)
        for table in tables:
            columns = mysql.table_columns(ep(old.db), schema, table)
            mine = {c: kinds.get(f"{table}.{c}", "") for c in columns}
            assert charset.meaning_digest(ep(old.db), schema, table, columns, mine) == \
                charset.meaning_digest(ep(new.db), schema, table, columns, {})
        assert new.db.execute("SELECT name FROM images", db=schema) == [("Łódź 🚀 東京",)]
        assert new.db.execute("SELECT value FROM image_properties", db=schema) == [("Ærø straße",)]
        assert new.db.execute("SELECT value FROM image_locations", db=schema) == \
            [("file:///var/lib/glance/images/żółw",)]
    finally:
        new.db.execute(f"DROP DATABASE IF EXISTS {schema}")
