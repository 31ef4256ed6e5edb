"""The agent's HTTP side, served only where --metrics-listen says: Prometheus metrics at
/metrics, liveness at /healthz, readiness at /ready; any other path is a 404.

A registry of its own (not prometheus_client's global one), so nothing another library
registers ends up on the page, plus the standard process metrics (CPU, memory, open files).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from netdecl import __version__
from netdecl.errors import EnvironmentProblem

# every value of netdecl_applies_total's label, exported from the start (at 0) so that rate()
# and alerts work before the first occurrence
RESULTS = ("changed", "unchanged", "failed", "conflict", "invalid", "rollback_failed", "error")
# a host name as --metrics-listen may give it (localhost:9464); resolved when serving
_LABEL = r"[A-Za-z0-9][A-Za-z0-9-]{0,62}"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


class AgentMetrics:
    def __init__(self) -> None:
        # a counter's *_created series (one more per label value) doubles the page for a
        # timestamp nobody graphs; this process serves only the agent's metrics, so the
        # switch (process-wide in prometheus_client) is the agent's to throw
        disable_created_metrics()
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
        self.invalid_files = Gauge(
            "netdecl_invalid_files", "Watched files whose current content is invalid (an "
            "edit refused: the last good version stays applied); 0 once they are fixed",
            registry=r)
        self.build_info = Gauge(
            "netdecl_build_info", "Always 1; the labels say which netdecl and Python run",
            ["version", "python"], registry=r)
        self.build_info.labels(version=__version__,  # pyproject.toml's version is read from it
                               python=".".join(map(str, sys.version_info[:3]))).set(1)
        # what /ready answers: the topologies whose first reconcile has not succeeded yet
        # (None: the agent has not started)
        self.not_ready: set[str] | None = None
        self.stopping = False
        self.server: ThreadingHTTPServer | None = None

    def page(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of ``path``."""
        path = path.split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/healthz":
            if self.stopping:
                return 503, _TEXT, b"stopping\n"
            return 200, _TEXT, b"ok\n"
        if path == "/ready":
            waiting = self.not_ready
            if waiting is None or self.stopping:
                return 503, _TEXT, b"not started\n" if waiting is None else b"stopping\n"
            if waiting:
                return 503, _TEXT, ("waiting for the first reconcile of: "
                                    + ", ".join(sorted(waiting)) + "\n").encode()
            return 200, _TEXT, b"ready\n"
        if path == "/":
            return 200, _TEXT, b"netdecl agent: /metrics /healthz /ready\n"
        return 404, _TEXT, b"not found: /metrics /healthz /ready\n"

    def serve(self, listen: str) -> None:
        """Listen on ``listen`` (ADDR:PORT); EnvironmentProblem naming it when that fails."""
        host, port = parse_listen(listen)
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                status, kind, body = metrics.page(self.path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                return None  # scrapes are not log events

        try:
            family, address = _bind_address(host, port)
            server_class = type("Server", (ThreadingHTTPServer,),
                                {"address_family": family, "daemon_threads": True})
            if family == socket.AF_INET6 and not host:  # ":9464": IPv4 too (dual stack)
                server_class.server_bind = _dual_stack_bind  # type: ignore[attr-defined]
            self.server = server_class(address, Handler)
        except OSError as exc:
            where = f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"
            raise EnvironmentProblem(f"--metrics-listen {listen}: cannot listen on {where}: "
                                     f"{exc.strerror or exc}") from None
        threading.Thread(target=self.server.serve_forever, name="metrics-http",
                         daemon=True).start()

    def close(self) -> None:
        self.stopping = True
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


_TEXT = "text/plain; charset=utf-8"


def _bind_address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    """The family and address to bind for ``host`` (an IP, a name, or "" for every address)."""
    if not host:
        if socket.has_ipv6:
            return socket.AF_INET6, ("::", port)
        return socket.AF_INET, ("0.0.0.0", port)
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]
    return family, address


def _dual_stack_bind(self: ThreadingHTTPServer) -> None:
    self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ThreadingHTTPServer.server_bind(self)


def parse_listen(text: str) -> tuple[str, int]:
    """ADDR:PORT: an IP address (IPv6 in brackets: [::1]:9464), a host name (localhost:9464),
    or nothing for every address (:9464), as Prometheus exporters take it. Raises
    ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"{text!r} is not ADDR:PORT (e.g. 127.0.0.1:9464, [::1]:9464, "
                         f"localhost:9464, or :9464 for every address)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:  # 1::2:80 could be two different things: brackets say which
        raise ValueError(f"{text!r}: put an IPv6 address in brackets, e.g. [::1]:9464")
    elif host and not _is_ip(host) and not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{text!r}: {host!r} is neither an IP address nor a host name")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port {port} is out of range")
    return host, port


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
