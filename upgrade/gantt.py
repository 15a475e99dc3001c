"""The timeline of a run as SVG: one row per machine, one bar per attempt of a step, coloured by kind.

Drawn here, by hand, from ``upgrade.report``'s bars: no script and no font or library from a network,
so the same text is a standalone ``.svg`` for a ticket and the picture inline in the report page.
What it shows: each service's maintenance window as a band behind its row and the cloud's above
them; an undo as a hatched bar with its head on the left (time runs back); a failure ends in a red
cross; an attempt the tool never finished (killed) ends in a red zigzag at the last event before it
was taken up again; a retried attempt is marked ↻; resumes and the start of a revert are vertical
lines. Long stretches with nothing running (the tool dead for hours) are cut out of the axis and
marked, so that the steps stay readable.

Every bar carries its journal facts as ``data-*`` attributes (seq, step, outcome, start, end,
seconds) and links to its row in the page (``#seq-N``).
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Sequence
from html import escape

from upgrade import window
from upgrade.report import KINDS, Bar, Report

COLOURS = {"prepare": "#b0bec5", "stop": "#8c564b", "dump": "#1f77b4", "import": "#17becf", "schema": "#9467bd",
           "status": "#bcbd22", "start": "#2ca02c", "verify": "#00661f", "finish": "#7f7f7f", "other": "#ff7f0e"}
FAIL = "#d00000"
WIDTH = 1200
LABEL = 190          # the machines' names
RIGHT = 24
ROW = 30
BAR = 16
TOP = 84             # title, axis, the cloud's window lane
GAP_PX = 36          # a stretch cut out of the axis


def a(value: object) -> str:
    """An attribute value or text, escaped for XML."""
    return escape(str(value), quote=True)


class Scale:
    """Seconds -> x. Linear, but for stretches longer than a minute and a fifth of the busy time in
    which no step ran: each of those is drawn ``GAP_PX`` wide."""

    def __init__(self, spans: Sequence[tuple[float, float]], t0: float, t1: float, x0: float, x1: float) -> None:
        merged: list[list[float]] = []
        for s, e in sorted(spans):
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        busy = sum(e - s for s, e in merged) or (t1 - t0)
        limit = max(60.0, 0.2 * busy)
        self.cuts = [(merged[i][1], merged[i + 1][0]) for i in range(len(merged) - 1)
                     if merged[i + 1][0] - merged[i][1] > limit]
        linear = (t1 - t0) - sum(b - a_ for a_, b in self.cuts)
        self.t0, self.x0 = t0, x0
        self.px = (x1 - x0 - GAP_PX * len(self.cuts)) / max(linear, 1e-3)
        self._starts = [c[0] for c in self.cuts]

    def x(self, t: float) -> float:
        n = bisect_right(self._starts, t)
        cut = sum(b - a_ for a_, b in self.cuts[:n])
        if n and t < self.cuts[n - 1][1]:   # inside a cut: proportionally across its GAP_PX
            a_, b = self.cuts[n - 1]
            cut -= b - a_
            return self.x0 + (a_ - self.t0 - cut) * self.px + GAP_PX * (n - 1) + GAP_PX * (t - a_) / (b - a_)
        return self.x0 + (t - self.t0 - cut) * self.px + GAP_PX * n

    def visible(self, t: float) -> bool:
        return not any(a_ < t < b for a_, b in self.cuts)


def _tick_step(seconds: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400):
        if seconds / step <= 10:
            return step
    return 86400 * 7


def _span(seconds: float) -> str:
    return window.human(seconds).replace(".0s", "s")


def _bar(b: Bar, sc: Scale, y: float) -> str:
    x0, x1 = sc.x(b.start), sc.x(b.drawn_end)
    w = max(x1 - x0, 3.0)
    end = time.strftime("%H:%M:%S", time.localtime(b.end)) if b.end is not None else "no end recorded"
    took = f"{b.seconds:.2f} s" if b.seconds is not None else "?"
    how = {"done": f"done in {took}", "undone": f"undone in {took}", "failed": f"FAILED after {took}: {b.error or ''}",
           "undo_failed": f"UNDO FAILED after {took}: {b.error or ''}",
           "killed": "killed: the tool died before the step ended"}[b.outcome]
    tip = (f"{b.label} ({b.kind}) on {b.host or '-'}: {how}; "
           f"{time.strftime('%H:%M:%S', time.localtime(b.start))} -> {end}; journal seq {b.seq}"
           + ("; retried after an unfinished attempt" if b.retry else ""))
    data = (f'data-seq="{b.seq}" data-machine="{a(b.machine)}" data-step="{a(b.step)}" data-kind="{b.kind}" '
            f'data-undo="{str(b.undo).lower()}" data-outcome="{b.outcome}" data-start="{b.start}" '
            f'data-end="{"" if b.end is None else b.end}" data-seconds="{"" if b.seconds is None else b.seconds}"')
    stroke = ""
    if b.outcome in ("failed", "undo_failed"):
        stroke = f' stroke="{FAIL}" stroke-width="2"'
    elif b.outcome == "killed":
        stroke = f' stroke="{FAIL}" stroke-width="1.5" stroke-dasharray="3 2"'
    top = y + (ROW - BAR) / 2
    out = [f'<a href="#seq-{b.seq}"><g class="tl-step"><title>{a(tip)}</title>',
           f'<rect class="tl-bar bar kind-{b.kind}" {data} x="{x0:.1f}" y="{top:.1f}" width="{w:.1f}" '
           f'height="{BAR}" rx="2" fill="{COLOURS[b.kind]}"{stroke}/>']
    if b.undo:  # time runs back: hatched, the head on the left
        out.append(f'<rect x="{x0:.1f}" y="{top:.1f}" width="{w:.1f}" height="{BAR}" fill="url(#tl-hatch)"/>')
        out.append(f'<polygon class="tl-undo-head" points="{x0 - 6:.1f},{top + BAR / 2:.1f} {x0:.1f},{top - 1:.1f} '
                   f'{x0:.1f},{top + BAR + 1:.1f}" fill="{COLOURS[b.kind]}" stroke="#333" stroke-width="0.6"/>')
    if b.outcome in ("failed", "undo_failed"):
        cx, cy = x0 + w + 6, top + BAR / 2
        out.append(f'<path class="tl-failed" d="M{cx - 4:.1f},{cy - 4:.1f} L{cx + 4:.1f},{cy + 4:.1f} '
                   f'M{cx - 4:.1f},{cy + 4:.1f} L{cx + 4:.1f},{cy - 4:.1f}" stroke="{FAIL}" stroke-width="2.2"/>')
    elif b.outcome == "killed":
        xe = x0 + w
        out.append(f'<polyline class="tl-killed" points="{xe:.1f},{top - 2:.1f} {xe + 4:.1f},{top + 4:.1f} '
                   f'{xe - 2:.1f},{top + 9:.1f} {xe + 4:.1f},{top + BAR + 2:.1f}" fill="none" stroke="{FAIL}" '
                   'stroke-width="2"/>')
    if b.retry:
        out.append(f'<text class="tl-retry" x="{x0 - 3:.1f}" y="{top + 12:.1f}" text-anchor="end">↻</text>')
    out.append("</g></a>")
    return "".join(out)


def _window_band(w: window.Window, sc: Scale, y: float, t1: float, height: float) -> tuple[str, str]:
    """The band of a window behind its row, and its duration for the row's label."""
    end = w.end if w.end is not None else t1
    x0, x1 = sc.x(w.start), sc.x(end)
    how = {"verified": "", "reverted": " (reverted)", None: " (open)"}[w.closed_by]
    text = f"{w.service} window {_span(w.seconds(t1))}{how}"
    return (f'<rect class="tl-window" data-service="{a(w.service)}" x="{x0:.1f}" y="{y:.1f}" '
            f'width="{max(x1 - x0, 1):.1f}" height="{height:.1f}"><title>{a(text)}</title></rect>',
            f"window {_span(w.seconds(t1))}{how}")


