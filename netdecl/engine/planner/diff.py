"""Desired vs observed -> unordered actions and conflicts. Pure: no I/O, no kernel.

Ownership decides everything here (engine/ownership.py says what is ours): we change or delete
only ours; a declared object that exists but is not ours is a conflict. Each kind of object has
one diff rule in RULES; kinds whose ownership the record keeps (routes, rules, FDB entries,
neighbours) share the keyed rule unless they register their own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from netdecl.engine.ownership import foreign_nat_tables, nat_ours, owns
from netdecl.engine.planner.adopt import Adoption
from netdecl.engine.planner.plan import (
    CREATE,
    DELETE,
    MODIFY,
    REPLACE,
    Action,
    Conflict,
    Reason,
)
from netdecl.engine.planner.qdiscs import qdisc_rule
from netdecl.engine.state.record import OwnershipRecord
from netdecl.kinds import KINDS, Kind, Ownership
from netdecl.links import kernels_own, link_kind
from netdecl.model import (
    ROOT,
    Address,
    ExternalLink,
    Key,
    Link,
    Namespace,
    NatTable,
    NetObject,
    Route,
    Sysctl,
    Topology,
    ns_label,
    qualify,
)


@dataclass
class _Diff:
    desired: Topology
    observed: Topology
    record: OwnershipRecord
    actions: list[Action] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    # links that will be (re)created or deleted: their addresses and routes go with them
    rebuilt_links: set[Key] = field(default_factory=set)
    deleted_namespaces: set[str] = field(default_factory=set)
    created_namespaces: set[str] = field(default_factory=set)
    # with --adopt: why a declared object that exists could not be adopted
    not_adopted: dict[Key, str] = field(default_factory=dict)

    # (namespace, link) where the plan turns IPv6 off; link None: on every link (`all`)
    ipv6_turned_off: set[tuple[str, str | None]] = field(init=False)

    def __post_init__(self) -> None:
        self.ipv6_turned_off = _ipv6_turned_off(self.desired, self.observed)

    def loses_ipv6(self, namespace: str, link: str) -> bool:
        """Whether the plan turns IPv6 off on that link, which makes the kernel drop its IPv6
        addresses and routes: those the file keeps are added again, after the sysctls that
        turn it back on (order.py)."""
        return bool({(namespace, link), (namespace, None)} & self.ipv6_turned_off)

    @property
    def topology(self) -> str:
        return self.desired.name

    def add(self, action: Action) -> None:
        self.actions.append(action)

    def conflict(self, key: Key, message: str) -> None:
        why_not = self.not_adopted.get(key)
        if why_not:
            message += f" (not adopted: {why_not})"
        self.conflicts.append(Conflict(key, message))


def diff(desired: Topology, observed: Topology, record: OwnershipRecord,
         adopt: bool = False, managed: Mapping[str, str] | None = None
         ) -> tuple[list[Action], list[Conflict]]:
    """Actions and conflicts. With ``adopt``, declared objects that exist, belong to nobody
    and are compatible are taken over first (ADOPT actions), then diffed as if owned.
    ``managed``: the root namespace's links another network manager manages, by name (the
    manager's name)."""
    # before adoption: a link another manager holds is not adoptable, --adopt or not
    held = _held_by_other_managers(desired, observed, record, managed or {})
    adopted: list[Action] = []
    not_adopted: dict[Key, str] = {}
    if adopt:
        adoption = Adoption.of(desired, observed, record)
        adopted, observed, record = adoption.actions, adoption.observed, adoption.record
        not_adopted = adoption.refused
    observed = _as_kept(observed, record)
    impostors = _impostor_namespaces(desired, observed, record)
    d = _Diff(_without(desired, impostors), _without(observed, impostors), record,
              not_adopted=not_adopted)
    for kind in KINDS.values():  # in registration order: links and addresses before routes
        rule_for(kind)(d, kind)
    return adopted + d.actions, held + d.conflicts


RELEASE = {
    "NetworkManager": "`nmcli device set {name} managed no` (or unmanaged-devices in "
                      "NetworkManager.conf), then plan again",
    "systemd-networkd": "a .network file matching {name} with [Link] Unmanaged=yes, or none "
                        "matching it, and `networkctl reload`; then plan again",
}


