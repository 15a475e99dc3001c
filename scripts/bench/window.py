"""Maintenance window benchmark (issue #8): the tool against the runbook's commands run by hand.

    python -m scripts.bench.window [--trials 3] [--large] [--keep DIR]
    BENCH_WINDOW_TRIALS=3 BENCH_WINDOW_LARGE=1 make bench    # the same through `make bench`

On the full lab (``python -m scripts.lab up``: 2025.2 -> 2026.1, all six services), built once,
stopped and copied (``cp -a``); before every trial the copy is put back at the same path (the
lab's state holds absolute paths) and started, so every trial starts from the same seeded
state. Trials alternate (a) the hand-run script (``scripts/bench/handrun.py``: the runbook's
commands in sequence, no journal, no encryption), (b) ``upgrade run`` with ``service_pool = 1``
(the runbook's strict sequence) and (c) ``upgrade run`` with the default overlap (2). After each
trial the keystone/glance APIs on the management address must show what the old controller
showed before (``scripts.lab.verify.api_view``), so a trial that did less work cannot count.

``BENCH_WINDOW_POOL=3``: (c) with three services side by side instead of the default two.
``--large`` grows the old controller's nova DB to >= 1 GiB (``BENCH_WINDOW_NOVA_GIB=1,5``: 1 GiB, then
5 GiB, each measured once) (instances, instance_actions,
instance_actions_events, by INSERT ... SELECT inside the server) and keystone to 100k users
with their role assignments before the snapshot, then runs each variant once more.

``--once b`` (``BENCH_WINDOW_ONCE=b``) with ``BENCH_WINDOW_NOVA_GIB=5``: only that variant, once, on the lab
as grown (no snapshot, no restore: one copy of 5 GiB less to write twice), its sizes read before it; with
``--raw-pipe`` (``BENCH_WINDOW_RAW_PIPE=1``) the hand-run script's ``mariadb-dump | mariadb`` of nova's and
keystone's databases is timed after it, from the untouched old server into scratch databases of the new.

Everything lives in one temporary directory, removed at the end; with ``--keep DIR`` it is DIR
and stays (each trial's generated script, its phase log and the tool's output), and a campaign
already measured there (``results.json``) is read back and only rendered again. The lab is
brought down at the end whatever happens (failure, Ctrl-C, SIGTERM). Network: loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scripts.bench import cpuclock, handrun
from scripts.lab.proc import read_pid
from upgrade import tables

REPO = Path(__file__).resolve().parents[2]
UPGRADE = REPO / ".venv" / "bin" / "upgrade"
#: the pool of (c), the overlapping run (``BENCH_WINDOW_POOL``; default the plan's default, 2)
POOL_C = int(os.environ.get("BENCH_WINDOW_POOL", "2"))
VARIANTS = {"a": "hand-run script", "b": "tool, service_pool = 1", "c": f"tool, service_pool = {POOL_C}"}
KINDS = ("dump+import", "schema", "verify", "other")
#: tool steps with no counterpart in the script: the tool's extra work inside the window
EXTRA_STEPS = ("stop_target", "backup_target", "status_check", "agents", "transfer_volumes")
RSS_TARGET_MB = 150
TRIAL_TIMEOUT = 3600
RESULTS = "results.json"


@dataclass
class Trial:
    """One measured upgrade: per service (and ``total``) the window and seconds per kind."""

    variant: str
    index: int
    rows: dict[str, dict[str, float]]
    load: tuple[float, float]
    rss_mb: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    idle: float = 0.0
    #: the tool's seconds per step (``service.step``), from its progress lines
    steps: dict[str, float] = field(default_factory=dict)
    #: the tool's own work inside the window, by kind (what its steps report under ``overhead``)
    overhead: dict[str, float] = field(default_factory=dict)
    #: (b)/(c): ``upgrade revert`` of the completed run (``run_revert``): its seconds, the undos' span
    revert: dict[str, float] = field(default_factory=dict)
    #: the CPU work of the window (``window_cpu``): the machine's busy core-seconds, the database servers', the
    #: tool's own process (the whole run), the cores, and the window it bounds (core-seconds / cores)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def window(self) -> float:
        return self.rows["total"]["window"]


# ---------------------------------------------------------------------- the lab
def lab_cli(action: str, lab: Path, check: bool = True) -> str:
    """``python -m scripts.lab ACTION DIR`` in a child (as an operator would start it)."""
    res = subprocess.run([sys.executable, "-m", "scripts.lab", action, str(lab)], cwd=REPO, capture_output=True,
                         text=True, timeout=1800)
    if check and res.returncode != 0:
        raise RuntimeError(f"lab {action} {lab} failed:\n{res.stderr[-3000:]}")
    return res.stdout


def state(lab: Path) -> dict[str, Any]:
    return json.loads((lab / "lab-state.json").read_text())


def api_view(lab: Path) -> dict[str, Any]:
    """What keystone and glance serve on the management address (whichever controller serves)."""
    from scripts.lab.verify import api_view as view

    st = state(lab)
    glance = st.get("glance_port")
    return view(st["seed"], f"http://127.0.0.1:{st['keystone_port']}/v3",
                f"http://127.0.0.1:{glance}" if glance else None)


def new_db_view(lab: Path) -> dict[str, Any]:
    """Schema revisions and cell mappings on the new DB server: the same after script and tool."""
    from scripts.lab.mariadb import MariaDB
    from scripts.lab.verify import db_view

    st = state(lab)
    return db_view(MariaDB(Path(st["new"]["db_base"]), st["new"]["db_port"]), tuple(st["services"]))


def build(bench: Path, large: bool, nova_mb: float = 1024) -> tuple[dict[str, Any], float]:
    """Build the lab once (grown with ``large``, nova to *nova_mb*), record what it serves, stop it, snapshot it."""
    lab, snap = bench / "lab", bench / "snap"
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "scripts.lab", "up", str(lab)], cwd=REPO, check=True,
                   capture_output=True, timeout=1800)
    if large:
        from scripts.bench import grow

        grow.grow(lab, nova_mb)
    before = api_view(lab)
    lab_cli("down", lab)
    subprocess.run(["cp", "-a", str(lab), str(snap)], check=True)
    return before, time.monotonic() - t0


def restore(bench: Path) -> None:
    """Down, put the snapshot back at the same path, up: the same seeded state for every trial."""
    lab = bench / "lab"
    if (lab / "lab-state.json").exists():
        lab_cli("down", lab, check=False)
    shutil.rmtree(lab, ignore_errors=True)
    subprocess.run(["cp", "-a", str(bench / "snap"), str(lab)], check=True)
    lab_cli("up", lab)


# ---------------------------------------------------------------------- the variants
def run_script(bench: Path, index: int) -> Trial:
    """(a): generate the script from the restored lab, run it with bash, read its timestamps."""
    lab, out = bench / "lab", bench / f"trial-a{index}"
    script, log = handrun.write(lab, out)
    load0 = os.getloadavg()[0]
    with (out / "output.txt").open("w") as fh:
        res = subprocess.run(["bash", str(script)], stdout=fh, stderr=subprocess.STDOUT, timeout=TRIAL_TIMEOUT)
    if res.returncode != 0:
        raise RuntimeError(f"hand-run script failed (rc {res.returncode}): {(out / 'output.txt').read_text()[-3000:]}")
    return Trial("a", index, handrun.parse_log(log), (load0, os.getloadavg()[0]))


def peak_rss(proc: subprocess.Popen, every: float = 0.05) -> tuple[float, float]:
    """VmHWM of the process itself (not its children: mysqldump, *-manage), sampled until it exits, and its
    own CPU seconds (its threads, not its children) as last seen before it exited."""
    hwm, cpu = 0, 0.0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm = max(hwm, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        cpu = cpuclock.process_cpu(proc.pid) or cpu
        time.sleep(every)
    return hwm / 1024, cpu


def set_pool(plan: Path, pool: int) -> None:
    text = plan.read_text()
    plan.write_text(text.replace("[upgrade]\n", f"[upgrade]\nservice_pool = {pool}\n", 1))


def run_tool(bench: Path, index: int, variant: str) -> Trial:
    """(b)/(c): ``upgrade run`` with the given pool; the window and its kinds from the journal."""
    lab, out = bench / "lab", bench / f"trial-{variant}{index}"
    out.mkdir(parents=True, exist_ok=True)
    set_pool(lab / "plan.toml", 1 if variant == "b" else POOL_C)
    load0 = os.getloadavg()[0]
    with (out / "output.txt").open("w") as fh:
        proc = subprocess.Popen([str(UPGRADE), "run", str(lab / "plan.toml")], stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            rss, own_cpu = peak_rss(proc)
        except BaseException:  # interrupted: the run must not go on against a lab that is going down
            proc.terminate()
            proc.wait(60)
            raise
    if proc.returncode != 0:
        raise RuntimeError(f"upgrade run failed (rc {proc.returncode}): {(out / 'output.txt').read_text()[-3000:]}")
    rows, extra, idle, own = journal_window(lab / "journal")
    return Trial(variant, index, rows, (load0, os.getloadavg()[0]), rss, extra, idle, progress_steps(out), own,
                 cpu={"tool": own_cpu})


def db_pids(lab: Path) -> list[int]:
    """The lab's two database servers (old and new controller), by the pid files the lab wrote."""
    pids = (read_pid(lab / db / "run" / "lab-mariadbd.pid") for db in ("db-old", "db-new"))
    return [p for p in pids if p]


