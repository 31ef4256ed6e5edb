"""kind: wireguard without a kernel: the file's checks, the key files, the plan (a new key is a
change in place), secrecy in every output, show, and the generic netlink codec.

The kernel side is tests/test_lab_wireguard.py (a kernel with WireGuard, under qemu)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fakehost import FakeHost

from netdecl.cli import main
from netdecl.engine import service
from netdecl.engine.planner.plan import Op
from netdecl.engine.state import planfile
from netdecl.links import wireguard as wgmod
from netdecl.links.wireguard import (
    KIND,
    NO_PSK,
    Peer,
    UnusableKey,
    Wireguard,
    b64,
    parse_device,
    psk_fingerprint,
    public_key,
)
from netdecl.model import ROOT, Link, Topology
from netdecl.nlattr import attr, attr_u32, each_attr, nested, parse_attrs
from netdecl.tools.render import plan_json, plan_text
from netdecl.topology.export import to_yaml
from netdecl.topology.loader import load_topology, load_topology_text

PEER = b64(public_key(bytes(range(32))))


def test_public_key_is_x25519_as_rfc_7748_says():
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    assert public_key(alice).hex() == \
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"


def test_public_key_agrees_with_wg_pubkey():
    wg = "/usr/bin/wg"
    if not os.path.exists(wg):
        pytest.skip("no wg(8) to compare with")
    private = b64(os.urandom(32))
    made = subprocess.run([wg, "pubkey"], input=private + "\n", capture_output=True,
                          text=True, check=True).stdout.strip()
    assert made == b64(public_key(base64.b64decode(private)))


def key_file(path: Path, key: bytes | None = None, mode: int = 0o600) -> bytes:
    key = key if key is not None else os.urandom(32)
    path.write_text(b64(key) + "\n")
    path.chmod(mode)
    return key


def topology_text(key: Path, psk: Path | None = None, port: int = 51820) -> str:
    psk_line = f"          preshared_key_file: {psk}\n" if psk else ""
    return ("version: 1\nname: wgt\nlinks:\n"
            "  - name: wg0\n    kind: wireguard\n    addresses: [10.9.0.1/24]\n"
            "    wireguard:\n"
            f"      private_key_file: {key}\n      listen_port: {port}\n      peers:\n"
            f"        - public_key: {PEER}\n{psk_line}"
            "          endpoint: 192.0.2.2:51820\n"
            "          allowed_ips: [10.9.0.2/32, 10.20.0.0/16]\n"
            "          persistent_keepalive: 25\n")


def load(tmp_path: Path, text: str) -> Topology:
    path = tmp_path / "wg.yaml"
    path.write_text(text)
    return load_topology(str(path))


# -- the file --------------------------------------------------------------------------------

def validate(tmp_path: Path, capsys, text: str) -> tuple[int, str]:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code = main(["validate", str(path)])
    return code, capsys.readouterr().err


BAD_PEERS = """version: 1
name: bad
links:
  - name: wg0
    kind: wireguard
    wireguard:
      private_key_file: keys/wg0
      listen_port: 51820
      peers:
        - public_key: {a}
          allowed_ips: [10.9.0.2/32]
        - public_key: {b}
          allowed_ips: [10.9.0.3/32, 10.9.0.2/32]
        - public_key: {c}
        - public_key: {c}
          endpoint: 192.0.2.1
          allowed_ips: []
  - name: wg1
    kind: wireguard
    wireguard:
      listen_port: 51820
      peers: []