def _held_by_other_managers(desired: Topology, observed: Topology, record: OwnershipRecord,
                            managed: Mapping[str, str]) -> list[Conflict]:
    """A declared link of the root namespace that NetworkManager or systemd-networkd manages
    (and this topology does not own: its own links it marks unmanaged for them) would be
    configured by two programs at once, each undoing the other: a conflict that says how to
    release it."""
    conflicts = []
    declared: list[Link | ExternalLink] = [*desired.of_type(Link), *desired.of_type(ExternalLink)]
    for want in sorted(declared, key=lambda o: o.key):
        manager = managed.get(want.name) if want.namespace == ROOT else None
        now = observed.get(("link", ROOT, want.name))
        if manager is None or now is None or owns(now, observed, record):
            continue
        how = RELEASE.get(manager, "release it there, then plan again").format(name=want.name)
        conflicts.append(Conflict(want.key, f"link {want.name} is managed by {manager}: "
                                            f"netdecl will not fight it over the link; to hand "
                                            f"it to netdecl, release it: {how}"))
    return conflicts


def _impostor_namespaces(desired: Topology, observed: Topology,
                         record: OwnershipRecord) -> set[str]:
    """Namespaces the topology declares or claims whose name is taken by one it does not own
    (never made by it, or deleted and made again by someone else)."""
    ours = {ns.namespace for ns in desired.of_type(Namespace)} | record.namespaces
    return {ns.namespace for ns in observed.of_type(Namespace)
            if ns.namespace in ours and not owns(ns, observed, record)}


def _as_kept(observed: Topology, record: OwnershipRecord) -> Topology:
    """``observed`` with the links the record says were taken, not made (a host-device's
    NIC, which the kernel reports as whatever it is), as their kind, knowing what they give
    back."""
    taken: dict[Key, Link] = {}
    for (ns, name), kept in record.device_originals.items():
        found, kind = observed.get(("link", ns, name)), link_kind(kept.get("kind"))
        if isinstance(found, Link) and kind is not None:
            taken[found.key] = kind.as_kept(found, kept)
    if not taken:
        return observed
    out = Topology(name=observed.name, probes=observed.probes, positions=observed.positions,
                   warnings=observed.warnings)
    out.extend(taken.get(o.key, o) for o in observed.objects.values())
    return out


def _taken(d: _Diff, want: Link) -> Link | None:
    """``want``, knowing what it gives back when it is made of a host's link (a host-device:
    read from the observed root before the move); None after a conflict when that link is
    not there to take."""
    kind = link_kind(want.kind)
    source = kind.taken(want) if kind is not None else None
    if kind is None or source is None:
        return want
    found = d.observed.get(("link", *source))
    if not isinstance(found, Link):
        d.conflict(want.key, f"{qualify(*source) or source[1]} is not in namespace "
                             f"{ns_label(source[0])}: there is no such link to move into "
                             f"{ns_label(want.namespace)} as {want.name}")
        return None
    if found.owner:
        d.conflict(want.key, f"{qualify(*source)} was made by netdecl (topology "
                             f"{found.owner}): a {want.kind} moves a link the host owns")
        return None
    addresses = [a.cidr for a in d.observed.of_type(Address)
                 if a.namespace == source[0] and a.link == source[1]
                 and not a.cidr.lower().startswith("fe80:")]
    return kind.before_taken(want, found, addresses)


def _without(topology: Topology, impostors: set[str]) -> Topology:
    """``topology`` minus everything in (or reaching into) those namespaces but the namespaces
    themselves: nothing is ever made, changed or deleted in someone else's namespace, and the
    namespace itself is a conflict."""
    if not impostors:
        return topology
    kept = Topology(name=topology.name, probes=topology.probes, positions=topology.positions,
                    warnings=topology.warnings)
    kept.extend(o for o in topology.objects.values()
                if isinstance(o, Namespace) or (
                    o.namespace not in impostors
                    and not (isinstance(o, Link) and o.peer and o.peer[0] in impostors)))
    return kept


DiffRule = Callable[["_Diff", Kind], None]


