"""The API the CLI verbs stand on: open a journal, load keys, build the machines and the runner."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import pymysql

from journal import private, vault
from journal.redact import Redactor
from journal.store import JOURNAL_FILE, Journal, JournalError
from services import novadb, preflight, registry
from services.infra import mysql, writeguard
from services.infra.context import UpgradeContext
from services.infra.host import Host
from services.infra.settings import Side
from services.registry import AFTER_COMPUTES, overlap_group, steps_for
from services.releases import Jump
from statemachine.deps import cross_waits
from statemachine.lock import RunLock
from statemachine.machine import ServiceMachine
from statemachine.runner import ParallelGroup, Runner
from statemachine.step import StepError
from upgrade import fleet, hosts, logs
from upgrade.errors import UserError
from upgrade.plan import Plan, SideSpec

SALT_FILE = "vault.salt"


#: the redactor of this process: error messages printed by the CLI pass through it too
REDACTOR = Redactor()


def redactor_for(plan: Plan | None) -> Redactor:
    """The process redactor, taught the plan's secrets (they stay known for the whole process)."""
    for s in plan.secrets if plan else ():
        REDACTOR.add(s)
    return REDACTOR


#: the journal directory this process opened last: an internal error's traceback goes beside it
OPENED: list[Path] = []


def open_journal(directory: Path, redactor: Redactor, create: bool) -> Journal:
    """The journal, read-only until :func:`authenticate` (or :meth:`Journal.unlock`) gives it the key."""
    try:
        journal = Journal(directory, redactor, create=create)
    except JournalError as exc:
        raise UserError(str(exc)) from None
    OPENED.append(journal.dir)
    return journal


def authenticate(journal: Journal, key: vault.Key) -> None:
    """Unlock the journal with the run's key and verify its whole seal, before any work: a journal that a
    writer without the key edited (or an earlier format's, or one sealed with another key) is refused."""
    try:
        journal.authenticate(key)
    except JournalError as exc:
        raise UserError(str(exc)) from None


def has_runs(journal_dir: Path) -> bool:
    """Whether *journal_dir* holds a journal with a run (a missing ``vault.salt`` is then an error)."""
    if not os.path.lexists(journal_dir / JOURNAL_FILE):
        return False
    try:
        journal = Journal(journal_dir, create=False)
    except JournalError:
        return True  # unreadable: never take it for a fresh one
    try:
        return bool(journal.runs())
    except JournalError:
        return True
    finally:
        journal.close()


def lock(journal_dir: Path, verb: str) -> RunLock:
    """The journal's run lock; another holder is a BusyError (exit 3) naming it (``statemachine.lock``)."""
    lk = RunLock(journal_dir)
    lk.acquire(verb)
    return lk


def load_key(plan: Plan, journal_dir: Path, new_salt: bool = False) -> vault.Key:
    """The vault key named by the plan: a key file, or a passphrase whose salt lives with the journal
    (made only when *new_salt*: a journal with no run yet)."""
    return key_from(plan.key_file, plan.passphrase_env, journal_dir, new_salt, f"{plan.path}: `vault.passphrase_env`")


def key_from(key_file: Path | None, passphrase_env: str | None, journal_dir: Path, new_salt: bool,
             where: str) -> vault.Key:
    """A key file, or the passphrase in $*passphrase_env* (asked for on a terminal) with the journal's salt.

    The salt is written once, when the first run of a journal starts; a ``vault.salt`` missing later is
    reported, never recreated: a new salt would turn the same passphrase into another key.
    """
    if key_file is not None:
        return vault.Key.from_file(key_file)
    env = passphrase_env or ""
    passphrase = os.environ.get(env)
    if not passphrase and sys.stdin.isatty():
        passphrase = getpass.getpass(f"vault passphrase (${env} is not set): ")
    if not passphrase:
        raise UserError(f"{where} names {env!r}, which is not set — export it, "
                        "or run from a terminal to be asked for the passphrase")
    salt = _read_salt(journal_dir, new_salt)
    key = vault.Key.from_passphrase(passphrase, salt=salt)
    if salt is None:
        private.make_dir(journal_dir)
        fd = private.open_file(journal_dir / SALT_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, "vault salt file")
        try:
            os.write(fd, key.kdf.salt)
            os.fsync(fd)
        finally:
            os.close(fd)
    return key


