"""The Host seam: everything the engine asks of a machine, as one small protocol.

The observer, executor, applier and rollback talk to a Host and to nothing else, so the whole
engine runs against the real kernel (kernelhost.KernelHost) or an in-memory fake in the unit
tests. A Host decides nothing: it reads what a Scope names and carries out create, delete and
modify of model objects. Which objects are netdecl's is the engine's business
(engine/ownership.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
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


def temp_namespace_name(secret: str) -> str:
    """The placeholder file a namespace mount point starts as, under /run/netns."""
    return f".nd{secret[:12]}"


class Host(Protocol):
    def observe(self, topology: str, scope: Scope) -> list[NetObject]:
        """Every object in scope (netdecl's and others'); the topology's NAT table only."""

    def named_namespaces(self) -> list[str]:
        """Named namespaces that exist (the root always does)."""

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