def rule_for(kind: Kind) -> DiffRule:
    rule = RULES.get(kind.name)
    if rule is None and kind.ownership is Ownership.RECORD:
        return _keyed_objects
    if rule is None:
        raise KeyError(f"no diff rule for kind {kind.name}")
    return rule


# -- namespaces ----------------------------------------------------------------------------------

def _namespaces(d: _Diff, kind: Kind) -> None:
    existing = {o.namespace: o for o in d.observed.of_type(Namespace)}
    for ns in d.desired.of_type(Namespace):
        now = existing.get(ns.namespace)
        if now is None:
            d.created_namespaces.add(ns.namespace)
            d.add(Action(CREATE, ns.key, after=ns))
        elif ns.namespace in d.record.namespaces and not owns(now, d.observed, d.record):
            d.conflict(ns.key, f"namespace {ns.namespace} is not the one topology {d.topology} "
                               f"created: it was deleted and made again by someone else; "
                               f"netdecl will not use it: remove it or rename it in the file")
        elif not owns(now, d.observed, d.record):
            d.conflict(ns.key, f"namespace {ns.namespace} already exists and was not created by "
                               f"topology {d.topology}; remove it or rename it in the file")
    wanted = {ns.namespace for ns in d.desired.of_type(Namespace)}
    # links by namespace, gathered once: a scan of every link per namespace to delete was
    # quadratic (0.9 s of a 1000-namespace destroy)
    links_by_ns: dict[str, list[Link]] = {}
    for link in d.observed.of_type(Link):
        links_by_ns.setdefault(link.namespace, []).append(link)
    for name in sorted(d.record.namespaces - wanted):
        now = existing.get(name)
        if now is None or not owns(now, d.observed, d.record):
            continue  # gone, or someone else's now: the claim is stale, never a delete
        # (a tunnel module's fallback devices are the kernel's: they go with the namespace)
        foreign = [link.name for link in links_by_ns.get(name, ())
                   if not _owned(d, link) and not kernels_own(link.name, link.kind)]
        if foreign:
            d.conflict(("namespace", name),
                       f"namespace {name} is to be deleted but holds links netdecl does not own "
                       f"({', '.join(sorted(foreign))}); move or delete them first")
            continue
        d.deleted_namespaces.add(name)
        d.add(Action(DELETE, ("namespace", name), before=now, why=Reason.PRUNE))


# -- links ---------------------------------------------------------------------------------------



def _owned(d: _Diff, obj: NetObject | None) -> bool:
    return obj is not None and owns(obj, d.observed, d.record)


def _foreign_message(d: _Diff, link: Link) -> str:
    who = f"topology {link.owner}" if link.owner else "no netdecl topology (created by hand?)"
    if link.owner == d.topology:
        who = (f"someone else (it carries topology {d.topology}'s mark, but it is not the link "
               f"netdecl made)")
    return (f"link {qualify(link.namespace, link.name)} already exists and belongs to {who}; "
            f"netdecl will not adopt it: rename it in the file or delete it")


