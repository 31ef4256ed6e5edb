"""What every link kind module provides, and the defaults most kinds keep.

A kind module (netdecl/links/<kind>.py) defines a ``LinkKind`` subclass and, when the kind has
settings of its own, a ``LinkSpec`` (model.py) subclass for them. The layers above ask the
kind and never test its name:

- the file (topology/): which links one ``links`` entry declares (``ends``), the spec built
  from them (``specs``), objects the entry implies (``derived``), the kind's own checks
  (``check``), and how ``show`` writes an observed link back (``exportable``, ``export``);
- the plan (engine/): a spec's ``RECREATE`` settings, ``pair`` and ``uses`` (model.py);
- the kernel (backends/netlink.py): the IFLA_INFO_DATA that creates one (``create_data``) and
  the top-level attributes beside it (``create_attrs``: a VLAN's parent), what changes
  settings in place (``change_data``), and the spec read back (``parse``);
- drawing (tools/): a node's label (``label``), whether it joins other links at layer 2
  (``ports``, ``layer2``) and the tunnels between devices (``tunnels``).

The protocols below are what a kind is handed by those layers: small on purpose, so that a
kind module needs nothing above the model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from netdecl.model import ROOT, Link, LinkSpec, NetObject, Topology
from netdecl.nlattr import attr_u32
from netdecl.nlconst import IFLA_LINK

Path = tuple[Any, ...]  # a place in the file: ("links", 3, "peer")

PARENT_KEY = "link"
"""The file key naming the link a link is made on (a VLAN's or a macvlan's parent), for the
kinds that are (``LinkKind.parented``)."""

FLAG_SCHEMA: dict[str, dict[str, Any]] = {
    "promisc": {"type": "boolean", "description": "Promiscuous mode: the link receives every "
                "frame on its segment, not only those to its MAC (the CNI tuning plugin's "
                "promisc). Left out: as the kernel has it."},
    "allmulti": {"type": "boolean", "description": "The link receives every multicast frame, "
                 "not only the groups joined (the CNI tuning plugin's allmulti). Left out: as "
                 "the kernel has it."},
}
"""The interface flags any link may set (model.LINK_FLAGS): on a links entry and a veth's
``peer``."""

VLANS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "description": "A bridge port's VLANs (or, on a bridge, its own: what the bridge itself "
                   "sends and receives), the complete set: each an id or a range \"20-30\", "
                   "pvid (untagged frames arriving go to it: one per link) and untagged "
                   "(frames leave without the tag). Left out: as the kernel has them.",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["id"],
        "properties": {
            "id": {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 4094},
                             {"type": "string", "pattern": "^[0-9]{1,4}-[0-9]{1,4}$(?!\\n)"}]},
            "pvid": {"type": "boolean", "default": False},
            "untagged": {"type": "boolean", "default": False},
        },
    },
}
"""``vlans`` on a links entry and a veth's ``peer`` (model.Link.vlans)."""


def vlan_ids(value: Any) -> range | None:
    """The ids a ``vlans`` entry's ``id`` names (``10`` or ``"20-30"``); None when it names
    none in 1-4094 (the checks say why)."""
    if isinstance(value, int) and not isinstance(value, bool):
        first = last = value
    elif isinstance(value, str) and value.count("-") == 1 and value.replace("-", "").isdigit():
        first, last = (int(part) for part in value.split("-"))
    else:
        return None
    return range(first, last + 1) if 1 <= first <= last <= 4094 else None


def vlan_entries(value: Any) -> tuple[tuple[int, bool, bool], ...] | None:
    """A valid ``vlans`` list as model.Link.vlans: (id, pvid, untagged) per id, sorted."""
    if value is None:
        return None
    out = {}
    for item in value:
        for vid in vlan_ids(item["id"]) or ():
            out[vid] = (vid, bool(item.get("pvid", False)), bool(item.get("untagged", False)))
    return tuple(out[vid] for vid in sorted(out))


PARENT_SCHEMA: dict[str, Any] = {
    "description": "The link this one is made on (its parent: a VLAN's or a macvlan's lower "
                   "device): a name is a link in this link's own namespace; a mapping "
                   "{name: uplink} is in the root namespace and {name: eth1, namespace: ns1} "
                   "in another one, as a veth's peer reads (the link is made beside its "
                   "parent and moved into its own namespace, as the CNI plugins do). A link "
                   "of the file, or the host's NIC declared as kind: external.",
    # one schema for both forms, not a oneOf: each keyword applies to its own type, so an
    # error says what is wrong in the form written (a bad name, an unknown key)
    "type": ["string", "object"],
    "title": "an interface name, or a mapping {name: ..., namespace: ...}",
    "pattern": "^(?!\\.\\.?$)[A-Za-z0-9_.-]{1,15}$(?!\\n)",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"$ref": "#/$defs/ifname"},
        "namespace": {"$ref": "#/$defs/namespace", "description": "Namespace the parent "
                      "lives in; omitted means the root (host) namespace."},
    },
}


