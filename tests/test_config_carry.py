"""The config carry-over keeps what belongs to the new release: nova's /etc/nova carried from a 2025.1
controller to a 2026.1 one with the real releases' shipped files (their venvs' etc/nova), the real
backup and install_config steps (a real MariaDB for the backup's dump), on local trees.

The operator's nova.conf (colon form, quoted values) is carried and re-pointed; the target's shipped
api-paste.ini and rootwrap filters stay byte for byte; a shipped file the target lacks comes from its
release; the operator's own policy.yaml is carried; the operator's change to the old api-paste.ini is
reported, not dropped silently; undo gives the target's tree back exactly; the source is only read.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from journal import vault
from journal.redact import Redactor
from journal.store import Journal
from scripts.lab.controller import DEFAULT_VENV_ROOT
from services.infra.config import get_value
from services.infra.context import UpgradeContext
from services.infra.settings import ServiceControl, ServiceSettings, Side
from services.registry import steps_for
from services.releases import Jump
from services.steps import shipped
from tests.conftest import require, tree_digest
from tests.test_new_databases import Lab, db, lab, run_step  # noqa: F401 (the module's real MariaDB)
from upgrade.hosts import LocalHost

JUMP = Jump("2025.1", "2026.1")
OLD, NEW = DEFAULT_VENV_ROOT / JUMP.source / "etc" / "nova", DEFAULT_VENV_ROOT / JUMP.target / "etc" / "nova"
PASSWORD = "nova-DB-pw-7731"
#: the operator's nova.conf: colon form and quotes, as oslo.config reads them; ``mysql://`` names MySQL-python,
#: which 2026.1 lacks: the rewrite names PyMySQL, as `upgrade plan` shows
NOVA_CONF = (b"[DEFAULT]\n"
             b"cpu_allocation_ratio: 4.0\n"
             b"[database]\n"
             b"connection: \"mysql://nova:" + PASSWORD.encode() + b"@10.0.0.3/nova\"\n")
AUDIT = b"\n[filter:audit]\npaste.filter_factory = keystonemiddleware.audit:filter_factory\n"
POLICY = b'"os_compute_api:servers:create": "role:member"\n'


def _ctx(lab: Lab, tmp: Path) -> UpgradeContext:  # noqa: F811
    def side(role: str) -> Side:
        return Side(role=role, host=LocalHost(role), etc=str(tmp / role / "etc"), lib=str(tmp / role / "lib"),
                    bin=str(DEFAULT_VENV_ROOT / getattr(JUMP, role) / "bin"), db=lab.ep,
                    control=ServiceControl("sysvinit"))

    key = vault.generate_key_file(tmp / "dump.key")
    journal = Journal(tmp / "journal", key=key)
    run_id = journal.create_run({}, "0" * 64, None, JUMP.source, JUMP.target, key.key_id)
    st = ServiceSettings(name="nova", unit="openstack-nova-api", db_name="nova", owner="nova:nova")
    return UpgradeContext(run_id=run_id, source=side("source"), target=side("target"), journal=journal, key=key,
                          redactor=Redactor([]), services={"nova": st}, from_release=JUMP.source,
                          to_release=JUMP.target)


def _put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_the_target_keeps_its_releases_shipped_files_and_takes_the_operators_config(db: Lab,  # noqa: F811
                                                                                     tmp_path: Path) -> None:
    for rel in ("api-paste.ini", "rootwrap.conf", "rootwrap.d/compute.filters"):
        require((OLD / rel).exists() and (NEW / rel).exists(), f"nova {rel} missing in the release venvs (make setup)")
    assert (OLD / "api-paste.ini").read_bytes() != (NEW / "api-paste.ini").read_bytes()
    src, dst = tmp_path / "source" / "etc" / "nova", tmp_path / "target" / "etc" / "nova"
    _put(src / "nova.conf", NOVA_CONF)
    _put(src / "api-paste.ini", (OLD / "api-paste.ini").read_bytes() + AUDIT)  # the operator added a filter
    _put(src / "rootwrap.conf", (OLD / "rootwrap.conf").read_bytes())
    _put(src / "rootwrap.d" / "compute.filters", (OLD / "rootwrap.d" / "compute.filters").read_bytes())
    _put(src / "policy.yaml", POLICY)  # the operator's own overrides: no release ships one
    _put(dst / "nova.conf", b"[DEFAULT]\n# as the 2026.1 packages install it\n")
    _put(dst / "api-paste.ini", (NEW / "api-paste.ini").read_bytes())
    _put(dst / "rootwrap.d" / "compute.filters", (NEW / "rootwrap.d" / "compute.filters").read_bytes())
    _put(dst / "target-only.txt", b"kept\n")
    source_before, target_before = tree_digest(src), tree_digest(dst)
    c = _ctx(db, tmp_path)
    # `upgrade check` says it before the run
    [why] = shipped.operator_changes(c, "nova")
    assert why.startswith(f"{src}/api-paste.ini on the source differs from 2025.1's shipped copy")
    steps = {s.name: s for s in steps_for("nova", JUMP)}
    run_step(c, steps["nova.backup_target"])
    result = run_step(c, steps["nova.install_config"])

    assert (dst / "api-paste.ini").read_bytes() == (NEW / "api-paste.ini").read_bytes()
    filters = "rootwrap.d/compute.filters"
    assert (dst / filters).read_bytes() == (NEW / filters).read_bytes()
    assert (dst / "rootwrap.conf").read_bytes() == (NEW / "rootwrap.conf").read_bytes()
    assert (dst / "policy.yaml").read_bytes() == POLICY
    assert (dst / "target-only.txt").read_bytes() == b"kept\n"
    conf = (dst / "nova.conf").read_bytes()
    assert get_value(conf, "DEFAULT", "cpu_allocation_ratio") == "4.0"
    url = f"mysql+pymysql://nova:{PASSWORD}@127.0.0.1:{db.ep.port}/nova"
    assert get_value(conf, "database", "connection") == url
    assert f'connection: "{url}"\n'.encode() in conf  # its own form kept
    copied = result["copied"]
    assert copied["shipped"] == {"api-paste.ini": "kept_target", "policy.yaml": "carried_source",
                                 "rootwrap.conf": "installed_target_default",
                                 "rootwrap.d/compute.filters": "kept_target"}
    assert copied["from_source"] == ["nova.conf", "policy.yaml"]
    assert copied["from_target"] == ["api-paste.ini", "rootwrap.d/compute.filters", "target-only.txt"]
    [change] = copied["operator_changes"]
    assert change["file"] == f"{dst}/api-paste.ini"
    assert change["why"].startswith(f"{src}/api-paste.ini on the source differs from 2025.1's shipped copy "
                                    f"({OLD}/api-paste.ini); the target keeps 2026.1's {dst}/api-paste.ini — merge")
    assert tree_digest(src) == source_before
    # a second run (a resume) decides the same from the backup, whatever the target holds now
    again = steps["nova.install_config"].run(c)["copied"]
    assert {k: again[k] for k in ("shipped", "from_source", "from_target", "operator_changes")} == \
        {k: copied[k] for k in ("shipped", "from_source", "from_target", "operator_changes")}
    steps["nova.install_config"].undo(c, result)
    assert tree_digest(dst) == target_before


def test_an_unchanged_shipped_file_the_new_release_no_longer_ships_is_left_out(tmp_path: Path) -> None:
    """The decision alone (no copy): an old release's shipped policy.json, unchanged, is not carried;
    one the operator edited is carried (the target release ships none) and reported only when the
    target keeps another."""
    for rel in ("old", "new"):
        (tmp_path / rel / "bin").mkdir(parents=True)
        (tmp_path / rel / "etc" / "nova").mkdir(parents=True)
    (tmp_path / "old" / "etc" / "nova" / "policy.json").write_bytes(b"{}\n")

    class Ctx:
        from_release, to_release = "old", "new"
        source = Side("source", LocalHost("s"), "/etc", "/var/lib", str(tmp_path / "old" / "bin"), None,
                      ServiceControl())
        target = Side("target", LocalHost("t"), "/etc", "/var/lib", str(tmp_path / "new" / "bin"), None,
                      ServiceControl())

    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    [d] = shipped.decide(Ctx(), "nova", {"policy.json": sha(b"{}\n"), "nova.conf": sha(b"x")}, {})
    assert (d.action, d.operator_change) == ("left_out", "")
    [d] = shipped.decide(Ctx(), "nova", {"policy.json": sha(b"{1}\n")}, {})
    assert (d.action, d.operator_change) == ("carried_source", "")
    [d] = shipped.decide(Ctx(), "nova", {"policy.json": sha(b"{1}\n")}, {"policy.json": sha(b"{2}\n")})
    assert d.action == "kept_target" and "differs from old's shipped copy" in d.operator_change
    # the target holds its release's copy: the change is reported; a file of its own (merged): not any more
    (tmp_path / "new" / "etc" / "nova" / "policy.json").write_bytes(b"{2}\n")
    [d] = shipped.decide(Ctx(), "nova", {"policy.json": sha(b"{1}\n")}, {"policy.json": sha(b"{2}\n")})
    assert d.action == "kept_target" and d.operator_change
    [d] = shipped.decide(Ctx(), "nova", {"policy.json": sha(b"{1}\n")}, {"policy.json": sha(b"{1,2}\n")})
    assert (d.action, d.operator_change) == ("kept_target", "")
    # the target's files before the run, from its backup (a tar): a symlink counts by where it points
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("nova/api-paste.ini")
        link.type, link.linkname = tarfile.SYMTYPE, "/usr/share/nova/api-paste.ini"
        tar.addfile(link)
        conf = tarfile.TarInfo("nova/nova.conf")
        conf.size = 2
        tar.addfile(conf, io.BytesIO(b"x\n"))
    assert shipped.tar_members(buf.getvalue(), "nova") == {"api-paste.ini": "symlink to /usr/share/nova/api-paste.ini",
                                                          "nova.conf": sha(b"x\n")}
    assert shipped.is_shipped("rootwrap.d/volume.filters") and shipped.is_shipped("glance-api-paste.ini")
    assert not shipped.is_shipped("policy.d/extra.yaml") and not shipped.is_shipped("sub/api-paste.ini")
