"""A MariaDB Galera cluster as an HA run reads it: each node's view of its cluster, and whether every node
holds what the run imported through one of them.

The run imports into one node of the new cluster; Galera replicates every write to the others. That is
proved, not assumed, on every node: its ``wsrep_cluster_size`` is the number of nodes the plan names, its
``wsrep_local_state_comment`` is ``Synced``, and every table of the carried databases has the same row count
and ``CHECKSUM TABLE`` as on the node imported into. The reads are causal (``wsrep_sync_wait = 1``): a node
answers once it has applied every write the cluster committed before the read, so no wait on time is needed
for the data; a node still joining (``Joiner``, ``Donor/Desynced``) is waited for, up to a bound; a node that
does not answer is reported at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from services.infra import mysql
from services.infra.settings import DBEndpoint

STATUS_SQL = ("SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_size', 'wsrep_local_state_comment', "
              "'wsrep_cluster_state_uuid', 'wsrep_ready', 'wsrep_cluster_status')")
#: how long a node may take to become Synced (a state transfer to a rejoining node) before the check fails
SYNC_TIMEOUT = 120.0


class NotReady(ValueError):
    """Nodes that do not hold what they must; ``nodes`` names them, the ones that do not answer first."""

    def __init__(self, message: str, nodes: Sequence[str]) -> None:
        super().__init__(message)
        self.nodes = list(nodes)


def status(ep: DBEndpoint) -> dict[str, str]:
    """The node's own view of its cluster (size, state, cluster UUID, Primary or not)."""
    return {str(k): str(v) for k, v in mysql.query(ep, STATUS_SQL)}


def causal_checksums(ep: DBEndpoint, db: str) -> dict[str, list[int | None]]:
    """Per table of *db* on this node: [row count, CHECKSUM TABLE], read after the node applied every write
    the cluster committed before (``wsrep_sync_wait``)."""
    conn = mysql.connect(ep, db)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION wsrep_sync_wait = 1")
            return mysql._checksums(cur, db)
    finally:
        conn.close()


def node_problem(name: str, ep: DBEndpoint, size: int, role: str = "target") -> tuple[str | None, dict[str, str]]:
    """Why the *role* DB node *name* is not a healthy member of a cluster of *size* (None: it is), and its
    status ({} when it does not answer)."""
    where = f"{role} DB node {name} ({ep.address}:{ep.port})"
    try:
        st = status(ep)
    except mysql.DBConnectError as exc:
        return f"{where} cannot be reached: {exc}", {}
    if st.get("wsrep_cluster_size") != str(size):
        return (f"{where} sees a cluster of {st.get('wsrep_cluster_size', '?')} node(s), the plan "
                f"names {size}", st)
    if st.get("wsrep_local_state_comment") != "Synced":
        return f"{where} is {st.get('wsrep_local_state_comment', '?')}, not Synced", st
    return None, st


def wait_synced(nodes: Sequence[tuple[str, DBEndpoint]], timeout: float = SYNC_TIMEOUT) -> dict[str, dict[str, str]]:
    """Until every node sees all of *nodes* in its cluster and is Synced; the nodes' status, or ValueError
    naming every node that is not (unreachable, a smaller cluster, still joining) when *timeout* passed."""
    deadline = time.monotonic() + timeout
    while True:
        found = {name: node_problem(name, ep, len(nodes)) for name, ep in nodes}
        bad = sorted((n for n, (p, _) in found.items() if p), key=lambda n: bool(found[n][1]))
        if not bad:
            return {name: st for name, (_, st) in found.items()}
        # a node that does not answer is down, not joining: named at once, no wait
        if time.monotonic() > deadline or not found[bad[0]][1]:
            raise NotReady("; ".join(str(found[n][0]) for n in bad), bad)
        time.sleep(0.5)


def replication_report(nodes: Sequence[tuple[str, DBEndpoint]], dbs: Sequence[str],
                       timeout: float = SYNC_TIMEOUT) -> dict[str, Any]:
    """Every node Synced in a cluster of all of them, and every table of *dbs* the same on each as on the
    first node (the one imported into): the facts, or ValueError naming the nodes and tables that differ."""
    states = wait_synced(nodes, timeout)
    first_name, first = nodes[0]
    deadline = time.monotonic() + timeout
    while True:
        reference = {db: causal_checksums(first, db) for db in dbs}
        differ = []
        for name, ep in nodes[1:]:
            for db in dbs:
                sums = causal_checksums(ep, db)
                tables = sorted(t for t in set(sums) | set(reference[db]) if sums.get(t) != reference[db].get(t))
                if tables:
                    differ.append(f"{db} on {name} differs from {first_name} in {len(tables)} table(s): "
                                  f"{', '.join(tables[:10])}")
        # a service the run already started on the first node writes there (nova's heartbeats): a table
        # written between two nodes' reads differs for that moment only; read again, a real difference stays
        if not differ or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if differ:
        raise NotReady("; ".join(differ), [d.split(" on ", 1)[1].split(" differs", 1)[0] for d in differ])
    return {"nodes": {name: {"cluster_size": st.get("wsrep_cluster_size"),
                             "state": st.get("wsrep_local_state_comment"),
                             "cluster_uuid": st.get("wsrep_cluster_state_uuid")} for name, st in states.items()},
            "databases": {db: {"tables": len(reference[db]),
                               "rows": sum(int(c[0] or 0) for c in reference[db].values())} for db in dbs}}
