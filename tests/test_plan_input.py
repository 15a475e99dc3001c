"""The plan as hostile or careless input: every value that reaches a command line, a statement or a
host is held to a grammar, a secret never shows in an error, whatever its type, deep nesting is a
plan error, and the tool's secret variables reach no child process.

Refusals run the command line in-process (``upgrade.cli.main``): no process is needed to refuse a
plan, and each case checks the exit code (2), the message, that no secret is shown and that
nothing changed (every file under the test directory hashed before and after, no journal made,
the injected command never ran). The cases that need real processes (the ssh client, a run
against the keystone lab, a revert whose target side fails) run them.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.lab import svc
from tests.conftest import (
    LOADABLE_PLAN as BASE,
)
from tests.conftest import (
    SECRETS,
    SOURCE_DB_PASSWORD,
    TARGET_DB_PASSWORD,
    TARGET_PW_ENV,
    tree_digest,
    upgrade,
)
from upgrade import cli, commands

MARK = "INJECTED-RAN"


NETWORK = """
[network]
addresses = [{address = "198.51.100.10/24", device = "eth0", name = "management"}]

[[computes]]
name = "compute1"
host = "ssh://root@198.51.100.21"
units = ["nova-compute"]
"""


def _inject(d: Path) -> str:
    """A command that leaves a mark if it ever runs."""
    return f"touch {d / MARK}"


@dataclass(frozen=True)
class Case:
    id: str
    edit: Callable[[Path, str], str]   # (test dir, BASE) -> plan text
    needles: tuple[str, ...]
    hidden: tuple[str, ...] = ()       # must not appear in the message (a secret's parts)


def _rep(old: str, new: str | Callable[[Path], str]) -> Callable[[Path, str], str]:
    def edit(d: Path, text: str) -> str:
        assert old in text, old
        return text.replace(old, new(d) if callable(new) else new, 1)
    return edit


def _append(extra: str | Callable[[Path], str]) -> Callable[[Path, str], str]:
    return lambda d, text: text + (extra(d) if callable(extra) else extra)


def _services(names: str, table: str) -> Callable[[Path, str], str]:
    return lambda d, text: text.replace('services = ["keystone"]', f"services = {names}", 1) + table


CASES = [
    # ------------------------------------------------------------------ argument injection (hosts)
    Case("host-is-an-ssh-option", _rep('host = "local"', lambda d: f'host = "ssh://-oProxyCommand={_inject(d)}"'),
         ("`source.host`",)),
    Case("host-is-an-ssh-option-without-a-path", _rep('host = "local"', 'host = "ssh://-oProxyCommand=sh"'),
         ("`source.host`", "the address '-oproxycommand=sh' is not a host name")),
    Case("host-user-is-an-ssh-option", _rep('host = "local"', 'host = "ssh://-oProxyCommand=sh@oldctl"'),
         ("`source.host`", "the user '-oProxyCommand=sh' is not a login name")),
    Case("target-host-with-a-space", _rep('host = "local"\netc = "/srv/new', 'host = "ssh://new ctl"\netc = "/srv/new'),
         ("`target.host`",)),
    Case("compute-host-is-an-ssh-option", _append(lambda d: NETWORK.replace(
        "ssh://root@198.51.100.21", f"ssh://-oProxyCommand={_inject(d)}")), ("`computes[0].host`",)),
    Case("check-from-is-an-ssh-option", _append(lambda d: NETWORK.replace(
        'name = "management"}]', f'name = "management"}}]\ncheck_from = "ssh://-oProxyCommand={_inject(d)}"')),
         ("`network.check_from`",)),
    Case("db-address-is-an-option", _rep('address = "127.0.0.1"', 'address = "--plugin-dir=/tmp"'),
         ("`source.db.address` is '--plugin-dir=/tmp'", "a host name")),
    Case("db-address-with-a-line-break", _rep('address = "127.0.0.1"', 'address = "127.0.0.1\\nplugin-dir=/tmp"'),
         ("`source.db.address`", "control character")),
    # ------------------------------------------------------------------ argument injection (other values)
    Case("unit-is-an-option", _rep('unit = "keystone"', 'unit = "--force"'),
         ("`services.keystone.unit` is '--force'", "unit name")),
    Case("unit-with-a-space", _rep('unit = "keystone"', 'unit = "keystone; touch x"'),
         ("`services.keystone.unit`",)),
    Case("compute-unit-is-an-option", _append(NETWORK.replace('units = ["nova-compute"]', 'units = ["-x"]')),
         ("`computes[0].units` holds '-x'",)),
    Case("device-is-an-option", _append(NETWORK.replace('device = "eth0"', 'device = "-batch"')),
         ("`network.addresses[0].device` is '-batch'", "interface name")),
    Case("owner-is-an-option", _rep('unit = "keystone"', 'unit = "keystone"\nowner = "--reference=/etc:root"'),
         ("`services.keystone.owner`", "USER:GROUP")),
    Case("admin-user-is-an-option", _rep('admin_user = "osu_admin"', 'admin_user = "-uroot"'),
         ("`source.db.admin_user` is '-uroot'",)),
    Case("etc-with-a-line-break", _rep('etc = "/srv/old/etc"', 'etc = "/srv/old/etc\\n--x"'),
         ("`source.etc`", "control character")),
    Case("images-dir-leaves-lib", _services('["keystone", "glance"]', '[services.glance]\nimages_dir = "../../etc"\n'),
         ("`services.glance.images_dir` is '../../etc'", "without '..'")),
    Case("volume-dir-is-an-option", _services(
        '["keystone", "cinder"]', '[services.cinder]\ncopy_volumes = true\nvolume_dir = "--force"\n'),
         ("`services.cinder.volume_dir` is '--force'", "absolute device path")),
    Case("target-volume-dir-is-an-operand", _services(
        '["keystone", "cinder"]', '[services.cinder]\ntarget_volume_dir = "of=/dev/sda"\n'),
         ("`services.cinder.target_volume_dir` is 'of=/dev/sda'", "absolute device path")),
    Case("tgt-port-past-tgtd", _services(
        '["keystone", "cinder"]', '[services.cinder]\ncopy_volumes = true\ntgt_control_port = 40000\n'),
         ("`services.cinder.tgt_control_port` is 40000", "from 1 to 32767")),
    # ------------------------------------------------------------------ SQL identifiers
    Case("db-name-with-a-backtick", _rep('unit = "keystone"', 'unit = "keystone"\ndb_name = "key`stone"'),
         ("`services.keystone.db_name` is 'key`stone'", "database name")),
    Case("db-name-is-an-option", _rep('unit = "keystone"', 'unit = "keystone"\ndb_name = "--all-databases"'),
         ("`services.keystone.db_name`",)),
    Case("nova-api-db-name-with-a-backtick", _services(
        '["keystone", "nova"]', '[services.nova]\napi_db_name = "nova`; DROP DATABASE keystone; --"\n'),
         ("`services.nova.api_db_name`", "database name")),
    Case("db-user-with-a-quote", _rep('unit = "keystone"', 'unit = "keystone"\ndb_user = "ks\'@\'%"'),
         ("`services.keystone.db_user`",)),
    Case("grant-host-with-a-quote", _rep('unit = "keystone"', 'unit = "keystone"\ngrant_hosts = ["%\' OR \'1"]'),
         ("`services.keystone.grant_hosts` holds",)),
    # ------------------------------------------------------------------ secrets in errors
    Case("secret-as-a-number", _rep(f'admin_password = "{SOURCE_DB_PASSWORD}"', "admin_password = 987654321"),
         ("`source.db.admin_password` is ***", "expected str"), ("987654321",)),
    Case("secret-as-a-list", _rep(f'admin_password = "{SOURCE_DB_PASSWORD}"', 'admin_password = ["lst-pw-4242"]'),
         ("`source.db.admin_password` is ***",), ("lst-pw-4242",)),
    Case("secret-as-a-table", _rep(f'admin_password = "{SOURCE_DB_PASSWORD}"', 'admin_password = {v = "tb-pw-51"}'),
         ("`source.db.admin_password` is ***",), ("tb-pw-51",)),
    Case("service-secret-as-a-bool", _rep('unit = "keystone"', 'unit = "keystone"\ndb_password = true'),
         ("`services.keystone.db_password` is ***",), ("True",)),
    Case("toml-error-on-a-secret-with-spaces", _rep(f'admin_password = "{SOURCE_DB_PASSWORD}"',
                                                    'admin_password = "first-7 second-8 third-9'),
         ("not valid TOML", "line 19: admin_password = ***"), ("first-7", "second-8", "third-9")),
    Case("toml-error-after-a-secret", _rep(f'admin_password = "{SOURCE_DB_PASSWORD}"',
                                           'admin_password = "sp ace-pw-1" junk'),
         ("not valid TOML", "admin_password = ***"), ("sp ace", "ace-pw-1", "junk")),
    Case("toml-error-in-an-inline-table", _append('extra = { db_password = "in line-pw-77", x = }\n'),
         ("not valid TOML", "extra = { db_password = ***"), ("in line", "line-pw-77")),
    Case("toml-error-inside-a-secret-array", _append('db_password = [\n  "arr pw-1",\n  "arr-pw-2" junk,\n]\n'),
         ("not valid TOML", "line 33: ***"), ("arr pw-1", "arr-pw-2", "junk")),
    # ------------------------------------------------------------------ nesting
    Case("nested-past-the-parser", _append("deep = " + "[" * 3000 + "]" * 3000 + "\n"),
         ("nested far too deeply",)),
    Case("ignore-name-with-a-space", _rep('services = ["keystone"]', 'services = ["keystone"]\nignore = '
                                                                     '{"swift proxy" = "own nodes"}'),
         ("`upgrade.ignore`", "'swift proxy'", "a service name like \"swift\"")),
    Case("ignore-without-a-reason", _rep('services = ["keystone"]', 'services = ["keystone"]\nignore = {swift = " "}'),
         ("`upgrade.ignore.swift`", "a reason in words")),
    Case("ignore-reason-not-a-string", _rep('services = ["keystone"]', 'services = ["keystone"]\nignore = {heat = 1}'),
         ("`upgrade.ignore.heat`", "a reason in words")),
    Case("ignore-an-upgraded-service", _rep('services = ["keystone"]', 'services = ["keystone"]\nignore = '
                                                                        '{keystone = "later"}'),
         ("`upgrade.ignore.keystone`", "which upgrade.services upgrades", "remove it from one of the two")),
    Case("ignore-not-a-table", _rep('services = ["keystone"]', 'services = ["keystone"]\nignore = ["swift"]'),
         ("`upgrade.ignore`", "expected a table like {swift = ")),
    Case("retired-cinder-volumes-list", _services('["keystone", "cinder"]', '[services.cinder]\nvolumes = ["vol-1"]\n'),
         ("`services.cinder.volumes` is no longer taken", "copy_volumes = true", "old_host")),
    Case("nested-past-the-plan", _append("deep = " + "[" * 40 + "]" * 40 + "\n"),
         ("`services.keystone.deep[0][0]", "nested more than 16 levels")),
]


def _state(d: Path) -> dict:
    return tree_digest(d)


def _main(capfd, *argv: str) -> tuple[int, str]:
    rc = cli.main(list(argv))
    out = capfd.readouterr()
    return rc, out.out + out.err


@pytest.fixture
def plan_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(TARGET_PW_ENV, TARGET_DB_PASSWORD)
    assert cli.main(["keygen", str(tmp_path / "dump.key")]) == 0
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("verb", ["check", "run"])
def test_bad_plan_values_are_refused_and_change_nothing(plan_dir, capfd, case, verb):
    plan = plan_dir / "plan.toml"
    plan.write_text(case.edit(plan_dir, BASE))
    capfd.readouterr()
    before = _state(plan_dir)
    if verb == "check":  # the verb's function: its table goes to the stream it is given
        buf = io.StringIO()
        rc = commands.check_cmd(str(plan), out=buf)
        out = buf.getvalue() + capfd.readouterr().err
    else:
        rc, out = _main(capfd, verb, str(plan))
    assert rc == 2, out
    for n in case.needles:
        assert n in out, f"{n!r} not in:\n{out}"
    for s in (*SECRETS, *case.hidden):
        assert s not in out, f"{s!r} shown in:\n{out}"
    assert "Traceback" not in out and "internal error" not in out
    assert _state(plan_dir) == before          # no journal, no mark, no file changed
    assert not (plan_dir / MARK).exists() and not (plan_dir / "journal").exists()


def test_printed_commands_quote_paths(tmp_path, capfd):
    odd = tmp_path / "plans $(touch x) & co"
    odd.mkdir()
    rc, out = _main(capfd, "run", str(odd / "new plan.toml"))
    assert rc == 2
    assert f"`upgrade init > '{odd}/new plan.toml'`" in out, out
    journal = tmp_path / "my journal"
    journal.mkdir(mode=0o755)
    journal.chmod(0o755)
    rc, out = _main(capfd, "status", "--journal", str(journal))
    assert rc == 2
    assert f"chmod 700 '{journal}'" in out, out



def test_upgrade_plan_quotes_paths(plan_dir):
    plan = plan_dir / "plan.toml"
    plan.write_text(BASE.replace('etc = "/srv/new/etc"', 'etc = "/srv/new etc"\nbin = "/opt/my venv/bin"'))
    buf = io.StringIO()
    assert commands.plan_cmd(str(plan), None, out=buf) == 0
    out = buf.getvalue()
    for shown in ("$ mkdir -p '/srv/new etc/keystone'", "tar -C '/srv/new etc' --numeric-owner -xpf -",
                  "rewrite paths in '/srv/new etc/keystone/keystone.conf'",
                  "$ '/opt/my venv/bin/keystone-manage' --config-file '/srv/new etc/keystone/keystone.conf' db_sync"):
        assert shown in out, f"{shown!r} not in:\n{out}"


# ---------------------------------------------------------------------- real children, real lab
PASSPHRASE_ENV = "OSU_TEST_VAULT_PASSPHRASE"
PASSPHRASE = "vault-Pass-phrase-6161"


def _recorder(directory: Path) -> Path:
    """A program that records its environment and arguments (NUL-separated) under *directory*,
    then execs the rest of its command line: put in front of a real program, it shows what the
    tool handed that program."""
    directory.mkdir(parents=True, exist_ok=True)
    rec = directory / "record-env"
    rec.write_text('#!/bin/sh\nname=$1; shift\nenv -0 > "' + str(directory) + '/$name.$$.env"\n'
                   'printf "%s\\0" "$@" > "' + str(directory) + '/$name.$$.argv"\nexec "$@"\n')
    rec.chmod(0o755)
    return rec


def _wrap(rec: Path, bindir: Path, name: str, real: str) -> None:
    bindir.mkdir(parents=True, exist_ok=True)
    w = bindir / name
    w.write_text(f'#!/bin/sh\nexec {rec} {name} {real} "$@"\n')
    w.chmod(w.stat().st_mode | stat.S_IXUSR)


def _records(directory: Path, name: str) -> list[tuple[dict[str, str], list[str]]]:
    out = []
    for env in sorted(directory.glob(f"{name}.*.env")):
        pairs = [e.split("=", 1) for e in env.read_bytes().decode().split("\0") if "=" in e]
        argv = env.with_suffix(".argv").read_bytes().decode().split("\0")[:-1]
        out.append(({k: v for k, v in pairs}, argv))
    return out


def _no_secret(env: dict[str, str], where: str) -> None:
    for name in (TARGET_PW_ENV, PASSPHRASE_ENV):
        assert name not in env, f"{where} inherited ${name}"
    blob = "\n".join(f"{k}={v}" for k, v in env.items())
    for s in (*SECRETS, PASSPHRASE):
        assert s not in blob, f"{where}'s environment holds a secret"


def test_the_ssh_client_gets_no_secret_and_reads_the_destination_after_a_double_dash(tmp_path):
    """The ssh client the tool starts (plumbum's session and the tool's own diagnosis) is real; it
    runs without the plan's secret variables, and ``--`` stands before the destination."""
    rec = _recorder(tmp_path / "rec")
    _wrap(rec, tmp_path / "path", "ssh", shutil.which("ssh") or "ssh")
    assert cli.main(["keygen", str(tmp_path / "dump.key")]) == 0
    from scripts.lab.mariadb import free_port

    dead = free_port()
    plan = tmp_path / "plan.toml"
    plan.write_text(BASE.replace('host = "local"', f'host = "ssh://osu@127.0.0.1:{dead}"', 1)
                    .replace('key_file = "dump.key"', f'passphrase_env = "{PASSPHRASE_ENV}"'))
    res = upgrade("check", str(plan), env={"PATH": f"{tmp_path / 'path'}:{os.environ['PATH']}",
                                           PASSPHRASE_ENV: PASSPHRASE})
    assert res.returncode == 2, res.stdout + res.stderr
    assert "cannot reach" in res.stdout and "127.0.0.1" in res.stdout, res.stdout
    seen = _records(tmp_path / "rec", "ssh")
    assert seen, "the tool started no ssh client"
    for env, argv in seen:
        _no_secret(env, f"ssh {argv}")
        assert "osu@127.0.0.1" in argv and argv[argv.index("osu@127.0.0.1") - 1] == "--", argv


