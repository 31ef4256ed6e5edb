"""Carry out one planned action through the backends, keeping the ownership record in step.

Each action knows nothing about planning. Bookkeeping is split in two so crash safety does not
need a record write per action: ``claim`` (before the kernel is touched: "this is ours now")
is a pure function of the action, so after a crash it can be replayed from the journal's
intent lines; ``settle`` (after: "this is gone") only shrinks the record.
"""

from __future__ import annotations

from collections.abc import Callable

from netdecl.backends.netlink import Kernel
from netdecl.backends.sysctl import write as write_sysctl
from netdecl.engine.planner.plan import CREATE, DELETE, MODIFY, REPLACE, Action, Reason
from netdecl.engine.record import OwnershipRecord
from netdecl.model import Address, Link, NatTable, Neighbor, Route, Sysctl

RECORD_OWNED = ("route", "rule", "fdb", "neighbor")


def _restoring(action: Action) -> bool:
    return action.type == "sysctl" and action.why is Reason.RESTORE_ORIGINAL


def claim(action: Action, record: OwnershipRecord) -> None:
    """Record what ``action`` is about to make ours (idempotent, no I/O)."""
    ns = action.key[1]
    if action.type == "namespace" and action.op == CREATE:
        record.namespaces.add(ns)
    elif action.type in RECORD_OWNED and action.op != DELETE:
        record.objects.add(action.key)
    elif action.type == "nat" and action.op != DELETE:
        record.nat_namespaces.add(ns)
    elif action.type == "sysctl" and not _restoring(action):
        assert isinstance(action.after, Sysctl)
        key = (action.after.namespace, action.after.name)
        if key not in record.sysctl_originals and isinstance(action.before, Sysctl):
            record.sysctl_originals[key] = action.before.value


def settle(action: Action, record: OwnershipRecord) -> None:
    """Forget what ``action`` has just removed."""
    ns = action.key[1]
    if action.type == "namespace" and action.op == DELETE:
        record.namespaces.discard(ns)
        record.objects -= {k for k in record.objects if k[1] == ns}
        for key in [k for k in record.sysctl_originals if k[0] == ns]:
            del record.sysctl_originals[key]
        record.nat_namespaces.discard(ns)
    elif action.type in RECORD_OWNED and action.op == DELETE:
        record.objects.discard(action.key)
    elif action.type == "nat" and action.op == DELETE:
        record.nat_namespaces.discard(ns)
    elif _restoring(action):
        assert isinstance(action.after, Sysctl)
        record.sysctl_originals.pop((action.after.namespace, action.after.name), None)


def execute(action: Action, kernel: Kernel, topology: str, record: OwnershipRecord) -> None:
    claim(action, record)
    _HANDLERS[action.type](action, kernel, topology)
    settle(action, record)


def _namespace(action: Action, kernel: Kernel, topology: str) -> None:
    name = action.key[1]
    if action.op == CREATE:
        kernel.create_namespace(name)
    elif action.op == DELETE:
        kernel.delete_namespace(name)


def _link(action: Action, kernel: Kernel, topology: str) -> None:
    if action.op in (DELETE, REPLACE):
        for end in (action.before, action.peer_before):
            if isinstance(end, Link):
                kernel.delete_link(end.namespace, end.name)
    if action.op in (CREATE, REPLACE):
        assert isinstance(action.after, Link)
        peer = action.peer_after if isinstance(action.peer_after, Link) else None
        kernel.create_link(action.after, topology, peer=peer)
    elif action.op == MODIFY:
        assert isinstance(action.after, Link)
        kernel.configure_link(action.after, topology, changes=action.changes.keys())


def _address(action: Action, kernel: Kernel, topology: str) -> None:
    if action.op == DELETE:
        assert isinstance(action.before, Address)
        kernel.delete_address(action.before)
    else:
        assert isinstance(action.after, Address)
        kernel.add_address(action.after)


def _recorded(add: Callable, remove: Callable) -> Callable:
    """A handler for record-owned objects (routes, rules, fdb, neighbours)."""

    def handler(action: Action, kernel: Kernel, topology: str) -> None:
        if action.op == DELETE:
            remove(kernel, action.before)
            return
        if action.op == MODIFY and action.before is not None and not isinstance(
                action.after, (Route, Neighbor)):
            remove(kernel, action.before)  # rules and fdb entries have no in-place replace
        add(kernel, action.after)

    return handler


def _sysctl(action: Action, kernel: Kernel, topology: str) -> None:
    assert isinstance(action.after, Sysctl)
    write_sysctl(action.after.namespace, action.after.name, action.after.value)


def _nat(action: Action, kernel: Kernel, topology: str) -> None:
    from netdecl.backends import nftables  # only topologies with NAT need nft at all

    ns = action.key[1]
    if action.op == DELETE:
        nftables.delete(topology, ns)
        return
    assert isinstance(action.after, NatTable)
    nftables.replace(topology, ns, action.after.rules or ())


_HANDLERS = {
    "namespace": _namespace,
    "link": _link,
    "address": _address,
    "route": _recorded(lambda k, o: k.replace_route(o), lambda k, o: k.delete_route(o)),
    "rule": _recorded(lambda k, o: k.add_rule(o), lambda k, o: k.delete_rule(o)),
    "fdb": _recorded(lambda k, o: k.add_fdb(o), lambda k, o: k.delete_fdb(o)),
    "neighbor": _recorded(lambda k, o: k.replace_neighbor(o), lambda k, o: k.delete_neighbor(o)),
    "sysctl": _sysctl,
    "nat": _nat,
}
