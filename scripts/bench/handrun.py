"""The hand-run baseline of the window benchmark: the runbook's commands as one plain bash script.

Generated from a full lab's state and plan (``python -m scripts.lab up``): for each service in
runbook order, stop its units on the old controller, ``mariadb-dump --single-transaction
--databases ... | mariadb`` into the new DB server (grants recreated), copy its configs with the
DB address and the controller paths rewritten (sed), its files (keystone's fernet/credential
keys live in its config dir, glance's image files are copied with ``cp -a``), run the target
release's schema commands -- the very ``services.releases`` commands the tool runs, nova's
``cell_v2 update_cell`` for cell0 and cell1, cinder's previous-release online migrations,
iSCSI portal rewrite (SQL UPDATEs) and ``volume update_host`` -- chown, the release's
``*-status upgrade check`` (the facts order it before the start: the same command the tool
runs, keystone's with the venv workaround when the stock one trips, lab-recipes §4.5), start
the units and verify (a keystone token, glance's GET, the stand-ins' status), then the online
data migrations with the service up, as the releases document them. No journal, no encryption,
no backup of the target, no row counts or checksums: what a careful operator types, nothing more.

Every phase is timestamped (``date +%s.%N``) into a log that ``parse_log`` turns into windows.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.lab.openstack import NEW_HOST, NEW_PORTAL, OLD_HOST, OLD_PORTAL
from services import releases
from services.catalog import nova
from services.catalog.keystone.extra import STATUS_WORKAROUND
from services.registry import ORDER, spec
from services.steps.commands import split_online

REPO = Path(__file__).resolve().parents[2]
#: databases of each service, and the config key whose URL names the DB user
DATABASES = {"keystone": ("keystone",), "glance": ("glance",), "placement": ("placement",),
             "nova": ("nova_api", "nova", "nova_cell0"), "neutron": ("neutron",), "cinder": ("cinder",)}
CONF = {"keystone": "keystone/keystone.conf", "glance": "glance/glance-api.conf",
        "placement": "placement/placement.conf", "nova": "nova/nova.conf", "neutron": "neutron/neutron.conf",
        "cinder": "cinder/cinder.conf"}
#: the start order the tool uses (nova-metadata stays off: the plan says metadata = "neutron")
START = {"nova": ["nova-scheduler", "nova-conductor", "nova-api"],
         "cinder": ["cinder-volume", "cinder-scheduler", "cinder-api"]}
#: a phase of the script -> the kind it counts as (the tool's kinds: upgrade/window.py)
KIND = {"dump_import": "dump+import", "schema": "schema", "verify": "verify", "status": "verify", "online": "schema"}
DUMP = "--single-transaction --routines --triggers --events --hex-blob --add-drop-database"


@dataclass(frozen=True)
class Lab:
    """What the script needs of a lab: both controllers' trees, venvs and DB servers, the seed."""

    old: Path
    new: Path
    old_bin: str
    new_bin: str
    old_port: int
    new_port: int
    admin_user: str
    passwords: dict[str, str]
    keystone_url: str
    glance_url: str | None
    seed: dict[str, Any]
    services: tuple[str, ...]
    source: str
    target: str
    units: dict[str, list[str]]
    status_accept: dict[str, list[str]]

    @classmethod
    def load(cls, lab_dir: Path) -> Lab:
        state = json.loads((lab_dir / "lab-state.json").read_text())
        plan = tomllib.loads((lab_dir / "plan.toml").read_text())
        units = {s: t.get("units") or [t["unit"]] for s, t in plan["services"].items()}
        accept = {s: list(t.get("status_accept") or ()) for s, t in plan["services"].items()}
        glance = state.get("glance_port")
        return cls(Path(state["old"]["root"]), Path(state["new"]["root"]), plan["source"]["bin"],
                   plan["target"]["bin"], state["old"]["db_port"], state["new"]["db_port"],
                   plan["source"]["db"]["admin_user"], state["db_admin_passwords"],
                   f"http://127.0.0.1:{state['keystone_port']}/v3",
                   f"http://127.0.0.1:{glance}" if glance else None, state["seed"],
                   tuple(s for s in ORDER if s in plan["upgrade"]["services"]),
                   plan["upgrade"]["from"], plan["upgrade"]["to"], units, accept)


def _client_file(path: Path, user: str, password: str, port: int) -> Path:
    """A 0600 [client] file: the admin's password never on a command line."""
    path.write_text(f"[client]\nuser={user}\npassword={password}\nhost=127.0.0.1\nport={port}\nprotocol=TCP\n")
    path.chmod(0o600)
    return path