def _links(d: _Diff, kind: Kind) -> None:
    desired_links = d.desired.of_type(Link)
    handled: set[Key] = set()
    deleted: set[Key] = set()

    def delete_observed(o: Link, reason: Reason) -> None:
        """Delete an owned observed link (a veth takes its peer along)."""
        if o.key in deleted:
            return
        deleted.add(o.key)
        d.rebuilt_links.add(o.key)
        peer = None
        if o.peer is not None:
            peer_obs = d.observed.get(("link", *o.peer))
            if isinstance(peer_obs, Link):
                deleted.add(peer_obs.key)
                d.rebuilt_links.add(peer_obs.key)
                peer = peer_obs
        d.add(Action(DELETE, o.key, before=o, peer_before=peer, why=reason))

    for want in sorted(desired_links, key=lambda link: link.key):
        if want.key in handled:
            continue
        handled.add(want.key)
        peer_want: Link | None = None
        if want.peer is not None:
            found = d.desired.get(("link", *want.peer))
            assert isinstance(found, Link)
            peer_want = found
            handled.add(peer_want.key)
        ends = [want] + ([peer_want] if peer_want is not None else [])
        observed_ends = [d.observed.get(e.key) for e in ends]
        foreign = [o for o in observed_ends if o is not None and not _owned(d, o)]
        if foreign:
            for theirs in foreign:
                assert isinstance(theirs, Link)
                d.conflict(theirs.key, _foreign_message(d, theirs))
            continue
        if all(o is None for o in observed_ends):
            taken = _taken(d, want)
            if taken is None:
                continue
            d.rebuilt_links.update(e.key for e in ends)
            d.add(Action(CREATE, want.key, after=taken, peer_after=peer_want))
            continue
        if _needs_replace(ends, observed_ends):
            taken = _taken(d, want)  # (another NIC for a host-device: read before it moves)
            if taken is None:
                continue
            for old in observed_ends:
                if old is not None:
                    assert isinstance(old, Link)
                    deleted.add(old.key)
                    if old.peer is not None and ("link", *old.peer) not in {e.key for e in ends}:
                        stray = d.observed.get(("link", *old.peer))
                        if isinstance(stray, Link):
                            deleted.add(stray.key)
            d.rebuilt_links.update(e.key for e in ends)
            before = observed_ends[0] or observed_ends[-1]
            assert isinstance(before, Link)
            d.add(Action(REPLACE, want.key, before=before, after=taken,
                         peer_before=observed_ends[1] if len(observed_ends) > 1 else None,
                         peer_after=peer_want, why=Reason.RECREATE,
                         detail=_replace_reason(ends, observed_ends)))
            continue
        for end, now in zip(ends, observed_ends, strict=True):
            assert isinstance(now, Link)
            recreate = end.recreated_by()
            changes = {k: list(v) for k, v in end.differences(now).items()
                       if k != "kind" and k not in recreate}
            if changes:
                d.add(Action(MODIFY, end.key, before=now, after=end, changes=changes,
                             detail=_down_for(end, changes)))

    _made_again_with_parent(d, desired_links, deleted)
    for want in sorted(desired_links, key=lambda link: link.key):
        now = d.observed.get(want.key)
        if want.key not in d.rebuilt_links and isinstance(now, Link):
            _rejoin(d, want, now)
    desired_keys = {link.key for link in desired_links}
    for o in sorted(d.observed.of_type(Link), key=lambda link: link.key):
        if o.key in desired_keys or o.key in deleted or not _owned(d, o):
            continue
        delete_observed(o, Reason.PRUNE)


def _made_again_with_parent(d: _Diff, desired_links: list[Link], deleted: set[Key]) -> None:
    """A link made on another (LinkSpec.uses: a VLAN's or a macvlan's parent, a VXLAN's
    underlay) is deleted by the kernel with it: when the plan makes that one again, this one
    is made again too, after it (order.py), though nothing of its own changed. Until nothing
    more is found: a VLAN on a macvlan on a veth goes with the veth."""
    found = True
    while found:
        found = False
        for want in sorted(desired_links, key=lambda link: link.key):
            if want.key in d.rebuilt_links or want.spec is None or want.peer is not None:
                continue
            parents = [(want.namespace, name) for name in want.spec.uses()]
            parents += want.spec.uses_elsewhere()
            lost = next((qualify(*key) for key in parents
                         if ("link", *key) in d.rebuilt_links), None)
            now = d.observed.get(want.key)
            if lost is None or not isinstance(now, Link) or not _owned(d, now):
                continue  # (one not ours is a conflict already)
            d.actions = [a for a in d.actions if a.key != want.key]  # its in-place changes
            deleted.add(now.key)
            d.rebuilt_links.add(want.key)
            d.add(Action(REPLACE, want.key, before=now, after=want, why=Reason.RECREATE,
                         detail=f"made on {lost}, which is made again"))
            found = True


def _down_for(link: Link, changes: dict[str, list]) -> str:
    """What the plan says of a change the link goes down for (LinkSpec.DOWN_FOR)."""
    down_for = type(link.spec).DOWN_FOR if link.spec is not None else {}
    return "; ".join(why for name, why in down_for.items() if name in changes)


