"""The plan's host parts: ssh:// hosts with their SSH settings, [network], [[computes]], and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from upgrade import plan as plan_mod
from upgrade.hosts import HostSpec, SshHost, connect

BASE = """
[upgrade]
from = "2025.2"
to = "2026.1"
services = ["keystone"]
compute_pool = 4

[vault]
key_file = "dump.key"

[ssh]
config = "/lab/ssh_config"

[source]
host = "ssh://root@198.51.100.11"
name = "oldctl"
[source.db]
address = "198.51.100.11"

[target]
host = "ssh://admin@198.51.100.12:2222"
name = "newctl"
ssh_options = ["-o", "Ciphers=aes128-gcm@openssh.com"]
[target.db]
address = "198.51.100.12"
"""

NETWORK = """
[network]
addresses = [{address = "198.51.100.10/24", device = "eth0", name = "management"}]
check_from = "compute2"
nonlocal_bind = true

[compute_defaults]
service_control = "template"
control = ["svc", "{action}", "{unit}"]
units = ["nova-compute"]

[[computes]]
name = "compute1"
host = "ssh://root@198.51.100.21"
units = ["nova-compute", "neutron-agent"]

[[computes]]
name = "compute2"
host = "ssh://root@198.51.100.22"
service_control = "systemd"
"""


def _load(tmp_path: Path, text: str) -> plan_mod.Plan:
    p = tmp_path / "plan.toml"
    p.write_text(text)
    return plan_mod.load(p)


def test_ssh_hosts_network_and_computes(tmp_path):
    plan = _load(tmp_path, BASE + NETWORK)
    src, tgt = plan.source.host_spec, plan.target.host_spec
    assert src == HostSpec("ssh://root@198.51.100.11", "oldctl", "/lab/ssh_config", ())
    assert tgt.target() == ("admin", "198.51.100.12", 2222)
    assert tgt.ssh_options == ("-o", "Ciphers=aes128-gcm@openssh.com") and tgt.ssh_config == "/lab/ssh_config"
    host = connect(tgt, "target:newctl")
    assert isinstance(host, SshHost)  # nothing connects until the first command
    opts = host.ssh_options()
    # the plan's options come first: ssh keeps the first value of an option
    assert opts[:4] == ["-F", "/lab/ssh_config", "-o", "Ciphers=aes128-gcm@openssh.com"]
    for want in ("HostKeyAlias=newctl", "ServerAliveInterval=2", "ServerAliveCountMax=3", "ControlMaster=auto",
                 "BatchMode=yes"):
        assert want in opts
    net = plan.network
    assert [(m.name, m.address, m.device, m.ip) for m in net.settings.addresses] == \
        [("management", "198.51.100.10/24", "eth0", "198.51.100.10")]
    assert net.settings.nonlocal_bind and net.check_from.url == "ssh://root@198.51.100.22"
    assert plan.compute_pool == 4
    c1, c2 = plan.computes
    assert c1.settings.units == ("nova-compute", "neutron-agent") and c1.settings.control.kind == "template"
    assert c2.settings.units == ("nova-compute",) and c2.settings.control.kind == "systemd"
    assert c1.host.alias == "compute1" and c1.host.ssh_config == "/lab/ssh_config"


@pytest.mark.parametrize(("edit", "message"), [
    (('host = "ssh://root@198.51.100.11"', 'host = "telnet://198.51.100.11"'), "`source.host`"),
    (('host = "ssh://root@198.51.100.11"', 'host = "ssh://root@198.51.100.10"'),
     "includes 198.51.100.10, which `source.host` uses"),
    (('name = "compute2"', 'name = "compute1"'), "`computes[1].name`"),
    (('address = "198.51.100.10/24"', 'address = "198.51.100.10"'), "give the prefix length"),
    (('units = ["nova-compute"]\n', 'units = []\n'), "`computes[1].units`"),
    (("compute_pool = 4", "compute_pool = 0"), "`upgrade.compute_pool`"),
    (('check_from = "compute2"', 'check_from = "rsh://x"'), "`network.check_from`"),
])
def test_bad_host_parts_name_the_key(tmp_path, edit, message):
    text = (BASE + NETWORK).replace(*edit)
    with pytest.raises(plan_mod.PlanError) as err:
        _load(tmp_path, text)
    assert message in str(err.value) and str(tmp_path / "plan.toml") in str(err.value)