def run_variant(bench: Path, variant: str, index: int) -> Trial:
    """Run one variant on the lab as it stands, with the CPU it costs measured (``window_cpu``)."""
    lab = bench / "lab"
    with cpuclock.CpuClock(db_pids(lab)) as clock:
        t = run_script(bench, index) if variant == "a" else run_tool(bench, index, variant)
    t.cpu.update(window_cpu(clock, t))
    return t


def window_cpu(clock: cpuclock.CpuClock, t: Trial) -> dict[str, float]:
    """The window's CPU work: core-seconds the machine was busy from its first stop to its last verify, of
    which the database servers'; and the shortest window that work allows on this machine's cores."""
    start, end = t.rows["total"]["start"], t.rows["total"]["end"]
    cores = os.cpu_count() or 1
    busy = clock.machine(start, end)
    dbs = [clock.process(p, start, end) for p in clock.pids]
    out = {"window": busy, "cores": float(cores), "bound": busy / cores, "busy_cores": busy / (end - start)}
    if dbs and all(d is not None for d in dbs):
        out["db"] = sum(d for d in dbs if d is not None)
    return out


def run_revert(bench: Path, trial_dir: Path) -> dict[str, float]:
    """``upgrade revert`` of the trial's completed run, as an operator going back would type it: the command's
    seconds (until the old controller's APIs listen again) and, from the journal, the undos' span (the first
    ``undo_intent`` to the last ``undone``)."""
    from journal.store import Journal

    lab = bench / "lab"
    t0 = time.monotonic()
    with (trial_dir / "revert.txt").open("w") as fh:
        res = subprocess.run([str(UPGRADE), "revert", "--journal", str(lab / "journal")], stdout=fh,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=TRIAL_TIMEOUT)
    seconds = time.monotonic() - t0
    if res.returncode != 0:
        raise RuntimeError(f"upgrade revert failed (rc {res.returncode}): "
                           f"{(trial_dir / 'revert.txt').read_text()[-3000:]}")
    j = Journal(lab / "journal", create=False)
    try:
        events = j.events(j.latest_run()["id"])
    finally:
        j.close()
    began = [e.ts for e in events if e.kind == "undo_intent"]
    ended = [e.ts for e in events if e.kind == "undone"]
    return {"command": seconds, "undos": max(ended) - min(began) if began and ended else 0.0}


def progress_steps(trial_dir: Path) -> dict[str, float]:
    """Seconds per step from the run's progress lines (``[40/75] nova.import_db  done  8.8 s``)."""
    out: dict[str, float] = {}
    for line in (trial_dir / "output.txt").read_text().splitlines():
        f = line.split()
        if len(f) >= 4 and f[0].startswith("[") and f[2] == "done":
            out[f[1]] = float(f[3])
    return out


def dumped(trial_dir: Path, step: str) -> str:
    """The bytes a dump step reports in its progress line (``632.8 MB``), or ``?``."""
    try:
        lines = (trial_dir / "output.txt").read_text().splitlines()
    except OSError:
        return "?"
    for line in lines:
        f = line.split()
        if len(f) >= 7 and f[1] == step and f[2] == "done":
            return f"{f[5]} {f[6]}"
    return "?"


def journal_window(journal_dir: Path) -> tuple[dict[str, dict[str, float]], dict[str, float], float,
                                                dict[str, float]]:
    """Per service and total from ``upgrade.window`` (dump and import summed into one kind, as the
    script's pipe cannot tell them apart; both also kept; ``after``: the steps run after the last
    verify, the online migrations), the extra steps' seconds, the idle time, and the overhead the
    steps inside the window report (``services/overhead.py``)."""
    from journal.store import Journal
    from upgrade import window

    j = Journal(journal_dir, create=False)
    try:
        events = j.events(j.latest_run()["id"])
    finally:
        j.close()
    rw = window.measure(events)
    rows: dict[str, dict[str, float]] = {}
    for w in rw.services:
        rows[w.service] = _kinds(w.phases, w.seconds(0))
    total = _kinds(rw.phases(), rw.seconds(0))
    total.update(start=rw.start, end=rw.end)  # epoch seconds: where the window's CPU work is read
    rows["total"] = total
    extra = step_seconds(events, rw)
    idle = max(0.0, total["window"] - sum(rw.phases().values()))
    own: dict[str, float] = {}
    began: dict[str, float] = {}
    total["after"] = 0.0
    for e in events:
        if e.kind == "intent" and e.step:
            began[e.step] = e.ts
        elif e.kind == "done" and e.step in began:
            if began[e.step] >= rw.end:
                total["after"] += e.ts - began[e.step]
            elif e.ts <= rw.end and began[e.step] >= rw.start:
                for kind, seconds in ((e.result or {}).get("overhead") or {}).items():
                    own[kind] = own.get(kind, 0.0) + seconds
    return rows, extra, idle, own


