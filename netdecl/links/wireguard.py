"""kind: wireguard: an encrypted layer-3 tunnel (the kernel's WireGuard), its keys kept secret.

The device is made over rtnetlink like any link (IFLA_INFO_KIND "wireguard", no INFO_DATA);
everything of its own (private key, listen port, fwmark, peers) is written and read through
the generic netlink family "wireguard" (WG_CMD_SET_DEVICE / WG_CMD_GET_DEVICE), which the
backend sends in the link's namespace (``configured_by``). Every setting changes in place:
a new key file is a new key on the same device, never a new device.

Secrets. The private key and the preshared keys are read from files the topology names
(``private_key_file``, ``preshared_key_file``), never written in it. What netdecl keeps, plans,
records, journals and shows of them is a fingerprint only:

- of a private key, the public key it makes (X25519, the same one `wg show` prints);
- of a preshared key, ``psk:`` and 8 bytes of a domain-separated SHA-256 of it.

A file is read twice: before a plan (``on_host``: its fingerprint, for the plan to compare
with the kernel's) and when the device is written (``configure``), where a key that no
longer matches the plan's fingerprint is refused rather than written. The kernel returns the
private key to CAP_NET_ADMIN on every read; ``parse_device`` never decodes that attribute and
compares the public key the kernel reports instead. Python cannot wipe an immutable bytes
object; the request carrying keys is a bytearray, zeroed once sent.

Key files are checked as ssh checks a private key: a regular file, owned by root or by the
user running netdecl, not readable or writable by group or others (mode & 0o077 == 0). They are
opened without O_NOFOLLOW on purpose: secret stores (Kubernetes secret volumes, systemd
credentials) hand keys over through symlinks, and every check is made with fstat on the file
descriptor actually opened, so a symlink swapped after a check cannot pass one file's check and
hand over another. O_NONBLOCK keeps a FIFO from stalling the plan; the size is bounded.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import os
import stat
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from netdecl.errors import NetdeclError
from netdecl.exitcodes import ExitStatus
from netdecl.links.base import End, ExportView, FileCheck, GenlChannel, KernelLink, LinkKind
from netdecl.model import Link, LinkSpec
from netdecl.nlattr import attr, attr_u32, each_attr, nested, parse_attrs

NAME = "wireguard"
FAMILY = "wireguard"  # the generic netlink family (linux/wireguard.h)
GENL_VERSION = 1

# include/uapi/linux/wireguard.h
WG_CMD_GET_DEVICE, WG_CMD_SET_DEVICE = 0, 1
WGDEVICE_A_IFINDEX, WGDEVICE_A_PRIVATE_KEY, WGDEVICE_A_PUBLIC_KEY = 1, 3, 4
WGDEVICE_A_FLAGS, WGDEVICE_A_LISTEN_PORT, WGDEVICE_A_FWMARK, WGDEVICE_A_PEERS = 5, 6, 7, 8
WGPEER_A_PUBLIC_KEY, WGPEER_A_PRESHARED_KEY, WGPEER_A_FLAGS, WGPEER_A_ENDPOINT = 1, 2, 3, 4
WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, WGPEER_A_ALLOWEDIPS = 5, 9
WGPEER_F_REMOVE_ME, WGPEER_F_REPLACE_ALLOWEDIPS = 1, 2
WGALLOWEDIP_A_FAMILY, WGALLOWEDIP_A_IPADDR, WGALLOWEDIP_A_CIDR_MASK = 1, 2, 3

KEY_LEN = 32
KEY_FILE_MAX = 256  # a key is 44 characters of base64; anything much longer is not a key
NO_PSK = "none"  # the fingerprint of no preshared key (the kernel reports 32 zero bytes)
_PORT = struct.Struct("!H")
_U16 = struct.Struct("=H")
KEY_PATTERN = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$(?!\\n)"  # 32 bytes in base64
# absolute, no control characters, not ending in a space (which a file name hardly means)
PATH_PATTERN = "^/[^\\x00-\\x1f\\x7f]*[^\\x00-\\x20\\x7f/]$(?!\\n)"


class UnusableKey(NetdeclError):
    """A key file netdecl will not use (missing, not a key, readable by others): bad input,
    found at plan, nothing changed."""

    status = ExitStatus.INVALID_TOPOLOGY


# -- keys --------------------------------------------------------------------------------------


def public_key(private: bytes) -> bytes:
    """X25519(private, 9): the public key of a WireGuard private key, the one `wg show`
    prints. By the `cryptography` package (constant-time, OpenSSL's): key arithmetic is not
    code to hand-write; imported here, so that only a plan with a wireguard link loads it."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = X25519PrivateKey.from_private_bytes(bytes(private))
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def psk_fingerprint(key: bytes) -> str:
    """What plans and records say of a preshared key: 8 bytes of a SHA-256 of it, separated
    from any other use of the hash (a 256-bit random key: no way back from 64 bits of it)."""
    import hashlib  # here, not at import: validate loads every link kind
    if not any(key):
        return NO_PSK
    return "psk:" + hashlib.sha256(b"netdecl wireguard psk\0" + key).hexdigest()[:16]


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def read_key(path: str, what: str) -> bytearray:
    """The 32 bytes of a key file, checked as ssh checks a private key (module docstring).
    Messages name the file and never its content."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise UnusableKey(f"{what} {path}: cannot be read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnusableKey(f"{what} {path}: is not a regular file")
        if info.st_mode & 0o077:
            raise UnusableKey(f"{what} {path}: is accessible by group or others (mode "
                              f"{stat.S_IMODE(info.st_mode):04o}); a key must not be, as ssh "
                              f"demands of a private key: chmod 600 {path}")
        if info.st_uid not in (0, os.geteuid()):
            raise UnusableKey(f"{what} {path}: is owned by uid {info.st_uid}, neither root nor "
                              f"the user running netdecl")
        raw = bytearray(os.read(fd, KEY_FILE_MAX + 1))
    finally:
        os.close(fd)
    try:
        if len(raw) > KEY_FILE_MAX:
            raise UnusableKey(f"{what} {path}: is not a key: longer than {KEY_FILE_MAX} bytes")
        try:
            key = bytearray(base64.b64decode(bytes(raw).strip(), validate=True))
        except (binascii.Error, ValueError):
            raise UnusableKey(f"{what} {path}: is not a key: not base64 (a key is 32 bytes in "
                              "base64, as `wg genkey` writes it)") from None
        if len(key) != KEY_LEN:
            size = len(key)
            key[:] = bytes(size)
            raise UnusableKey(f"{what} {path}: is not a key: {size} bytes, not {KEY_LEN} (a "
                              "key is 32 bytes in base64, as `wg genkey` writes it)")
        return key
    finally:
        raw[:] = bytes(len(raw))


# -- the spec ----------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Peer:
    """One peer. ``preshared_key`` is a fingerprint (psk_fingerprint), None until the file
    is read (before a plan) or when a file is not the source (a record's own)."""

    public_key: str
    allowed_ips: tuple[str, ...] = ()
    endpoint: str | None = None
    persistent_keepalive: int = 0
    preshared_key: str | None = None
    preshared_key_file: str | None = None

    def compared(self) -> tuple[Any, ...]:
        """What the plan compares: not the file, which the kernel cannot know; no endpoint
        declared is any endpoint (the kernel learns one from the peer's packets)."""
        return (self.public_key, self.allowed_ips, self.endpoint or _ANY,
                self.persistent_keepalive, self.preshared_key)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Wireguard(LinkSpec):
    """A WireGuard device. ``public_key`` is the fingerprint of the private key (None: not
    read yet, or no key file: the device's key is left as it is). Every setting changes in
    place."""

    private_key_file: str | None = None
    public_key: str | None = None
    listen_port: int | None = None  # None: the kernel picks one and the plan leaves it
    fwmark: int = 0
    peers: tuple[Peer, ...] = ()

    def flat(self) -> dict[str, Any]:
        return {"public_key": self.public_key, "listen_port": self.listen_port,
                "fwmark": self.fwmark, "peers": _Peers(self.peers)}

    def flat_json(self) -> dict[str, Any]:
        return {"wireguard": {"private_key_file": self.private_key_file,
                              "public_key": self.public_key, "listen_port": self.listen_port,
                              "fwmark": self.fwmark,
                              "peers": [p.to_json() for p in self.peers]}}


class _Any:
    """Equal to anything: a declared peer's endpoint left out."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "any"

    def to_dict(self) -> None:
        """In plan JSON and saved plans (planfile._plain): null, as the file leaves it out."""
        return None


_ANY = _Any()


class _Peers(tuple[Any, ...]):
    """A device's peers as the plan compares and prints them: the key files left out, the
    preshared keys by fingerprint, sorted by public key."""

    __slots__ = ()

    def __new__(cls, peers: Sequence[Peer]) -> _Peers:
        return super().__new__(cls, sorted(p.compared() for p in peers))

    def __str__(self) -> str:
        return "[" + "; ".join(
            f"{key[:8]}... {','.join(ips)}" + (f" at {ep}" if ep and ep is not _ANY else "")
            + (f" keepalive {ka}" if ka else "") + (f" {psk}" if psk and psk != NO_PSK else "")
            for key, ips, ep, ka, psk in self) + "]"

    __repr__ = __str__


# -- the file ----------------------------------------------------------------------------------

def _network(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=True))


def _endpoint(text: str) -> str:
    """``ADDRESS:PORT`` or ``[IPV6]:PORT`` in one spelling (ValueError when it is neither)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("no port 1-65535 after the last colon")
    if host.startswith("[") and host.endswith("]"):
        address = ipaddress.ip_address(host[1:-1])
        if address.version != 6:
            raise ValueError("brackets are for IPv6")
    else:
        address = ipaddress.ip_address(host)
        if address.version != 4:
            raise ValueError("an IPv6 endpoint is written [ADDRESS]:PORT")
    return f"[{address}]:{int(port)}" if address.version == 6 else f"{address}:{int(port)}"


def _peer(entry: Mapping[str, Any]) -> Peer:
    endpoint = entry.get("endpoint")
    return Peer(public_key=entry["public_key"],
                allowed_ips=tuple(sorted({_network(n) for n in entry.get("allowed_ips") or ()})),
                endpoint=_endpoint(endpoint) if endpoint else None,
                persistent_keepalive=int(entry.get("persistent_keepalive", 0)),
                preshared_key=None if entry.get("preshared_key_file") else NO_PSK,
                preshared_key_file=entry.get("preshared_key_file"))


def _path_problem(text: str) -> str | None:
    if not text.startswith("/"):
        return "must be an absolute path"
    if any(part in (".", "..") for part in text.split("/")):
        return "must not hold . or .. (name the file itself)"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "must not hold control characters"
    return None


_PEER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["public_key"],
    "properties": {
        "public_key": {"type": "string", "pattern": KEY_PATTERN,
                       "description": "The peer's public key, 32 bytes in base64 (`wg pubkey`)."},
        "preshared_key_file": {"type": "string", "pattern": PATH_PATTERN,
                               "description": "A file holding a preshared key shared with this "
                               "peer (`wg genpsk`), mode 0600: read at plan, never shown."},
        "endpoint": {"type": "string", "description": "Where the peer is reached: ADDRESS:PORT "
                     "or [IPV6]:PORT. Left out: the peer's last address, once it has sent."},
        "allowed_ips": {"type": "array", "items": {"type": "string"},
                        "description": "The networks routed to this peer and accepted from "
                        "it (its cryptokey routing); each given to one peer only."},
        "persistent_keepalive": {"type": "integer", "minimum": 0, "maximum": 65535,
                                 "default": 0, "description": "Seconds between keepalives "
                                 "(through NAT); 0: none."},
    },
}


class WireguardKind(LinkKind):
    name: ClassVar[str] = NAME
    module: ClassVar[str | None] = "wireguard"
    configured_by: ClassVar[str | None] = FAMILY
    settings_key: ClassVar[str | None] = "wireguard"
    settings_required: ClassVar[bool] = True
    settings_hint: ClassVar[str] = ("a wireguard link needs wireguard: {private_key_file: "
                                    "..., peers: [...]}")
    settings_schema: ClassVar[dict[str, Any]] = {"$ref": "#/$defs/wireguard"}
    schema_defs: ClassVar[dict[str, Any]] = {"wireguard": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "private_key_file": {"type": "string", "pattern": PATH_PATTERN,
                                 "description": "A file holding the device's private key "
                                 "(`wg genkey`), mode 0600, owned by root: read at plan and "
                                 "apply, never shown (plans show the public key). Left out: "
                                 "the device's key is left as it is."},
            "listen_port": {"type": "integer", "minimum": 1, "maximum": 65535,
                            "description": "The UDP port it listens on. Left out: one the "
                            "kernel picks."},
            "fwmark": {"type": "integer", "minimum": 0, "maximum": 4294967295, "default": 0,
                       "description": "The mark of its own encrypted packets (policy routing "
                       "keeps them off the tunnel); 0: none."},
            "peers": {"type": "array", "items": _PEER_SCHEMA,
                      "description": "Every peer (the complete set: others are removed)."},
        },
    }}

    # -- the file -------------------------------------------------------------------------
    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        wg = ends[0].entry["wireguard"]
        port = wg.get("listen_port")
        return [Wireguard(private_key_file=wg.get("private_key_file"),
                          listen_port=int(port) if port is not None else None,
                          fwmark=int(wg.get("fwmark", 0)),
                          peers=tuple(sorted(_peer(p) for p in wg.get("peers") or ())))]

    def check(self, ctx: FileCheck, ends: Sequence[End]) -> None:
        ports: dict[tuple[str, int], str] = {}
        for end in ends:
            wg = end.entry.get("wireguard")
            if not isinstance(wg, dict):
                continue
            path = (*end.path, "wireguard")
            key_file = wg.get("private_key_file")
            if isinstance(key_file, str) and (problem := _path_problem(key_file)):
                ctx.error((*path, "private_key_file"), f"private_key_file {problem}")
            port = wg.get("listen_port")
            if isinstance(port, int) and not isinstance(port, bool):
                other = ports.setdefault((end.namespace, port), end.name)
                if other != end.name:
                    ctx.error((*path, "listen_port"), f"listen_port {port} is already "
                              f"{ctx.quoted(other)}'s in this namespace")
            peers = wg.get("peers")
            self._check_peers(ctx, (*path, "peers"), peers if isinstance(peers, list) else [])

    def _check_peers(self, ctx: FileCheck, path: tuple[Any, ...], peers: list[Any]) -> None:
        keys: dict[str, int] = {}
        given: dict[str, int] = {}  # network -> the peer it is routed to
        for i, peer in enumerate(peers):
            if not isinstance(peer, dict):
                continue
            at = (*path, i)
            key = peer.get("public_key")
            if isinstance(key, str):
                first = keys.setdefault(key, i)
                if first != i:
                    ctx.error((*at, "public_key"), f"peer {i + 1} has the public key of peer "
                              f"{first + 1}: each peer once")
            psk = peer.get("preshared_key_file")
            if isinstance(psk, str) and (problem := _path_problem(psk)):
                ctx.error((*at, "preshared_key_file"), f"preshared_key_file {problem}")
            endpoint = peer.get("endpoint")
            if isinstance(endpoint, str):
                try:
                    _endpoint(endpoint)
                except ValueError as exc:
                    ctx.error((*at, "endpoint"), f"endpoint {ctx.quoted(endpoint)} is not "
                              f"ADDRESS:PORT or [IPV6]:PORT ({exc})")
            ips = peer.get("allowed_ips")
            if not ips:
                ctx.error(at if ips is None else (*at, "allowed_ips"),
                          f"peer {i + 1} has no allowed_ips: WireGuard would send it nothing "
                          "and accept nothing from it")
                continue
            if not isinstance(ips, list):
                continue
            for j, text in enumerate(ips):
                if not isinstance(text, str):
                    continue
                try:
                    network = _network(text)
                except ValueError as exc:
                    ctx.error((*at, "allowed_ips", j), f"allowed IP range "
                              f"{ctx.quoted(text)} is not a network: {exc}")
                    continue
                owner = given.setdefault(network, i)
                if owner != i:
                    ctx.error((*at, "allowed_ips", j), f"allowed IP range {network} is given "
                              f"to peer {owner + 1} too: a range routes to one peer only")

    def exportable(self, link: Link, view: ExportView) -> bool:
        return isinstance(link.spec, Wireguard)

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        spec = link.spec
        assert isinstance(spec, Wireguard)
        out: dict[str, Any] = {}
        if spec.private_key_file:
            out["private_key_file"] = spec.private_key_file
        elif spec.public_key:
            view.note(f"{link.name}: its private key (public key {spec.public_key}) is not "
                      "written: netdecl never reads keys out; add private_key_file")
        if spec.listen_port is not None:
            out["listen_port"] = spec.listen_port
        if spec.fwmark:
            out["fwmark"] = spec.fwmark
        peers = []
        for peer in spec.peers:
            entry: dict[str, Any] = {"public_key": peer.public_key}
            if peer.preshared_key_file:
                entry["preshared_key_file"] = peer.preshared_key_file
            elif peer.preshared_key not in (None, NO_PSK):
                view.note(f"{link.name}: peer {peer.public_key} has a preshared key "
                          f"({peer.preshared_key}), not written: add preshared_key_file")
            if peer.endpoint:
                entry["endpoint"] = peer.endpoint
            entry["allowed_ips"] = list(peer.allowed_ips)
            if peer.persistent_keepalive:
                entry["persistent_keepalive"] = peer.persistent_keepalive
            peers.append(entry)
        out["peers"] = peers
        return {"wireguard": out}

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        wg = data.get("wireguard")
        if not isinstance(wg, Mapping):
            return None
        return Wireguard(
            private_key_file=wg.get("private_key_file"), public_key=wg.get("public_key"),
            listen_port=wg.get("listen_port"), fwmark=wg.get("fwmark") or 0,
            peers=tuple(Peer(**{**p, "allowed_ips": tuple(p.get("allowed_ips") or ())})
                        for p in wg.get("peers") or ()))

    # -- the host, before a plan -----------------------------------------------------------
    def on_host(self, link: Link) -> Link:
        """``link`` with the fingerprints of the keys its files hold (UnusableKey when a
        file will not do): what the plan compares with the kernel's."""
        spec = link.spec
        if not isinstance(spec, Wireguard):
            return link
        where = link.describe()
        public = spec.public_key
        if spec.private_key_file:
            key = read_key(spec.private_key_file, f"{where}: private_key_file")
            try:
                public = b64(public_key(bytes(key)))
            finally:
                key[:] = bytes(KEY_LEN)
        peers = []
        for peer in spec.peers:
            if peer.preshared_key_file:
                psk = read_key(peer.preshared_key_file,
                               f"{where}: peer {peer.public_key}: preshared_key_file")
                try:
                    peer = dataclasses.replace(peer, preshared_key=psk_fingerprint(bytes(psk)))
                finally:
                    psk[:] = bytes(KEY_LEN)
            peers.append(peer)
        return dataclasses.replace(link, spec=dataclasses.replace(
            spec, public_key=public, peers=tuple(peers)))

    # -- the kernel -------------------------------------------------------------------------
    def configure(self, link: Link, index: int, channel: GenlChannel) -> None:
        """Write the device's settings through generic netlink: the private key (when a file
        names it; refused when it no longer matches the plan's fingerprint), port, fwmark and
        the complete set of peers (those not declared removed, each peer's allowed IPs
        replaced), without dropping the sessions of peers that stay."""
        spec = link.spec
        assert isinstance(spec, Wireguard)
        where = link.describe()
        now = channel.request(FAMILY, WG_CMD_GET_DEVICE, attr_u32(WGDEVICE_A_IFINDEX, index),
                              dump=True)
        current = parse_device(now)
        request = bytearray(attr_u32(WGDEVICE_A_IFINDEX, index))
        try:
            if not spec.private_key_file and spec.public_key is not None and \
                    spec.public_key != current.public_key:
                # a rollback toward a device as it was read: netdecl never keeps a private key
                raise UnusableKey(f"{where}: its private key (public key {spec.public_key}) "
                                  "cannot be put back: netdecl never keeps private keys; "
                                  "apply a topology naming its key file")
            if spec.private_key_file:
                key = read_key(spec.private_key_file, f"{where}: private_key_file")
                try:
                    made = b64(public_key(bytes(key)))
                    if spec.public_key is not None and made != spec.public_key:
                        raise UnusableKey(f"{where}: private_key_file {spec.private_key_file} "
                                          f"changed since the plan (its public key is {made}, "
                                          f"the plan's {spec.public_key}): plan again")
                    request += attr(WGDEVICE_A_PRIVATE_KEY, bytes(key))
                finally:
                    key[:] = bytes(KEY_LEN)
            if spec.listen_port is not None:
                request += attr(WGDEVICE_A_LISTEN_PORT, _U16.pack(spec.listen_port))
            request += attr_u32(WGDEVICE_A_FWMARK, spec.fwmark)
            peers = bytearray()
            wanted = {p.public_key for p in spec.peers}
            for number, gone in enumerate(p for p in current.peers
                                          if p.public_key not in wanted):
                peers += nested(number, attr(WGPEER_A_PUBLIC_KEY,
                                             base64.b64decode(gone.public_key)),
                                attr_u32(WGPEER_A_FLAGS, WGPEER_F_REMOVE_ME))
            for number, peer in enumerate(spec.peers, start=len(current.peers)):
                peers += self._peer_request(number, peer, where)
            request += nested(WGDEVICE_A_PEERS, bytes(peers))
            peers[:] = bytes(len(peers))
            channel.request(FAMILY, WG_CMD_SET_DEVICE, request)
        finally:
            request[:] = bytes(len(request))

    def _peer_request(self, number: int, peer: Peer, where: str) -> bytes:
        parts = [attr(WGPEER_A_PUBLIC_KEY, base64.b64decode(peer.public_key)),
                 attr_u32(WGPEER_A_FLAGS, WGPEER_F_REPLACE_ALLOWEDIPS),
                 attr(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
                      _U16.pack(peer.persistent_keepalive))]
        if peer.preshared_key_file:
            psk = read_key(peer.preshared_key_file,
                           f"{where}: peer {peer.public_key}: preshared_key_file")
            try:
                if peer.preshared_key is not None and \
                        psk_fingerprint(bytes(psk)) != peer.preshared_key:
                    raise UnusableKey(f"{where}: peer {peer.public_key}: preshared_key_file "
                                      f"{peer.preshared_key_file} changed since the plan: "
                                      "plan again")
                parts.append(attr(WGPEER_A_PRESHARED_KEY, bytes(psk)))
            finally:
                psk[:] = bytes(KEY_LEN)
        else:  # none declared: none (all zeros is the kernel's "no preshared key")
            parts.append(attr(WGPEER_A_PRESHARED_KEY, bytes(KEY_LEN)))
        if peer.endpoint:
            parts.append(attr(WGPEER_A_ENDPOINT, _endpoint_bytes(peer.endpoint)))
        ips = b"".join(nested(j, *_allowed_ip(network))
                       for j, network in enumerate(peer.allowed_ips))
        parts.append(nested(WGPEER_A_ALLOWEDIPS, ips))
        return nested(number, *parts)

    def read(self, link: KernelLink, index: int, channel: GenlChannel) -> LinkSpec | None:
        return parse_device(channel.request(FAMILY, WG_CMD_GET_DEVICE,
                                            attr_u32(WGDEVICE_A_IFINDEX, index), dump=True))

    # -- drawing ----------------------------------------------------------------------------
    def label(self, link: Link) -> str:
        spec = link.spec
        if not isinstance(spec, Wireguard):
            return NAME
        port = f" port {spec.listen_port}" if spec.listen_port else ""
        return f"wireguard{port}, {len(spec.peers)} peer{'s' if len(spec.peers) != 1 else ''}"

    def crossing(self, link: Link) -> str:
        return "WireGuard tunnel (encrypted, over UDP)"


