"""NAT through nftables' JSON interface: one table per (topology, namespace), owned by netdecl.

The table is ``ip netdecl-<topology>`` and is only ever addressed by that name, so tables
somebody else owns (Docker's, firewalld's, iptables-nft's ``ip nat``, other topologies') are
never touched. Its contents are replaced as a whole in one nft transaction: one JSON document
that adds the table (so the next command cannot fail on an absent table), deletes it (dropping
whatever is in it, hand-added chains and sets included) and builds it again. nft commits a
document atomically, so the kernel never holds a half-written table.

Family ``ip``, not ``inet``: every NatRule is IPv4 (addresses, CIDRs; the topology checks
refuse IPv6 NAT, and tests/test_format_agreement.py holds them to it), and an ``inet`` nat
chain would also see IPv6 packets, where a port forward without an address match (the common
``fib daddr type local`` case) would try to DNAT IPv6 traffic to an IPv4 target. An ``ip``
table also works on kernels older than 5.2, which have no inet nat, and is where Docker and
iptables-nft keep their NAT too.

Readback: every nft rule carries a comment naming the NatRule it was rendered from (its index
and a compact, lossless ``key=value`` encoding). ``read`` decodes those comments, renders the
decoded rules again and compares the result with what nft lists; only an exact match (chain by
chain, rule by rule, expression by expression) is reported as netdecl's rules. A hand-edited
rule therefore reads back as ``rules=None`` and a flushed table as ``rules=()``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from typing import Any

from netdecl.backends.namespaces import run_in
from netdecl.errors import EnvironmentProblem, NetdeclError
from netdecl.model import NatRule, NatTable, decode_comment, encode_comment, ns_label

NFT = "nft"
"""Name of the nft binary, looked up on PATH (tests replace it to simulate a missing nft)."""

# sbin is not on every PATH (sudo with secure_path, cron, some containers) but nft lives there.
_SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"

FAMILY = "ip"
TABLE_PREFIX = "netdecl-"
NFT_TIMEOUT = 30.0  # seconds; nft talks to the kernel only, so a hang means something is wrong


# (name, type, hook, priority). dstnat = -100, filter = 0, srcnat = 100; nft lists priorities
# as integers, so we write integers and readback compares like with like. All chains exist even
# when empty: one fixed shape is simpler to read back and costs nothing (policy accept).
CHAINS: tuple[tuple[str, str, str, int], ...] = (
    ("prerouting", "nat", "prerouting", -100),
    ("output", "nat", "output", -100),
    ("forward", "filter", "forward", 0),
    ("postrouting", "nat", "postrouting", 100),
)

# Packet-mark bit that carries "masquerade this DNATed flow" from the forward hook (where the
# kernel can tell that the flow leaves through the interface it came in on) to postrouting
# (where masquerading happens), as kube-proxy does with 0x4000. 0x2000 stays clear of the bits
# kube-proxy (0x4000, 0x8000), Calico (upper 16), Cilium (0x0f00) and Tailscale (0xff0000) use.
# It is set only on the first packet of a flow and cleared before the packet leaves.
SAME_LINK_MARK = 0x2000

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


_NOT_FOUND_MESSAGE = "nft not found: install the nftables package (apt-get install nftables)"


class NftUnavailable(EnvironmentProblem):
    """The nft binary is missing."""

    def __init__(self, message: str = _NOT_FOUND_MESSAGE):
        super().__init__(message)


class NftError(NetdeclError):
    """nft refused a command. ``str()`` is one line: where, what, and nft's own error."""

    def __init__(self, message: str, stderr: str = "", namespace: str = ""):
        self.stderr = stderr
        self.namespace = namespace
        super().__init__(message)


# --- rendering (pure) -------------------------------------------------------------------------


def table_name(topology: str) -> str:
    return TABLE_PREFIX + topology


def render(topology: str, rules: tuple[NatRule, ...]) -> dict[str, Any]:
    """The complete nft JSON document that replaces the table's contents with ``rules``."""
    name = table_name(topology)
    table = {"family": FAMILY, "name": name}
    commands: list[dict[str, Any]] = [
        {"add": {"table": table}},  # makes the delete below valid when the table is absent
        {"delete": {"table": dict(table)}},
    ]
    commands += [{"add": obj} for obj in _listing(name, enumerate(rules))]
    return {"nftables": commands}