def file_parent(end_namespace: str, value: Any) -> tuple[str, str | None]:
    """The parent a valid entry's ``link:`` names: its name, and its namespace when that is
    not the link's own (None: the same)."""
    if isinstance(value, Mapping):
        ns = entry_namespace(value)
        return value["name"], (None if ns == end_namespace else ns)
    return value, None


def parent_value(name: str | None, netns: str | None) -> Any:
    """A parent as plans show and records keep it: its name in the link's namespace, else
    (namespace, name)."""
    return name if netns is None or name is None else (netns, name)


def parent_from_record(value: Any) -> tuple[str | None, str | None]:
    """``parent_value`` read back from a record (JSON: a pair is a list)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or not all(isinstance(v, str) for v in value):
            raise ValueError(f"parent {value!r} is not (namespace, name)")
        return value[1], value[0]
    return value, None


def parent_elsewhere(name: str | None, netns: str | None) -> tuple[tuple[str, str], ...]:
    """LinkSpec.uses_elsewhere of a link made on ``name`` in ``netns``."""
    return ((netns, name),) if netns is not None and name is not None else ()


def parent_export(name: str | None, netns: str | None) -> Any:
    """``link:`` as `show` writes it: the mapping form for a parent in another namespace."""
    if netns is None:
        return name
    return {"name": name, **({"namespace": netns} if netns else {})}


def parent_shown(link: Link, name: str | None, netns: str | None,
                 view: ExportView) -> bool:
    """Whether the parent is written too (else the link cannot be written as its kind)."""
    return name is not None and (link.namespace if netns is None else netns,
                                 name) in view.links


def parent_label(name: str | None, netns: str | None) -> str:
    """The parent as `graph` labels it."""
    if name is None:
        return "?"
    return name if netns is None else f"{netns or 'root'}/{name}"


@dataclass(frozen=True)
class End:
    """One link that a ``links`` entry declares: the entry itself, or a part of it (a veth's
    ``peer``). ``entry`` is that part of the file, not validated when checks read it."""

    namespace: str
    name: str
    path: Path
    entry: Mapping[str, Any]


class LinkRef(Protocol):
    """A link the file declares, as a reference to it resolves (topology/checks.LinkDecl)."""

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> Any:
        """Its ``kind:`` as written (not validated)."""

    @property
    def spec(self) -> Mapping[str, Any]:
        """Its entry in the file (not validated)."""


class FileCheck(Protocol):
    """What a kind's checks may do (topology/checks.Context provides it)."""

    def error(self, path: Path, message: str) -> None: ...

    def quoted(self, text: str) -> str:
        """``'text'`` for a message, escaped when it holds what would break the line."""

    def ip_version(self, path: Path, text: str) -> int | None:
        """The IP version of ``text``; None after reporting it at ``path`` when it is no
        address."""

    def ifname(self, path: Path, text: str) -> bool:
        """Whether ``text`` is an interface name; reports it at ``path`` when not."""

    def declared(self, namespace: str, name: str) -> LinkRef | None:
        """The link the file declares as ``name`` in ``namespace``, if any (nothing reported:
        for a reference that may name a link the file does not declare)."""

    def link_ref(self, path: Path, namespace: str | None, value: Any) -> LinkRef | None:
        """The link ``value`` names in ``namespace``; None after reporting at ``path`` that
        there is none (or when ``value`` is no name: the schema says so)."""

    @property
    def namespaces(self) -> set[str]:
        """The namespaces the file declares (the root not among them)."""

    def moved_away(self, namespace: str, name: str) -> str | None:
        """Why the declared link ``name`` of ``namespace`` is not there while the topology
        exists (a NIC a host-device moves into a namespace), else None."""


class KernelLink(Protocol):
    """A link as the kernel described it, for a kind to read its settings from."""

    @property
    def namespace(self) -> str:
        """The namespace it is in."""

    @property
    def info_data(self) -> Mapping[int, bytes]:
        """IFLA_INFO_DATA: attribute type -> payload."""

    def name_of(self, index: int) -> str | None:
        """The name of the link at ``index`` in this link's namespace."""

    def target(self) -> tuple[str, str] | None:
        """(namespace, name) of the link IFLA_LINK points at (a veth's peer), where known."""


