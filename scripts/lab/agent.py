"""A stand-in for a host agent (nova-compute, a neutron agent) or a "who answers here" probe.

    python agent.py NAME PORT BIND [CONFIG]

Serves ``GET /`` with ``{"service": NAME, "host": <hostname>}`` on BIND:PORT, so the lab's
supervisor can ask it for status like any other service, and a client can see which host
answers on an address that moves. With CONFIG it refuses to start unless that file is a valid
INI file with a ``[DEFAULT]`` ``host`` option — which is how a test breaks one compute host on
purpose (a corrupt nova.conf), the way a real nova-compute fails on a bad config. Standard
library only; it runs with whatever python3 the host has.
"""

from __future__ import annotations

import configparser
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def check_config(path: str) -> None:
    parser = configparser.ConfigParser()
    try:
        with open(path) as fh:
            parser.read_file(fh)
    except (OSError, configparser.Error) as exc:
        sys.exit(f"cannot read {path}: {exc}")
    if not parser.get("DEFAULT", "host", fallback=""):
        sys.exit(f"{path}: [DEFAULT] host is not set")


def main() -> None:
    name, port, bind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if len(sys.argv) > 4:
        check_config(sys.argv[4])
    body = json.dumps({"service": name, "host": socket.gethostname()}).encode() + b"\n"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((bind, port), Handler)
    print(f"{name} serving on {bind}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
