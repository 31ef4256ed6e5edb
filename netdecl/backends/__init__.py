"""The machine: everything netdecl reads from and does to a host's kernel, and nothing else.

host.py is the Host protocol, all the engine asks of a machine; kernelhost.py is the real one,
over netlink (netlink.py through pyroute2, rtnl.py's own codec for the hot paths, nlconst.py's
numbers), named namespaces (namespaces.py, mountns.py), sysctl files (sysctl.py), nftables
(nftables.py) and neighbour announcements (announce.py). Decides nothing; never imports the
file format (topology/), its sibling layer (pyproject.toml).
"""