class KernelRequest(Protocol):
    """What a kind is handed to build the request that creates a link."""

    @property
    def temp_names(self) -> Sequence[str]:
        """The names the ends are created under (a pair: this end, the other end)."""

    @property
    def peer_netns_fd(self) -> int | None:
        """An open file of the other end's namespace when that is not this one, else None."""

    def index_of(self, name: str) -> int:
        """The ifindex of ``name`` in the namespace the link is made in."""


class ExportView(Protocol):
    """What `show` (topology/export.py) offers a kind writing a link back into a file."""

    @property
    def links(self) -> Mapping[tuple[str, str], Link]:
        """(namespace, name) -> every link written."""

    def kind_written(self, key: tuple[str, str]) -> str:
        """The kind the link at ``key`` is written as."""

    def common(self, link: Link, kind: str) -> dict[str, Any]:
        """The settings every link has (addresses, mtu, mac, up, master...), for the file."""

    def written(self, key: tuple[str, str]) -> None:
        """Say that the link at ``key`` is written inside this one (a veth's ``peer``)."""

    def fdb_remotes(self, link: Link) -> list[str]:
        """The destinations of the all-zero FDB entries of ``link`` (flooding)."""

    def note(self, text: str) -> None:
        """Name something of the link that the file cannot say (`show` prints it as a YAML
        comment): a kind leaves a setting it cannot write out and says so, never silently."""


