"""The report of a run as one self-contained HTML page: for change boards and post-mortems.

Nothing is fetched when it is opened: the styles and the timeline (``upgrade.gantt``) are inline,
there is no script, and a Content-Security-Policy forbids every load, so a browser shows it the same
offline, from a mail attachment or from a ticket. Every text comes from ``upgrade.report`` (the
redacted export) and is escaped.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from rich.filesize import decimal

from journal import audit
from upgrade import gantt, window
from upgrade.report import Bar, Report, ServiceFacts

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def e(value: Any) -> str:
    return escape("-" if value is None or value == "" else str(value), quote=True)


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts)) if ts else "-"


def clock(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


def table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    """Cells are HTML already (escaped by the caller)."""
    if not rows:
        return '<p class="none">none</p>'
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _verdict(v: audit.Verification) -> tuple[str, str]:
    """(css class, text) of the journal's verification for the header."""
    lines = " ".join(v.lines())
    if v.tampered:
        return "tampered", (f"JOURNAL TAMPERED — {lines}. This page shows the journal as it is now: what it says "
                            "after that event cannot be trusted. Restore the journal from a copy and compare exports.")
    if v.bad_artifacts:
        return "bad", f"ARTIFACTS NOT AS RECORDED — {lines}"
    if not v.verdict.authenticated:
        return "ok", f"journal not authenticated (its hash chain is intact; report --key authenticates it) — {lines}"
    return "ok", f"journal verified — {lines}"


def header(rep: Report) -> str:
    run, win = rep.run, rep.window
    cls, verdict = _verdict(rep.verification)
    total = win.get("total")
    span = "-"
    if total:
        span = f"{window.human(total['seconds'])} ({total['start']} -> {total['end'] or 'open'})"
        if win["resumed"]:
            span += f"; resumed, {win['retried_steps']} step(s) retried"
    rows = [
        ("run id", e(run["id"])),
        ("final status", f'<span class="badge st-{e(run["status"])}">{e(run["status"])}</span>'),
        ("release jump", f"{e(run.get('from_release'))} &rarr; {e(run.get('to_release'))}"),
        ("plan sha256", f"<code>{e(run['plan_sha256'])}</code>"), ("plan", f"<code>{e(run.get('plan_path'))}</code>"),
        ("operator / host", e(run["operator"])), ("started", e(when(rep.start))), ("ended", e(when(rep.end))),
        ("duration", e(window.human(rep.end - rep.start))), ("maintenance window (cloud)", e(span)),
        ("vault key id", f"<code>{e(run.get('key_id'))}</code> (the key itself is never in the journal)"),
        ("steps", e(f"{len(rep.bars)} attempts on {len(rep.machines)} machine(s), "
                    f"{sum(b.outcome in ('failed', 'undo_failed') for b in rep.bars)} failed, "
                    f"{sum(b.outcome == 'killed' for b in rep.bars)} cut by a killed tool")),
    ]
    facts = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (f'<header><h1>Upgrade run <code>{e(run["id"])}</code> '
            f'<span class="badge st-{e(run["status"])}">{e(run["status"])}</span></h1>'
            f'<p id="verdict" class="verdict {cls}">{e(verdict)}</p>'
            f'<table class="facts">{facts}</table></header>')


def _revisions(sf: ServiceFacts) -> str:
    rows = [[e(r["database"]), e(" ".join(r["before"]) or "(none)"), e(" ".join(r["after"]) or "(none)"),
             "unchanged" if r["before"] == r["after"] else "<b>moved</b>", e(r["step"])] for r in sf.revisions]
    return table(["database", "before", "after", "", "recorded by"], rows)


def _data(sf: ServiceFacts) -> str:
    def eq(v: bool | None) -> str:
        return {True: '<span class="ok">equal</span>', False: '<span class="bad">DIFFERENT</span>',
                None: "not compared"}[v]
    def utf8(d: dict[str, Any]) -> str:
        return f" (converted to utf8: {e(', '.join(d['converted_to_utf8']))})" if d["converted_to_utf8"] else ""
    rows = [[e(d["database"]), e(d["source_tables"]), e(d["source_rows"]), e(d["target_tables"]),
             e(d["target_rows"]), eq(d["checksums_equal"]) + utf8(d)] for d in sf.data]
    return table(["database", "source tables", "source rows", "target tables", "target rows",
                  "CHECKSUM TABLE source vs target"], rows)