def _kinds(phases: dict[str, float], seconds: float) -> dict[str, float]:
    return {"dump": phases["dump"], "import": phases["import"], "dump+import": phases["dump"] + phases["import"],
            "schema": phases["schema"], "verify": phases["verify"], "other": phases["other"], "window": seconds}


def step_seconds(events: list[Any], rw: Any) -> dict[str, float]:
    """Seconds of the steps without a counterpart in the script (``EXTRA_STEPS``) inside a window,
    and of status_check alone (it counts as verify in the window's kinds)."""
    began: dict[str, float] = {}
    out: dict[str, float] = {}
    for e in events:
        if e.step is None:
            continue
        if e.kind == "intent":
            began[e.step] = e.ts
        elif e.kind == "done" and e.step in began:
            name = e.step.split(".", 1)[-1]
            if name in EXTRA_STEPS:
                out[name] = out.get(name, 0.0) + e.ts - began[e.step]
    return out


# ---------------------------------------------------------------------- orchestration
def trial(bench: Path, variant: str, index: int, before: dict[str, Any], views: list[Any]) -> Trial:
    """Restore, run one variant, check the result serves what the old controller served, down."""
    restore(bench)
    try:
        t = run_variant(bench, variant, index)
        after = api_view(bench / "lab")
        if after != before:
            raise RuntimeError(f"variant {variant} trial {index}: the upgraded lab does not serve the same data:\n"
                               f"before {before}\nafter {after}")
        views.append(new_db_view(bench / "lab"))
        if variant != "a":  # the way back: the old controller serving what it served before
            t.revert = run_revert(bench, bench / f"trial-{variant}{index}")
            back = api_view(bench / "lab")
            if back != before:
                raise RuntimeError(f"variant {variant} trial {index}: after the revert the lab does not serve what "
                                   f"the old controller served:\nbefore {before}\nafter {back}")
    finally:
        lab_cli("down", bench / "lab", check=False)
    print(f"window: {variant}{index} {t.window:.1f} s (load {t.load[0]:.2f} -> {t.load[1]:.2f})", file=sys.stderr,
          flush=True)
    return t


def save(bench: Path, res: dict[str, Any]) -> None:
    """The campaign's measurements as JSON beside its trial dirs (``--keep`` reuses them)."""
    data = {**res, "trials": [asdict(t) for t in res["trials"]]}
    (bench / RESULTS).write_text(json.dumps(data, indent=1))


def load(bench: Path, trials: int) -> dict[str, Any] | None:
    """A finished campaign of ``trials`` rounds kept in ``bench``, or None."""
    try:
        data = json.loads((bench / RESULTS).read_text())
    except (OSError, ValueError):
        return None
    data["trials"] = [Trial(**{**t, "load": tuple(t["load"])}) for t in data["trials"]]
    for t in data["trials"]:  # kept before Trial had steps: read them from the trial's progress lines
        if t.variant != "a" and not t.steps:
            t.steps = progress_steps(bench / f"trial-{t.variant}{t.index}")
    for service in ("nova", "keystone"):
        data.setdefault(f"{service}_dump", dumped(bench / "trial-b1", f"{service}.dump_source"))
    data.setdefault("vault", vault_use(bench))
    return data if len(data["trials"]) == trials * len(VARIANTS) else None


def vault_use(bench: Path) -> dict[str, float] | None:
    """What the vault of the campaign's last tool trial holds (its lab stays as that trial left it): MiB on
    disk of the artifacts (``*.osuv``) and MiB of plaintext they carry (the journal's records), all of the run's
    dumps and backups; None when no trial left one."""
    journal_dir = bench / "lab" / "journal"
    files = list(journal_dir.rglob("*.osuv")) if journal_dir.is_dir() else []
    if not files:
        return None
    from journal.store import Journal

    j = Journal(journal_dir, create=False)
    try:
        plain = sum(int(a["bytes"] or 0) for a in j.artifacts())
    finally:
        j.close()
    return {"disk_mib": sum(f.stat().st_size for f in files) / 1048576, "plain_mib": plain / 1048576,
            "artifacts": len(files)}


def campaign(bench: Path, trials: int, large: bool, nova_mb: float = 1024) -> dict[str, Any]:
    """Build, then alternate a/b/c ``trials`` times; always leaves the lab down. A campaign
    already measured in ``bench`` (``--keep DIR`` of an earlier run) is read back, not re-run."""
    kept = load(bench, trials)
    if kept is not None:
        print(f"window: reusing the measurements in {bench / RESULTS}", file=sys.stderr)
        return kept
    if (bench / "lab" / "lab-state.json").exists():
        lab_cli("down", bench / "lab", check=False)
    shutil.rmtree(bench, ignore_errors=True)
    bench.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        before, built = build(bench, large, nova_mb)
        views: list[Any] = []
        results = [trial(bench, v, i, before, views) for i in range(1, trials + 1) for v in VARIANTS]
        same = all(v == views[0] for v in views)
        vault_now = vault_use(bench)  # before db_size puts the snapshot back over the last trial's lab
        res = {"trials": results, "built": built, "same_schema": same, "large": large,
               "size": db_size(bench) if large else None,
               "nova_dump": dumped(bench / "trial-b1", "nova.dump_source"),
               "keystone_dump": dumped(bench / "trial-b1", "keystone.dump_source"), "vault": vault_now}
        res["took"] = time.monotonic() - t0
        save(bench, res)
        return res
    finally:
        if (bench / "lab" / "lab-state.json").exists():
            lab_cli("down", bench / "lab", check=False)


def db_size(bench: Path) -> dict[str, float]:
    """MiB of nova's and keystone's tables on the snapshot's old server (measured after a restore)."""
    restore(bench)
    try:
        return lab_size(bench / "lab")
    finally:
        lab_cli("down", bench / "lab", check=False)


def lab_size(lab: Path) -> dict[str, float]:
    """MiB of nova's and keystone's tables on a running lab's old server, and keystone's users."""
    from scripts.lab.mariadb import MariaDB

    st = state(lab)
    db = MariaDB(Path(st["old"]["db_base"]), st["old"]["db_port"])
    rows = db.execute("SELECT table_schema, SUM(data_length + index_length) / 1048576"
                      " FROM information_schema.tables WHERE table_schema IN ('nova', 'keystone')"
                      " GROUP BY table_schema")
    users = db.execute("SELECT COUNT(*) FROM keystone.user")[0][0]
    return {**{r[0]: float(r[1]) for r in rows}, "users": float(users)}


