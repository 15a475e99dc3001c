"""The vault with real databases: mariadb-dump -> encrypted artifact -> mysql between two MariaDB servers.

Everything is real: two lab MariaDB servers on 127.0.0.1, the real ``mysqldump``/``mysql``
clients started through ``LocalHost``, real files, a real tmpfs for the disk-full case. What is
proved here is what the upgrade relies on when it replaces a controller: every column type an
OpenStack schema uses survives the trip byte for byte, a damaged or foreign artifact is refused
before the target database is touched, MariaDB's sandbox line never reaches a MySQL client, a database
of many vault chunks streams through the tool's own process intact, and a full disk leaves nothing behind.
(How fast, and in how much memory, is measured by ``make bench`` into BENCHMARKS.md, never asserted here.)
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import io
import json
import os
import re
import secrets
import shlex
import shutil
import ssl
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from journal import vault
from scripts.bench.vault import generate_blob_db, recreate_like, run_tool
from scripts.lab.mariadb import MariaDB, free_port
from services.infra import mysql
from services.infra.deferkeys import DeferKeys
from services.infra.settings import DBEndpoint
from tests.conftest import require
from upgrade.hosts import LocalHost

MYSQLDUMP = "mysqldump"  # the names the upgrade steps use (services/steps/databases.py)
MYSQL = "mysql"
SMALL_CHUNK = 4096
#: The streamed database: 32 MiB of LONGBLOB rows, a 64 MiB --hex-blob dump of 64 vault chunks (the 1 GiB
#: case and the tool's peak memory are measured by `make bench`: scripts/bench/vault.py, the same child)
BIG_MB = 32


@dataclass
class Servers:
    """The two lab servers and how the tool reaches them."""

    source: MariaDB
    target: MariaDB
    src: DBEndpoint
    dst: DBEndpoint
    src_host: LocalHost
    dst_host: LocalHost

    def dst_as(self, flavor: str) -> DBEndpoint:
        """The target endpoint with another flavor (a MySQL target strips the sandbox line)."""
        return DBEndpoint(address="127.0.0.1", port=self.target.port, admin_user="root", admin_password="",
                          flavor=flavor)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Servers:
    """Source and target MariaDB, started once for the module; the finalizer stops them even on failure."""
    for tool in ("mariadbd", "mariadb-install-db", MYSQLDUMP, MYSQL):
        require(shutil.which(tool) is not None, f"{tool} not installed (make setup installs MariaDB)")
    base = tmp_path_factory.mktemp("vaultdb")
    source = MariaDB(base / "source", free_port())
    target = MariaDB(base / "target", free_port())
    request.addfinalizer(target.stop)
    request.addfinalizer(source.stop)
    source.start()
    target.start()

    def endpoint(server: MariaDB) -> DBEndpoint:
        return DBEndpoint(address="127.0.0.1", port=server.port, admin_user="root", admin_password="")

    return Servers(source, target, endpoint(source), endpoint(target), LocalHost("source"), LocalHost("target"))


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the module's key files live (0700 by tmp_path_factory, keys 0600 by generate_key_file)."""
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def key(key_dir: Path) -> vault.Key:
    """The vault key of the run, from a real key file as `upgrade keygen` makes it."""
    return vault.generate_key_file(key_dir / "dump.key")


def _decrypt(path: Path, key: vault.Key) -> bytes:
    """Plaintext of an artifact (small test dumps only)."""
    return vault.decrypt_bytes(path, key)


def _mode(path: Path) -> int:
    """Permission bits of a file."""
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------ 1. round trip of every column type

RT_DB = "rt_nova"
MARKER = "PLAINTEXT-MARKER-" + secrets.token_hex(8)
LATIN1_TEXT = "Café Straße Ärger ©"
UTF8_TEXT = "instance 🚀 日本語 Ελληνικά é \\ ' \" `"
ALL_BYTES = bytes(range(256)) * 4
RT_SCHEMA = [
    f"CREATE DATABASE {RT_DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
    """CREATE TABLE parents (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        uuid CHAR(36) NOT NULL,
        name VARCHAR(255) NULL,
        description TEXT NULL,
        extra TEXT NULL,
        created_at DATETIME NULL,
        updated_at DATETIME(6) NULL,
        deleted TINYINT(1) NULL,
        enabled BOOLEAN NULL,
        big BIGINT NULL,
        vcpus INT NULL,
        price DECIMAL(20, 6) NULL,
        UNIQUE KEY uniq_parents0uuid (uuid),
        KEY parents_name_idx (name(100)),
        KEY parents_deleted_created_at_idx (deleted, created_at DESC)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE children (
        id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        parent_id BIGINT NOT NULL,
        small_blob BLOB NULL,
        big_blob LONGBLOB NULL,
        note VARCHAR(64) NULL,
        KEY children_parent_note_idx (parent_id, note),
        CONSTRAINT children_parent_fk FOREIGN KEY (parent_id) REFERENCES parents (id) ON DELETE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE legacy_latin1 (
        id INT NOT NULL PRIMARY KEY,
        txt VARCHAR(100) NULL,
        body TEXT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=latin1""",
    """CREATE TABLE audit (
        id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        parent_id BIGINT NOT NULL,
        action VARCHAR(16) NOT NULL
    ) ENGINE=InnoDB""",
    """CREATE TRIGGER parents_after_insert AFTER INSERT ON parents FOR EACH ROW
        INSERT INTO audit (parent_id, action) VALUES (NEW.id, 'insert')""",
    """CREATE FUNCTION child_count(p BIGINT) RETURNS INT READS SQL DATA
        RETURN (SELECT COUNT(*) FROM children WHERE parent_id = p)""",
    """CREATE PROCEDURE purge_deleted()
        BEGIN DELETE FROM parents WHERE deleted = 1; END""",
]
NULLABLE_PARENT = ("name", "description", "extra", "created_at", "updated_at", "deleted", "enabled", "big",
                   "vcpus", "price")


