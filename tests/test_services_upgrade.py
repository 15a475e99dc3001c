"""glance + placement + nova + neutron + cinder 2025.2 -> 2026.1 through the real CLI on the local lab: real
MariaDB servers, the real *-manage and *-status commands of both releases (neutron's
``d553edeb540f -> b1bca967e19d`` is real DDL), realistic rows (a latin1 table with non-ASCII
text, iSCSI connection_info with CHAP secrets, the old controller's services and agents). Then
``upgrade revert``, killed right after each fix-up's undo to look at that undo alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts.lab import units
from scripts.lab.controller import DEFAULT_VENV_ROOT
from scripts.lab.mariadb import MariaDB, free_port
from scripts.lab.openstack import NEW_HOST, NEW_PORTAL, OLD_HOST, OLD_PORTAL, PASSWORDS, UNITS, Stack, make_stack, seed
from scripts.lab.plan import DBAdmin, service_sections, side_table, write_key
from tests.conftest import require, require_mariadb, tree_digest, upgrade, upgrade_in_process

OLD, NEW = "2025.2", "2026.1"
ADMIN, ADMIN_PW = "osu_admin", "svc-lab-Admin-77"
SERVICES = ("glance", "placement", "nova", "neutron", "cinder")
ALL_DBS = ("glance", "placement", "nova_api", "nova", "nova_cell0", "neutron", "cinder")
NEUTRON_HEADS = {OLD: {"5c85685d616d", "d553edeb540f"}, NEW: {"5c85685d616d", "b1bca967e19d"}}
ROW_TABLES = {"cinder": {"volumes": "provider_location", "volume_attachment": "connection_info"},
              "nova": {"block_device_mapping": "connection_info", "services": "forced_down"},
              "nova_api": {"cell_mappings": "database_connection"}}


def _side(role: str, s: Stack) -> str:
    return side_table(role, s.root, s.venv, "127.0.0.1", s.db.port, DBAdmin(ADMIN, password=ADMIN_PW))


def write_plan(directory: Path, old: Stack, new: Stack, services: tuple[str, ...] = SERVICES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_key(directory / "dump.key")
    body = (f'[upgrade]\nfrom = "{old.release}"\nto = "{new.release}"\nservices = {json.dumps(list(services))}\n'
            'journal = "journal"\n\n[vault]\nkey_file = "dump.key"\n\n' + _side("source", old) + _side("target", new)
            + service_sections(SERVICES))
    plan = directory / "plan.toml"
    plan.write_text(body)
    return plan


def rows(db: MariaDB) -> dict[str, Any]:
    """Every row the fix-ups touch, byte for byte (hex), keyed by database.table.id."""
    out: dict[str, Any] = {}
    for schema, tables in ROW_TABLES.items():
        for table, column in tables.items():
            key = "uuid" if table == "cell_mappings" else "id"
            for rid, value, host in db.execute(
                    f"SELECT {key}, HEX(`{column}`), {'host' if table in ('volumes', 'services') else 'NULL'} "
                    f"FROM `{table}` ORDER BY {key}", db=schema):
                out[f"{schema}.{table}.{rid}"] = (value, host)
    return out


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    require_mariadb()
    for rel in (OLD, NEW):
        for tool in ("glance-manage", "placement-manage", "nova-manage", "neutron-db-manage", "cinder-manage"):
            require((DEFAULT_VENV_ROOT / rel / "bin" / tool).exists(), f"{tool} {rel} missing (make openstack)")
    base = tmp_path_factory.mktemp("svclab")
    dbs = [MariaDB(base / "db-old", free_port()), MariaDB(base / "db-new", free_port())]
    try:
        for db in dbs:
            db.start()
            db.execute("CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s", args=(ADMIN, ADMIN_PW))
            db.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'127.0.0.1' WITH GRANT OPTION", args=(ADMIN,))
        old = make_stack(base / "old", OLD, dbs[0], DEFAULT_VENV_ROOT)
        new = make_stack(base / "new", NEW, dbs[1], DEFAULT_VENV_ROOT)
        ids = seed(old)
        for service in SERVICES:
            for unit in UNITS[service]:
                units.start(old.root, unit)
        yield old, new, ids, base
    finally:
        for root in (base / "old", base / "new"):
            for service in SERVICES:
                for unit in UNITS[service]:
                    units.stop(root, unit)
        for db in dbs:
            db.stop()


def _events(journal: Path) -> list[dict]:
    exp = upgrade("journal", "export", "--journal", str(journal), "--format", "jsonl")
    assert exp.returncode == 0, exp.stderr
    return [json.loads(line) for line in exp.stdout.splitlines()]


def _done(events: list[dict], step: str) -> dict:
    return next(e for e in events if e["step"] == step and e["kind"] == "done")["result"]


def test_run_then_revert(stacks, tmp_path):
    old, new, ids, _base = stacks
    src_before = {db: old.db.checksums(db) for db in ALL_DBS}
    tgt_before = {db: new.db.checksums(db) for db in ALL_DBS}
    tgt_rows_before = rows(new.db)
    etc_before = tree_digest(new.root / "etc")
    plan = write_plan(tmp_path, old, new)

    res = upgrade("run", str(plan), timeout=1500)
    assert res.returncode == 0, res.stdout + res.stderr
    _STRAIGHT["end"] = _end_state(new)
    journal = tmp_path / "journal"
    ev = _events(journal)

    # the old controller was only read, and every unit of it is stopped; the new one serves
    assert {db: old.db.checksums(db) for db in src_before} == src_before
    assert not any(units.status(old.root, u) for s in SERVICES for u in UNITS[s])
    assert all(units.status(new.root, u) for s in SERVICES for u in UNITS[s] if u != "nova-metadata")
    # neutron's metadata agent serves: nova's metadata unit is never started
    assert not units.status(new.root, "nova-metadata")

    # real DDL: neutron's expand head moved; the schema steps ran the real commands
    heads = {r[0] for r in new.db.execute("SELECT version_num FROM neutron.alembic_version")}
    assert heads == NEUTRON_HEADS[NEW]
    schema = _done(ev, "neutron.upgrade_schema")
    assert set(schema["revisions_before"]["neutron"]) == NEUTRON_HEADS[OLD]
    assert schema["commands"][0]["command"].endswith(
        f"--config-file {new.root}/etc/neutron/neutron.conf --config-file "
        f"{new.root}/etc/neutron/plugins/ml2/ml2_conf.ini upgrade heads")
    nova = _done(ev, "nova.upgrade_schema")
    assert not any("online_data_migrations" in c["command"] for c in nova["commands"])
    odm = _done(ev, "nova.online_migrations")["commands"][0]
    assert "online_data_migrations" in odm["command"] and odm["rc"] == 0 and odm["rounds"] >= 1
    assert _done(ev, "nova.status_check")["accepted_failures"] == ["Placement API"]
    assert _done(ev, "cinder.previous_online_migrations")["rc"] == 0
    # the old host's service row removed by the real cinder-manage; the other host's kept
    removed = _done(ev, "cinder.update_host")["removed"]
    assert removed == [{"binary": "cinder-volume", "host": f"{OLD_HOST}@lvm"}]
    live = {h for (h,) in new.db.execute("SELECT host FROM services WHERE deleted=0", db="cinder")}
    assert f"{OLD_HOST}@lvm" not in live and "other@ceph" in live
    assert _done(ev, "glance.status_check")["rc"] == 0
    assert _done(ev, "placement.status_check")["rc"] == 0
    placement = _done(ev, "placement.upgrade_schema")
    assert placement["revisions_after"] == {"placement": ["a082b8bb98d0"]}
    # placement served before nova's status check and start (facts §4.1)
    order = [e["step"] for e in ev if e["kind"] == "done"]
    intents = [e["step"] for e in ev if e["kind"] == "intent"]
    assert order.index("placement.verify") < intents.index("nova.status_check") < intents.index("nova.start_target")
    # the online data migrations ran once every service was verified (outside the window), and did migrate
    online = [i for i, s in enumerate(order) if s.endswith(".online_migrations")]
    verified = [i for i, s in enumerate(order) if s.endswith(".verify")]
    assert {order[i] for i in online} == {"placement.online_migrations", "nova.online_migrations",
                                         "cinder.online_migrations"}
    assert min(online) > max(verified)

    # glance: the latin1 table came over as utf8 with every character intact; the image file too
    assert new.db.execute("SELECT table_collation FROM information_schema.tables WHERE table_schema='glance' "
                          "AND table_name='image_properties'")[0][0].startswith("utf8")
    got = sorted(r[0] for r in new.db.execute("SELECT value FROM image_properties", db="glance"))
    want = sorted(r[0] for r in old.db.execute("SELECT value FROM image_properties", db="glance"))
    assert got == want and any("Grüße" in v for v in got)
    converted = _done(ev, "glance.import_db")["databases"]["glance"]["converted_to_utf8"]
    assert {"images", "image_properties", "image_members", "alembic_version"} <= set(converted)
    img = new.root / "var/lib/glance/images" / ids["images"][0]
    assert img.read_bytes() == (old.root / "var/lib/glance/images" / ids["images"][0]).read_bytes()

    # nova: cell mappings name the new DB server; cell0's URL names nova_cell0 explicitly
    cells = dict(new.db.execute("SELECT uuid, database_connection FROM cell_mappings", db="nova_api"))
    assert all(f"@127.0.0.1:{new.db.port}/" in url for url in cells.values())
    assert cells["00000000-0000-0000-0000-000000000000"].endswith("/nova_cell0")
    assert new.db.execute("SELECT COUNT(*) FROM services WHERE host=%s AND forced_down=1", db="nova",
                          args=(OLD_HOST,))[0][0] == 2
    conf = (new.root / "etc/nova/nova.conf").read_text()
    assert "[upgrade_levels]\ncompute = flamingo\n" in conf

    # cinder/nova: the new portal everywhere it was stored, nothing else in the JSON changed
    for vol in ids["volumes"][:2]:
        (loc,) = new.db.execute("SELECT provider_location FROM volumes WHERE id=%s", db="cinder", args=(vol,))[0]
        assert loc.startswith(f"{NEW_PORTAL}:3260,")
        for schema_, table, col, key in (("cinder", "volume_attachment", "connection_info", "volume_id"),
                                         ("nova", "block_device_mapping", "connection_info", "volume_id")):
            (after,) = new.db.execute(f"SELECT {col} FROM {table} WHERE {key}=%s", db=schema_, args=(vol,))[0]
            (before,) = old.db.execute(f"SELECT {col} FROM {table} WHERE {key}=%s", db=schema_, args=(vol,))[0]
            a, b = json.loads(after), json.loads(before)
            assert a["data"].pop("target_portal") == f"{NEW_PORTAL}:3260"
            assert b["data"].pop("target_portal") == f"{OLD_PORTAL}:3260"
            assert a["data"].pop("device_path") == b["data"].pop("device_path").replace(
                f"ip-{OLD_PORTAL}:", f"ip-{NEW_PORTAL}:")
            assert a == b  # CHAP secrets, iqn, lun: unchanged
    third = ids["volumes"][2]
    assert new.db.execute("SELECT provider_location FROM volumes WHERE id=%s", db="cinder",
                          args=(third,)) == old.db.execute("SELECT provider_location FROM volumes WHERE id=%s",
                                                           db="cinder", args=(third,))
    rewrite = _done(ev, "cinder.rewrite_iscsi")
    assert rewrite["counts"] == {"cinder volumes": 2, "cinder attachments": 2, "nova nova block devices": 2,
                                 "nova nova_cell0 block devices": 0}
    assert "CHAP" not in json.dumps(ev) and "s3cret" not in json.dumps(ev)  # secrets only in the vault
    cinder_conf = (new.root / "etc/cinder/cinder.conf").read_text()
    assert f"target_ip_address = {NEW_PORTAL}" in cinder_conf and OLD_PORTAL not in cinder_conf
    hosts = {h for (h,) in new.db.execute("SELECT host FROM volumes", db="cinder")}
    assert hosts == {f"{NEW_HOST}@lvm#lvm", "other@ceph#ceph"}
    agents = _done(ev, "neutron.agents")
    assert len(agents["old_host_agents"]) == 2
    assert any("agent_down_time = 9" in w for w in agents["warnings"])
    assert any("report_interval = 4" in w for w in agents["warnings"])
    # the DB passwords of the services reached the configs, never the journal
    assert PASSWORDS["nova"] in conf and PASSWORDS["nova"] not in json.dumps(ev)

    # revert, killed right after each fix-up's undo: that undo alone restored its rows byte for byte
    done_rows = rows(new.db)
    assert done_rows != tgt_rows_before
    # (key prefix, which part of the row: 0 the column's bytes, 1 the host)
    undone = {"cinder.update_host": (("cinder.volumes.",), 1),
              "cinder.rewrite_iscsi": (("cinder.volumes.", "cinder.volume_attachment.", "nova.block_device_mapping."),
                                       0),
              "nova.stale_services": (("nova.services.",), 0),
              "nova.update_cells": (("nova_api.cell_mappings.",), 0)}
    for step, (prefixes, part) in undone.items():
        rev = upgrade("revert", "--journal", str(journal), failpoint=f"{step}:undo_after", timeout=900)
        assert rev.returncode != 0, f"{step}: the revert was not killed after its undo"
        now = rows(new.db)
        assert any(k.startswith(prefixes) and now[k][part] != done_rows[k][part] for k in now), step
        for k, v in now.items():
            if k.startswith(prefixes):
                assert v[part] == _row_on_source(old.db, k)[part], f"{step} undo left {k} = {v}"
    rev = upgrade("revert", "--journal", str(journal), timeout=900)
    assert rev.returncode == 0, rev.stdout + rev.stderr
    # after the revert: the new controller as before the run, the old one serving again
    assert {db: new.db.checksums(db) for db in tgt_before} == tgt_before
    assert rows(new.db) == tgt_rows_before
    assert tree_digest(new.root / "etc") == etc_before
    assert not img.exists()
    assert all(units.status(old.root, u) for s in SERVICES for u in UNITS[s])
    assert {db: old.db.checksums(db) for db in src_before} == src_before


def _row_on_source(db: MariaDB, key: str) -> Any:
    """The same row on the source: what import_db put on the target before the fix-ups ran."""
    schema, table, rid = key.split(".", 2)
    column = ROW_TABLES[schema][table]
    pk = "uuid" if table == "cell_mappings" else "id"
    host = "host" if table in ("volumes", "services") else "NULL"
    got = db.execute(f"SELECT HEX(`{column}`), {host} FROM `{table}` WHERE {pk}=%s", db=schema, args=(rid,))
    return tuple(got[0]) if got else None


# ---------------------------------------------------------------------- clear errors before anything runs
@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace('to = "2026.1"', 'to = "2026.2"'),
     "the jump 2025.2 -> 2026.2 is not supported; from 2025.2 the tool upgrades to 2026.1"),
    (lambda t: t.replace('from = "2025.2"', 'from = "folsom"'), "unknown source release 'folsom'"),
    (lambda t: t.replace('services = ["glance", "placement", "nova", "neutron", "cinder"]',
                         'services = ["placement", "nova"]')
     .replace('from = "2025.2"', 'from = "rocky"').replace('to = "2026.1"', 'to = "stein"'),
     "names 'placement', but placement does not exist before stein"),
])
def test_bad_jumps_are_refused_before_anything_runs(stacks, tmp_path, edit, message):
    old, new, _ids, _base = stacks
    before = {db: new.db.checksums(db) for db in ("glance", "nova", "cinder")}
    plan = write_plan(tmp_path, old, new)
    plan.write_text(edit(plan.read_text()))
    res = upgrade_in_process("run", str(plan))  # refused before anything runs: no process of its own needed
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert not (tmp_path / "journal" / "journal.db").exists()
    assert {db: new.db.checksums(db) for db in before} == before


def test_service_not_installed_on_the_target_is_refused(stacks, tmp_path):
    old, new, _ids, _base = stacks
    plan = write_plan(tmp_path, old, new)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    text = plan.read_text()
    i = text.index("[target]")
    plan.write_text(text[:i] + text[i:].replace(f'bin = "{new.venv}/bin"', f'bin = "{empty}"', 1))
    res = upgrade_in_process("run", str(plan))  # refused before anything runs: no process of its own needed
    assert res.returncode == 2, res.stderr
    assert f"glance is not installed on the target controller: {empty}/glance-manage does not exist" in res.stderr
    assert not any(units.status(new.root, u) for u in UNITS["glance"])


# ---------------------------------------------------------------------- nova 2024.1 -> 2025.1 (SLURP): real DDL
NOVA_MAIN_BEFORE, NOVA_MAIN_AFTER = "13863f4e1612", "2903cd72dc14"


def test_nova_slurp_runs_its_real_migrations(tmp_path_factory, tmp_path):
    for rel in ("2024.1", "2025.1"):
        require((DEFAULT_VENV_ROOT / rel / "bin" / "nova-manage").exists(), f"nova {rel} missing (make openstack)")
    base = tmp_path_factory.mktemp("novaslurp")
    dbs = [MariaDB(base / "db-old", free_port()), MariaDB(base / "db-new", free_port())]
    try:
        for db in dbs:
            db.start()
            db.execute("CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s", args=(ADMIN, ADMIN_PW))
            db.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'127.0.0.1' WITH GRANT OPTION", args=(ADMIN,))
        old = make_stack(base / "old", "2024.1", dbs[0], DEFAULT_VENV_ROOT, services=("nova",))
        new = make_stack(base / "new", "2025.1", dbs[1], DEFAULT_VENV_ROOT, services=("nova",))
        for db in ("nova", "nova_cell0"):
            assert old.db.execute(f"SELECT version_num FROM `{db}`.alembic_version") == [(NOVA_MAIN_BEFORE,)]
        for unit in UNITS["nova"]:
            units.start(old.root, unit)
        plan = write_plan(tmp_path, old, new, services=("nova",))
        res = upgrade("run", str(plan), timeout=1200)
        assert res.returncode == 0, res.stdout + res.stderr
        for db in ("nova", "nova_cell0"):  # both cells ran 13863f4e1612 -> d60bddf7a903 -> 2903cd72dc14
            assert new.db.execute(f"SELECT version_num FROM `{db}`.alembic_version") == [(NOVA_MAIN_AFTER,)]
        assert new.db.execute("SELECT COUNT(*) FROM information_schema.columns WHERE table_schema='nova' AND "
                              "table_name='console_auth_tokens' AND column_name='tls_port'")[0][0] == 1
        ev = _events(tmp_path / "journal")
        schema = _done(ev, "nova.upgrade_schema")
        assert schema["revisions_before"] == {"nova": [NOVA_MAIN_BEFORE], "nova_cell0": [NOVA_MAIN_BEFORE]}
        conf = new.root / "etc/nova/nova.conf"
        assert "[upgrade_levels]\ncompute = caracal\n" in conf.read_text()
        # later, the computes upgraded: nova-unpin drops the pin and restarts nova; its undo puts it back
        pinned = conf.read_bytes()
        unpin = write_plan(tmp_path / "unpin", old, new, services=("nova-unpin",))
        unpin.write_text(unpin.read_text() + f'\n[services.nova-unpin]\nunits = {json.dumps(UNITS["nova"])}\n')
        res = upgrade("run", str(unpin))
        assert res.returncode == 0, res.stdout + res.stderr
        assert "compute = caracal" not in conf.read_text() and "[upgrade_levels]" in conf.read_text()
        assert _done(_events(tmp_path / "unpin" / "journal"), "nova-unpin.unpin_compute")["removed"] == "caracal"
        assert all(units.status(new.root, u) for u in UNITS["nova"] if u != "nova-metadata")
        assert upgrade("revert", "--journal", str(tmp_path / "unpin" / "journal")).returncode == 0
        assert conf.read_bytes() == pinned
    finally:
        for root in (base / "old", base / "new"):
            for unit in UNITS["nova"]:
                units.stop(root, unit)
        for db in dbs:
            db.stop()


def _heads(db: MariaDB) -> dict[str, list[str]]:
    return {name: sorted(r[0] for r in db.execute(f"SELECT version_num FROM `{name}`.alembic_version"))
            for name in ALL_DBS}


def _in_flight(events: list[dict]) -> set[str]:
    """Machines with an intent not yet followed by its done or failed: what the kill interrupted."""
    open_: dict[str, str] = {}
    for e in events:
        if e["kind"] == "intent":
            open_[e["machine"]] = e["step"]
        elif e["kind"] in ("done", "failed") and open_.get(e["machine"]) == e["step"]:
            del open_[e["machine"]]
    return set(open_)


def _end_state(new: Stack) -> tuple[Any, ...]:
    """What a finished run leaves on the target: the fix-ups' rows, the schema heads, the configs."""
    return rows(new.db), _heads(new.db), tree_digest(new.root / "etc")