def test_graphviz_gets_no_secret(tmp_path):
    """`upgrade plan --graph` runs graphviz's `dot` through a library, with the process environment."""
    rec = _recorder(tmp_path / "rec")
    _wrap(rec, tmp_path / "path", "dot", shutil.which("dot") or "dot")
    assert cli.main(["keygen", str(tmp_path / "dump.key")]) == 0
    plan = tmp_path / "plan.toml"
    plan.write_text(BASE.replace('key_file = "dump.key"', f'passphrase_env = "{PASSPHRASE_ENV}"'))
    res = upgrade("plan", str(plan), "--graph", str(tmp_path / "m.svg"),
                  env={"PATH": f"{tmp_path / 'path'}:{os.environ['PATH']}", PASSPHRASE_ENV: PASSPHRASE})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "m.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    seen = _records(tmp_path / "rec", "dot")
    assert seen, "no dot ran"
    for env, argv in seen:
        _no_secret(env, f"dot {argv}")


def test_children_and_started_services_inherit_no_secret(lab, tmp_path):
    """A real run with the target's DB password and the vault passphrase in the tool's environment:
    the DB clients, keystone-manage and keystone-status, the service control command of both
    controllers and the keystone the new controller starts see neither variable nor value."""
    rec = _recorder(tmp_path / "rec")
    path_dir, bindir = tmp_path / "path", tmp_path / "target-bin"
    bindir.mkdir()
    for tool in ("mysqldump", "mysql", "mariadb-dump", "mariadb"):
        if (real := shutil.which(tool)) is not None:
            _wrap(rec, path_dir, tool, real)
    for tool in (lab.new.venv / "bin").iterdir():
        if tool.name.endswith(("-manage", "-status")):
            _wrap(rec, bindir, tool.name, str(tool))
        else:
            (bindir / tool.name).symlink_to(tool)
    plan = lab.write_plan(tmp_path)
    text = (plan.read_text().replace('key_file = "dump.key"', f'passphrase_env = "{PASSPHRASE_ENV}"')
            .replace(f'bin = "{lab.new.venv}/bin"', f'bin = "{bindir}"')
            .replace('control = ["env"', f'control = ["{rec}", "control", "env"'))
    assert text.count(f'"{rec}", "control"') == 2
    plan.write_text(text)
    res = upgrade("run", str(plan), env={"PATH": f"{path_dir}:{os.environ['PATH']}", PASSPHRASE_ENV: PASSPHRASE})
    assert res.returncode == 0, res.stdout + res.stderr
    for name in ("mysqldump", "mysql", "keystone-manage", "keystone-status", "control"):
        seen = _records(tmp_path / "rec", name)
        assert seen, f"the run started no {name}"
        for env, argv in seen:
            _no_secret(env, f"{name} {argv[:4]}")
    pid = svc.service_pid(lab.new.root, "keystone")
    assert pid, "the new controller's keystone does not run"
    env = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in e)
    _no_secret(env, "the new controller's keystone")


