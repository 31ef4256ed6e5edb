"""The CNI reference plugins (Debian's containernetworking-plugins, /usr/lib/cni) driven as a
container runtime drives them, and the kernel state they leave, normalised so that netdecl's
can be compared with it.

RUNTIME is what a runtime does for one network and one container: each plugin of the network's
list in turn, CNI_COMMAND and the rest in its environment, the plugin's config on stdin with the
previous plugin's result as prevResult (a chained tuning after a macvlan); DEL in reverse order,
each with the result ADD cached. COLLECTOR reads the raw kernel state of a whole namespace set
(the root and every /run/netns/NAME) with `ip -j -d` and /proc/sys: the independent eye, not
netdecl's observer. Both are scripts (no netdecl import) so the same code runs in a hermetic
host and in the kernel lab; `normalise` turns COLLECTOR's output into what two builds of one
network must share.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Collection
from typing import Any

CNI_PATH = "/usr/lib/cni"
LOOPBACK = {"cniVersion": "0.4.0", "name": "lo", "plugins": [{"type": "loopback"}]}

# python RUNTIME COMMAND NETWORK.json NETNS IFNAME CACHE_DIR
RUNTIME = r"""
import json, os, subprocess, sys
command, network, netns, ifname, cache = sys.argv[1:6]
with open(network) as f:
    net = json.load(f)
path = os.environ.get("CNI_PATH", "/usr/lib/cni")
env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID="netdecl-test-" + netns,
           CNI_NETNS="/run/netns/" + netns, CNI_IFNAME=ifname, CNI_PATH=path)
saved = os.path.join(cache, f"{net['name']}-{netns}-{ifname}.json")
plugins = net["plugins"]
prev = None
if command == "DEL":
    plugins = plugins[::-1]
    if os.path.exists(saved):
        with open(saved) as f:
            prev = json.load(f)
for plugin in plugins:
    conf = {"cniVersion": net["cniVersion"], "name": net["name"], **plugin}
    if prev is not None:
        conf["prevResult"] = prev
    done = subprocess.run([os.path.join(path, plugin["type"])], input=json.dumps(conf),
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(f"{plugin['type']} {command} failed ({done.returncode}): "
                         f"{done.stdout}{done.stderr}\n")
        sys.exit(1)
    if command == "ADD":
        prev = json.loads(done.stdout)
if command == "ADD":
    os.makedirs(cache, exist_ok=True)
    with open(saved, "w") as f:
        json.dump(prev, f)
    print(json.dumps(prev))
"""

# python COLLECTOR: {namespace ("" the root): {"link", "addr", "route4", "route6", "sysctl"}}
# as JSON on stdout, once IPv6 duplicate address detection is over (a tentative address has
# no local route yet, so two reads a moment apart would differ; links without carrier never
# finish it, so only those with LOWER_UP are waited for).
COLLECTOR = r"""
import ctypes, json, os, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")
def ip(*args):
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True,
                         check=True).stdout.strip()
    return json.loads(out) if out else []
def sysctls(ifname):
    # /proc/sys/net shows the namespace of the process that reads it: this one, after setns
    found = {}
    for family in ("ipv4", "ipv6"):
        base = f"/proc/sys/net/{family}/conf/{ifname}"
        for key in sorted(os.listdir(base)) if os.path.isdir(base) else ():
            try:
                with open(os.path.join(base, key)) as f:
                    found[f"{family}.{key}"] = f.read().strip()
            except OSError:
                pass  # stable_secret: unreadable until set
    return found
def collect():
    links = ip("-d", "link", "show")
    return {"link": links, "addr": ip("addr", "show"),
            "route4": ip("-4", "route", "show", "table", "all"),
            "route6": ip("-6", "route", "show", "table", "all"),
            "nsids": ip("netns", "list-id"),
            "sysctl": {link["ifname"]: sysctls(link["ifname"]) for link in links}}
def pending(data):
    return any(info.get("tentative") and not info.get("dadfailed")
               for link in data["addr"] if "LOWER_UP" in link.get("flags", [])
               for info in link.get("addr_info", []))
root = os.open("/proc/self/ns/net", os.O_RDONLY)
deadline = time.monotonic() + 15
while True:
    out = {"": collect()}
    for name in sorted(os.listdir("/run/netns")):
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            setns(fd)
        finally:
            os.close(fd)
        out[name] = collect()
        setns(root)
    if time.monotonic() > deadline or not any(pending(d) for d in out.values()):
        break
    time.sleep(0.1)
