"""Headless Chromium (Debian's ``chromium``): the PNG of a timeline, and what the report's tests open pages with.

Why a browser and not an SVG library: the PNG is then exactly what a reader's browser shows of the
SVG (fonts, CSS, patterns), Chromium is the one program the page's tests need anyway, and nothing is
added to the Python dependencies (cairosvg would bring libcairo and its own subset of SVG and CSS).

The flags are the ones known to work as root in a container without a display: no sandbox (root),
no GPU, no QUIC, no first-run, background networking, component updates or sync (nothing is fetched),
every host name unresolvable, and a fresh profile directory each time (no state between two calls).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from upgrade.errors import UserError

NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9")
TIMEOUT = 120


def executable() -> str:
    """The Chromium binary, or a message that says how to install it."""
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise UserError("headless Chromium is needed for PNG output and was not found (chromium, chromium-browser) — "
                    "install it (Debian: apt-get install chromium), or write --format svg or html instead")


def run(url: str, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Chromium with FLAGS, a fresh profile and *args* on *url*; stdout and stderr captured as text."""
    with tempfile.TemporaryDirectory(prefix="osu-chromium-") as profile:
        argv = [executable(), *FLAGS, f"--user-data-dir={profile}", *args, url]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise UserError(f"Chromium did not finish within {timeout:.0f} s ({argv[0]}) — "
                            "try --format svg, which needs no browser") from None


def screenshot(source: Path, width: int, height: int) -> bytes:
    """A PNG of *source* (an HTML or SVG file) in a window of width x height."""
    with tempfile.TemporaryDirectory(prefix="osu-shot-") as d:
        out = Path(d) / "shot.png"
        res = run(source.resolve().as_uri(), f"--screenshot={out}", f"--window-size={width},{height}")
        if res.returncode != 0 or not out.exists():
            tail = "\n".join((res.stderr or "").strip().splitlines()[-5:])
            raise UserError(f"Chromium could not draw {source} (exit {res.returncode}):\n{tail}")
        return out.read_bytes()


def svg_png(svg: str) -> bytes:
    """The PNG of an SVG document drawn at its own size (its root's width and height attributes)."""
    import re

    m = re.search(r'<svg[^>]*\bwidth="(\d+)"[^>]*\bheight="(\d+)"', svg)
    width, height = (int(m[1]), int(m[2])) if m else (1200, 800)
    with tempfile.TemporaryDirectory(prefix="osu-svg-") as d:
        path = Path(d) / "timeline.svg"
        path.write_text(svg, encoding="utf-8")
        return screenshot(path, width, height)
