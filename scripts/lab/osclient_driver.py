"""The ``openstack`` command line kept running: run by a release venv's python (``python -I`` this file),
it imports python-openstackclient once, then for each request runs a fresh ``OpenStackShell().run(argv)``,
which is what the venv's ``bin/openstack`` does per process. A call then costs its API round-trips, not
the client's 2-3 s of imports. ``scripts.lab.osclient.Shell`` starts and speaks to it.

Protocol, one JSON object per line: the driver says ``{"ready": VERSION}`` once imported; then each request
on stdin, ``{"cloud": NAME, "argv": [...]}``, gets ``{"rc": N, "stdout": TEXT, "stderr": TEXT}``. End of
stdin ends the driver. The credentials stay where the client finds them today: the clouds.yaml that
``OS_CLIENT_CONFIG_FILE`` names; a request names the cloud only (set as ``OS_CLOUD``, as the one-shot's
environment does).

This file runs without the project on its path (the venv has none of it): standard library and the
client only. Anything else than a reply that reaches the process's stdout (a library writing to fd 1)
goes to its stderr instead, so it cannot break a reply's line.
"""

import contextlib
import copy
import gc
import importlib
import io
import json
import logging
import os
import sys
import warnings


def _reply(channel, obj):
    channel.write(json.dumps(obj) + "\n")
    channel.flush()


def _forget_clients(manager_cls):
    """Drop the API clients osc-lib caches on the ClientManager *class* (its ``ClientCache`` descriptors keep
    the first handle made, with that run's session and user): each command must make its own, for the cloud
    it names, as a fresh process does."""
    for klass in manager_cls.__mro__:
        for attr in list(vars(klass).values()):
            if type(attr).__name__ == "ClientCache" and hasattr(attr, "_handle"):
                attr._handle = None


#: the client's API plugins (its ``openstack.cli.base`` entry points): their module globals are state a
#: command may change for the rest of the process (``volume/client.py`` deletes ``API_VERSIONS['2']`` and
#: keeps the negotiated microversion in ``_volume_api_version``: a second volume command then failed with
#: KeyError '2')
PLUGINS = ("compute", "identity", "image", "network", "object", "volume")


def _pristine():
    """Each plugin module's data globals as imported, to put back before every command."""
    saved = {}
    for name in PLUGINS:
        try:
            module = importlib.import_module(f"openstackclient.{name}.client")
        except ImportError:
            continue
        saved[module] = {k: copy.deepcopy(v) for k, v in vars(module).items()
                         if not k.startswith("__") and isinstance(v, (dict, list, tuple, str, int, type(None)))}
    return saved


def _restore(saved):
    for module, values in saved.items():
        for key, value in values.items():
            setattr(module, key, copy.deepcopy(value))
        for key in [k for k in vars(module) if k.startswith("_") and k.endswith("_api_version")]:
            if key not in values:  # set by a command, absent at import
                delattr(module, key)


def _run(shell_cls, manager_cls, pristine, cloud, argv):
    """One command as ``openstack ARGV`` would run it: its exit code and what it printed."""
    _forget_clients(manager_cls)
    _restore(pristine)
    out, err = io.StringIO(), io.StringIO()
    os.environ["OS_CLOUD"] = cloud
    root = logging.getLogger("")
    handlers, level = list(root.handlers), root.level
    sys.argv = ["openstack", *argv]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = shell_cls().run(argv)
            except SystemExit as exc:  # argparse's own exit (usage errors, --help, --version)
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception as exc:  # what the shell did not catch: as the script's traceback would say
                err.write(f"{type(exc).__name__}: {exc}\n")
                rc = 1
    finally:
        # each run adds its console handler (bound to this run's captured stderr) to the root logger
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        _forget_clients(manager_cls)
        # the run's sessions sit in reference cycles: collected now, their connections to the APIs close
        # as they would at the one-shot's exit (an idle keep-alive must not hold a server's worker)
        gc.collect()
    return {"rc": rc if rc is not None else 0, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main():
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # no command may read a request as its input (the one-shot's stdin is /dev/null)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 (the process's stdin until it ends)
    sys.stdout = os.fdopen(1, "w", encoding="utf-8", closefd=False)

    sys.argv = ["openstack"]  # cliff names the program (its messages) after argv[0] when it is imported
    import openstackclient
    from openstackclient.common.clientmanager import ClientManager
    from openstackclient.shell import OpenStackShell

    pristine = _pristine()
    _reply(channel, {"ready": openstackclient.__version__})
    for line in requests:
        request = json.loads(line)
        _reply(channel, _run(OpenStackShell, ClientManager, pristine, request["cloud"], request["argv"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
