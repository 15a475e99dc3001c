"""`upgrade report` on real runs of the keystone lab, opened in a real headless Chromium, offline.

One module-scoped set of runs serves every assertion: an uninterrupted run (its page written with the
vault key), the same run reverted, and a run SIGKILLed half-way through its import and resumed. Each
page is written from a frozen copy of the journal as it stood then, so it is compared with exactly
the events it was made from. Chromium opens every page with no network (every host unresolvable,
a proxy that does not answer, and the page's own Content-Security-Policy, which reports any load as
a console message): the console must stay silent, the screenshot must show the timeline's colours,
and the DOM Chromium built must hold one bar per journaled attempt with the journal's durations.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from journal import audit
from tests.conftest import REPO, SECRETS, require, upgrade
from upgrade import browser, cli, gantt, reportpage
from upgrade.report import KINDS

KILL = "keystone.import_db:inside"
SHOT = (1300, 2200)
END_KINDS = ("done", "failed", "undone", "undo_failed")


@dataclass
class Page:
    journal: Path          # the frozen copy the page was written from
    html: Path
    events: list[dict[str, Any]]
    run: dict[str, Any]
    stderr: str
    key: tuple[str, ...]   # how the page was written: with the vault key (--key FILE) or without


def _freeze(journal: Path, dest: Path, *extra: str) -> Page:
    """Copy the journal as it stands (0700 kept), write its report, and export what it was made from."""
    dest.mkdir()
    frozen = dest / "journal"
    shutil.copytree(journal, frozen)
    html = dest / "report.html"
    res = upgrade("report", "--journal", str(frozen), "--output", str(html), *extra)
    assert res.returncode == 0, res.stderr
    exp = upgrade("journal", "export", "--journal", str(frozen), "--format", "json")
    assert exp.returncode == 0, exp.stderr
    doc = json.loads(exp.stdout)
    return Page(frozen, html, doc["events"], doc["runs"][-1], res.stderr, extra)


@pytest.fixture(scope="module")
def pages(keystone_lab, tmp_path_factory) -> dict[str, Page]:
    require(shutil.which("chromium") is not None, "chromium not installed (make setup installs it)")
    base = tmp_path_factory.mktemp("report")
    out: dict[str, Page] = {}
    keystone_lab.reset()
    plain = base / "plain"
    plain.mkdir()
    res = upgrade("run", str(keystone_lab.write_plan(plain)))
    assert res.returncode == 0, res.stderr
    out["completed"] = _freeze(plain / "journal", base / "completed", "--key", str(plain / "dump.key"))
    res = upgrade("revert", "--journal", str(plain / "journal"))
    assert res.returncode == 0, res.stderr
    out["reverted"] = _freeze(plain / "journal", base / "reverted")
    keystone_lab.reset()
    killed = base / "killed"
    killed.mkdir()
    res = upgrade("run", str(keystone_lab.write_plan(killed)), failpoint=KILL)
    assert res.returncode < 0, res.stderr     # SIGKILLed at the fail point
    res = upgrade("resume", "--journal", str(killed / "journal"))
    assert res.returncode == 0, res.stderr
    out["resumed"] = _freeze(killed / "journal", base / "resumed")
    return out


# ---------------------------------------------------------------------- Chromium
def _console(stderr: str) -> list[str]:
    """Every console message Chromium logged (the page logs nothing itself: any one is an error, a
    blocked load or a warning)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def _requests(netlog: Path) -> list[str]:
    """The URLs the page asked the network stack for (Chromium's own background requests, which the
    flags make fail, carry no file:// isolation key)."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in log["events"] if e["type"] == start and "url" in e.get("params", {})
            and e["params"].get("network_isolation_key", "").startswith("file://")]


def _open(path: Path) -> tuple[str, list[str], list[str]]:
    """The DOM Chromium built from the page, its console messages and the network requests it made."""
    netlog = path.with_suffix(".netlog.json")
    res = browser.run(path.as_uri(), "--enable-logging=stderr", "--v=0", f"--log-net-log={netlog}", "--dump-dom")
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout, _console(res.stderr), _requests(netlog)


def _shot(path: Path) -> Image.Image:
    return Image.open(BytesIO(browser.screenshot(path, *SHOT))).convert("RGB")


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


class _Bars(HTMLParser):
    """The timeline's bars (their data-* attributes) and every element's classes."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: list[dict[str, str]] = []
        self.classes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.classes += a.get("class", "").split()
        if "tl-bar" in a.get("class", "").split():
            self.bars.append(a)

    handle_startendtag = handle_starttag


