"""Ingress shaping as the CNI bandwidth plugin builds it, in bytes: an ingress qdisc on the
link and a u32 filter matching everything, whose mirred action redirects each received packet
to the egress of an ifb, where a tbf shapes it (`tc filter add dev LINK parent ffff: protocol
all u32 match u32 0 0 action mirred egress redirect dev IFB`). Pure: the backend sends it.
"""

from __future__ import annotations

import struct

from netdecl.nlattr import attr, attr_str, nested, parse_attrs

INGRESS_KIND = "ingress"
FILTER_KIND = "u32"
FILTER_PRIO = 1
ETH_P_ALL = 0x0003

TCA_U32_SEL, TCA_U32_ACT, TCA_U32_CLASSID = 5, 7, 1
TCA_ACT_KIND, TCA_ACT_OPTIONS = 1, 2
TCA_MIRRED_PARMS = 2
TC_U32_TERMINAL = 1
TC_ACT_STOLEN = 4
TCA_EGRESS_REDIR = 1

_SEL = struct.Struct("=BBBxHHhhI")  # flags, offshift, nkeys, offmask, off, offoff, hoff, hmask
_KEY = struct.Struct("=IIii")  # mask, val, off, offmask
_MIRRED = struct.Struct("=IIiiiiI")  # tc_gen (index, capab, action, refcnt, bindcnt),
#                                      eaction, ifindex


def filter_info() -> int:
    """tcm_info of the filter: its priority and protocol (all, in network order)."""
    return (FILTER_PRIO << 16) | int.from_bytes(ETH_P_ALL.to_bytes(2, "big"), "little")


def redirect_filter(ifb_index: int) -> bytes:
    """TCA_KIND and TCA_OPTIONS of the match-all u32 filter redirecting to ``ifb_index``."""
    selector = _SEL.pack(TC_U32_TERMINAL, 0, 1, 0, 0, 0, 0, 0) + _KEY.pack(0, 0, 0, 0)
    mirred = _MIRRED.pack(0, 0, TC_ACT_STOLEN, 0, 0, TCA_EGRESS_REDIR, ifb_index)
    action = nested(1, attr_str(TCA_ACT_KIND, "mirred"),
                    nested(TCA_ACT_OPTIONS, attr(TCA_MIRRED_PARMS, mirred)))
    return attr_str(1, FILTER_KIND) + nested(
        2, attr(TCA_U32_SEL, selector), nested(TCA_U32_ACT, action))


def redirect_target(options: bytes | None) -> int | None:
    """The ifindex a u32 filter's mirred action redirects to, if it has one."""
    if not options:
        return None
    actions = parse_attrs(options).get(TCA_U32_ACT)
    if actions is None:
        return None
    for raw in parse_attrs(actions).values():
        action = parse_attrs(raw)
        if action.get(TCA_ACT_KIND, b"").split(b"\0")[0] != b"mirred":
            continue
        parms = parse_attrs(action.get(TCA_ACT_OPTIONS, b"")).get(TCA_MIRRED_PARMS)
        if parms is not None and len(parms) >= _MIRRED.size:
            return _MIRRED.unpack_from(parms)[6]
    return None