def db_user(lab: Lab, service: str) -> tuple[str, str]:
    """The service's DB user and password, read from its old config as an operator would."""
    text = (lab.old / "etc" / CONF[service]).read_text()
    m = re.search(r"mysql\+pymysql://([^:]+):([^@]+)@", text)
    if not m:
        raise RuntimeError(f"no DB URL in {CONF[service]}")
    return m.group(1), m.group(2)


def _args(cmd: releases.Cmd, etc: Path) -> list[str]:
    return [a.format(etc=etc, plugin=etc / "neutron/plugins/ml2/ml2_conf.ini") for a in cmd.args]


def _fmt(cmd: releases.Cmd, bin_dir: str, etc: Path) -> str:
    return shlex.join([f"{bin_dir}/{cmd.tool}", *_args(cmd, etc)])


def _run(cmd: releases.Cmd, bin_dir: str, etc: Path) -> str:
    """One ``releases.Cmd`` as bash, honouring its accepted exit codes and its loop contract."""
    line = _fmt(cmd, bin_dir, etc)
    if cmd.loop:
        return f"loop_until_0 {line}"
    if cmd.ok != (0,):
        return f"accept '{' '.join(map(str, cmd.ok))}' {line}"
    return line


def _cmds(value: Any) -> list[releases.Cmd]:
    """An era's value is one Cmd or a tuple of them."""
    if value is None:
        return []
    return [value] if isinstance(value, releases.Cmd) else list(value)


def schema(lab: Lab, service: str) -> list[str]:
    """The target release's schema commands of ``service`` (nova: api_db first, then the cells)."""
    etc = lab.new / "etc"
    out: list[str] = []
    prev = spec(service).previous_online_migrations_for(lab.source)
    for cmd in _cmds(prev):
        out.append(_run(cmd, lab.old_bin, etc))
    cmds, _online = split_online(_cmds(spec(service).schema_for(lab.target)))
    if service == "nova":
        first = [c for c in cmds if "api_db" in c.args]
        out += [_run(c, lab.new_bin, etc) for c in first] + nova_cells(lab)
        cmds = [c for c in cmds if c not in first]
    return out + [_run(c, lab.new_bin, etc) for c in cmds]


def online(lab: Lab, service: str) -> list[str]:
    """The target release's online data migrations, run once the service is up."""
    _cmds_before, after = split_online(_cmds(spec(service).schema_for(lab.target)))
    return [_run(c, lab.new_bin, lab.new / "etc") for c in after]


def status(lab: Lab, service: str) -> list[str]:
    """``<service>-status upgrade check``: 0 or 1 (warning) goes on; 2 only with the checks the lab's
    plan accepts by name (nova's Placement API: no placement API in the lab)."""
    cmd = spec(service).status_for(lab.target)
    if cmd is None:
        return []
    line = _fmt(cmd, lab.new_bin, lab.new / "etc")
    accepted = lab.status_accept.get(service) or ()
    ok = "0 1" + (" 2" if accepted else "")
    if service == "keystone":
        args = shlex.join(_args(cmd, lab.new / "etc"))
        return [f"ks_status '{ok}' {shlex.quote(lab.new_bin + '/python')} {args} -- {line}"]
    return [f"accept '{ok}' {line}"]


def nova_cells(lab: Lab) -> list[str]:
    """``cell_v2 update_cell`` for cell0 and cell1: the mappings name the old DB server."""
    user, pw = db_user(lab, "nova")
    url = f"mysql+pymysql://{user}:{pw}@127.0.0.1:{lab.new_port}"
    manage = f"{lab.new_bin}/nova-manage --config-file {lab.new / 'etc/nova/nova.conf'}"
    mq = re.search(r"^transport_url\s*=\s*(\S+)", (lab.old / "etc/nova/nova.conf").read_text(), re.M)
    return [
        f"{manage} cell_v2 update_cell --cell_uuid 00000000-0000-0000-0000-000000000000 "
        f"--database_connection {shlex.quote(url + '/nova_cell0')} --transport-url none:///",
        "CELL1=$(sql_new -N -e \"SELECT uuid FROM nova_api.cell_mappings WHERE name='cell1'\")",
        f"{manage} cell_v2 update_cell --cell_uuid \"$CELL1\" --database_connection {shlex.quote(url + '/nova')} "
        f"--transport-url {shlex.quote(mq.group(1) if mq else 'none:///')}",
    ]