def _rejoin(d: _Diff, want: Link | ExternalLink, now: Link | ExternalLink) -> None:
    """A link whose master the plan makes again left it with the old one (the kernel releases
    a bridge's ports and a bond's members when it is deleted): it joins the new one, after it
    (order.py: a link's master comes first)."""
    if not want.master or ("link", want.namespace, want.master) not in d.rebuilt_links:
        return
    found = next((a for a in d.actions if a.key == want.key and a.op == MODIFY), None)
    if found is not None:
        found.changes.setdefault("master", [now.master, want.master])
        return
    d.add(Action(MODIFY, want.key, before=now, after=want,
                 changes={"master": [now.master, want.master]},
                 detail=f"joins {want.master} again, which is made again"))


def _needs_replace(ends: list[Link], observed: list[NetObject | None]) -> bool:
    if any(o is None for o in observed):
        return True  # half a veth pair: recreate the pair
    for want, o in zip(ends, observed, strict=True):
        assert isinstance(o, Link)
        if want.kind != o.kind or _recreated_setting(want, o) is not None:
            return True
    return False


def _recreated_setting(want: Link, o: Link) -> str | None:
    """Why a setting the kernel cannot change in place differs, if one does."""
    now = o.settings()
    for name, why in want.recreated_by().items():
        if want.settings().get(name) != now.get(name):
            return why
    return None


def _replace_reason(ends: list[Link], observed: list[NetObject | None]) -> str:
    for want, o in zip(ends, observed, strict=True):
        if o is None:
            return f"{qualify(want.namespace, want.name)} is missing"
        assert isinstance(o, Link)
        if want.kind != o.kind:
            return f"kind {o.kind} -> {want.kind}"
        if (why := _recreated_setting(want, o)) is not None:
            return why
    return "recreate"


# -- addresses -----------------------------------------------------------------------------------



def _addresses(d: _Diff, kind: Kind) -> None:
    desired = {a.key: a for a in d.desired.of_type(Address)}
    observed = {a.key: a for a in d.observed.of_type(Address)}
    for key, a in sorted(desired.items()):
        link_key = ("link", a.namespace, a.link)
        now = observed.get(key)
        if now is not None and link_key not in d.rebuilt_links:
            if ":" in a.cidr and d.loses_ipv6(a.namespace, a.link):
                d.add(Action(CREATE, key, before=now, after=a, why=Reason.DEPENDENCY_REBUILT))
                continue
            if now.noprefixroute == a.noprefixroute or not owns(now, d.observed, d.record):
                continue
            # the kernel keeps the prefix route flag from when the address was added: a link
            # that takes (or leaves) a table of its own gets its addresses again
            d.add(Action(DELETE, key, before=now, why=Reason.RECREATE))
        external = ("external", a.namespace, a.link) in d.desired.objects
        d.add(Action(CREATE, key, after=a, why=Reason.ON_EXTERNAL if external else Reason.NONE))
    for key, a in sorted(observed.items()):
        link_key = ("link", a.namespace, a.link)
        if key in desired or link_key in d.rebuilt_links:
            continue
        if not owns(a, d.observed, d.record):
            continue  # addresses on links we do not own are not ours to remove
        if a.namespace in d.deleted_namespaces:
            continue
        d.add(Action(DELETE, key, before=a, why=Reason.NOT_IN_FILE))


# -- routes, rules, fdb, neighbours: record-owned objects ----------------------------------------

def _route_flushing_namespaces(d: _Diff) -> set[str]:
    """Namespaces where IPv4 will flush routes: an address goes away (gateway routes go with
    the address that made the gateway reachable) or a link goes down (a MAC change may take
    it down briefly, a new master when that is a VRF). Computed once, not scanned per route:
    per route it is O(routes*actions)."""
    out = set()
    for a in d.actions:
        if a.type == "address" and a.op == DELETE:
            out.add(a.namespace)
        elif a.type in ("link", "external") and a.op == MODIFY and \
                ({"up", "mac", "master"} & set(a.changes)):
            # (joining or leaving a VRF takes the link down and up again: links/vrf.py)
            out.add(a.namespace)
    return out