def _endpoint_bytes(endpoint: str) -> bytes:
    import socket  # here, not at import: validate loads every link kind
    host, _, port = endpoint.rpartition(":")
    address = ipaddress.ip_address(host.strip("[]"))
    if address.version == 4:
        return struct.pack("=H", socket.AF_INET) + _PORT.pack(int(port)) + \
            address.packed + bytes(8)
    return struct.pack("=H", socket.AF_INET6) + _PORT.pack(int(port)) + bytes(4) + \
        address.packed + bytes(4)


def _endpoint_text(raw: bytes) -> str | None:
    import socket  # here, not at import: validate loads every link kind
    if len(raw) < 4:
        return None
    family = _U16.unpack_from(raw)[0]
    port = _PORT.unpack_from(raw, 2)[0]
    if family == socket.AF_INET and len(raw) >= 8:
        return f"{ipaddress.IPv4Address(raw[4:8])}:{port}"
    if family == socket.AF_INET6 and len(raw) >= 24:
        return f"[{ipaddress.IPv6Address(raw[8:24])}]:{port}"
    return None


def _allowed_ip(network: str) -> tuple[bytes, ...]:
    import socket  # here, not at import: validate loads every link kind
    net = ipaddress.ip_network(network)
    family = socket.AF_INET if net.version == 4 else socket.AF_INET6
    return (attr(WGALLOWEDIP_A_FAMILY, _U16.pack(family)),
            attr(WGALLOWEDIP_A_IPADDR, net.network_address.packed),
            attr(WGALLOWEDIP_A_CIDR_MASK, bytes([net.prefixlen])))


