"""The Host seam: everything the engine asks of a machine, as one small protocol.

The observer, executor, applier and rollback talk to a Host and to nothing else, so the whole
engine runs against the real kernel (kernelhost.KernelHost) or an in-memory fake in the unit
tests. A Host decides nothing: it reads what a Scope names and carries out create, delete and
modify of model objects. Which objects are netdecl's is the engine's business
(engine/ownership.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from netdecl.model import Link, NetObject


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


class Host(Protocol):
    def observe(self, topology: str, scope: Scope) -> list[NetObject]:
        """Every object in scope (netdecl's and others'); the topology's NAT table only."""

    def named_namespaces(self) -> list[str]:
        """Named namespaces that exist (the root always does)."""

    def create(self, obj: NetObject, topology: str, peer: NetObject | None = None) -> None:
        """Make ``obj`` (a veth: with its ``peer`` end) and mark it as ``topology``'s where the
        kernel can carry a mark (links)."""

    def delete(self, obj: NetObject, topology: str, peer: NetObject | None = None) -> None:
        """Remove ``obj`` (a veth: both ends). Gone already is not an error."""

    def modify(self, before: NetObject | None, after: NetObject,
               changes: dict[str, Any], topology: str) -> None:
        """Change ``before`` into ``after``; ``changes`` names the attributes that differ."""

    def claim_unmarked_link(self, link: Link, topology: str) -> None:
        """If a link of ``link``'s name and kind exists without any owner mark, mark it as
        ``topology``'s (a crash between creating a link and marking it)."""

    def remove_placeholders(self, names: Iterable[str]) -> list[str]:
        """Remove namespace files that hold no namespace (a crash inside namespace creation);
        returns the problems met."""

    def refresh(self) -> None:
        """Forget what was learnt while reading: the next observe sees the host as it is now."""

    def reconnect(self) -> None:
        """Drop every connection (an interrupted request may have left a reply in flight);
        the next call opens new ones."""

    def close(self) -> None: ...
