"""Bad plans: each refused with the file, the key and the fix, exit 2, and nothing created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GOOD = """
[upgrade]
from = "2025.2"
to = "2026.1"
services = ["keystone"]
journal = "journal"

[vault]
key_file = "dump.key"

[source]
host = "local"
etc = "/srv/old/etc"
service_control = "template"
control = ["svc", "{action}", "{unit}"]
[source.db]
address = "127.0.0.1"
port = 13306

[target]
host = "local"
etc = "/srv/new/etc"
[target.db]
address = "127.0.0.1"
port = 13307

[services.keystone]
unit = "keystone"
"""


def _run(tmp_path: Path, text: str, *extra: str) -> subprocess.CompletedProcess:
    plan = tmp_path / "plan.toml"
    plan.write_text(text)
    return subprocess.run([sys.executable, "-m", "upgrade.cli", "run", str(plan), *extra],
                          capture_output=True, text=True, cwd=Path(__file__).parent.parent)


@pytest.mark.parametrize("mutate,needle", [
    (lambda t: t.replace('from = "2025.2"\n', ""), "`upgrade.from` is missing"),
    (lambda t: t.replace('to = "2026.1"', 'to = "2027.1"'), "unknown target release '2027.1'"),
    (lambda t: t.replace('from = "2025.2"', 'from = "2024.2"'), "2024.2 -> 2026.1 is not supported"),
    (lambda t: t.replace('["keystone"]', '["keystone", "swift"]'), "unknown service 'swift'"),
    (lambda t: t.replace('["keystone"]', "[]"), "`upgrade.services` is empty"),
    (lambda t: t.replace("port = 13306", 'port = "13306"'), "`source.db.port` is '13306'; expected int"),
    (lambda t: t.replace("port = 13306", "port = 70000"), "`source.db.port` is 70000"),
    (lambda t: t.replace('key_file = "dump.key"', ""), "`vault.key_file` or `vault.passphrase_env`"),
    (lambda t: t.replace('service_control = "template"', 'service_control = "upstart"'),
     "`source.service_control` is 'upstart'"),
    (lambda t: t.replace('control = ["svc", "{action}", "{unit}"]', 'control = ["svc"]'), "`source.control`"),
    (lambda t: t.replace("[target.db]", "[target.dbx]"), "`target.dbx` is not a known key"),
    (lambda t: t + "\n[services.keystone.extra]\n", "`services.keystone.extra` is not a known key"),
    (lambda t: t.replace('address = "127.0.0.1"\nport = 13307', 'port = 13307'), "`target.db.address` is missing"),
    (lambda t: t.replace('[source.db]\naddress = "127.0.0.1"',
                         '[source.db]\naddress = "127.0.0.1"\nadmin_password_env = "OSU_NOT_SET_ANYWHERE"'),
     "environment variable 'OSU_NOT_SET_ANYWHERE', which is not set"),
    (lambda t: t.replace('[upgrade]', '[upgrade'), "not valid TOML"),
])
def test_bad_plan_is_refused_with_key_and_nothing_created(tmp_path, mutate, needle):
    res = _run(tmp_path, mutate(GOOD))
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
    assert str(tmp_path / "plan.toml") in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "journal").exists()


def test_missing_plan_file(tmp_path):
    res = subprocess.run([sys.executable, "-m", "upgrade.cli", "run", str(tmp_path / "nope.toml")],
                         capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert res.returncode == 2
    assert "does not exist" in res.stderr and "upgrade init" in res.stderr
