"""The stdlib's threaded wsgiref server, as the lab's launchers serve OpenStack's WSGI applications
(``ks_wsgi.py``: keystone, ``heat_wsgi.py``: heat-api and heat-api-cfn, ``netvol_wsgi.py``: neutron and
cinder).

The launchers run with a release venv's python by path, so this module is imported as a sibling
(``sys.path[0]`` is this directory), and it imports nothing outside the standard library.
"""

from __future__ import annotations

import sys
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request: keystone's token validation calls back into keystone, and a heat stack
    create waits on the engine, while other requests come in."""

    daemon_threads = True
    allow_reuse_address = True


class FlushingHandler(WSGIRequestHandler):
    """Access lines on stderr like wsgiref's default, flushed, so the log tail is current when a start fails."""

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} - {format % args}\n")
        sys.stderr.flush()


def serve(app: Any, host: str, port: int, banner: str) -> None:
    """Serve *app* on host:port until the process is stopped; *banner* is printed once the port is bound."""
    server = make_server(host, port, app, server_class=ThreadingWSGIServer, handler_class=FlushingHandler)
    print(banner, flush=True)
    server.serve_forever()