def _read_salt(journal_dir: Path, new_salt: bool) -> bytes | None:
    """The journal's passphrase salt; None when there is none yet and one may be made."""
    path = journal_dir / SALT_FILE
    try:
        fd = private.open_file(path, os.O_RDONLY, "vault salt file", repair_mode=True)
    except FileNotFoundError:
        if new_salt:
            return None
        raise UserError(f"{path} is missing: the journal's runs were made with a passphrase, and its salt was in that "
                        "file (without it the same passphrase gives another key) — restore vault.salt from a copy of "
                        "the journal directory; it is never made anew for a journal that holds runs") from None
    try:
        return os.read(fd, 64)
    finally:
        os.close(fd)


def check_key(run: dict, key: vault.Key) -> None:
    if run["key_id"] and run["key_id"] != key.key_id:
        raise UserError(f"run {run['id']} was made with vault key id {run['key_id']}, but the key given now has "
                        f"id {key.key_id} — use the key file (or passphrase) of that run")


def vault_dir(plan: Plan) -> Path:
    """Where the plan's artifacts go: ``vault.dir``, or ``<journal>/artifacts``."""
    return plan.artifact_dir or plan.journal_dir / "artifacts"


def side(spec: SideSpec, host: Host | None = None) -> Side:
    """A controller of the plan, connected (or with the given *host*, e.g. a name-only one for `upgrade plan`)."""
    name = f"{spec.role}:{(spec.host_spec and spec.host_spec.alias) or spec.host}"
    return Side(role=spec.role, host=host or hosts.connect(spec.host_spec or spec.host, name), etc=spec.etc,
                lib=spec.lib, bin=spec.bin, db=spec.db, control=spec.control, log=spec.log)


def sweep_leftovers(plan: Plan) -> None:
    """Remove private directories that a killed run of this machine left on the controllers.

    A run killed while a command had its temporary config on disk (a DB URL with a password)
    cannot clean up after itself; the next resume or revert does, before anything else.
    """
    log = logs.get()
    members = [hosts.connect(m.host, f"{spec.role}:{m.name}") for spec in (plan.source, plan.target) if spec.group
               for m in spec.group.members if not (spec.host_spec and m.host.url == spec.host_spec.url)]
    for host in [side(spec).host for spec in (plan.source, plan.target)] + members:  # an HA plan's other members too
        try:
            removed = hosts.sweep_stale_tmpdirs(host)
        except Exception as exc:  # best effort: a host that cannot be reached fails its step later anyway
            log.warning("sweep_failed", host=host.name, error=str(exc))
            continue
        if removed:
            log.info("swept_leftovers", host=host.name, directories=removed)


def source_errors(plan: Plan) -> dict[str, list[str]]:
    """Per service, why the source does not fit the release table for the plan's jump: a database
    missing, or one the target release adds already there; a config section the target needs
    (``run`` refuses to start on any; ``upgrade check`` reports them all)."""
    jump = Jump(plan.from_release, plan.to_release)
    source = side(plan.source)
    read = lambda path: source.host.read_bytes(path) if source.host.exists(path) else None  # noqa: E731
    return {name: preflight.database_errors(plan.source.db, name, jump, st, str(plan.path))
            + preflight.config_errors(read, plan.source.etc, name, jump)
            + (novadb.cell_errors(plan.source.db, st, jump, str(plan.path)) if name == "nova" else [])
            for name, st in plan.service_settings.items()}


def charset_errors(plan: Plan) -> list[str]:
    """Why the source's text cannot be carried over unchanged (a mixed column, a 4-byte character
    the target's utf8mb3 cannot hold, a repair entry naming no database of the service): refused
    before anything stops, each with its rows and fix. Double-encoded text is `upgrade check`'s."""
    jump = Jump(plan.from_release, plan.to_release)
    out = []
    for name, st in plan.service_settings.items():
        if name in registry.NO_DATABASE:
            continue
        out += preflight.repair_errors(name, jump, st)
        for found in preflight.charset_findings(plan.source.db, name, jump, st, doubles=False):
            out += found.refusals
    return [f"{p} (plan {plan.path})" for p in out]


