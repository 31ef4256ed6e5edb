"""The kernel's netlink numbers, each defined once, from the Linux UAPI header named beside it.

The rtnetlink codec (backends/rtnl.py), the pyroute2 side (backends/netlink.py), the link
kinds (links/), the agent's event sockets (agent/events.py) and whatever else names a kernel
number (a route's scope or table, a
neighbour's state) take them from here. Only the numbers: what netdecl makes of them stays with
the module that uses them.
"""

from __future__ import annotations

import struct

# sockets (asm-generic/socket.h, linux/socket.h, linux/netlink.h)
SO_RCVBUFFORCE = 33
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_NETFILTER = 12

# messages (linux/netlink.h): struct nlmsghdr (length, type, flags, sequence, port), its
# types and flags, and the attribute header's nested flag
NLMSGHDR = struct.Struct("=IHHII")
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x4, 0x10, 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLM_F_ECHO = 0x8
NLA_F_NESTED = 1 << 15

# rtnetlink message types (linux/rtnetlink.h)
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
RTM_NEWRULE, RTM_DELRULE = 32, 33
RTM_GETQDISC = 38
RTM_GETNSID = 90

# multicast groups (linux/rtnetlink.h, enum rtnetlink_groups; linux/netfilter/nfnetlink.h)
RTNLGRP_LINK, RTNLGRP_NEIGH = 1, 3
RTNLGRP_TC = 4  # qdiscs, classes, filters
RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV4_RULE = 5, 7, 8
RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE, RTNLGRP_IPV6_RULE = 9, 11, 19
NFNLGRP_NFTABLES = 7

# links (linux/if_link.h, linux/if.h)
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 3, 4, 5
IFLA_MASTER, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_EXT_MASK = 10, 18, 20, 29
IFLA_NET_NS_FD, IFLA_LINK_NETNSID = 28, 37
IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES = 31, 32
# a bridge port's VLANs (linux/if_bridge.h): in IFLA_AF_SPEC of an AF_BRIDGE link message
IFLA_AF_SPEC, IFLA_BRIDGE_FLAGS, IFLA_BRIDGE_VLAN_INFO = 26, 0, 2
BRIDGE_FLAGS_SELF, BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED = 2, 2, 4
RTEXT_FILTER_BRVLAN = 1 << 1
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_DATA = 1, 2, 5
IFLA_BRPORT_MODE = 4  # a bridge port's hairpin (IFLA_INFO_SLAVE_DATA)
# struct ifinfomsg (family, type, index, flags, change) opens every link message
IFINFOMSG = struct.Struct("=BxHiII")
# A link kind's own IFLA_INFO_DATA attributes (a bridge's, a VXLAN's, a veth's peer) are
# numbered by that kind, and its module in netdecl/links/ defines them.
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_PROMISC, IFF_ALLMULTI = 0x100, 0x200

# addresses (linux/if_addr.h)
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200

# routes (linux/rtnetlink.h); the main table is the model's (model.MAIN_TABLE)
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
RTNH_F_ONLINK = 0x4
RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST, RTN_MULTICAST = 1, 2, 3, 5
RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT = 6, 7, 8
RT_SCOPE_UNIVERSE, RT_SCOPE_SITE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 200, 253, 254
RT_SCOPE_NOWHERE = 255
RT_TABLE_COMPAT, RT_TABLE_DEFAULT, RT_TABLE_LOCAL = 252, 253, 255
RTPROT_KERNEL = 2  # routes the kernel derives from addresses (connected, IPv6 link-local)

# neighbours (linux/neighbour.h)
NUD_INCOMPLETE, NUD_FAILED, NUD_PERMANENT = 0x01, 0x20, 0x80

# namespace ids (linux/net_namespace.h)
NETNSA_NSID, NETNSA_FD = 1, 3

# traffic control (linux/rtnetlink.h): qdiscs and filters (their attributes: tc/qdiscs.py)
RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTCLASS, RTM_GETTCLASS = 40, 42
RTM_NEWTFILTER, RTM_GETTFILTER = 44, 46
