"""The ownership record: what a topology owns that the kernel cannot mark by itself.

Links carry their owner in the kernel (ifalias) and routes/rules a protocol number, but the
protocol number says only "netdecl", not which topology; namespaces carry no mark at all, and a
sysctl's original value must be remembered to be restored. So each topology has one small JSON
file in the state dir (statedir.py), written atomically once per apply; during an apply, the
journal's intent lines carry the claims (see journal.py).
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

    def owns(self, key: Key) -> bool:
        return key in self.objects

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
        )

    def copy(self) -> OwnershipRecord:
        return OwnershipRecord.from_json(json.loads(json.dumps(self.to_json())))


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