def _seed_round_trip(server: MariaDB) -> None:
    """Rows that exercise each type at its edges, and one row with NULL in every nullable column."""
    server.execute(f"DROP DATABASE IF EXISTS {RT_DB}")
    server.execute(RT_SCHEMA[0])
    conn = server.connect(RT_DB)
    try:
        with conn.cursor() as cur:
            for stmt in RT_SCHEMA[1:]:
                cur.execute(stmt)
            parent = ("INSERT INTO parents (uuid, name, description, extra, created_at, updated_at, deleted,"
                      " enabled, big, vcpus, price) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
            extra = json.dumps({"quote": "a\"b", "backslash": "c:\\d", "nl": "x\ny", "emoji": "🙂", "n": [1, None]},
                               ensure_ascii=False)
            cur.execute(parent, ("00000000-0000-0000-0000-000000000001", UTF8_TEXT, f"holds {MARKER}", extra,
                                 datetime.datetime(1999, 12, 31, 23, 59, 59),
                                 datetime.datetime(2038, 1, 19, 3, 14, 7, 999999), 0, True, 2**63 - 1, 64,
                                 decimal.Decimal("12345678901234.123456")))
            cur.execute(parent, ("00000000-0000-0000-0000-000000000002", "", "", "{}",
                                 datetime.datetime(1000, 1, 1), datetime.datetime(2024, 2, 29, 12, 0, 0, 1), 1,
                                 False, -(2**63), 0, decimal.Decimal("-0.000001")))
            cur.execute("INSERT INTO parents (uuid) VALUES ('00000000-0000-0000-0000-000000000003')")
            child = "INSERT INTO children (parent_id, small_blob, big_blob, note) VALUES (%s, %s, %s, %s)"
            cur.execute(child, (1, ALL_BYTES, b"\x00\xff" + os.urandom(300_000) + b"\xff\x00", "random"))
            cur.execute(child, (1, b"\x00" * 100, b"\xff" * 100, "zeros and ones"))
            cur.execute(child, (2, b"'\\\n\r\x1a\"", b"", "escapes; empty is not NULL"))
            cur.execute(child, (3, None, None, None))
            cur.execute("INSERT INTO legacy_latin1 (id, txt, body) VALUES (1, %s, %s), (2, NULL, NULL)",
                        (LATIN1_TEXT, LATIN1_TEXT * 20))
    finally:
        conn.close()


def _tables(server: MariaDB, db: str) -> list[str]:
    """Base tables of ``db`` by name."""
    return [t for (t,) in server.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE'"
        " ORDER BY table_name", args=(db,))]


