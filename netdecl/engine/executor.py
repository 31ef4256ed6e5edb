"""Carry out one planned action on a Host, keeping the ownership record in step.

Each action knows nothing about planning, and nothing here depends on the kind of object: the
Host knows how to create, delete and modify each kind, and kinds.Ownership says how a kind is
claimed. Bookkeeping is split in two so crash safety does not need a record write per action:
``claim`` (before the host is touched: "this is ours now") is a pure function of the action,
so after a crash it can be replayed from the journal's intent lines; ``settle`` (after: "this
is gone") only shrinks the record.
"""

from __future__ import annotations

from netdecl.backends.host import Host
from netdecl.engine.planner.plan import ADOPT, CREATE, DELETE, MODIFY, REPLACE, Action, Reason
from netdecl.engine.record import OwnershipRecord
from netdecl.kinds import KINDS, Ownership
from netdecl.model import ExternalLink, Link, Sysctl


def _restoring(action: Action) -> bool:
    return action.why is Reason.RESTORE_ORIGINAL


def claim(action: Action, record: OwnershipRecord) -> None:
    """Record what ``action`` is about to make ours (idempotent, no I/O)."""
    how = KINDS[action.type].ownership
    ns = action.key[1]
    if how is Ownership.NAMESPACE and action.op in (CREATE, ADOPT):
        record.namespaces.add(ns)
    elif action.why is Reason.ON_EXTERNAL and action.op == CREATE:
        # an address netdecl adds to a link the host owns: the record says it is ours
        record.objects.add(action.key)
    elif how is Ownership.ORIGINAL and isinstance(action.after, ExternalLink):
        if not _restoring(action) and isinstance(action.before, ExternalLink):
            for attr in action.changes:
                record.link_originals.setdefault((ns, action.key[2], attr),
                                                 getattr(action.before, attr))
    elif how is Ownership.RECORD and action.op != DELETE:
        record.objects.add(action.key)
    elif how is Ownership.TABLE and action.op != DELETE:
        record.nat_namespaces.add(ns)
    elif how is Ownership.ORIGINAL and not _restoring(action):
        assert isinstance(action.after, Sysctl)
        key = (action.after.namespace, action.after.name)
        if key not in record.sysctl_originals and isinstance(action.before, Sysctl):
            record.sysctl_originals[key] = action.before.value


def settle(action: Action, record: OwnershipRecord) -> None:
    """Forget what ``action`` has just removed."""
    how = KINDS[action.type].ownership
    ns = action.key[1]
    if action.type == "address" and action.op == DELETE:
        record.objects.discard(action.key)  # an address added to an external link
    elif how is Ownership.ORIGINAL and isinstance(action.after, ExternalLink):
        if _restoring(action):
            for attr in action.changes:
                record.link_originals.pop((ns, action.key[2], attr), None)
    elif how is Ownership.NAMESPACE and action.op == DELETE:
        record.namespaces.discard(ns)
        record.objects -= {k for k in record.objects if k[1] == ns}
        for key in [k for k in record.sysctl_originals if k[0] == ns]:
            del record.sysctl_originals[key]
        for key in [k for k in record.link_originals if k[0] == ns]:
            del record.link_originals[key]
        record.nat_namespaces.discard(ns)
    elif how is Ownership.RECORD and action.op == DELETE:
        record.objects.discard(action.key)
    elif how is Ownership.TABLE and action.op == DELETE:
        record.nat_namespaces.discard(ns)
    elif how is Ownership.ORIGINAL and _restoring(action):
        assert isinstance(action.after, Sysctl)
        record.sysctl_originals.pop((action.after.namespace, action.after.name), None)


def execute(action: Action, host: Host, topology: str, record: OwnershipRecord) -> None:
    claim(action, record)
    if action.op == ADOPT:
        _adopt(action, host, topology)
        return
    if action.op in (DELETE, REPLACE):
        assert action.before is not None
        host.delete(action.before, topology, peer=action.peer_before)
    if action.op in (CREATE, REPLACE):
        assert action.after is not None
        host.create(action.after, topology, peer=action.peer_after)
    elif action.op == MODIFY:
        assert action.after is not None
        host.modify(action.before, action.after, action.changes, topology)
    settle(action, record)


def _adopt(action: Action, host: Host, topology: str) -> None:
    """Take over an existing object (claimed above): a link gets the owner mark (both ends of
    a veth); a route, FDB or neighbour entry is written again as it is, now carrying netdecl's
    protocol. A namespace carries no mark: the record is all."""
    if action.type == "link":
        for end in (action.after, action.peer_after):
            if isinstance(end, Link):
                host.claim_unmarked_link(end, topology)
    elif action.type != "namespace":
        assert action.before is not None
        host.modify(action.before, action.before, {}, topology)
