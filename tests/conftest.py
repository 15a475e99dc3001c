"""Shared fixtures: a real two-controller keystone lab (two MariaDB servers, keystone 2025.2 on the
old controller, 2026.1 installed on the new one), reset to the same seeded state for every test,
and helpers to drive the real `upgrade` command as a subprocess.

When a real part is missing the tests skip on a developer's machine and *fail* under CI
(``CI`` set), so a green CI always means the real thing ran.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scripts.lab import svc
from scripts.lab.controller import DEFAULT_VENV_ROOT, Controller, make_controller, seed_keystone
from scripts.lab.mariadb import NOSYNC_ENV, MariaDB, free_port
from scripts.lab.plan import DBAdmin, write_plan

# every lab server of the run, in this process and in the labs its subprocesses build, skips its fsyncs
# (scripts/lab/mariadb.py): a test lab does not outlive the run, let alone a power loss
os.environ.setdefault(NOSYNC_ENV, "1")

REPO = Path(__file__).resolve().parents[1]
#: keystone's steps, in order, as the lab's jump (2025.2 -> 2026.1) builds them
KEYSTONE_STEPS = ["stop_target", "backup_target", "stop_source", "dump_source", "install_config", "import_db",
                  "upgrade_schema", "status_check", "fix_ownership", "start_target", "verify"]
OLD, NEW = "2025.2", "2026.1"
ADMIN_PASSWORD = "lab-Admin-pw-4711"
DB_ADMIN = "osu_admin"
SOURCE_DB_PASSWORD = "src-DB-admin-pw-0815"   # inline in the plan
TARGET_DB_PASSWORD = "tgt-DB-admin-pw-2342"   # through an environment variable
KEYSTONE_DB_PASSWORD = "ks-DB-pw-9981"         # in keystone.conf only
TARGET_PW_ENV = "OSU_TEST_TARGET_DB_PASSWORD"
#: every secret of the test lab: none may appear in output, logs, journal, exports or argv
SECRETS = (SOURCE_DB_PASSWORD, TARGET_DB_PASSWORD, KEYSTONE_DB_PASSWORD, ADMIN_PASSWORD)

#: a plan that loads: the DB servers behind it do not exist, which the input-refusal cases never reach
LOADABLE_PLAN = f"""\
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
control = ["svc", "{{action}}", "{{unit}}"]
[source.db]
address = "127.0.0.1"
port = 13306
admin_user = "osu_admin"
admin_password = "{SOURCE_DB_PASSWORD}"

[target]
host = "local"
etc = "/srv/new/etc"
[target.db]
address = "127.0.0.1"
port = 13307
admin_password_env = "{TARGET_PW_ENV}"

