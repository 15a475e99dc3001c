"""Serve nova-api (the release's own WSGI application, ``nova.wsgi.osapi_compute``) with the stdlib's
threaded wsgiref server, as ``placement_wsgi.py`` serves placement: the 2025.2 and 2026.1 venvs ship
no nova-api script, and the lab needs neither Apache nor uwsgi.

    <venv>/bin/python nova_wsgi.py HOST PORT

Runs with a release venv's python, so it imports that release's nova; its configs are
``$OS_NOVA_CONFIG_DIR/api-paste.ini`` and ``nova.conf``, as nova's WSGI application reads them.
The application is imported before the server: nova patches the standard library on import (eventlet
in 2025.2, its threading backend from 2026.1), and the server's threads must be the patched ones.
"""

from __future__ import annotations

import sys


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    sys.argv = ["nova-api"]  # oslo.config reads sys.argv: nova's own arguments only
    # this file's directory holds the lab's ``openstack.py``: nova imports the SDK of that name, so the
    # directory leaves the front of the path while nova loads, and comes back for the sibling server
    here = sys.path.pop(0)
    from nova.wsgi.osapi_compute import application

    sys.path.append(here)
    from wsgiserve import serve  # a sibling: this file runs by path with a release venv's python

    serve(application, host, port, f"serving nova-api on {host}:{port}")


if __name__ == "__main__":
    main()