def volume_errors(plan: Plan) -> list[str]:
    """Why cinder's volume copy cannot start: an in-use volume whose instance is not shut off (it could
    write through the old controller's iSCSI target while the blocks are copied), an operation under
    way on a volume (read on the source DB), exports through a helper other than tgtadm (source
    cinder.conf)."""
    from services.catalog import cinder  # only plans with cinder pay for its import

    st = plan.service_settings.get("cinder")
    if st is None:
        return []
    out = cinder.copy_refusals(plan.source.db, st, str(plan.path))
    if st.options.get("copy_volumes"):
        src = side(plan.source)
        conf = f"{src.etc.rstrip('/')}/cinder/cinder.conf"
        out += cinder.export_helper_refusals(src.host.read_bytes(conf) if src.host.exists(conf) else None,
                                             f"source {conf}")
    return out


def preflight_db(plan: Plan) -> None:
    """Every SSH host answers, both DB servers are reachable with the plan's credentials, the
    source holds every service DB, and its text can be carried over unchanged."""
    fleet.preflight_hosts(plan)
    for spec in (plan.source, plan.target):
        try:
            mysql.query(spec.db, "SELECT 1")
        except mysql.DBConnectError as exc:
            raise UserError(f"{spec.role} controller: {exc} (plan {plan.path}, [{spec.role}.db])") from None
    for errors in source_errors(plan).values():
        if errors:
            raise UserError("\n".join(errors))
    if problems := charset_errors(plan):
        raise UserError("\n".join(problems))
    if problems := volume_errors(plan):
        raise UserError("the volume copy cannot start, nothing was changed:\n  " + "\n  ".join(problems))
    target = side(plan.target)
    for name in plan.service_settings:
        tool = registry.TOOLS.get(name)
        path = f"{plan.target.bin.rstrip('/')}/{tool}" if tool and plan.target.bin else None
        if path and not target.host.exists(path):
            raise UserError(f"{name} is not installed on the target controller: {path} does not exist there — "
                            f"install {name} of {plan.to_release} on it (or fix target.bin in {plan.path})")
    try:
        refused = preflight.refused_versions(target.host, plan.target.bin, plan.services, plan.to_release)
    except StepError as exc:
        raise UserError(f"cannot read the target's installed versions: {exc} (plan {plan.path})") from None
    if refused:
        raise UserError("\n".join(f"{r} (plan {plan.path}; nothing was changed)" for r in refused))


@dataclass
class Session:
    """Everything one invocation of run/resume/revert works with."""

    plan: Plan
    journal: Journal
    key: vault.Key
    run_id: str
    runner: Runner


def service_machines(plan: Plan) -> dict[str, ServiceMachine]:
    """The machine of every service of *plan*, in its order. Building them checks what their steps
    require (``statemachine/deps.py``): a step list that cannot run is a programming error raised here,
    before a run journals anything."""
    jump = Jump(plan.from_release, plan.to_release)
    # every step that writes asserts, inside it, that it writes the claimed target (§9.1)
    machines = {name: ServiceMachine(name, writeguard.guarded(name, steps_for(name, jump,
                                                                              plan.service_settings[name].options)))
                for name in plan.services}
    cross_waits({n: m.steps for n, m in machines.items()})
    return machines


def read_context(plan: Plan, roles: tuple[str, ...] = ("source", "target")) -> SimpleNamespace:
    """What a check that reads (never writes) needs of a step context: the sides named by *roles* (only
    those: the old controller may be gone after the switchover), the services' settings and the releases."""
    return SimpleNamespace(**{role: side(getattr(plan, role)) for role in roles}, services=plan.service_settings,
                           from_release=plan.from_release, to_release=plan.to_release)


def unpin_refusal(plan: Plan) -> str | None:
    """Why nova cannot be unpinned now (the compute hosts still on the old release, named), or None; reads
    the new controller's nova database only."""
    from services.catalog import nova

    try:
        return nova.unpin_refusal(read_context(plan, ("target",)))
    except mysql.DBConnectError as exc:
        raise UserError(f"target controller: {exc} (plan {plan.path}, [target.db])") from None


