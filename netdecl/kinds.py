"""The one registry of object kinds: what each kind of reconciled object is, declaratively.

A kind is a model class (model.py) plus the facts every layer needs about it and that are not
behaviour: its name (the first item of its keys, the plan's "type"), where it stands in the
build order, and how netdecl knows it owns one. The layers above register their behaviour per
kind name and check that every kind here has it (tests/test_kinds.py):

- topology: how the file builds it, its checks, how `show` exports it;
- engine: its diff rule (engine/planner/diff.py RULES), how ownership is claimed (by
  ``ownership``, engine/claims.py), and how the host changes it (backends/kernelhost.py,
  through the Host protocol in backends/host.py).

Adding a kind: a class in model.py, one ``register`` line here, then its entries there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from netdecl.links import link_kind
from netdecl.model import (
    RECORD_SETTINGS,
    Address,
    ExternalLink,
    FdbEntry,
    Link,
    Namespace,
    NatRule,
    NatTable,
    Neighbor,
    NetObject,
    Qdisc,
    Route,
    Rule,
    Sysctl,
)


class Ownership(Enum):
    """How netdecl knows an observed object is one the topology owns."""

    NAMESPACE = "namespace"  # the record names the namespace (a namespace carries no mark)
    MARK = "mark"  # the kernel object carries the owner (a link's ifalias)
    LINK = "link"  # it lives on a link the topology owns (addresses)
    RECORD = "record"  # the record names its key (and routes/rules carry RTPROT_NETDECL)
    ORIGINAL = "original"  # declared values; the record keeps the value before netdecl
    # (sysctls, the attributes of external links)
    TABLE = "table"  # it is netdecl's own nftables table for the topology


class Stage:
    """Build order within a namespace; teardown runs it backwards. Kinds on one stage have no
    order between them."""

    NAMESPACE = 0
    LINK = 1
    ADDRESS = 2
    AFTER_LINKS = 3  # needs the links of its namespace (per-link sysctls, NAT naming links)
    AFTER_ADDRESSES = 4  # needs links and addresses (a gateway must be reachable)


@dataclass(frozen=True)
class Kind:
    name: str
    cls: type[NetObject]
    stage: int
    ownership: Ownership


KINDS: dict[str, Kind] = {}
"""name -> Kind, in registration order (the order the planner diffs them in)."""


def register(kind: Kind) -> Kind:
    if kind.name in KINDS:
        raise ValueError(f"kind {kind.name} is registered twice")
    if kind.cls.TYPE != kind.name:
        raise ValueError(f"kind {kind.name}: {kind.cls.__name__}.TYPE is {kind.cls.TYPE!r}")
    KINDS[kind.name] = kind
    return kind


def kind_of(name: str) -> Kind:
    return KINDS[name]


def object_from_dict(data: dict[str, Any]) -> NetObject:
    """Inverse of NetObject.to_dict, used by saved plans and the journal."""
    data = dict(data)
    cls = KINDS[data.pop("object_type")].cls
    if cls is Link:
        data = _link_fields(data)
    if cls is Qdisc:
        return Qdisc.from_dict(data)
    if cls is NatTable and data.get("rules") is not None:
        data["rules"] = tuple(NatRule.from_dict(r) for r in data["rules"])
    return cls(**data)


_LINK_FIELDS = frozenset(f.name for f in dataclasses.fields(Link))


def _link_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A recorded link's fields: its kind's flat settings (model.RECORD_SETTINGS and any of
    the kind's own) gathered into its spec."""
    kind = link_kind(data.get("kind"))
    if data.get("vlans") is not None:
        data["vlans"] = tuple(tuple(entry) for entry in data["vlans"])
    settings = {k: data.pop(k) for k in list(data) if k not in _LINK_FIELDS}
    if kind is None and set(settings) - set(RECORD_SETTINGS):
        raise TypeError(f"unexpected link fields {sorted(set(settings) - set(RECORD_SETTINGS))}")
    if kind is not None:
        data["spec"] = kind.spec_from_record(settings)
    return data


# The order is the planner's: routes are diffed after links and addresses, whose changes decide
# which routes the kernel will flush.
register(Kind("namespace", Namespace, Stage.NAMESPACE, Ownership.NAMESPACE))
register(Kind("link", Link, Stage.LINK, Ownership.MARK))
# the host's own NIC: never created or deleted; the attributes declared on it are set, and the
# record keeps their values from before netdecl to put back (like root sysctls)
register(Kind("external", ExternalLink, Stage.LINK, Ownership.ORIGINAL))
register(Kind("address", Address, Stage.ADDRESS, Ownership.LINK))
register(Kind("route", Route, Stage.AFTER_ADDRESSES, Ownership.RECORD))
register(Kind("rule", Rule, Stage.AFTER_ADDRESSES, Ownership.RECORD))
register(Kind("fdb", FdbEntry, Stage.AFTER_ADDRESSES, Ownership.RECORD))
register(Kind("neighbor", Neighbor, Stage.AFTER_ADDRESSES, Ownership.RECORD))
register(Kind("sysctl", Sysctl, Stage.AFTER_LINKS, Ownership.ORIGINAL))
register(Kind("nat", NatTable, Stage.AFTER_LINKS, Ownership.TABLE))
# traffic control on a link: the qdisc that was there before is recorded and put back
register(Kind("qdisc", Qdisc, Stage.AFTER_LINKS, Ownership.ORIGINAL))
