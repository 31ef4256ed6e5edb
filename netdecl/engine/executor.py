"""Carry out one planned action on a Host, keeping the ownership record in step.

Each action knows nothing about planning, and nothing here depends on the kind of object: the
Host knows how to create, delete and modify each kind, and kinds.Ownership says how a kind is
claimed. The record's bookkeeping (``claim`` before the host is touched, the identities of what
the action makes as the Host reports them, ``settle`` after) is claims.py's, which the journal
shares to replay claims after a crash.
"""

from __future__ import annotations

from collections.abc import Callable

from netdecl.backends.host import Birth, Host, owner_mark
from netdecl.engine.announcements import Announcements
from netdecl.engine.claims import Ticket, claim, settle
from netdecl.engine.linkup import LateUp
from netdecl.engine.planner.adopt import Overwritten
from netdecl.engine.planner.plan import ADOPT, CREATE, DELETE, MODIFY, REPLACE, Action
from netdecl.engine.state.record import OwnershipRecord
from netdecl.model import Key, Link

Made = Callable[[Key, str], None]


def execute(action: Action, host: Host, topology: str, record: OwnershipRecord,
            ticket: Ticket | None = None, made: Made | None = None,
            announcements: Announcements | None = None, late_up: LateUp | None = None) -> None:
    """Carry out ``action``. ``made`` is told the identity of every object it makes, as soon
    as it exists (the applier writes it to the journal). ``announcements`` says whether an
    address added is announced (default: it is). With ``late_up``, a veth pair it makes
    leaves its second end down for ``late_up`` to bring up later (engine/linkup.py)."""
    ticket = ticket or Ticket()
    announce = announcements is None or announcements.wanted(action.after)
    claim(action, record, ticket)

    def identified(key: Key, ident: str) -> None:
        record.identities[key] = ident
        if made is not None:
            made(key, ident)

    birth = Birth(ticket.secret, identified, announce=announce)
    if action.op == ADOPT:
        _adopt(action, host, topology)
        settle(action, record, ticket)
        return
    if action.op in (DELETE, REPLACE):
        assert action.before is not None
        host.delete(action.before, topology, peer=action.peer_before)
        if action.op == REPLACE:
            for end in (action.before, action.peer_before):
                if end is not None:
                    record.identities.pop(end.key, None)
    if action.op in (CREATE, REPLACE):
        assert action.after is not None
        peer = action.peer_after
        if late_up is not None and late_up.defers(action):
            assert isinstance(peer, Link)
            peer = late_up.hold(peer)
        host.create(action.after, topology, peer=peer, birth=birth)
    elif action.op == MODIFY:
        assert action.after is not None
        host.modify(action.before, action.after, action.changes, topology, birth=birth)
    settle(action, record, ticket)


def _adopt(action: Action, host: Host, topology: str) -> None:
    """Take over an existing object (claimed above, by its identity): a link gets the owner
    mark (both ends of a veth); a route, FDB or neighbour entry is written again as it is, now
    carrying netdecl's protocol. A namespace carries no mark: the record is all."""
    if action.type == "link":
        for end in (action.before, action.peer_before):
            if isinstance(end, Link):
                host.set_alias(end, owner_mark(topology))
    elif action.type != "namespace":
        assert action.before is not None
        host.modify(action.before, action.before, {}, topology)


def put_back(item: Overwritten, host: Host) -> None:
    """Undo what adopting ``item.now`` overwrote (a rollback of an adopting apply): the link,
    by its ifindex, gets its alias from before (or none) again; the route is written as it
    was, with its protocol from before."""
    if isinstance(item.now, Link):
        host.set_alias(item.now, getattr(item.before, "alias", None))
    else:
        host.restore_route(item.before)
