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
from netdecl.engine.planner.plan import CREATE, DELETE, MODIFY, REPLACE, Action, Reason
from netdecl.engine.record import OwnershipRecord
from netdecl.kinds import KINDS, Ownership
from netdecl.model import Sysctl


def _restoring(action: Action) -> bool:
    return action.why is Reason.RESTORE_ORIGINAL


def claim(action: Action, record: OwnershipRecord) -> None:
    """Record what ``action`` is about to make ours (idempotent, no I/O)."""
    how = KINDS[action.type].ownership
    ns = action.key[1]
    if how is Ownership.NAMESPACE and action.op == CREATE:
        record.namespaces.add(ns)
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
    if how is Ownership.NAMESPACE and action.op == DELETE:
        record.namespaces.discard(ns)
        record.objects -= {k for k in record.objects if k[1] == ns}
        for key in [k for k in record.sysctl_originals if k[0] == ns]:
            del record.sysctl_originals[key]
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