json.dump(out, sys.stdout)
"""

# What says who made a link or when, not what it is: the kernel's numbers for it (ifindex;
# the parent's index and the netnsid are turned into the parent's name below), its state of
# the moment, counters, and ifalias, which netdecl and the host-device plugin each use for
# their own bookkeeping (netdecl's owner tag; the plugin's name of the NIC to give back).
_LINK_DROP = {"ifindex", "link_index", "link_netnsid", "link", "address", "operstate",
              "ifalias", "stats", "stats64", "addr_info", "perm_address", "altnames"}
# flags that follow the carrier, not the configuration
_FLAG_DROP = {"LOWER_UP", "NO-CARRIER", "M-DOWN"}
# DAD's moment; and nodad: netdecl adds its IPv6 addresses without duplicate address detection
# on purpose (usable at once, backends/netlink.py says why), the plugins let the kernel run it
_ADDR_DROP = {"tentative", "dadfailed", "optimistic", "nodad"}
_ROUTE_DROP = {"expires", "cacheinfo"}
_ROUTE_FLAGS_DROP = {"linkdown"}
# read-only per-link sysctls that count rather than configure
_SYSCTL_DROP = {"ipv6.stable_secret"}
ZERO_MAC = "00:00:00:00:00:00"


def _link_local(value: str | None) -> bool:
    """An IPv6 link-local address or a route to one: made by the kernel from the link's MAC,
    which is random for a macvlan, so two builds differ there by design."""
    if not value or value == "default":
        return False
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return net.version == 6 and net.prefixlen == 128 and net.subnet_of(
        ipaddress.ip_network("fe80::/10"))  # type: ignore[arg-type]


def _parent(ns: str, link: dict[str, Any], raw: dict[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of the link's parent or peer, whatever namespace it lives in: by
    name, since indexes and netnsids differ every run. An nsid no named namespace carries is
    the root's (the set's root has no name)."""
    if "link_index" not in link:
        return (ns, link["link"]) if link.get("link") else None
    where = ns
    if "link_netnsid" in link:
        ids = {entry.get("nsid"): entry.get("name") for entry in raw[ns].get("nsids", [])}
        where = ids.get(link["link_netnsid"]) or ""
    by_index = {lk["ifindex"]: lk["ifname"] for lk in raw.get(where, {}).get("link", [])}
    return (where, by_index.get(link["link_index"], f"#{link['link_index']}"))


def normalise(raw: dict[str, Any], *, macs: Collection[str] = ()) -> dict[str, Any]:
    """COLLECTOR's output as two builds of one network share it: per namespace, the links by
    name (kind, mode and the rest of the kernel's linkinfo, parent by name, MTU, flags,
    promiscuity, queues, their sysctls), the addresses and the routes of every table.
    A MAC is kept when it is one of ``macs`` (set on purpose: by the test's fixture or the
    tuning plugin), said to be the parent's when it is, else only said to be its own."""
    out: dict[str, Any] = {}
    for ns, data in sorted(raw.items()):
        links: dict[str, Any] = {}
        macs_of = {lk["ifname"]: lk.get("address") for lk in data["link"]}
        for link in data["link"]:
            entry = {k: v for k, v in link.items() if k not in _LINK_DROP}
            entry["flags"] = sorted(set(link.get("flags", [])) - _FLAG_DROP)
            if "linkinfo" in link:
                # a bridge's and its ports' timers run down on their own
                entry["linkinfo"] = {
                    key: ({k: v for k, v in value.items() if not k.endswith("_timer")}
                          if isinstance(value, dict) else value)
                    for key, value in link["linkinfo"].items()}
            parent = _parent(ns, link, raw)
            entry["parent"] = parent
            mac = link.get("address")
            parent_mac = None
            if parent is not None:
                parent_mac = {lk["ifname"]: lk.get("address")
                              for lk in raw.get(parent[0], {}).get("link", [])
                              }.get(parent[1])
            if mac in macs or mac == ZERO_MAC:
                entry["address"] = mac
            elif mac == parent_mac and link.get("linkinfo", {}).get("info_kind") != "veth":
                entry["address"] = "the parent's"
            else:
                entry["address"] = "its own"
            if link.get("qdisc") == "noqueue":
                # the length of a queue the link does not have (IFF_NO_QUEUE): the plugins
                # make their links with 0 (Go's zero value in the request), netdecl leaves the
                # kernel's 1000; it only matters as the limit of a qdisc added later
                entry.pop("txqlen", None)
            entry["sysctl"] = {k: v for k, v in data["sysctl"].get(link["ifname"], {}).items()
                               if k not in _SYSCTL_DROP}
            links[link["ifname"]] = entry
        addresses = []
        for link in data["addr"]:
            for info in link.get("addr_info", []):
                if _link_local(f"{info.get('local')}/128" if ":" in str(info.get("local"))
                               else None):
                    continue
                addresses.append({"dev": link["ifname"],
                                  **{k: v for k, v in info.items() if k not in _ADDR_DROP}})
        routes = []
        for family, items in (("inet", data["route4"]), ("inet6", data["route6"])):
            for route in items:
                if _link_local(route.get("dst")):
                    continue  # the local route of a link-local address
                entry = {k: v for k, v in route.items() if k not in _ROUTE_DROP}
                if entry.get("protocol") != "kernel":
                    # who added the route, not what it is: netdecl marks its own routes with
                    # a protocol number of its own (211), the plugins leave boot's; whether
                    # the kernel made it (a prefix route) is kept
                    entry.pop("protocol", None)
                entry["family"] = family
                entry["flags"] = sorted(set(route.get("flags", [])) - _ROUTE_FLAGS_DROP)
                entry.setdefault("table", "main")
                routes.append(entry)
        out[ns] = {"links": links,
                   "addresses": sorted(addresses, key=lambda e: json.dumps(e, sort_keys=True)),
                   "routes": sorted(routes, key=lambda e: json.dumps(e, sort_keys=True)),
                   "macs": sorted(m for m in macs_of.values() if m in macs)}
    return out


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two normalised states differ, one line each (an assertion message a person can
    read, where a diff of two large dicts is not)."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                found.append(f"{path}/{key}: only in {'the first' if key in a else 'the second'}"
                             f": {a.get(key, b.get(key))!r}")
            else:
                found += differences(a[key], b[key], f"{path}/{key}")
        return found
    if isinstance(a, list) and isinstance(b, list) and a != b and all(
            isinstance(item, dict) for item in a + b):
        return ([f"{path}: only in the first: {item!r}" for item in a if item not in b]
                + [f"{path}: only in the second: {item!r}" for item in b if item not in a]
                or [f"{path}: the same items in another order"])
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]