"""


def test_bad_peers_and_paths_are_file_line_col_at_validate(tmp_path, capsys):
    keys = [b64(public_key(bytes([n]) * 32)) for n in (1, 2, 3)]
    code, err = validate(tmp_path, capsys, BAD_PEERS.format(a=keys[0], b=keys[1], c=keys[2]))
    assert code == 3
    lines = err.strip().splitlines()
    expected = [
        ":7:25: private_key_file must be an absolute path",
        ":13:38: allowed IP range 10.9.0.2/32 is given to peer 1 too",
        ":14:11: peer 3 has no allowed_ips",
        ":15:23: peer 4 has the public key of peer 3",
        ":16:21: endpoint '192.0.2.1' is not ADDRESS:PORT",
        ":17:24: peer 4 has no allowed_ips",
        ":21:20: listen_port 51820 is already 'wg0''s in this namespace",
    ]
    for want in expected:
        assert any(want in line for line in lines), (want, err)
    assert lines[-1].endswith("nothing was changed")


def test_a_public_key_that_is_not_32_bytes_of_base64_is_refused_by_the_schema(tmp_path, capsys):
    text = BAD_PEERS.split("        - public_key: {b}")[0].format(a="AAAA") + \
        "  - {name: x, kind: dummy}\n"
    code, err = validate(tmp_path, capsys, text)
    assert code == 3 and ":10:" in err and "public_key" in err


# -- key files, at plan ----------------------------------------------------------------------

@pytest.mark.parametrize(("content", "mode", "message"), [
    (None, 0o600, "cannot be read: No such file or directory"),
    (b"not base64 at all!\n", 0o600, "is not a key: not base64"),
    (base64.b64encode(b"x" * 16) + b"\n", 0o600, "is not a key: 16 bytes, not 32"),
    (b"A" * 300, 0o600, "is not a key: longer than 256 bytes"),
    (None, 0o644, "is accessible by group or others (mode 0644)"),
    (None, 0o640, "is accessible by group or others (mode 0640)"),
])
def test_a_key_file_that_will_not_do_is_one_line_at_plan_and_nothing_changes(
        tmp_path, content, mode, message):
    key = tmp_path / "wg0.key"
    if mode != 0o600:
        key_file(key, mode=mode)
    elif content is not None:
        key.write_bytes(content)
        key.chmod(mode)
    topo = load(tmp_path, topology_text(key))
    host = FakeHost()
    before = host.state()
    with pytest.raises(UnusableKey) as caught:
        service.apply(topo, tmp_path / "state", host=host)
    text = str(caught.value)
    assert text.startswith(f"link wg0: private_key_file {key}: ") and message in text
    assert "\n" not in text and caught.value.status == 3
    assert host.state() == before
    if mode != 0o600:  # the key itself is never in the message
        assert key.read_text().strip() not in text


def test_a_key_file_that_is_a_directory_or_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    for path in (tmp_path, fifo):
        with pytest.raises(UnusableKey, match="is not a regular file"):
            wgmod.read_key(str(path), "key")


def test_a_symlink_to_a_good_key_is_followed_and_its_target_checked(tmp_path):
    target = tmp_path / "real"
    key = key_file(target)
    (tmp_path / "link").symlink_to(target)
    assert bytes(wgmod.read_key(str(tmp_path / "link"), "key")) == key
    target.chmod(0o644)  # the check is of the file opened, not of the link
    with pytest.raises(UnusableKey, match="mode 0644"):
        wgmod.read_key(str(tmp_path / "link"), "key")


# -- plan, apply, secrecy ----------------------------------------------------------------------

def secrets_of(*keys: bytes) -> list[bytes]:
    """Every spelling of the keys that must never be written: raw, base64, hex."""
    out = []
    for key in keys:
        out += [key, b64(key).encode(), key.hex().encode(), b64(key).rstrip("=").encode()]
    return out


def assert_secret_free(where: str, data: bytes | str, keys: list[bytes]) -> None:
    raw = data.encode() if isinstance(data, str) else data
    for secret in keys:
        assert secret not in raw, f"a key is in {where}"


def test_plan_apply_record_journal_saved_plan_and_show_hold_no_key(tmp_path, capsys):
    key_path, psk_path = tmp_path / "wg0.key", tmp_path / "peer.psk"
    private, psk = key_file(key_path), key_file(psk_path)
    keys = secrets_of(private, psk)
    topo = load(tmp_path, topology_text(key_path, psk_path))
    state = tmp_path / "state"
    host = FakeHost()

    plan = service.plan(topo, state, host=host)
    assert [(a.op, a.key) for a in plan.actions][:1] == [(Op.CREATE, ("link", ROOT, "wg0"))]
    link = plan.actions[0].after
    assert isinstance(link, Link) and isinstance(link.spec, Wireguard)
    assert link.spec.public_key == b64(public_key(private))
    assert link.spec.peers[0].preshared_key == psk_fingerprint(psk)
    assert_secret_free("plan text", plan_text(plan), keys)
    assert_secret_free("plan JSON", plan_json(plan), keys)
    saved = tmp_path / "saved.plan"
    planfile.save(saved, plan, str(tmp_path / "wg.yaml"), topology_text(key_path, psk_path))
    assert_secret_free("the saved plan", saved.read_bytes(), keys)

    seen: dict[str, bytes] = {}

    def snapshot_state() -> None:  # mid-apply: the journal exists
        seen.update({str(p): p.read_bytes() for p in state.rglob("*") if p.is_file()})

    host.race(2, snapshot_state)
    result = service.apply(topo, state, host=host)
    assert result.executed
    assert any("journal" in name for name in seen), seen.keys()
    for name, data in seen.items():
        assert_secret_free(name, data, keys)
    for p in state.rglob("*"):
        if p.is_file():
            assert_secret_free(str(p), p.read_bytes(), keys)
    assert service.plan(topo, state, host=host).actions == []

    shown = to_yaml(Topology("wgt", objects=dict(host.objects)), "wgt")
    assert_secret_free("show", shown, keys)
    assert f"private_key_file: {key_path}" in shown
    capsys.readouterr()


def test_a_new_key_in_the_same_file_is_a_change_in_place(tmp_path):
    key_path = tmp_path / "wg0.key"
    key_file(key_path)
    state = tmp_path / "state"
    host = FakeHost()
    service.apply(load(tmp_path, topology_text(key_path)), state, host=host)
    index = host.objects[("link", ROOT, "wg0")].ifindex
    new = key_file(key_path)
    topo = load(tmp_path, topology_text(key_path))
    plan = service.plan(topo, state, host=host)
    assert [(a.op, sorted(a.changes)) for a in plan.actions] == [(Op.MODIFY, ["public_key"])]
    assert plan.actions[0].changes["public_key"][1] == b64(public_key(new))
    assert_secret_free("plan", plan_text(plan) + plan_json(plan), secrets_of(new))
    service.apply(topo, state, host=host)
    assert host.objects[("link", ROOT, "wg0")].ifindex == index
    # a new port and a peer's new ranges: in place too
    plan = service.plan(load(tmp_path, topology_text(key_path, port=51821).replace(
        "10.20.0.0/16", "10.21.0.0/16")), state, host=host)
    assert [(a.op, sorted(a.changes)) for a in plan.actions] == \
        [(Op.MODIFY, ["listen_port", "peers"])]


def test_a_rollback_puts_the_device_back_exactly(tmp_path):
    key_path = tmp_path / "wg0.key"
    key_file(key_path)
    state = tmp_path / "state"
    host = FakeHost()
    service.apply(load(tmp_path, topology_text(key_path)), state, host=host)
    before = host.state()
    changed = load(tmp_path, topology_text(key_path, port=51999).replace(
        "persistent_keepalive: 25", "persistent_keepalive: 5") +
        "  - {name: later, kind: dummy}\n")
    host.arm(2)  # the dummy's creation fails after the device changed
    with pytest.raises(Exception, match="rolled back"):
        service.apply(changed, state, host=host)
    assert host.state() == before


# -- show, the record, the kernel's answers -----------------------------------------------------

def device_answer(private: bytes, psk: bytes, port: int = 51820) -> bytes:
    ips = nested(0, attr(1, (2).to_bytes(2, sys.byteorder)), attr(2, bytes([10, 9, 0, 2])),
                 attr(3, bytes([32])))
    peer = nested(0, attr(1, base64.b64decode(PEER)), attr(2, psk),
                  attr(4, (2).to_bytes(2, sys.byteorder) + (51820).to_bytes(2, "big")
                       + bytes([192, 0, 2, 2]) + bytes(8)),
                  attr(5, (25).to_bytes(2, sys.byteorder)), nested(9, ips))
    return (attr_u32(1, 7) + attr(3, private) + attr(4, public_key(private))
            + attr(6, port.to_bytes(2, sys.byteorder)) + attr_u32(7, 0) + nested(8, peer))


def test_the_kernels_answer_is_read_without_its_private_key():
    private, psk = os.urandom(32), os.urandom(32)
    spec = parse_device([device_answer(private, psk)])
    assert spec.public_key == b64(public_key(private)) and spec.listen_port == 51820
    [peer] = spec.peers
    assert peer.allowed_ips == ("10.9.0.2/32",) and peer.endpoint == "192.0.2.2:51820"
    assert peer.persistent_keepalive == 25 and peer.preshared_key == psk_fingerprint(psk)
    link = Link(ROOT, "wg0", "wireguard", spec=spec)
    kept = repr(link) + json.dumps(link.to_dict()) + str(spec.flat())
    assert_secret_free("the observed link", kept, secrets_of(private, psk))
    assert parse_device([device_answer(private, bytes(32))]).peers[0].preshared_key == NO_PSK


def test_show_of_a_device_netdecl_did_not_make_names_what_it_cannot_write(tmp_path):
    private, psk = os.urandom(32), os.urandom(32)
    observed = Topology("seen")
    observed.add(Link(ROOT, "wg9", "wireguard", spec=parse_device([device_answer(private, psk)])))
    shown = to_yaml(observed, "seen")
    assert_secret_free("show", shown, secrets_of(private, psk))
    assert "add private_key_file" in shown and "add preshared_key_file" in shown
    again = load_topology_text(shown)  # it loads again: a device whose key is left alone
    spec = again.objects[("link", ROOT, "wg9")].spec
    assert isinstance(spec, Wireguard) and spec.private_key_file is None
    assert spec.peers[0].allowed_ips == ("10.9.0.2/32",)
    assert yaml.safe_load(shown)["links"][0]["wireguard"]["listen_port"] == 51820


def test_the_record_form_round_trips():
    spec = parse_device([device_answer(os.urandom(32), os.urandom(32))])
    link = Link(ROOT, "wg0", "wireguard", spec=spec)
    assert KIND.spec_from_record(json.loads(json.dumps(link.to_dict()))) == spec


class Channel:
    """A generic netlink channel that answers the device's read and keeps what was sent."""

    def __init__(self, answer: bytes):
        self.answer = answer
        self.sent: list[bytes] = []

    def request(self, family, command, attrs, dump=False):
        assert family == "wireguard"
        self.sent.append(bytes(attrs))
        return [self.answer] if dump else []


