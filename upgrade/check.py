"""`upgrade check PLAN`: the pre-flight. Changes nothing; answers "will `upgrade run` work?".

Every check yields rows of (check, status, detail, remedy). Status is OK, WARN, FAIL or SKIP
(not applicable); the exit code follows oslo.upgradecheck: 0 all OK, 1 warnings, 2 failures.
One check failing never stops the others: the operator gets the whole list at once.
"""

from __future__ import annotations

import os
import shlex
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from rich.filesize import decimal

from journal import vault
from services import novadb, preflight, registry
from services.fleet import cloudcheck
from services.fleet import network as net
from services.infra import broker
from services.infra import charset as charset_mod
from services.infra import identity as ident
from services.releases import Jump, jump_error
from services.steps import shipped
from statemachine.step import StepError
from upgrade import amqpcheck, app, claims, fleet, guards, tables, unplanned
from upgrade import plan as plan_mod
from upgrade.errors import BusyError, UserError
from upgrade.plan import Plan, SideSpec

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
SPACE_FACTOR = 1.2
SKEW_WARN, SKEW_FAIL = 2.0, 60.0


@dataclass(frozen=True)
class Result:
    check: str
    status: str
    detail: str
    remedy: str = ""

    def row(self) -> dict[str, Any]:
        return asdict(self)


def exit_code(results: list[Result]) -> int:
    statuses = {r.status for r in results}
    return 2 if FAIL in statuses else 1 if WARN in statuses else 0


#: the last line of the table: what the exit code means for `upgrade run`
VERDICT = {0: "all checks passed", 1: "warnings: `upgrade run` would proceed; read them first",
           2: "failures: `upgrade run` would fail or is unsafe; fix them first"}


def write(results: list[Result], plan_path: str | Path, fmt: str, out: TextIO) -> None:
    """The checks as a table (status, check, detail; the remedy under the detail of a warning or a
    failure) between a title and the verdict, or as json or value rows of every field."""
    if fmt != "table":
        tables.render([r.row() for r in results], ("check", "status", "detail", "remedy"), fmt, out)
        return
    rows = [(r.status, r.check, r.detail + (f"\nremedy: {r.remedy}" if r.remedy and r.status in (WARN, FAIL) else ""))
            for r in results]
    out.write(f"upgrade check {plan_path}\n")
    out.write("".join(line + "\n" for line in tables.text(("status", "check", "detail"), rows)))
    out.write(VERDICT[exit_code(results)] + "\n")


# ---------------------------------------------------------------------- plan and release
def _jump(path: Path) -> Result:
    """Read from/to straight from the TOML, so an unsupported jump shows even when the plan is refused."""
    try:
        up = tomllib.loads(path.read_text()).get("upgrade", {})
        src, dst = up["from"], up["to"]
    except (OSError, ValueError, KeyError, AttributeError, TypeError, RecursionError):
        return Result("release jump", SKIP, "the plan names no readable upgrade.from and upgrade.to")
    if (msg := jump_error(str(src), str(dst))) is not None:
        return Result("release jump", FAIL, msg, "set upgrade.to to a supported target (`upgrade init` shows one)")
    return Result("release jump", OK, f"{src} -> {dst} is supported")


# ---------------------------------------------------------------------- hosts
def _commands(spec: SideSpec) -> list[str]:
    """The commands this controller must have (besides the service's *-manage, checked by release)."""
    control = spec.control.argv("status", "UNIT")[0]
    # mysql on the source: the old release's commands on the imported copy identify, from there, the server
    # they reach (services/steps/oncopy.py)
    tools = ["mysqldump", "mysql", "tar"] if spec.role == "source" else \
        ["mysqldump", "mysql", "tar", "chown", "stat", "mkdir"]
    return [control, *tools]


def hosts_reachable(plan: Plan) -> Iterator[Result]:
    for spec in (plan.source, plan.target):
        name = f"host {spec.role}"
        try:
            host = app.side(spec).host
            res = host.run(["true"], timeout=30)
        except (StepError, OSError, ValueError) as exc:
            yield Result(name, FAIL, f"{spec.host}: {exc}", f"make {spec.host} reachable, or fix {spec.role}.host")
            continue
        if res.rc != 0:
            yield Result(name, FAIL, f"`true` exited {res.rc} on {spec.host}", f"check {spec.role}.host")
            continue
        missing = []
        for cmd in _commands(spec):
            found = host.run(["sh", "-c", 'command -v -- "$1"', "sh", cmd], timeout=30)
            if found.rc != 0:
                missing.append(cmd)
        if missing:
            yield Result(name, FAIL, f"{spec.host} ({spec.role}) lacks {', '.join(missing)}",
                         f"install them there, or fix {spec.role}.service_control/control in the plan")
        else:
            yield Result(name, OK, f"{spec.host} ({spec.role}) answers; its commands are installed")