def _checks(sf: ServiceFacts) -> str:
    rows = []
    for c in sf.checks:
        facts = "<br>".join(f"<b>{e(k)}</b>: {e(v)}" for k, v in c["facts"].items()) or "-"
        if c.get("output"):
            facts += f"<details><summary>output</summary><pre>{e(c['output'])}</pre></details>"
        rows.append([e(c["step"]), e(c["kind"]), facts])
    return table(["step", "kind", "result"], rows)


def _downtime(w: dict[str, Any] | None) -> str:
    if not w:
        return "no maintenance window (the service was not stopped)"
    how = {"verified": "verified on the new controller", "reverted": "the old controller serves again (reverted)"}
    end = f"{w['end']} ({how.get(w['closed_by'], w['closed_by'])})" if w["end"] else "still open"
    phases = ", ".join(f"{k} {window.human(w[f'{k}_seconds'])}" for k in (*window.KINDS, "idle"))
    return f"<b>{e(window.human(w['seconds']))}</b>: {e(w['start'])} -> {e(end)}; {e(phases)}"


def services(rep: Report) -> str:
    out = []
    for sf in rep.services:
        note = ' <span class="badge st-reverted">reverted</span>' if sf.reverted else ""
        out.append(f'<article class="service" id="service-{e(sf.name)}"><h3>{e(sf.name)}{note}</h3>'
                   f"<p>downtime: {_downtime(sf.window)}</p>"
                   f"<h4>schema revisions</h4>{_revisions(sf)}<h4>data compared (row counts, checksums)</h4>"
                   f"{_data(sf)}<h4>checks</h4>{_checks(sf)}</article>")
    return "".join(out) or '<p class="none">no service steps in this run</p>'


def artifacts(rep: Report) -> str:
    states = rep.verification.artifacts
    rows = []
    for art in rep.artifacts:
        state = states.get(art["id"], "not checked")
        cls = "ok" if state in (audit.PRESENT, audit.AUTHENTICATED) else "bad"
        label = {audit.PRESENT: "present, not authenticated (report --key authenticates)",
                 audit.AUTHENTICATED: "authenticated (AES-256-GCM, size and sha256)"}.get(state, state)
        size = f"{art['bytes']} ({decimal(art['bytes'] or 0)})"
        rows.append([e(art["kind"]), e(art["service"]), e(art["host"]), e(size), f"<code>{e(art['sha256'])}</code>",
                     f'<span class="{cls}">{e(label)}</span>', f"<code>{e(art['id'])}</code>"])
    return table(["kind", "service", "host", "bytes", "plaintext sha256", "verified", "id"], rows)


def auditor(rep: Report, journal_dir: str) -> str:
    """The verification result and how to check it again from an export, offline."""
    ev = rep.events
    rid = rep.run["id"]
    anchors = ""
    if ev:
        anchors = table(["", "seq", "hash"], [
            ["first event's prev_hash", e(ev[0]["seq"]), f"<code>{e(ev[0]['prev_hash'])}</code>"],
            ["last event's hash", e(ev[-1]["seq"]), f"<code>{e(ev[-1]['hash'])}</code>"]])
    lines = "".join(f"<li><code>{e(line)}</code></li>" for line in rep.verification.lines())
    return (f"<p>The same check as <code>upgrade journal verify --journal {e(journal_dir)}</code>, made when this page "
            f"was written ({e(when(rep.generated))}):</p><ul>{lines}</ul>"
            f"<p>This run's events are a segment of the journal's hash chain ({len(ev)} events):</p>{anchors}"
            "<p>To check the record again, offline, with nothing but Python's standard library:</p><ol>"
            f"<li>export the run: <code>upgrade journal export --journal {e(journal_dir)} --run {e(rid)} "
            f"--output run-{e(rid)}.jsonl</code> (and the whole journal the same way without <code>--run</code>);</li>"
            "<li>save the script below as <code>verify_export.py</code> and run <code>python3 verify_export.py "
            f"run-{e(rid)}.jsonl</code>: it recomputes every event's sha256 and must print <code>OK: {len(ev)} events, "
            f"chain intact, last hash {e(ev[-1]['hash'] if ev else '')} (not authenticated: no key given)</code>; "
            "given the vault key file as a second argument it also checks every event's MAC;</li>"
            "<li>in the whole journal's export the event before the first one above must have the hash named as its "
            "prev_hash (no run was cut out), and the whole export must verify too;</li>"
            f"<li>with the vault key, <code>upgrade journal verify --journal {e(journal_dir)} --key KEYFILE</code> "
            "authenticates every artifact: each encrypted chunk, the plaintext size and sha256 in the table above.</li>"
            f"</ol><details><summary>verify_export.py</summary><pre>{e(audit.SNIPPET)}</pre></details>")