class LinkKind:
    """One kind of link. Subclasses set ``name`` and override what differs."""

    name: ClassVar[str] = ""
    # the file key of the kind's own settings, and whether an entry must have it
    settings_key: ClassVar[str | None] = None
    settings_required: ClassVar[bool] = False
    # what the file says when the settings key is missing (schema_errors.py)
    settings_hint: ClassVar[str] = ""
    # the kind's part of topology.schema.json (written by topology/compile_schema.py): the
    # JSON schema of its settings key, the $defs that refers to, common keys it refuses, and
    # a sentence for the ``kind`` enum's description when it is not one netdecl makes
    settings_schema: ClassVar[dict[str, Any]] = {}
    schema_defs: ClassVar[dict[str, Any]] = {}
    refuses: ClassVar[tuple[str, ...]] = ()
    described: ClassVar[str] = ""
    # netdecl makes and deletes links of this kind (external: the host's own, never)
    made: ClassVar[bool] = True
    # made of a link the host owns, taken and given back (a host-device's NIC: ``taken``),
    # not made by the kernel: no module to load
    takes: ClassVar[bool] = False
    # why a key the schema refuses on this kind is refused, when that is the kind's nature
    refuses_because: ClassVar[str] = ""
    # other links join it with ``master:`` (a bridge)
    ports: ClassVar[bool] = False
    # other links join it with ``master:`` to be routed in its table, not switched (a VRF):
    # a bridge may join one, and nothing crosses it at layer 2
    l3_master: ClassVar[bool] = False
    # a segment of links of such kinds ends at this host: nothing outside hears it
    host_local: ClassVar[bool] = False
    # `explain` follows layer 2 through it (to a peer, ports, a tunnel's far end)
    layer2: ClassVar[bool] = False
    # made as one of a pair (model.LinkSpec.pair): without its other end it leads nowhere
    paired: ClassVar[bool] = False
    # its settings live partly in the FDB (a VXLAN's remotes), so plan reads the FDB
    reads_fdb: ClassVar[bool] = False
    # made on another link, which the entry names as ``link:`` (PARENT_KEY): in its own
    # namespace, or (the mapping form) in another one
    parented: ClassVar[bool] = False
    # the kernel module that makes links of this kind ("8021q" for a vlan); None: nothing to
    # load (external). plan and apply check that the kernel has it before changing anything
    # (backends/kindprobe.py says how), so a missing one is one line, not EOPNOTSUPP mid-apply
    module: ClassVar[str | None] = None
    # a character device the kind is made through instead of an RTM_NEWLINK (a tap's
    # /dev/net/tun): the probe opens it rather than asking rtnetlink for the kind
    made_through: ClassVar[str | None] = None
    # other links join it with ``master:`` as its members, not as ports of a switch (a bond)
    members: ClassVar[bool] = False
    # a link joins it only while down, and it closes a member it releases (bonding): the
    # executor takes a joining link down first and gives a leaving one its state back
    members_down: ClassVar[bool] = False
    # sends and receives untagged on its parent's segment (a macvlan, not a VLAN): `explain`
    # crosses from it to its parent and from the parent to it
    on_parent_segment: ClassVar[bool] = False

    # -- the file ---------------------------------------------------------------------------
    def ends(self, entry: Mapping[str, Any], namespace: str, path: Path) -> list[End]:
        """The links one ``links`` entry declares, the entry's own first."""
        name = entry.get("name")
        return [End(namespace, name, path, entry)] if isinstance(name, str) else []

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        """The spec of each end (a valid entry)."""
        return [None for _ in ends]

    def build(self, ends: Sequence[End]) -> list[NetObject]:
        """The model objects of a valid entry's ends."""
        return [common_link(end, self.name, spec)
                for end, spec in zip(ends, self.specs(ends), strict=True)]

    def derived(self, link: NetObject, entry: Mapping[str, Any],
                path: Path) -> Iterator[tuple[NetObject, Path]]:
        """Other objects the entry implies, each with where it comes from."""
        return iter(())

    def check(self, ctx: FileCheck, ends: Sequence[End]) -> None:
        """The kind's own checks, over every declared link of the kind at once."""

    def check_member(self, ctx: FileCheck, member: End, master: End) -> None:
        """Checks of a link that names a link of this kind as its ``master``."""

    def moves(self, entry: Mapping[str, Any]) -> tuple[str, str] | None:
        """(namespace, name) of the host's link an (unvalidated) entry of this kind moves
        away while the topology exists (a host-device's NIC), else None."""
        return None

    def taken(self, link: Link) -> tuple[str, str] | None:
        """(namespace, name) of the host's link that ``link`` is made of (a host-device's
        NIC, moved in), else None: the plan reads it there before it is taken."""
        return None

    def before_taken(self, link: Link, found: Link, addresses: Sequence[str]) -> Link:
        """``link`` knowing what it gives back: ``found`` (the host's link it takes) and
        ``addresses`` on it, as observed before."""
        return link

    def as_kept(self, link: Link, kept: Mapping[str, Any]) -> Link:
        """An observed ``link`` that the record says was taken (``kept``: its
        LinkSpec.given_back), as this kind."""
        return link

    def routing_table(self, entry: Mapping[str, Any]) -> int | None:
        """The routing table a link of this kind owns (a VRF's), from its (unvalidated) file
        entry: routes and rules may name the link instead of the number."""
        return None

    def exportable(self, link: Link, view: ExportView) -> bool:
        """Whether `show` can write the observed ``link`` as this kind (else: external)."""
        return self.made

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        """The kind's settings for the file entry of ``link``."""
        return {}

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        """The spec from a record's flat settings (model.Link.to_dict)."""
        return None

    # -- the kernel -------------------------------------------------------------------------
    def create_data(self, link: Link, request: KernelRequest) -> bytes:
        """IFLA_INFO_DATA of the request that creates ``link``."""
        return b""

    def create_attrs(self, link: Link, request: KernelRequest) -> bytes:
        """Top-level attributes of the create request besides IFLA_LINKINFO (a VLAN's parent
        is IFLA_LINK, not part of IFLA_INFO_DATA)."""
        return b""

    def change_data(self, link: Link, changed: set[str]) -> bytes | None:
        """IFLA_INFO_DATA that sets the ``changed`` settings of an existing ``link`` in
        place; None: nothing of the kind's to change."""
        return None

    def change_request(self, link: Link, changed: set[str],
                       request: KernelRequest) -> bytes | None:
        """``change_data``, for a kind whose settings name other links (by ifindex, which
        ``request`` looks up)."""
        return self.change_data(link, changed)

    def parse(self, link: KernelLink) -> LinkSpec | None:
        """The spec of a link the kernel reports as this kind."""
        return None

    def reported_as(self, link: KernelLink) -> str:
        """The kind a link the kernel reports as this one is (the kernel's "tun" is a tap or
        a tun, by its IFLA_TUN_TYPE)."""
        return self.name

    def device_settings(self, link: Link) -> tuple[int, int | None, int | None]:
        """For a kind ``made_through`` a device: the flags it is made with, its owner and its
        group (a tap's TUNSETIFF, TUNSETOWNER, TUNSETGROUP)."""
        raise NotImplementedError(f"kind {self.name} is made over rtnetlink")

    # -- drawing ----------------------------------------------------------------------------
    def label(self, link: Link) -> str:
        """The second line of a link's node in `graph`."""
        return self.name

    def tunnels(self, key: tuple[str, str], link: Link, links: Mapping[tuple[str, str], Link],
                topology: Topology) -> list[tuple[tuple[str, str], str]]:
        """Links at the far end of a tunnel from ``link``: (their key, edge label)."""
        return []

    def far_ends(self, key: tuple[str, str], link: Link,
                 links: Mapping[tuple[str, str], Link]) -> list[tuple[str, str]]:
        """The links that frames ``link`` sends through its tunnel can arrive at."""
        return []

    def crossing(self, link: Link) -> str:
        """How `explain` says a frame crosses from ``link`` to a tunnel's far end."""
        return self.name

    def underlay(self, link: Link) -> tuple[str | None, tuple[str, ...]]:
        """The link ``link`` sends its wrapped packets by (None: whichever the routes say)
        and the addresses it sends them to: plan checks that the underlay reaches them."""
        return None, ()

    def reaches_sibling(self, link: Link, other: Link) -> bool:
        """Whether a frame from ``link`` reaches ``other``, made on the same parent, without
        leaving through the parent (only for kinds ``on_parent_segment``)."""
        return False


