"""A MariaDB Galera node of the HA lab, run inside a lab host (``scripts.lab.hanode``).

Each controller of an HA lab runs one node of its side's three-node cluster (Debian's
``galera-4`` provider): the host's MariaDB (``scripts.lab.hostside.HostMariaDB``: datadir in the
host's ``/var/lib/mysql``, listening on its own address and loopback) with the wsrep settings
added. The first node starts with ``--wsrep-new-cluster`` (it forms the cluster), the others
join it and receive the first node's datadir by a state snapshot transfer (``rsync``: it needs
no account and no extra tool, and runs without systemd; the node runs as ``mysql``). A lab keeps no fsync (see
``scripts.lab.mariadb``), Galera's ``gcache`` stays small.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from scripts.lab.hostside import HostMariaDB

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
GALERA_PORT = 4567


class GaleraNode(HostMariaDB):
    """The host's MariaDB as a node of cluster *cluster* whose members are *peers* (addresses)."""

    def __init__(self, address: str, name: str, cluster: str, peers: list[str], bootstrap: bool = False) -> None:
        super().__init__(address)
        self.address, self.name, self.cluster, self.peers = address, name, cluster, list(peers)
        # as ``mysql``, not root: the joiner's rsync daemon, started by mariadbd, would drop root for
        # ``nobody`` and could not write the datadir
        self.user = "mysql"
        self.args = ("--wsrep-new-cluster",) if bootstrap else ()

    def _install_db(self) -> None:
        """The system tables as for any lab server, then every file of the node given to ``mysql``."""
        super()._install_db()
        subprocess.run(["chown", "-R", "mysql:mysql", str(self.base)], check=True)

    def _config(self) -> str:
        wsrep = (
            "wsrep_on=ON\n"
            f"wsrep_provider={PROVIDER}\n"
            f"wsrep_cluster_name={self.cluster}\n"
            f"wsrep_cluster_address=gcomm://{','.join(self.peers)}\n"
            f"wsrep_node_address={self.address}\n"
            f"wsrep_node_name={self.name}\n"
            "wsrep_sst_method=rsync\n"
            f"wsrep_provider_options=\"gmcast.listen_addr=tcp://{self.address}:{GALERA_PORT};gcache.size=16M\"\n"
            "binlog_format=ROW\n"
            "default_storage_engine=InnoDB\n"
            "innodb_autoinc_lock_mode=2\n"
        )
        return super()._config().replace("[client]\n", wsrep + "[client]\n", 1)


def status(db: HostMariaDB) -> dict[str, str]:
    """The node's view of its cluster: size, state, cluster UUID, whether it is ready for writes."""
    rows = db.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_size', "
                      "'wsrep_local_state_comment', 'wsrep_cluster_state_uuid', 'wsrep_ready', "
                      "'wsrep_cluster_status')")
    return {str(k): str(v) for k, v in rows}