def _depends_on_rebuilt(d: _Diff, want: NetObject, now: NetObject,
                        flushing: set[str]) -> bool:
    """Would the kernel drop this object because a link it uses is being rebuilt, or an address
    in its namespace is going away? Then it must be (re)created after, even if present now."""
    ns = want.namespace
    links = {getattr(o, attr, None) for o in (want, now) for attr in ("dev", "link", "iif", "oif")}
    if any(("link", ns, name) in d.rebuilt_links for name in links if name):
        return True
    if isinstance(want, Route) and want.family == 6 and any(
            d.loses_ipv6(ns, name) for name in links if name):
        return True
    return isinstance(want, Route) and ns in flushing


def _keyed_objects(d: _Diff, kind: Kind) -> None:
    cls = kind.cls
    desired = {o.key: o for o in d.desired.of_type(cls)}
    observed = {o.key: o for o in d.observed.of_type(cls)}
    flushing = _route_flushing_namespaces(d) if cls is Route else set()
    for key, want in sorted(desired.items(), key=lambda kv: repr(kv[0])):
        now = observed.get(key)
        if now is None:
            d.add(Action(CREATE, key, after=want))
        elif not owns(now, d.observed, d.record):
            d.conflict(key, f"{want.describe()} already exists and was not created by topology "
                            f"{d.topology}; remove it or change the file")
        elif _depends_on_rebuilt(d, want, now, flushing):
            d.add(Action(CREATE, key, before=now, after=want,
                         why=Reason.DEPENDENCY_REBUILT))
        else:
            changes = {k: list(v) for k, v in want.differences(now).items()}
            if changes:
                d.add(Action(MODIFY, key, before=now, after=want, changes=changes))
    for key, now in sorted(observed.items(), key=lambda kv: repr(kv[0])):
        if key in desired or not owns(now, d.observed, d.record):
            continue
        if now.namespace in d.deleted_namespaces:
            continue
        d.add(Action(DELETE, key, before=now, why=Reason.PRUNE))


def _ipv6_turned_off(desired: Topology, observed: Topology) -> set[tuple[str, str | None]]:
    """(namespace, link) where the file turns `disable_ipv6` on and the kernel has it off;
    link None for `all`, which the kernel applies to every link there (`default` only to links
    made later). A namespace not made yet has nothing to lose."""
    out: set[tuple[str, str | None]] = set()
    for want in desired.of_type(Sysctl):
        parts = want.name.replace("/", ".").split(".")
        if parts[:3] != ["net", "ipv6", "conf"] or parts[-1] != "disable_ipv6" \
                or want.value == "0" or parts[3] == "default":
            continue
        now = observed.get(want.key)
        if isinstance(now, Sysctl) and now.value == "0":
            out.add((want.namespace, want.per_link))
    return out


# -- sysctls -------------------------------------------------------------------------------------

def _sysctls(d: _Diff, kind: Kind) -> None:
    desired = {o.key: o for o in d.desired.of_type(Sysctl)}
    observed = {o.key: o for o in d.observed.of_type(Sysctl)}
    for key, want in sorted(desired.items()):
        now = observed.get(key)
        overwriting = _overwriting(want, desired, observed)
        if overwriting is not None and overwriting != want.value:
            d.add(Action(MODIFY, key, before=now, after=want,
                         changes={"value": [overwriting, want.value]}, why=Reason.OVERWRITTEN))
            continue
        if now is not None and now.value == want.value:
            if want.per_link is not None and \
                    ("link", want.namespace, want.per_link) in d.rebuilt_links:
                # the link is made again: a new link starts with the namespace's default
                d.add(Action(MODIFY, key, before=now, after=want,
                             changes={"value": [None, want.value]},
                             why=Reason.DEPENDENCY_REBUILT))
            continue
        d.add(Action(MODIFY, key, before=now, after=want,
                     changes={"value": [now.value if now else None, want.value]}))
    for (ns, name), original in sorted(d.record.sysctl_originals.items()):
        key = ("sysctl", ns, name)
        if key in desired or ns in d.deleted_namespaces:
            continue
        if (ns, name) in d.record.shared_sysctls:
            continue  # another topology still manages it: the apply hands the original over
        now = observed.get(key)
        if now is None or now.value == original:
            continue
        d.add(Action(MODIFY, key, before=now, after=Sysctl(ns, name, original),
                     changes={"value": [now.value, original]},
                     why=Reason.RESTORE_ORIGINAL))