def parse_device(answers: Sequence[bytes]) -> Wireguard:
    """A device from the parts of a WG_CMD_GET_DEVICE dump (a device with many peers comes
    in several, each peer possibly continued in the next). The private key attribute is
    never decoded: the public key the kernel reports is its fingerprint; a preshared key is
    turned into its fingerprint at once."""
    public = port = None
    fwmark = 0
    peers: dict[str, dict[str, Any]] = {}
    for answer in answers:
        attrs = parse_attrs(answer)
        if WGDEVICE_A_PUBLIC_KEY in attrs and any(attrs[WGDEVICE_A_PUBLIC_KEY]):
            public = b64(attrs[WGDEVICE_A_PUBLIC_KEY])
        if WGDEVICE_A_LISTEN_PORT in attrs:
            port = _U16.unpack_from(attrs[WGDEVICE_A_LISTEN_PORT])[0] or None
        if WGDEVICE_A_FWMARK in attrs:
            fwmark = struct.unpack_from("=I", attrs[WGDEVICE_A_FWMARK])[0]
        for _, raw in each_attr(attrs.get(WGDEVICE_A_PEERS, b"")):
            peer_attrs = parse_attrs(raw)
            key = peer_attrs.get(WGPEER_A_PUBLIC_KEY)
            if not key:
                continue
            peer = peers.setdefault(b64(key), {"ips": set(), "psk": NO_PSK, "endpoint": None,
                                               "keepalive": 0})
            if WGPEER_A_PRESHARED_KEY in peer_attrs:
                peer["psk"] = psk_fingerprint(peer_attrs[WGPEER_A_PRESHARED_KEY])
            if WGPEER_A_ENDPOINT in peer_attrs:
                peer["endpoint"] = _endpoint_text(peer_attrs[WGPEER_A_ENDPOINT])
            if WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL in peer_attrs:
                peer["keepalive"] = _U16.unpack_from(
                    peer_attrs[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL])[0]
            for _, ip_raw in each_attr(peer_attrs.get(WGPEER_A_ALLOWEDIPS, b"")):
                ip = parse_attrs(ip_raw)
                address, mask = ip.get(WGALLOWEDIP_A_IPADDR), ip.get(WGALLOWEDIP_A_CIDR_MASK)
                if address and mask:
                    peer["ips"].add(str(ipaddress.ip_network(
                        (ipaddress.ip_address(address), mask[0]), strict=False)))
    return Wireguard(public_key=public, listen_port=port, fwmark=fwmark, peers=tuple(sorted(
        Peer(public_key=key, allowed_ips=tuple(sorted(p["ips"])), endpoint=p["endpoint"],
             persistent_keepalive=p["keepalive"], preshared_key=p["psk"])
        for key, p in peers.items())))


KIND = WireguardKind()
