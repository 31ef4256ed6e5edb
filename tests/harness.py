"""A hermetic "host" for integration tests: a throwaway network + mount namespace.

Every integration test runs netdecl (and `ip`, `nft`, test servers...) inside a HermeticHost, so
nothing ever touches the machine's real network. The host is kept alive by a tiny "holder"
process: it unshares a new network and mount namespace, hides /run/netns, /run/netdecl and
/var/lib/netdecl behind fresh tmpfs mounts, then sleeps on its stdin. Commands join it with
`nsenter --target HOLDER --net --mount`. When the holder exits (stdin closed, killed, or its
parent - the test process - died, via PDEATHSIG) its mount namespace goes away, which drops the
/run/netns bind mounts, which frees the named namespaces and with them every link, address,
route and nft table created inside. Nothing needs to be undone one by one.

Usage::

    with HermeticHost() as host:
        host.run(["ip", "netns", "add", "a"])
        host.netdecl("apply", "topo.yaml", check=True)
        assert host.ip_json("link", ns="a")
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = "/var/lib/netdecl"
ROOT_NS = ""  # snapshot key of the hermetic host's root namespace (same as netdecl.model.ROOT)

# Paths the holder covers with a private tmpfs: netns names, netdecl's runtime dir (locks,
# sandboxes) and its state dir. The tmpfs hides whatever the real host has there, and anything
# written there vanishes with the holder.
PRIVATE_TMPFS = ("/run/netns", "/run/netdecl", STATE_DIR)

# The holder script. Kept free of netdecl imports so a broken netdecl can't break the harness.
HOLDER = r"""
import ctypes, fcntl, os, socket, struct, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_void_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

PR_SET_PDEATHSIG = 1
CLONE_NEWNET, CLONE_NEWNS = 0x40000000, 0x00020000
MS_REC, MS_PRIVATE = 16384, 1 << 18
MNT_DETACH = 2

def check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")

def mount(src, target, fstype, flags, data=None):
    check(libc.mount(src and src.encode(), target.encode(), fstype and fstype.encode(), flags,
                     data and data.encode()), f"mount {target}")

def main(paths):
    # Die with the test process: a crashed pytest must not leave namespaces behind.
    check(libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0), "prctl")
    if os.getppid() == 1:  # parent already gone before prctl took effect
        sys.exit(1)
    check(libc.unshare(CLONE_NEWNET | CLONE_NEWNS), "unshare")
    # Private, so none of our mounts propagate back to the real host (and vice versa).
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for path in paths:
        os.makedirs(path, exist_ok=True)
        # Detach what the host has mounted there first (e.g. real /run/netns/X bind mounts),
        # so this namespace doesn't pin host namespaces and can't see them underneath.
        for entry in os.listdir(path):
            libc.umount2(os.path.join(path, entry).encode(), MNT_DETACH)
        for _ in range(64):  # stacked mounts: until "not a mount point"
            if libc.umount2(path.encode(), MNT_DETACH) != 0:
                break
        mount("tmpfs", path, "tmpfs", 0, "mode=0755")
    # sysfs shows the network namespace of whoever mounted it; remount so /sys/class/net
    # shows this host's links, not the real ones.
    mount("sysfs", "/sys", "sysfs", 0)
    # lo up, like a real host (SIOCGIFFLAGS / SIOCSIFFLAGS).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0))
        flags = struct.unpack("16sH22x", ifr)[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))

try:
    main(sys.argv[1:])
except Exception as exc:
    sys.stdout.write(f"fail {exc}\n")
    sys.stdout.flush()
    sys.exit(1)
sys.stdout.write("ready\n")
sys.stdout.flush()
# Hold the namespaces until the test closes our stdin (or dies).
while sys.stdin.buffer.read(65536):
    pass
"""

# A tiny server run inside a namespace. Prints "ready" once listening, then one "src ADDR" line
# per request *before* answering it, so by the time a client has its answer the line is already
# in the pipe (seen_sources() needs no sleeps).
SERVER = r"""
import ctypes, http.server, socket, socketserver, sys
ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the test
ns, address, port, proto = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
family = socket.AF_INET6 if ":" in address else socket.AF_INET
label = ns or "root"

