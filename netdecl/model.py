"""The one model of network state.

The loader turns a topology file into these objects and the observer turns the live kernel into
the very same classes, so planning is a comparison of equal types. Every object is a frozen
dataclass with a ``key`` (its identity: what the kernel would call "the same object") and plain
attributes. Desired objects use ``None`` for "not specified, the kernel may choose"; the planner
never treats a ``None`` desired attribute as a difference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

ROOT = ""
"""Namespace key of the root (host) namespace. Shown to users as no prefix at all."""

MAIN_TABLE = 254

# Routes and rules netdecl creates carry this protocol number: a kernel-visible mark that says
# "netdecl made this", so a route someone else added is never taken for ours.
RTPROT_NETDECL = 0xD3

# Kernel defaults a file may leave implicit. topology/format.py maps the file's omissions onto
# these, backends read them back; neither spells the numbers itself.
IPV6_DEFAULT_METRIC = 1024
"""The metric Linux gives an IPv6 route added without one (an IPv4 route gets 0)."""

Key = tuple  # ("link", namespace, name) and the like; the first item names the object type


def qualify(namespace: str, name: str) -> str:
    """How users see a namespaced name: ``nginx-1/eth0``, or just ``docker0`` in the root."""
    return f"{namespace}/{name}" if namespace else name


def ns_label(namespace: str) -> str:
    return namespace or "root"


LINK_FLAGS = ("promisc", "allmulti")
"""Interface flags a file may set on any link (IFF_PROMISC, IFF_ALLMULTI), in place. Observed,
a flag that is off reads None, as links read before there were flags (records, journals and
saved plans of those hosts stay the same); a desired False matches it."""

_COMPARED: dict[type, tuple[str, ...]] = {}


def _compared_fields(cls: type[NetObject]) -> tuple[str, ...]:
    """The fields the planner compares, per class (dataclasses.fields() per object per plan
    was a tenth of diffing a thousand containers)."""
    found = _COMPARED.get(cls)
    if found is None:
        found = _COMPARED[cls] = tuple(
            f.name for f in dataclasses.fields(cls)
            if f.name != "namespace" and f.name not in cls.OBSERVED_ONLY
            and f.name not in cls.NESTED)
    return found


@dataclass(frozen=True)
class NetObject:
    """Base of every object the planner reconciles."""

    TYPE: ClassVar[str] = ""
    # Attributes that are read from the kernel but never compared (ownership marks and such).
    OBSERVED_ONLY: ClassVar[tuple[str, ...]] = ()
    # Attributes where a desired None is a value ("no master", "no gateway"), not "don't care".
    NONE_IS_VALUE: ClassVar[tuple[str, ...]] = ()
    # Attributes compared by the class's own ``differences``, not as a whole.
    NESTED: ClassVar[tuple[str, ...]] = ()

    namespace: str

    @property
    def key(self) -> Key:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def compared_fields(self) -> Iterator[str]:
        return iter(_compared_fields(type(self)))

    def differences(self, observed: NetObject) -> dict[str, tuple[Any, Any]]:
        """Fields where the observed object differs from this (desired) one: name -> (now, want).

        A desired ``None`` means "don't care" and never differs.
        """
        changes: dict[str, tuple[Any, Any]] = {}
        for name in _compared_fields(type(self)):
            want = getattr(self, name)
            now = getattr(observed, name)
            if want == now or (want is None and name not in self.NONE_IS_VALUE) or (
                    want is False and now is None and name in LINK_FLAGS):
                continue
            changes[name] = (now, want)
        return changes

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"object_type": self.TYPE}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [v.to_dict() if isinstance(v, NetObject) else v for v in value]
            out[f.name] = value
        return out


@dataclass(frozen=True)
class Namespace(NetObject):
    """A named network namespace, visible to ``ip netns`` as /run/netns/NAME."""

    TYPE: ClassVar[str] = "namespace"
    OBSERVED_ONLY: ClassVar[tuple[str, ...]] = ("ident",)

    # observed only: what the kernel says this namespace is (the nsfs device and inode behind
    # /run/netns/NAME); the same name over a different namespace is a different object
    ident: str | None = None

    @property
    def name(self) -> str:
        return self.namespace

    @property
    def key(self) -> Key:
        return ("namespace", self.namespace)

    def describe(self) -> str:
        return f"namespace {self.namespace}"


@dataclass(frozen=True)
class LinkSpec:
    """A link kind's own settings: each kind module (netdecl/links/<kind>.py) defines one.

    The planner and the records see a spec through ``flat``: its settings by the names the
    plan shows and records store (a bridge's ``stp``, a veth's ``peer``, a VXLAN's ``vxlan``).
    """

    # setting -> why changing it needs a new device (the kernel cannot change it in place)
    RECREATE: ClassVar[dict[str, str]] = {}
    # setting -> why the link goes down for a change of it (the kernel changes it in place,
    # only while the link is down: a bond's lacp_rate)
    DOWN_FOR: ClassVar[dict[str, str]] = {}
    # setting -> its kernel default, which the kind reads back as None (so links read as
    # they did before the setting existed): a desired default matches it
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def flat(self) -> dict[str, Any]:
        """Setting name -> value, as plans compare and show them."""
        return {}

    def flat_json(self) -> dict[str, Any]:
        """``flat`` in JSON's types (records, journals, saved plans)."""
        return self.flat()

    def pair(self) -> tuple[str, str] | None:
        """(namespace, name) of the link made together with this one, if any (a veth's
        other end)."""
        return None

    def uses(self) -> tuple[str, ...]:
        """Links of the same namespace this link is made on: created first, and their
        loss takes this link along (a VXLAN's underlay device)."""
        return ()

    def given_back(self) -> dict[str, Any] | None:
        """What the record keeps of a link netdecl took rather than made, to give it back on
        delete (a host-device's NIC as it was in the root); None: made, deleted outright."""
        return None

    def uses_elsewhere(self) -> tuple[tuple[str, str], ...]:
        """(namespace, name) of links in another namespace this link is made on (a macvlan on
        the host's NIC, as the CNI plugins make them): created first, their loss takes this
        link along, and the kernel makes this link beside the first of them, then moves it
        into its own namespace."""
        return ()


# Before each kind had its module, every link in a record, journal or saved plan carried these
# keys, None where not its kind; they are still written that way, so those files read the same
# in both directions and a saved plan's fingerprint does not move.
RECORD_SETTINGS = ("peer", "stp", "vxlan")

DEVICE = "device"
"""A Link's ``kind`` when the kernel reports none of its own (a physical NIC)."""


@dataclass(frozen=True)
class Link(NetObject):
    """A network interface in a namespace. ``kind`` is the kernel's name for its kind
    ("device" when it has none); ``spec`` holds what only that kind has (netdecl/links/)."""

    TYPE: ClassVar[str] = "link"
    OBSERVED_ONLY: ClassVar[tuple[str, ...]] = ("owner", "alias", "ifindex", "ident")
    NONE_IS_VALUE: ClassVar[tuple[str, ...]] = ("master",)
    # compared through its settings (LinkSpec.flat), not as one value
    NESTED: ClassVar[tuple[str, ...]] = ("spec",)

    name: str = ""
    kind: str = ""
    up: bool | None = True
    mtu: int | None = None
    mac: str | None = None
    master: str | None = None
    # bridge port: hairpin mode, lets a port receive frames it sent (NAT hairpin)
    hairpin: bool | None = None
    spec: LinkSpec | None = None
    # observed only: the topology named in the link's ownership mark (ifalias), if any
    owner: str | None = None
    # observed only: the ifalias as the kernel has it (None: none), the mark or any text;
    # kept so that a failed `apply --adopt` can put back the text its mark replaced
    alias: str | None = None
    ifindex: int | None = None
    # observed only: the link's identity, its ifindex within the identity of its namespace
    ident: str | None = None
    # receive every frame / every multicast frame (what the CNI tuning plugin sets); observed:
    # what was asked of the link (not a bridge's own promiscuity on its ports), None when off
    promisc: bool | None = None
    allmulti: bool | None = None
    # a bridge port's (or a bridge's own) VLANs: (id, pvid, untagged) per VLAN, sorted; the
    # complete set when said; observed only when a topology says it of some link
    vlans: tuple[tuple[int, bool, bool], ...] | None = None

    @property
    def key(self) -> Key:
        return ("link", self.namespace, self.name)

    @property
    def peer(self) -> tuple[str, str] | None:
        """The other end of a pair (a veth's), as (namespace, name)."""
        return self.spec.pair() if self.spec is not None else None

    def settings(self) -> dict[str, Any]:
        return self.spec.flat() if self.spec is not None else {}

    def recreated_by(self) -> dict[str, str]:
        """Setting -> why a change of it needs a new link."""
        return type(self.spec).RECREATE if self.spec is not None else {}

    def differences(self, observed: NetObject) -> dict[str, tuple[Any, Any]]:
        changes = super().differences(observed)
        if not self.master:
            # hairpin is a bridge-port flag: without a master the kernel has nowhere to keep it
            changes.pop("hairpin", None)
        mine = self.settings()
        if mine:
            same_kind = isinstance(observed, Link) and type(observed.spec) is type(self.spec)
            theirs = observed.settings() if same_kind and isinstance(observed, Link) else {}
            defaults = self.spec.DEFAULTS if self.spec is not None else {}
            for name, want in mine.items():
                now = theirs.get(name)
                if want is not None and want != now and not (
                        now is None and name in defaults and defaults[name] == want):
                    changes[name] = (now, want)
        return changes

    def describe(self) -> str:
        return f"link {qualify(self.namespace, self.name)}"

    def to_dict(self) -> dict[str, Any]:
        settings = self.spec.flat_json() if self.spec is not None else {}
        out: dict[str, Any] = {"object_type": self.TYPE}
        for name in ("namespace", "name", "kind", "up", "mtu", "mac", "master"):
            out[name] = getattr(self, name)
        peer, stp, vxlan = (settings.pop(name, None) for name in RECORD_SETTINGS)
        out.update(peer=peer, stp=stp, hairpin=self.hairpin, vxlan=vxlan)
        out.update(settings)
        for name in ("owner", "alias", "ifindex", "ident"):
            out[name] = getattr(self, name)
        for name in LINK_FLAGS:  # written only when said: older records read the same
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.vlans is not None:
            out["vlans"] = [list(entry) for entry in self.vlans]
        return out


@dataclass(frozen=True)
class ExternalLink(NetObject):
    """A link the host owns (its NIC: ``kind: external`` in the file). netdecl never creates
    or deletes it; it names it (routes, NAT, VXLAN and bridge ports may use it) and manages
    only the attributes the file declares on it, restoring their values from before netdecl
    on destroy. ``None`` means "not declared": the host's value stands."""

    TYPE: ClassVar[str] = "external"
    MANAGED: ClassVar[tuple[str, ...]] = ("up", "mtu", "master", *LINK_FLAGS)

    name: str = ""
    up: bool | None = None
    mtu: int | None = None
    master: str | None = None
    promisc: bool | None = None
    allmulti: bool | None = None

    @property
    def key(self) -> Key:
        return ("external", self.namespace, self.name)

    def describe(self) -> str:
        return f"external link {qualify(self.namespace, self.name)}"

    def declared(self) -> dict[str, Any]:
        """The managed attributes this (desired) object declares: name -> value."""
        return {a: getattr(self, a) for a in self.MANAGED if getattr(self, a) is not None}


@dataclass(frozen=True)
class QdiscStage:
    """One qdisc of a link's chain: its kind (the kernel's name) and its settings in the
    kernel's own units, as the kernel reports them back, so desired and observed compare
    equal; netdecl/tc/ owns what each setting means and how it is written."""

    kind: str
    params: tuple[tuple[str, int], ...] = ()

    def get(self, name: str) -> int | None:
        return dict(self.params).get(name)


EGRESS = "egress"
INGRESS = "ingress"


@dataclass(frozen=True)
class Qdisc(NetObject):
    """Traffic control on a link, one direction: ``egress`` is the link's root qdisc chain
    (outermost first: a shaper, then netem under it); ``ingress`` is an ingress qdisc whose
    match-all filter redirects what the link receives to ``redirect`` (an ifb shaped on its
    own egress), as the CNI bandwidth plugin builds it. The qdisc that was there before
    netdecl (the kernel's default or a hand-set one) is recorded and put back."""

    TYPE: ClassVar[str] = "qdisc"
    OBSERVED_ONLY: ClassVar[tuple[str, ...]] = ("handle", "original")

    link: str = ""
    direction: str = EGRESS
    stages: tuple[QdiscStage, ...] = ()
    redirect: str | None = None
    # observed only: the root qdisc's handle (0: the kernel's default), and the root qdisc as
    # the kernel dumps it (netdecl/tc/qdiscs.py original_of), to put back
    handle: int | None = None
    original: str | None = None

    @property
    def key(self) -> Key:
        return ("qdisc", self.namespace, self.link, self.direction)

    def describe(self) -> str:
        return f"qdisc {self.direction} on {qualify(self.namespace, self.link)}"

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["stages"] = [[s.kind, [list(p) for p in s.params]] for s in self.stages]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Qdisc:
        fields = dict(data)
        fields["stages"] = tuple(QdiscStage(kind, tuple((n, v) for n, v in params))
                                 for kind, params in fields.get("stages") or ())
        return cls(**fields)


@dataclass(frozen=True)
class Address(NetObject):
    """An IP address (CIDR, normalised by ipaddress) on a link."""

    TYPE: ClassVar[str] = "address"

    link: str = ""
    cidr: str = ""
    # the kernel adds no prefix route for it (IFA_F_NOPREFIXROUTE): on a link with a routing
    # table of its own (``route_table``), whose prefix route netdecl puts in that table
    noprefixroute: bool = False

    @property
    def key(self) -> Key:
        return ("address", self.namespace, self.link, self.cidr)

    def describe(self) -> str:
        return f"address {self.cidr} on {qualify(self.namespace, self.link)}"


@dataclass(frozen=True)
class Route(NetObject):
    """A route. Identity follows the kernel's: (table, destination, metric) per namespace."""

    TYPE: ClassVar[str] = "route"
    OBSERVED_ONLY: ClassVar[tuple[str, ...]] = ("proto",)
    NONE_IS_VALUE: ClassVar[tuple[str, ...]] = ("via", "src")

    to: str = ""  # normalised CIDR; a default route is 0.0.0.0/0 or ::/0
    table: int = MAIN_TABLE
    metric: int = 0
    via: str | None = None
    dev: str | None = None
    src: str | None = None
    type: str | None = "unicast"
    onlink: bool | None = None
    # global | link | host, as the kernel keeps it (IPv6 routes are always global); None in a
    # desired route means "whatever the kernel chooses"
    scope: str | None = None
    proto: int | None = None

    @property
    def key(self) -> Key:
        return ("route", self.namespace, self.table, self.to, self.metric)

    @property
    def family(self) -> int:
        return 6 if ":" in self.to else 4

    @property
    def is_default(self) -> bool:
        """The default route of its family: prefix length 0."""
        return self.to.endswith("/0")

    def describe(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        to = "default" if self.is_default else self.to
        extra = f" table {self.table}" if self.table != MAIN_TABLE else ""
        extra += f" metric {self.metric}" if self.metric else ""
        fam = " (IPv6)" if self.family == 6 and self.is_default else ""
        return f"route {to}{fam}{extra}{where}"


@dataclass(frozen=True)
class Sysctl(NetObject):
    """A kernel parameter in a namespace, e.g. net.ipv4.ip_forward. Values compare as strings."""

    TYPE: ClassVar[str] = "sysctl"

    name: str = ""
    value: str = ""

    @property
    def key(self) -> Key:
        return ("sysctl", self.namespace, self.name)

    @property
    def per_link(self) -> str | None:
        """The link a per-link sysctl is about (net.ipv6.conf.eth0.disable_ipv6,
        net/ipv4/conf/eth0.100/rp_filter, net.ipv4.neigh.eth0.*); None for one of the whole
        namespace, `all` and `default` included. The planner orders by it: the kernel applies a
        namespace-wide one to the links made after it, a per-link one only once its link exists."""
        parts = self.name.split("/" if "/" in self.name else ".")
        if len(parts) >= 5 and parts[:2] in (["net", "ipv4"], ["net", "ipv6"]) \
                and parts[2] in ("conf", "neigh") and parts[3] not in ("all", "default"):
            return parts[3]
        return None

    def describe(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"sysctl {self.name}{where}"


NAT_KINDS = ("masquerade", "snat", "dnat")
FILTER = "filter"
"""The kind of a forward-filter rule; it lives in the same nft table as the NAT rules."""
FILTER_ACTIONS = ("accept", "drop", "reject")
CT_STATES = ("invalid", "established", "related", "new", "untracked")
"""The conntrack states a filter rule may match, in the order nft lists them (by bit)."""


@dataclass(frozen=True)
class NatRule:
    """One rule of netdecl's nftables table. ``kind`` is masquerade, snat, dnat (a port
    forward) or filter (a forward-filter rule, see ``action``).

    Values are parsed and normalised (addresses and CIDRs as ipaddress prints them, ports as
    integers): nothing downstream parses file text. How a file spells them (``to:
    "172.17.0.2:80"``, ``port: 8080-8090``, the keys ``in``/``from``) is topology/format.py's.
    """

    kind: str
    source: str | None = None  # CIDR matched as the packet's source (masquerade, snat, filter)
    out: str | None = None  # only when leaving through this link
    not_out: str | None = None  # only when not leaving through this link
    to_source: str | None = None  # snat: the new source address
    proto: str | None = None  # dnat, filter: tcp | udp
    port: int | None = None  # dnat, filter: the destination port matched (first of a range)
    port_end: int | None = None  # dnat, filter: the last port of a range; None for one port
    to_address: str | None = None  # dnat: the new destination address
    to_port: int | None = None  # dnat: the new destination port; None keeps the packet's own
    in_: str | None = None  # dnat, filter: only arriving on this link
    from_: str | None = None  # dnat: only from this CIDR
    address: str | None = None  # dnat: only to this address (local, or a virtual IP)
    # masquerade, snat, filter: only to one of these CIDRs
    destination: tuple[str, ...] | None = None
    not_destination: tuple[str, ...] | None = None  # masquerade, snat: not to any of these
    # dnat to several targets (a load-balanced virtual IP): new connections spread evenly over
    # these addresses (to_address is None then), all on to_port
    to_addresses: tuple[str, ...] | None = None
    action: str | None = None  # filter: accept | drop | reject
    # filter: only packets of connections in one of these conntrack states (CT_STATES order)
    state: tuple[str, ...] | None = None
    # masquerade, snat: only packets the host itself sends (``source: local`` in the file)
    local_source: bool | None = None

    @property
    def targets(self) -> tuple[str, ...]:
        """Every address a port forward may send a connection to."""
        if self.to_addresses:
            return self.to_addresses
        return (self.to_address,) if self.to_address else ()

    @property
    def family(self) -> int | None:
        """4 or 6, from the rule's addresses; None when it names none (a NAT rule without
        addresses is IPv4, as it always was; a filter rule without them matches both)."""
        texts = (self.source, self.to_source, self.to_address, self.from_, self.address,
                 *(self.destination or ()), *(self.not_destination or ()),
                 *(self.to_addresses or ()))
        for text in texts:
            if text:
                return 6 if ":" in text else 4
        return None

    @property
    def families(self) -> tuple[int, ...]:
        """The address families whose traffic this rule applies to."""
        family = self.family
        if family is not None:
            return (family,)
        return (4, 6) if self.kind == FILTER else (4,)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NatRule:
        """Inverse of to_dict (saved plans and the journal hold rules as JSON)."""
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in data.items()}
        return cls(**fields)

    def describe(self) -> str:
        """``dnat proto=tcp port=8080 to=172.17.0.2:80``: how plans, graphs and explain show a
        rule (its words mirror the file's keys, so a user can find the rule in the file)."""
        ports = None if self.port is None else \
            str(self.port) + ("" if self.port_end is None else f"-{self.port_end}")
        target = ",".join(self.targets) or None
        if target is not None and self.to_port is not None:
            target = f"[{target}]:{self.to_port}" if ":" in target else f"{target}:{self.to_port}"
        shown = (("source", "local" if self.local_source else self.source),
                 ("destination", _joined(self.destination)),
                 ("not_destination", _joined(self.not_destination)), ("out", self.out),
                 ("not_out", self.not_out), ("to_source", self.to_source),
                 ("proto", self.proto), ("port", ports), ("to", target), ("in", self.in_),
                 ("from", self.from_), ("address", self.address),
                 ("state", _joined(self.state)))
        head = [self.kind] if self.action is None else [self.kind, self.action]
        return " ".join([*head, *(f"{k}={v}" for k, v in shown if v is not None)])


def _joined(values: tuple[str, ...] | None) -> str | None:
    return None if values is None else ",".join(values)


@dataclass(frozen=True)
class NatTable(NetObject):
    """netdecl's nftables table in one namespace: the ordered NAT rules of one topology there.

    The table is replaced as a whole in one nft transaction; the plan still shows rule-by-rule
    differences. ``rules`` is a tuple of NatRule; ``None`` in an observed table means "the table
    exists but its contents are not what netdecl writes" (edited by hand), which is drift.
    """

    TYPE: ClassVar[str] = "nat"
    OBSERVED_ONLY: ClassVar[tuple[str, ...]] = ("ident",)

    rules: tuple[NatRule, ...] | None = ()
    # observed only: nft's handle of the table within the identity of its namespace (handles
    # are never reused in a namespace, so a table deleted and made again by hand differs)
    ident: str | None = None

    @property
    def key(self) -> Key:
        return ("nat", self.namespace)

    def describe(self) -> str:
        return f"nat table in {ns_label(self.namespace)}"

    def forwarded_families(self) -> set[int]:
        """The address families whose forwarding this table's rules need: those its NAT rules
        translate; IPv4 for a table of filter rules only (empty: no rules)."""
        rules = self.rules or ()
        families = {family for rule in rules if rule.kind != FILTER
                    for family in rule.families}
        return families or ({4} if rules else set())

    def to_dict(self) -> dict[str, Any]:
        return {
            "object_type": self.TYPE,
            "namespace": self.namespace,
            "rules": None if self.rules is None else [r.to_dict() for r in self.rules],
            "ident": self.ident,
        }


@dataclass(frozen=True)
class FdbEntry(NetObject):
    """A static forwarding-database entry: ``mac`` reachable via ``link`` (VXLAN: at ``dst``)."""

    TYPE: ClassVar[str] = "fdb"

    link: str = ""
    mac: str = ""
    dst: str | None = None

    @property
    def key(self) -> Key:
        return ("fdb", self.namespace, self.link, self.mac, self.dst)

    def describe(self) -> str:
        to = f" dst {self.dst}" if self.dst else ""
        return f"fdb {self.mac}{to} on {qualify(self.namespace, self.link)}"


@dataclass(frozen=True)
class Neighbor(NetObject):
    """A permanent neighbour (ARP/NDP) entry."""

    TYPE: ClassVar[str] = "neighbor"

    link: str = ""
    address: str = ""
    mac: str = ""

    @property
    def key(self) -> Key:
        return ("neighbor", self.namespace, self.link, self.address)

    def describe(self) -> str:
        return f"neighbor {self.address} on {qualify(self.namespace, self.link)}"


@dataclass(frozen=True)
class Rule(NetObject):
    """A policy routing rule; identity is its priority (unique per family in netdecl)."""

    TYPE: ClassVar[str] = "rule"
    OBSERVED_ONLY: ClassVar[tuple[str, ...]] = ("proto",)

    priority: int = 0
    family: int = 4
    src: str | None = None  # "from" in the file
    dst: str | None = None  # "to" in the file
    table: int = MAIN_TABLE
    iif: str | None = None
    oif: str | None = None
    proto: int | None = None

    @property
    def key(self) -> Key:
        return ("rule", self.namespace, self.family, self.priority)

    def describe(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"rule {self.priority}{' (IPv6)' if self.family == 6 else ''}{where}"


@dataclass(frozen=True)
class Probe:
    """A connectivity check `verify` runs with real traffic (not reconciled state)."""

    source: str  # namespace the probe runs from ("from" in the file)
    to: str  # namespace name or address
    port: int | None = None
    expect_source: str | None = None  # "source" in the file: what the server must see
    expect: str = "reachable"  # reachable | blocked
    proto: str = "tcp"
    vrf: str | None = None  # sent from a socket bound to this VRF: routed in its table


T = TypeVar("T", bound=NetObject)


@dataclass
class Topology:
    """A whole set of objects: what a file asks for, or what the kernel holds.

    ``objects`` maps key -> object. ``namespaces_seen`` is, for observed state, every namespace
    that exists (named ones only; the root always exists).
    """

    name: str
    objects: dict[Key, NetObject] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)
    # Where each object came from in the file, for diagnostics: key -> (line, col)
    positions: dict[Key, tuple[int, int]] = field(default_factory=dict)
    # Warnings the loader produced (valid, but probably not what the user meant)
    warnings: list[str] = field(default_factory=list)
    # The files it was read from: the file, and every file a template included (the agent
    # watches them all)
    sources: tuple[str, ...] = ()
    # A template's expansion: the plain topology data (what `render` prints); None when the
    # file was plain
    expanded: Any = None

    def add(self, obj: NetObject) -> None:
        self.objects[obj.key] = obj

    def of_type(self, cls: type[T]) -> list[T]:
        return [o for o in self.objects.values() if isinstance(o, cls)]

    def get(self, key: Key) -> NetObject | None:
        return self.objects.get(key)

    def namespaces(self) -> list[str]:
        """Named namespaces this topology declares (sorted, root excluded)."""
        return sorted(o.namespace for o in self.of_type(Namespace))

    def all_namespaces(self) -> list[str]:
        """Every namespace any object lives in, root first."""
        names = {o.namespace for o in self.objects.values()}
        names.add(ROOT)
        return sorted(names)

    def links_in(self, namespace: str) -> list[Link]:
        return [o for o in self.of_type(Link) if o.namespace == namespace]

    def extend(self, objs: Iterable[NetObject]) -> None:
        for o in objs:
            self.add(o)


# --- the label of a NAT rule (its nft comment) -------------------------------------------

# nft's command line refuses comments over 128 characters (NFTNL_UDATA_COMMENT_MAXLEN); its
# JSON parser does not check, and fails obscurely further on, so we enforce the limit ourselves.
COMMENT_MAX = 128

# Short keys for the comment encoding, so the longest valid dnat rule fits in 128 bytes: the
# NatRule fields that are written as they are. Ports and the target are written as
# "port=FIRST[-LAST]" and "to=ADDRESS[:PORT]" (see encode_comment).
_SHORT_KEYS = {
    "source": "src",
    "out": "out",
    "not_out": "nout",
    "to_source": "tosrc",
    "proto": "proto",
    "in_": "in",
    "from_": "from",
    "address": "addr",
    "destination": "dst",
    "not_destination": "ndst",
    "action": "act",
    "state": "st",
}
# Fields holding several values, written comma-separated (no value contains a comma).
_LIST_KEYS = ("dst", "ndst", "lb", "st")
_LONG_KEYS = {short: long for long, short in _SHORT_KEYS.items()}
# The order of the words in a comment (kept from the first version, so tables already on a
# host keep reading back as netdecl's).
# Words added later go at the end. "lb" and "tport" are a load-balanced forward's targets
# and their common port.
_COMMENT_ORDER = ("src", "out", "nout", "tosrc", "proto", "port", "to", "in", "from", "addr",
                  "dst", "ndst", "lb", "tport", "act", "st", "loc")


def encode_comment(index: int, rule: NatRule) -> str:
    """``"<index> <kind> key=value ..."``: lossless, short keys. This is a format of its own,
    stored in live kernels: it must keep reading back what earlier versions wrote."""
    values: dict[str, str] = {_SHORT_KEYS[k]: ",".join(v) if isinstance(v, list) else v
                              for k, v in rule.to_dict().items() if k in _SHORT_KEYS}
    if rule.local_source:
        values["loc"] = "1"
    if rule.port is not None:
        values["port"] = str(rule.port) + ("" if rule.port_end is None else f"-{rule.port_end}")
    elif rule.port_end is not None:
        raise ValueError(f"NAT rule has a port range end but no port: {rule.describe()}")
    if rule.to_address is not None:
        host = f"[{rule.to_address}]" if ":" in rule.to_address and rule.to_port is not None \
            else rule.to_address
        values["to"] = host + ("" if rule.to_port is None else f":{rule.to_port}")
    elif rule.to_addresses:
        values["lb"] = ",".join(rule.to_addresses)
        if rule.to_port is not None:
            values["tport"] = str(rule.to_port)
    elif rule.to_port is not None:
        raise ValueError(f"NAT rule has a target port but no address: {rule.describe()}")
    words = [str(index), rule.kind]
    for key in _COMMENT_ORDER:
        value = values.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value or any(c.isspace() for c in value):
            raise ValueError(f"NAT rule field {key}={value!r} cannot be encoded")
        words.append(f"{key}={value}")
    comment = " ".join(words)
    if len(comment.encode()) > COMMENT_MAX:
        raise ValueError(f"NAT rule too long for an nft comment ({COMMENT_MAX} bytes): "
                         f"{rule.describe()}")
    return comment


def decode_comment(comment: str) -> tuple[int, NatRule] | None:
    """Inverse of encode_comment; None for anything it did not write."""
    words = comment.split(" ")
    if len(words) < 2 or not words[0].isdigit():
        return None
    fields: dict[str, Any] = {}
    for word in words[2:]:
        key, sep, value = word.partition("=")
        if not sep or key in fields or \
                key not in (*_LONG_KEYS, "port", "to", "lb", "tport", "loc"):
            return None
        fields[key] = value
    typed: dict[str, Any] = {_LONG_KEYS[k]: tuple(v.split(",")) if k in _LIST_KEYS else v
                             for k, v in fields.items() if k in _LONG_KEYS}
    if "port" in fields:
        first, sep, last = fields["port"].partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            return None
        typed["port"], typed["port_end"] = int(first), (int(last) if sep else None)
    if "to" in fields:
        target = _decode_target(fields["to"])
        if target is None:
            return None
        typed["to_address"], typed["to_port"] = target
    if "lb" in fields:
        typed["to_addresses"] = tuple(fields["lb"].split(","))
        if "tport" in fields:
            if not fields["tport"].isdigit():
                return None
            typed["to_port"] = int(fields["tport"])
    elif "tport" in fields:
        return None
    if "loc" in fields:
        if fields["loc"] != "1":
            return None
        typed["local_source"] = True
    try:
        return int(words[0]), NatRule(kind=words[1], **typed)
    except TypeError:
        return None


def _decode_target(text: str) -> tuple[str, int | None] | None:
    """The comment's ``to=``: ADDRESS, ADDRESS:PORT or [IPV6]:PORT."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    elif text.count(":") == 1:
        host, sep, port = text.partition(":")
    else:
        host, sep, port = text, "", ""
    if sep and not port.isdigit():
        return None
    return host, (int(port) if sep else None)
