"""Traffic control: every fact about the qdiscs netdecl puts on a link, in one package.

units.py reads the file's spellings (``40ms``, ``10mbit``, ``64kb``, ``0.5%``, and bare numbers
as the CNI bandwidth plugin takes them); qdiscs.py turns a link's ``netem``/``shaping``/``qdisc``
into the chain of qdiscs the kernel is given, writes and reads their TCA_OPTIONS, and names the
kernel module each kind needs. Pure (no sockets): the backends send the bytes, the planner
compares the chains, the loader checks the file with the same parsers.
"""
