"""The ``inside`` actions a lab host runs for ``scripts/lab/hosts.py`` (payload, with passwords, on stdin; the
result as JSON on stdout): keystone/glance/compute actions of ``hostside`` and nova's of ``novahost`` in one
table. This entry sits above both, so that neither imports the other (novahost is built on hostside).

    python3 -m scripts.lab.inhost ACTION < payload.json
"""

from __future__ import annotations

import sys

from scripts.lab import hostside, novahost
from scripts.lab.proc import run_action

ACTIONS = {**novahost.INSIDE, **hostside.ACTIONS}  # hostside's win a clash, as before

if __name__ == "__main__":
    sys.exit(run_action("scripts.lab.inhost", ACTIONS, sys.argv[1:]))