def _all_rows(server: MariaDB, db: str) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order: a byte-level comparison beside the checksums."""
    return {t: server.execute(f"SELECT * FROM `{t}` ORDER BY 1", db=db) for t in _tables(server, db)}


def _schema(server: MariaDB, db: str) -> dict[str, Any]:
    """Tables (SHOW CREATE TABLE), triggers and routines: what a dump must carry besides rows."""
    tables = {t: server.execute(f"SHOW CREATE TABLE `{t}`", db=db)[0][1] for t in _tables(server, db)}
    triggers = server.execute(
        "SELECT trigger_name, event_manipulation, event_object_table, action_timing, action_statement, definer"
        " FROM information_schema.triggers WHERE trigger_schema = %s ORDER BY trigger_name", args=(db,))
    routines = server.execute(
        "SELECT routine_name, routine_type, routine_definition, definer FROM information_schema.routines"
        " WHERE routine_schema = %s ORDER BY routine_name", args=(db,))
    return {"tables": tables, "triggers": triggers, "routines": routines}


def test_round_trip_every_openstack_column_type(servers: Servers, key: vault.Key, tmp_path: Path) -> None:
    _seed_round_trip(servers.source)
    artifact = tmp_path / "rt.vault"
    try:
        stats = mysql.dump_to_vault(servers.src_host, servers.src, MYSQLDUMP, RT_DB, str(artifact), key)
        assert _mode(artifact) == 0o600
        assert not artifact.with_name(artifact.name + ".part").exists()
        plain = _decrypt(artifact, key)
        assert stats.bytes == len(plain)
        assert MARKER.encode() in plain  # the marker is really in the dump ...
        assert MARKER.encode() not in artifact.read_bytes()  # ... and only encrypted on disk
        assert b"CREATE TABLE `parents`" not in artifact.read_bytes()

        charset, collation = mysql.db_charset(servers.src, RT_DB)
        assert (charset, collation) == ("utf8mb4", "utf8mb4_unicode_ci")
        mysql.recreate_db(servers.dst, RT_DB, charset, collation)
        mysql.import_from_vault(servers.dst_host, servers.dst, MYSQL, RT_DB, str(artifact), key,
                                stats.bytes, stats.sha256)

        before = mysql.checksums(servers.src, RT_DB)
        after = mysql.checksums(servers.dst, RT_DB)
        assert sorted(before) == ["audit", "children", "legacy_latin1", "parents"]
        for table in before:
            assert after[table] == before[table], table
        assert after == before
        assert before["parents"][0] == 3 and before["audit"][0] == 3  # the trigger fired at seeding only
        assert _all_rows(servers.target, RT_DB) == _all_rows(servers.source, RT_DB)
        assert _schema(servers.target, RT_DB) == _schema(servers.source, RT_DB)
        assert mysql.db_charset(servers.dst, RT_DB) == (charset, collation)

        # The NULL row stayed NULL in every nullable column, not '' or 0.
        cols = ", ".join(NULLABLE_PARENT)
        assert servers.target.execute(f"SELECT {cols} FROM parents WHERE id = 3", db=RT_DB) == [
            (None,) * len(NULLABLE_PARENT)]
        # latin1 stays latin1 on disk (no double encoding through the utf8mb4 dump).
        (hexed,) = servers.target.execute("SELECT HEX(txt) FROM legacy_latin1 WHERE id = 1", db=RT_DB)[0]
        assert bytes.fromhex(hexed) == LATIN1_TEXT.encode("latin1")
        (blob,) = servers.target.execute("SELECT small_blob FROM children WHERE id = 1", db=RT_DB)[0]
        assert blob == ALL_BYTES

        # Routines and the trigger work on the target, not only exist.
        assert servers.target.execute("SELECT child_count(1)", db=RT_DB) == [(2,)]
        servers.target.execute("INSERT INTO parents (uuid) VALUES ('00000000-0000-0000-0000-000000000004')",
                               db=RT_DB)
        assert servers.target.execute("SELECT action FROM audit WHERE parent_id = 4", db=RT_DB) == [("insert",)]
        servers.target.execute("CALL purge_deleted()", db=RT_DB)
        assert servers.target.execute("SELECT COUNT(*) FROM parents WHERE deleted = 1", db=RT_DB) == [(0,)]
        assert servers.target.execute("SELECT COUNT(*) FROM children WHERE parent_id = 2", db=RT_DB) == [(0,)]
    finally:
        mysql.drop_db(servers.src, RT_DB)
        mysql.drop_db(servers.dst, RT_DB)


def _defer(data: bytes, size: int) -> tuple[bytes, int]:
    """Feed ``data`` to DeferKeys in writes of ``size`` bytes: what reaches the sink, keys it moved."""
    sink = _Sink()
    defer = DeferKeys(sink)
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        assert defer.write(piece) == len(piece)
    defer.close()
    return sink.getvalue(), defer.deferred


@pytest.mark.parametrize("size", [7, 4096, 1 << 20])
def test_secondary_keys_move_after_the_rows_of_their_table(servers: Servers, size: int) -> None:
    """The real dump of the round-trip schema (its import through the same writer is checked table by table,
    SHOW CREATE TABLE included, above): parents' two plain keys leave its CREATE TABLE and come back in one
    ALTER TABLE after its rows, in their order; children's key on its foreign key's column stays (InnoDB
    needs it for the constraint); the unique key and every other line pass byte for byte, however the
    stream is cut."""
    _seed_round_trip(servers.source)
    try:
        plain = subprocess.run([*servers.source._client("mariadb-dump"), *mysql.DUMP_OPTIONS, RT_DB],
                               capture_output=True, check=True).stdout
    finally:
        mysql.drop_db(servers.src, RT_DB)
    out, moved = _defer(plain, size)
    assert moved == 2
    create = out[out.index(b"CREATE TABLE `parents`"):]
    create = create[:create.index(b";\n")]
    assert b"UNIQUE KEY `uniq_parents0uuid` (`uuid`)\n)" in create and b"parents_name_idx" not in create
    alter = (b"ALTER TABLE `parents` ADD KEY `parents_name_idx` (`name`(100)), "
             b"ADD KEY `parents_deleted_created_at_idx` (`deleted`,`created_at` DESC);\n")
    assert out.count(alter) == 1
    assert out.index(b"INSERT INTO `parents`") < out.index(alter) < out.index(b"UNLOCK TABLES", out.index(alter))
    assert b"KEY `children_parent_note_idx` (`parent_id`,`note`)," in out  # the foreign key's index stays
    restored = out.replace(alter, b"").replace(
        b"`uuid`)\n)", b"`uuid`),\n  KEY `parents_name_idx` (`name`(100)),\n"
        b"  KEY `parents_deleted_created_at_idx` (`deleted`,`created_at` DESC)\n)", 1)
    assert restored == plain  # nothing else changed
    assert _defer(b"SELECT 1;\nCREATE TABLE `t` (\n", size) == (b"SELECT 1;\nCREATE TABLE `t` (\n", 0)


def test_each_table_is_marked_complete_on_the_target_as_its_import_ends(
        servers: Servers, key: vault.Key, tmp_path: Path) -> None:
    """The streamed import tells each table's end as soon as every statement of it ran on the target (the marks
    of ``deferkeys``): at that moment its rows, keys and trigger are all there; every table is told once, in the
    dump's order; ``TableChecks`` fed by the marks says what one pass after the import says; the artifact holds
    the dump without the marks."""
    _seed_round_trip(servers.source)
    artifact = tmp_path / "marked.vault"
    seen: list[tuple[str, Any, int, int]] = []
    checks = mysql.TableChecks(servers.dst, RT_DB)

    def done(table: str) -> None:
        sums = mysql.checksums(servers.dst, RT_DB, [table])[table]
        keys, triggers = servers.target.execute(
            "SELECT (SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema=%s AND table_name=%s), "
            "(SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema=%s AND event_object_table=%s)",
            args=(RT_DB, table, RT_DB, table))[0]
        seen.append((table, sums, int(keys), int(triggers)))
        checks.done(table)

    try:
        mysql.recreate_db(servers.dst, RT_DB, *mysql.db_charset(servers.src, RT_DB))
        mysql.dump_streamed((servers.src_host, servers.src), (servers.dst_host, servers.dst), MYSQLDUMP, MYSQL,
                            RT_DB, str(artifact), key, table_done=done)
        plain = _decrypt(artifact, key)
        order = [m.decode() for m in re.findall(rb"(?m)^CREATE TABLE `([^`]+)` \(", plain)]
        source = mysql.checksums(servers.src, RT_DB)
        assert [s[0] for s in seen] == order and sorted(order) == sorted(source)
        for table, sums, keys, triggers in seen:
            assert sums == source[table], table
            assert (keys, triggers) == tuple(int(v) for v in servers.source.execute(
                "SELECT (SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema=%s AND "
                "table_name=%s), (SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema=%s AND "
                "event_object_table=%s)", args=(RT_DB, table, RT_DB, table))[0]), table
        assert any(s[3] for s in seen)  # the trigger was there when its table was told complete
        assert checks.finish(sorted(source)) == source == mysql.checksums(servers.dst, RT_DB)
        assert b"osu_table_done" not in plain
    finally:
        checks.stop()
        mysql.drop_db(servers.src, RT_DB)
        mysql.drop_db(servers.dst, RT_DB)


def test_a_table_mark_names_any_table_and_is_the_only_output_read_as_one() -> None:
    """A mark carries the table's name in hex, so a backquote (doubled in the dump) or a quote cannot leave the
    literal; what ``mysql`` prints for it gives the name back; its column header and other lines name nothing;
    with marks off, DeferKeys adds nothing."""
    from services.infra.deferkeys import MARK_COLUMN, table_done_name, table_mark

    for dumped, name in ((b"instances", "instances"), (b"we``ird'", "we`ird'"), ("t\u00e9".encode(), "t\u00e9")):
        stmt = table_mark(dumped)
        assert stmt.startswith(b"SELECT '") and stmt.count(b"'") == 2 and stmt.endswith(b" AS osu_table_done;\n")
        assert table_done_name(stmt.split(b"'")[1] + b"\n") == name
    assert table_done_name(MARK_COLUMN + b"\n") is None and table_done_name(b"zz\n") is None
    dump = b"CREATE TABLE `a` (\n  `id` int\n) ENGINE=InnoDB;\nINSERT INTO `a` VALUES (1);\n"
    sink = _Sink()
    marked = DeferKeys(sink, defer=False, marks=True)
    marked.write(dump)
    marked.close()
    assert sink.getvalue() == dump + table_mark(b"a")
    assert _defer(dump, 7) == (dump, 0)


def test_a_table_mark_arrives_while_the_import_still_waits_for_the_next_table(servers: Servers) -> None:
    """The mark of a table is read as soon as ``mysql`` ran the table's statements, while its stdin is still
    open (a client buffering its output into the pipe would hand every mark over only at its exit, and each
    table's check would wait for the whole stream)."""
    from services.infra.deferkeys import table_mark

    db = "osu_marks"
    mysql.recreate_db(servers.dst, db, "utf8mb4", "utf8mb4_general_ci")
    told: list[str] = []
    argv = mysql.import_argv(MYSQL, db, unbuffered=True)
    proc, drain = mysql._start_client(servers.dst_host, servers.dst, argv, subprocess.PIPE)
    try:
        reader = mysql._read_marks(proc.stdout, told.append)
        proc.stdin.write(b"CREATE TABLE `a` (`id` int PRIMARY KEY);\nINSERT INTO `a` VALUES (1),(2);\n"
                         + table_mark(b"a"))
        proc.stdin.flush()
        deadline = time.monotonic() + 120
        while not told:
            assert time.monotonic() < deadline, "the mark of `a` did not arrive while the import waited"
            assert proc.poll() is None, drain.text
            time.sleep(0.01)
        assert told == ["a"] and proc.poll() is None
        assert servers.target.execute("SELECT COUNT(*) FROM a", db=db) == [(2,)]
        proc.stdin.close()
        assert proc.wait() == 0, drain.text
        reader.join()
        assert told == ["a"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        mysql.drop_db(servers.dst, db)


# ------------------------------------------------------------------ a small dump in many chunks

SMALL_DB = "small_keystone"
VICTIM_DB = "victim"


@dataclass
class SmallDump:
    """A real dump of a small DB, and the same plaintext re-encrypted in 4 KiB chunks."""

    artifact: Path  # as dump_to_vault wrote it (1 MiB chunks: one chunk)
    chunked: Path  # the same plaintext in SMALL_CHUNK chunks
    stats: vault.StreamStats
    plain: bytes
    checksums: dict[str, list[int | None]]


@pytest.fixture(scope="module")
def small_dump(servers: Servers, key: vault.Key, tmp_path_factory: pytest.TempPathFactory) -> SmallDump:
    """Dump a ~60 KB database through the tool, then re-chunk it so tampering can aim at chunk 1 of >= 3."""
    server = servers.source
    server.execute(f"DROP DATABASE IF EXISTS {SMALL_DB}")
    server.execute(f"CREATE DATABASE {SMALL_DB} CHARACTER SET utf8mb4")
    server.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, payload BLOB NULL)",
                   db=SMALL_DB)
    conn = server.connect(SMALL_DB)
    try:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO items VALUES (%s, %s, %s)",
                            [(i, f"item-{i}-é", os.urandom(128)) for i in range(1, 201)])
    finally:
        conn.close()
    d = tmp_path_factory.mktemp("small")
    artifact = d / "small.vault"
    stats = mysql.dump_to_vault(servers.src_host, servers.src, MYSQLDUMP, SMALL_DB, str(artifact), key)
    buf = io.BytesIO()
    vault.decrypt_stream(artifact, key, buf)
    plain = buf.getvalue()
    chunked = d / "small-4k.vault"
    restats = vault.encrypt_stream(io.BytesIO(plain), chunked, key, chunk_size=SMALL_CHUNK)
    assert (restats.bytes, restats.sha256) == (stats.bytes, stats.sha256)
    assert len(plain) > 3 * SMALL_CHUNK
    return SmallDump(artifact, chunked, stats, plain, mysql.checksums(servers.src, SMALL_DB))