def fixups(lab: Lab, service: str) -> list[str]:
    """The per-service data fix-ups the tool does too, as an operator types them."""
    if service == "nova":
        return [f"sql_new -e \"UPDATE nova.services SET forced_down=1 WHERE host='{OLD_HOST}' AND deleted=0\""]
    if service != "cinder":
        return []
    rep = f"REPLACE({{c}}, '{OLD_PORTAL}:', '{NEW_PORTAL}:')"
    like = f"'%{OLD_PORTAL}:%'"
    sql = "; ".join(f"UPDATE {t} SET {c} = {rep.format(c=c)} WHERE {c} LIKE {like}" for t, c in (
        ("cinder.volumes", "provider_location"), ("cinder.volume_attachment", "connection_info"),
        ("nova.block_device_mapping", "connection_info"), ("nova_cell0.block_device_mapping", "connection_info")))
    manage = f"{lab.new_bin}/cinder-manage --config-file {lab.new / 'etc/cinder/cinder.conf'}"
    return [f'sql_new -e "{sql}"',
            f"sql_new -N -e \"SELECT DISTINCT host FROM cinder.volumes WHERE deleted=0 AND host LIKE '{OLD_HOST}@%'\""
            " | while read -r h; do "
            f"{manage} volume update_host --currenthost \"$h\" --newhost \"{NEW_HOST}${{h#{OLD_HOST}}}\" || exit 1; "
            "done"]


def config(lab: Lab, service: str) -> list[str]:
    """Copy the config dir, rewrite the DB address and the controller paths (sed)."""
    top = CONF[service].split("/")[0]
    old, new = lab.old / "etc" / top, lab.new / "etc" / top
    seds = [f"s#127.0.0.1:{lab.old_port}/#127.0.0.1:{lab.new_port}/#g", f"s#{lab.old}/#{lab.new}/#g"]
    if service == "cinder":
        seds.append(f"s#^target_ip_address = {OLD_PORTAL}#target_ip_address = {NEW_PORTAL}#")
    lines = [f"rm -rf {new} && cp -a {old} {new}",
             f"find {new} -type f \\( -name '*.conf' -o -name '*.ini' \\) -exec sed -i "
             + " ".join(f"-e {shlex.quote(s)}" for s in seds) + " {} +"]
    if service == "nova":
        pin = nova.compute_pin(lab.source)
        lines.append(f"printf '\\n[upgrade_levels]\\ncompute = {pin}\\n' >> {new / 'nova.conf'}")
    return lines


def dump_import(lab: Lab, service: str) -> list[str]:
    """One pipe from the old DB server into the new one, then the grants."""
    dbs = " ".join(DATABASES[service])
    user, pw = db_user(lab, service)
    grants = "; ".join(f"GRANT ALL PRIVILEGES ON `{d}`.* TO '{user}'@'{h}' IDENTIFIED BY '{pw}'"
                       for d in DATABASES[service] for h in ("127.0.0.1", "%"))
    return [f"mariadb-dump --defaults-extra-file=\"$OLDCNF\" {DUMP} --databases {dbs} | sql_new",
            f"sql_new -e {shlex.quote(grants)}"]


def files(lab: Lab, service: str) -> list[str]:
    if service != "glance":
        return []
    img = "var/lib/glance/images"
    return [f"cp -a {lab.old / img}/. {lab.new / img}/"]


def verify(lab: Lab, service: str) -> list[str]:
    """A keystone token, glance's GET (both until they answer, 60 s at most), else the units' status."""
    if service == "keystone":
        body = json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": lab.seed["admin_user"], "domain": {"id": "default"}, "password": lab.seed["admin_password"]}}},
            "scope": {"project": {"name": lab.seed["admin_project"], "domain": {"id": "default"}}}}})
        return [f"wait_http 201 -X POST -H 'Content-Type: application/json' -d {shlex.quote(body)} "
                f"{lab.keystone_url}/auth/tokens"]
    if service == "glance" and lab.glance_url:
        return [f"wait_http 200 {lab.glance_url}/versions"]
    return [f"$UNITS --root {lab.new} status {u}" for u in START.get(service, lab.units[service])]