def clock_skew(plan: Plan) -> Iterator[Result]:
    for spec in (plan.source, plan.target):
        name = f"clock {spec.role}"
        try:
            host = app.side(spec).host
            before = time.time()
            res = host.run(["date", "+%s"], timeout=30)
            now = (before + time.time()) / 2
            skew = abs(int(res.stdout.strip()) + 0.5 - now)  # `date +%s` truncates: the mid-second is closest
        except (StepError, OSError, ValueError) as exc:
            yield Result(name, WARN, f"cannot read the clock of {spec.host}: {exc}", "check the host")
            continue
        detail = f"{spec.host} is {skew:.1f} s off this machine's clock"
        fix = f"synchronise the clocks (chrony/ntp) of {spec.host} and this machine"
        if skew > SKEW_FAIL:
            yield Result(name, FAIL, detail, fix)
        elif skew > SKEW_WARN:
            yield Result(name, WARN, detail, fix + "; journal times will disagree with the hosts' logs")
        else:
            yield Result(name, OK, detail)


# ---------------------------------------------------------------------- databases
def db_access(plan: Plan) -> Iterator[Result]:
    dbs = [st.db_name for st in plan.service_settings.values()]
    for spec, needed in ((plan.source, preflight.SOURCE_PRIVILEGES), (plan.target, preflight.TARGET_PRIVILEGES)):
        ep = spec.db
        name = f"db {spec.role}"
        try:
            missing = preflight.missing_privileges(ep, needed, dbs)
        except StepError as exc:
            yield Result(name, FAIL, str(exc), f"fix [{spec.role}.db] in {plan.path}")
            continue
        if missing:
            yield Result(name, FAIL, f"{ep.admin_user}@{ep.address}:{ep.port} lacks {', '.join(missing)}",
                         f"GRANT ALL PRIVILEGES ON *.* TO that account WITH GRANT OPTION, or use another "
                         f"{spec.role}.db.admin_user")
        else:
            yield Result(name, OK, f"{ep.admin_user}@{ep.address}:{ep.port} logs in with the privileges needed")
    try:
        errors = app.source_errors(plan)
    except StepError:
        return  # the DB server or the source host: reported above
    for name, problems in errors.items():
        if problems:
            yield Result(f"db {name}", FAIL, "; ".join(problems), "see the message: each names its fix")
        else:
            yield Result(f"db {name}", OK, f"the source's {name} databases and config fit "
                                           f"{plan.from_release} -> {plan.to_release}")


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def charset(plan: Plan) -> Iterator[Result]:
    """Per service with databases: what its non-utf8 text columns hold (counts per table and column),
    refusals (a mixed column, a 4-byte character where the target takes only utf8mb3) and text an
    earlier conversion double-encoded. Every database of the jump, every service."""
    jump = Jump(plan.from_release, plan.to_release)
    for name, st in plan.service_settings.items():
        if name in registry.NO_DATABASE:
            continue
        label = f"charset {name}"
        try:
            found = preflight.charset_findings(plan.source.db, name, jump, st)
        except StepError:
            continue  # the DB server: reported by db source
        repair = set(st.options.get("repair_double_encoded") or [])
        rows: list[tuple[str, str, str]] = []
        for err in preflight.repair_errors(name, jump, st):
            rows.append((FAIL, err, f"fix [services.{name}] repair_double_encoded in {plan.path}"))
        for f in found:
            if f.refusals:
                rows.append((FAIL, "; ".join(f.refusals), "fix the rows named on the source (nothing was changed)"))
            elif f.tables and f.target:
                rows.append((OK, f"{len(f.tables)} non-utf8 table(s) of {f.db} are converted to {f.target}, each "
                                 f"column by what it holds — {charset_mod.summary(f.scans) or 'no text columns'}", ""))
            elif f.tables:
                mixed = [s.name for s in f.scans if s.kind == "mixed"]
                rows.append((WARN, f"not utf8, carried over byte for byte: {', '.join(sorted(f.tables))} — "
                                   f"{charset_mod.summary(f.scans) or 'no text columns'}",
                             "convert them by hand before the upgrade, each column by what it holds"
                             + (f" (the mixed columns {', '.join(mixed)} first: fix their rows)" if mixed else "")))
            for d in f.doubles:
                entry = f"{f.db}.{d.name}"
                seen = f"{d.rows} row(s) of {entry} look double-encoded (key {', '.join(d.keys[:3])}" \
                       f"{', …' if d.rows > 3 else ''}: {_short(d.sample[0])!r} would read {_short(d.sample[1])!r})"
                if entry in repair or f"{f.db}.{d.table}" in repair:
                    rows.append((OK, seen + "; repaired on the target after the import (repair_double_encoded)", ""))
                else:
                    rows.append((WARN, seen, f"add \"{entry}\" to repair_double_encoded in [services.{name}] to "
                                             "repair it on the target (journaled, undone by revert), or leave it"))
            if not f.tables and not f.doubles:
                rows.append((OK, f"every table of {f.db} is utf8", ""))
        if not rows:
            continue
        status = FAIL if any(r[0] == FAIL for r in rows) else WARN if any(r[0] == WARN for r in rows) else OK
        yield Result(label, status, "; ".join(r[1] for r in rows),
                     "; ".join(r[2] for r in rows if r[2] and r[0] != OK))