def _listing(name: str, indexed: Iterable[tuple[int, NatRule]]) -> list[dict[str, Any]]:
    """Table, chains and rules as nft lists them (minus handles), in nft's listing order."""
    objects: list[dict[str, Any]] = [{"table": {"family": FAMILY, "name": name}}]
    objects += [{"chain": _chain(name, *chain)} for chain in CHAINS]
    by_chain: dict[str, list[dict[str, Any]]] = {chain: [] for chain, *_ in CHAINS}
    for index, rule in indexed:
        comment = encode_comment(index, rule)
        for chain, expr in _rule_exprs(rule):
            by_chain[chain].append({"rule": {"family": FAMILY, "table": name, "chain": chain,
                                             "comment": comment, "expr": expr}})
    for chain, *_ in CHAINS:
        objects += by_chain[chain]
    return objects


def _chain(table: str, name: str, type_: str, hook: str, prio: int) -> dict[str, Any]:
    return {"family": FAMILY, "table": table, "name": name, "type": type_, "hook": hook,
            "prio": prio, "policy": "accept"}


def _rule_exprs(rule: NatRule) -> list[tuple[str, list[dict[str, Any]]]]:
    """(chain, expression list) for every nft rule one NatRule needs, in chain order."""
    if rule.kind == "masquerade":
        return [("postrouting", [*_source_nat_matches(rule), {"masquerade": None}])]
    if rule.kind == "snat":
        if not rule.to_source:
            raise ValueError(f"snat rule needs to_source: {rule.describe()}")
        return [("postrouting", [*_source_nat_matches(rule),
                                 {"snat": {"addr": _address(rule.to_source)}}])]
    if rule.kind == "dnat":
        return _dnat_exprs(rule)
    raise ValueError(f"unknown NAT rule kind {rule.kind!r}")


def _source_nat_matches(rule: NatRule) -> list[dict[str, Any]]:
    matches = []
    if rule.source:
        matches.append(_match(_ip("saddr"), _cidr(rule.source)))
    if rule.out:
        matches.append(_match(_meta("oifname"), rule.out))
    if rule.not_out:
        matches.append(_match(_meta("oifname"), rule.not_out, "!="))
    return matches