def raw_pipe(lab: Path, out: Path) -> dict[str, float]:
    """Seconds of the hand-run script's pipe (``mariadb-dump ... | mariadb``, its options) per service moved, run
    after the trial from the old server (untouched) into scratch databases ``rawpipe_<db>`` of the new one, which
    are dropped again: the raw pipe's time on the same servers without a second build and restore."""
    hl = handrun.Lab.load(lab)
    out.mkdir(parents=True, exist_ok=True)
    oldcnf = handrun._client_file(out / "old.cnf", hl.admin_user, hl.passwords["old"], hl.old_port)
    newcnf = handrun._client_file(out / "new.cnf", hl.admin_user, hl.passwords["new"], hl.new_port)
    opts = handrun.DUMP.replace("--add-drop-database", "").split()
    took: dict[str, float] = {}
    for service in ("nova", "keystone"):
        t0 = time.monotonic()
        for db in handrun.DATABASES[service]:
            scratch = f"rawpipe_{db}"
            new = ["mariadb", f"--defaults-extra-file={newcnf}"]
            subprocess.run([*new, "-e", f"DROP DATABASE IF EXISTS `{scratch}`; CREATE DATABASE `{scratch}`"],
                           check=True, timeout=TRIAL_TIMEOUT)
            res = subprocess.run(f"mariadb-dump --defaults-extra-file={oldcnf} {' '.join(opts)} {db} | "
                                 f"mariadb --defaults-extra-file={newcnf} {scratch}", shell=True,
                                 executable="/bin/bash", timeout=TRIAL_TIMEOUT, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"raw pipe of {db} failed: {res.stderr[-2000:]}")
        took[service] = time.monotonic() - t0
        for db in handrun.DATABASES[service]:
            subprocess.run([*new, "-e", f"DROP DATABASE IF EXISTS `rawpipe_{db}`"], check=True,
                           timeout=TRIAL_TIMEOUT)
    took["load_end"] = os.getloadavg()[0]
    return took


def campaign_once(bench: Path, variant: str, nova_mb: float, pipe: bool) -> dict[str, Any]:
    """One trial of one variant on a lab grown to ``nova_mb`` (``--once``): no snapshot and no restore (the
    trial runs on the lab as grown), the sizes taken before it; the raw pipe after it (``--raw-pipe``), from
    the old server the trial left untouched. For the sizes one copy of the data set is too many (5 GiB)."""
    kept = bench / RESULTS
    if kept.exists():
        data = json.loads(kept.read_text())
        data["trials"] = [Trial(**{**t, "load": tuple(t["load"])}) for t in data["trials"]]
        print(f"window: reusing the measurements in {kept}", file=sys.stderr)
        return data
    lab = bench / "lab"
    if (lab / "lab-state.json").exists():
        lab_cli("down", lab, check=False)
    shutil.rmtree(bench, ignore_errors=True)
    bench.mkdir(parents=True)
    t0 = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "scripts.lab", "up", str(lab)], cwd=REPO, check=True,
                       capture_output=True, timeout=1800)
        print(f"window: lab up in {time.monotonic() - t0:.0f} s, growing nova to {nova_mb:.0f} MiB", file=sys.stderr,
              flush=True)
        from scripts.bench import grow

        grow.grow(lab, nova_mb)
        size = lab_size(lab)
        before = api_view(lab)
        built = time.monotonic() - t0
        print(f"window: built in {built:.0f} s: {size}", file=sys.stderr, flush=True)
        t = run_variant(bench, variant, 1)
        print(f"window: {variant}1 {t.window:.1f} s (load {t.load[0]:.2f} -> {t.load[1]:.2f}), peak RSS "
              f"{t.rss_mb} MiB", file=sys.stderr, flush=True)
        if api_view(lab) != before:
            raise RuntimeError(f"variant {variant}: the upgraded lab does not serve the same data")
        res = {"trials": [t], "built": built, "size": size, "large": True, "once": variant,
               "nova_dump": dumped(bench / f"trial-{variant}1", "nova.dump_source"),
               "keystone_dump": dumped(bench / f"trial-{variant}1", "keystone.dump_source"),
               "vault": vault_use(bench)}
        save(bench, res)
        if pipe:
            load0 = os.getloadavg()[0]
            res["pipe"] = {**raw_pipe(lab, bench / "pipe"), "load_start": load0}
            print(f"window: raw pipe {res['pipe']}", file=sys.stderr, flush=True)
        res["took"] = time.monotonic() - t0
        save(bench, res)
        return res
    finally:
        if (lab / "lab-state.json").exists():
            lab_cli("down", lab, check=False)


def once_lines(res: dict[str, Any]) -> list[str]:
    """The ``--once`` campaign's section lines: its one trial, the raw pipe if measured, the peak RSS."""
    t = res["trials"][0]
    size, pipe = res["size"], res.get("pipe")
    own = t.overhead.get("checks", 0.0) + t.overhead.get("vault", 0.0) + (t.idle if t.variant == "b" else 0.0)
    di = t.rows["total"]["dump+import"]
    lines = [f"Measured once (`--once {t.variant}`{' --raw-pipe' if pipe else ''}; "
             f"{res.get('took', res['built']) / 60:.0f} min, build and growth ({res['built'] / 60:.0f} min) "
             f"included): nova {size.get('nova', 0):.0f} MiB, keystone {size.get('keystone', 0):.0f} MiB "
             f"({size.get('users', 0):.0f} users; InnoDB data + index); the dumps are {res.get('nova_dump', '?')} "
             f"(nova) and {res.get('keystone_dump', '?')} (keystone) of SQL.", "",
             *tables.markdown(("", "seconds", "load 1-min (start -> end)"),
                              [(f"({t.variant}) {VARIANTS[t.variant]}, window", f"{t.window:.1f}",
                                f"{t.load[0]:.2f} -> {t.load[1]:.2f}"),
                               (f"({t.variant}) dump+import (streamed: vault and import at once)", f"{di:.1f}", ""),
                               (f"({t.variant}) schema / verify / other",
                                f"{t.rows['total']['schema']:.1f} / {t.rows['total']['verify']:.1f} / "
                                f"{t.rows['total']['other']:.1f}", ""),
                               *([("raw pipe, mariadb-dump into mariadb (nova + keystone, after the trial; "
                                   f"nova {pipe['nova']:.1f} s, keystone {pipe['keystone']:.1f} s)",
                                   f"{pipe['nova'] + pipe['keystone']:.1f}",
                                   f"{pipe['load_start']:.2f} -> {pipe['load_end']:.2f}")] if pipe else [])],
                              right=(1,)), "",
             f"The tool's peak RSS: {t.rss_mb:.1f} MiB (target <= {RSS_TARGET_MB} MB: "
             f"{'met' if (t.rss_mb or 0) <= RSS_TARGET_MB else 'NOT met'}). The tool's own work on the window's "
             f"path (what its steps waited for, and the runner and journal): {own:.1f} s ({own / t.window:.1%} of "
             f"the window; target 5 %: {'met' if own / t.window <= 0.05 else 'NOT met'}), of which checks "
             f"{t.overhead.get('checks', 0.0):.1f} s, the vault {t.overhead.get('vault', 0.0):.1f} s, the runner and "
             f"journal {t.idle:.1f} s. Done beside the data while it moved (CPU the machine spent, not waited "
             f"for): checks {t.overhead.get('checks_beside', 0.0):.1f} s (the source's counts and checksums while "
             f"it dumps, the target's table by table as each import ends), the vault "
             f"{t.overhead.get('vault_beside', 0.0):.1f} s (encryption and sha256 of the dump, its read-back)."]
    if pipe:
        lines.append(f"Dump+import against the raw pipe: {di / (pipe['nova'] + pipe['keystone']):.2f}x its time.")
    return lines


