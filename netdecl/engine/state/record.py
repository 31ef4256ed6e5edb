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

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netdecl.engine.state import statedir, untrusted
from netdecl.engine.state.untrusted import DamagedStateFile, Untrusted, parse_problem
from netdecl.kinds import Ownership
from netdecl.model import EGRESS, INGRESS, Key
from netdecl.tc.qdiscs import parse_original


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
    # (namespace, link, direction) -> the qdisc there before netdecl first replaced it, as
    # netdecl/tc/qdiscs.py original_of writes it ("default": the kernel's own)
    qdisc_originals: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # (namespace, name) of a host-device -> the NIC as it was in the root before netdecl
    # moved it (links/hostdevice.Original.to_json): what destroy and rollback give back
    device_originals: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
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
    # not saved: namespaces forgotten (forget_namespace) whose keys are still to be dropped
    dropping: set[str] = field(default_factory=set, repr=False, compare=False)

    def owns(self, key: Key) -> bool:
        self.flush()
        return key in self.objects and key not in self.superseded

    def forget_namespace(self, ns: str) -> None:
        """Forget namespace ``ns`` and everything in it (deleted with it). Its keys go at the
        next flush(), all deleted namespaces' in one pass: a destroy deletes a thousand
        namespaces in a row, and a pass over every key per namespace was quadratic (a quarter
        of a second at N=1000). Whoever reads the keys directly flushes first (claims.py
        before each action that is not another namespace's deletion, the applier after the
        last; to_json and copy always do)."""
        self.namespaces.discard(ns)
        self.nat_namespaces.discard(ns)
        self.dropping.add(ns)

    def flush(self) -> None:
        if not self.dropping:
            return
        gone, self.dropping = self.dropping, set()
        self.objects -= {key for key in self.objects if key[1] in gone}
        for key in [key for key in self.identities if key[1] in gone]:
            del self.identities[key]
        for sysctl in [key for key in self.sysctl_originals if key[0] in gone]:
            del self.sysctl_originals[sysctl]
        for attr in [key for key in self.link_originals if key[0] in gone]:
            del self.link_originals[attr]
        for qdisc in [key for key in self.qdisc_originals if key[0] in gone]:
            del self.qdisc_originals[qdisc]
        for device in [key for key in self.device_originals if key[0] in gone]:
            del self.device_originals[device]

    def is_empty(self) -> bool:
        self.flush()
        # identities count: links are owned by theirs alone (a topology of root-namespace
        # links has nothing else in its record)
        return not (self.namespaces or self.objects or self.sysctl_originals
                    or self.nat_namespaces or self.link_originals or self.identities
                    or self.qdisc_originals or self.device_originals)

    def to_json(self) -> dict[str, Any]:
        self.flush()
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
            **({"qdisc_originals": [[ns, link, direction, value] for (ns, link, direction), value
                                    in sorted(self.qdisc_originals.items())]}
               if self.qdisc_originals else {}),
            **({"device_originals": [[ns, name, value] for (ns, name), value
                                     in sorted(self.device_originals.items())]}
               if self.device_originals else {}),
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
            qdisc_originals={(ns, link, direction): value for ns, link, direction, value
                             in data.get("qdisc_originals", [])},
            device_originals={(ns, name): value
                              for ns, name, value in data.get("device_originals", [])},
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
                record.superseded |= superseded_by(record, theirs)
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
            problem = "empty" if not raw.strip() else parse_problem(exc, "an ownership record")
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


