"""NAT and forward filtering through nftables' JSON interface: netdecl's own tables.

Per (topology, namespace) netdecl owns ``ip netdecl-<topology>`` (IPv4) and, when a rule needs
it, ``ip6 netdecl-<topology>`` (IPv6), so tables somebody else owns (Docker's, firewalld's,
iptables-nft's ``ip nat``, other topologies') are never touched. The ip table, always there, is
netdecl's by identity (its handle, which the engine records: a table someone else made under
the name since is never rewritten), and so is the ip6 table beside it. Their
contents are replaced as a whole in one nft transaction: one JSON document that,
per family, deletes the table by its handle (dropping whatever is in it, hand-added chains and
sets included) and creates it again (``create``: fails if a table of that name is there). nft
commits a document atomically, so the kernel never holds a half-written pair of tables.

``ip`` + ``ip6``, not one ``inet`` table: each rule is rendered with its own family's matches
and NAT statements, so an IPv4 rule can never touch IPv6 traffic (in an ``inet`` nat chain a
port forward matched by ``fib daddr type local`` would try to DNAT IPv6 packets to an IPv4
target unless every rule carried a family guard); IPv4 rules render exactly as before IPv6
existed, so tables already on a host read back unchanged and an upgrade changes nothing; and
``ip``/``ip6`` nat work on kernels older than 5.2, which have no ``inet`` nat. A NAT rule
without any address is IPv4 (as it always was); a filter rule without any address goes into
both tables.

Readback: every nft rule carries a comment naming the NatRule it was rendered from (its index
and a compact, lossless ``key=value`` encoding, model.encode_comment). ``read`` decodes those
comments, renders the decoded rules again and compares the result with what nft lists; only an
exact match (table by table, chain by chain, rule by rule, expression by expression) is
reported as netdecl's rules. A hand-edited rule therefore reads back as ``rules=None`` and a
flushed table as ``rules=()``.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from typing import Any

from netdecl.backends.host import NatHandles
from netdecl.backends.namespaces import run_in
from netdecl.errors import EnvironmentProblem, NetdeclError
from netdecl.model import FILTER, NatRule, NatTable, decode_comment, encode_comment, ns_label

NFT = "nft"
"""Name of the nft binary, looked up on PATH (tests replace it to simulate a missing nft)."""

# sbin is not on every PATH (sudo with secure_path, cron, some containers) but nft lives there.
_SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"

FAMILY = "ip"
"""The family of the table every topology with rules has (IPv4; the first netdecl had only it)."""
FAMILY6 = "ip6"
FAMILIES = {4: FAMILY, 6: FAMILY6}
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

# How each filter action is written, per family, as nft lists it back (a plain `reject` is
# listed as an ICMP port-unreachable, which TCP clients see as "connection refused").
_VERDICTS: dict[str, dict[int, dict[str, Any]]] = {
    "accept": {4: {"accept": None}, 6: {"accept": None}},
    "drop": {4: {"drop": None}, 6: {"drop": None}},
    "reject": {4: {"reject": {"type": "icmp", "expr": "port-unreachable"}},
               6: {"reject": {"type": "icmpv6", "expr": "port-unreachable"}}},
}

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


def needs_ip6(rules: Iterable[NatRule]) -> bool:
    """Whether these rules need the ip6 table (the ip table is always there)."""
    return any(6 in rule.families for rule in rules)


def render(topology: str, rules: tuple[NatRule, ...]) -> dict[str, Any]:
    """The complete nft JSON document that replaces the tables' contents with ``rules``."""
    name = table_name(topology)
    commands: list[dict[str, Any]] = []
    for family in (4, 6):
        table = {"family": FAMILIES[family], "name": name}
        commands += [
            {"add": {"table": table}},  # makes the delete below valid when the table is absent
            {"delete": {"table": dict(table)}},
        ]
        if family == 4 or needs_ip6(rules):
            commands += [{"add": obj} for obj in _listing(name, enumerate(rules), family)]
    return {"nftables": commands}


