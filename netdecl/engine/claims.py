"""The ownership record's bookkeeping for one action: what it claims before it runs, what it
lets go of after. Pure (no I/O), so the executor and the journal share it.

Bookkeeping is split in three so crash safety does not need a record write per action:
``claim`` (before the host is touched: "this name is ours now") is a pure function of the action
and its ``Ticket``, so after a crash it is replayed from the journal's intent lines
(state/journal.py); the identity of what the action makes is recorded as soon as the Host
reports it (``Birth.made``, written to the journal as it happens); ``settle`` (after: "this is
gone") only shrinks the record.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field

from netdecl.backends.host import temp_link_name, temp_namespace_name
from netdecl.engine.ownership import ALTERNATIVES, BY_SECRET_NAME, rules_identity
from netdecl.engine.planner.plan import ADOPT, CREATE, DELETE, REPLACE, Action, Reason
from netdecl.engine.state.record import CLAIM_PREFIX, OwnershipRecord
from netdecl.kinds import KINDS, Ownership
from netdecl.model import ExternalLink, Key, Link, NatTable, NetObject, Qdisc, Sysctl
from netdecl.tc.qdiscs import KERNEL_DEFAULT

_SECRET = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True)
class Ticket:
    """What an action's claim needs besides the action, drawn before it runs and journaled
    with its intent: a secret for the names it makes objects under, and the claim's time."""

    secret: str = field(default_factory=lambda: secrets.token_hex(6))
    stamp: int = field(default_factory=time.time_ns)

    def to_json(self) -> dict[str, object]:
        return {"secret": self.secret, "stamp": self.stamp}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Ticket | None:
        secret, stamp = data.get("secret"), data.get("stamp")
        # read back from a journal: the secret becomes part of link and /run/netns names
        if isinstance(secret, str) and _SECRET.fullmatch(secret) and isinstance(stamp, int) \
                and not isinstance(stamp, bool) and stamp >= 0:
            return cls(secret, stamp)
        return None


def _restoring(action: Action) -> bool:
    return action.why is Reason.RESTORE_ORIGINAL


def _link_ends(action: Action) -> list[Link]:
    return [end for end in (action.after, action.peer_after) if isinstance(end, Link)]


def temp_keys(action: Action, ticket: Ticket) -> list[Key]:
    """Keys of the objects ``action`` makes under names derived from the ticket's secret."""
    if action.op not in (CREATE, REPLACE):
        return []
    if action.type == "link":
        return [("link", end.namespace, temp_link_name(ticket.secret, number))
                for number, end in enumerate(_link_ends(action))]
    if action.type == "namespace":
        return [("namespace", temp_namespace_name(ticket.secret))]
    return []


def _flush_unless_namespace_deletion(action: Action, record: OwnershipRecord) -> None:
    """Drop the keys of the namespaces deleted so far, except between one namespace deletion
    and the next: a destroy's thousand deletions then cost one pass (OwnershipRecord.flush)."""
    if not (KINDS[action.type].ownership is Ownership.NAMESPACE and action.op == DELETE):
        record.flush()