[services.keystone]
unit = "keystone"
"""
#: the claim a run leaves on the target (services/claim.py): the schema on its DB server, the file in its lib
CLAIM_SCHEMA, CLAIM_FILE = "openstack_upgrade", "openstack-upgrade.claim"


#: tests that must run on one pytest-xdist worker, one after the other, by file or by ``file::test``: what shares
#: something of the whole machine (the loop devices), and the users of a dear module-scoped fixture, so that it
#: is built once and not once per worker. Every other test is shared out one by one (the session's labs are then
#: built once per worker). The multi-host labs need no group: each lab has namespaces of its own (names prefixed
#: per lab directory, its own bridge in its own switch namespace, so its 198.51.100.0/24 is its own segment),
#: its own mount and pid namespaces and its own snapshot, so two workers run two labs side by side. By node id:
#: the scheduler sees node ids.
XDIST_GROUPS = {
    "test_service_fixups.py": "loop-devices", "test_volumes.py": "loop-devices", "test_vault_mysql.py": "vault-mysql",
    "test_lab.py": "lab-parts",
    "test_ha_lab.py": "halab",  # one HA lab for the module: its checks, the upgrade chain, then `down`
    "test_new_databases.py": "new-databases", "test_report.py": "report-pages",
    "test_compute_upgrade.py": "novalab",  # one lab with real nova for the module (the cut-over check's too)
    # the services lab (stacks); the nova SLURP test builds its own
    **{f"test_services_upgrade.py::{name}": "svclab" for name in (
        "test_run_then_revert", "test_bad_jumps_are_refused_before_anything_runs",
        "test_service_not_installed_on_the_target_is_refused",
        "test_killed_while_two_services_overlap_mid_fixup_or_in_the_finishing_phase_resumes_exactly")},
    # the module's one shared lab (shared_lab): the runs that end reverted, the refusals that change nothing
    **{f"test_multihost.py::{name}": "hostlab-moves" for name in (
        "test_keystone_upgrade_over_ssh_seen_from_a_compute_host_and_reverted",
        "test_unreachable_host_is_refused_before_anything_runs", "test_killed_during_the_ip_move_resume_then_revert",
        "test_target_that_is_the_old_controller_over_ssh_is_refused", "test_address_managed_by_keepalived_is_refused",
        "test_check_reports_an_address_already_on_the_new_controller",
        "test_keystone_and_glance_upgrade_over_ssh_then_revert")},
    # the uninterrupted run the resumed runs are compared with (reference)
    "test_crash_resume_revert.py::test_killed_run_resumes_to_the_uninterrupted_end": "crash-reference",
    "test_crash_resume_revert.py::test_external_sigkill_mid_run_then_resume": "crash-reference",
}
#: fixtures that stand up real services (MariaDB, OpenStack releases, sshd, namespaces): marker ``lab``
LAB_FIXTURES = frozenset({"keystone_lab", "lab", "hostlab_snapshot", "shared_lab", "lab20", "stacks", "full_lab",
                          "old_lab", "make_db", "servers", "db", "volume_lab"})
#: tests (or whole modules) that build their labs themselves, without one of those fixtures
LAB_TESTS = frozenset({"test_demo.py",
                       "test_services_upgrade.py::test_nova_slurp_runs_its_real_migrations"})
#: modules whose lab tests take minutes each (whole labs built, whole upgrades run): marker ``slow``
SLOW_MODULES = frozenset({"test_demo.py", "test_real_openstack.py", "test_services_upgrade.py", "test_multihost.py",
                          "test_crash_resume_revert.py", "test_compute_upgrade.py", "test_cutover_check.py"})


#: the modules whose single lab takes longest, started first (one worker takes each while the others work
#: through the rest)
LONGEST = ("test_grenade_multihost.py", "test_grenade.py", "test_demo.py", "test_ha_lab.py")


#: the project's packages that the processes a test starts import (``python -m upgrade.cli``, the lab's
#: ``python -m scripts.lab.units`` unit control, its hosts' helpers)
COMPILED_PACKAGES = ("upgrade", "services", "statemachine", "journal", "scripts")


def pytest_configure(config: pytest.Config) -> None:
    """Byte-compile the project once per run, before any worker starts: an environment with
    ``PYTHONDONTWRITEBYTECODE`` set (a sandbox's, a CI image's) makes every one of the suite's hundreds of
    ``upgrade`` and lab processes compile the whole project from source again, a third of a second of CPU
    each. A process may still read byte code that exists; this writes it (``__pycache__`` is ignored by git),
    and what is already up to date is only checked."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the controller compiled it before starting the workers
    import compileall

    for package in COMPILED_PACKAGES:
        compileall.compile_dir(REPO / package, quiet=2)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark by what a test needs (``-m "not lab"`` runs the quick ones); under xdist, slow tests first."""
    for item in items:
        module = item.path.name
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())) or module in LAB_TESTS \
                or f"{module}::{getattr(item, 'originalname', item.name)}" in LAB_TESTS:
            item.add_marker(pytest.mark.lab)
            if module in SLOW_MODULES:
                item.add_marker(pytest.mark.slow)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # the scheduler hands out what comes first first: the long tests and the groups (a group is taken
        # whole) early, so that the short ones fill the gaps at the end instead of one worker finishing a long
        # unit alone (a stable sort: each module's tests keep their order)
        items.sort(key=lambda item: (item.get_closest_marker("slow") is None
                                     and _xdist_scope(item.nodeid) == item.nodeid,
                                     LONGEST.index(item.path.name) if item.path.name in LONGEST else len(LONGEST)))


def _xdist_scope(nodeid: str) -> str:
    """The unit of work a worker takes whole: a group of XDIST_GROUPS (by test, else by file), else the one test."""
    path, _, name = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1]
    return XDIST_GROUPS.get(f"{module}::{name.split('[', 1)[0]}") or XDIST_GROUPS.get(module, nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` by XDIST_GROUPS: tests of one group on one worker, in order; others one by one.

    xdist's own loadgroup reads ``xdist_group`` marks by renaming node ids, which pytest 9.2 no longer
    allows; this scheduler is xdist's documented way to choose the units of work instead.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _xdist_scope(nodeid)

    # the units in the order of the collection (slow tests first, see above), not the biggest groups first
    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


def require(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and a real part is missing: {why}")
    pytest.skip(why)


def require_mariadb() -> None:
    """The MariaDB server and client tools every lab starts its real servers with."""
    for tool in ("mariadbd", "mariadb-install-db", "mariadb-dump", "mariadb"):
        require(shutil.which(tool) is not None, f"{tool} not installed (make setup installs MariaDB)")


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Any:
    """A real tmpfs of *size* (0700) mounted on *directory*, to fill a disk for real (needs root)."""
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
                         capture_output=True, text=True)
    require(res.returncode == 0, f"cannot mount a tmpfs (needs root): {res.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def tree_digest(root: Path) -> dict[str, tuple[str, int, int, int]]:
    """relpath -> (sha256 or 'dir', mode, uid, gid) for every entry under root."""
    out: dict[str, tuple[str, int, int, int]] = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        kind = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        out[str(p.relative_to(root))] = (kind, st.st_mode & 0o7777, st.st_uid, st.st_gid)
    return out


@dataclass
class KeystoneLab:
    base: Path
    db_old: MariaDB
    db_new: MariaDB
    old: Controller
    new: Controller
    seed: dict[str, Any]
    snapshots: dict[str, Path] = field(default_factory=dict)

    # ------------------------------------------------------------------ state
    def snapshot(self) -> None:
        """Freeze the seeded state: both keystone DBs, both controller trees (keystone stopped)."""
        svc.stop(self.old.root, "keystone")
        snap = self.base / "snap"
        snap.mkdir(exist_ok=True)
        self.db_old.snapshot("keystone", snap / "old.sql")
        self.db_new.snapshot("keystone", snap / "new.sql")
        for name, ctl in (("old", self.old), ("new", self.new)):
            with tarfile.open(snap / f"{name}.tar", "w") as tar:
                tar.add(ctl.root, arcname=".")
        self.snapshots = {"old.sql": snap / "old.sql", "new.sql": snap / "new.sql",
                          "old.tar": snap / "old.tar", "new.tar": snap / "new.tar"}

    def reset(self) -> None:
        """Back to the seeded state: old keystone serving, new controller fresh, no extra DB users."""
        for ctl in (self.old, self.new):
            svc.stop(ctl.root, "keystone")
        for db in (self.db_old, self.db_new):
            db.start()
        self.db_old.restore("keystone", self.snapshots["old.sql"])
        self.db_new.restore("keystone", self.snapshots["new.sql"])
        for db in (self.db_old, self.db_new):
            db.execute(f"DROP DATABASE IF EXISTS {CLAIM_SCHEMA}")  # a completed run's claim on the target
            for (host,) in db.execute("SELECT host FROM mysql.user WHERE user='keystone' AND host<>'127.0.0.1'"):
                db.execute("DROP USER %s@%s", args=("keystone", host))
            db.execute("ALTER USER 'keystone'@'127.0.0.1' IDENTIFIED BY %s", args=(KEYSTONE_DB_PASSWORD,))
        for name, ctl in (("old", self.old), ("new", self.new)):
            shutil.rmtree(ctl.root)
            ctl.root.mkdir()
            with tarfile.open(self.snapshots[f"{name}.tar"]) as tar:
                tar.extractall(ctl.root, filter="fully_trusted")
        svc.start(self.old.root, "keystone")

    def state(self) -> dict[str, Any]:
        """What the upgrade may change, on both controllers, for comparisons."""
        return {
            "source_db": self.db_old.checksums("keystone"),
            "target_db": self.db_new.checksums("keystone") if self.db_new.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name='keystone'") else None,
            "source_etc": tree_digest(self.old.root / "etc"),
            "target_etc": tree_digest(self.new.root / "etc"),
            # the claim marker names its run: compared on its own (target_claim), not as bytes
            "target_lib": {k: v for k, v in tree_digest(self.new.root / "var" / "lib").items() if k != CLAIM_FILE},
            "target_claim": (bool(self.db_new.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name=%s", args=(CLAIM_SCHEMA,))),
                (self.new.root / "var" / "lib" / CLAIM_FILE).exists()),
            "target_users": self.db_new.execute(
                "SELECT user, host FROM mysql.user WHERE user='keystone' ORDER BY host"),
        }

    # ------------------------------------------------------------------ plan and tool
    def write_plan(self, directory: Path, **service_overrides: str) -> Path:
        return write_plan(directory, self.old, self.new, DBAdmin(DB_ADMIN, password=SOURCE_DB_PASSWORD),
                          DBAdmin(DB_ADMIN, password_env=TARGET_PW_ENV), extra_service_keys=service_overrides)


#: the verbs that only read (a journal, a plan) and print, or write one new file: :func:`upgrade` runs them
#: through ``upgrade.cli.main`` in the test's process (the same parser, code, output and exit code, without
#: half a second of interpreter start-up each; the suite runs hundreds). Whatever acts on the controllers
#: (run, resume, revert, check, claim, report) keeps a process of its own: signals, locks, fail points.
IN_PROCESS_VERBS = frozenset({"status", "runs", "journal", "plan", "init", "keygen"})


def upgrade(*args: str, failpoint: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `upgrade` command line as an operator would: in a subprocess, but for the read-only
    verbs (:data:`IN_PROCESS_VERBS`), whose output comes back as a text-mode pipe gives it."""
    if args and args[0] in IN_PROCESS_VERBS and not failpoint:
        res = upgrade_in_process(*args, env=env)
        return subprocess.CompletedProcess(res.args, res.returncode, _text_pipe(res.stdout), _text_pipe(res.stderr))
    e = {**os.environ, TARGET_PW_ENV: TARGET_DB_PASSWORD, **(env or {})}
    e.pop("OPENSTACK_UPGRADE_FAILPOINT", None)
    if failpoint:
        e["OPENSTACK_UPGRADE_FAILPOINT"] = failpoint
    return subprocess.run([sys.executable, "-m", "upgrade.cli", *args], cwd=REPO, env=e, capture_output=True,
                          text=True, timeout=timeout)


