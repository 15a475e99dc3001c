"""The member guard's logic, in-process: which pairs of an HA plan's controllers are compared, how two
directories or two DB servers are found to be one, and what `resume` compares against the journal.

The real servers and directories are compared on the HA lab (tests/test_ha_lab.py, the member guard
test); here only what needs no server: the pairs, the relations between identified directories, the
node-against-cluster rule, and the members recorded in a real journal at run start.
"""

from __future__ import annotations

from itertools import combinations
from types import SimpleNamespace

import pytest

from journal.store import Journal
from journal.vault import Key
from services.infra import identity
from services.infra.identity import DirIdentity
from services.infra.mysql import ServerIdentity
from upgrade import claims
from upgrade.errors import UserError

OLD = ["oldctl1", "oldctl2", "oldctl3"]
NEW = ["newctl1", "newctl2", "newctl3"]


def test_every_new_member_meets_every_old_one_and_each_side_every_two_of_its_own() -> None:
    got = identity.pairs(OLD, NEW)
    across = [(a, b) for a, b, x in got if x]
    within = [(a, b) for a, b, x in got if not x]
    assert sorted(across) == sorted((o, n) for o in OLD for n in NEW)
    assert sorted(within) == sorted([*combinations(OLD, 2), *combinations(NEW, 2)])
    assert len(got) == len(set((a, b) for a, b, _ in got)) == 9 + 3 + 3
    assert all(a != b for a, b, _ in got)
    # a single controller a side: the source against the target, nothing else
    assert identity.pairs(["old"], ["new"]) == [("old", "new", True)]


def _dirs(boot: str, role: str, etc: str, lib: str, keystone: str) -> identity.SideDirs:
    """Identified directories as ``side_dirs`` gives them: the roots and keystone's directory in etc."""
    return boot, {
        f"`{role}.etc`": DirIdentity(f"`{role}.etc`", "/etc", "/etc", etc, ("0:2",)),
        f"`{role}.lib`": DirIdentity(f"`{role}.lib`", "/var/lib", "/var/lib", lib, ("0:2",)),
        f"`{role}.etc`/keystone": DirIdentity(f"`{role}.etc`/keystone", "/etc/keystone", "/etc/keystone",
                                              keystone, (etc, "0:2")),
    }


def test_directories_meet_by_device_and_inode_on_one_kernel_only() -> None:
    old = _dirs("boot1", "source", "1:10", "1:20", "1:11")
    same = _dirs("boot1", "target", "1:10", "1:20", "1:11")  # the old machine under another name
    other = _dirs("boot1", "target", "2:10", "2:20", "2:11")  # another host of one kernel (a namespace)
    found = {(t.key, rel, s.key) for t, rel, s in identity.overlaps(same, old)}
    assert found == {("`target.etc`", "is the same directory as", "`source.etc`"),
                     ("`target.lib`", "is the same directory as", "`source.lib`"),
                     ("`target.etc`/keystone", "is the same directory as", "`source.etc`/keystone")}
    assert identity.overlaps(other, old) == []
    assert identity.overlaps((("boot2",) + same[1:]), old) == []  # two kernels: two machines
    # within a side only the roots count: a service directory two members share is not one machine twice
    shared = _dirs("boot1", "target", "2:10", "2:20", "1:11")
    assert [rel for _t, rel, _s in identity.overlaps(shared, old)] == ["is the same directory as"]
    assert identity.overlaps(shared, old, roots_only=True) == []
    assert [t.key for t, _r, _s in identity.overlaps(same, old, roots_only=True)] == ["`target.etc`", "`target.lib`"]


def test_a_service_directory_inside_the_old_ones_is_refused_and_a_root_inside_is_not() -> None:
    old = _dirs("b", "source", "1:10", "1:20", "1:11")
    inside = ("b", {"`target.etc`": DirIdentity("`target.etc`", "/srv/etc", "/srv/etc", "3:1", ("1:20", "0:2")),
                    "`target.etc`/keystone": DirIdentity("`target.etc`/keystone", "/etc/keystone/x",
                                                          "/etc/keystone/x", "3:2", ("1:11", "1:10", "0:2"))})
    assert [(t.key, rel) for t, rel, _s in identity.overlaps(inside, old)] == [("`target.etc`/keystone", "lies inside")]


def test_nodes_of_one_cluster_are_distinct_servers_within_a_side_and_one_across() -> None:
    a = ServerIdentity("", "newctl1", "/var/lib/mysql", 3306, "c-new")
    b = ServerIdentity("", "newctl2", "/var/lib/mysql", 3306, "c-new")
    old = ServerIdentity("", "oldctl2", "/var/lib/mysql", 3306, "c-old")
    assert identity.same_node(a, b) is None  # two nodes of the new cluster: two members
    assert a.same_as(b) == "Galera cluster c-new"  # ... but one data set: across the sides, one is enough
    assert identity.same_node(a, ServerIdentity("", "newctl1", "/var/lib/mysql", 3306, "c-new")) is not None
    assert identity.same_node(a, old) is None and a.same_as(old) is None


def _servers(**members: ServerIdentity) -> identity.Servers:
    t = ServerIdentity("", "newctl1", "/var/lib/mysql", 3306, "c-new")
    s = ServerIdentity("", "oldctl1", "/var/lib/mysql", 3306, "c-old")
    return identity.Servers(s, t, {k.replace("_", ":", 1): v for k, v in members.items()})


def test_resume_refuses_a_member_that_is_no_longer_the_server_the_run_started_on(tmp_path) -> None:
    """The members recorded in a real journal at run start, compared with what answers now."""
    j = Journal(tmp_path / "journal", key=Key.from_bytes(bytes(32)))
    try:
        run = j.create_run({}, "0" * 64, None, "2025.2", "2026.1", None)
        node2 = ServerIdentity("", "newctl2", "/var/lib/mysql", 3306, "c-new")
        claims.record_identity(j, run, _servers(target_newctl2=node2))
        assert claims.recorded_members(j, run) == {"target:newctl2": node2}
        plan = SimpleNamespace(path="plan.toml", target=SimpleNamespace(db=SimpleNamespace(address="a", port=1)))
        claims.check_target_unchanged(j, run, _servers(target_newctl2=node2), plan)  # the same: goes on
        claims.check_target_unchanged(j, run, _servers(), plan)  # down now: nothing reaches it, not checked
        swapped = ServerIdentity("", "newctl3", "/var/lib/mysql", 3306, "c-new")  # its address now reaches newctl3
        with pytest.raises(UserError) as exc:
            claims.check_target_unchanged(j, run, _servers(target_newctl2=swapped), plan)
        msg = str(exc.value)
        assert "target member newctl2 is no longer the DB server run" in msg and "hostname newctl2" in msg \
            and "hostname newctl3" in msg and "nothing was done" in msg and "point each member's address back" in msg
    finally:
        j.close()
