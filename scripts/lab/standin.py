"""A stand-in for a controller unit the lab cannot run for real (nova-api without a message queue,
httpd for horizon): a process that lives until stopped, optionally answering HTTP on loopback.

    python scripts/lab/standin.py UNIT [PORT]

With a PORT it serves ``GET /`` and ``GET /dashboard/auth/login/`` (200, a login form) — the
"web server" of the horizon tests. The database-level steps of every service are real; only
these processes are stand-ins.
"""

from __future__ import annotations

import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = b"<html><body><form action='/dashboard/auth/login/'><input name='username'>Log in</form></body></html>"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} - {format % args}\n")


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if len(sys.argv) > 2:
        ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
