"""Grow a full lab's old controller to a realistic size for ``scripts.bench.window --large``.

nova: >= ``NOVA_MB`` MiB in ``instances`` (an 8 KiB base64 ``user_data`` each, as cloud-init
payloads are), ``instance_actions`` (create/stop/start per instance) and
``instance_actions_events`` (two per action). The grown instances are soft-deleted, with their
availability zone set: the history a cloud accumulates until ``archive_deleted_rows``, on a
source whose online data migrations are done (live rows without an AZ would make the target's
``online_data_migrations`` fill them 50 at a time, some 40 rows/s here: not what a real 2025.2
database asks of an upgrade); keystone: ``USERS`` users (``user`` +
``local_user``, domain ``default``) each with a member role on the demo project
(``assignment``). Every row is made inside the server by ``INSERT ... SELECT`` (doubling
``instances`` batch by batch, each batch its own commit: the lab's 16 MiB redo log never holds a
big transaction); nothing crosses the socket but SQL.
"""

from __future__ import annotations

import json
from pathlib import Path

from scripts.lab.mariadb import MariaDB

NOVA_MB = 1024
USERS = 100_000
TEMPLATE_ROWS = 1000
BATCH = 2000
#: neutral values for NOT NULL columns without a default, by SQL type (as scripts.lab.openstack.insert)
NEUTRAL = {"datetime": "'2026-01-01 00:00:00'", "timestamp": "'2026-01-01 00:00:00'"}


def _required(db: MariaDB, schema: str, table: str, given: dict[str, str]) -> dict[str, str]:
    """``given`` plus a neutral literal for every other NOT NULL column without a default: the rows
    fit whatever the release's schema adds."""
    cols = db.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema=%s AND "
                      "table_name=%s AND is_nullable='NO' AND column_default IS NULL AND extra NOT LIKE "
                      "'%%auto_increment%%'", args=(schema, table))
    out = dict(given)
    for name, typ in cols:
        if name not in out:
            out[name] = NEUTRAL.get(typ, "0" if "int" in typ or typ in ("float", "double", "decimal") else "''")
    return out


def _insert_select(db: MariaDB, schema: str, table: str, values: dict[str, str], tail: str) -> None:
    names = ", ".join(f"`{k}`" for k in values)
    db.execute(f"INSERT INTO `{table}` ({names}) SELECT {', '.join(values.values())} {tail}", db=schema)


def _mib(db: MariaDB, schema: str, tables: tuple[str, ...]) -> float:
    marks = ", ".join(["%s"] * len(tables))
    db.execute(f"ANALYZE TABLE {', '.join(f'`{schema}`.`{t}`' for t in tables)}")
    row = db.execute("SELECT SUM(data_length + index_length) / 1048576 FROM information_schema.tables "
                     f"WHERE table_schema=%s AND table_name IN ({marks})", args=(schema, *tables))
    return float(row[0][0] or 0)


def _max_id(db: MariaDB, schema: str, table: str) -> int:
    return int(db.execute(f"SELECT COALESCE(MAX(id), 0) FROM `{schema}`.`{table}`")[0][0])


def grow_instances(db: MariaDB, target_mb: float) -> None:
    """Template instances, then copied batch by batch (fresh uuids) until the three tables reach
    ``target_mb``; actions and events are added for each new batch of instances. Each round copies
    at most what is there (doubling), and no more than the rows the size per row says are still
    missing: the last round lands just above ``target_mb`` (a last doubling from 4 GiB would
    otherwise make a 5 GiB target 8 GiB)."""
    inst = _required(db, "nova", "instances", {
        "uuid": "UUID()", "deleted": "1", "deleted_at": "NOW()", "created_at": "NOW()", "host": "'compute-1'",
        "availability_zone": "'nova'", "vm_state": "'deleted'", "power_state": "1", "user_id": "'bench-user'",
        "project_id": "'bench-project'",
        "hostname": "CONCAT('vm-', seq)", "display_name": "CONCAT('vm-', seq)", "memory_mb": "2048", "vcpus": "2",
        "root_gb": "20", "image_ref": "UUID()", "user_data": "REPEAT(TO_BASE64(RANDOM_BYTES(768)), 8)"})
    seeded = _max_id(db, "nova", "instances")  # the seeded instances stay as they are: only templates are copied
    base = _mib(db, "nova", ("instances", "instance_actions", "instance_actions_events"))
    _insert_select(db, "nova", "instances", inst, f"FROM seq_1_to_{TEMPLATE_ROWS}")
    add_actions(db, seeded + 1, _max_id(db, "nova", "instances"))
    copy = {k: ("UUID()" if k == "uuid" else f"`{k}`") for k in inst}
    while (mib := _mib(db, "nova", ("instances", "instance_actions", "instance_actions_events"))) < target_mb:
        top = _max_id(db, "nova", "instances")
        have = top - seeded
        per_row = max(mib - base, 1e-6) / have
        rows = min(have, max(BATCH, int((target_mb - mib) / per_row * 1.02) + 1))
        for start in range(seeded + 1, seeded + rows + 1, BATCH):
            _insert_select(db, "nova", "instances", copy, f"FROM instances WHERE id BETWEEN {start} AND "
                                                          f"{min(seeded + rows, start + BATCH - 1)}")
        add_actions(db, top + 1, _max_id(db, "nova", "instances"))