PRELUDE = r"""#!/bin/bash
# Hand-run upgrade {source} -> {target} of the lab, generated by scripts/bench/handrun.py
set -euo pipefail
LOG={log}
OLDCNF={oldcnf}
NEWCNF={newcnf}
UNITS="env PYTHONPATH={repo} {python} -m scripts.lab.units"
ph() {{ echo "$(date +%s.%N) $1 $2 $3" >> "$LOG"; }}
sql_new() {{ mariadb --defaults-extra-file="$NEWCNF" "$@"; }}
accept() {{ local ok=" $1 " rc=0; shift; "$@" || rc=$?
  [[ "$ok" == *" $rc "* ]] || {{ echo "rc $rc: $*" >&2; exit 1; }}; }}
ks_status() {{ local ok=" $1 " py=$2 rc=0 out; shift 2; local args=()
  while [ "$1" != -- ]; do args+=("$1"); shift; done; shift; out=$("$@" 2>&1) || rc=$?
  if [[ $rc != 0 && $rc != 2 && "$out" == *fernet-keys*"does not exist"* ]]; then
    rc=0; "$py" -c {workaround} "${{args[@]}}" || rc=$?; fi
  [[ "$ok" == *" $rc "* ]] || {{ echo "rc $rc: keystone-status" >&2; exit 1; }}; }}
loop_until_0() {{ local rc; while :; do rc=0; "$@" || rc=$?; [ $rc = 0 ] && return 0; [ $rc = 1 ] || exit $rc; done; }}
wait_http() {{ local want=$1 code; shift; for _ in $(seq 600); do
  code=$(curl -s -o /dev/null -w '%{{http_code}}' "$@" || true); [ "$code" = "$want" ] && return 0; sleep 0.1; done
  echo "no $want from $*" >&2; exit 1; }}
"""


def phases(lab: Lab, service: str) -> list[tuple[str, list[str]]]:
    """The script's phases of one service, in the order it runs them."""
    top = CONF[service].split("/")[0]
    stop = [f"$UNITS --root {lab.old} stop {u}" for u in lab.units[service]]
    start = [f"$UNITS --root {lab.new} start {u}" for u in START.get(service, lab.units[service])]
    return [("stop", stop), ("dump_import", dump_import(lab, service)), ("config", config(lab, service)),
            ("files", files(lab, service)), ("schema", schema(lab, service)), ("fixups", fixups(lab, service)),
            ("chown", [f"chown -R root:root {lab.new / 'etc' / top}",
                       f"[ ! -d {lab.new / 'var/lib' / top} ] || chown -R root:root {lab.new / 'var/lib' / top}"]),
            ("status", status(lab, service)), ("start", start), ("verify", verify(lab, service)),
            ("online", online(lab, service))]


def write(lab_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """The script and the (empty) log it timestamps into; the admin client files beside them."""
    lab = Lab.load(lab_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "phases.log"
    log.write_text("")
    oldcnf = _client_file(out_dir / "old.cnf", lab.admin_user, lab.passwords["old"], lab.old_port)
    newcnf = _client_file(out_dir / "new.cnf", lab.admin_user, lab.passwords["new"], lab.new_port)
    text = PRELUDE.format(source=lab.source, target=lab.target, log=log, oldcnf=oldcnf, newcnf=newcnf, repo=REPO,
                          python=sys.executable, workaround=shlex.quote(STATUS_WORKAROUND))
    for service in lab.services:
        text += f"\n# ---- {service}\n"
        for name, lines in phases(lab, service):
            if lines:
                text += f"ph {service} {name} begin\n" + "\n".join(lines) + f"\nph {service} {name} end\n"
    script = out_dir / "upgrade.sh"
    script.write_text(text)
    script.chmod(0o700)  # it holds the DB passwords, as an operator's script would
    return script, log


def parse_log(log: Path) -> dict[str, dict[str, float]]:
    """Per service: ``window`` (its first stop -> its verify done) and seconds per kind
    (dump+import, schema, verify, other) inside it, ``after`` for what ran after its verify (the
    online migrations); plus ``total`` (first stop of all -> last verify), whose kinds hold what
    ran inside that window (earlier services' online migrations too) and ``after`` the rest."""
    began: dict[tuple[str, str], float] = {}
    spans: list[tuple[str, str, float, float]] = []
    for line in log.read_text().splitlines():
        ts, service, phase, what = line.split()
        if what == "begin":
            began[(service, phase)] = float(ts)
        else:
            spans.append((service, phase, began.pop((service, phase)), float(ts)))
    first = {s: min(b for sv, _p, b, _e in spans if sv == s) for s, *_ in spans}
    end = {s: e for s, p, _b, e in spans if p == "verify"}
    kinds = ("dump+import", "schema", "verify", "other", "after")
    out: dict[str, dict[str, float]] = {s: {**dict.fromkeys(kinds, 0.0), "window": end[s] - first[s], "end": end[s]}
                                        for s in first}
    total = dict.fromkeys(kinds, 0.0)
    last = max(end.values())
    for service, phase, b, e in spans:
        out[service]["after" if e > end[service] else KIND.get(phase, "other")] += e - b
        total["after" if e > last else KIND.get(phase, "other")] += e - b
    total["window"] = last - min(first.values())
    total.update(start=min(first.values()), end=last)  # epoch seconds: where the window's CPU work is read
    out["total"] = total
    return out