# Settings the kernel copies to every link when written under `all` (IPv4 forwarding also under
# net.ipv4.ip_forward); the others it combines with each link's own value when it reads them.
_ALL_OVERWRITES_LINKS = {
    ("ipv6", "disable_ipv6"): ("net.ipv6.conf.all.disable_ipv6",),
    ("ipv6", "forwarding"): ("net.ipv6.conf.all.forwarding",),
    ("ipv4", "forwarding"): ("net.ipv4.conf.all.forwarding", "net.ipv4.ip_forward"),
}


def _overwriting(want: Sysctl, desired: dict[Key, Sysctl],
                 observed: dict[Key, Sysctl]) -> str | None:
    """The value a namespace-wide sysctl this plan changes writes over the per-link ``want``
    (order.py writes it first): then ``want`` is written again, even where it holds already."""
    if want.per_link is None:
        return None
    parts = want.name.replace("/", ".").split(".")
    for name in _ALL_OVERWRITES_LINKS.get((parts[1], parts[-1]), ()):
        wide = desired.get(("sysctl", want.namespace, name))
        now = observed.get(("sysctl", want.namespace, name))
        if wide is not None and (now is None or now.value != wide.value):
            return wide.value
    return None


# -- nat -----------------------------------------------------------------------------------------

def _nat(d: _Diff, kind: Kind) -> None:
    desired = {o.key: o for o in d.desired.of_type(NatTable) if o.rules}
    observed = {o.key: o for o in d.observed.of_type(NatTable)}
    for key, want in sorted(desired.items()):
        assert isinstance(want, NatTable)
        now = observed.get(key)
        if now is None:
            d.add(Action(CREATE, key, after=want))
        elif not owns(now, d.observed, d.record):
            assert isinstance(now, NatTable)
            tables = foreign_nat_tables(now, d.record)
            d.conflict(key, f"nftables table {tables} netdecl-{d.topology} in "
                            f"{want.namespace or 'root'} was not made by netdecl for topology "
                            f"{d.topology} (made by hand, or made again after netdecl's was "
                            f"deleted); netdecl will not rewrite it: delete it")
        elif isinstance(now, NatTable) and now.rules != want.rules:
            d.add(Action(MODIFY, key, before=now, after=want,
                         changes={"rules": [now.rules, want.rules]},
                         why=Reason.NONE if now.rules is not None else Reason.EDITED_BY_HAND))
    for key, now in sorted(observed.items()):
        if key in desired or now.namespace in d.deleted_namespaces:
            continue
        assert isinstance(now, NatTable)
        ours = nat_ours(now, d.observed, d.record)
        if ours is None:
            continue  # someone else's tables by that name: never deleted
        d.add(Action(DELETE, key, before=ours, why=Reason.PRUNE))


# -- external links ------------------------------------------------------------------------------

def _externals(d: _Diff, kind: Kind) -> None:
    """Links the host owns: each must exist (netdecl never creates one) and not be netdecl's;
    declared attributes are set; attributes no longer declared get their old values back."""
    desired = {o.key: o for o in d.desired.of_type(ExternalLink)}
    observed = {o.key: o for o in d.observed.of_type(ExternalLink)}
    for key, want in sorted(desired.items()):
        now = observed.get(key)
        link = d.observed.get(("link", want.namespace, want.name))
        where = ns_label(want.namespace)
        if now is None:
            d.conflict(key, f"external link {want.name} does not exist in namespace {where}: "
                            "netdecl never creates a link declared external (check its name "
                            "with `ip link`)")
        elif isinstance(link, Link) and link.owner:
            d.conflict(key, f"link {qualify(want.namespace, want.name)} was created by "
                            f"netdecl (topology {link.owner}), so it cannot be external: "
                            "declare it with its kind")
        elif changes := {k: list(v) for k, v in want.differences(now).items()}:
            d.add(Action(MODIFY, key, before=now, after=want, changes=changes))
        if now is not None and not (isinstance(link, Link) and link.owner):
            _rejoin(d, want, now)
    restore: dict[Key, dict[str, list]] = {}
    for (ns, name, attr), original in sorted(d.record.link_originals.items(), key=repr):
        key = ("external", ns, name)
        declared = desired.get(key)
        current = observed.get(key)
        if current is None or ns in d.deleted_namespaces or \
                (isinstance(declared, ExternalLink) and attr in declared.declared()):
            continue
        # a master the plan deletes may close its members (a bond does): their state from
        # before is written again after it (order.py), even where it reads the same now
        master_goes = attr == "up" and current.master is not None and \
            ("link", ns, current.master) in d.rebuilt_links
        if getattr(current, attr) != original or master_goes:
            restore.setdefault(key, {})[attr] = [getattr(current, attr), original]
    for key, changes in restore.items():
        now = observed[key]
        assert isinstance(now, ExternalLink)
        after = ExternalLink(now.namespace, now.name,
                             **{attr: value for attr, (_, value) in changes.items()})
        d.add(Action(MODIFY, key, before=now, after=after, changes=changes,
                     why=Reason.RESTORE_ORIGINAL))
    _check_gateways_on_externals(d)
    _check_tunnels_on_externals(d)