def note(src):
    sys.stdout.write(f"src {src}\n")
    sys.stdout.flush()

if proto == "udp":
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((address, port))
    sys.stdout.write("ready\n"); sys.stdout.flush()
    while True:
        data, peer = sock.recvfrom(65535)
        note(peer[0])
        sock.sendto(f"netdecl-test-server ns={label} client={peer[0]}\n".encode(), peer)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        src = self.client_address[0]
        note(src)
        body = f"netdecl-test-server ns={label} client={src}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    address_family = family
    allow_reuse_address = True
    daemon_threads = True

srv = Server((address, port), Handler)
sys.stdout.write("ready\n"); sys.stdout.flush()
srv.serve_forever()
"""

HTTP_CLIENT = r"""
import json, sys, urllib.request
address, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
host = f"[{address}]" if ":" in address else address
try:
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=timeout) as resp:
        print(json.dumps({"ok": True, "body": resp.read().decode(), "error": ""}))
except Exception as exc:
    print(json.dumps({"ok": False, "body": "", "error": f"{type(exc).__name__}: {exc}"}))
"""

UDP_CLIENT = r"""
import json, socket, sys
address, port, timeout, payload = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
family = socket.AF_INET6 if ":" in address else socket.AF_INET
try:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload.encode(), (address, port))
        data, _ = s.recvfrom(65535)
        print(json.dumps({"ok": True, "body": data.decode(), "error": ""}))
except Exception as exc:
    print(json.dumps({"ok": False, "body": "", "error": f"{type(exc).__name__}: {exc}"}))
"""

# ICMP echo with a raw socket: iputils-ping is not installed everywhere, and unprivileged ICMP
# sockets are disabled by default in new namespaces (net.ipv4.ping_group_range = "1 0").
PING = r"""
import os, select, socket, struct, sys, time
address, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
v6 = ":" in address
def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF
if v6:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    req_type, rep_type = 128, 129
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    req_type, rep_type = 8, 0
ident = os.getpid() & 0xFFFF
ok = False
for seq in range(count):
    payload = b"netdecl-ping"
    hdr = struct.pack("!BBHHH", req_type, 0, 0, ident, seq)
    pkt = hdr if v6 else struct.pack("!BBHHH", req_type, 0, csum(hdr + payload), ident, seq)
    sock.sendto(pkt + payload, (address, 0))  # the kernel fills in the ICMPv6 checksum
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        data, peer = sock.recvfrom(65535)
        icmp = data if v6 else data[(data[0] & 0x0F) * 4:]  # raw IPv4 includes the IP header
        typ, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
        if typ == rep_type and rid == ident and rseq == seq:
            ok = True
            break
    if ok:
        break
print("ok" if ok else "fail")
"""

# Collects the raw material of snapshot() in one process inside the hermetic host: for the root
# and every named namespace, enter it (setns on this single thread) and run ip/nft there.
COLLECTOR = r"""
import ctypes, json, os, shutil, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)
def ip(*args):
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True).stdout.strip()
    return json.loads(out) if out else []
def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None
SYSCTLS = ["net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet",
           "net.ipv6.conf.all.forwarding"]
has_nft = shutil.which("nft") is not None
def collect():
    nft = None
    if has_nft:
        r = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True)
        ok = r.returncode == 0 and r.stdout.strip()
        nft = json.loads(r.stdout) if ok else {"error": r.stderr}
    return {
        "link": ip("-d", "link", "show"),
        "addr": ip("addr", "show"),
        "route4": ip("-4", "route", "show", "table", "all"),
        "route6": ip("-6", "route", "show", "table", "all"),
        "nsids": ip("netns", "list-id"),
        "sysctl": {k: read("/proc/sys/" + k.replace(".", "/")) for k in SYSCTLS},
        "nft": nft,
    }