def claim(action: Action, record: OwnershipRecord, ticket: Ticket | None = None) -> None:
    """Record what ``action`` is about to make ours (idempotent, no I/O)."""
    how = KINDS[action.type].ownership
    _flush_unless_namespace_deletion(action, record)
    ns = action.key[1]
    if isinstance(action.after, Link) and action.op in (CREATE, REPLACE) and \
            action.after.spec is not None and (back := action.after.spec.given_back()):
        # a link taken, not made (a host-device's NIC): what to give back on delete
        record.device_originals[(ns, action.after.name)] = back
    if how is Ownership.NAMESPACE and action.op in (CREATE, ADOPT):
        record.namespaces.add(ns)
        ident = getattr(action.before, "ident", None)
        if action.op == ADOPT and ident:
            record.identities[action.key] = ident
    elif how is Ownership.MARK and action.op == ADOPT:
        for end in (action.before, action.peer_before):
            if isinstance(end, Link) and end.ident:  # this very link, by its identity
                record.identities[end.key] = end.ident
    elif action.why is Reason.ON_EXTERNAL and action.op == CREATE:
        # an address netdecl adds to a link the host owns: the record says it is ours
        record.objects.add(action.key)
    elif isinstance(action.after, Qdisc):
        if not _restoring(action):
            record.qdisc_originals.setdefault(
                (ns, action.after.link, action.after.direction), _qdisc_before(action))
    elif how is Ownership.ORIGINAL and isinstance(action.after, ExternalLink):
        if not _restoring(action) and isinstance(action.before, ExternalLink):
            # joining a master may change the state too (a bond opens its member): kept
            kept = [*action.changes, *(["up"] if "master" in action.changes else [])]
            for attr in kept:
                record.link_originals.setdefault((ns, action.key[2], attr),
                                                 getattr(action.before, attr))
    elif how is Ownership.RECORD and action.op != DELETE:
        record.objects.add(action.key)
        if ticket is not None and (action.op == CREATE or action.key not in record.identities):
            record.identities[action.key] = f"{CLAIM_PREFIX}{ticket.stamp}"
    elif how is Ownership.TABLE and action.op != DELETE:
        record.nat_namespaces.add(ns)
        if isinstance(action.after, NatTable):
            # until nft's new handle is known, the table it writes is known by its rules
            before = record.identities.get(action.key)
            written = rules_identity(action.after.rules)
            record.identities[action.key] = (f"{before}{ALTERNATIVES}{written}" if before
                                             else written)
    elif how is Ownership.ORIGINAL and not _restoring(action):
        assert isinstance(action.after, Sysctl)
        key = (action.after.namespace, action.after.name)
        if key not in record.sysctl_originals and isinstance(action.before, Sysctl):
            record.sysctl_originals[key] = action.before.value
    if ticket is not None:
        for key in temp_keys(action, ticket):
            record.identities[key] = BY_SECRET_NAME


def _qdisc_before(action: Action) -> str:
    """The root qdisc a first change of a link's traffic control replaces: the kernel's
    default on a link this plan makes, else what was observed there."""
    before = action.before
    if action.op != CREATE and isinstance(before, Qdisc) and before.original:
        return before.original
    return KERNEL_DEFAULT


def _forget_qdiscs_of(record: OwnershipRecord, link: NetObject) -> None:
    """A deleted link takes its qdiscs along: nothing is left to put back."""
    for key in [k for k in record.qdisc_originals if k[:2] == link.key[1:]]:
        del record.qdisc_originals[key]


def settle(action: Action, record: OwnershipRecord, ticket: Ticket | None = None) -> None:
    """Forget what ``action`` has just removed."""
    how = KINDS[action.type].ownership
    ns = action.key[1]
    _flush_unless_namespace_deletion(action, record)
    if ticket is not None:
        for key in temp_keys(action, ticket):  # renamed: nothing is left under those names
            record.identities.pop(key, None)
    if action.type == "address" and action.op == DELETE:
        record.objects.discard(action.key)  # an address added to an external link
        record.identities.pop(action.key, None)
    elif isinstance(action.after, Qdisc):
        if _restoring(action):
            record.qdisc_originals.pop((ns, action.after.link, action.after.direction), None)
    elif how is Ownership.ORIGINAL and isinstance(action.after, ExternalLink):
        if _restoring(action):
            # (the state kept beside the master: put back with it, see the executor)
            kept = [*action.changes, *(["up"] if "master" in action.changes else [])]
            for attr in kept:
                record.link_originals.pop((ns, action.key[2], attr), None)
    elif how is Ownership.NAMESPACE and action.op == DELETE:
        record.forget_namespace(ns)  # (action.key is ("namespace", ns): it goes too)
    elif how is Ownership.MARK and action.op == DELETE:
        for end in (action.before, action.peer_before):
            if end is not None:
                record.identities.pop(end.key, None)
                record.device_originals.pop(end.key[1:], None)  # given back
                _forget_qdiscs_of(record, end)
    elif how is Ownership.RECORD and action.op == DELETE:
        record.objects.discard(action.key)
        record.identities.pop(action.key, None)
    elif how is Ownership.TABLE and action.op == DELETE:
        record.nat_namespaces.discard(ns)
        record.identities.pop(action.key, None)
    elif how is Ownership.ORIGINAL and _restoring(action):
        assert isinstance(action.after, Sysctl)
        record.sysctl_originals.pop((action.after.namespace, action.after.name), None)