def upgrade_in_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``upgrade ARGS`` through ``upgrade.cli.main`` in this process: the same parser, checks, messages and
    exit code as :func:`upgrade` without starting an interpreter, for input that is refused before any
    real work. A case that needs a process of its own (a signal, a lock, a fail point) uses :func:`upgrade`.
    What is written to ``sys.stdout``/``sys.stderr`` as they stand at the call is captured (``upgrade.cli``
    hands each verb the ``sys.stdout`` of the call).
    """
    from upgrade import cli

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update({TARGET_PW_ENV: TARGET_DB_PASSWORD, **(env or {})})
    os.environ.pop("OPENSTACK_UPGRADE_FAILPOINT", None)
    os.chdir(REPO)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:  # argparse's own refusals
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        # a journal the verb opened is closed now, as at the end of a process: SQLite shares POSIX locks
        # within a process, so a connection left to the garbage collector would keep the next reader of a
        # journal whose writer was SIGKILLed from recovering its WAL (it would read a stale snapshot)
        gc.collect()
    return subprocess.CompletedProcess(["upgrade", *args], code, out.getvalue(), err.getvalue())


def _text_pipe(text: str) -> str:
    """What ``subprocess.run(text=True)`` reads from a pipe: universal newlines (a CSV export's CRLF is LF)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _admin_user(db: MariaDB, password: str) -> None:
    db.execute("CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s", args=(DB_ADMIN, password))
    db.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'127.0.0.1' WITH GRANT OPTION", args=(DB_ADMIN,))


@pytest.fixture(scope="session")
def keystone_lab(tmp_path_factory) -> Any:
    require_mariadb()
    for rel in (OLD, NEW):
        require((DEFAULT_VENV_ROOT / rel / "bin" / "keystone-manage").exists(),
                f"keystone venv {rel} missing (make openstack builds it)")
    base = tmp_path_factory.mktemp("kslab")
    db_old = MariaDB(base / "db-old", free_port())
    db_new = MariaDB(base / "db-new", free_port())
    port = free_port()
    lab = None
    try:
        db_old.start()
        db_new.start()
        _admin_user(db_old, SOURCE_DB_PASSWORD)
        _admin_user(db_new, TARGET_DB_PASSWORD)
        old = make_controller(base / "old", OLD, db_old, port, db_password=KEYSTONE_DB_PASSWORD)
        new = make_controller(base / "new", NEW, db_new, port, db_password=KEYSTONE_DB_PASSWORD)
        seed = seed_keystone(old, ADMIN_PASSWORD)
        lab = KeystoneLab(base, db_old, db_new, old, new, seed)
        lab.snapshot()
        yield lab
    finally:
        for root in (base / "old", base / "new"):
            if root.exists():
                with contextlib.suppress(Exception):  # best effort: the DBs must still stop
                    svc.stop(root, "keystone")
        db_old.stop()
        db_new.stop()


@pytest.fixture
def lab(keystone_lab: KeystoneLab) -> KeystoneLab:
    keystone_lab.reset()
    return keystone_lab


def _hostlab_requirements() -> None:
    from scripts.lab import hosts as hostlab

    require(os.geteuid() == 0, "the multi-host lab needs root (network namespaces, mounts, sshd)")
    for tool in ("ip", "nsenter", "unshare", "ssh", "/usr/sbin/sshd", "arping", "mariadbd"):
        require(shutil.which(tool) is not None, f"{tool} not installed (scripts/setup-system installs it)")
    for rel in (OLD, NEW):
        for cmd in hostlab.VENV_TOOLS:
            require((DEFAULT_VENV_ROOT / rel / "bin" / cmd).exists(), f"{cmd} missing in venv {rel}")


@pytest.fixture(scope="session")
def hostlab_snapshot(tmp_path_factory) -> Path:
    """The multi-host lab's controllers built and seeded once (keystone and glance 2025.2 serving on oldctl,
    2026.1 installed on newctl); every test's lab starts from it (tests/test_multihost.py, and the modules
    that use its lab). Here, not in one test module, and once per test run: it is only files, so the
    pytest-xdist workers share one (the first to need it builds it under a lock, the others wait for it)."""
    from scripts.lab import hosts as hostlab

    _hostlab_requirements()
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's directory, above every worker's own
    snap = root / "hostlab-golden" / "snapshot"
    with (root / "hostlab-golden.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not snap.exists():  # made whole or not at all: a failed build leaves nothing for the next to trust
            base = Path(tempfile.mkdtemp(prefix="hostlab-build-", dir=root))
            lab = base / "lab"
            try:
                hostlab.up(lab, computes=0)
                built = hostlab.snapshot(lab, base / "snapshot")
            finally:
                with contextlib.suppress(Exception):
                    hostlab.down(lab)
            snap.parent.mkdir(exist_ok=True)
            built.rename(snap)
    return snap


@pytest.fixture(scope="session", autouse=True)
def lab_schema_cache(tmp_path_factory) -> Path:
    """One cache of fresh lab schemas for the whole run (scripts/lab/schemacache.py), shared by the
    pytest-xdist workers and by the labs their subprocesses build: each release's schema of each
    service is synced by its real tool once per run, then loaded. Labs only: the tool's migrations are real."""
    from scripts.lab import schemacache

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's directory, above every worker's own
    cache = root / "lab-schema-cache"
    cache.mkdir(mode=0o700, exist_ok=True)
    os.environ[schemacache.ENV] = str(cache)
    return cache