def record_shape(data: Any) -> dict[str, Any]:
    """``data`` if it has the shape to_json writes (TypeError otherwise)."""
    if not isinstance(data, dict) or data.get("format") != 1:
        raise TypeError("not a format 1 record")
    for field_name in ("namespaces", "objects", "sysctl_originals", "nat_namespaces",
                       "link_originals", "identities", "qdisc_originals",
                       "device_originals"):
        if not isinstance(data.get(field_name, []), list):
            raise TypeError(f"{field_name} is not a list")
    for entry in data.get("sysctl_originals", []):
        if not (isinstance(entry, list) and len(entry) == 3):
            raise TypeError("a sysctl original is not [namespace, name, value]")
    for entry in data.get("link_originals", []):
        if not (isinstance(entry, list) and len(entry) == 4):
            raise TypeError("a link original is not [namespace, link, attribute, value]")
    for entry in data.get("qdisc_originals", []):
        if not (isinstance(entry, list) and len(entry) == 4
                and all(isinstance(part, str) for part in entry)):
            raise TypeError("a qdisc original is not [namespace, link, direction, qdisc]")
    for entry in data.get("device_originals", []):
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], dict)):
            raise TypeError("a device original is not [namespace, name, {device...}]")
    for entry in data.get("identities", []):
        if not (isinstance(entry, list) and len(entry) >= 3):
            raise TypeError("an identity is not [key..., identity]")
    return data


# what netdecl manages on an external link, and the values it may have had before
_LINK_ORIGINALS: dict[str, Callable[[Any], bool]] = {
    "mtu": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0),
    "up": lambda v: v is None or isinstance(v, bool),
    "master": lambda v: v is None or (isinstance(v, str) and untrusted.link_name(v) == v),
    # interface flags: on, or None for off (model.LINK_FLAGS)
    "promisc": lambda v: v is None or v is True,
    "allmulti": lambda v: v is None or v is True,
}


def validated(record: OwnershipRecord, topology: str) -> OwnershipRecord:
    """``record`` if it is ``topology``'s and every name in it passes the loader's rules."""
    if untrusted.topology_name(record.topology) != topology:
        raise Untrusted(f"it names topology {record.topology!r}, not {topology!r}")
    for ns in record.namespaces | record.nat_namespaces:
        untrusted.namespace(ns)
    for key in record.objects:
        # keyed claims; and addresses netdecl added to an external link (owned by the record)
        untrusted.check_key(key, (Ownership.RECORD, Ownership.LINK))
    for key, ident in record.identities.items():
        untrusted.check_key(key)
        untrusted.identity(ident)
    for (ns, link, attr), value in record.link_originals.items():
        untrusted.namespace(ns)
        untrusted.link_name(link)
        if attr not in _LINK_ORIGINALS or not _LINK_ORIGINALS[attr](value):
            raise Untrusted(f"link original {attr}={value!r} of {link} is not one netdecl keeps")
    for (ns, link, direction), value in record.qdisc_originals.items():
        untrusted.namespace(ns)
        untrusted.link_name(link)
        if direction not in (EGRESS, INGRESS):
            raise Untrusted(f"qdisc original of {link}: no direction {direction!r}")
        try:
            parse_original(value)
        except ValueError as exc:
            raise Untrusted(f"qdisc original of {link} is not one netdecl keeps: {exc}") \
                from None
    for (ns, name), value in record.device_originals.items():
        untrusted.namespace(ns)
        untrusted.link_name(name)
        _device_original(name, value)
    for (ns, name), value in record.sysctl_originals.items():
        untrusted.namespace(ns)
        untrusted.sysctl_name(name)
        untrusted.sysctl_value(value)
    return record


def _device_original(name: str, value: dict[str, Any]) -> None:
    """A host-device's original (links/hostdevice.Original.to_json) if every part passes the
    loader's rules: it names the link and addresses destroy writes back."""
    if set(value) - {"kind", "device", "mtu", "up", "alias", "addresses"}:
        raise Untrusted(f"device original of {name} has keys netdecl does not keep")
    untrusted.link_name(value.get("device"))
    if not _LINK_ORIGINALS["mtu"](value.get("mtu")) or \
            not isinstance(value.get("up", False), bool):
        raise Untrusted(f"device original of {name}: mtu or up is not one netdecl keeps")
    alias = value.get("alias")
    if alias is not None and (not isinstance(alias, str) or not alias.isprintable()):
        raise Untrusted(f"device original of {name}: alias {alias!r} is not printable text")
    addresses = value.get("addresses", [])
    if not isinstance(addresses, list):
        raise Untrusted(f"device original of {name}: addresses are not a list")
    for cidr in addresses:
        try:
            ipaddress.ip_interface(cidr)
        except (TypeError, ValueError):
            raise Untrusted(f"device original of {name}: {cidr!r} is no address") from None