# ---------------------------------------------------------------------- the report
def stats(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def med(trials: list[Trial], service: str, key: str) -> float:
    return statistics.median(t.rows[service].get(key, 0.0) for t in trials)


def table(by: dict[str, list[Trial]], services: list[str]) -> list[str]:
    """Median seconds per service and kind, one row per service and variant."""
    rows = []
    for s in [*services, "total"]:
        for v, ts in by.items():
            split = "-" if v == "a" else f"{med(ts, s, 'dump'):.1f} / {med(ts, s, 'import'):.1f}"
            rows.append((s, f"({v})", f"{med(ts, s, 'window'):.1f}", f"{med(ts, s, 'dump+import'):.1f}", split,
                         f"{med(ts, s, 'schema'):.1f}", f"{med(ts, s, 'verify'):.1f}", f"{med(ts, s, 'other'):.1f}"))
    return tables.markdown(("service", "variant", "window (s)", "dump+import (s)", "dump / import (s)", "schema (s)",
                            "verify (s)", "other (s)"), rows, right=range(2, 8))


def ratios(by: dict[str, list[Trial]]) -> dict[str, list[float]]:
    """(b)/(a) and (c)/(a) per trial round (the trials of one round ran back to back)."""
    a = by["a"]
    return {v: [t.window / a[i].window for i, t in enumerate(by[v])] for v in ("b", "c")}


def overhead(by: dict[str, list[Trial]]) -> dict[str, float]:
    """The tool's own cost in the sequential run (b): measured directly (what its steps inside the
    window report as checks and vault time, and the window's time no step accounts for: the runner
    and its journal commits), and as the difference of the medians of (b) and (a) per kind."""
    a, b, c = by["a"], by["b"], by["c"]
    wa, wb = statistics.median(t.window for t in a), statistics.median(t.window for t in b)
    extra = {k: statistics.median(t.extra.get(k, 0.0) for t in b) for k in EXTRA_STEPS}
    cells = step_median(b, "nova.update_cells")
    checks = statistics.median(t.overhead.get("checks", 0.0) for t in b)
    vault = statistics.median(t.overhead.get("vault", 0.0) for t in b)
    idle = statistics.median(t.idle for t in b)
    shares = [(t.overhead.get("checks", 0.0) + t.overhead.get("vault", 0.0) + t.idle) / t.window for t in b]
    return {"window_a": wa, "window_b": wb, "delta": wb - wa, "cells": cells,
            "checks": checks, "vault": vault, "idle": idle, "own": checks + vault + idle,
            "share": statistics.median(shares), "share_max": max(shares),
            "checks_c": statistics.median(t.overhead.get("checks", 0.0) for t in c),
            "vault_c": statistics.median(t.overhead.get("vault", 0.0) for t in c),
            "share_c": statistics.median((t.overhead.get("checks", 0.0) + t.overhead.get("vault", 0.0)) / t.window
                                         for t in c),
            "dump_import": med(b, "total", "dump+import") - med(a, "total", "dump+import"),
            "schema": med(b, "total", "schema") + cells - med(a, "total", "schema"),
            "verify": med(b, "total", "verify") - med(a, "total", "verify"),
            "other": med(b, "total", "other") - cells - med(a, "total", "other"),
            "after_a": med(a, "total", "after"), "after_b": med(b, "total", "after"),
            "nova_import": step_median(b, "nova.import_db"), "nova_pipe": med(a, "nova", "dump+import"),
            "neutron_import": step_median(b, "neutron.import_db"), "neutron_pipe": med(a, "neutron", "dump+import"),
            **{f"step_{k}": v for k, v in extra.items()}}


def step_median(trials: list[Trial], step: str) -> float:
    return statistics.median(t.steps.get(step, 0.0) for t in trials)


def render(res: dict[str, Any], larges: list[dict[str, Any]], trials: int) -> str:
    large = larges[0] if larges else None
    by = {v: [t for t in res["trials"] if t.variant == v] for v in VARIANTS}
    services = [s for s in by["a"][0].rows if s != "total"]
    r, o = ratios(by), overhead(by)
    rss = {v: max(t.rss_mb or 0 for t in by[v]) for v in ("b", "c")}
    lines = ["## Maintenance window: the tool against a hand-run script (issue #8)", "",
             f"Full lab (`python -m scripts.lab up`: keystone and glance serving, placement/nova/neutron/cinder with "
             f"real schema and rows; 2025.2 -> 2026.1, six services), built once in {res['built']:.0f} s, stopped and "
             "copied with `cp -a`; before every trial the copy goes back to the same path and the lab starts, so every "
             f"trial starts from the same seeded state. {trials} rounds of (a) (b) (c), back to back "
             f"(`python -m scripts.bench.window`: {res['took'] / 60:.0f} min, build included):", "",
             "- (a) a plain bash script generated from the lab (`scripts/bench/handrun.py`; with `--keep DIR` each "
             "trial's script and phase log stay in DIR): "
             "per service in runbook order, stop the units on the old controller (`python -m scripts.lab.units`), "
             "`mariadb-dump --single-transaction --databases ... | mariadb` into the new server and the grants "
             "recreated, the config dir copied with the DB address and paths rewritten by `sed` (keystone's "
             "fernet/credential keys with it; nova's `[upgrade_levels]` pin and cinder's `target_ip_address` too), "
             "glance's image files `cp -a`, the target release's schema commands from each service's spec "
             "(`services/catalog/`) (the ones the tool runs: keystone `db_sync` then `db_sync --check`, "
             "glance `db sync` then `db check`, "
             "placement/nova/cinder `db sync`, nova `api_db sync` then `cell_v2 update_cell` for cell0 and cell1, "
             "neutron `upgrade heads`, cinder's previous-release online migrations), nova's stale services forced "
             "down, cinder's iSCSI portal rewritten by SQL `UPDATE ... REPLACE()` in cinder and nova (both cells) "
             "and `volume update_host`, `chown -R`, each release's `*-status upgrade check` (the same commands the "
             "tool runs, where the facts put them: before the start; keystone's with the venv workaround when the "
             "stock one trips, lab-recipes §4.5), start, verify (a keystone token, glance `GET /versions`, each "
             "stand-in's status), then placement's, nova's and cinder's `online_data_migrations` until 0 with the "
             "service up, as the releases document them. The same commands as the tool, in sequence, as a careful "
             "operator types them: no journal, no encryption, no target backup, no row counts or checksums. Phases "
             "timestamped with `date +%s.%N`.",
             "- (b) `upgrade run` with `service_pool = 1` (the runbook's sequence, journaled, encrypted, checked); "
             "(c) `upgrade run` with the default `service_pool = 2`: two services side by side, each step waiting "
             "only for the step of another service it needs (its declared `requires`, `statemachine/deps.py`). "
             "Both run the online data migrations as finishing steps, once every service is verified "
             "(`Step.finish`). Their windows come from the run's journal (`upgrade/window.py`: first stop of a "
             "service on the old controller -> its "
             "verification done).",
             "- after every trial the keystone and glance APIs on the management address show exactly what the old "
             "controller showed before (`scripts.lab.verify.api_view`: tokens, old token, projects, users, "
             "assignments, catalog, credential, every image downloaded) — checked, else the benchmark fails; the new "
             "DB server's schema revisions and cell mappings were "
             + ("identical after every trial of every variant." if res["same_schema"] else
                "NOT identical across trials (see the trial dirs)."), "",
             "Median seconds per service inside its window (the script's pipe runs dump and import at once: one "
             "column; the tool dumps into the vault, then imports; the script's nova schema includes its "
             "`cell_v2 update_cell` commands, the tool's are its own step `nova.update_cells`, counted as other; "
             "status checks count as verify; the total's kinds are what ran inside the whole window, the script's "
             "online migrations of the services before the last one included):", "", *table(by, services), "",
             f"After the window (medians): the script's last online migrations {o['after_a']:.1f} s, the tool's "
             f"finishing steps (all online migrations) {o['after_b']:.1f} s: the services serve meanwhile.", "",
             *tables.markdown(("trial", "variant", "window (s)", "load 1-min (start -> end)", "tool peak RSS (MiB)"),
                              [(str(t.index), f"({t.variant})", f"{t.window:.1f}",
                                f"{t.load[0]:.2f} -> {t.load[1]:.2f}", "-" if t.rss_mb is None else f"{t.rss_mb:.1f}")
                               for t in res["trials"]], right=(0, 2, 4))]
    lines += ["", f"Ratios of the windows per round (min / median / max): (b)/(a) {stats(r['b'])}, "
              f"(c)/(a) {stats(r['c'])}.", "", *overhead_lines(o), "", *revert_lines(by), "", *cpu_lines(by, 0.7), "",
              *[line for big in (larges or [None]) for line in (*large_lines(big), "")],
              *reason_lines(by, o), "", *target_lines(r, o, rss, large), ""]
    return "\n".join(lines)


def overhead_lines(o: dict[str, float]) -> list[str]:
    return [f"The tool's own overhead inside the sequential window (b), measured (medians): "
            f"{o['own']:.1f} s, {o['share']:.1%} of the window (worst trial {o['share_max']:.1%}) — the vault "
            f"{o['vault']:.2f} s (hashing and encrypting each dump, verifying it whole before the target is touched, "
            f"decrypting it into `mysql`), checks {o['checks']:.2f} s (row counts, CHECKSUM TABLE and collations of "
            "every table on both servers, each unit's status before and after its stop), the runner and its journal "
            f"{o['idle']:.2f} s (the window's time no step accounts for: the commits between one step's done and "
            "the next one's intent). With overlaps (c): vault "
            f"{o['vault_c']:.2f} s, checks {o['checks_c']:.2f} s, {o['share_c']:.1%} of its shorter window — an "
            "upper bound: they run side by side with the other service's steps, so the window grows by less.",
            "",
            f"Against the script, sequential: median window (b) {o['window_b']:.1f} s - median (a) "
            f"{o['window_a']:.1f} s = {o['delta']:+.1f} s. Per kind (medians of (b) minus medians of (a); the "
            f"tool's `nova.update_cells`, median {o['cells']:.1f} s, moved to schema where the script has it):",
            f"- dump+import {o['dump_import']:+.1f} s: the vault and the checksums above; dump and import do not "
            "overlap as in the script's pipe (a dump is complete and verified before the target is touched): nova's "
            f"import_db takes {o['nova_import']:.1f} s (3 databases, some 250 tables) where the script's pipe takes "
            f"{o['nova_pipe']:.1f} s, neutron's {o['neutron_import']:.1f} s against {o['neutron_pipe']:.1f} s;",
            f"- schema {o['schema']:+.1f} s: the same commands, but the script runs placement's and nova's online "
            "migrations inside the window (after their services' verify, before the next service stops), the tool "
            "once every service is verified; the tool's `nova.update_cells` runs its two `cell_v2 update_cell` side "
            "by side, the script one after the other;",
            f"- verify {o['verify']:+.1f} s: the same status checks and API checks on both sides, plus keystone's "
            "key repositories compared by sha256 in the tool's verify;",
            f"- other {o['other']:+.1f} s: unit control (the tool asks each unit's status before and after its "
            "stop, side by side for a service's units), config rewrite, ownership, fix-ups."]


def large_lines(large: dict[str, Any] | None) -> list[str]:
    if not large:
        return ["Large mode (`--large` or `BENCH_WINDOW_LARGE=1`: nova grown to >= 1 GiB of instances / "
                "instance_actions / instance_actions_events, keystone to 100k users with assignments): not measured "
                "in this run."]
    by = {v: [t for t in large["trials"] if t.variant == v] for v in VARIANTS}
    size = large["size"] or {}
    lines = [f"Large mode (`--large` or `BENCH_WINDOW_LARGE=1`; {large['took'] / 60:.0f} min, build and growth "
             f"included): the old controller grown by `scripts/bench/grow.py` to nova {size.get('nova', 0):.0f} MiB "
             f"(instances with 8 KiB user_data, 3 actions each, 2 events per action), keystone "
             f"{size.get('keystone', 0):.0f} MiB ({size.get('users', 0):.0f} users, each with a role assignment; "
             "sizes are InnoDB data + index, `information_schema`); the dumps are "
             f"{large.get('nova_dump', '?')} (nova) and {large.get('keystone_dump', '?')} (keystone) of SQL. "
             f"{len(by['a'])} round(s) of (a) (b) (c):", "",
             *tables.markdown(("variant", "window (s)", "dump+import (s)", "schema (s)", "verify (s)",
                               "tool peak RSS (MiB)", "load 1-min"),
                              [(f"({v})", f"{med(ts, 'total', 'window'):.1f}", f"{med(ts, 'total', 'dump+import'):.1f}",
                                f"{med(ts, 'total', 'schema'):.1f}", f"{med(ts, 'total', 'verify'):.1f}",
                                "-" if v == "a" else f"{max((t.rss_mb or 0) for t in ts):.1f}",
                                f"{ts[0].load[0]:.2f} -> {ts[0].load[1]:.2f}") for v, ts in by.items()],
                              right=range(1, 6))]
    r = ratios(by)
    own = {v: [(t.overhead.get("checks", 0.0) + t.overhead.get("vault", 0.0) + (t.idle if v == "b" else 0.0),
                t.overhead.get("vault", 0.0), t.window) for t in by[v]] for v in ("b", "c")}
    pipe = med(by["a"], "total", "dump+import")
    moved = {s: med(by["a"], s, "dump+import") for s in ("nova", "keystone")}
    rb, rc = statistics.median(r["b"]), statistics.median(r["c"])
    shares = {v: statistics.median(x[0] / x[2] for x in own[v]) for v in own}
    peak = max((t.rss_mb or 0) for t in large["trials"])
    lines += ["", "Side by side, one run on this lab (the machine's 2 cores were shared with other test runs "
              "while it ran: "
              "the load column above; the variants ran back to back under the same conditions):", "",
              *tables.markdown(("", "seconds", "vs raw pipe", "vs the script's window"),
                               [("raw pipe: the script's mariadb-dump piped into mariadb, every database (inside (a); "
                                 f"nova {moved['nova']:.1f} s, keystone {moved['keystone']:.1f} s)", f"{pipe:.1f}",
                                 "1.00", "-"),
                                ("(a) hand-run script, window", f"{med(by['a'], 'total', 'window'):.1f}", "-", "1.00"),
                                *[(f"({v}) {VARIANTS[v]}: dump+import (streamed: vault and import at once)",
                                   f"{med(by[v], 'total', 'dump+import'):.1f}",
                                   f"{med(by[v], 'total', 'dump+import') / pipe:.2f}" if pipe else "-", "-")
                                  for v in ("b", "c")],
                                *[(f"({v}) {VARIANTS[v]}, window", f"{med(by[v], 'total', 'window'):.1f}", "-",
                                   f"{statistics.median(r[v]):.2f}") for v in ("b", "c")]],
                               right=(1, 2, 3)),
              "", "The tool's own work inside the window (vault, checks, and in (b) the runner and journal): "
              + ", ".join(f"({v}) {statistics.median(x[0] for x in own[v]):.1f} s of which the vault "
                          f"{statistics.median(x[1] for x in own[v]):.1f} s, {shares[v]:.1%} of the window"
                          for v in own) + ".",
              *revert_lines(by), "", *cpu_lines(by), "",
              f"Targets at this size (reported, never asserted): (b)/(a) <= 0.9: {'met' if rb <= 0.9 else 'NOT met'} "
              f"({rb:.3f}); (c)/(a) <= 0.6: {'met' if rc <= 0.6 else 'NOT met'} ({rc:.3f}); the tool's own work <= 5 % "
              f"of the window: {'met' if shares['b'] <= 0.05 else 'NOT met'} ((b) {shares['b']:.1%}); peak RSS <= "
              f"{RSS_TARGET_MB} MB: {'met' if peak <= RSS_TARGET_MB else 'NOT met'} ({peak:.1f} MiB)."]
    vu = large.get("vault")
    if vu:
        lines.append(f"Vault disk use after the last tool trial: {vu['disk_mib']:.1f} MiB in {vu['artifacts']} "
                     f"artifacts for {vu['plain_mib']:.1f} MiB of dumps (the source's dumps and the target's "
                     f"backups; {vu['disk_mib'] / vu['plain_mib']:.4f}x: AES-GCM adds a 16-byte tag per 1 MiB "
                     "chunk; compression is off, see the zstd section).")
    return lines


def cpu_lines(by: dict[str, list[Trial]], goal: float = 0.6) -> list[str]:
    """The CPU work of each variant's window (medians; ``window_cpu``) and the shortest window it allows on this
    machine's cores, against the script's window: below *goal* x (a) no order of the steps can go, on these
    cores, without less work."""
    measured = {v: [t for t in ts if t.cpu.get("window") is not None] for v, ts in by.items()}
    if not all(measured.values()):
        return []
    m = {v: {k: statistics.median(t.cpu.get(k, 0.0) for t in ts) for k in ("window", "db", "tool", "bound",
                                                                         "busy_cores", "cores")}
         for v, ts in measured.items()}
    wa = med(by["a"], "total", "window")
    cores = int(m["a"]["cores"])
    rows = [(f"({v}) {VARIANTS[v]}", f"{med(by[v], 'total', 'window'):.1f}", f"{m[v]['window']:.1f}",
             f"{m[v]['db']:.1f}", "-" if v == "a" else f"{m[v]['tool']:.1f}", f"{m[v]['busy_cores']:.2f}",
             f"{m[v]['bound']:.1f}", f"{m[v]['bound'] / wa:.2f}") for v in VARIANTS]
    need = goal * cores * wa
    return [f"The CPU work inside each window (`scripts/bench/cpuclock.py`: `/proc/stat`'s busy core-seconds of the "
            "whole machine from the window's first stop to its last verify, sampled every 0.1 s; the database "
            "servers' from their `/proc/PID/stat`; the tool's own process over the whole run, its children not "
            f"counted), medians, on {cores} cores:", "",
            *tables.markdown(("variant", "window (s)", "CPU work (core-s)", "of which the DB servers",
                              "the tool's own process", "cores busy (mean)",
                              f"shortest window this work allows on {cores} cores (s)", "that / (a)'s window"),
                             rows, right=range(1, 8)), "",
            f"A window of (c)/(a) <= {goal} on these {cores} cores leaves at most {goal} x {cores} x "
            f"{wa:.1f} s = {need:.1f} core-seconds of work, every core busy the whole time; (c)'s window did "
            f"{m['c']['window']:.1f} (the script's {m['a']['window']:.1f}): "
            + ("within it." if m["c"]["window"] <= need else
               f"{m['c']['window'] - need:.1f} more than any order of its steps can fit, before the waits between "
               "them (the first service's start that every verify needs, the last service alone).")]


def revert_lines(by: dict[str, list[Trial]]) -> list[str]:
    """The way back after each tool trial (``upgrade revert``; the script has none to compare with)."""
    done = {v: [t.revert for t in by[v] if t.revert] for v in ("b", "c")}
    if not any(done.values()):
        return []
    return ["The way back: `upgrade revert` of each tool trial's completed run, until the old controller's APIs "
            "listen again (the same API view as before the run checked after it): "
            + ", ".join(f"after ({v}) {statistics.median(r['command'] for r in rs):.1f} s, of which the undos "
                        f"{statistics.median(r['undos'] for r in rs):.1f} s" for v, rs in done.items() if rs)
            + " (medians)."]


def reason_lines(by: dict[str, list[Trial]], o: dict[str, float]) -> list[str]:
    """Why the ratios are what they are, from the numbers above."""
    load = statistics.median(t.load[0] for ts in by.values() for t in ts)
    longest = max((s for s in by["b"][0].rows if s != "total"), key=lambda s: med(by["b"], s, "window"))
    return ["Why:",
            f"- (b) against (a), net {o['delta']:+.1f} s: the tool's own work ({o['own']:.1f} s: vault, checks, "
            "journal) is paid for by running the online data migrations once every service is verified, as the "
            "releases allow (the services serve meanwhile), where a person going through the runbook service by "
            "service runs them before stopping the next service, and by running independent commands of one step "
            "side by side (the units' status, nova's two cell mappings). With this little data (some 20 MB), the "
            "fixed per-step cost dominates; the tool's extra work grows with the data only in the vault and the "
            "checksums.",
            f"- (c): two services side by side, each step waiting only for what it needs (every verify for "
            "keystone's, nova's status check and start for placement's verify, cinder's iSCSI rewrite of nova's "
            "rows for nova's migration), so the stops, dumps, imports and migrations of independent databases "
            f"overlap. The longest single service, {longest}, takes {med(by['b'], longest, 'window'):.1f} s alone "
            f"(median of (b)); the machine's 2 cores are shared (median 1-min load {load:.1f} at the start of a "
            "trial) and the *-manage commands, most of each window, are CPU-bound Python start-ups, so two at once "
            "each run slower than alone."]


def target_lines(r: dict[str, list[float]], o: dict[str, float], rss: dict[str, float],
                 large: dict[str, Any] | None) -> list[str]:
    mb, mc = statistics.median(r["b"]), statistics.median(r["c"])
    peak = max(rss.values())
    out = ["Targets of issue #8 (reported, never asserted):",
           f"- tool window <= 1.0x the script (median (b)/(a)): {'met' if mb <= 1.0 else 'NOT met'} ({mb:.3f}x)",
           f"- <= 0.7x with overlaps (median (c)/(a)): {'met' if mc <= 0.7 else 'NOT met'} ({mc:.3f}x)",
           f"- overhead <= 5 % of the window (journal + vault + checks, measured in (b)): "
           f"{'met' if o['share'] <= 0.05 else 'NOT met'} ({o['share']:.1%})",
           f"- peak memory <= {RSS_TARGET_MB} MB: {'met' if peak <= RSS_TARGET_MB else 'NOT met'} "
           f"({peak:.1f} MiB; (b) {rss['b']:.1f}, (c) {rss['c']:.1f})"]
    if large:
        lrss = max((t.rss_mb or 0) for t in large["trials"])
        out.append(f"- ... independent of DB size: {'met' if lrss <= RSS_TARGET_MB else 'NOT met'} "
                   f"({lrss:.1f} MiB on the large lab against {peak:.1f} MiB on the small one)")
    else:
        out.append("- ... independent of DB size: not measured here (large mode not run)")
    return out


def run(trials: int | None = None, large: bool | None = None, keep: Path | None = None, once: str | None = None,
        pipe: bool = False) -> str:
    """The Markdown section (``make bench`` calls this with no arguments: env vars decide). ``once`` (a variant,
    ``BENCH_WINDOW_ONCE=b``): only that variant, once per size of ``BENCH_WINDOW_NOVA_GIB`` on a grown lab
    (``pipe``, ``BENCH_WINDOW_RAW_PIPE=1``: and the raw pipe after it)."""
    once = once or os.environ.get("BENCH_WINDOW_ONCE") or None
    pipe = pipe or bool(os.environ.get("BENCH_WINDOW_RAW_PIPE"))
    trials = trials or int(os.environ.get("BENCH_WINDOW_TRIALS", "3"))
    large = bool(os.environ.get("BENCH_WINDOW_LARGE")) if large is None else large
    # the nova sizes of the large mode, GiB: "1,5" measures 1 GiB and 5 GiB, each once
    sizes = [float(g) for g in os.environ.get("BENCH_WINDOW_NOVA_GIB", "1").split(",") if g.strip()]
    small = os.environ.get("BENCH_WINDOW_SMALL", "1") != "0"
    base = keep or Path(tempfile.mkdtemp(prefix="osu-bw-"))
    try:
        if once:  # one variant once per size, no snapshot: what a 5 GiB case can afford
            bigs = [campaign_once(base / f"once-{g:g}", once, g * 1024, pipe) for g in sizes]
            return render_large(bigs)
        res = campaign(base / "small", trials, False) if small else None
        bigs = [campaign(base / f"large-{g:g}", 1, True, g * 1024) for g in sizes] if large else []
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)
    return render(res, bigs, trials) if res is not None else render_large(bigs)