def _label(x: float, y: float, name: str, window_text: str | None) -> str:
    """A row's name, right-aligned left of the axis, with its window's duration under it."""
    if window_text is None:
        return f'<text class="tl-machine" x="{x}" y="{y + ROW / 2 + 4:.1f}" text-anchor="end">{a(name)}</text>'
    return (f'<text class="tl-machine" x="{x}" y="{y + ROW / 2 - 1:.1f}" text-anchor="end">{a(name)}</text>'
            f'<text class="tl-wlabel" x="{x}" y="{y + ROW / 2 + 10:.1f}" text-anchor="end">{a(window_text)}</text>')


def render(rep: Report) -> str:
    """The timeline as one standalone SVG document (also valid inline in HTML)."""
    t0, t1 = rep.start, max(rep.end, rep.start + 1e-3)
    x0, x1 = LABEL, WIDTH - RIGHT
    spans = [(b.start, b.drawn_end) for b in rep.bars] + [(m.ts, m.ts) for m in rep.markers]
    sc = Scale(spans or [(t0, t1)], t0, t1, x0, x1)
    rows = {m: i for i, m in enumerate(rep.machines)}
    height = TOP + ROW * max(len(rows), 1) + 92
    body: list[str] = []
    # axis: elapsed time since the first event
    step = _tick_step((t1 - t0) - sum(b - a_ for a_, b in sc.cuts))
    grid_bottom = TOP + ROW * len(rows)
    k = 0
    while t0 + k * step <= t1 + 1e-9:
        t = t0 + k * step
        if sc.visible(t):
            x = sc.x(t)
            body.append(f'<line class="tl-grid" x1="{x:.1f}" y1="{TOP - 34}" x2="{x:.1f}" y2="{grid_bottom}"/>'
                        f'<text class="tl-tick" x="{x:.1f}" y="{TOP - 38}" text-anchor="middle">'
                        f'{_span(k * step)}</text>')
        k += 1
    for a_, b in sc.cuts:
        xa = sc.x(a_)
        body.append(f'<rect class="tl-cut" x="{xa:.1f}" y="{TOP - 34}" width="{GAP_PX}" '
                    f'height="{grid_bottom - TOP + 34}">'
                    f'<title>{a(_span(b - a_))} in which no step ran (cut out of the axis)</title></rect>'
                    f'<text class="tl-cutlabel" x="{xa + GAP_PX / 2:.1f}" y="{TOP - 38}" text-anchor="middle">'
                    f'≈{a(_span(b - a_))}</text>')
    # the cloud's window, in its own lane, and its edges across every row
    rw = rep.windows
    if rw.services:
        whole = window.Window("cloud", rw.start or t0, rw.end, "verified" if rw.end else None)
        if rw.end is not None and all(w.closed_by == "reverted" for w in rw.services):
            whole.closed_by = "reverted"
        band, text = _window_band(whole, sc, TOP - 26, t1, 20)
        body.append(band.replace('class="tl-window"', 'class="tl-window tl-cloud"'))
        body.append(_label(LABEL - 8, TOP - 31, "maintenance window", text))
        for t in (whole.start, whole.end if whole.end is not None else None):
            if t is not None:
                body.append(f'<line class="tl-cloudedge" x1="{sc.x(t):.1f}" y1="{TOP - 26}" x2="{sc.x(t):.1f}" '
                            f'y2="{grid_bottom}"/>')
    for name, i in rows.items():
        y = TOP + i * ROW
        if i % 2:
            body.append(f'<rect class="tl-stripe" x="0" y="{y}" width="{WIDTH}" height="{ROW}"/>')
        w = rw.service(name)
        band, text = _window_band(w, sc, y + 2, t1, ROW - 4) if w is not None else ("", None)
        body.append(band + _label(LABEL - 8, y, name, text))
    for b in rep.bars:
        body.append(_bar(b, sc, TOP + rows[b.machine] * ROW))
    for m in rep.markers:
        x = sc.x(m.ts)
        body.append(f'<g class="tl-marker tl-{m.label}"><title>{a(m.text)}</title>'
                    f'<line x1="{x:.1f}" y1="{TOP - 26}" x2="{x:.1f}" y2="{grid_bottom + 4}"/>'
                    f'<text x="{x + 3:.1f}" y="{grid_bottom + 15}">{a(m.label)}</text></g>')
    body.append(_legend(grid_bottom + 30))
    title = (f"run {rep.run['id']}: {rep.run.get('from_release')} -> {rep.run.get('to_release')}, "
             f"{rep.run['status']}; started {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(t0))}")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="tl" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif" '
            f'font-size="11" role="img" aria-label="{a(title)}"><title>{a(title)}</title>{STYLE}'
            f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#fff"/>'
            f'<text class="tl-title" x="8" y="16">{a(title)}</text>'
            f'<text class="tl-tick" x="8" y="{TOP - 38}">time since the first event</text>'
            + "".join(body) + "</svg>")


