"""`verify --measure`: a probe's declared loss and rate, measured with real traffic.

Both are one way, from the probe's source to the namespace that owns its address, with UDP
(a receiver bound there on a port of its own, a sender in the source namespace): what TCP
would measure depends on the round trip and its congestion control, not on the shaper.

* **loss**: N numbered datagrams, paced so that no shaper or netem queue on the way drops
  any; the count that does not arrive is a binomial draw of N at the declared chance p. It
  passes within ``SIGMAS`` standard deviations of N·p (sqrt(N·p·(1-p))): a false failure is
  rarer than 1 in 15 000. N is 25/p (at least 400, at most 20 000), so that N·p - 4σ > 0: a
  loss that is not there fails too (below p = 0.125 % only a loss too high can fail).
* **rate**: datagrams of 1400 bytes sent for ``RATE_SECONDS`` at 1.25 times the least
  declared rate on the way; the receiver's count over the time from its first datagram to
  its last, against the rate times the share of a frame that is payload (1400 of 1442: a
  shaper counts the Ethernet, IP and UDP headers too), within ``RATE_TOLERANCE``.

Each costs seconds, which is why verify runs them only when asked.
"""

from __future__ import annotations

import math
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

SIGMAS = 4.0
LOSS_TARGET = 25  # expected losses: N = 25 / p
LOSS_PACKETS = (400, 20_000)
LOSS_PAYLOAD = 64
RATE_SECONDS = 2.0
RATE_PAYLOAD = 1400
FRAME_OVERHEAD = 14 + 20 + 8  # Ethernet, IPv4, UDP: what a shaper counts beyond the payload
RATE_TOLERANCE = 0.15
OFFERED = 1.25  # how much faster than the declared rate the sender offers
RCVBUF = 16 << 20
SO_RCVBUFFORCE = 33


def loss_packets(p: float) -> int:
    low, high = LOSS_PACKETS
    return max(low, min(high, math.ceil(LOSS_TARGET / p)))


def loss_bounds(n: int, p: float) -> tuple[float, float]:
    """The lost counts a binomial(n, p) gives within SIGMAS standard deviations."""
    sigma = math.sqrt(n * p * (1 - p))
    return max(0.0, n * p - SIGMAS * sigma), n * p + SIGMAS * sigma


@dataclass
class Measured:
    ok: bool
    detail: str
    figures: dict[str, Any]


def _socket(ns: str, family: int) -> socket.socket:
    from netdecl.backends import namespaces

    return namespaces.run_in(ns, lambda: socket.socket(family, socket.SOCK_DGRAM))


def _receiver(ns: str, family: int, address: str) -> socket.socket:
    sock = _socket(ns, family)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)  # lose nothing here
    sock.bind((address, 0))
    return sock


def _paced(sender: socket.socket, where: tuple[str, int], count: int, interval: float,
           payload: bytes) -> float:
    """Send ``count`` numbered datagrams ``interval`` apart (in bursts of ten, against the
    clock); the seconds it took."""
    started = time.monotonic()
    for number in range(count):
        sender.sendto(struct.pack("!I", number) + payload, where)
        if number % 10 == 9 and (wait := started + (number + 1) * interval
                                 - time.monotonic()) > 0:
            time.sleep(wait)
    return time.monotonic() - started


def measure_loss(source: str, owner: str, address: str, family: int, p: float,
                 least_rate: int, settle: float) -> Measured:
    """N datagrams from ``source`` to ``address`` (owned by ``owner``), against loss p."""
    n = loss_packets(p)
    frame = LOSS_PAYLOAD + 4 + FRAME_OVERHEAD
    # a quarter of the least rate at most, and no faster than 5000/s: no queue fills
    interval = max(0.0002, 4 * frame / least_rate if least_rate else 0.0)
    receiver = _receiver(owner, family, address)
    sender = _socket(source, family)
    try:
        _paced(sender, receiver.getsockname()[:2], n, interval, bytes(LOSS_PAYLOAD))
        got: set[int] = set()
        receiver.settimeout(settle)
        try:
            while len(got) < n:
                got.add(struct.unpack_from("!I", receiver.recv(2048))[0])
        except TimeoutError:
            pass
    finally:
        sender.close()
        receiver.close()
    lost = n - len(got)
    low, high = loss_bounds(n, p)
    figures = {"sent": n, "lost": lost, "declared": round(p * 100, 4),
               "measured": round(lost / n * 100, 4), "bounds": [math.ceil(low), int(high)]}
    ok = low <= lost <= high
    detail = (f"loss {lost}/{n} = {lost / n * 100:.2f}%, declared {p * 100:.3g}% "
              f"(expected {math.ceil(low)}..{int(high)} lost)")
    return Measured(ok, detail, figures)


def measure_rate(source: str, owner: str, address: str, family: int, rate: int,
                 settle: float) -> Measured:
    """A bulk UDP transfer offered faster than ``rate`` (bytes/s): what arrives per second."""
    receiver = _receiver(owner, family, address)
    sender = _socket(source, family)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    frame = RATE_PAYLOAD + FRAME_OVERHEAD
    count = max(50, math.ceil(rate * OFFERED * RATE_SECONDS / frame))
    interval = RATE_SECONDS / count
    seen: dict[str, float] = {}

    def receive() -> None:
        receiver.settimeout(settle + RATE_SECONDS)
        first = last = 0.0
        total = 0
        try:
            while True:
                size = len(receiver.recv(65536))
                last = time.monotonic()
                if not first:
                    first = last
                else:
                    total += size
                receiver.settimeout(settle)
        except TimeoutError:
            pass
        seen.update(bytes=total, seconds=last - first)

    thread = threading.Thread(target=receive, name="netdecl-measure-rate")
    thread.start()
    try:
        took = _paced(sender, receiver.getsockname()[:2], count, interval,
                      bytes(RATE_PAYLOAD - 4))
    finally:
        thread.join()
        sender.close()
        receiver.close()
    payload_rate = rate * RATE_PAYLOAD / frame
    offered = count * RATE_PAYLOAD / took if took else 0.0
    measured = seen["bytes"] / seen["seconds"] if seen.get("seconds") else 0.0
    figures = {"declared_bits": rate * 8, "expected_payload_bits": round(payload_rate * 8),
               "measured_payload_bits": round(measured * 8),
               "offered_payload_bits": round(offered * 8)}
    if offered < payload_rate * (1 + RATE_TOLERANCE):
        return Measured(False, f"rate not measured: the sender offered only "
                        f"{offered * 8 / 1e6:.1f} Mbit/s, not more than the declared "
                        f"{rate * 8 / 1e6:.3g} Mbit/s", figures)
    ok = abs(measured / payload_rate - 1) <= RATE_TOLERANCE
    detail = (f"rate {measured * 8 / 1e6:.2f} Mbit/s of payload, declared {rate * 8 / 1e6:.3g} "
              f"Mbit/s ({payload_rate * 8 / 1e6:.2f} of payload, within "
              f"{RATE_TOLERANCE:.0%})")
    return Measured(ok, detail, figures)