def common_link(end: End, kind: str, spec: LinkSpec | None) -> Link:
    """The Link of a valid entry: the settings every kind has, from the file."""
    entry = end.entry
    mtu, mac = entry.get("mtu"), entry.get("mac")
    return Link(
        namespace=end.namespace,
        name=end.name,
        kind=kind,
        up=entry.get("up", True),
        mtu=int(mtu) if mtu is not None else None,
        mac=mac.lower() if mac else None,
        master=entry.get("master"),
        hairpin=entry.get("hairpin"),
        spec=spec,
        promisc=entry.get("promisc"),
        allmulti=entry.get("allmulti"),
        vlans=vlan_entries(entry.get("vlans")),
    )


def parent_attr(parent: str | None, request: KernelRequest) -> bytes:
    """IFLA_LINK naming ``parent`` (in the namespace the link is made in: its parent's): what
    a kind made on a parent returns from ``create_attrs``."""
    return attr_u32(IFLA_LINK, request.index_of(parent)) if parent else b""


def kernel_parent(link: KernelLink) -> tuple[str | None, str | None]:
    """``link``'s parent (IFLA_LINK, in the namespace IFLA_LINK_NETNSID names): its name and
    its namespace when not the link's own; (None, None) when it is gone or cannot be named
    (drift for the plan, not an error here)."""
    target = link.target()
    if target is None:
        return None, None
    return target[1], (None if target[0] == link.namespace else target[0])


def check_parent(ctx: FileCheck, end: End) -> LinkRef | None:
    """The declared link an entry's ``link:`` names (in the link's namespace, or in the one
    its mapping form names), or None after saying why there is none (a kind made on a parent
    checks each of its ends with this)."""
    parent = end.entry.get(PARENT_KEY)
    path = (*end.path, PARENT_KEY)
    namespace: str | None = end.namespace
    if isinstance(parent, Mapping):
        namespace = entry_namespace(parent)
        parent = parent.get("name")
        path = (*path, "name")
        if namespace != ROOT and namespace not in ctx.namespaces:
            ctx.error((*end.path, PARENT_KEY, "namespace"),
                      f"the parent of {ctx.quoted(end.name)} is in namespace "
                      f"{ctx.quoted(namespace)}, which the file does not declare: the link "
                      "cannot reach it")
            return None
    if parent == end.name and namespace == end.namespace:
        ctx.error(path, f"link {ctx.quoted(end.name)} cannot be made on itself")
        return None
    found = ctx.link_ref(path, namespace, parent)
    if found is not None:
        moved = ctx.moved_away(found.namespace, found.name)
        if moved is not None:
            ctx.error(path, f"{ctx.quoted(found.name)} is not in namespace "
                            f"{found.namespace or 'root'} while the topology exists: "
                            f"{moved}")
            return None
        mtu, most = _int(end.entry.get("mtu")), _int(found.spec.get("mtu"))
        if mtu is not None and most is not None and mtu > most:
            # VLANs and macvlans refuse an MTU above their parent's (ERANGE, EINVAL)
            ctx.error((*end.path, "mtu"), f"mtu {mtu} is more than the {most} of its parent "
                                          f"{ctx.quoted(found.name)}")
    return found


def _int(value: Any) -> int | None:
    """An integer the file gives, else None (the schema reports what is not)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def entry_namespace(entry: Mapping[str, Any], default: str = ROOT) -> str:
    """The namespace a file entry names (its ``namespace``), as checks see unvalidated data."""
    ns = entry.get("namespace")
    return ns if isinstance(ns, str) else default