def _legend(y: float) -> str:
    out, x = [], 8.0
    for kind in KINDS:
        out.append(f'<rect x="{x:.0f}" y="{y}" width="14" height="12" rx="2" fill="{COLOURS[kind]}"/>'
                   f'<text x="{x + 18:.0f}" y="{y + 10}">{kind}</text>')
        x += 28 + 7 * len(kind)
    y2 = y + 22
    out.append(f'<rect class="tl-window" x="8" y="{y2}" width="22" height="12"/><text x="34" y="{y2 + 10}">'
               'maintenance window (first stop -> verify)</text>')
    out.append(f'<rect x="290" y="{y2}" width="22" height="12" fill="#999"/><rect x="290" y="{y2}" width="22" '
               f'height="12" fill="url(#tl-hatch)"/><polygon points="284,{y2 + 6} 290,{y2 - 1} 290,{y2 + 13}" '
               f'fill="#999"/><text x="318" y="{y2 + 10}">undo (revert: time runs back)</text>')
    out.append(f'<path d="M500,{y2 + 2} L508,{y2 + 10} M500,{y2 + 10} L508,{y2 + 2}" stroke="{FAIL}" '
               'stroke-width="2.2"/>'
               f'<text x="514" y="{y2 + 10}">failed</text>'
               f'<polyline points="566,{y2 - 1} 570,{y2 + 4} 564,{y2 + 8} 570,{y2 + 13}" fill="none" stroke="{FAIL}" '
               f'stroke-width="2"/><text x="576" y="{y2 + 10}">killed (no end recorded)</text>'
               f'<text class="tl-retry" x="720" y="{y2 + 11}">↻</text><text x="732" y="{y2 + 10}">retried</text>'
               f'<line class="tl-marker-line" x1="800" y1="{y2 - 1}" x2="800" y2="{y2 + 13}" stroke="#1565c0" '
               f'stroke-dasharray="4 2" stroke-width="1.5"/><text x="806" y="{y2 + 10}">resumed / revert begins</text>')
    return "".join(out)


