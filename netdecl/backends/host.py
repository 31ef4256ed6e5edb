"""The Host seam: everything the engine asks of a machine, as one small protocol.

The observer, executor, applier and rollback talk to a Host and to nothing else, so the whole
engine runs against the real kernel (kernelhost.KernelHost) or an in-memory fake in the unit
tests. A Host decides nothing: it reads what a Scope names and carries out create, delete and
modify of model objects. Which objects are netdecl's is the engine's business
(engine/ownership.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from netdecl.model import Key, NetObject


@dataclass
class Scope:
    """What to read: namespaces, sysctl names per namespace, and which optional families."""

    namespaces: list[str]
    sysctls: dict[str, set[str]]
    nat: bool
    rules: bool
    fdb: bool
    # where the topology's NAT table can be; None: all. Reading it costs an `nft` process per
    # namespace, so never in the hundreds of others.
    nat_namespaces: set[str] | None = None
    # also the routes the kernel derives from addresses (proto kernel), which netdecl never
    # manages: only `show` reads them (a prefix route moved to another table is the user's)
    kernel_routes: bool = False
    # (namespace, link) whose traffic control to read: a qdisc dump only where a topology
    # declares or recorded one
    qdiscs: set[tuple[str, str]] = field(default_factory=set)
    # the VLANs bridges keep for their ports (a dump per namespace): only when a topology
    # says some link's (model.Link.vlans)
    bridge_vlans: bool = False


@dataclass(frozen=True)
class Birth:
    """How one create proves what it made.

    ``secret`` is drawn at random and written to the journal before the create: an object made
    under a name derived from it (a link's temporary name, see temp_link_name) is provably
    netdecl's, since nobody else could know that name in advance. ``made(key, identity)`` is
    called as soon as an object exists, with what the kernel says identifies it, and before it
    takes its real name; the caller writes it down, so that an object at a real name whose
    identity was never written down is never taken for netdecl's."""

    secret: str
    made: Callable[[Key, str], None]
    # Whether an address this create adds is announced to its neighbours (backends/announce.py;
    # the engine decides, engine/announcements.py).
    announce: bool = True


# A reported identity may name alternatives (a namespace between its placeholder file and its
# mount is one or the other), separated by this.
ALTERNATIVES = "|"
# The identity of an object made under a name derived from a Birth's secret (a link's temporary
# name, a namespace's placeholder file): only that apply knew the name, so the name proves it.
BY_SECRET_NAME = "secret-name"
# Proof that a plain file at /run/netns/NAME is what netdecl's own removal of namespace NAME
# left (killed between the unmount and the unlink): the journal says it was removing it.
BEING_REMOVED = "being-removed"


@dataclass(frozen=True)
class NatHandles:
    """nft's handles of a topology's two tables in one namespace, the ``ip`` one and the
    ``ip6`` one beside it (None: that table is not there): a table is netdecl's by its handle,
    which nft never reuses within a namespace, not by its name. ``ip6_known`` is False in a
    record from before the ip6 table had an identity: it was addressed by name then."""

    ip: int | None
    ip6: int | None
    ip6_known: bool = True

    def identity(self) -> str:
        """The table's part of a NatTable's identity (the namespace's comes before it)."""
        if not self.ip6_known:
            return f"nft{self.ip}"
        return f"nft{self.ip or '-'}/ip6:{self.ip6 or '-'}"

    @staticmethod
    def of(ident: str | None) -> tuple[str, NatHandles] | None:
        """(the namespace's identity, the handles) from a NatTable's identity
        (``NSID/nft12/ip6:13``, ``NSID/nft12/ip6:-``, or ``NSID/nft12`` as records before the
        ip6 table's identity say); None when it is no such identity."""
        if not ident or "/nft" not in ident:
            return None
        namespace, tables = ident.rsplit("/nft", 1)
        ip, sep, ip6 = tables.partition("/ip6:")
        try:
            if not sep:
                return namespace, NatHandles(int(ip), None, ip6_known=False)
            return namespace, NatHandles(None if ip == "-" else int(ip),
                                         None if ip6 == "-" else int(ip6))
        except ValueError:
            return None


# A link netdecl made or adopted carries its topology's name in its ifalias, behind this
# prefix: a mark for people and `show` (ownership itself is by identity, engine/ownership.py).
OWNER_PREFIX = "netdecl:"


def owner_mark(topology: str) -> str:
    """The ifalias that marks a link as ``topology``'s."""
    return OWNER_PREFIX + topology


def owner_of_alias(alias: str | None) -> str | None:
    """The topology an ifalias marks its link as belonging to; None: no mark."""
    if alias and alias.startswith(OWNER_PREFIX):
        return alias[len(OWNER_PREFIX):]
    return None


def temp_link_name(secret: str, end: int) -> str:
    """The name a link is created under before it is renamed (at most IFNAMSIZ-1 bytes)."""
    return f"nd{secret[:12]}{end}"


# Every temp_link_name as a glob (12 hex digits of the secret, one of the end): the other
# network managers are kept off links born under these names while an apply runs.
TEMP_LINK_GLOB = "nd" + "?" * 13


def temp_namespace_name(secret: str) -> str:
    """The placeholder file a namespace mount point starts as, under /run/netns."""
    return f".nd{secret[:12]}"


class Host(Protocol):
    def observe(self, topology: str, scope: Scope) -> list[NetObject]:
        """Every object in scope (netdecl's and others'); the topology's NAT table only."""

    def named_namespaces(self) -> list[str]:
        """Named namespaces that exist (the root always does)."""

    def unmodelled(self, namespaces: list[str]) -> list[str]:
        """What these namespaces hold that netdecl has no model for (a qdisc someone added),
        one sentence each: `show` names them, since its file cannot say them."""

    def missing_kinds(self, kinds: Collection[str]) -> list[str]:
        """Those of the link kinds ``kinds`` (links/ names) this kernel cannot make: their
        module is neither built in, nor loaded, nor loadable. Changes nothing."""

    def create(self, obj: NetObject, topology: str, peer: NetObject | None = None,
               birth: Birth | None = None) -> None:
        """Make ``obj`` (a veth: with its ``peer`` end) and mark it as ``topology``'s where the
        kernel can carry a mark (links). With ``birth``, report the identity of what was made
        (namespaces, links, NAT tables) through it before the object takes its name."""

    def delete(self, obj: NetObject, topology: str, peer: NetObject | None = None) -> None:
        """Remove the observed ``obj`` (a veth: both ends), only if it still is the object
        observed (its ``ident``); another object at its name is left alone. Gone already is
        not an error."""

    def modify(self, before: NetObject | None, after: NetObject,
               changes: dict[str, Any], topology: str, birth: Birth | None = None) -> None:
        """Change ``before`` into ``after``; ``changes`` names the attributes that differ. A
        change that makes a new object (a NAT table is replaced whole) reports it through
        ``birth``."""

    def missing_qdisc_kinds(self, kinds: Collection[str]) -> dict[str, str]:
        """Of these qdisc kinds, those the kernel cannot make: kind -> the module it lacks.
        Asked at plan time, so that a plan needing one refuses before changing anything."""

    def set_alias(self, link: NetObject, alias: str | None) -> None:
        """Set the ifalias of the observed ``link`` (that very one: its ifindex) to ``alias``;
        None or empty: remove it. Nothing else about it changes. Adoption gives a link its
        owner mark this way (owner_mark), and a failed adopting apply puts back the text the
        mark replaced."""

    def restore_route(self, route: NetObject) -> None:
        """Write the observed ``route`` again, replacing the one at its key, with its own
        ``proto`` instead of netdecl's: only to put back a route that adoption rewrote."""

    def remove_placeholders(self, proven: Mapping[str, str]) -> list[str]:
        """Remove namespace placeholder files (a crash inside namespace creation) that hold no
        namespace, each only if it is the file netdecl made: ``proven`` maps a name under
        /run/netns to the identity recorded for it. Returns the problems met."""

    def refresh(self, namespaces: Collection[str] | None = None) -> None:
        """Forget what was learnt while reading (about ``namespaces`` only, when given): the
        next observe sees the host as it is now."""

    def reconnect(self) -> None:
        """Drop every connection (an interrupted request may have left a reply in flight);
        the next call opens new ones."""

    def close(self) -> None: ...
