"""The volumes the LVM copy moves, read from cinder's database (a plan never lists them), and whether
an instance can still write to one of them.

A volume is copied block by block while the old controller's iSCSI target may still serve it: an
instance that runs keeps writing through that target, and what it writes during or after the copy
is lost on the new controller. So every volume attached to an instance that is not shut off is
refused before anything changes. Attachments are read from cinder (``volume_attachment``, and the
Havana ``volumes.instance_uuid``) and from nova (``block_device_mapping``): either may be the one
that still knows; the instance's state is nova's (``instances.vm_state`` and ``power_state``).
Everything here only reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.infra import mysql
from services.infra.settings import DBEndpoint

#: cinder's ``volume_name_template`` default: the LV of a volume is ``volume-<id>``
NAME_TEMPLATE = "volume-{id}"
#: cinder's ``iscsi_target_prefix`` default: a volume is exported as ``<prefix><LV name>``
TARGET_PREFIX = "iqn.2010-10.org.openstack:"
#: volume states whose blocks are at rest: anything else is an operation under way
COPIED_STATUSES = ("available", "in-use")
#: nova's vm_state of an instance whose guest does not run (shelved_offloaded: on no host at all)
SHUT_OFF_VM_STATES = ("stopped", "shelved_offloaded")
#: nova.compute.power_state
POWER_STATES = {0: "no state", 1: "running", 3: "paused", 4: "shutdown", 6: "crashed", 7: "suspended"}
SHUTDOWN = 4


@dataclass
class Instance:
    uuid: str
    name: str = ""
    vm_state: str = ""
    power_state: int | None = None
    found: bool = False

    @property
    def shut_off(self) -> bool:
        return self.found and self.vm_state in SHUT_OFF_VM_STATES and self.power_state in (SHUTDOWN, 0, None)

    def describe(self) -> str:
        if not self.found:
            return f"instance {self.uuid} (not in nova's database: its state is unknown)"
        power = POWER_STATES.get(self.power_state or 0, str(self.power_state))
        return f"instance {self.uuid} ({self.name!r}, vm_state {self.vm_state}, power_state {power})"


@dataclass
class Volume:
    id: str
    name: str
    size_gb: int
    status: str
    host: str
    instances: list[Instance] = field(default_factory=list)

    @property
    def lv(self) -> str:
        return NAME_TEMPLATE.format(id=self.id)

    @property
    def iqn(self) -> str:
        return TARGET_PREFIX + self.lv


def on_host(ep: DBEndpoint, cinder_db: str, host: str, nova_dbs: list[str]) -> list[Volume]:
    """The live volumes of *host* (``host``, ``host@backend``, ``host@backend#pool``) with the
    instances they are attached to, in cinder's order of creation."""
    cols = mysql.table_columns(ep, cinder_db, "volumes")
    name = "display_name" if "display_name" in cols else "NULL"
    rows = mysql.query(ep, f"SELECT id, {name}, size, status, host FROM volumes WHERE deleted=0 AND (host=%s OR "
                           "host LIKE %s OR host LIKE %s) ORDER BY created_at, id",
                       (host, f"{host}@%", f"{host}#%"), db=cinder_db)
    vols = [Volume(str(i), str(n or ""), int(s or 0), str(st or ""), str(h)) for i, n, s, st, h in rows]
    if not vols:
        return []
    ids = [v.id for v in vols]
    marks = ", ".join(["%s"] * len(ids))
    attached: dict[str, list[str]] = {}

    def add(pairs: list[tuple]) -> None:
        for vol, inst in pairs:
            if inst and str(inst) not in attached.setdefault(str(vol), []):
                attached[str(vol)].append(str(inst))

    if "instance_uuid" in cols:  # Havana: one attachment, kept on the volume
        add(mysql.query(ep, f"SELECT id, instance_uuid FROM volumes WHERE id IN ({marks})", ids, db=cinder_db))
    if mysql.table_columns(ep, cinder_db, "volume_attachment"):
        add(mysql.query(ep, "SELECT volume_id, instance_uuid FROM volume_attachment WHERE deleted=0 AND "
                            f"COALESCE(attach_status, '') <> 'detached' AND volume_id IN ({marks})", ids,
                        db=cinder_db))
    known: dict[str, Instance] = {}
    for db in nova_dbs:
        if not mysql.table_columns(ep, db, "block_device_mapping"):
            continue
        add(mysql.query(ep, f"SELECT volume_id, instance_uuid FROM block_device_mapping WHERE deleted=0 AND "
                            f"volume_id IN ({marks})", ids, db=db))
    uuids = sorted({u for us in attached.values() for u in us})
    for db in nova_dbs:
        if not uuids or not mysql.table_columns(ep, db, "instances"):
            continue
        umarks = ", ".join(["%s"] * len(uuids))
        for u, n, vm, power in mysql.query(ep, "SELECT uuid, display_name, vm_state, power_state FROM instances "
                                               f"WHERE deleted=0 AND uuid IN ({umarks})", uuids, db=db):
            known[str(u)] = Instance(str(u), str(n or ""), str(vm or ""), power, True)
    for v in vols:
        v.instances = [known.get(u, Instance(u)) for u in attached.get(v.id, [])]
    return vols


def refusals(volumes: list[Volume]) -> list[str]:
    """Why each volume cannot be copied now, with the fix: an instance that may write to it, or an
    operation under way. Empty: every volume is at rest."""
    out = []
    for v in volumes:
        label = f"volume {v.id}" + (f" ({v.name!r})" if v.name else "")
        if v.status not in COPIED_STATUSES:
            out.append(f"{label} is {v.status!r}: an operation on it is under way — wait until cinder shows it "
                       "available or in-use, then run again")
            continue
        for inst in v.instances:
            if not inst.shut_off:
                out.append(f"{label} is attached to {inst.describe()}: it may write to the volume through the old "
                           f"controller's iSCSI target while the blocks are copied — stop it (`openstack server "
                           f"stop {inst.uuid}`) or detach the volume, then run again")
    return out