STYLE = """<defs><pattern id="tl-hatch" width="6" height="6" patternUnits="userSpaceOnUse" \
patternTransform="rotate(45)"><rect width="3" height="6" fill="#ffffff" fill-opacity="0.55"/></pattern></defs>
<style>
.tl text { fill: #222; }
.tl .tl-title { font-size: 13px; font-weight: bold; }
.tl .tl-machine { font-size: 12px; }
.tl .tl-tick, .tl .tl-cutlabel, .tl .tl-wlabel { fill: #555; font-size: 10px; }
.tl .tl-grid { stroke: #e3e3e3; stroke-width: 1; }
.tl .tl-stripe { fill: #f6f7f9; }
.tl .tl-window { fill: #ffe08a; fill-opacity: 0.45; stroke: #e0a800; stroke-dasharray: 4 2; }
.tl .tl-cloud { fill: #ffc94d; fill-opacity: 0.6; }
.tl .tl-cloudedge { stroke: #e0a800; stroke-width: 1.2; stroke-dasharray: 6 3; }
.tl .tl-cut { fill: url(#tl-hatch); stroke: #bbb; fill-opacity: 0.2; }
.tl .tl-marker line { stroke: #1565c0; stroke-width: 1.5; stroke-dasharray: 4 2; }
.tl .tl-revert line { stroke: #6a1b9a; }
.tl .tl-marker text { fill: #1565c0; font-size: 10px; }
.tl .tl-revert text { fill: #6a1b9a; }
.tl .tl-retry { fill: #1565c0; font-size: 13px; font-weight: bold; }
.tl a:hover .tl-bar { stroke: #000; stroke-width: 1.5; }
</style>"""
