"""The end of a revert waits until the old controller listens again where its source stops recorded the
services' API listeners (``upgrade/serving.py``: the ports their configs name, read from the kernel's own
tables); one that never comes back fails the revert by name. The lab's revert tests
(tests/test_grenade_multihost.py) show it on real services."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from journal.store import Journal
from journal.vault import Key
from services.infra import listeners
from upgrade import serving
from upgrade.errors import EXIT_FAILED, UserError
from upgrade.hosts import LocalHost


def _listener(family: socket.AddressFamily = socket.AF_INET) -> tuple[socket.socket, str]:
    s = socket.socket(family)
    s.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
    s.listen()
    port = s.getsockname()[1]
    return s, (f"127.0.0.1:{port}" if family == socket.AF_INET else f"[::1]:{port}")


def test_the_kernels_listeners_are_read_as_addresses() -> None:
    four, six = _listener(), _listener(socket.AF_INET6)
    assert {four[1], six[1]} <= listeners.listening(LocalHost())
    four[0].close()
    six[0].close()
    assert not {four[1], six[1]} & listeners.listening(LocalHost())
    row = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1"
    assert listeners.parse(row + "\n" + row.replace(" 0A ", " 01 ").replace("1F90", "1F91")) == {"127.0.0.1:8080"}


def test_a_stop_records_the_addresses_on_the_port_its_config_names(tmp_path: Path) -> None:
    s, address = _listener()
    other, _ = _listener()
    port = int(address.rsplit(":", 1)[1])
    (tmp_path / "neutron").mkdir()
    conf = tmp_path / "neutron" / "neutron.conf"
    conf.write_text(f"[DEFAULT]\nbind_port = {port}\n")
    side = SimpleNamespace(etc=str(tmp_path), host=LocalHost())
    named = (listeners.Listen("neutron/neutron.conf", "DEFAULT", "bind_port", 9696),)
    assert listeners.serving(side, named) == {address}  # not the other listener of the host
    conf.write_text("[DEFAULT]\n")  # unset: the release's default port, where nothing listens here
    assert listeners.serving(side, named) == set() or all(a.endswith(":9696") for a in listeners.serving(side, named))
    absent = (listeners.Listen("cinder/cinder.conf", "DEFAULT", "osapi_volume_listen_port", 8776),)
    assert listeners.serving(side, absent) == set()  # no config, no port
    s.close()
    other.close()


def _journal(tmp_path: Path, closed: dict[str, list[str]]) -> tuple[Journal, str]:
    j = Journal(tmp_path / "journal", key=Key.from_bytes(bytes(32)))
    rid = j.create_run({"upgrade": {"services": list(closed)}}, "0" * 64, str(tmp_path / "plan.toml"), "2025.2",
                       "2026.1", None)
    for service, addresses in closed.items():
        j.append(rid, service, "done", step=f"{service}.stop_source", host="source",
                 result={"units": [], "listeners": addresses})
        j.append(rid, service, "done", step=f"{service}.stop_target", host="target",
                 result={"units": [], "listeners": ["127.0.0.1:1"]})  # only the source's stops count
        j.append(rid, "ha.oldctl2", "done", step=f"ha.oldctl2.{service}.stop_source", host="source",
                 result={"units": [], "listeners": ["127.0.0.1:1"]})  # another HA member's, not this host's
    return j, rid


def test_the_revert_ends_once_every_closed_listener_listens_again(tmp_path: Path) -> None:
    s, address = _listener()
    j, rid = _journal(tmp_path, {"neutron": [address]})
    assert serving.wait_back(j, rid, LocalHost(), timeout=0) == {address: "neutron"}
    s.close()


def test_a_listener_that_does_not_come_back_fails_the_revert_naming_it(tmp_path: Path) -> None:
    s, address = _listener()
    s.close()
    j, rid = _journal(tmp_path, {"keystone": [], "neutron": [address]})
    with pytest.raises(UserError) as err:
        serving.wait_back(j, rid, LocalHost(), timeout=0)
    assert err.value.exit_code == EXIT_FAILED
    assert f"{address} (neutron)" in str(err.value) and "127.0.0.1:1 " not in str(err.value)
