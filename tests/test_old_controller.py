"""Pure parts of keeping the old controller down and of the broker check (no lab; milliseconds): the
ifupdown edit, the lab supervisor's persisted enablement, transport_url parsing, the [amqp] plan key.
The real paths run in tests/test_multihost.py (switchover, revert, keepalived) and tests/test_amqp_check.py."""

from __future__ import annotations

import pytest

from scripts.lab import svc
from services.fleet.addrconfig import MARK, ifupdown_edit, unmarked
from services.fleet.network import AddressMove
from services.infra import broker
from tests.conftest import upgrade_in_process

MOVE = AddressMove("management", "198.51.100.10/24", "eth0")
HOOKS = b"""auto eth0
iface eth0 inet static
    address 198.51.100.11/24
    up ip addr add 198.51.100.10/24 dev eth0
    down ip addr del 198.51.100.10/24 dev eth0
    up ip addr add 198.51.100.100/24 dev eth0
"""


def test_ifupdown_hook_lines_are_commented_out_and_nothing_else():
    edit = ifupdown_edit("/etc/network/interfaces", HOOKS, MOVE)
    assert not isinstance(edit, str) and edit.lines == (4, 5)
    lines = edit.after.splitlines()
    assert lines[3].startswith(MARK.encode()) and lines[4].startswith(MARK.encode())
    assert [ln for i, ln in enumerate(lines) if i not in (3, 4)] == [ln for i, ln in enumerate(HOOKS.splitlines())
                                                                     if i not in (3, 4)]  # .100 is another address


def test_primary_address_and_unknown_forms_are_refused_with_the_file_and_line():
    primary = b"iface eth0 inet static\n    address 198.51.100.10/24\n"
    assert ifupdown_edit("/etc/network/interfaces", primary, MOVE) == (
        "/etc/network/interfaces line 2 makes 198.51.100.10/24 the primary address of eth0, not an alias the tool "
        "can drop")
    odd = b"iface eth0 inet static\n    gateway 198.51.100.10\n"
    assert ifupdown_edit("/etc/network/interfaces.d/x", odd, MOVE) == \
        "/etc/network/interfaces.d/x line 2 names 198.51.100.10 in a form the tool does not edit"


def test_lab_supervisor_enablement_persists_and_boot_honours_it(tmp_path):
    root = tmp_path
    assert svc.enablement(root, "keystone") == "enabled"
    svc.set_enablement(root, "disable", "keystone")
    svc.set_enablement(root, "mask", "keystone")
    assert svc.enablement(root, "keystone") == "masked"
    assert (root / "etc" / "lab-svc" / "masked" / "keystone").exists()  # under /etc: it survives a reboot
    assert svc.boot(root, ["keystone"]) == []
    assert svc.main(["--root", str(root), "is-enabled", "keystone"]) == 1
    svc.set_enablement(root, "unmask", "keystone")
    assert svc.enablement(root, "keystone") == "disabled"
    svc.set_enablement(root, "enable", "keystone")
    assert svc.main(["--root", str(root), "is-enabled", "keystone"]) == 0


def test_transport_urls_of_a_config_masked_and_split_per_host():
    conf = (b"[DEFAULT]\ntransport_url = rabbit://nova:p%40ss@ctl1:5672,nova:p%40ss@ctl2/nova\n"
            b"[oslo_messaging_notifications]\ntransport_url = rabbit://notify:x@ctl1:5673/\n")
    legacy = b"[DEFAULT]\nrabbit_host = ctl\nrabbit_userid = cinder\nrabbit_password = pw\n"
    found = broker.config_logins({"/etc/nova/nova.conf": conf, "/etc/cinder/cinder.conf": legacy}.get,
                                 ["/etc/nova/nova.conf", "/etc/cinder/cinder.conf", "/etc/none.conf"])
    assert [(lg.user, lg.password, lg.host, lg.port, lg.vhost) for lg in found] == [
        ("nova", "p@ss", "ctl1", 5672, "nova"), ("nova", "p@ss", "ctl2", 5672, "nova"),
        ("notify", "x", "ctl1", 5673, "/"), ("cinder", "pw", "ctl", 5672, "/")]
    assert found[0].shown == "rabbit://nova:***@ctl1:5672/nova" and "p@ss" not in repr(found[0])
    assert found[3].where == "/etc/cinder/cinder.conf [DEFAULT] rabbit_*"
    assert broker.logins("kafka://k:9092/") == []


@pytest.mark.parametrize("value", ["", "a b", "host:99999", "host:port"])
def test_amqp_broker_key_is_validated(tmp_path, value):
    plan = tmp_path / "plan.toml"
    plan.write_text('[upgrade]\nfrom = "2025.2"\nto = "2026.1"\nservices = ["keystone"]\n'
                    '[vault]\nkey_file = "k"\n[source]\nhost = "local"\netc = "/e1"\nlib = "/l1"\n'
                    '[source.db]\naddress = "127.0.0.1"\nadmin_user = "u"\nadmin_password = "p"\n'
                    '[target]\nhost = "local"\netc = "/e2"\nlib = "/l2"\n'
                    '[target.db]\naddress = "127.0.0.2"\nadmin_user = "u"\nadmin_password = "p"\n'
                    f'[amqp]\nbroker = "{value}"\n')
    res = upgrade_in_process("run", str(plan))
    assert res.returncode == 2 and f"`amqp.broker` is {value!r}; expected HOST or HOST:PORT" in res.stderr, res.stderr


def test_an_edit_made_again_after_a_kill_finds_the_file_as_it_was():
    edit = ifupdown_edit("/etc/network/interfaces", HOOKS, MOVE)
    assert unmarked(edit.after) == HOOKS
    again = ifupdown_edit("/etc/network/interfaces", unmarked(edit.after), MOVE)
    assert again.after == edit.after
