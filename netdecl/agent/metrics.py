"""The agent's Prometheus metrics, served over HTTP only where --metrics-listen says.

A registry of its own (not prometheus_client's global one), so nothing another library
registers ends up on the page, plus the standard process metrics (CPU, memory, open files).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import start_http_server

# every value of netdecl_applies_total's label, exported from the start (at 0) so that rate()
# and alerts work before the first occurrence
RESULTS = ("changed", "unchanged", "failed", "conflict", "invalid", "rollback_failed", "error")


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.drift_repairs = Counter(
            "netdecl_drift_repairs", "Objects put back after drift (one per executed action of "
            "an apply the agent started because the host changed, not the file)", registry=r)
        self.applies = Counter(
            "netdecl_applies", "Reconciles by result: changed, unchanged (the host matched), "
            "failed (rolled back), conflict, invalid (a file edit refused), rollback_failed, "
            "error", ["result"], registry=r)
        for result in RESULTS:
            self.applies.labels(result=result)
        self.apply_duration = Histogram(
            "netdecl_apply_duration_seconds", "Time of one apply, lock wait included",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120), registry=r)
        self.last_apply = Gauge(
            "netdecl_last_apply_timestamp_seconds", "When an apply last succeeded (changed or "
            "found the host matching), Unix time", registry=r)
        self.managed_objects = Gauge(
            "netdecl_managed_objects", "Objects the loaded topologies declare", registry=r)
        self.flapping_objects = Gauge(
            "netdecl_flapping_objects", "Objects repaired again soon after their last repair "
            "(another controller changes them too), whose repairs are backed off", registry=r)
        self.up = Gauge(
            "netdecl_up", "1 while the agent runs and the last apply of every topology "
            "succeeded; 0 after a failure until the next success, and when stopping",
            registry=r)
        self.server: Any = None

    def serve(self, listen: str) -> None:
        host, port = parse_listen(listen)
        self.server, _thread = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def parse_listen(text: str) -> tuple[str, int]:
    """ADDR:PORT, with an IPv6 address in brackets ([::1]:9464). Raises ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{text!r} is not ADDR:PORT (e.g. 127.0.0.1:9464 or [::1]:9464)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # 1::2:80 could be two different things: brackets say which
        raise ValueError(f"{text!r}: put an IPv6 address in brackets, e.g. [::1]:9464")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port {port} is out of range")
    return host, port
