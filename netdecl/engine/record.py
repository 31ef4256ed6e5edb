"""The ownership record: what a topology owns that the kernel cannot mark by itself.

Links carry their owner in the kernel (ifalias) and routes/rules a protocol number, but the
protocol number says only "netdecl", not which topology; namespaces carry no mark at all, and a
sysctl's original value must be remembered to be restored. So each topology has one small JSON
file in the state dir (statedir.py), written atomically once per apply; during an apply, the
journal's intent lines carry the claims (see journal.py).

A name is not an identity: someone may delete a namespace and make another of that name, or
give a link of their own netdecl's mark. So the record also keeps, per object netdecl made, what
the kernel says that object is (``identities``, see engine/ownership.py): an object at a
claimed name whose identity differs is someone else's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netdecl.engine import statedir
from netdecl.model import Key


def _key_to_json(key: Key) -> list:
    return list(key)


def _key_from_json(data: list) -> Key:
    return tuple(data)


@dataclass
class OwnershipRecord:
    """What one topology owns besides marked links."""

    topology: str
    namespaces: set[str] = field(default_factory=set)
    # keys of routes, rules, fdb entries, neighbours netdecl created for this topology
    objects: set[Key] = field(default_factory=set)
    # (namespace, sysctl name) -> value before netdecl first changed it
    sysctl_originals: dict[tuple[str, str], str] = field(default_factory=dict)
    nat_namespaces: set[str] = field(default_factory=set)
    # (namespace, external link, attribute) -> its value before netdecl first changed it
    link_originals: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    # not saved: sysctls other topologies manage, with the originals their records keep.
    # Two topologies may both want net.ipv4.ip_forward=1; the value from before netdecl must
    # survive until the last of them lets go, so only that one restores it.
    shared_sysctls: dict[tuple[str, str], str] = field(default_factory=dict)
    # object key -> the identity the kernel gave it when netdecl made it (namespaces, links,
    # NAT tables), or when the claim was made (routes, rules, FDB entries, neighbours: a
    # claim's time, to tell the newer of two topologies' claims on one key). Values are
    # compared by engine/ownership.py.
    identities: dict[Key, str] = field(default_factory=dict)
    # not saved: the record was written before identities existed; its claims are trusted by
    # name (and mark) once, and the next apply writes the identities it observes
    legacy: bool = False
    # not saved: keys of this record that another topology claimed later (the object this
    # record made is gone and the other topology made one at the same key)
    superseded: set[Key] = field(default_factory=set)

    def owns(self, key: Key) -> bool:
        return key in self.objects and key not in self.superseded

    def is_empty(self) -> bool:
        return not (self.namespaces or self.objects or self.sysctl_originals
                    or self.nat_namespaces or self.link_originals)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "topology": self.topology,
            "namespaces": sorted(self.namespaces),
            "objects": sorted((_key_to_json(k) for k in self.objects), key=repr),
            "sysctl_originals": [[ns, name, value] for (ns, name), value
                                 in sorted(self.sysctl_originals.items())],
            "nat_namespaces": sorted(self.nat_namespaces),
            "link_originals": [[ns, link, attr, value] for (ns, link, attr), value
                               in sorted(self.link_originals.items())],
            "identities": sorted(([*_key_to_json(k), v] for k, v in self.identities.items()),
                                 key=repr),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OwnershipRecord:
        return cls(
            topology=data["topology"],
            namespaces=set(data.get("namespaces", [])),
            objects={_key_from_json(k) for k in data.get("objects", [])},
            sysctl_originals={(ns, name): value
                              for ns, name, value in data.get("sysctl_originals", [])},
            nat_namespaces=set(data.get("nat_namespaces", [])),
            link_originals={(ns, link, attr): value
                            for ns, link, attr, value in data.get("link_originals", [])},
            identities={_key_from_json(entry[:-1]): entry[-1]
                        for entry in data.get("identities", [])},
            legacy="identities" not in data,
        )

    def copy(self) -> OwnershipRecord:
        copied = OwnershipRecord.from_json(json.loads(json.dumps(self.to_json())))
        copied.legacy = self.legacy
        copied.superseded = set(self.superseded)
        return copied


def claim_time(ident: str | None) -> int:
    """When a keyed claim was made (0: before claims carried a time)."""
    if ident and ident.startswith(CLAIM_PREFIX):
        try:
            return int(ident[len(CLAIM_PREFIX):])
        except ValueError:
            return 0
    return 0


CLAIM_PREFIX = "claim:"


def superseded_by(mine: OwnershipRecord, theirs: OwnershipRecord) -> set[Key]:
    """Keys both records claim where the other claim is the newer one. Two topologies claim
    one route key only when the object one of them made was removed behind its back and the
    other then made its own there: the newer claim is the live one."""
    return {key for key in mine.objects & theirs.objects
            if claim_time(theirs.identities.get(key)) > claim_time(mine.identities.get(key))}


class RecordStore:
    """Ownership records in <state dir>/topologies/<name>.json."""

    def __init__(self, root: Path):
        self.root = root
        self.dir = statedir.records_dir(root)

    def path(self, topology: str) -> Path:
        return statedir.record_path(self.root, topology)

    def load(self, topology: str) -> OwnershipRecord:
        record = self._read(topology) or OwnershipRecord(topology)
        for other in self.all_topologies():
            if other != topology and (theirs := self._read(other)) is not None:
                for key, original in theirs.sysctl_originals.items():
                    record.shared_sysctls.setdefault(key, original)
                record.superseded |= superseded_by(record, theirs)
        return record

    def _read(self, topology: str) -> OwnershipRecord | None:
        try:
            with open(self.path(topology)) as fh:
                return OwnershipRecord.from_json(json.load(fh))
        except FileNotFoundError:
            return None

    def save(self, record: OwnershipRecord) -> None:
        if record.is_empty():
            path = self.path(record.topology)
            # with it the temp file a write killed (SIGKILL) between write and rename left
            for stale in (path, statedir.temp_path(path)):
                try:
                    stale.unlink()
                except FileNotFoundError:
                    pass
            return
        statedir.write_json_atomically(self.path(record.topology), record.to_json())

    def all_topologies(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.json"))
