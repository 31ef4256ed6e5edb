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

from netdecl.engine import readback, statedir
from netdecl.engine.readback import DamagedStateFile, Untrusted
from netdecl.kinds import Ownership
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
    # not saved: sysctls other topologies manage, with the originals their records keep.
    # Two topologies may both want net.ipv4.ip_forward=1; the value from before netdecl must
    # survive until the last of them lets go, so only that one restores it.
    shared_sysctls: dict[tuple[str, str], str] = field(default_factory=dict)

    def owns(self, key: Key) -> bool:
        return key in self.objects

    def is_empty(self) -> bool:
        return not (self.namespaces or self.objects or self.sysctl_originals
                    or self.nat_namespaces)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "topology": self.topology,
            "namespaces": sorted(self.namespaces),
            "objects": sorted((_key_to_json(k) for k in self.objects), key=repr),
            "sysctl_originals": [[ns, name, value] for (ns, name), value
                                 in sorted(self.sysctl_originals.items())],
            "nat_namespaces": sorted(self.nat_namespaces),
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
        """The record of ``topology`` (empty if it has none), knowing the sysctl originals the
        others keep. DamagedStateFile if its own record cannot be trusted; another topology's
        damaged record is left out (it must not block this one)."""
        record = self._read(topology) or OwnershipRecord(topology)
        for other in self.all_topologies():
            if other == topology:
                continue
            try:
                theirs = self._read(other)
            except DamagedStateFile:
                continue
            if theirs is not None:
                for key, original in theirs.sysctl_originals.items():
                    record.shared_sysctls.setdefault(key, original)
        return record

    def _read(self, topology: str) -> OwnershipRecord | None:
        path = self.path(topology)
        try:
            raw = statedir.read_state_file(path)
        except FileNotFoundError:
            return None
        except statedir.UnreadableStateFile as exc:
            raise DamagedStateFile(path, str(exc), _ADVICE.format(topology=topology)) from None
        try:
            return validated(OwnershipRecord.from_json(record_shape(json.loads(raw))), topology)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            problem = str(exc) if isinstance(exc, Untrusted) else _shape_problem(raw, exc)
            raise DamagedStateFile(path, problem, _ADVICE.format(topology=topology)) from None

    def save(self, record: OwnershipRecord) -> None:
        statedir.secure(self.root)
        path = self.path(record.topology)
        # with it the temp files a write killed (SIGKILL) between write and rename left
        statedir.remove_stale_temps(path)
        if record.is_empty():
            path.unlink(missing_ok=True)
            return
        statedir.write_json_atomically(path, record.to_json())

    def all_topologies(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.json") if not p.name.startswith("."))


_ADVICE = ("netdecl cannot tell what topology {topology} owns, so it changes nothing for it: "
           "restore the file from a backup, or move it away and remove what {topology} made by "
           "hand (without the file netdecl treats it as foreign)")


def _shape_problem(raw: bytes, exc: BaseException) -> str:
    if not raw.strip():
        return "empty"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, ValueError):
        return "not JSON, or cut short"
    return "not the shape of an ownership record"


def record_shape(data: Any) -> dict[str, Any]:
    """``data`` if it has the shape to_json writes (TypeError otherwise)."""
    if not isinstance(data, dict) or data.get("format") != 1:
        raise TypeError("not a format 1 record")
    for field_name in ("namespaces", "objects", "sysctl_originals", "nat_namespaces"):
        if not isinstance(data.get(field_name, []), list):
            raise TypeError(f"{field_name} is not a list")
    for entry in data.get("sysctl_originals", []):
        if not (isinstance(entry, list) and len(entry) == 3):
            raise TypeError("a sysctl original is not [namespace, name, value]")
    return data


def validated(record: OwnershipRecord, topology: str) -> OwnershipRecord:
    """``record`` if it is ``topology``'s and every name in it passes the loader's rules."""
    if readback.topology_name(record.topology) != topology:
        raise Untrusted(f"it names topology {record.topology!r}, not {topology!r}")
    for ns in record.namespaces | record.nat_namespaces:
        readback.namespace(ns)
    for key in record.objects:
        readback.check_key(key, (Ownership.RECORD,))
    for (ns, name), value in record.sysctl_originals.items():
        readback.namespace(ns)
        readback.sysctl_name(name)
        readback.sysctl_value(value)
    return record