names = sorted(n["name"] for n in ip("netns", "list"))
root = f"/proc/{os.getpid()}/ns/net"
root_fd = os.open(root, os.O_RDONLY)
out = {"": collect()}
for name in names:
    try:
        setns(f"/run/netns/{name}")
    except OSError as exc:
        out[name] = {"error": str(exc)}
        continue
    out[name] = collect()
    if libc.setns(root_fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns back to root")
json.dump(out, sys.stdout)
"""


def real_host_state() -> dict[str, list[str]]:
    """What the real machine shows, seen from the calling process (which must *not* be inside
    a hermetic host): interface names, named namespaces, nft tables. Tests compare it before
    and after to prove they left the machine alone."""
    def out(argv: list[str]) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    tables = out(["nft", "list", "tables"]) if shutil.which("nft") else ""
    return {
        "links": sorted(line.split(":")[1].strip() for line in out(["ip", "-o", "link"])
                        .splitlines()),
        "netns": sorted(out(["ip", "netns", "list"]).split()),
        "nft": sorted(tables.splitlines()),
    }


class HermeticUnavailable(RuntimeError):
    """This machine can't make a hermetic host (not root, no unshare...): tests should skip."""


@dataclasses.dataclass(frozen=True)
class HttpResult:
    ok: bool
    body: str
    error: str


class Server:
    """A test server running inside one namespace of a HermeticHost (see start_server)."""

    def __init__(self, proc: subprocess.Popen[bytes], ns: str | None, address: str, port: int,
                 proto: str) -> None:
        self.proc = proc
        self.ns = ns
        self.address = address
        self.port = port
        self.proto = proto
        self._buf = b""
        self._sources: list[str] = []
        self._ready = False
        assert proc.stdout is not None
        self._fd = proc.stdout.fileno()
        os.set_blocking(self._fd, False)

    def _drain(self, wait: float = 0.0) -> None:
        """Read whatever the server has printed, waiting up to `wait` seconds for the first
        bytes (then only what is already in the pipe)."""
        with selectors.DefaultSelector() as sel:
            sel.register(self._fd, selectors.EVENT_READ)
            timeout = wait
            while sel.select(timeout):
                try:
                    chunk = os.read(self._fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:  # server exited
                    return
                timeout = 0.0
                self._buf += chunk
                *lines, self._buf = self._buf.split(b"\n")
                for line in lines:
                    text = line.decode(errors="replace")
                    if text == "ready":
                        self._ready = True
                    elif text.startswith("src "):
                        self._sources.append(text[4:])

    def wait_ready(self, timeout: float = 10.0) -> Server:
        deadline = time.monotonic() + timeout
        while not self._ready:
            if self.proc.poll() is not None:
                self._drain()
                if not self._ready:
                    raise AssertionError(
                        f"test server in {self.ns or 'root'} on {self.address}:{self.port} "
                        f"exited with {self.proc.returncode} before listening")
            if time.monotonic() > deadline:
                raise AssertionError(f"test server in {self.ns or 'root'} not ready "
                                     f"after {timeout}s")
            self._drain(wait=0.1)
        return self

    def seen_sources(self) -> list[str]:
        """Client source addresses, one per request so far (the server logs a request before
        answering it, so everything a finished client did is already here)."""
        self._drain()
        return list(self._sources)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()


def _stop_holder(proc: subprocess.Popen[bytes]) -> None:
    """Close the holder's stdin (it exits), kill it if it doesn't. Safe to call twice."""
    if proc.stdin and not proc.stdin.closed:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    if proc.stdout and not proc.stdout.closed:
        proc.stdout.close()


class HermeticHost:
    """A throwaway network + mount namespace pretending to be a whole host. Context manager."""

    def __init__(self, *, cwd: str | os.PathLike[str] | None = None) -> None:
        # Directory commands run in. nsenter --mount resets the cwd to "/", so we pass --wd.
        self.cwd = str(cwd or os.getcwd())
        self._holder: subprocess.Popen[bytes] | None = None
        self._servers: list[Server] = []
        self._finalizer: weakref.finalize | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self._holder is None or self._holder.poll() is not None:
            raise RuntimeError("HermeticHost is not running")
        return self._holder.pid

    def start(self) -> HermeticHost:
        if self._holder is not None:
            raise RuntimeError("HermeticHost already started")
        if os.geteuid() != 0:
            raise HermeticUnavailable("needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN)")
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, *PRIVATE_TMPFS],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if line != "ready":
            _stop_holder(proc)
            err = proc.stderr.read().decode().strip() if proc.stderr else ""
            if proc.stderr:
                proc.stderr.close()
            raise HermeticUnavailable(
                f"cannot create a hermetic network+mount namespace: {line or err or 'no output'}")
        # Nothing more is read from stderr; don't let a full pipe block the holder.
        if proc.stderr:
            proc.stderr.close()
        self._holder = proc
        # Backstop for a test that never reaches __exit__ (e.g. the interpreter exits); the
        # holder's PDEATHSIG covers the case where the test process is killed outright.
        # (weakref.finalize also runs at interpreter exit.) Note PDEATHSIG fires when the
        # *thread* that started the holder exits: start hosts from a thread that outlives them.
        self._finalizer = weakref.finalize(self, _stop_holder, proc)
        return self

    def stop(self) -> None:
        """Tear everything down. Idempotent."""
        for server in self._servers:
            server.stop()
        self._servers.clear()
        if self._holder is None:
            return
        self._kill_stragglers()
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_holder once; later calls (and exit) are no-ops
        self._holder = None

    def _kill_stragglers(self) -> None:
        """Kill processes a test left running inside this host (daemons, hung commands): a
        process keeps its network namespace - and all links in it - alive after the holder
        is gone. They are recognised by the namespaces they live in, which only our tests use."""
        assert self._holder is not None
        holder = self._holder.pid
        try:
            ours = {os.stat(f"/proc/{holder}/ns/{kind}").st_ino for kind in ("net", "mnt")}
            root = f"/proc/{holder}/root"
            ns_files = [os.path.join(root, "run/netns", e)
                        for e in os.listdir(os.path.join(root, "run/netns"))]
            # Sandboxes (netdecl.tools.sandbox) made inside this host: their namespaces too.
            sandboxes = os.path.join(root, "run/netdecl/sandboxes")
            if os.path.isdir(sandboxes):
                ns_files += [os.path.join(sandboxes, name, kind)
                             for name in os.listdir(sandboxes) for kind in ("net", "mnt")]
            nsfs = os.stat("/proc/self/ns/net").st_dev
            for path in ns_files:
                with contextlib.suppress(OSError):
                    st = os.stat(path)
                    if st.st_dev == nsfs:  # a plain file's inode number means nothing here
                        ours.add(st.st_ino)
        except OSError:
            return  # holder already gone
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in (me, holder):
                continue
            try:
                inos = {os.stat(f"/proc/{entry}/ns/{kind}").st_ino for kind in ("net", "mnt")}
            except OSError:
                continue
            if inos & ours:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry), signal.SIGKILL)

    def __enter__(self) -> HermeticHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- running commands ------------------------------------------------------------------

    def _argv(self, argv: Sequence[str], ns: str | None) -> list[str]:
        prefix = ["nsenter", f"--target={self.pid}", "--net", "--mount", f"--wd={self.cwd}",
                  "--"]
        if ns:
            # `ip netns exec` also remounts /sys for the namespace, like on a real host.
            prefix += ["ip", "netns", "exec", ns]
        return [*prefix, *map(str, argv)]

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        merged = dict(os.environ)
        if env:
            merged.update(env)
        return merged

    def run(self, argv: Sequence[str], *, ns: str | None = None, input: str | None = None,
            env: Mapping[str, str] | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run argv inside the hermetic host (or inside its named namespace `ns`)."""
        full = self._argv(argv, ns)
        try:
            result = subprocess.run(full, input=input, env=self._env(env), capture_output=True,
                                    text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"timed out after {timeout}s: {list(argv)} (ns={ns!r})\n"
                                 f"stdout:\n{_text(exc.stdout)}\nstderr:\n{_text(exc.stderr)}"
                                 ) from None
        if check and result.returncode != 0:
            raise AssertionError(
                f"command failed: {list(argv)} (ns={ns!r}) rc={result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def netdecl(self, *args: str, check: bool = False, env: Mapping[str, str] | None = None,
                input: str | None = None, timeout: float = 120
                ) -> subprocess.CompletedProcess[str]:
        """Run `python -m netdecl ARGS` inside the hermetic host: the netdecl installed for this
        Python (.ci/setup installs the checkout editable), nothing put on its path by hand."""
        full_env = {"NETDECL_STATE_DIR": STATE_DIR, **(env or {})}
        return self.run([sys.executable, "-m", "netdecl", *args], env=full_env, input=input,
                        check=check, timeout=timeout)

    def ip_json(self, *args: str, ns: str | None = None) -> Any:
        out = self.run(["ip", "-j", *args], ns=ns).stdout.strip()
        return json.loads(out) if out else []

    def nft_json(self, ns: str | None = None) -> dict[str, Any]:
        return json.loads(self.run(["nft", "-j", "list", "ruleset"], ns=ns).stdout)

    def netns_list(self) -> list[str]:
        return sorted(entry["name"] for entry in self.ip_json("netns", "list"))

    def sysctl(self, key: str, ns: str | None = None) -> str:
        path = "/proc/sys/" + key.replace(".", "/")
        return self.run(["cat", path], ns=ns).stdout.strip()

    def write_sysctl(self, key: str, value: str | int, ns: str | None = None) -> None:
        """Set a sysctl inside the host (by writing /proc/sys; needs no `sysctl` binary)."""
        path = "/proc/sys/" + key.replace(".", "/")
        self.run([sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])",
                  path, str(value)], ns=ns)

    # ---- state -----------------------------------------------------------------------------

    def snapshot(self, *, link_local: bool = True, macs: bool = True) -> dict[str, Any]:
        """A normalised picture of the whole host, equal for equal states.

        {namespace: {"links", "addresses", "routes", "sysctl", "nft"}} for the root ("") and
        every named namespace. Volatile data (ifindex, stats, operstate, timers, nft handles...)
        is dropped. link_local=False drops IPv6 link-local addresses and routes (they follow the
        MACs, which change when links are recreated); macs=False drops MAC addresses.
        """
        raw = self._collect_settled()
        out: dict[str, Any] = {}
        for ns, data in sorted(raw.items()):
            if "error" in data and len(data) == 1:
                out[ns] = data
                continue
            out[ns] = {
                "links": _norm_links(ns, data, raw, macs=macs),
                "addresses": _norm_addrs(data["addr"], link_local=link_local),
                "routes": _norm_routes(data["route4"], data["route6"], link_local=link_local),
                "sysctl": data["sysctl"],
                "nft": _norm_nft(data["nft"]),
            }
        return out

    def _collect_settled(self, timeout: float = 15.0) -> dict[str, Any]:
        """Collect, but wait out IPv6 duplicate address detection first: while an address is
        "tentative" its local route is missing, so two snapshots a second apart would differ.
        Links without carrier never finish DAD, so only those with LOWER_UP count. DAD takes
        a second or two; the bound is generous for a machine busy with other test runs."""
        deadline = time.monotonic() + timeout
        while True:
            raw = json.loads(self.run([sys.executable, "-c", COLLECTOR]).stdout)
            if time.monotonic() > deadline or not any(
                    _dad_pending(data.get("addr", [])) for data in raw.values()):
                return raw
            time.sleep(0.1)

    # ---- traffic ---------------------------------------------------------------------------

    def start_server(self, ns: str | None, port: int, *, address: str = "0.0.0.0",
                     proto: str = "tcp") -> Server:
        """Start an HTTP (tcp) or datagram echo (udp) server in `ns`; waits until it listens.
        Its answers contain "ns=NAME client=SRC"; see Server.seen_sources()."""
        if proto not in ("tcp", "udp"):
            raise ValueError(f"proto must be tcp or udp, not {proto!r}")
        argv = self._argv([sys.executable, "-c", SERVER, ns or "", address, str(port), proto],
                          ns)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        server = Server(proc, ns, address, port, proto)
        self._servers.append(server)
        return server.wait_ready()

    def http_get(self, ns: str | None, address: str, port: int,
                 timeout: float = 5) -> HttpResult:
        """GET http://address:port/ from inside `ns` (a real TCP client in that namespace)."""
        return self._client(HTTP_CLIENT, ns, [address, str(port), str(timeout)], timeout)

    def udp_request(self, ns: str | None, address: str, port: int, payload: str = "hi",
                    timeout: float = 5) -> HttpResult:
        """Send one datagram from `ns` and wait for the answer (see start_server(proto="udp"))."""
        return self._client(UDP_CLIENT, ns, [address, str(port), str(timeout), payload],
                            timeout)

    def _client(self, script: str, ns: str | None, args: list[str],
                timeout: float) -> HttpResult:
        result = self.run([sys.executable, "-c", script, *args], ns=ns, check=False,
                          timeout=timeout + 30)
        try:
            data = json.loads(result.stdout)
        except json.JSONDecodeError:
            return HttpResult(False, "", f"client failed rc={result.returncode}: "
                                         f"{result.stderr.strip()}")
        return HttpResult(data["ok"], data["body"], data["error"])

    def ping(self, ns: str | None, address: str, count: int = 1, timeout: float = 2) -> bool:
        """ICMP echo from `ns` to `address` (raw socket; needs no iputils-ping)."""
        result = self.run([sys.executable, "-c", PING, address, str(count), str(timeout)], ns=ns,
                          check=False, timeout=count * timeout + 30)
        if result.returncode != 0:
            raise AssertionError(f"ping helper failed: {result.stderr}")
        return result.stdout.strip() == "ok"


# ---- snapshot normalisation ------------------------------------------------------------------

# Link attributes from linkinfo.info_data (and info_slave_data) that describe configuration.
# A whitelist, because info_data also holds timers and counters that change on their own.
_INFO_DATA_KEYS: dict[str, tuple[str, ...]] = {
    "bridge": ("stp_state", "vlan_filtering", "vlan_protocol", "mcast_snooping"),
    "vxlan": ("id", "local", "local6", "group", "port", "learning", "link", "ttl", "dstport"),
    "vlan": ("id", "protocol", "flags"),
    "macvlan": ("mode",),
    "ipvlan": ("mode",),
    "bond": ("mode",),
}
_SLAVE_DATA_KEYS: dict[str, tuple[str, ...]] = {
    "bridge": ("hairpin", "learning", "flood", "isolated", "cost", "priority"),
}


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _dad_pending(addr_data: list[dict[str, Any]]) -> bool:
    return any(info.get("tentative") and not info.get("dadfailed")
               for link in addr_data if "LOWER_UP" in link.get("flags", [])
               for info in link.get("addr_info", []))


def _peer(ns: str, link: dict[str, Any], data: dict[str, Any],
          raw: dict[str, Any]) -> str | None:
    """The link's lower/peer device as "NS/IFNAME" (veth peer, vlan parent...), by name rather
    than by ifindex/netnsid, which differ every run."""
    if "link" in link and link["link"]:
        return f"{ns}/{link['link']}"
    if "link_index" not in link:
        return None
    index = link["link_index"]
    if "link_netnsid" not in link:
        by_index = {lk["ifindex"]: lk["ifname"] for lk in data["link"]}
        return f"{ns}/{by_index.get(index, f'#{index}')}"
    nsid = link["link_netnsid"]
    names = {entry.get("nsid"): entry.get("name") for entry in data.get("nsids", [])}
    # The hermetic root has no name, so an unnamed nsid is (almost certainly) the root.
    other = names.get(nsid) or ROOT_NS
    other_links = raw.get(other, {}).get("link", [])
    by_index = {lk["ifindex"]: lk["ifname"] for lk in other_links}
    return f"{other}/{by_index.get(index, f'#{index}')}"


def _norm_links(ns: str, data: dict[str, Any], raw: dict[str, Any], *,
                macs: bool) -> list[dict[str, Any]]:
    links = []
    for link in data["link"]:
        info = link.get("linkinfo", {})
        kind = info.get("info_kind")
        entry: dict[str, Any] = {
            "ifname": link["ifname"],
            "kind": kind,
            "up": "UP" in link.get("flags", []),
            "mtu": link.get("mtu"),
            "master": link.get("master"),
            "ifalias": link.get("ifalias"),
            "peer": _peer(ns, link, data, raw),
        }
        if macs:
            entry["address"] = link.get("address")
        if kind in _INFO_DATA_KEYS:
            idata = info.get("info_data", {})
            entry["info"] = {k: idata[k] for k in _INFO_DATA_KEYS[kind] if k in idata}
        slave_kind = info.get("info_slave_kind")
        if slave_kind in _SLAVE_DATA_KEYS:
            sdata = info.get("info_slave_data", {})
            entry["port"] = {k: sdata[k] for k in _SLAVE_DATA_KEYS[slave_kind] if k in sdata}
        links.append(entry)
    return sorted(links, key=lambda e: e["ifname"])


def _is_link_local(addr: str | None) -> bool:
    if not addr or addr == "default":
        return False
    try:
        net = ipaddress.ip_network(addr, strict=False)
    except ValueError:
        return False
    return net.version == 6 and net.subnet_of(ipaddress.ip_network("fe80::/10"))  # type: ignore[arg-type]


def _norm_addrs(addr_data: list[dict[str, Any]], *, link_local: bool) -> list[dict[str, Any]]:
    addrs = []
    for link in addr_data:
        for info in link.get("addr_info", []):
            if not link_local and _is_link_local(info.get("local")):
                continue
            entry = {"ifname": link["ifname"], "family": info.get("family"),
                     "local": info.get("local"), "prefixlen": info.get("prefixlen"),
                     "scope": info.get("scope")}
            if info.get("address"):  # point-to-point peer
                entry["peer"] = info["address"]
            addrs.append(entry)
    return sorted(addrs, key=lambda e: json.dumps(e, sort_keys=True))


_ROUTE_DROP = {"expires", "cacheinfo", "pref"}
_ROUTE_FLAGS_DROP = {"linkdown", "offload", "trap", "rt_offload", "rt_trap"}


def _norm_routes(v4: list[dict[str, Any]], v6: list[dict[str, Any]], *,
                 link_local: bool) -> list[dict[str, Any]]:
    routes = []
    for family, items in (("inet", v4), ("inet6", v6)):
        for route in items:
            if not link_local and _is_link_local(route.get("dst")):
                continue
            entry = {k: v for k, v in route.items() if k not in _ROUTE_DROP}
            entry["family"] = family
            # "linkdown" follows the carrier, not the configuration.
            entry["flags"] = sorted(set(route.get("flags", [])) - _ROUTE_FLAGS_DROP)
            entry.setdefault("table", "main")
            routes.append(entry)
    return sorted(routes, key=lambda e: json.dumps(e, sort_keys=True))


def _strip_handles(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_handles(v) for k, v in value.items() if k != "handle"}
    if isinstance(value, list):
        return [_strip_handles(v) for v in value]
    return value


def _norm_nft(nft: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """nft objects without handles or metainfo. Tables, chains and sets are sorted by name;
    rules keep their order within their chain (it matters) thanks to a stable sort."""
    if nft is None or "nftables" not in nft:
        return nft  # type: ignore[return-value]
    items = [_strip_handles(item) for item in nft["nftables"] if "metainfo" not in item]

    def key(item: dict[str, Any]) -> tuple[str, str, int, str, str]:
        ((kind, body),) = item.items()
        table = body.get("name", "") if kind == "table" else body.get("table", "")
        order = {"table": 0, "rule": 2}.get(kind, 1)
        name = body.get("chain", "") if kind == "rule" else body.get("name", "")
        return (str(body.get("family", "")), str(table), order, kind, str(name))

    return sorted(items, key=key)


__all__ = ["HermeticHost", "HermeticUnavailable", "HttpResult", "Server", "STATE_DIR",
           "REPO_ROOT", "ROOT_NS", "real_host_state"]
