"""The step that closes a service's window: its API answers on the plan's verify URL."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from statemachine.step import Result, Step, StepError


# ---------------------------------------------------------------------- verification helpers
def http_ok(url: str, timeout: float = 60.0) -> int:
    """Poll *url* until it answers 2xx/3xx; returns the status or raises StepError with the last error."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (plan-given URL)
                return resp.status
        except urllib.error.HTTPError as exc:
            if exc.code < 400:
                return exc.code
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() > deadline:
            raise StepError(f"{url} did not answer within {timeout:.0f} s (last: {last})", host=url)
        time.sleep(0.5)


def api_verify_step(name: str, api: str, extra: Callable[[Any], Result] | None = None,
                    extra_shown: Callable[[Any], list[str]] | None = None, also: str = "",
                    requires: tuple[str, ...] = ()) -> Step:
    """``<name>.verify``, the step that closes the service's maintenance window: its API answers on the
    plan's verify URL (2xx/3xx). The schema is not checked again here: the schema step checked it
    right after the migration, and nothing since (ownership, start) changes it. ``extra`` adds what
    only this service verifies (keystone: its key repositories and status check). It provides ``api``
    (the service serves); ``requires`` names what it waits for (``keystone:api``: every API
    authenticates with keystone)."""

    def run(ctx: Any) -> Result:
        url = ctx.services[name].verify_url
        out: dict[str, Any] = {"url": url or None, "http_status": http_ok(url) if url else None}
        return {**out, **(extra(ctx) if extra else {})}

    def commands(ctx: Any) -> list[str]:
        url = ctx.services[name].verify_url
        return [f"GET {url}   # until it answers 2xx/3xx, 60 s at most" if url else "(no verify_url: no API check)",
                *(extra_shown(ctx) if extra_shown else [])]

    return Step(f"{name}.verify", "verified", run, host="target", commands=commands, kind="verify",
                window="closes", provides=("api",), requires=requires,
                describe=f"the {api} API answers on its verify URL{also}")