def _check_tunnels_on_externals(d: _Diff) -> None:
    """A tunnel whose underlay is the host's NIC must reach its remote through it: on-link
    (the NIC's live addresses) or by a live route through the NIC. Only the host knows."""
    externals = {(o.namespace, o.name) for o in d.desired.of_type(ExternalLink)}
    if not externals:
        return
    for link in d.desired.of_type(Link):
        kind = link_kind(link.kind)
        dev, remotes = kind.underlay(link) if kind is not None else (None, ())
        if dev is None or (link.namespace, dev) not in externals:
            continue
        for remote in remotes:
            if not _reached_by(d, link.namespace, dev, ipaddress.ip_address(remote)):
                d.conflict(link.key, f"{link.describe()}: remote {remote} is not reachable "
                                     f"through its underlay {dev}: no address of {dev} covers "
                                     f"it and no route through {dev} leads there")


def _reached_by(d: _Diff, ns: str, dev: str, address: ipaddress.IPv4Address |
                ipaddress.IPv6Address) -> bool:
    for a in d.observed.of_type(Address):
        if (a.namespace, a.link) == (ns, dev) and \
                address in ipaddress.ip_interface(a.cidr).network:
            return True
    return any(r.namespace == ns and r.dev == dev and r.type in (None, "unicast")
               and address in ipaddress.ip_network(r.to) for r in d.observed.of_type(Route))


def _check_gateways_on_externals(d: _Diff) -> None:
    """The on-link check validation cannot make: a gateway in a namespace with external links
    may be covered by their live addresses, which only the host knows."""
    externals = {(o.namespace, o.name) for o in d.desired.of_type(ExternalLink)}
    spaces = {ns for ns, _ in externals}
    networks: dict[str, list] = {}
    for a in d.desired.of_type(Address):
        networks.setdefault(a.namespace, []).append(ipaddress.ip_interface(a.cidr).network)
    for a in d.observed.of_type(Address):
        if (a.namespace, a.link) in externals:
            networks.setdefault(a.namespace, []).append(ipaddress.ip_interface(a.cidr).network)
    for route in d.desired.of_type(Route):
        if route.namespace not in spaces or not route.via or route.onlink:
            continue
        gateway = ipaddress.ip_address(route.via)
        if gateway.is_link_local and route.dev:
            continue
        if not any(gateway in net for net in networks.get(route.namespace, [])):
            d.conflict(route.key, f"{route.describe()}: gateway {route.via} is not on-link: no "
                                  f"address in namespace {ns_label(route.namespace)} covers "
                                  "it, the external links' live ones included (add one, or "
                                  "set onlink: true)")


RULES: dict[str, DiffRule] = {
    "namespace": _namespaces,
    "link": _links,
    "external": _externals,
    "address": _addresses,
    # route, rule, fdb, neighbor: Ownership.RECORD, the keyed rule (see rule_for)
    "sysctl": _sysctls,
    "nat": _nat,
    "qdisc": qdisc_rule,
}