def render_large(bigs: list[dict[str, Any]]) -> str:
    """The large mode alone (``BENCH_WINDOW_SMALL=0``), its own section: the small lab's stays as measured."""
    lines = ["## Maintenance window at real sizes: nova grown, keystone 100k users", "",
             "The same variants as the maintenance-window section, on the lab grown before its snapshot "
             "(`BENCH_WINDOW_SMALL=0 BENCH_WINDOW_LARGE=1 BENCH_WINDOW_NOVA_GIB=1,5 python -m scripts.bench.window`), "
             "each size measured once, the dumps streamed (vault and import at once, `dump_streams` from the cores) "
             "and imported with secondary keys after the rows.", ""]
    for big in bigs:
        lines += [*(once_lines(big) if big.get("once") else large_lines(big)), ""]
    return "\n".join(lines)


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C and kill both unwind through the campaign's finally (lab down); a job started in the
    # background by a non-interactive shell has SIGINT ignored: take it back
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    ap = argparse.ArgumentParser(prog="python -m scripts.bench.window", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=None, help="rounds of (a) (b) (c) (default 3)")
    ap.add_argument("--large", action="store_true", default=None, help="also one round on a grown lab")
    ap.add_argument("--keep", type=Path, help="work in DIR and keep it (trial dirs, scripts, journals)")
    ap.add_argument("--once", choices=sorted(VARIANTS), help="only this variant, once per nova size "
                    "(BENCH_WINDOW_NOVA_GIB, e.g. 5) on a grown lab, without snapshot or restore")
    ap.add_argument("--raw-pipe", action="store_true", help="with --once: also time the raw pipe after the trial")
    a = ap.parse_args(argv)
    print(run(a.trials, a.large, a.keep, a.once, a.raw_pipe))
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