def _listing(name: str, indexed: Iterable[tuple[int, NatRule]],
             family: int = 4) -> list[dict[str, Any]]:
    """One table, its chains and rules as nft lists them (minus handles), in nft's listing
    order: the rules of ``indexed`` that apply to ``family``."""
    nft_family = FAMILIES[family]
    objects: list[dict[str, Any]] = [{"table": {"family": nft_family, "name": name}}]
    objects += [{"chain": _chain(nft_family, name, *chain)} for chain in CHAINS]
    by_chain: dict[str, list[dict[str, Any]]] = {chain: [] for chain, *_ in CHAINS}
    for index, rule in indexed:
        if family not in rule.families:
            continue
        comment = encode_comment(index, rule)
        for chain, expr in _rule_exprs(rule, family):
            by_chain[chain].append({"rule": {"family": nft_family, "table": name,
                                             "chain": chain, "comment": comment,
                                             "expr": expr}})
    for chain, *_ in CHAINS:
        objects += by_chain[chain]
    return objects


def _chain(family: str, table: str, name: str, type_: str, hook: str,
           prio: int) -> dict[str, Any]:
    return {"family": family, "table": table, "name": name, "type": type_, "hook": hook,
            "prio": prio, "policy": "accept"}


def _rule_exprs(rule: NatRule, family: int = 4) -> list[tuple[str, list[dict[str, Any]]]]:
    """(chain, expression list) for every nft rule one NatRule needs, in chain order."""
    if rule.kind == "masquerade":
        return [("postrouting", [*_source_nat_matches(rule, family), {"masquerade": None}])]
    if rule.kind == "snat":
        if not rule.to_source:
            raise ValueError(f"snat rule needs to_source: {rule.describe()}")
        return [("postrouting", [*_source_nat_matches(rule, family),
                                 {"snat": {"addr": _address(rule.to_source, family)}}])]
    if rule.kind == "dnat":
        return _dnat_exprs(rule, family)
    if rule.kind == FILTER:
        return [("forward", _filter_exprs(rule, family))]
    raise ValueError(f"unknown NAT rule kind {rule.kind!r}")


def _source_nat_matches(rule: NatRule, family: int) -> list[dict[str, Any]]:
    matches = []
    if rule.local_source:  # what the host itself sends, from any of its addresses
        matches.append(_match({"fib": {"result": "type", "flags": ["saddr"]}}, "local"))
    if rule.source:
        matches.append(_match(_ip("saddr", family), _cidr(rule.source, family)))
    if rule.destination:
        matches.append(_match(_ip("daddr", family), _cidrs(rule.destination, family)))
    if rule.not_destination:
        matches.append(_match(_ip("daddr", family), _cidrs(rule.not_destination, family), "!="))
    if rule.out:
        matches.append(_match(_meta("oifname"), rule.out))
    if rule.not_out:
        matches.append(_match(_meta("oifname"), rule.not_out, "!="))
    return matches


def _filter_exprs(rule: NatRule, family: int) -> list[dict[str, Any]]:
    """A forward-filter rule: its matches, then its verdict."""
    verdict = _VERDICTS.get(rule.action or "")
    if verdict is None:
        raise ValueError(f"filter rule needs action accept, drop or reject: {rule.describe()}")
    exprs = []
    if rule.in_:
        exprs.append(_match(_meta("iifname"), rule.in_))
    if rule.out:
        exprs.append(_match(_meta("oifname"), rule.out))
    if rule.source:
        exprs.append(_match(_ip("saddr", family), _cidr(rule.source, family)))
    if rule.destination:
        exprs.append(_match(_ip("daddr", family), _cidrs(rule.destination, family)))
    if rule.port is not None:
        if rule.proto not in ("tcp", "udp"):
            raise ValueError(f"a filter rule with a port needs proto tcp or udp: "
                             f"{rule.describe()}")
        exprs.append(_match(_payload(rule.proto, "dport"), _ports(rule.port, rule.port_end)))
    elif rule.proto:
        exprs.append(_match(_meta("l4proto"), rule.proto))
    if rule.state:  # as nft lists it: one state as a word, several as a list
        states: Any = rule.state[0] if len(rule.state) == 1 else list(rule.state)
        exprs.append(_match({"ct": {"key": "state"}}, states, "in"))
    return [*exprs, verdict[family]]


