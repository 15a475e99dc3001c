"""The project's local lab: real MariaDB servers and real keystone releases on loopback.

A lab "controller" is a directory tree (``etc/keystone``, ``var/lib/keystone``, ``run`` ...)
with its own MariaDB instance, so an old (2025.2) and a new (2026.1) controller can live side
by side on one machine without systemd, containers or root-owned paths outside the lab.

Modules (each has one job):

- ``proc``: pid bookkeeping and the lab's error type;
- ``layout``: where things live inside a controller tree and its ``lab.json`` descriptor;
- ``mariadb``: one independent MariaDB server as a background process;
- ``ksapi``: a tiny keystone v3 HTTP client (stdlib only);
- ``svc``: the service supervisor standing in for systemd (``python -m scripts.lab.svc``);
- ``ks_wsgi``: the launcher that serves keystone with wsgiref (runs inside a keystone venv);
- ``controller``: build and seed a controller tree;
- ``__main__``: ``python -m scripts.lab up|down|status DIR``.

Nothing here imports from the tool: the lab must stay usable to test any version of it.
"""