# ---------------------------------------------------------------------- space
def _free(path: Path) -> tuple[Path, int]:
    """Free bytes for an unprivileged writer at *path* or, if it does not exist yet, its nearest parent."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    return p, st.f_bavail * st.f_frsize


def _estimate(plan: Plan) -> tuple[int, int]:
    """(source dumps, target backups) in bytes; both go into the vault."""
    dbs = [st.db_name for st in plan.service_settings.values()]
    return preflight.data_bytes(plan.source.db, dbs), preflight.data_bytes(plan.target.db, dbs)


def space(plan: Plan) -> Iterator[Result]:
    try:
        src, tgt = _estimate(plan)
    except StepError as exc:
        yield Result("space", FAIL, f"cannot estimate the dump size: {exc}", "fix the DB access first")
        return
    need = int((src + tgt) * SPACE_FACTOR)
    dirs = [("journal", plan.journal_dir)] + ([("vault", plan.artifact_dir)] if plan.artifact_dir else [])
    for what, d in dirs:
        at, free = _free(d)
        detail = (f"{d}: {decimal(free)} free on {at}; dumps and backups need about {decimal(need)} "
                  f"({decimal(src + tgt)} of tables × {SPACE_FACTOR})")
        if free < need:
            key = "vault.dir" if what == "vault" else "upgrade.journal (or vault.dir)"
            yield Result(f"space {what}", FAIL, detail, f"free space there, or point {key} at a larger disk")
        else:
            yield Result(f"space {what}", OK, detail)
    ep = plan.target.db
    try:
        where = preflight.datadir(ep)
    except StepError:
        return
    if not preflight.is_loopback(ep.address) or not Path(where).is_dir():
        yield Result("space target datadir", WARN, f"cannot check: the target DB server's datadir {where} is not "
                     "on this machine", f"make sure it has {decimal(int(src * SPACE_FACTOR))} free")
        return
    at, free = _free(Path(where))
    need_db = int(src * SPACE_FACTOR)
    detail = f"{where}: {decimal(free)} free; the import needs about {decimal(need_db)}"
    if free < need_db:
        yield Result("space target datadir", FAIL, detail, f"free space on the disk of {where}")
    else:
        yield Result("space target datadir", OK, detail)


# ---------------------------------------------------------------------- releases installed
def releases(plan: Plan) -> Iterator[Result]:
    for name in plan.services:
        for spec, release, status in ((plan.target, plan.to_release, FAIL), (plan.source, plan.from_release, WARN)):
            svc = registry.spec(name)
            tool = svc.version_command_for(release)
            label = f"{name} {spec.role}"
            want = svc.expected_major(release)
            try:
                version = preflight.manage_version(app.side(spec).host, spec.bin, name, release)
            except (StepError, OSError, ValueError) as exc:
                where = f"in {spec.bin}" if spec.bin else "on the PATH"
                yield Result(label, status, f"{tool} {where} on {spec.host} does not run: {exc}",
                             f"install {name} {release} on the {spec.role} controller, or fix {spec.role}.bin")
                continue
            got = preflight.major(version)
            if want is None:
                yield Result(label, WARN, f"{tool} is {version}; the release table does not know {name} {release}",
                             "check the version by hand")
            elif got != want:
                seen = svc.release_of(got) if got is not None else None
                yield Result(label, status, f"{tool} in {spec.bin or 'PATH'} is {version}"
                             f"{f' ({seen})' if seen else ''}; the plan says {release} (major {want})",
                             f"install {name} {release} there, or fix {spec.role}.bin or upgrade."
                             f"{'to' if spec.role == 'target' else 'from'}")
            elif spec.role == "target" and (why := preflight.version_refusal(name, release, version)) is not None:
                yield Result(label, FAIL, f"{tool} in {spec.bin or 'PATH'} is {version}: {why.split(' — ')[0]}",
                             why.split(" — ", 1)[-1])
            else:
                yield Result(label, OK, f"{tool} {version} = {release}")


# ---------------------------------------------------------------------- nova's compute rows
def compute_rows(plan: Plan) -> Iterator[Result]:
    """nova-compute rows of hosts that no longer exist (not among the plan's [[computes]] when it lists
    any, else silent longer than nova's service_down_time): a warning, a failure when the new
    nova-conductor would refuse to start because of them."""
    if "nova" not in plan.services:
        return
    jump = Jump(plan.from_release, plan.to_release)
    st = plan.service_settings["nova"]
    try:
        rows = novadb.stale_computes(plan.source.db, st, jump, [c.settings.name for c in plan.computes])
    except StepError as exc:
        yield Result("compute rows", SKIP, f"cannot read nova's services table: {exc}")
        return
    if not rows:
        yield Result("compute rows", OK, "every nova-compute row that counts is of a host that exists")
        return
    detail, fix = novadb.describe(rows, st.db_name, jump)
    yield Result("compute rows", FAIL if any(r.blocks for r in rows) else WARN, detail, fix)


# ---------------------------------------------------------------------- key, journal
def key(plan: Plan) -> Iterator[Result]:
    if plan.key_file is None:
        env = plan.passphrase_env or ""
        if os.environ.get(env):
            yield Result("vault key", OK, f"passphrase from ${env}")
        else:
            yield Result("vault key", WARN, f"${env} is not set: `upgrade run` will ask for the passphrase",
                         f"export {env}, or run from a terminal")
        return
    try:
        k = vault.Key.from_file(plan.key_file)
    except vault.VaultError as exc:
        keygen = f"upgrade keygen {shlex.quote(str(plan.key_file))}"
        yield Result("vault key", FAIL, str(exc), f"create it with `{keygen}` or fix vault.key_file")
        return
    yield Result("vault key", OK, f"{plan.key_file} is private (0600), key id {k.key_id}")


def journal(plan: Plan) -> Iterator[Result]:
    d = plan.journal_dir
    if (problem := guards.private_dir_problem(d)) is not None:
        yield Result("journal", FAIL, problem, f"chmod 700 {d}")
        return
    if not (d / "journal.db").exists():
        yield Result("journal", OK, f"{d} holds no run yet")
        return
    j = app.open_journal(d, app.redactor_for(plan), create=False)
    try:
        open_run = j.unfinished_run()
    finally:
        j.close()
    if open_run is not None:
        yield Result("journal", FAIL, f"run {open_run['id']} in {d} is unfinished ({open_run['status']})",
                     f"upgrade resume --journal {d}, or upgrade revert --journal {d}")
    else:
        yield Result("journal", OK, f"{d}: no unfinished run")


def identity(plan: Plan) -> Iterator[Result]:
    """The target is another controller: its DB server and directories are not the source's by identity."""
    source, target = app.side(plan.source), app.side(plan.target)
    try:
        ids, same = ident.server_conflict(source, target)
    except StepError:
        yield Result("identity db", SKIP, "a DB server does not answer (reported above)")
    else:
        if same:
            yield Result("identity db", FAIL, same, "the target must be the new controller's DB server")
        else:
            yield Result("identity db", OK, f"two servers: source {ids.source.describe()}; target "
                                            f"{ids.target.describe()}")
    try:
        problems = ident.directory_conflicts(source, target, plan.services)
    except StepError as exc:
        yield Result("identity dirs", SKIP, f"cannot identify the directories: {exc}")
        return
    if problems:
        yield Result("identity dirs", FAIL, "; ".join(problems), "the target's etc and lib must be the new "
                                                                 "controller's own directories")
    else:
        yield Result("identity dirs", OK, "the target's etc and lib directories are not the source's")
    yield from _identity_members(plan)


def _identity_members(plan: Plan) -> Iterator[Result]:
    """An HA plan: no new member is an old one, no side lists one controller twice (``claims.member_findings``)."""
    try:
        found = claims.member_findings(plan)
    except StepError as exc:
        yield Result("identity members", SKIP, f"cannot identify the members: {exc}")
        return
    if found is None:
        return
    if found.problems:
        yield Result("identity members", FAIL, "; ".join(found.problems),
                     "a new member is never an old one, and each side lists each controller once")
        return
    down = f"; DB server not reached (compared by directories): {', '.join(found.unreached)}" if found.unreached \
        else ""
    yield Result("identity members", OK, "every member of both sides is its own controller (DB server, etc and lib)"
                 + down)


def claim(plan: Plan) -> Iterator[Result]:
    """No other run claims the target (wherever its journal is)."""
    try:
        claims.refuse_if_claimed(plan, plan.journal_dir, own=True)
    except BusyError as exc:
        yield Result("claim", FAIL, str(exc).split(" — ", 1)[0], str(exc).split(" — ", 1)[-1])
    except UserError as exc:
        yield Result("claim", SKIP, str(exc))
    else:
        yield Result("claim", OK, "no run claims the target")


def addresses(plan: Plan) -> Iterator[Result]:
    """The service addresses that move at cut-over are on the old controller and not on the new one."""
    network = getattr(plan, "network", None)
    moves = list(network.settings.addresses) if network else []
    if not moves:
        yield Result("addresses", SKIP, "no addresses in the plan")
        return
    try:
        src, dst = app.side(plan.source).host, app.side(plan.target).host
        for m in moves:
            on_src, on_dst = net.holds(src, m), net.holds(dst, m)
            if on_dst:
                yield Result(f"address {m.name}", FAIL, f"{m.address} is already on the new controller "
                             f"({dst.name}, {m.device})", "a previous switch left it there: `upgrade revert` that "
                             f"run, or `ip addr del {m.address} dev {m.device}` on the new controller")
            elif not on_src:
                yield Result(f"address {m.name}", FAIL, f"{m.address} is not on the old controller ({src.name}, "
                             f"{m.device})", "fix [network] addresses (address and device) in the plan")
            else:
                yield Result(f"address {m.name}", OK, f"{m.address} on {src.name} {m.device}, free on {dst.name}")
    except StepError as exc:
        yield Result("addresses", FAIL, str(exc), "make both controllers reachable, then check again")
    try:
        found = fleet.address_problems(plan)
    except StepError as exc:
        yield Result("address config", FAIL, f"cannot read the old controller's network configuration: {exc}",
                     "make the old controller reachable, then check again")
        return
    for problem, fix in found:
        yield Result("address config", FAIL, problem, fix)
    if not found:
        yield Result("address config", OK, "no HA manager, and the old controller's network configuration "
                                           "(if it names the addresses) is one the switchover edits")


def unplanned_services(plan: Plan) -> Iterator[Result]:
    """Every service the source runs (keystone catalog, daemons) is upgraded by the plan or ignored with a reason."""
    try:
        found = unplanned.findings(plan)
    except (StepError, OSError) as exc:
        yield Result("services", SKIP, f"cannot inventory the old controller: {exc}")
        return
    for f in found:
        yield Result(f"service {f.name}", FAIL, f"the old controller runs {f.describe()}, which the plan does not "
                     "name: it would keep running against the moved address", unplanned.fix(plan, f))
    if not found:
        ignored = f"; ignored: {', '.join(f'{k} ({v})' for k, v in plan.ignore.items())}" if plan.ignore else ""
        yield Result("services", OK, "every service in the old controller's catalog and among its daemons is in "
                                     f"the plan{ignored}")


def shipped_files(plan: Plan) -> Iterator[Result]:
    """The operator's changes to the files a release ships (paste pipelines, policies, rootwrap filters) that
    the target keeps its own release's copy of: the run carries them not, so they are said before it
    (services/steps/shipped.py)."""
    try:
        ctx = app.read_context(plan)
        found = {name: shipped.operator_changes(ctx, name) for name in plan.services}
    except (StepError, OSError) as exc:
        yield Result("shipped config files", SKIP, f"cannot compare them: {exc}")
        return
    for name, changes in found.items():
        for why in changes:
            yield Result(f"{name} config", WARN, why, "merge the change into the target's file, before the run or "
                                                      "after it (a target file that differs from its release's "
                                                      "shipped copy counts as merged: the warning goes)")
    if not any(found.values()):
        yield Result("shipped config files", OK, "no operator change to a paste, policy or rootwrap file that the "
                                                 "target's release replaces")


def volumes_in_use(plan: Plan) -> Iterator[Result]:
    """cinder's volume copy: no instance that is not shut off has a copied volume attached, no volume
    is in an operation (the refusals of `upgrade run`, read on the source DB)."""
    st = plan.service_settings.get("cinder")
    if st is None or not st.options.get("copy_volumes"):
        return
    try:
        problems = app.volume_errors(plan)
    except (StepError, OSError) as exc:
        yield Result("volumes", SKIP, f"cannot read cinder's volumes: {exc}")
        return
    for p in problems:
        yield Result("volumes", FAIL, p, "`upgrade run` refuses the copy until then (nothing is changed)")
    if not problems:
        yield Result("volumes", OK, "every volume the copy moves is at rest (no instance that is not shut off "
                                    "has one attached)")


def message_queue(plan: Plan) -> Iterator[Result]:
    """Every transport_url the source configs carry over logs in on the new controller's broker, with its
    vhost and permissions."""
    try:
        found = amqpcheck.logins(plan)
    except StepError as exc:
        yield Result("amqp", SKIP, f"cannot read the source configs: {exc}")
        return
    if not found:
        yield Result("amqp", SKIP, "no transport_url in the source configs of the plan's services")
        return
    if not plan.amqp_broker:
        yield Result("amqp", SKIP, f"{len(found)} transport_url login(s) in the source configs, not tried: the plan "
                                   "names no [amqp] broker (the new controller's RabbitMQ)")
        return
    problems = broker.problems(found, plan.amqp_broker)
    for problem, fix in problems:
        yield Result("amqp", FAIL, problem, fix)
    if not problems:
        shown = sorted({lg.shown for lg in found})
        yield Result("amqp", OK, f"the new controller's broker {plan.amqp_broker} takes {', '.join(shown)} "
                                 "(login, vhost, configure/write/read)")


# ---------------------------------------------------------------------- the cloud after the cut-over
def cloud(plan: Plan) -> Iterator[Result]:
    """What the run's last step (``[cloud]``) will wait for, read on the old controller now: a nova-compute,
    neutron agent or cinder-volume its own service already calls down would keep that step waiting until
    its timeout (the run then stops there, resumable): fix it or delete it before the run. A plan without
    ``[cloud]`` has no such step: no row."""
    if plan.cloud is None:
        return
    try:
        silent = cloudcheck.down(plan.source.db, plan.cloud)
    except StepError as exc:
        yield Result("cloud", SKIP, f"cannot read the old controller's heartbeats: {exc}")
        return
    if silent:
        yield Result("cloud", WARN, f"{len(silent)} reporter(s) already down on the old controller: "
                                    f"{', '.join(silent)}; the run's last step would wait "
                                    f"{plan.cloud.timeout:.0f} s for them, then stop (resumable)",
                     "start each one (its service on that host), or delete the services of hosts that are gone "
                     "(`openstack compute service delete`, `openstack network agent delete`, "
                     "`cinder-manage service remove`)")
        return
    yield Result("cloud", OK, f"every reporter the run's last step waits for reports now "
                              f"({plan.cloud.timeout:.0f} s at most after the cut-over)")


CHECKS: tuple[Callable[[Plan], Iterator[Result]], ...] = (
    hosts_reachable, db_access, identity, releases, compute_rows, space, charset, key, journal, claim,
    clock_skew, addresses, unplanned_services, shipped_files, volumes_in_use, message_queue, cloud)


def run_checks(path: str | Path) -> list[Result]:
    """Every check for the plan at *path*; a plan that does not load ends the list early."""
    p = Path(path)
    try:
        plan = plan_mod.load(p)
    except plan_mod.PlanError as exc:
        return [Result("plan", FAIL, str(exc), "fix the plan (`upgrade init` prints a complete example)"), _jump(p)]
    app.redactor_for(plan)
    # an HA plan: each DB node of both groups first; the checks after it read the old member the run would
    # work through (the plan's own `host` unless its node is down)
    findings, working = fleet.cluster(plan)
    plan = fleet.through_member(plan, working)
    results = [Result("plan", OK, f"{plan.path} is valid"), _jump(p),
               *(Result(f"cluster {node}", status, detail, remedy) for status, node, detail, remedy in findings)]
    for check in CHECKS:
        results.extend(check(plan))
    return results
