"""The ``inside`` actions a lab host runs for ``scripts/lab/hosts.py`` (payload, with passwords, on stdin; the
result as JSON on stdout): keystone/glance/compute actions of ``hostside`` and nova's of ``novahost`` in one
table. This entry sits above both, so that neither imports the other (novahost is built on hostside).

    python3 -m scripts.lab.inhost ACTION < payload.json
"""

from __future__ import annotations

import json
import sys

from scripts.lab import hostside, novahost
from scripts.lab.proc import LabError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m scripts.lab.inhost ACTION < payload.json", file=sys.stderr)
        return 2
    act = hostside.ACTIONS.get(args[0]) or novahost.INSIDE.get(args[0])
    try:
        if act is None:
            raise LabError(f"unknown inside action {args[0]!r}")
        print(json.dumps(act(json.loads(sys.stdin.read() or "{}"))))
    except LabError as exc:
        print(f"lab inside: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
