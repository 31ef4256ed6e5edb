"""The plan as data: ordered actions, conflicts, notes. Its file format is planfile.py's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from netdecl.model import Key, NetObject


class _Named(str, Enum):
    """Shown as its value ("create"), in messages as in JSON."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Op(_Named):
    """What an action does to its object."""

    CREATE = "create"
    DELETE = "delete"
    MODIFY = "modify"
    REPLACE = "replace"  # delete and create again: a field the kernel cannot change in place
    ADOPT = "adopt"  # take over an existing object nobody owns (apply --adopt): mark, record


CREATE, DELETE, MODIFY, REPLACE, ADOPT = Op.CREATE, Op.DELETE, Op.MODIFY, Op.REPLACE, Op.ADOPT
SYMBOLS = {CREATE: "+", DELETE: "-", MODIFY: "~", REPLACE: "-/+", ADOPT: "="}


class Reason(_Named):
    """Why an action is in the plan, beyond "the file says so". Code decides on this, never on
    the text shown to people (REASON_TEXT, or the action's ``detail``)."""

    NONE = "none"
    PRUNE = "prune"  # ours, no longer in the file
    NOT_IN_FILE = "not-in-file"  # an address on a link we own that the file does not list
    RECREATE = "recreate"  # replace: ``detail`` says which field forces it
    DEPENDENCY_REBUILT = "dependency-rebuilt"  # present, but a link or address under it changes
    RESTORE_ORIGINAL = "restore-original"  # a sysctl no longer declared gets its old value back
    EDITED_BY_HAND = "edited-by-hand"  # our nft table holds what netdecl did not write
    ON_EXTERNAL = "on-external"  # an address added to a link the host owns: only it is ours
    OVERWRITTEN = "overwritten"  # a link's sysctl that the plan's `all` one writes over


REASON_TEXT = {
    Reason.NONE: "",
    Reason.PRUNE: "prune",
    Reason.NOT_IN_FILE: "not in the file",
    Reason.RECREATE: "recreate",
    Reason.DEPENDENCY_REBUILT: "re-added: a link or address it depends on changes",
    Reason.RESTORE_ORIGINAL: "no longer declared: restore the value from before netdecl",
    Reason.EDITED_BY_HAND: "table edited by hand",
    Reason.ON_EXTERNAL: "added to an external link; the link's own addresses stay",
    Reason.OVERWRITTEN: "written again: the namespace's `all` value, set first, overwrites it",
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
    # how to compute the fingerprint of the observed state the plan was made against
    # (planfile.fingerprint): set by the service, not by the planner, and run only when the
    # fingerprint is asked for (a plan saved or printed as JSON, a saved plan's staleness
    # check): hashing 5000 observed objects was 40 ms of every plan at N=1000
    fingerprint_of: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    known_fingerprint: str = field(default="", repr=False)

    @property
    def fingerprint(self) -> str:
        if not self.known_fingerprint and self.fingerprint_of is not None:
            self.known_fingerprint = self.fingerprint_of()
        return self.known_fingerprint

    def counts(self) -> tuple[int, int, int]:
        """(to add, to change, to destroy), counting a replace as one add and one destroy."""
        add = sum(a.op in (CREATE, REPLACE) for a in self.actions)
        change = sum(a.op == MODIFY for a in self.actions)
        destroy = sum(a.op in (DELETE, REPLACE) for a in self.actions)
        return add, change, destroy

    def adoptions(self) -> int:
        """Existing objects the plan takes over (apply --adopt)."""
        return sum(a.op == ADOPT for a in self.actions)