def _parse(dom: str) -> _Bars:
    p = _Bars()
    p.feed(dom)
    return p


def _expected(events: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per intent (or undo intent) seq: its step, how it ended and the seconds the journal recorded."""
    out: dict[int, dict[str, Any]] = {}
    for i, e in enumerate(events):
        if e["kind"] not in ("intent", "undo_intent"):
            continue
        end = None
        for later in events[i + 1:]:
            if later["machine"] != e["machine"] or later["kind"] == "note":
                continue
            if later["kind"] in END_KINDS and later["step"] == e["step"]:
                end = later
            break
        if end is None:
            out[e["seq"]] = {"step": e["step"], "outcome": "killed", "seconds": None}
        elif end["kind"] in ("done", "undone"):
            out[e["seq"]] = {"step": e["step"], "outcome": end["kind"], "seconds": end["result"]["seconds"],
                             "span": end["ts"] - e["ts"]}
        else:
            out[e["seq"]] = {"step": e["step"], "outcome": end["kind"], "seconds": end["ts"] - e["ts"],
                             "span": end["ts"] - e["ts"]}
    return out


# ---------------------------------------------------------------------- the pages
def test_the_checks_catch_a_page_that_reaches_for_the_network_or_fails(tmp_path):
    """The harness is not blind: a page's network request is in the net log, and a script error or a
    load the page's Content-Security-Policy blocks is on the console."""
    require(shutil.which("chromium") is not None, "chromium not installed (make setup installs it)")
    loads = tmp_path / "loads.html"
    loads.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>x</title></head><body>'
                     '<img src="http://198.51.100.7/logo.png"></body></html>')
    _dom, _console_lines, requests = _open(loads)
    assert requests == ["http://198.51.100.7/logo.png"]
    blocked = tmp_path / "blocked.html"
    blocked.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" '
                       f'content="{reportpage.CSP}"><title>x</title></head><body>'
                       '<img src="http://198.51.100.7/logo.png"><script>nothing()</script></body></html>')
    _dom, console, requests = _open(blocked)
    assert requests == [] and len(console) == 2 and "198.51.100.7" in console[0], console


