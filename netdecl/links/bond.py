"""kind: bond: links aggregated into one (Linux bonding), its members joining with ``master:``
as a bridge's ports do, the host's NICs (``kind: external``) included.

What the kernel allows, and so what the plan does (tested on Linux 6.1, bond_options.c):

- ``mode`` changes only while the bond has no members and is down: a new mode makes a new
  bond (RECREATE), and its members join the new one (the planner's rejoin of the members of a
  link made again);
- ``lacp_rate`` and ``ad_select`` change only while the bond is down: in place, the bond
  taken down for the change and brought up again (DOWN_FOR; the plan says so);
- miimon, updelay, downdelay, xmit_hash_policy, min_links and primary change in place, live;
- a link joins a bond only while it is down, and the bond opens it; released, it is closed:
  the executor takes a member down to join (``members_down``) and puts back the state it had
  when it leaves.

Options belong to modes (the kernel refuses the others, "option not supported in mode"):
lacp_rate and ad_select to 802.3ad; xmit_hash_policy to balance-xor, 802.3ad and balance-tlb;
primary to active-backup, balance-tlb and balance-alb. validate says so at FILE:LINE:COL.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from netdecl.links.base import End, ExportView, FileCheck, KernelLink, KernelRequest, LinkKind
from netdecl.links.external import NAME as EXTERNAL
from netdecl.model import Link, LinkSpec
from netdecl.nlattr import as_u32, attr, attr_u32

NAME = "bond"

# linux/if_link.h, IFLA_INFO_DATA of a bond
IFLA_BOND_MODE, IFLA_BOND_MIIMON, IFLA_BOND_UPDELAY, IFLA_BOND_DOWNDELAY = 1, 3, 4, 5
IFLA_BOND_PRIMARY, IFLA_BOND_XMIT_HASH_POLICY, IFLA_BOND_MIN_LINKS = 11, 14, 18
IFLA_BOND_AD_LACP_RATE, IFLA_BOND_AD_SELECT = 21, 22
_U8 = struct.Struct("=B")

# the file's words -> the kernel's numbers (include/uapi/linux/if_bonding.h)
MODES = {"balance-rr": 0, "active-backup": 1, "balance-xor": 2, "broadcast": 3,
         "802.3ad": 4, "balance-tlb": 5, "balance-alb": 6}
DEFAULT_MODE = "balance-rr"
HASH_POLICIES = {"layer2": 0, "layer3+4": 1, "layer2+3": 2, "encap2+3": 3, "encap3+4": 4,
                 "vlan+srcmac": 5}
LACP_RATES = {"slow": 0, "fast": 1}
AD_SELECTS = {"stable": 0, "bandwidth": 1, "count": 2}
# u8 options: setting -> (attribute, words)
_ENUMS: dict[str, tuple[int, dict[str, int]]] = {
    "xmit_hash_policy": (IFLA_BOND_XMIT_HASH_POLICY, HASH_POLICIES),
    "lacp_rate": (IFLA_BOND_AD_LACP_RATE, LACP_RATES),
    "ad_select": (IFLA_BOND_AD_SELECT, AD_SELECTS),
}
# u32 options in milliseconds or a count
_NUMBERS = {"miimon": IFLA_BOND_MIIMON, "updelay": IFLA_BOND_UPDELAY,
            "downdelay": IFLA_BOND_DOWNDELAY, "min_links": IFLA_BOND_MIN_LINKS}
# the modes each option belongs to (bond_options.c: every other mode refuses it)
MODES_OF = {
    "lacp_rate": ("802.3ad",),
    "ad_select": ("802.3ad",),
    "xmit_hash_policy": ("balance-xor", "802.3ad", "balance-tlb"),
    "primary": ("active-backup", "balance-tlb", "balance-alb"),
}


@dataclass(frozen=True)
class BondSpec(LinkSpec):
    RECREATE: ClassVar[dict[str, str]] = {
        "mode": "the kernel changes a bond's mode only with no members and down: a new bond, "
                "its members join it again"}
    DOWN_FOR: ClassVar[dict[str, str]] = {
        "lacp_rate": "the kernel changes lacp_rate only while the bond is down: down, "
                     "changed, up",
        "ad_select": "the kernel changes ad_select only while the bond is down: down, "
                     "changed, up"}

    mode: str = DEFAULT_MODE
    # None in a file: as the kernel has it
    miimon: int | None = None
    updelay: int | None = None
    downdelay: int | None = None
    xmit_hash_policy: str | None = None
    lacp_rate: str | None = None
    ad_select: str | None = None
    min_links: int | None = None
    primary: str | None = None  # a member, by name

    def flat(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


SETTINGS = tuple(f.name for f in fields(BondSpec))


class Bond(LinkKind):
    name: ClassVar[str] = NAME
    module: ClassVar[str | None] = "bonding"
    settings_key: ClassVar[str | None] = "bond"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "description": "Bond settings (kind bond only); members join with master: on their "
                       "own entries. Left out: as the kernel makes a bond.",
        "properties": {
            "mode": {"enum": list(MODES), "default": DEFAULT_MODE},
            "miimon": {"type": "integer", "minimum": 0, "maximum": 2147483647,
                       "description": "Link monitoring interval, in milliseconds (0: off)."},
            "updelay": {"type": "integer", "minimum": 0, "maximum": 2147483647},
            "downdelay": {"type": "integer", "minimum": 0, "maximum": 2147483647},
            "xmit_hash_policy": {"enum": list(HASH_POLICIES),
                                 "description": "balance-xor, 802.3ad and balance-tlb only."},
            "lacp_rate": {"enum": list(LACP_RATES), "description": "802.3ad only."},
            "ad_select": {"enum": list(AD_SELECTS), "description": "802.3ad only."},
            "min_links": {"type": "integer", "minimum": 0, "maximum": 2147483647},
            "primary": {"$ref": "#/$defs/ifname",
                        "description": "The member preferred while it is up (active-backup, "
                                       "balance-tlb, balance-alb); one the host owns (kind "
                                       "external), which exists before the bond."},
        },
    }
    members: ClassVar[bool] = True
    members_down: ClassVar[bool] = True

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        bond = dict(ends[0].entry.get("bond") or {})
        bond.setdefault("mode", DEFAULT_MODE)
        return [BondSpec(**{k: v for k, v in bond.items() if k in SETTINGS})]

    def check(self, ctx: FileCheck, ends: Sequence[End]) -> None:
        for end in ends:
            bond = end.entry.get("bond")
            if not isinstance(bond, dict):
                continue
            mode = bond.get("mode", DEFAULT_MODE)
            for option, modes in MODES_OF.items():
                if option in bond and isinstance(mode, str) and mode not in modes:
                    ctx.error((*end.path, "bond", option),
                              f"{option} is not a setting of bond mode {mode} (only of "
                              f"{', '.join(modes)}): the kernel refuses it")
            primary = bond.get("primary")
            if isinstance(primary, str):
                found = ctx.link_ref((*end.path, "bond", "primary"), end.namespace, primary)
                if found is not None and found.spec.get("master") != end.name:
                    ctx.error((*end.path, "bond", "primary"),
                              f"primary {ctx.quoted(primary)} is not a member of "
                              f"{ctx.quoted(end.name)} (its entry says no master: "
                              f"{end.name})")
                elif found is not None and found.kind != EXTERNAL:
                    # IFLA_BOND_PRIMARY names an ifindex: the member must exist before the
                    # bond, and a member netdecl makes is made after it
                    ctx.error((*end.path, "bond", "primary"),
                              f"primary {ctx.quoted(primary)} is made by netdecl after the "
                              "bond; only a member the host owns (kind: external) can be "
                              "primary")

    def check_member(self, ctx: FileCheck, member: End, master: End) -> None:
        """A link naming a bond as its master: not itself a bond, with no addresses (a
        member's own addresses are never used: the bond sends and receives for it)."""
        if member.entry.get("kind") == NAME:
            ctx.error((*member.path, "master"),
                      f"bond {ctx.quoted(member.name)} cannot be a member of bond "
                      f"{ctx.quoted(master.name)}")
        if member.entry.get("addresses"):
            ctx.error((*member.path, "addresses"),
                      f"{ctx.quoted(member.name)} is a member of bond "
                      f"{ctx.quoted(master.name)}: its addresses belong on the bond")

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        spec = link.spec
        assert isinstance(spec, BondSpec)
        out: dict[str, Any] = {"mode": spec.mode}
        for name in SETTINGS[1:]:
            value = getattr(spec, name)
            if value is None or (name in MODES_OF and spec.mode not in MODES_OF[name]):
                continue  # (the kernel reports every option; those of other modes mean nothing)
            if name == "primary" and (link.namespace, value) not in view.links:
                continue
            out[name] = value
        return {"bond": out}

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        if "mode" not in data:
            return None
        values: dict[str, Any] = {k: data.get(k) for k in SETTINGS}
        return BondSpec(**values)

    def create_data(self, link: Link, request: KernelRequest) -> bytes:
        return self._data(link, set(SETTINGS), request)

    def change_request(self, link: Link, changed: set[str],
                       request: KernelRequest) -> bytes | None:
        # (mode is never changed in place: RECREATE)
        return self._data(link, changed - {"mode"}, request) or None

    def _data(self, link: Link, wanted: set[str], request: KernelRequest) -> bytes:
        spec = link.spec
        assert isinstance(spec, BondSpec)
        out = b""
        if "mode" in wanted:
            out += attr(IFLA_BOND_MODE, _U8.pack(MODES[spec.mode]))
        for name, number in _NUMBERS.items():
            value = getattr(spec, name)
            if name in wanted and value is not None:
                out += attr_u32(number, value)
        for name, (number, words) in _ENUMS.items():
            value = getattr(spec, name)
            if name in wanted and value is not None:
                out += attr(number, _U8.pack(words[value]))
        if "primary" in wanted and spec.primary is not None:
            out += attr_u32(IFLA_BOND_PRIMARY, request.index_of(spec.primary))
        return out

    def parse(self, link: KernelLink) -> LinkSpec | None:
        data = link.info_data
        values: dict[str, Any] = {}
        raw = data.get(IFLA_BOND_MODE)
        number = raw[0] if raw else 0
        values["mode"] = next((w for w, n in MODES.items() if n == number), str(number))
        for name, attr_type in _NUMBERS.items():
            values[name] = as_u32(data.get(attr_type))
        for name, (attr_type, words) in _ENUMS.items():
            raw = data.get(attr_type)
            values[name] = (next((w for w, n in words.items() if n == raw[0]), str(raw[0]))
                            if raw else None)
        primary = as_u32(data.get(IFLA_BOND_PRIMARY))
        values["primary"] = link.name_of(primary) if primary else None
        return BondSpec(**values)

    def label(self, link: Link) -> str:
        spec = link.spec
        return f"bond {spec.mode}" if isinstance(spec, BondSpec) else NAME


KIND = Bond()