#: the end state of test_run_then_revert's uninterrupted run, kept so that the chained test below need
#: not run it again (it does when run alone)
_STRAIGHT: dict[str, Any] = {}


def test_killed_while_two_services_overlap_mid_fixup_or_in_the_finishing_phase_resumes_exactly(stacks, tmp_path):
    """service_pool 2 (the default): the overlap starts nova (the largest database) and placement (which
    nova's steps wait for) first, side by side. A chained kill schedule, one run: killed
    inside placement's import while nova is mid-step; the resume killed half-way through
    cinder's iSCSI rewrite (cinder's rows rewritten, nova's not yet); the next resume killed in the
    finishing phase, every service verified and nova's online migrations begun; the last resume ends
    where an uninterrupted run does. Then the revert, killed right after the rewrite's undo: that undo
    restored the rows the killed attempt had changed too (their before-values were in the vault first);
    the revert run again leaves the target as before."""
    old, new, _ids, _base = stacks
    tgt_before = {db: new.db.checksums(db) for db in ALL_DBS}
    if "end" not in _STRAIGHT:
        straight = write_plan(tmp_path / "straight", old, new)
        res = upgrade("run", str(straight), timeout=1500)
        assert res.returncode == 0, res.stdout + res.stderr
        _STRAIGHT["end"] = _end_state(new)
        assert upgrade("revert", "--journal", str(tmp_path / "straight" / "journal"), timeout=900).returncode == 0
        assert {db: new.db.checksums(db) for db in ALL_DBS} == tgt_before
    want = _STRAIGHT["end"]

    plan = write_plan(tmp_path / "chain", old, new)
    journal = tmp_path / "chain" / "journal"
    res = upgrade("run", str(plan), failpoint="placement.import_db:inside", timeout=1500)
    assert res.returncode != 0
    ev = _events(journal)
    assert _in_flight(ev) == {"nova", "placement"}  # the overlap: two machines cut at once
    assert [e["machine"] for e in ev if e["kind"] == "intent" and e["step"].endswith(".stop_source")] \
        == ["nova", "placement"]  # the largest database first, then what it waits for

    res = upgrade("resume", "--journal", str(journal), failpoint="cinder.rewrite_iscsi:volume_attachment",
                  timeout=1500)
    assert res.returncode != 0
    assert "cinder" in _in_flight(_events(journal))  # (another service may be mid-step beside it)
    half = rows(new.db)
    assert any(v[0] != _row_on_source(old.db, k)[0] for k, v in half.items() if k.startswith("cinder.volumes."))
    assert all(v[0] == _row_on_source(old.db, k)[0] for k, v in half.items()
               if k.startswith("nova.block_device_mapping."))

    res = upgrade("resume", "--journal", str(journal), failpoint="nova.online_migrations:before", timeout=1500)
    assert res.returncode != 0
    ev = _events(journal)
    assert _in_flight(ev) == {"nova"}
    done = {e["step"] for e in ev if e["kind"] == "done"}  # after the window: every service verified
    assert {f"{s}.verify" for s in SERVICES} <= done and "placement.online_migrations" in done
    assert not any(e["step"] == "cinder.online_migrations" for e in ev)  # the online migrations in order

    res = upgrade("resume", "--journal", str(journal), timeout=1500)
    assert res.returncode == 0, res.stdout + res.stderr
    ev = _events(journal)
    for step in {e["step"] for e in ev if e["kind"] == "done"}:
        assert sum(1 for e in ev if e["step"] == step and e["kind"] == "done") == 1, step
    assert _done(ev, "cinder.rewrite_iscsi")["counts"]["cinder volumes"] == 2  # the first attempt's rows too
    assert _end_state(new) == want
    done_rows = rows(new.db)
    assert all(f"{NEW_PORTAL}:3260".encode().hex().upper() in v[0] for k, v in done_rows.items()
               if k.startswith(("cinder.volumes.", "nova.block_device_mapping.")) and v[0]
               and OLD_PORTAL.encode().hex().upper() not in v[0]
               and b"203.0.113.7".hex().upper() not in v[0])

    rev = upgrade("revert", "--journal", str(journal), failpoint="cinder.rewrite_iscsi:undo_after", timeout=900)
    assert rev.returncode != 0
    for k, v in rows(new.db).items():
        if k.startswith(("cinder.volumes.", "cinder.volume_attachment.", "nova.block_device_mapping.")):
            assert v[0] == _row_on_source(old.db, k)[0], k
    assert upgrade("revert", "--journal", str(journal), timeout=900).returncode == 0
    assert {db: new.db.checksums(db) for db in ALL_DBS} == tgt_before