@pytest.mark.parametrize("name", ["completed", "resumed", "reverted"])
def test_page_opens_offline_and_holds_one_bar_per_journaled_step(pages, name):
    page = pages[name]
    dom, console, requests = _open(page.html)
    assert console == [] and requests == []
    assert f'content="{reportpage.CSP}"' in dom
    found = _parse(dom)
    expected = _expected(page.events)
    assert len(found.bars) == len(expected) and expected
    by_seq = {int(b["data-seq"]): b for b in found.bars}
    assert set(by_seq) == set(expected)
    for seq, exp in expected.items():
        bar = by_seq[seq]
        assert bar["data-step"] == exp["step"] and bar["data-outcome"] == exp["outcome"], (bar, exp)
        if exp["seconds"] is None:
            assert bar["data-seconds"] == "" and bar["data-end"] == ""
        else:
            assert float(bar["data-seconds"]) == pytest.approx(exp["seconds"], abs=1e-6), (bar, exp)
            assert float(bar["data-end"]) - float(bar["data-start"]) == pytest.approx(exp["span"], abs=1e-5)
        assert float(bar["width"]) > 0
        assert bar["data-kind"] in KINDS
    # every step the journal committed has its bar, and each bar links to its row in the page
    dones = {e["step"] for e in page.events if e["kind"] == "done"}
    assert dones <= {b["data-step"] for b in found.bars if b["data-outcome"] == "done"}
    assert all(f'id="seq-{seq}"' in dom for seq in expected)
    # the maintenance windows of the service and of the cloud are marked
    assert re.search(r'class="tl-window"[^>]*data-service="keystone"', dom)
    assert "tl-cloud" in found.classes
    # the header: who, what, which plan and key, and the verification as `journal verify` says it
    header = dom[dom.index("<header"):dom.index("</header>")]
    run = page.run
    for fact in (run["id"], run["plan_sha256"], run["operator"], run["key_id"], run["status"],
                 f"{run['from_release']} → {run['to_release']}"):
        assert fact in header, fact
    verify = upgrade("journal", "verify", "--journal", str(page.journal), *(page.key or ("--unkeyed",)))
    assert verify.returncode == 0, verify.stdout
    said = verify.stdout.strip()
    assert said.startswith("OK: " if page.key else "UNKEYED: ") and said in header, verify.stdout
    assert ("journal verified" if page.key else "journal not authenticated") in header
    # a screenshot: the size asked for, mostly not blank, and the timeline's colours in it
    shot = _shot(page.html)
    assert shot.size == SHOT
    pixels = SHOT[0] * SHOT[1]
    colours = {c: n for n, c in shot.getcolors(maxcolors=pixels)}
    assert pixels - colours.get((255, 255, 255), 0) > pixels * 0.05     # not blank: text, tables, bars
    for kind in {b["data-kind"] for b in found.bars}:
        assert colours.get(_rgb(gantt.COLOURS[kind]), 0) > 20, kind    # each kind's bars were drawn


def test_no_secret_of_the_plan_is_in_any_page(pages):
    for page in pages.values():
        text = page.html.read_text()
        assert not [s for s in SECRETS if s in text]
        assert not [s for s in SECRETS if s in page.stderr]
        assert page.html.stat().st_mode & 0o777 == 0o600


def test_the_completed_run_shows_schema_checks_data_and_authenticated_artifacts(pages):
    page = pages["completed"]
    text = page.html.read_text()
    schema = next(e for e in page.events if e["step"] == "keystone.upgrade_schema" and e["kind"] == "done")["result"]
    service = text[text.index('id="service-keystone"'):text.index('id="artifacts"')]
    for rev in [*schema["revisions_before"], *schema["revisions_after"]]:
        assert rev in service
    assert "moved" in service and "equal" in service and "DIFFERENT" not in service
    dump = next(e for e in page.events if e["step"] == "keystone.dump_source" and e["kind"] == "done")["result"]
    assert f"<td>{dump['rows']}</td>" in service and f"<td>{dump['tables']}</td>" in service
    status = next(e for e in page.events if e["step"] == "keystone.status_check" and e["kind"] == "done")["result"]
    assert f"<b>meaning</b>: {status['meaning']}" in service
    assert "downtime: <b>" in service
    arts = text[text.index('id="artifacts"'):text.index('id="verification"')]
    exp = json.loads(upgrade("journal", "export", "--journal", str(page.journal), "--format", "json").stdout)
    assert exp["artifacts"]
    for art in exp["artifacts"]:
        assert art["sha256"] in arts and str(art["bytes"]) in arts and art["id"] in arts
    assert arts.count("authenticated (AES-256-GCM") == len(exp["artifacts"])


def test_the_resumed_run_shows_the_killed_attempt_and_its_restart(pages):
    dom, _console, _requests_made = _open(pages["resumed"].html)
    bars = [b for b in _parse(dom).bars if b["data-step"] == "keystone.import_db"]
    assert [b["data-outcome"] for b in bars] == ["killed", "done"]
    assert 'class="tl-killed"' in dom and 'class="tl-retry"' in dom
    assert "tl-resumed" in dom and "was interrupted before it finished" in dom
    assert "resumed, 1 step(s) retried" in dom


