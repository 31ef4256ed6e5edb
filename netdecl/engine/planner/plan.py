"""The plan as data: ordered actions, conflicts, and a fingerprint of the state it was made from."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from netdecl.model import Key, NetObject, Topology, object_from_dict

PLAN_FORMAT = "netdecl-plan/1"



class Op(str, Enum):
    """What an action does to its object."""

    CREATE = "create"
    DELETE = "delete"
    MODIFY = "modify"
    REPLACE = "replace"  # delete and create again: a field the kernel cannot change in place


CREATE, DELETE, MODIFY, REPLACE = Op.CREATE, Op.DELETE, Op.MODIFY, Op.REPLACE
SYMBOLS = {CREATE: "+", DELETE: "-", MODIFY: "~", REPLACE: "-/+"}


class Reason(str, Enum):
    """Why an action is in the plan, beyond "the file says so". Code decides on this, never on
    the text shown to people (REASON_TEXT, or the action's ``detail``)."""

    NONE = "none"
    PRUNE = "prune"  # ours, no longer in the file
    NOT_IN_FILE = "not-in-file"  # an address on a link we own that the file does not list
    RECREATE = "recreate"  # replace: ``detail`` says which field forces it
    DEPENDENCY_REBUILT = "dependency-rebuilt"  # present, but a link or address under it changes
    RESTORE_ORIGINAL = "restore-original"  # a sysctl no longer declared gets its old value back
    EDITED_BY_HAND = "edited-by-hand"  # our nft table holds what netdecl did not write


REASON_TEXT = {
    Reason.NONE: "",
    Reason.PRUNE: "prune",
    Reason.NOT_IN_FILE: "not in the file",
    Reason.RECREATE: "recreate",
    Reason.DEPENDENCY_REBUILT: "re-added: a link or address it depends on changes",
    Reason.RESTORE_ORIGINAL: "no longer declared: restore the value from before netdecl",
    Reason.EDITED_BY_HAND: "table edited by hand",
}


@dataclass
class Action:
    """One change to one object. ``before`` is what the kernel has, ``after`` what it will have.

    A veth pair is created, replaced and deleted as one action: ``peer_before``/``peer_after``
    carry the other end. ``changes`` (modify) maps attribute -> [before, after].
    """

    op: Op
    key: Key
    before: NetObject | None = None
    after: NetObject | None = None
    peer_before: NetObject | None = None
    peer_after: NetObject | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)
    why: Reason = Reason.NONE
    detail: str = ""  # for people only: e.g. which field forces a replace

    def __post_init__(self) -> None:
        self.op = Op(self.op)
        self.why = Reason(self.why)

    @property
    def reason(self) -> str:
        """The reason as text for people (never decide on it: use ``why``)."""
        return self.detail or REASON_TEXT[self.why]

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
            "op": self.op.value,
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
            "why": self.why.value,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Action:
        def dec(d: dict[str, Any] | None) -> NetObject | None:
            return object_from_dict(d) if d is not None else None

        return cls(
            op=data["op"], key=tuple(data["key"]), before=dec(data["before"]),
            after=dec(data["after"]), peer_before=dec(data.get("peer_before")),
            peer_after=dec(data.get("peer_after")), changes=dict(data.get("changes", {})),
            why=Reason(data.get("why", Reason.NONE.value)), detail=data.get("detail", ""),
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