def deferred(plan: Plan, journal: Journal, run_id: str) -> tuple[str, ...]:
    """The services a ``unpin = "later"`` plan leaves out of its run (nova-unpin) that the run has not
    started yet: once `upgrade unpin` started one, it belongs to the run (resume and revert see it)."""
    if not plan.unpin_later:
        return ()
    started = journal.machines(run_id)
    return tuple(n for n in plan.services if n in AFTER_COMPUTES and n not in started)


def database_bytes(plan: Plan, names: list[str]) -> dict[str, int]:
    """The size of each service's databases on the source (data_length + index_length): the weights the
    overlap starts services by (``ParallelGroup.weight``), so the longest dump and schema upgrade start at
    once, after only what they wait for. Asked when the group starts; a source that cannot be read then
    leaves the plan's order (the steps will say why)."""
    jump = Jump(plan.from_release, plan.to_release)
    try:
        return {n: preflight.data_bytes(plan.source.db, registry.databases(n, jump, plan.service_settings[n]))
                for n in names}
    except (StepError, pymysql.err.MySQLError) as exc:
        logs.get().warning("start_order_unread", error=str(exc))
        return {}


def run_machines(plan: Plan, connect: Callable[[hosts.HostSpec, str], Host] = hosts.connect,
                 leave_out: tuple[str, ...] = ()) -> tuple[list[ServiceMachine], list[ParallelGroup]]:
    """Every machine a run of *plan* drives, in the run's order, and the groups that run side by side: what
    the runner gets and what `upgrade plan` shows (with *connect* giving recording hosts), so the two cannot
    differ. The order: the services, then the hosts beyond the controllers (``fleet.machines``: the IP
    switchover, the compute hosts in parallel), then the services that run after the computes (nova-unpin:
    it drops the compute pin once the computes run the new release), then the check that the whole cloud
    reports to the new controller (``[cloud]``). *leave_out*: services this run does not
    drive (nova-unpin of a ``unpin = "later"`` plan until `upgrade unpin`)."""
    machines = service_machines(plan)
    for name in leave_out:
        del machines[name]
    stoppers = tuple(n for n in plan.services if n not in AFTER_COMPUTES
                     and any("source_units" in s.provides for s in machines[n].steps))
    extra, groups = fleet.machines(plan, stoppers, connect=connect)
    overlap = overlap_group({n: m.steps for n, m in machines.items()}, plan.service_pool)
    if overlap is not None:
        groups = [replace(overlap, weight=lambda: database_bytes(plan, sorted(overlap.machines))), *groups]
    # an HA plan: the other old members stop first, the cluster check, the other new members and the VIP after
    before, after, ha_groups = fleet.ha_machines(plan, {n: machines[n].steps for n in plan.services
                                                        if n not in AFTER_COMPUTES and n in machines}, connect)
    groups = [*ha_groups, *groups]
    order = before + [machines[n] for n in plan.services if n not in AFTER_COMPUTES] + after + extra \
        + [machines[n] for n in plan.services if n in AFTER_COMPUTES and n in machines] + fleet.last_machines(plan)
    return order, groups


def build_runner(plan: Plan, journal: Journal, key: vault.Key, run_id: str, observer=None,
                 progress: Callable[[int], None] | None = None,
                 claimed: writeguard.Claimed | None = None, unpin: bool = False) -> Runner:
    """The runner of a run; *claimed* is what its writing steps check the target against; *unpin*: the
    run of `upgrade unpin`, which drives the nova-unpin a ``unpin = "later"`` plan left out."""
    ctx = UpgradeContext(run_id=run_id, source=side(plan.source), target=side(plan.target), journal=journal,
                         key=key, redactor=journal.redactor, services=plan.service_settings,
                         from_release=plan.from_release, to_release=plan.to_release,
                         artifact_root=plan.artifact_dir, progress=progress, claimed=claimed,
                         dump_streams=plan.dump_streams)
    order, groups = run_machines(plan, leave_out=() if unpin else deferred(plan, journal, run_id))
    log = logs.get()
    return Runner(journal, run_id, order, ctx, observer=observer,
                  log=lambda event, **kw: log.info(event, run=run_id, **kw), groups=groups)
