"""Serve keystone's public WSGI app with the stdlib's threaded wsgiref server (lab-recipes §5).

Runs with a keystone venv's python (``<venv>/bin/python ks_wsgi.py``), not the lab's: it must
import that release's keystone. The keystone venvs ship no ``keystone-wsgi-public`` script,
and this needs neither Apache nor uwsgi. Settings come from the environment:

- ``OS_KEYSTONE_CONFIG_FILES``: path of keystone.conf (read by keystone itself);
- ``KS_PORT``: the port to bind (default 5000);
- ``KS_BIND``: the address to bind (default 127.0.0.1; 0.0.0.0 inside a multi-host lab host's
  namespace, where only 198.51.100.0/24 and loopback exist).

oslo.config parses ``sys.argv`` when keystone initializes, and would reject our own
arguments, so argv is reset before keystone is imported and nothing is passed on the command
line.
"""

from __future__ import annotations

import os
import sys

from wsgiserve import serve  # a sibling: this file runs by path with a release venv's python


def main() -> None:
    port = int(os.environ.get("KS_PORT", "5000"))
    bind = os.environ.get("KS_BIND", "127.0.0.1")
    sys.argv = sys.argv[:1]
    from keystone.server import wsgi  # imported late: after the argv reset, inside the venv

    app = wsgi.initialize_public_application()
    serve(app, bind, port, f"serving keystone on {bind}:{port} (pid {os.getpid()})")


if __name__ == "__main__":
    main()