def steps(rep: Report) -> str:
    def outcome(b: Bar) -> str:
        cls = "ok" if b.outcome in ("done", "undone") else "bad"
        text = {"killed": "killed (no end recorded)"}.get(b.outcome, b.outcome)
        return f'<span class="{cls}">{e(text)}</span>' + (f"<br><small>{e(b.error)}</small>" if b.error else "")
    rows = [[e(b.seq), e(b.machine), e(b.label) + (" ↻" if b.retry else ""), e(b.kind), e(b.host),
             e(clock(b.start)), e(clock(b.end)), e("-" if b.seconds is None else f"{b.seconds:.2f} s"), outcome(b)]
            for b in rep.bars]
    head = ["seq", "machine", "step", "kind", "host", "began", "ended", "duration", "outcome"]
    body = "".join(f'<tr id="seq-{b.seq}">' + "".join(f"<td>{c}</td>" for c in r) + "</tr>"
                   for b, r in zip(rep.bars, rows, strict=True))
    return (f'<table class="steps"><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def render(rep: Report, journal_dir: str) -> str:
    """The whole page."""
    run = rep.run
    notes = rep.markers
    markers = "".join(f"<li>{e(clock(m.ts))} (seq {m.seq}): <b>{e(m.label)}</b> — {e(m.text)}</li>" for m in notes)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>upgrade report: run {e(run['id'])} ({e(run['status'])})</title><style>{CSS}</style></head><body>"
            f"{header(rep)}"
            f'<section id="timeline"><h2>Timeline</h2><p>One row per machine, one bar per attempt of a step; '
            f"hover for details, click for its row below. Times are {e(time.strftime('%Z'))}.</p>"
            f'<div class="svgbox">{gantt.render(rep)}</div>'
            + (f"<ul class=\"markers\">{markers}</ul>" if markers else "")
            + f'</section><section id="services"><h2>Services</h2>{services(rep)}</section>'
            f'<section id="artifacts"><h2>Artifacts in the vault</h2>{artifacts(rep)}</section>'
            f'<section id="verification"><h2>Journal verification</h2>{auditor(rep, journal_dir)}</section>'
            f'<section id="steps"><h2>Every step</h2>{steps(rep)}</section>'
            f"<footer>Written by <code>upgrade report</code> on {e(when(rep.generated))} from the journal "
            f"<code>{e(journal_dir)}</code> alone (its redacted export: no password or key is in it).</footer>"
            "</body></html>\n")


CSS = """
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; font-size: 14px; color: #222;
       margin: 0 auto; padding: 16px 24px; max-width: 1280px; background: #fff; }
h1 { font-size: 22px; margin: 4px 0 10px; } h2 { font-size: 18px; border-bottom: 2px solid #ddd; padding-bottom: 4px;
margin-top: 28px; } h3 { font-size: 16px; margin: 18px 0 6px; } h4 { font-size: 13px; margin: 10px 0 4px; color: #555; }
code, pre { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12px; }
pre { background: #f6f7f9; padding: 8px; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; margin: 4px 0 8px; } th, td { border: 1px solid #ddd; padding: 3px 8px;
text-align: left; vertical-align: top; } thead th { background: #f0f2f5; }
table.facts th { background: #f6f7f9; width: 230px; } table.steps { font-size: 12px; width: 100%; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 13px; color: #fff; background: #777;
vertical-align: middle; } .st-completed { background: #2e7d32; } .st-reverted { background: #6a1b9a; }
.st-failed, .st-revert_failed { background: #c62828; } .st-running, .st-reverting { background: #ef6c00; }
.verdict { padding: 8px 12px; border-radius: 4px; font-weight: bold; margin: 8px 0; }
.verdict.ok { background: #e8f5e9; border: 1px solid #2e7d32; color: #1b5e20; }
.verdict.tampered { background: #c62828; color: #fff; font-size: 16px; }
.verdict.bad { background: #fff3e0; border: 1px solid #ef6c00; color: #e65100; }
.ok { color: #2e7d32; } .bad { color: #c62828; font-weight: bold; } .none { color: #777; }
.svgbox { overflow-x: auto; border: 1px solid #ddd; } article.service { border-left: 4px solid #90caf9;
padding-left: 12px; margin-bottom: 18px; } tr:target { background: #fff8c4; }
footer { margin-top: 30px; color: #666; font-size: 12px; }
"""