def test_configure_sends_the_key_removes_other_peers_and_keeps_declared_ones(tmp_path):
    key_path = tmp_path / "wg0.key"
    private = key_file(key_path)
    topo = load(tmp_path, topology_text(key_path))
    link = KIND.on_host(topo.objects[("link", ROOT, "wg0")])
    stranger = os.urandom(32)
    answer = device_answer(os.urandom(32), bytes(32)).replace(
        base64.b64decode(PEER), public_key(stranger))
    channel = Channel(answer)
    KIND.configure(link, 7, channel)
    get, put = channel.sent
    assert parse_attrs(get) == {1: (7).to_bytes(4, sys.byteorder)}
    device = parse_attrs(put)
    assert device[3] == private and device[6] == (51820).to_bytes(2, sys.byteorder)
    peers = [parse_attrs(raw) for _, raw in each_attr(device[8])]
    assert [p[1] for p in peers] == [public_key(stranger), base64.b64decode(PEER)]
    assert int.from_bytes(peers[0][3], sys.byteorder) == 1  # WGPEER_F_REMOVE_ME
    assert int.from_bytes(peers[1][3], sys.byteorder) == 2  # WGPEER_F_REPLACE_ALLOWEDIPS

    key_file(key_path)  # changed since the plan: refused, nothing sent
    channel = Channel(answer)
    with pytest.raises(UnusableKey, match="changed since the plan"):
        KIND.configure(link, 7, channel)
    assert len(channel.sent) == 1


