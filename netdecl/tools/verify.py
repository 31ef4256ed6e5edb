"""`netdecl verify`: run a topology's probes with real traffic, from inside its namespaces.

No process per probe: a socket keeps the namespace it was created in, so every socket is made
by namespaces.run_in (a short-lived thread that entered the namespace) and then used from here.
Per probe, in the namespace that receives it (the destination's owner, or where a port forward
of the topology points):

* a listener (TCP or UDP) on the target address and port, unless a program already listens
  there - so probes work on a bare lab;
* a raw "sniffer" socket of the same protocol, which sees the packet arrive even when the
  handshake never completes (a missing masquerade leaves the server unable to answer), and so
  can always say which source address arrived.

Bounded: every step has the probe timeout; probes only run from namespaces the topology
declares and only to addresses the topology assigns or to networks it declares (an address's
subnet, a route other than a default one: another host's pods across an overlay or a host-gw
route), so verify never sends traffic elsewhere. At an address outside the topology the
receiving end is another machine's: no listener or sniffer there; the probe passes on the
answer (a program of that machine must listen), and its `source` is checked where verify can
see it, at the sending end.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from netdecl.model import Address, NatTable, Probe, Route, Topology, ns_label
from netdecl.tools.explain import dnat_target, match_dnat
from netdecl.tools.impairments import least_round_trip_ns, path_figures

ICMP_ECHO = {4: (8, 0), 6: (128, 129)}  # (request, reply) types
ICMP_UNREACH = {4: 3, 6: 1}


@dataclass
class Target:
    """Where a probe goes and where its listener sits."""

    address: str
    port: int | None
    proto: str  # tcp | udp | icmp
    owner: str  # namespace that owns ``address``
    listen_ns: str  # namespace the packet is finally delivered to (after a port forward)
    listen_address: str
    listen_port: int | None
    # a load-balanced forward's other targets, (namespace, address), on listen_port: the
    # connection may land on any of them
    also: tuple[tuple[str, str], ...] = ()
    # outside the topology: the network the file declares that covers ``address`` (the
    # receiving end is another machine's; owner and listen_ns mean nothing then)
    outside: str | None = None

    def describe(self) -> str:
        where = f"{self.address}:{self.port}" if self.port else self.address
        if self.outside is not None:
            return f"{where}/{self.proto} (outside, in {self.outside})"
        if (self.listen_address, self.listen_port) != (self.address, self.port):
            targets = " | ".join(f"{a}:{self.listen_port}" for a in
                                 (self.listen_address, *(a for _, a in self.also)))
            where += f" (-> {targets})"
        return f"{where}/{self.proto}"


@dataclass
class ProbeResult:
    probe: Probe
    target: Target | None
    ok: bool
    result: str  # reachable | blocked | skipped | error
    detail: str
    seconds: float = 0.0
    seen_source: str | None = None
    listener: str | None = None  # "started" | "existing" | None (icmp, skipped)
    # the least round trip the topology's netem delays promise on the way (0: none)
    declared_rtt: float = 0.0
    # verify --measure: the declared loss and rate on the way, as measured (tools/measure.py)
    measured: dict[str, Any] = dataclasses.field(default_factory=dict)

    def expected(self) -> str:
        if self.probe.expect == "blocked":
            return "blocked"
        return f"reachable from {self.probe.expect_source}" if self.probe.expect_source \
            else "reachable"

    def to_json(self) -> dict[str, Any]:
        t = self.target
        return {
            "from": self.probe.source, "to": self.probe.to,
            "address": t.address if t else None, "port": t.port if t else None,
            "proto": t.proto if t else None,
            "delivered_to": ({"namespace": ns_label(t.listen_ns), "address": t.listen_address,
                              "port": t.listen_port} if t and t.outside is None else None),
            "outside": t.outside if t else None,
            "expect": self.probe.expect, "expect_source": self.probe.expect_source,
            "ok": self.ok, "result": self.result, "detail": self.detail,
            "seconds": round(self.seconds, 4), "seen_source": self.seen_source,
            "listener": self.listener, "declared_rtt": round(self.declared_rtt, 4),
            **({"measured": self.measured} if self.measured else {}),
        }


class Refused(Exception):
    """A probe verify will not run (it would leave the topology, or cannot be placed)."""


# -- where a probe goes (pure) ------------------------------------------------------------------

def resolve(topo: Topology, probe: Probe) -> Target:
    addresses = topo.of_type(Address)
    if probe.source not in topo.namespaces():
        raise Refused(f"source namespace {probe.source} is not declared in the topology")
    if probe.to in topo.namespaces():
        mine = [a for a in addresses if a.namespace == probe.to]
        if not mine:
            raise Refused(f"namespace {probe.to} has no address to probe")
        address, owner = str(ipaddress.ip_interface(mine[0].cidr).ip), probe.to
    else:
        address = str(ipaddress.ip_address(probe.to))
        owners = [a.namespace for a in addresses if str(ipaddress.ip_interface(a.cidr).ip)
                  == address]
        # a virtual IP (a port forward's address no link holds) lives where its forward is
        owners += [t.namespace for t in topo.of_type(NatTable) for r in t.rules or ()
                   if r.kind == "dnat" and r.address == address]
        if not owners:
            network = declared_network(topo, address)
            if network is None:
                raise Refused(f"{address} is not an address of this topology nor in a network "
                              "it declares (an address's subnet, a route other than a default "
                              "one); verify sends traffic only there")
            proto = "icmp" if probe.port is None else probe.proto
            return Target(address, probe.port, proto, "", "", address, probe.port,
                          outside=network)
        owner = owners[0]
    proto = "icmp" if probe.port is None else probe.proto
    listen_ns, listen_address, listen_port = owner, address, probe.port
    also: list[tuple[str, str]] = []
    if proto != "icmp":
        forward = _port_forward(topo, owner, proto, address, probe.port)
        if forward is not None:
            (listen_address, *others), listen_port = forward
            holder = {str(ipaddress.ip_interface(a.cidr).ip): a.namespace for a in addresses}
            listen_ns = holder.get(listen_address, owner)
            also = [(holder.get(other, owner), other) for other in others]
    return Target(address, probe.port, proto, owner, listen_ns, listen_address, listen_port,
                  tuple(also))


def declared_network(topo: Topology, address: str) -> str | None:
    """The narrowest network the file declares that holds ``address``: the subnet of one of
    its addresses (the overlay's 10.244.0.0/16 on a bridge) or the destination of one of its
    routes (host-gw's 10.244.2.0/24), a default route excepted (it would hold every address);
    None when there is none."""
    ip = ipaddress.ip_address(address)
    networks = [ipaddress.ip_interface(a.cidr).network for a in topo.of_type(Address)]
    networks += [ipaddress.ip_network(r.to) for r in topo.of_type(Route) if not r.is_default]
    holding = [n for n in networks if n.version == ip.version and ip in n]
    return str(max(holding, key=lambda n: n.prefixlen)) if holding else None


def _port_forward(topo: Topology, owner: str, proto: str, address: str,
                  port: int | None) -> tuple[tuple[str, ...], int] | None:
    """The (addresses, port) a port forward of the topology in ``owner`` sends this probe to
    (several for a load-balanced one).
    Interface and source conditions are ignored: they only decide *whether* it applies, and
    the listener must be there in case it does."""
    table = topo.get(("nat", owner))
    if not isinstance(table, NatTable) or not table.rules or port is None:
        return None
    loose = tuple(dataclasses.replace(r, in_=None, from_=None) for r in table.rules)
    rule = match_dnat(loose, proto, address, port, local=True, iif=None, src=None)
    if rule is None:
        return None
    return rule.targets, dnat_target(rule, port)[1]


# -- sockets in namespaces ----------------------------------------------------------------------

def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _in_ns(ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    from netdecl.backends import namespaces

    return namespaces.run_in(ns, lambda: socket.socket(family, kind, proto))


def _client(probe: Probe, family: int, kind: int, proto: int = 0) -> socket.socket:
    """The probe's socket in its namespace; bound to its VRF, if it names one, so the VRF's
    table routes what it sends (what `ip vrf exec` does for a program)."""
    sock = _in_ns(probe.source, family, kind, proto)
    if probe.vrf is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, probe.vrf.encode())
        except OSError:
            sock.close()
            raise
    return sock


class Sniffer:
    """A raw socket in the receiving namespace: sees every packet of one protocol delivered
    there (after any DNAT), whether or not a connection ever completes."""

    def __init__(self, ns: str, target: Target, token: bytes) -> None:
        family = _family(target.listen_address)
        self.v6 = family == socket.AF_INET6
        number = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP,
                  "icmp": socket.IPPROTO_ICMPV6 if self.v6 else socket.IPPROTO_ICMP}
        self.sock = _in_ns(ns, family, socket.SOCK_RAW, number[target.proto])
        self.sock.setblocking(False)
        self.target = target
        self.token = token

    def first_source(self) -> str | None:
        """Source address of the first probe packet that arrived (non-blocking)."""
        while select.select([self.sock], [], [], 0)[0]:
            try:
                data, peer = self.sock.recvfrom(65535)
            except BlockingIOError:
                break
            source = self._match(data, peer[0])
            if source:
                return source
        return None

    def _match(self, data: bytes, peer: str) -> str | None:
        if self.v6:  # IPv6 raw sockets get the payload only; the source is the peer address
            payload, src, dst = data, peer, None
        else:
            ihl = (data[0] & 0x0F) * 4
            payload = data[ihl:]
            src = socket.inet_ntoa(data[12:16])
            dst = socket.inet_ntoa(data[16:20])
        if self.target.proto == "icmp":
            return src if self.token in payload else None
        if len(payload) < 4 or (dst and dst != self.target.listen_address):
            return None
        return src if struct.unpack("!H", payload[2:4])[0] == self.target.listen_port else None

    def close(self) -> None:
        self.sock.close()


def _listen(target: Target) -> socket.socket | None:
    """A listener on the target, or None when a program already listens there."""
    kind = socket.SOCK_DGRAM if target.proto == "udp" else socket.SOCK_STREAM
    sock = _in_ns(target.listen_ns, _family(target.listen_address), kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((target.listen_address, target.listen_port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        raise
    if kind == socket.SOCK_STREAM:
        sock.listen(8)
    return sock


def _failure(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timeout after {timeout:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, OSError) and exc.errno == errno.ENETUNREACH:
        return "no route (network unreachable at the source)"
    if isinstance(exc, OSError) and exc.errno == errno.EHOSTUNREACH:
        return "host unreachable"
    return f"{type(exc).__name__}: {exc}"


# -- the three kinds of probe -------------------------------------------------------------------

def _ready(listener: socket.socket, extra: list[socket.socket], timeout: float) -> socket.socket:
    """The listener the probe arrived at (a load-balanced forward picks one target)."""
    if not extra:
        return listener
    ready = select.select([listener, *extra], [], [], timeout)[0]
    return ready[0] if ready else listener


def _tcp(probe: Probe, target: Target, listener: socket.socket | None,
         timeout: float, extra: list[socket.socket] | None = None
         ) -> tuple[bool, str, str | None]:
    """(connected, what happened, source the listener accepted)."""
    client = _client(probe, _family(target.address), socket.SOCK_STREAM)
    try:
        client.settimeout(timeout)
        try:
            client.connect((target.address, target.port))
        except OSError as exc:
            return False, _failure(exc, timeout), None
        if listener is None:
            return True, "connected (to a program already listening)", None
        listener = _ready(listener, extra or [], timeout)
        listener.settimeout(timeout)
        try:
            conn, peer = listener.accept()
        except OSError:
            return True, "connected, but not to verify's listener (something else answered)", \
                None
        conn.close()
        return True, "connected", peer[0]
    finally:
        client.close()


def _udp(probe: Probe, target: Target, listener: socket.socket | None,
         timeout: float, token: bytes, extra: list[socket.socket] | None = None
         ) -> tuple[bool, str, str | None]:
    client = _client(probe, _family(target.address), socket.SOCK_DGRAM)
    try:
        client.settimeout(timeout)
        try:
            client.sendto(token, (target.address, target.port))
            seen = None
            if listener is not None:
                listener = _ready(listener, extra or [], timeout)
                listener.settimeout(timeout)
                data, peer = listener.recvfrom(65535)
                seen = peer[0]
                listener.sendto(data, peer)
            client.recvfrom(65535)
        except OSError as exc:
            return False, _failure(exc, timeout), None
        return True, "answered", seen
    finally:
        client.close()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _icmp(probe: Probe, target: Target, timeout: float,
          token: bytes) -> tuple[bool, str, str | None]:
    """Echo request from a raw socket (ping sockets are off in new namespaces:
    net.ipv4.ping_group_range is "1 0"). Replies are matched on the token in the payload,
    which survives NAT (the echo id may not)."""
    family = _family(target.address)
    version = 6 if family == socket.AF_INET6 else 4
    request, reply = ICMP_ECHO[version]
    proto = socket.IPPROTO_ICMPV6 if version == 6 else socket.IPPROTO_ICMP
    sock = _client(probe, family, socket.SOCK_RAW, proto)
    try:
        ident = int.from_bytes(token[:2], "big")
        header = struct.pack("!BBHHH", request, 0, 0, ident, 1)
        if version == 4:  # the kernel computes the ICMPv6 checksum itself
            header = struct.pack("!BBHHH", request, 0, _checksum(header + token), ident, 1)
        try:
            sock.sendto(header + token, (target.address, 0))
        except OSError as exc:
            return False, _failure(exc, timeout), None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data, _ = sock.recvfrom(65535)
            icmp = data if version == 6 else data[(data[0] & 0x0F) * 4:]
            if token not in icmp:
                continue
            if icmp[0] == reply:
                return True, "echo reply", None
            if icmp[0] == ICMP_UNREACH[version]:
                return False, f"destination unreachable (ICMP code {icmp[1]})", None
        return False, f"timeout after {timeout:g}s", None
    finally:
        sock.close()


# -- one probe, all probes ----------------------------------------------------------------------

def run_probe(topo: Topology, probe: Probe, timeout: float,
              measure: bool = False) -> ProbeResult:
    from netdecl.backends import namespaces

    try:
        target = resolve(topo, probe)
    except (Refused, ValueError) as exc:
        return ProbeResult(probe, None, False, "skipped", f"not run: {exc}")
    if target.outside is not None:
        return _run_outside(probe, target, timeout)
    for ns in {probe.source, target.listen_ns}:
        if not namespaces.exists(ns):
            return ProbeResult(probe, target, False, "error",
                               f"namespace {ns} does not exist (apply the topology first)")
    token = b"netdecl-verify-" + os.urandom(8).hex().encode()
    started = time.monotonic()
    sniffer = Sniffer(target.listen_ns, target, token)
    listener = None
    extra: list[socket.socket] = []
    try:
        if target.proto != "icmp":
            listener = _listen(target)
            for ns, address in target.also:
                other = _listen(dataclasses.replace(target, listen_ns=ns,
                                                    listen_address=address))
                if other is not None:
                    extra.append(other)
        if target.proto == "tcp":
            passed, what, accepted = _tcp(probe, target, listener, timeout, extra)
        elif target.proto == "udp":
            passed, what, accepted = _udp(probe, target, listener, timeout, token, extra)
        else:
            passed, what, accepted = _icmp(probe, target, timeout, token)
        seen = accepted or sniffer.first_source()
    finally:
        sniffer.close()
        for sock in ([listener] if listener is not None else []) + extra:
            sock.close()
    result = ProbeResult(probe, target, False, "reachable" if passed else "blocked", what,
                         time.monotonic() - started, seen,
                         None if target.proto == "icmp" else
                         ("started" if listener is not None else "existing"),
                         least_round_trip_ns(topo, probe.source, target.owner) / 1e9)
    _judge(result)
    if measure and result.ok and probe.expect != "blocked":
        _measure(topo, result, target, timeout)
    return result


def _measure(topo: Topology, result: ProbeResult, target: Target, timeout: float) -> None:
    """The loss and least rate the file declares on the probe's way, measured one way from
    its source to the owner of its address (tools/measure.py says how and how closely)."""
    from netdecl.tools.measure import measure_loss, measure_rate

    figures = path_figures(topo, result.probe.source, target.owner)
    family = _family(target.address)
    settle = timeout + 2 * result.declared_rtt
    found = []
    if figures.loss and figures.unmeasured:
        found.append(f"loss not measured: {figures.unmeasured}")
    elif figures.loss:
        loss = measure_loss(result.probe.source, target.owner, target.address, family,
                            figures.loss, figures.rate, settle)
        result.measured["loss"] = loss.figures
        result.ok &= loss.ok
        found.append(loss.detail if loss.ok else f"FAIL {loss.detail}")
    if figures.rate:
        rate = measure_rate(result.probe.source, target.owner, target.address, family,
                            figures.rate, settle)
        result.measured["rate"] = {**rate.figures, "at": figures.rate_at}
        result.ok &= rate.ok
        found.append((rate.detail if rate.ok else f"FAIL {rate.detail}")
                     + f" at {figures.rate_at}")
    if found:
        result.detail += "; " + "; ".join(found)
        result.measured["text"] = "; ".join(found)


def _run_outside(probe: Probe, target: Target, timeout: float) -> ProbeResult:
    """A probe to another machine's address: the client side only; ``seen_source`` stays
    empty (nothing of the receiving end is visible here) and the detail says which address
    the probe left from, which ``source`` is checked against."""
    from netdecl.backends import namespaces

    if not namespaces.exists(probe.source):
        return ProbeResult(probe, target, False, "error", f"namespace {probe.source} does not "
                           "exist (apply the topology first)")
    token = b"netdecl-verify-" + os.urandom(8).hex().encode()
    started = time.monotonic()
    if target.proto == "icmp":
        passed, what, _ = _icmp(probe, target, timeout, token)
        left_from = None
    else:
        passed, what, left_from = _client_only(probe, target, timeout, token)
    result = ProbeResult(probe, target, False, "reachable" if passed else "blocked", what,
                         time.monotonic() - started)
    if left_from is not None:
        result.detail += f"; left from {left_from}"
    if probe.expect == "blocked":
        result.ok = not passed
        if passed:
            result.detail = f"got through ({result.detail}), expected blocked"
    elif passed and probe.expect_source and left_from != probe.expect_source:
        result.detail += (f", expected source {probe.expect_source} (checked at the sending "
                          f"end: {target.address} is another machine's)")
    else:
        result.ok = passed
    return result


def _client_only(probe: Probe, target: Target, timeout: float,
                 token: bytes) -> tuple[bool, str, str | None]:
    """TCP connect or UDP exchange with a program of another machine: (answered, what
    happened, the local address the probe left from)."""
    kind = socket.SOCK_STREAM if target.proto == "tcp" else socket.SOCK_DGRAM
    client = _in_ns(probe.source, _family(target.address), kind)
    try:
        client.settimeout(timeout)
        try:
            client.connect((target.address, target.port))  # UDP too: its local address
            if kind == socket.SOCK_DGRAM:
                client.send(token)
                client.recv(65535)
        except OSError as exc:
            return False, _failure(exc, timeout), None
        return True, "connected" if kind == socket.SOCK_STREAM else "answered", \
            client.getsockname()[0]
    finally:
        client.close()


def _judge(result: ProbeResult) -> None:
    """Compare what happened with what the probe expects; failures say what was seen."""
    probe, target = result.probe, result.target
    assert target is not None
    arrived = (f"; {target.listen_address} in {ns_label(target.listen_ns)} saw source "
               f"{result.seen_source}" if result.seen_source else "")
    if probe.expect == "blocked":
        result.ok = result.result == "blocked"
        if not result.ok:
            result.detail = f"got through ({result.detail}), expected blocked{arrived}"
        return
    if result.result != "reachable":
        result.detail += arrived or (f"; nothing arrived at {target.listen_address} in "
                                     f"{ns_label(target.listen_ns)}")
        if probe.expect_source and result.seen_source and \
                result.seen_source != probe.expect_source:
            result.detail += f" (expected source {probe.expect_source})"
        return
    if probe.expect_source and result.seen_source is None:
        result.detail = (f"{result.detail}, but the source cannot be checked: another program "
                         f"listens on {target.listen_address}:{target.listen_port}")
        return
    if probe.expect_source and result.seen_source != probe.expect_source:
        result.detail = (f"wrong source: {target.listen_address} saw {result.seen_source}, "
                         f"expected {probe.expect_source}")
        return
    if result.seconds < result.declared_rtt:
        # the probe's time holds at least one round trip: faster than the declared delays
        # allow, the impairments are not on the path
        result.detail = (f"{result.detail}, in {result.seconds * 1000:.1f} ms: less than the "
                         f"{result.declared_rtt * 1000:.0f} ms the declared netem delays on "
                         "the way allow")
        return
    result.ok = True


def run_probes(topo: Topology, timeout: float = 2.0,
               measure: bool = False) -> list[ProbeResult]:
    """Every probe of the topology, one after another (each creates and closes its own
    listener, so probes to the same port do not interfere)."""
    return [run_probe(topo, probe, timeout, measure) for probe in topo.probes]


@dataclass(frozen=True)
class VerifyResult:
    """A topology's probes, run: what `netdecl verify` prints, as data."""

    topology: str
    probes: tuple[ProbeResult, ...]  # in the topology's order

    @property
    def ok(self) -> bool:
        """Every probe got what it expects (true when there are none)."""
        return all(r.ok for r in self.probes)

    def failed(self) -> tuple[ProbeResult, ...]:
        return tuple(r for r in self.probes if not r.ok)

    def text(self) -> str:
        """The table `netdecl verify` prints, ending with "N probes: P passed, F failed"."""
        return render_table(list(self.probes))

    def to_json(self) -> dict[str, Any]:
        """As `netdecl verify --json` prints it."""
        failed = len(self.failed())
        return {"topology": self.topology, "probes": [r.to_json() for r in self.probes],
                "passed": len(self.probes) - failed, "failed": failed}


def verify(topo: Topology, timeout: float = 2.0, measure: bool = False) -> VerifyResult:
    return VerifyResult(topo.name, tuple(run_probes(topo, timeout, measure)))


def render_table(results: list[ProbeResult]) -> str:
    if not results:
        return "No probes in this topology (add a probes: section)."
    rows = [("FROM", "TO", "EXPECTED", "RESULT", "TIME", "SEEN SOURCE")]
    for r in results:
        to = f"{r.probe.to} {r.target.describe()}" if r.target and r.probe.to != \
            r.target.address else (r.target.describe() if r.target else r.probe.to)
        status = (f"ok ({r.measured['text']})" if r.measured.get("text") else "ok") if r.ok \
            else f"FAIL: {r.detail}"
        source = r.probe.source + (f" vrf {r.probe.vrf}" if r.probe.vrf else "")
        rows.append((source, to, r.expected(), status,
                     f"{r.seconds * 1000:.0f}ms", r.seen_source or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip()
             + "  " + row[-1] for row in rows]
    failed = sum(not r.ok for r in results)
    count = f"{len(results)} probe{'' if len(results) == 1 else 's'}"
    lines.append(f"{count}: {len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)