def _dnat_exprs(rule: NatRule, family: int = 4) -> list[tuple[str, list[dict[str, Any]]]]:
    """A port forward that works from every direction a user tries:

    * prerouting: traffic from other hosts and from containers (the target itself included);
    * output: traffic the host itself sends (to its own addresses, 127.0.0.1 included, and to
      a virtual IP no link holds);
    * forward + postrouting: masquerade DNATed flows that leave through the interface they came
      in on. Without it a client on the target's own bridge gets the target's reply straight
      over the bridge, from an address it never talked to, and resets the connection (Docker
      gets away without this only where br_netfilter pushes bridged replies through conntrack,
      or with its userland proxy). Hairpin (the target connecting to itself through the host)
      is the case where that client is the target: Docker's `ip saddr T ip daddr T masquerade`.
    * postrouting: masquerade DNATed flows from 127.0.0.0/8, which may not leave the host with
      that source (this also needs route_localnet=1, which the topology declares).

    Several targets (a load-balanced virtual IP): ``numgen inc mod N`` picks one per new
    connection, round robin, so connections spread evenly; conntrack keeps every packet of a
    connection on the target its first packet got.
    """
    if rule.proto not in ("tcp", "udp"):
        raise ValueError(f"dnat rule needs proto tcp or udp: {rule.describe()}")
    if rule.port is None or not rule.targets:
        raise ValueError(f"dnat rule needs port and to: {rule.describe()}")
    ports = _ports(rule.port, rule.port_end)
    targets = sorted({_address(t, family) for t in rule.targets}, key=ipaddress.ip_address)
    if len(targets) != len(rule.targets):
        raise ValueError(f"dnat rule names a target twice: {rule.describe()}")
    target_port = None if rule.to_port is None else _port(rule.to_port)
    # A range forwarded to one port goes to that port; without a target port nft keeps the
    # packet's own port, which is also what forwarding a range onto a range of the same size
    # means.
    dnat: dict[str, Any] = {"addr": targets[0] if len(targets) == 1 else _round_robin(
        [_address(t, family) for t in rule.targets])}
    if target_port is not None:
        dnat["port"] = target_port
    dport = _match(_payload(rule.proto, "dport"), ports)
    # Without an address, forward what is addressed to any local address (like Docker).
    daddr = (_match(_ip("daddr", family), _address(rule.address, family)) if rule.address
             else _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local"))
    from_ = [_match(_ip("saddr", family), _cidr(rule.from_, family))] if rule.from_ else []
    in_ = [_match(_meta("iifname"), rule.in_)] if rule.in_ else []

    result = [("prerouting", [*in_, *from_, daddr, dport, {"dnat": dnat}])]
    # Locally generated packets arrive on no interface: a forward limited to one does not apply.
    local = rule.in_ is None
    if local:
        result.append(("output", [*from_, daddr, dport, {"dnat": copy.deepcopy(dnat)}]))
    target_dport = _match(_payload(rule.proto, "dport"),
                          target_port if target_port is not None else ports)
    dnatted = _match({"ct": {"key": "status"}}, "dnat", "in")
    to_target = [_match(_ip("daddr", family), targets[0] if len(targets) == 1
                        else {"set": targets}), target_dport, dnatted]
    result += _same_link_masquerade(to_target)
    if local and family == 4 and _may_reach_loopback(rule):
        result.append(("postrouting", [_match(_ip("saddr"), _cidr(str(LOOPBACK))),
                                       *copy.deepcopy(to_target),
                                       {"masquerade": None}]))
    return result


def _round_robin(targets: list[str]) -> dict[str, Any]:
    """``numgen inc mod N map { 0 : T0, 1 : T1, ... }``, as nft lists it."""
    return {"map": {"key": {"numgen": {"mode": "inc", "mod": len(targets), "offset": 0}},
                    "data": {"set": [[i, t] for i, t in enumerate(targets)]}}}


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
    again = copy.deepcopy(to_target)
    return [("forward", [*to_target, first, same_link, set_mark]),
            ("postrouting", [*again, marked, clear, {"masquerade": None}])]


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


def _ip(field: str, family: int = 4) -> dict[str, Any]:
    return _payload(FAMILIES[family], field)


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _address(text: str, family: int = 4) -> str:
    """An address of the table's family (ValueError for the other one)."""
    if family == 6:
        return str(ipaddress.IPv6Address(text))
    return str(ipaddress.IPv4Address(text))


def _network(text: str, family: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if family == 6:
        return ipaddress.IPv6Network(text, strict=False)
    return ipaddress.IPv4Network(text, strict=False)


def _cidr(text: str, family: int = 4) -> Any:
    """A CIDR the way nft lists it: host bits cleared, a /32 (/128) as a plain address."""
    net = _network(text, family)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _cidrs(texts: tuple[str, ...], family: int) -> Any:
    """One CIDR, or an anonymous set of them in the order nft lists it (by address). nft
    refuses overlapping intervals in one set; the topology checks refuse them first."""
    if len(texts) == 1:
        return _cidr(texts[0], family)
    nets = sorted({_network(t, family) for t in texts},
                  key=lambda n: (int(n.network_address), n.prefixlen))
    if len(nets) != len(texts):
        raise ValueError(f"a network is listed twice: {', '.join(texts)}")
    return {"set": [_cidr(str(n), family) for n in nets]}


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
    """The NatRules that ``nft -j list table`` documents of netdecl's tables hold (the ip
    table's objects and the ip6 table's, if it exists, in one list), or None when the tables
    hold anything render() would not have written for them."""
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
        expected = _listing(name, ordered, 4)
        if needs_ip6(rule for _, rule in ordered):
            expected += _listing(name, ordered, 6)
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
                       key=lambda o: (str(o["rule"].get("family")), str(o["rule"].get("chain"))))
    rules = [json.dumps(o, sort_keys=True) for o in in_chains]
    others = sorted(json.dumps(o, sort_keys=True) for o in objects if "rule" not in o)
    return others, rules


# --- talking to nft -----------------------------------------------------------------------------


def find_nft() -> str | None:
    """Where nft is: on PATH, else in the sbin directories (cron's and sudo's PATH lack them).
    The one lookup: the CLI's pre-check and every nft run agree on whether nft exists."""
    return shutil.which(NFT) or shutil.which(NFT, path=_SBIN_PATH)


def _nft_binary() -> str:
    path = find_nft()
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


def apply_document(document: dict[str, Any], namespace: str, what: str) -> NatHandles:
    """Feed one JSON document to ``nft -j -f -``: nft commits it as one transaction. Returns
    the handles nft gave the tables the document made (None for a table it did not make)."""
    proc = _run(["-j", "--echo", "--handle", "-f", "-"], namespace, stdin=json.dumps(document))
    if proc.returncode != 0:
        raise _refused(what, namespace, proc)
    return _made_table_handles(proc.stdout)


def _made_table_handles(echo: str) -> NatHandles:
    """The handles in nft's echo of the last ``create``/``add`` of each table (the ones the
    document leaves behind)."""
    try:
        commands = json.loads(echo).get("nftables", []) if echo.strip() else []
    except ValueError:
        return NatHandles(None, None)
    found: dict[str, int] = {}
    for command in commands:
        for verb in ("create", "add"):
            body = command.get(verb) if isinstance(command, dict) else None
            table = body.get("table") if isinstance(body, dict) else None
            if not isinstance(table, dict) or table.get("family") not in (FAMILY, FAMILY6):
                continue
            # nft 1.0.6 echoes `add` with the handle in the table, `create` next to it
            assert isinstance(body, dict)  # the table came from it
            handle = table.get("handle", body.get("handle"))
            if isinstance(handle, int):
                found[table["family"]] = handle
    return NatHandles(found.get(FAMILY), found.get(FAMILY6))


def _tables_made(handles: NatHandles, rules: tuple[NatRule, ...], namespace: str,
                 what: str) -> NatHandles:
    """The tables the document leaves behind: the ip table, and the ip6 one if a rule needs
    it (an ip6 table added only to be deleted, by name, echoes a handle that is gone)."""
    if handles.ip is None or (needs_ip6(rules) and handles.ip6 is None):
        raise NftError(f"nft {what} in {ns_label(namespace)}: nft did not report the tables' "
                       f"handles", namespace=namespace)
    return NatHandles(handles.ip, handles.ip6 if needs_ip6(rules) else None)


def _commands(name: str, rules: tuple[NatRule, ...], handles: NatHandles | None,
              build: bool = True) -> list[dict[str, Any]]:
    """Per family: drop netdecl's table, by its handle (a table someone else made under the
    name is never touched; with it gone, the transaction fails and changes nothing), then
    ``create`` it anew if a rule needs it (``create`` fails where a table of that name is
    left, which is then someone else's). Without ``handles`` (nothing observed), or for the
    ip6 table of a record from before its handle was kept, by name, as netdecl always did."""
    commands: list[dict[str, Any]] = []
    for family, handle, needed in ((FAMILY, handles.ip if handles else None, True),
                                   (FAMILY6, handles.ip6 if handles else None, needs_ip6(rules))):
        table = {"family": family, "name": name}
        if handle is not None:
            commands.append({"delete": {"table": {"family": family, "handle": handle}}})
        elif handles is None or (family == FAMILY6 and not handles.ip6_known):
            commands += [{"add": {"table": table}}, {"delete": {"table": dict(table)}}]
        if build and needed:
            listing = _listing(name, enumerate(rules), 4 if family == FAMILY else 6)
            commands.append({"create": {"table": table}})
            commands += [{"add": obj} for obj in listing[1:]]
    return commands


def create(topology: str, namespace: str, rules: tuple[NatRule, ...]) -> NatHandles:
    """Make the tables, holding ``rules``, in one transaction; returns their handles.
    ``create`` fails when a table by that name exists (someone else's: it is never
    rewritten)."""
    return replace(topology, namespace, rules, NatHandles(None, None))


def _families(rules: tuple[NatRule, ...]) -> str:
    return f"{FAMILY}/{FAMILY6}" if needs_ip6(rules) else FAMILY


def replace(topology: str, namespace: str, rules: tuple[NatRule, ...],
            handles: NatHandles | None = None) -> NatHandles:
    """Make the tables hold exactly ``rules``, in one transaction; returns the new tables'
    handles. With ``handles`` (the tables observed), those very tables are replaced: if one is
    gone or someone else's table took a name, the transaction fails and nothing changes."""
    name = table_name(topology)
    what = f"replace table {_families(rules)} {name}"
    made = apply_document({"nftables": _commands(name, rules, handles)}, namespace, what)
    return _tables_made(made, rules, namespace, what)


def delete(topology: str, namespace: str, handles: NatHandles | None = None) -> None:
    """Delete our tables; absent tables are fine. With ``handles``, only those very tables: a
    table someone made under the name since is left alone."""
    name = table_name(topology)
    what = f"delete tables {FAMILY}/{FAMILY6} {name}"
    commands = _commands(name, (), handles, build=False)
    proc = _run(["-j", "-f", "-"], namespace, stdin=json.dumps({"nftables": commands}))
    if proc.returncode == 0:
        return
    if handles is not None and "No such file or directory" in proc.stderr:
        # one of them is gone already: delete the other on its own
        for command in commands:  # (by handle: one command per table)
            one = _run(["-j", "-f", "-"], namespace, stdin=json.dumps({"nftables": [command]}))
            if one.returncode != 0 and "No such file or directory" not in one.stderr:
                raise _refused(what, namespace, one)
        return
    raise _refused(what, namespace, proc)


def _list_table(family: str, name: str, namespace: str) -> list[dict[str, Any]] | None:
    """The objects nft lists for one table, None when it does not exist."""
    proc = _run(["-j", "list", "table", family, name], namespace)
    if proc.returncode != 0:
        if "No such file or directory" in proc.stderr:
            return None
        raise _refused(f"list table {family} {name}", namespace, proc)
    return json.loads(proc.stdout).get("nftables", [])


def _handle(listing: list[dict[str, Any]] | None) -> int | None:
    handles = [o["table"].get("handle") for o in listing or () if "table" in o]
    return handles[0] if handles and isinstance(handles[0], int) else None


def read(topology: str, namespace: str) -> NatTable | None:
    """Our tables in ``namespace``: None when neither is there, rules=None when edited by
    hand. Its ``ident`` holds both tables' handles (NatHandles.identity; nft never reuses a
    table handle within a namespace): the engine proves each is the one netdecl made."""
    name = table_name(topology)
    listing = _list_table(FAMILY, name, namespace)
    listing6 = _list_table(FAMILY6, name, namespace)
    if listing is None and listing6 is None:
        return None
    objects = (listing or []) + (listing6 or [])
    ident = NatHandles(_handle(listing), _handle(listing6)).identity()
    return NatTable(namespace, rules=decode(topology, {"nftables": objects}), ident=ident)


def ruleset(namespace: str) -> dict[str, Any]:
    """The whole ruleset of ``namespace`` as nft's JSON (for tests and debugging)."""
    proc = _run(["-j", "list", "ruleset"], namespace)
    if proc.returncode != 0:
        raise _refused("list ruleset", namespace, proc)
    return json.loads(proc.stdout)
