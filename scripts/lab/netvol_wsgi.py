"""Serve neutron's or cinder's API (the release's own WSGI application) with the stdlib's threaded
wsgiref server, as ``heat_wsgi.py`` serves heat: neither ships a server of its own any more (2026.1
has no ``neutron-server`` script; ``neutron-api`` and ``cinder-wsgi`` are the same applications for uWSGI).

    <venv>/bin/python netvol_wsgi.py {neutron|cinder} HOST PORT --config-file FILE [--config-file FILE ...]

Runs with a release venv's python, so it imports that release's service; both applications read
their configuration from ``sys.argv`` when they are imported.
"""

from __future__ import annotations

import os
import sys

from wsgiserve import serve  # a sibling: this file runs by path with a release venv's python

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    which, host, port, *config = sys.argv[1:]
    sys.argv = [f"{which}-api", *config]  # oslo.config reads sys.argv: the service's own arguments only
    # this directory leaves the path: its openstack.py (the lab's) would shadow the SDK that neutron imports
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
    if which == "neutron":
        from neutron.wsgi.api import application
    elif which == "cinder":
        from cinder.wsgi.api import application
    else:
        sys.exit(f"netvol_wsgi.py: unknown service {which!r} (neutron or cinder)")
    serve(application, host, int(port), f"serving {which}-api on {host}:{port}")


if __name__ == "__main__":
    main()