def add_actions(db: MariaDB, lo: int, hi: int) -> None:
    """create/stop/start per instance of ids lo..hi, two events per action (batched)."""
    first_action = _max_id(db, "nova", "instance_actions") + 1
    act = _required(db, "nova", "instance_actions", {
        "action": "a.name", "instance_uuid": "i.uuid", "request_id": "CONCAT('req-', UUID())",
        "user_id": "i.user_id", "project_id": "i.project_id", "start_time": "NOW()", "finish_time": "NOW()",
        "created_at": "NOW()", "deleted": "0"})
    kinds = "(SELECT 'create' AS name UNION ALL SELECT 'stop' UNION ALL SELECT 'start') a"
    for start in range(lo, hi + 1, BATCH):
        _insert_select(db, "nova", "instance_actions", act, f"FROM instances i JOIN {kinds} WHERE i.id BETWEEN "
                                                            f"{start} AND {min(hi, start + BATCH - 1)}")
    last_action = _max_id(db, "nova", "instance_actions")
    ev = _required(db, "nova", "instance_actions_events", {
        "event": "CONCAT('compute_', a.action, '_instance', e.n)", "action_id": "a.id", "start_time": "NOW()",
        "finish_time": "NOW()", "result": "'Success'", "host": "'compute-1'", "created_at": "NOW()", "deleted": "0",
        "details": "CONCAT('{\"request_id\": \"', a.request_id, '\", \"note\": \"', REPEAT('x', 160), '\"}')"})
    for start in range(first_action, last_action + 1, BATCH * 3):
        _insert_select(db, "nova", "instance_actions_events", ev,
                       "FROM instance_actions a JOIN (SELECT 1 AS n UNION ALL SELECT 2) e "
                       f"WHERE a.id BETWEEN {start} AND {min(last_action, start + BATCH * 3 - 1)}")


def grow_keystone(db: MariaDB, users: int, project_id: str, role_id: str) -> None:
    """``users`` users in domain default with a password-less local identity and a member role."""
    key = "MD5(CONCAT('bench-user-', seq))"
    for start in range(1, users + 1, 20_000):
        rng = f"FROM seq_{start}_to_{min(users, start + 19_999)}"
        _insert_select(db, "keystone", "user", _required(db, "keystone", "user", {
            "id": key, "extra": "'{}'", "enabled": "1", "domain_id": "'default'", "created_at": "NOW()"}), rng)
        _insert_select(db, "keystone", "local_user", _required(db, "keystone", "local_user", {
            "user_id": key, "domain_id": "'default'", "name": "CONCAT('bench-user-', seq)",
            "failed_auth_count": "0"}), rng)
        _insert_select(db, "keystone", "assignment", _required(db, "keystone", "assignment", {
            "type": "'UserProject'", "actor_id": key, "target_id": f"'{project_id}'", "role_id": f"'{role_id}'",
            "inherited": "0"}), rng)


def grow(lab: Path, nova_mb: float = NOVA_MB, users: int = USERS) -> None:
    """Grow the old controller's databases of a running lab (before its snapshot)."""
    state = json.loads((lab / "lab-state.json").read_text())
    db = MariaDB(Path(state["old"]["db_base"]), state["old"]["db_port"])
    grow_instances(db, nova_mb)
    seed = state["seed"]
    grow_keystone(db, users, seed["demo_project_id"], seed["member_role_id"])
