"""The plan as data: ordered actions, conflicts, and a fingerprint of the state it was made from."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from netdecl.model import Key, NetObject, Topology, object_from_dict

PLAN_FORMAT = "netdecl-plan/1"

CREATE, DELETE, MODIFY, REPLACE = "create", "delete", "modify", "replace"
SYMBOLS = {CREATE: "+", DELETE: "-", MODIFY: "~", REPLACE: "-/+"}


@dataclass
class Action:
    """One change to one object. ``before`` is what the kernel has, ``after`` what it will have.

    A veth pair is created, replaced and deleted as one action: ``peer_before``/``peer_after``
    carry the other end. ``changes`` (modify) maps attribute -> [before, after].
    """

    op: str
    key: Key
    before: NetObject | None = None
    after: NetObject | None = None
    peer_before: NetObject | None = None
    peer_after: NetObject | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)
    reason: str = ""

    @property
    def obj(self) -> NetObject:
        found = self.after if self.after is not None else self.before
        assert found is not None
        return found

    @property
    def type(self) -> str:
        return self.key[0]

    @property
    def namespace(self) -> str:
        return self.obj.namespace

    def describe(self) -> str:
        return self.obj.describe()

    def to_json(self) -> dict[str, Any]:
        def enc(o: NetObject | None) -> dict[str, Any] | None:
            return o.to_dict() if o is not None else None

        return {
            "op": self.op,
            "symbol": SYMBOLS[self.op],
            "type": self.type,
            "key": list(self.key),
            "object": self.describe(),
            "before": enc(self.before),
            "after": enc(self.after),
            "peer_before": enc(self.peer_before),
            "peer_after": enc(self.peer_after),
            "changes": {k: [_plain(v[0]), _plain(v[1])] for k, v in self.changes.items()},
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Action:
        def dec(d: dict[str, Any] | None) -> NetObject | None:
            return object_from_dict(d) if d is not None else None

        return cls(
            op=data["op"], key=tuple(data["key"]), before=dec(data["before"]),
            after=dec(data["after"]), peer_before=dec(data.get("peer_before")),
            peer_after=dec(data.get("peer_after")), changes=dict(data.get("changes", {})),
            reason=data.get("reason", ""),
        )


def _plain(value: Any) -> Any:
    """Make a change value JSON-friendly (NAT rule tuples, vxlan parameters...)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


@dataclass
class Conflict:
    """A declared object exists but is not ours: apply refuses the whole plan."""

    key: Key
    message: str


@dataclass
class Plan:
    topology: str
    actions: list[Action] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. why forwarding will not work
    fingerprint: str = ""

    def counts(self) -> tuple[int, int, int]:
        """(to add, to change, to destroy), counting a replace as one add and one destroy."""
        add = sum(a.op in (CREATE, REPLACE) for a in self.actions)
        change = sum(a.op == MODIFY for a in self.actions)
        destroy = sum(a.op in (DELETE, REPLACE) for a in self.actions)
        return add, change, destroy

    def to_json(self) -> dict[str, Any]:
        add, change, destroy = self.counts()
        return {
            "format": PLAN_FORMAT,
            "topology": self.topology,
            "fingerprint": self.fingerprint,
            "summary": {"add": add, "change": change, "destroy": destroy},
            "conflicts": [{"key": list(c.key), "message": c.message} for c in self.conflicts],
            "notes": list(self.notes),
            "actions": [a.to_json() for a in self.actions],
        }


def fingerprint(observed: Topology) -> str:
    """A digest of the observed state a plan was computed against (stale-plan detection)."""
    items = sorted((repr(k), json.dumps(o.to_dict(), sort_keys=True, default=str))
                   for k, o in observed.objects.items())
    digest = hashlib.sha256()
    for k, v in items:
        digest.update(k.encode())
        digest.update(v.encode())
    return digest.hexdigest()
