"""The carried-over transport_url against the new controller's RabbitMQ (a real broker, scripts/lab/rabbit.py):
a wrong password, a missing vhost and missing permissions are each refused by `upgrade check` and by
`upgrade run` before anything stops (exit 2, the URL's host and user named, the password masked, the
rabbitmqctl fix; nothing changed: table checksums and file hashes); the right login passes."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.lab import rabbit, svc
from scripts.lab.mariadb import free_port
from tests.conftest import require, upgrade_in_process
from tests.test_check import _check

PASSWORD = "amqp-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def target_broker(tmp_path_factory) -> Iterator[int]:
    """The new controller's broker: user ``openstack`` on ``/``; vhost ``closed`` without permissions for it,
    vhost ``readonly`` where it may write and read but not configure."""
    require(Path(rabbit.SBIN / "rabbitmq-server").exists(),
            "rabbitmq-server not installed (scripts/setup-system installs it)")
    root = tmp_path_factory.mktemp("broker")
    b = rabbit.install(root, free_port(), free_port(), PASSWORD)
    rabbit.start(root)
    try:
        for args in (("add_vhost", "closed"), ("add_vhost", "readonly"),
                     ("set_permissions", "-p", "readonly", rabbit.USER, "", ".*", ".*")):
            res = rabbit.ctl(b, *args)
            assert res.returncode == 0, res.stdout + res.stderr
        yield b.port
    finally:
        rabbit.stop(root)


def _with_url(lab, tmp_path: Path, url: str) -> Path:
    """The source keystone.conf carries *url* for its notifications; the plan names the target broker."""
    conf = lab.old.root / "etc" / "keystone" / "keystone.conf"
    conf.write_text(conf.read_text() + f"\n[oslo_messaging_notifications]\ntransport_url = {url}\n")
    plan = lab.write_plan(tmp_path / "plan")
    plan.write_text(plan.read_text() + '\n[amqp]\nbroker = "127.0.0.1"\n')
    return plan


CASES = [
    ("wrong-password", "rabbit://openstack:not-the-password@controller:{port}/",
     "user 'openstack' cannot log in", "rabbitmqctl add_user openstack PASSWORD"),
    ("missing-vhost", "rabbit://openstack:{pw}@controller:{port}/nova",
     "vhost 'nova' does not exist", "rabbitmqctl add_vhost nova"),
    ("no-permissions", "rabbit://openstack:{pw}@controller:{port}/closed",
     "user 'openstack' may not use vhost 'closed'", "rabbitmqctl set_permissions -p closed openstack '.*' '.*' '.*'"),
    ("no-configure", "rabbit://openstack:{pw}@controller:{port}/readonly",
     "user 'openstack' lacks permissions on vhost 'readonly'",
     "rabbitmqctl set_permissions -p readonly openstack '.*' '.*' '.*'"),
]


def test_refused_by_check_and_run_before_anything_stops(lab, tmp_path, target_broker):
    port = target_broker
    good = _with_url(lab, tmp_path, f"rabbit://openstack:{PASSWORD}@controller:{port}/")
    code, rows, out = _check(good)
    assert rows["amqp"][0] == "OK" and f"rabbit://openstack:***@controller:{port}/" in rows["amqp"][1], out
    conf = lab.old.root / "etc" / "keystone" / "keystone.conf"
    plain = conf.read_text().rsplit("\n[oslo_messaging_notifications]", 1)[0]
    for name, url, problem, fix in CASES:
        conf.write_text(plain)
        plan = _with_url(lab, tmp_path / name, url.format(pw=PASSWORD, port=port))
        before = lab.state()
        code, rows, out = _check(plan)
        assert code == 2 and rows["amqp"][0] == "FAIL", (name, out)
        assert problem in out and fix in out and f"openstack:***@controller:{port}" in out, (name, out)
        assert f"broker 127.0.0.1:{port}" in out and PASSWORD not in out, (name, out)
        res = upgrade_in_process("run", str(plan))
        assert res.returncode == 2, (name, res.stderr)
        assert problem in res.stderr and fix in res.stderr and "nothing was changed" in res.stderr, res.stderr
        assert PASSWORD not in res.stderr and "not-the-password" not in res.stderr
        assert lab.state() == before, name  # table checksums and file hashes of both controllers
        assert not (tmp_path / name / "plan" / "journal").exists()
        assert svc.status(lab.old.root, "keystone"), name  # the old controller still serves