def _prepare_victim(servers: Servers) -> dict[str, list[int | None]]:
    """A target DB holding an older ``items`` (same name as in the dump) and another table.

    Any statement of the dump reaching it (its DROP TABLE items first of all) changes the
    checksums, so "unchanged" really means "not touched".
    """
    mysql.recreate_db(servers.dst, VICTIM_DB, "utf8mb4", "utf8mb4_general_ci")
    servers.target.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, payload BLOB NULL)",
                           db=VICTIM_DB)
    servers.target.execute("INSERT INTO items VALUES (1, 'old-1', NULL), (2, 'old-2', x'00ff')", db=VICTIM_DB)
    servers.target.execute("CREATE TABLE keepme (id INT PRIMARY KEY, v VARCHAR(16))", db=VICTIM_DB)
    servers.target.execute("INSERT INTO keepme VALUES (1, 'a'), (2, 'b'), (3, 'c')", db=VICTIM_DB)
    sums = mysql.checksums(servers.dst, VICTIM_DB)
    assert sorted(sums) == ["items", "keepme"] and sums["items"][0] == 2
    return sums


def test_intact_chunked_artifact_imports(servers: Servers, key: vault.Key, small_dump: SmallDump) -> None:
    """The control for the tampering cases: untampered, the same file does replace the victim's tables."""
    before = _prepare_victim(servers)
    mysql.import_from_vault(servers.dst_host, servers.dst, MYSQL, VICTIM_DB, str(small_dump.chunked), key,
                            small_dump.stats.bytes, small_dump.stats.sha256)
    after = mysql.checksums(servers.dst, VICTIM_DB)
    assert after != before
    assert after["items"] == small_dump.checksums["items"]
    assert after["keepme"] == before["keepme"]