def test_a_bad_database_name_stops_nothing(lab, tmp_path, monkeypatch, capfd):
    """A backtick in a database name: `check` and `run` refuse it before anything stops; the old
    keystone still serves and neither controller changed."""
    monkeypatch.setenv(TARGET_PW_ENV, TARGET_DB_PASSWORD)
    plan = lab.write_plan(tmp_path, db_name="keystone`; DROP DATABASE keystone; -- ")
    before, files = lab.state(), tree_digest(tmp_path)
    buf = io.StringIO()
    assert commands.check_cmd(str(plan), out=buf) == 2
    assert "`services.keystone.db_name` is 'keystone`; DROP" in buf.getvalue(), buf.getvalue()
    rc, out = _main(capfd, "run", str(plan))
    assert rc == 2 and "`services.keystone.db_name`" in out and "database name" in out, out
    assert lab.state() == before and tree_digest(tmp_path) == files
    assert svc.status(lab.old.root, "keystone")


def test_revert_brings_the_old_controller_back_when_a_target_undo_fails(lab, tmp_path):
    """The new controller's DB server is down when the revert comes: restoring the target's
    database fails. The revert reports it (journal, message, exit 1), still starts the old
    keystone, and a second revert, once the server is back, finishes the new controller."""
    before = lab.state()
    plan = lab.write_plan(tmp_path)
    journal = tmp_path / "journal"
    res = upgrade("run", str(plan))
    assert res.returncode == 0, res.stderr
    assert not svc.status(lab.old.root, "keystone")
    lab.db_new.stop()
    try:
        rev = upgrade("revert", "--journal", str(journal))
        assert rev.returncode == 1, rev.stdout + rev.stderr
        assert "keystone.import_db failed" in rev.stderr, rev.stderr
        assert "old controller's services were started again" in rev.stderr
        assert "upgrade revert --journal" in rev.stderr
        assert not any(s in rev.stdout + rev.stderr for s in SECRETS)
        # the old controller serves, untouched
        assert svc.status(lab.old.root, "keystone")
        assert lab.db_old.checksums("keystone") == before["source_db"]
        assert tree_digest(lab.old.root / "etc") == before["source_etc"]
        events = upgrade("journal", "export", "--journal", str(journal)).stdout
        assert '"kind": "undo_failed"' in events and "keystone.import_db" in events
        st = upgrade("status", "--journal", str(journal))
        assert "revert_failed" in st.stdout, st.stdout
    finally:
        lab.db_new.start()
    again = upgrade("revert", "--journal", str(journal))
    assert again.returncode == 0, again.stdout + again.stderr
    assert lab.state() == before
    assert svc.status(lab.old.root, "keystone")
