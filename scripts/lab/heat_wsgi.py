"""Serve heat-api or heat-api-cfn (the release's own WSGI applications) with the stdlib's threaded
wsgiref server, as ``ks_wsgi.py`` serves keystone: the heat venvs ship only ``heat-wsgi-api*``
scripts (no eventlet servers from 2026.1 on), and the lab needs neither Apache nor uwsgi.

    <venv>/bin/python heat_wsgi.py {api|cfn} HEAT_CONF HOST PORT

Runs with a heat venv's python, so it imports that release's heat. Where it listens comes from the
command line: heat's ``[heat_api] bind_port`` went with its eventlet servers, and with a web server
in front the web server's config says it.
"""

from __future__ import annotations

import sys

from wsgiserve import serve  # a sibling: this file runs by path with a release venv's python


def main() -> None:
    which, conf, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    # oslo.config reads sys.argv: give it heat's own arguments only
    sys.argv = [f"heat-{'api' if which == 'api' else 'api-cfn'}", "--config-file", conf]
    if which == "api":
        from heat.api.openstack import wsgi
    else:
        from heat.api.cfn import wsgi  # type: ignore[no-redef]
    app = wsgi.init_application()
    serve(app, host, port, f"serving {sys.argv[0]} on {host}:{port}")


if __name__ == "__main__":
    main()