def test_the_reverted_run_draws_every_undo_in_reverse(pages):
    page = pages["reverted"]
    dom, _console, _requests_made = _open(page.html)
    undos = [b for b in _parse(dom).bars if b["data-undo"] == "true"]
    undone = [e for e in page.events if e["kind"] == "undone"]
    assert len(undos) == len(undone) and all(b["data-outcome"] == "undone" for b in undos)
    assert dom.count('class="tl-undo-head"') == len(undos)
    assert "tl-revert" in dom and 'st-reverted' in dom


def test_the_auditors_instructions_verify_the_runs_export(pages, tmp_path):
    """The page's snippet is the documented one, and run on the run's export it prints what the page says."""
    doc = (REPO / "docs" / "journal-format.md").read_text()
    assert doc.split("<!-- verify-snippet -->\n```python\n", 1)[1].split("```", 1)[0] == audit.SNIPPET
    page = pages["resumed"]
    text = page.html.read_text()
    export = tmp_path / "run.jsonl"
    res = upgrade("journal", "export", "--journal", str(page.journal), "--run", page.run["id"], "--output", str(export))
    assert res.returncode == 0, res.stderr
    script = tmp_path / "verify_export.py"
    script.write_text(audit.SNIPPET)
    check = subprocess.run([sys.executable, str(script), str(export)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    assert f"<code>{check.stdout.strip()}</code>" in text


def test_a_tampered_journal_gives_a_page_that_says_so_in_its_header(pages, tmp_path):
    journal = tmp_path / "journal"
    shutil.copytree(pages["completed"].journal, journal)
    seq = pages["completed"].events[4]["seq"]
    conn = sqlite3.connect(journal / "journal.db")
    conn.execute("UPDATE events SET ts = ts + 60 WHERE seq = ?", (seq,))   # a step made to look slower
    conn.commit()
    conn.close()
    html = tmp_path / "report.html"
    res = upgrade("report", "--journal", str(journal), "--output", str(html))
    assert res.returncode == 0 and "TAMPERED" in res.stderr, res.stderr
    text = html.read_text()
    header = text[text.index("<header"):text.index("</header>")]
    verdict = upgrade("journal", "verify", "--journal", str(journal), "--unkeyed")
    assert verdict.returncode == 1
    assert "JOURNAL TAMPERED" in header and verdict.stdout.strip() in header and f"seq {seq}" in header
    assert 'class="verdict tampered"' in header


def test_svg_and_png_hold_the_timeline_alone(pages, tmp_path):
    page = pages["reverted"]
    svg = tmp_path / "timeline.svg"
    res = upgrade("report", "--journal", str(page.journal), "--output", str(svg))   # the suffix picks the format
    assert res.returncode == 0, res.stderr
    root = ET.fromstring(svg.read_text())
    ns = "{http://www.w3.org/2000/svg}"
    bars = [el for el in root.iter(f"{ns}rect") if "tl-bar" in el.get("class", "").split()]
    assert len(bars) == len(_expected(page.events))
    assert "<header" not in svg.read_text() and not [s for s in SECRETS if s in svg.read_text()]
    png = tmp_path / "timeline.out"
    res = upgrade("report", "--journal", str(page.journal), "--output", str(png), "--format", "png")
    assert res.returncode == 0, res.stderr
    img = Image.open(png).convert("RGB")
    assert img.size == (int(root.get("width")), int(root.get("height")))
    colours = {c for _n, c in img.getcolors(maxcolors=img.size[0] * img.size[1])}
    assert {_rgb(gantt.COLOURS[b.get("data-kind")]) for b in bars} <= colours


# ---------------------------------------------------------------------- bad input: exit 2, nothing written
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bad_input_is_refused_and_writes_nothing(pages, tmp_path, capsys, monkeypatch):
    journal = str(pages["completed"].journal)
    existing = tmp_path / "old.html"
    existing.write_text("keep me")
    before = _digest(existing)
    assert cli.main(["report", "--journal", journal, "--output", str(existing)]) == 2
    assert "already exists" in capsys.readouterr().err and _digest(existing) == before
    missing = tmp_path / "nope.html"
    assert cli.main(["report", "--journal", journal, "--run", "19990101-000000-abcdef", "--output", str(missing)]) == 2
    assert "no run '19990101-000000-abcdef'" in capsys.readouterr().err and not missing.exists()
    assert cli.main(["report", "--journal", str(tmp_path / "none"), "--output", str(missing)]) == 2
    assert "no journal" in capsys.readouterr().err and not missing.exists()
    monkeypatch.setenv("PATH", str(tmp_path))           # no Chromium to be found
    png = tmp_path / "t.png"
    assert cli.main(["report", "--journal", journal, "--output", str(png)]) == 2
    assert "apt-get install chromium" in capsys.readouterr().err and not png.exists()
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", "--journal", journal])         # --output is required
    assert exc.value.code == 2


# ---------------------------------------------------------------------- a failure, drawn (no lab needed)
def test_a_failed_step_and_its_retry_are_drawn_from_the_journal(tmp_path):
    """A real journal (the tool's own store) holding a failure and the resume that retried the step."""
    from journal import vault
    from journal.store import Journal

    key = vault.generate_key_file(tmp_path / "dump.key")
    j = Journal(tmp_path / "journal", key=key)
    rid = j.create_run({"upgrade": {"services": ["keystone"], "from": "2025.2", "to": "2026.1"}}, "ab" * 32,
                       "plan.toml", "2025.2", "2026.1", key.key_id)
    j.append(rid, "keystone", "intent", step="keystone.stop_source", host="source")
    j.append(rid, "keystone", "done", step="keystone.stop_source", host="source", result={"seconds": 0.5})
    intent = j.append(rid, "keystone", "intent", step="keystone.dump_source", host="source")
    failed = j.append(rid, "keystone", "failed", step="keystone.dump_source", host="source", rc=2,
                      output="mysqldump: Got error: 2013: Lost connection\nmore")
    j.append(rid, "keystone", "note", step="keystone.dump_source",
             output="keystone.dump_source was interrupted before it finished; its effect is unknown; running it again")
    j.append(rid, "keystone", "intent", step="keystone.dump_source", host="source")
    j.append(rid, "keystone", "done", step="keystone.dump_source", host="source", result={"seconds": 1.25})
    j.set_status(rid, "failed")
    j.close()
    out = tmp_path / "r.html"
    assert cli.main(["report", "--journal", str(tmp_path / "journal"), "--output", str(out)]) == 0
    bars = _parse(out.read_text()).bars
    assert [(b["data-step"], b["data-outcome"]) for b in bars] == [
        ("keystone.stop_source", "done"), ("keystone.dump_source", "failed"), ("keystone.dump_source", "done")]
    assert float(bars[1]["data-seconds"]) == pytest.approx(failed.ts - intent.ts, abs=1e-6)
    assert float(bars[2]["data-seconds"]) == 1.25
    text = out.read_text()
    assert 'class="tl-failed"' in text and 'class="tl-retry"' in text and "tl-resumed" in text
    assert "mysqldump: Got error: 2013: Lost connection" in text and "1 failed" in text


def test_long_idle_stretches_are_cut_out_of_the_axis():
    """Hours with nothing running take GAP_PX, not the whole width: the steps either side stay readable."""
    sc = gantt.Scale([(0, 10), (10_000, 10_010)], 0, 10_010, 0, 1000)
    assert len(sc.cuts) == 1
    assert sc.x(0) == 0 and sc.x(10_010) == pytest.approx(1000)
    assert sc.x(10_000) - sc.x(10) == pytest.approx(gantt.GAP_PX)
    assert sc.x(10) == pytest.approx((1000 - gantt.GAP_PX) / 2)
    assert not sc.visible(5000) and sc.visible(5)
    assert gantt.Scale([(0, 10), (30, 40)], 0, 40, 0, 400).cuts == []   # a short pause stays to scale
