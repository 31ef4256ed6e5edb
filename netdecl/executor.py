"""Carry out one planned action through the backends, keeping the ownership record in step.

Each action knows nothing about planning; the record is updated (and saved by the caller)
so that what netdecl owns on disk always matches what it made in the kernel.
"""

from __future__ import annotations

from .backends.netlink import Kernel
from .backends.sysctl import write as write_sysctl
from .model import Address, Link, NatTable, Neighbor, Route, Sysctl
from .planner.plan import CREATE, DELETE, MODIFY, REPLACE, Action
from .state import OwnershipRecord


def execute(action: Action, kernel: Kernel, topology: str, record: OwnershipRecord,
            save_record) -> None:
    handler = _HANDLERS[action.type]
    handler(action, kernel, topology, record, save_record)


def _namespace(action: Action, kernel: Kernel, topology: str, record: OwnershipRecord,
               save) -> None:
    name = action.key[1]
    if action.op == CREATE:
        # recorded first: if we crash right after creating it, rollback knows it is ours
        record.namespaces.add(name)
        save()
        kernel.create_namespace(name)
    elif action.op == DELETE:
        kernel.delete_namespace(name)
        record.namespaces.discard(name)
        for key in [k for k in record.objects if k[1] == name]:
            record.objects.discard(key)
        for key in [k for k in record.sysctl_originals if k[0] == name]:
            del record.sysctl_originals[key]
        record.nat_namespaces.discard(name)
        save()


def _link(action: Action, kernel: Kernel, topology: str, record: OwnershipRecord,
          save) -> None:
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


def _address(action: Action, kernel: Kernel, topology: str, record: OwnershipRecord,
             save) -> None:
    if action.op == DELETE:
        assert isinstance(action.before, Address)
        kernel.delete_address(action.before)
    else:
        assert isinstance(action.after, Address)
        kernel.add_address(action.after)


def _recorded(add, remove):
    """A handler for record-owned objects (routes, rules, fdb, neighbours)."""

    def handler(action: Action, kernel: Kernel, topology: str, record: OwnershipRecord,
                save) -> None:
        if action.op == DELETE:
            remove(kernel, action.before)
            record.objects.discard(action.key)
            save()
            return
        if action.op == MODIFY and action.before is not None and not isinstance(
                action.after, (Route, Neighbor)):
            remove(kernel, action.before)  # rules and fdb entries have no in-place replace
        record.objects.add(action.key)
        save()
        add(kernel, action.after)

    return handler


def _sysctl(action: Action, kernel: Kernel, topology: str, record: OwnershipRecord,
            save) -> None:
    assert isinstance(action.after, Sysctl)
    key = (action.after.namespace, action.after.name)
    restoring = action.reason.startswith("no longer declared")
    if not restoring and key not in record.sysctl_originals and isinstance(action.before, Sysctl):
        record.sysctl_originals[key] = action.before.value
        save()
    write_sysctl(action.after.namespace, action.after.name, action.after.value)
    if restoring:
        record.sysctl_originals.pop(key, None)
        save()


def _nat(action: Action, kernel: Kernel, topology: str, record: OwnershipRecord,
         save) -> None:
    from .backends import nftables  # only topologies with NAT need nft at all

    ns = action.key[1]
    if action.op == DELETE:
        nftables.delete(topology, ns)
        record.nat_namespaces.discard(ns)
        save()
        return
    assert isinstance(action.after, NatTable)
    record.nat_namespaces.add(ns)
    save()
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
