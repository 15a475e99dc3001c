"""Serve the placement API (the release's own WSGI application) with the stdlib's threaded wsgiref
server, as ``heat_wsgi.py`` serves heat: placement ships no server of its own.

    <venv>/bin/python placement_wsgi.py HOST PORT

Runs with a release venv's python, so it imports that release's placement; its config is
``/etc/placement/placement.conf`` (or ``$OS_PLACEMENT_CONFIG_DIR``), as placement reads it.
"""

from __future__ import annotations

import sys

from wsgiserve import serve  # a sibling: this file runs by path with a release venv's python


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    sys.argv = ["placement-api"]  # oslo.config reads sys.argv: placement's own arguments only
    from placement.wsgi.api import application

    serve(application, host, port, f"serving placement-api on {host}:{port}")


if __name__ == "__main__":
    main()