def test_a_peer_without_endpoint_plans_saves_and_applies_from_a_saved_plan(tmp_path):
    key_path = tmp_path / "wg0.key"
    key_file(key_path)
    text = topology_text(key_path).replace("          endpoint: 192.0.2.2:51820\n", "")
    topo = load(tmp_path, text)
    state, host = tmp_path / "state", FakeHost()
    plan = service.plan(topo, state, host=host)
    assert json.loads(plan_json(plan))
    saved = tmp_path / "saved.plan"
    planfile.save(saved, plan, str(tmp_path / "wg.yaml"), text)
    loaded = service.load_saved_plan(str(saved))
    assert loaded is not None
    service.apply(loaded[1], state, saved=loaded[0], host=host)
    # the kernel learns an endpoint from the peer: no endpoint declared is any endpoint
    now = host.objects[("link", ROOT, "wg0")]
    spec = now.spec
    assert isinstance(spec, Wireguard)
    learnt = spec.peers[0].__class__(**{**spec.peers[0].__dict__, "endpoint": "192.0.2.9:4000"})
    host.objects[now.key] = Link(**{**now.__dict__, "spec": Wireguard(
        **{**spec.__dict__, "peers": (learnt,)})})
    assert service.plan(topo, state, host=host).actions == []


def test_adopt_takes_over_a_matching_device_netdecl_did_not_make(tmp_path):
    key_path = tmp_path / "wg0.key"
    private = key_file(key_path)
    topo = load(tmp_path, topology_text(key_path))
    declared = KIND.on_host(topo.objects[("link", ROOT, "wg0")])
    assert isinstance(declared.spec, Wireguard)
    # as the kernel reports it: no key file, the public key its private key makes
    seen = Wireguard(public_key=b64(public_key(private)), listen_port=51820,
                     peers=tuple(Peer(**{**p.__dict__, "preshared_key_file": None})
                                 for p in declared.spec.peers))
    host = FakeHost()
    host.add_foreign(Link(ROOT, "wg0", "wireguard", spec=seen))
    plan = service.plan(topo, tmp_path / "state", host=host, adopt=True)
    assert (Op.ADOPT, ("link", ROOT, "wg0")) in [(a.op, a.key) for a in plan.actions]
    assert not [a for a in plan.actions if a.key == ("link", ROOT, "wg0") and a.op != Op.ADOPT]