def _dnat_exprs(rule: NatRule) -> list[tuple[str, list[dict[str, Any]]]]:
    """A port forward that works from every direction a user tries:

    * prerouting: traffic from other hosts and from containers (the target itself included);
    * output: traffic the host itself sends (to its own addresses, 127.0.0.1 included);
    * forward + postrouting: masquerade DNATed flows that leave through the interface they came
      in on. Without it a client on the target's own bridge gets the target's reply straight
      over the bridge, from an address it never talked to, and resets the connection (Docker
      gets away without this only where br_netfilter pushes bridged replies through conntrack,
      or with its userland proxy). Hairpin (the target connecting to itself through the host)
      is the case where that client is the target: Docker's `ip saddr T ip daddr T masquerade`.
    * postrouting: masquerade DNATed flows from 127.0.0.0/8, which may not leave the host with
      that source (this also needs route_localnet=1, which the topology declares).
    """
    if rule.proto not in ("tcp", "udp"):
        raise ValueError(f"dnat rule needs proto tcp or udp: {rule.describe()}")
    if rule.port is None or rule.to_address is None:
        raise ValueError(f"dnat rule needs port and to: {rule.describe()}")
    ports = _ports(rule.port, rule.port_end)
    target = _address(rule.to_address)
    target_port = None if rule.to_port is None else _port(rule.to_port)
    # A range forwarded to one port goes to that port; without a target port nft keeps the
    # packet's own port, which is also what forwarding a range onto a range of the same size
    # means.
    dnat: dict[str, Any] = {"addr": target}
    if target_port is not None:
        dnat["port"] = target_port
    dport = _match(_payload(rule.proto, "dport"), ports)
    # Without an address, forward what is addressed to any local address (like Docker).
    daddr = (_match(_ip("daddr"), _address(rule.address)) if rule.address
             else _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local"))
    from_ = [_match(_ip("saddr"), _cidr(rule.from_))] if rule.from_ else []
    in_ = [_match(_meta("iifname"), rule.in_)] if rule.in_ else []

    result = [("prerouting", [*in_, *from_, daddr, dport, {"dnat": dnat}])]
    # Locally generated packets arrive on no interface: a forward limited to one does not apply.
    local = rule.in_ is None
    if local:
        result.append(("output", [*from_, daddr, dport, {"dnat": dict(dnat)}]))
    target_dport = _match(_payload(rule.proto, "dport"),
                          target_port if target_port is not None else ports)
    dnatted = _match({"ct": {"key": "status"}}, "dnat", "in")
    to_target = [_match(_ip("daddr"), target), target_dport, dnatted]
    result += _same_link_masquerade(to_target)
    if local and _may_reach_loopback(rule):
        result.append(("postrouting", [_match(_ip("saddr"), _cidr(str(LOOPBACK))),
                                       _match(_ip("daddr"), target), target_dport, dnatted,
                                       {"masquerade": None}]))
    return result


def _same_link_masquerade(to_target: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """Mark the first packet of a DNATed flow whose target is reached through the interface the
    packet arrived on (``fib daddr . iif oif``: a route to the target via iif exists), then
    clear the mark and masquerade it. Marked in forward because routing is done there, so the
    mark cannot steer a policy-routing decision."""
    mark = _meta("mark")
    first = _match({"ct": {"key": "state"}}, "new", "in")
    same_link = _match({"fib": {"result": "oif", "flags": ["daddr", "iif"]}}, True)
    set_mark = {"mangle": {"key": mark, "value": {"|": [_meta("mark"), SAME_LINK_MARK]}}}
    marked = _match({"&": [mark, SAME_LINK_MARK]}, SAME_LINK_MARK)
    clear = {"mangle": {"key": _meta("mark"),
                        "value": {"&": [_meta("mark"), 0xFFFFFFFF ^ SAME_LINK_MARK]}}}
    return [("forward", [*to_target, first, same_link, set_mark]),
            ("postrouting", [*to_target, marked, clear, {"masquerade": None}])]


def _may_reach_loopback(rule: NatRule) -> bool:
    """Could this forward catch a connection to 127.0.0.1:PORT made on the host?"""
    if rule.address and ipaddress.IPv4Address(rule.address) not in LOOPBACK:
        return False
    if rule.from_ and not ipaddress.IPv4Network(rule.from_, strict=False).overlaps(LOOPBACK):
        return False
    return True


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _payload(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def _ip(field: str) -> dict[str, Any]:
    return _payload("ip", field)


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _address(text: str) -> str:
    return str(ipaddress.IPv4Address(text))


def _cidr(text: str) -> Any:
    """A CIDR the way nft lists it: host bits cleared, a /32 as a plain address."""
    net = ipaddress.IPv4Network(text, strict=False)
    if net.prefixlen == 32:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _port(port: int) -> int:
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    return port


def _ports(first: int, last: int | None) -> Any:
    """8080 -> 8080, (8080, 8090) -> a range (nft lists 8080-8080 as the single port)."""
    if last is None:
        return _port(first)
    if _port(first) > _port(last):
        raise ValueError(f"empty port range: {first}-{last}")
    return first if first == last else {"range": [first, last]}


# --- readback (pure part) -----------------------------------------------------------------------


def decode(topology: str, listing: dict[str, Any]) -> tuple[NatRule, ...] | None:
    """The NatRules a ``nft -j list table`` document holds, or None when the table holds anything
    render() would not have written for them."""
    name = table_name(topology)
    observed = _normalise(listing.get("nftables", []))
    indexed: dict[int, NatRule] = {}
    for rule in (obj["rule"] for obj in observed if "rule" in obj):
        decoded = decode_comment(str(rule.get("comment", "")))
        if decoded is None:
            return None
        index, nat_rule = decoded
        if indexed.setdefault(index, nat_rule) != nat_rule:
            return None
    ordered = sorted(indexed.items())
    try:
        expected = _listing(name, ordered)
    except ValueError:  # a comment that decodes but is not a rule render() accepts
        return None
    # Indices are kept as found: a NatRule whose nft rules were all removed by hand leaves a
    # gap and reads back as missing, which the planner shows (and repairs) rule by rule.
    if _canonical(observed) != _canonical(expected):
        return None
    return tuple(rule for _, rule in ordered)


def _normalise(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop what nft adds on output (metainfo, handles) so listings compare with renders."""
    out = []
    for obj in objects:
        if "metainfo" in obj:
            continue
        out.append({kind: {k: v for k, v in body.items() if k != "handle"}
                    if isinstance(body, dict) else body for kind, body in obj.items()})
    return out


def _canonical(objects: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Compare rules in order but everything else (chains, sets, ...) as a set: nft lists chains
    in creation order, which says nothing about the ruleset's meaning."""
    # sorted() is stable: rules keep their order within each chain.
    in_chains = sorted((o for o in objects if "rule" in o),
                       key=lambda o: str(o["rule"].get("chain")))
    rules = [json.dumps(o, sort_keys=True) for o in in_chains]
    others = sorted(json.dumps(o, sort_keys=True) for o in objects if "rule" not in o)
    return others, rules


# --- talking to nft -----------------------------------------------------------------------------


def _nft_binary() -> str:
    path = shutil.which(NFT) or shutil.which(NFT, path=_SBIN_PATH)
    if path is None:
        raise NftUnavailable()
    return path


def _run(args: list[str], namespace: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run nft (argv, no shell) inside ``namespace``; the caller looks at the return code."""
    argv = [_nft_binary(), *args]
    where = ns_label(namespace)
    def spawn() -> subprocess.CompletedProcess:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False,
                              timeout=NFT_TIMEOUT)

    try:
        # forked from a thread that has entered the namespace: the child inherits it, and no
        # preexec_fn (unsafe in a process with threads) is needed
        return run_in(namespace, spawn)
    except FileNotFoundError as exc:  # removed between which() and exec, or no such namespace
        if not os.path.exists(argv[0]):
            raise NftUnavailable() from exc
        raise NftError(f"nft {' '.join(args)}: cannot enter namespace {where}: {exc}",
                       namespace=namespace) from exc
    except subprocess.TimeoutExpired as exc:
        raise NftError(f"nft {' '.join(args)} in {where}: no answer after {NFT_TIMEOUT:g}s",
                       namespace=namespace) from exc
    except OSError as exc:  # the namespace is gone, or cannot be entered
        raise NftError(f"nft {' '.join(args)}: cannot enter namespace {where}: {exc}",
                       namespace=namespace) from exc


def _error_line(stderr: str) -> str:
    """nft's complaint in one line: its "Error: ..." lines, without the echoed input and
    caret markers that follow each of them."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line[line.index("Error:"):] for line in lines if "Error:" in line]
    return "; ".join(errors or lines[:1]) or "failed without a message"


def _refused(what: str, namespace: str, proc: subprocess.CompletedProcess) -> NftError:
    return NftError(f"nft {what} in {ns_label(namespace)}: {_error_line(proc.stderr)}",
                    stderr=proc.stderr, namespace=namespace)


def apply_document(document: dict[str, Any], namespace: str, what: str) -> None:
    """Feed one JSON document to ``nft -j -f -``: nft commits it as one transaction."""
    proc = _run(["-j", "-f", "-"], namespace, stdin=json.dumps(document))
    if proc.returncode != 0:
        raise _refused(what, namespace, proc)


def replace(topology: str, namespace: str, rules: tuple[NatRule, ...]) -> None:
    """Make the table hold exactly ``rules``, in one transaction."""
    apply_document(render(topology, rules), namespace,
                   f"replace table {FAMILY} {table_name(topology)}")


def delete(topology: str, namespace: str) -> None:
    """Delete our table; an absent table is fine (the add makes the delete valid)."""
    table = {"family": FAMILY, "name": table_name(topology)}
    document = {"nftables": [{"add": {"table": table}}, {"delete": {"table": dict(table)}}]}
    apply_document(document, namespace, f"delete table {FAMILY} {table['name']}")


def read(topology: str, namespace: str) -> NatTable | None:
    """Our table in ``namespace``: None when absent, rules=None when edited by hand."""
    name = table_name(topology)
    proc = _run(["-j", "list", "table", FAMILY, name], namespace)
    if proc.returncode != 0:
        if "No such file or directory" in proc.stderr:
            return None
        raise _refused(f"list table {FAMILY} {name}", namespace, proc)
    return NatTable(namespace, rules=decode(topology, json.loads(proc.stdout)))


def ruleset(namespace: str) -> dict[str, Any]:
    """The whole ruleset of ``namespace`` as nft's JSON (for tests and debugging)."""
    proc = _run(["-j", "list", "ruleset"], namespace)
    if proc.returncode != 0:
        raise _refused("list ruleset", namespace, proc)
    return json.loads(proc.stdout)