def _split(data: bytes, header_len: int) -> tuple[bytes, list[bytes]]:
    """Header and the chunk records (ciphertext + tag) of an artifact with SMALL_CHUNK chunks."""
    record = SMALL_CHUNK + vault.TAG_SIZE
    body = data[header_len:]
    return data[:header_len], [body[i:i + record] for i in range(0, len(body), record)]


def _flip_bit(h: bytes, r: list[bytes]) -> bytes:
    mid = bytearray(r[1])
    mid[len(mid) // 2] ^= 0x04
    return h + r[0] + bytes(mid) + b"".join(r[2:])


def _header_byte(offset: int) -> Callable[[bytes, list[bytes]], bytes]:
    def tamper(h: bytes, r: list[bytes]) -> bytes:
        edited = bytearray(h)
        edited[offset] ^= 0x01
        return bytes(edited) + b"".join(r)
    return tamper


TAMPERS: dict[str, Callable[[bytes, list[bytes]], bytes]] = {
    "flip_bit_in_chunk": _flip_bit,
    "drop_middle_chunk": lambda h, r: h + r[0] + b"".join(r[2:]),
    "drop_final_chunk": lambda h, r: h + b"".join(r[:-1]),
    "truncate_mid_chunk": lambda h, r: h + r[0] + r[1][: len(r[1]) // 2],
    "append_bytes": lambda h, r: h + b"".join(r) + b"\x00trailing garbage",
    "swap_two_chunks": lambda h, r: h + r[1] + r[0] + b"".join(r[2:]),
    # magic, version, key id, nonce prefix, chunk size, kdf kind, header check
    **{f"header_byte_{off}": _header_byte(off) for off in (0, 8, 12, 28, 35, 36, 40)},
}


@pytest.mark.parametrize("how", sorted(TAMPERS))
def test_tampered_artifact_is_refused_before_the_target_is_touched(
    servers: Servers, key: vault.Key, small_dump: SmallDump, tmp_path: Path, how: str
) -> None:
    header_len = len(vault.read_header(small_dump.chunked).raw)
    header, records = _split(small_dump.chunked.read_bytes(), header_len)
    assert len(records) >= 3
    bad = tmp_path / f"{how}.vault"
    bad.write_bytes(TAMPERS[how](header, records))
    assert bad.read_bytes() != small_dump.chunked.read_bytes()
    before = _prepare_victim(servers)

    with pytest.raises(vault.CorruptArtifactError) as err:
        mysql.import_from_vault(servers.dst_host, servers.dst, MYSQL, VICTIM_DB, str(bad), key,
                                small_dump.stats.bytes, small_dump.stats.sha256)
    assert str(bad) in str(err.value)
    assert mysql.checksums(servers.dst, VICTIM_DB) == before


def test_wrong_key_is_refused_naming_both_key_ids(
    servers: Servers, key: vault.Key, key_dir: Path, small_dump: SmallDump
) -> None:
    other = vault.generate_key_file(key_dir / f"other-{secrets.token_hex(4)}.key")
    assert other.key_id != key.key_id
    before = _prepare_victim(servers)
    with pytest.raises(vault.WrongKeyError) as err:
        mysql.import_from_vault(servers.dst_host, servers.dst, MYSQL, VICTIM_DB, str(small_dump.artifact), other,
                                small_dump.stats.bytes, small_dump.stats.sha256)
    message = str(err.value)
    assert key.key_id in message and other.key_id in message and str(small_dump.artifact) in message
    assert mysql.checksums(servers.dst, VICTIM_DB) == before


# ------------------------------------------------------------------ 4. MariaDB's sandbox line


def _dump_emits_sandbox_line() -> bool:
    """mariadb-dump writes the sandbox line since 10.5.25, 10.6.18, 10.11.8, 11.0.6, 11.1.5, 11.2.4, 11.4.2."""
    out = subprocess.run([MYSQLDUMP, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"Distrib (\d+)\.(\d+)\.(\d+)-MariaDB", out)
    if not found:
        return False  # MySQL's mysqldump never writes it
    major, minor, patch = (int(x) for x in found.groups())
    first_fixed = {(10, 5): 25, (10, 6): 18, (10, 11): 8, (11, 0): 6, (11, 1): 5, (11, 2): 4, (11, 4): 2}
    if (major, minor) in first_fixed:
        return patch >= first_fixed[(major, minor)]
    return (major, minor) > (11, 4)


def _tap_client(directory: Path, capture: Path) -> Path:
    """The real mysql client behind a ``tee``: records the exact bytes the import sends to mysql."""
    script = directory / "mysql-tap"
    script.write_text("#!/bin/bash\nset -o pipefail\n"
                      f"tee {shlex.quote(str(capture))} | {shlex.quote(shutil.which(MYSQL) or MYSQL)} \"$@\"\n")
    script.chmod(0o700)
    return script


SANDBOX_PREFIX = b"/*M!999999\\- enable the sandbox mode */"


def test_real_dump_starts_with_the_sandbox_line(small_dump: SmallDump) -> None:
    """What this server's mariadb-dump really writes first (with a trailing space after the comment)."""
    first = small_dump.plain.split(b"\n", 1)[0]
    if _dump_emits_sandbox_line():
        assert first.startswith(SANDBOX_PREFIX)
        assert first.rstrip(b" \r") == SANDBOX_PREFIX
    else:
        assert not first.startswith(b"/*M!999999")


def test_sandbox_line_constant_equals_the_real_first_line(small_dump: SmallDump) -> None:
    require(_dump_emits_sandbox_line(), "this mariadb-dump does not write the sandbox line")
    assert small_dump.plain.split(b"\n", 1)[0] == mysql.SANDBOX_LINE


@pytest.mark.parametrize("flavor", ["mysql", "mariadb"])
def test_import_strips_the_sandbox_line_only_for_mysql(
    servers: Servers, key: vault.Key, small_dump: SmallDump, tmp_path: Path, flavor: str
) -> None:
    """The bytes that reach the client, recorded by a tee in front of the real mysql client."""
    capture = tmp_path / "sent-to-mysql.sql"
    client = _tap_client(tmp_path, capture)
    mysql.recreate_db(servers.dst, VICTIM_DB, "utf8mb4", "utf8mb4_general_ci")
    mysql.import_from_vault(servers.dst_host, servers.dst_as(flavor), str(client), VICTIM_DB,
                            str(small_dump.artifact), key, small_dump.stats.bytes, small_dump.stats.sha256)
    assert mysql.checksums(servers.dst, VICTIM_DB) == small_dump.checksums
    sent = capture.read_bytes()
    plain = small_dump.plain
    if flavor == "mysql" and _dump_emits_sandbox_line():
        assert not sent.startswith(SANDBOX_PREFIX)
        assert sent == plain.split(b"\n", 1)[1]
    else:
        assert sent == plain  # MariaDB targets (and dumps without the line) get the dump untouched


class _Sink(io.BytesIO):
    """Stands in for mysql's stdin: keeps what it gets; close() must not drop the buffer."""

    def close(self) -> None:
        """Keep the bytes readable after SandboxStrip.close()."""


def _strip(data: bytes, size: int) -> bytes:
    """Feed ``data`` to a SandboxStrip in writes of ``size`` bytes; what reaches the sink."""
    sink = _Sink()
    strip = mysql.SandboxStrip(sink)
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        assert strip.write(piece) == len(piece)
    strip.close()
    return sink.getvalue()


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_sandbox_strip_drops_the_first_line_of_the_real_dump(small_dump: SmallDump, size: int) -> None:
    require(_dump_emits_sandbox_line(), "this mariadb-dump does not write the sandbox line")
    assert _strip(small_dump.plain, size) == small_dump.plain.split(b"\n", 1)[1]


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_sandbox_strip_filter_mechanics(small_dump: SmallDump, size: int) -> None:
    """With the line spelled as the constant: dropped exactly; anything else passes byte for byte."""
    rest = small_dump.plain.split(b"\n", 1)[1]
    assert _strip(mysql.SANDBOX_LINE + b"\n" + rest, size) == rest
    assert _strip(mysql.SANDBOX_LINE + b"\r\nSELECT 1;\n", size) == b"SELECT 1;\n"
    assert _strip(rest, size) == rest  # a dump without the line is untouched
    assert _strip(b"SELECT 1;", size) == b"SELECT 1;"  # shorter than the line, no newline: kept at close()
    assert _strip(b"", size) == b""


# ------------------------------------------------------------------ 5. a database of many chunks, streamed

BIG_DB = "big_blobs"


def test_a_database_of_many_chunks_streams_through_the_tool_intact(
    servers: Servers, key: vault.Key, key_dir: Path, tmp_path: Path
) -> None:
    """The child `make bench` measures (only the tool's modules loaded, one dump, one import): every row
    arrives, byte for byte, across 64 chunks. Its memory and speed are the benchmark's, not asserted."""
    artifact = tmp_path / "big.vault"
    try:
        rows = generate_blob_db(servers.source, BIG_DB, BIG_MB)
        assert rows * 64 * 1024 >= BIG_MB * 2**20
        recreate_like(servers.source, servers.target, BIG_DB)
        key_file = key_dir / "dump.key"  # written by the key fixture; the child loads it by path
        assert vault.Key.from_file(key_file) == key
        result = run_tool(servers.source.port, servers.target.port, BIG_DB, artifact, key_file)
        assert result["bytes"] >= 2 * BIG_MB * 2**20  # --hex-blob: the dump is twice the BLOB bytes
        source_sums = mysql.checksums(servers.src, BIG_DB)
        assert source_sums["blobs"][0] == rows
        assert mysql.checksums(servers.dst, BIG_DB) == source_sums
    finally:
        artifact.unlink(missing_ok=True)
        mysql.drop_db(servers.src, BIG_DB)
        mysql.drop_db(servers.dst, BIG_DB)


# ------------------------------------------------------------------ 6. disk full

FILL_DB = "fill"


@contextlib.contextmanager
def _tmpfs(directory: Path, size: str) -> Iterator[None]:
    """A real small filesystem; unmounted whatever happens. Not being able to mount fails under CI."""
    directory.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                          capture_output=True, text=True, check=False)
    require(proc.returncode == 0, f"cannot mount a tmpfs (needs root): {proc.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_disk_full_leaves_nothing_and_a_roomy_directory_works(
    servers: Servers, key: vault.Key, tmp_path: Path
) -> None:
    server = servers.source
    server.execute(f"DROP DATABASE IF EXISTS {FILL_DB}")
    server.execute(f"CREATE DATABASE {FILL_DB}")
    server.execute("CREATE TABLE t (id INT PRIMARY KEY, data LONGBLOB NOT NULL)", db=FILL_DB)
    server.execute("INSERT INTO t SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_512", db=FILL_DB)  # 512 KiB
    try:
        full = tmp_path / "full"
        with _tmpfs(full, "256k"):
            dest = full / "fill.vault"
            with pytest.raises(vault.VaultError, match="no space left") as err:
                mysql.dump_to_vault(servers.src_host, servers.src, MYSQLDUMP, FILL_DB, str(dest), key)
            assert str(dest) in str(err.value)
            assert os.listdir(full) == []  # neither the .part nor the artifact
        assert not os.path.ismount(full)
        roomy = tmp_path / "roomy"
        roomy.mkdir()
        dest = roomy / "fill.vault"
        stats = mysql.dump_to_vault(servers.src_host, servers.src, MYSQLDUMP, FILL_DB, str(dest), key)
        assert stats.bytes > 2 * 512 * 1024
        assert vault.verify_artifact(dest, key, stats.bytes, stats.sha256) == stats
        assert os.listdir(roomy) == ["fill.vault"]
    finally:
        mysql.drop_db(servers.src, FILL_DB)


def test_batched_checksums_match_one_table_at_a_time(servers: Servers) -> None:
    """``mysql.checksums`` asks for many tables per statement; across a batch boundary it must say per
    table exactly what one COUNT(*) and one CHECKSUM TABLE per table say (the lab's own reader), and a
    changed row in the last batch must show."""
    db = "osu_batch"
    n = mysql.CHECKSUM_BATCH + 7
    servers.source.execute(f"DROP DATABASE IF EXISTS {db}")
    servers.source.execute(f"CREATE DATABASE {db}")
    for i in range(n):
        servers.source.execute(f"CREATE TABLE t{i:03d} (id INT PRIMARY KEY, v VARCHAR(32))", db=db)
        if i % 3:
            servers.source.execute(f"INSERT INTO t{i:03d} VALUES " + ", ".join(f"({r}, 'row {r} of {i}')"
                                                                           for r in range(i % 7 + 1)), db=db)
    batched = mysql.checksums(servers.src, db)
    one_by_one = servers.source.checksums(db)
    assert len(batched) == n and {t: tuple(v) for t, v in batched.items()} == dict(one_by_one)
    assert len({v[1] for v in batched.values()}) > 2  # real, differing checksums
    servers.source.execute(f"UPDATE t{n - 1:03d} SET v = 'changed' WHERE id = 1", db=db)
    after = mysql.checksums(servers.src, db)
    assert [t for t in after if after[t] != batched[t]] == [f"t{n - 1:03d}"]
    servers.source.execute(f"DROP DATABASE {db}")


# ------------------------------------------------------------------ parallel table streams with foreign keys

FK_DB = "fk_streams"
#: parent rows: a dump of several 1 MB INSERT statements, so its import is still inserting when the
#: other stream creates the child table (keystone's local_user and password at 100k users)
FK_ROWS = 120_000
SECRET_ROW = "row-secret-" + secrets.token_hex(6)


@pytest.fixture(scope="module")
def fk_source(servers: Servers) -> dict[str, tuple[int, int | None]]:
    """A parent table of many rows and its foreign-key child (ON DELETE CASCADE), on the source."""
    src = servers.source
    src.execute(f"DROP DATABASE IF EXISTS {FK_DB}")
    src.execute(f"CREATE DATABASE {FK_DB} CHARACTER SET utf8mb4")
    src.execute("CREATE TABLE parent (id INT NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL) ENGINE=InnoDB",
                db=FK_DB)
    src.execute("CREATE TABLE child (id INT NOT NULL PRIMARY KEY, parent_id INT NOT NULL, CONSTRAINT child_fk "
                "FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE) ENGINE=InnoDB", db=FK_DB)
    src.execute(f"INSERT INTO parent SELECT seq, CONCAT('{SECRET_ROW}-', seq) FROM seq_1_to_{FK_ROWS}", db=FK_DB)
    src.execute("INSERT INTO child SELECT seq, seq FROM seq_1_to_50", db=FK_DB)
    return src.checksums(FK_DB)


def _parent_insert(servers: Servers) -> int | None:
    """The target session inserting the parent's rows right now (its id), if any."""
    rows = servers.target.execute("SELECT id FROM information_schema.processlist WHERE db=%s AND "
                                  "info LIKE 'INSERT INTO `parent`%%'", args=(FK_DB,))
    return int(rows[0][0]) if rows else None


def _once_parent_inserts(servers: Servers, then: Callable[[int], None]) -> Callable[[], None]:
    """A stream's ``inside`` hook: wait until the parent's rows are being inserted on the target, then *then*."""
    def hook() -> None:
        deadline = time.monotonic() + 120
        while (sid := _parent_insert(servers)) is None:
            assert time.monotonic() < deadline, "the parent's INSERT never showed on the target"
            time.sleep(0.005)
        then(sid)
    return hook


def _streams(servers: Servers, key: vault.Key, tmp_path: Path,
             hooks: dict[int, Callable[[], None]]) -> list[BaseException | None]:
    """Dump FK_DB as two table streams (parent / child) into the vault and the target at once, side by side
    as dump_source runs them; each stream's error (None: it succeeded)."""
    mysql.recreate_db(servers.dst, FK_DB, "utf8mb4", "utf8mb4_general_ci")
    streams = [("parent",), ("child",)]
    children = mysql.Children()
    errors: list[BaseException | None] = [None, None]

    def one(k: int) -> None:
        try:
            mysql.dump_streamed((servers.src_host, servers.src), (servers.dst_host, servers.dst), MYSQLDUMP, MYSQL,
                                FK_DB, str(tmp_path / f"fk.{k}"), key, tables=streams[k], objects=k == 0,
                                inside=hooks.get(k, lambda: None), children=children)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors[k] = exc
            children.kill_all()

    threads = [threading.Thread(target=one, args=(k,)) for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return errors


def test_a_parent_imports_while_another_stream_creates_its_child(
        servers: Servers, key: vault.Key, fk_source: dict[str, tuple[int, int | None]], tmp_path: Path) -> None:
    """The child's stream starts its import only once the parent's rows are being inserted: the child table
    then appears under the parent's running import (with LOCK TABLES in the dump: ERROR 1100)."""
    errors = _streams(servers, key, tmp_path, {1: _once_parent_inserts(servers, lambda _sid: None)})
    assert errors == [None, None]
    assert servers.target.checksums(FK_DB) == fk_source
    assert b"LOCK TABLES" not in _decrypt(tmp_path / "fk.0", key)


def test_a_failed_import_names_the_server_error_and_statement_not_rows(
        servers: Servers, key: vault.Key, fk_source: dict[str, tuple[int, int | None]], tmp_path: Path) -> None:
    """An import killed on the target in the middle of the parent's rows: the error names the server's error
    and the statement (table) it stopped at; no row of the megabyte statement mysql echoes is kept."""
    def kill(sid: int) -> None:
        servers.target.execute(f"KILL CONNECTION {sid}")

    errors = _streams(servers, key, tmp_path, {1: _once_parent_inserts(servers, kill)})
    exc = errors[0]
    assert isinstance(exc, mysql.StepError), errors
    text = str(exc)
    assert "import into fk_streams (tables parent) failed" in text
    # the server's own error line (the KILL ends the statement or its commit), then the statement's head
    assert re.search(r"failed on target: ERROR \d+ \(\w+\) at line \d+: .+ \(in `INSERT INTO `parent` VALUES "
                     r"\.\.\.`\) — `mysql ", text), text
    assert SECRET_ROW not in text and SECRET_ROW not in (exc.output or "")
    assert re.search(r"^ERROR \d+ ", exc.output or "", re.M), exc.output
    assert not (tmp_path / "fk.0").exists()  # no artifact under the final name


def test_connections_share_one_tls_context_and_still_reach_a_server_without_tls(servers: Servers) -> None:
    """PyMySQL (1.2 on) builds a TLS context for every connection in its default "preferred" mode, loading the
    system's CA store each time (~20 ms of CPU); the tool's connections share one built the same way, and still
    reach the lab's servers, which offer no TLS. A connection with TLS options of its own keeps its own."""
    first, second = mysql.connect(servers.src), mysql.connect(servers.dst)
    try:
        assert first.ctx is second.ctx and first.ctx is not None
        assert first.ctx.verify_mode == ssl.CERT_NONE and not first.ctx.check_hostname  # PyMySQL's own settings
        with first.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchall() == ((1,),)
        assert mysql.query(servers.dst, "SELECT 2") == [(2,)]
    finally:
        first.close()
        second.close()
    own = mysql.Connection(host="127.0.0.1", port=servers.source.port, user="root", password="",
                           ssl={"verify_mode": False}, defer_connect=True)
    assert own.ctx is not first.ctx
