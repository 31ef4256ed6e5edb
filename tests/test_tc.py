"""Traffic control without root: the units, the kernel's bytes both ways, the file's errors at
their FILE:LINE:COL, and the engine on the in-memory host (changes in place, the qdisc from
before put back by destroy and by the rollback of a failure at every step, a missing kind
refused at plan)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
from fakehost import FakeHost

from netdecl.engine import service
from netdecl.engine.planner.plan import Op
from netdecl.engine.state.record import OwnershipRecord, validated
from netdecl.engine.state.untrusted import Untrusted
from netdecl.errors import ApplyFailed, InvalidTopology
from netdecl.links.ifb import ifb_for
from netdecl.model import EGRESS, INGRESS, ROOT, Link, Qdisc, QdiscStage
from netdecl.tc import ingress, qdiscs, units
from netdecl.topology.loader import load_topology_text


@pytest.fixture(autouse=True)
def _no_nft_needed(monkeypatch):
    monkeypatch.setattr("netdecl.backends.nftables.find_nft", lambda: "/usr/sbin/nft")


# -- units ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "want"), [
    ("40ms", 40_000_000), ("5ms", 5_000_000), ("100us", 100_000), ("1s", 10**9),
    ("1.5ms", 1_500_000)])
def test_times_are_read_as_tc_writes_them(text, want):
    assert units.time_ns(text) == want


@pytest.mark.parametrize(("text", "want"), [
    ("20mbit", 2_500_000), ("1gbit", 125_000_000), ("125kbps", 125_000),
    (8_000_000, 1_000_000), ("8000000", 1_000_000)])  # bare: bits per second, as CNI
def test_rates_are_bytes_per_second(text, want):
    assert units.rate_bytes(text) == want


@pytest.mark.parametrize(("text", "want"), [
    ("64kb", 65_536), ("1mb", 1 << 20), ("1500b", 1500), (131_072, 16_384)])  # bare: bits
def test_sizes_are_bytes(text, want):
    assert units.size_bytes(text) == want


def test_a_percentage_is_the_kernels_32_bit_probability():
    assert units.percent("100%") == units.U32_MAX
    assert units.percent("0.5%") == units.percent(0.5) == round(0.005 * units.U32_MAX)
    assert units.show_percent(units.percent("0.5%")) == "0.5%"


@pytest.mark.parametrize(("parse", "value", "message"), [
    (units.time_ns, "40", "needs a unit"), (units.time_ns, "-4ms", "negative"),
    (units.time_ns, 40, "needs a unit"), (units.percent, "101%", "more than 100%"),
    (units.rate_bytes, 0, "is zero"), (units.rate_bytes, "0mbit", "is zero"),
    (units.rate_bytes, "10furlongs", "unknown unit")])
def test_bad_values_say_why(parse, value, message):
    with pytest.raises(units.UnitError, match=message):
        parse(value)


# -- the kernel's bytes --------------------------------------------------------------------------

def test_a_tbf_reads_back_as_declared_in_the_kernels_precision():
    stage = qdiscs.tbf_stage({"rate": "20mbit", "burst": "32kb"}, "egress")
    assert stage.get("limit") == 2_500_000 * 25 // 1000 + 32_768  # CNI's 25 ms of queue
    # what the kernel dumps: the bucket as the time to send it, in ticks
    ticks = qdiscs.tbf_buffer_ticks(stage.get("rate") or 0, 32_768)
    spec = qdiscs._RATESPEC.pack(0, 1, 0, 0, 0, 2_500_000)
    dumped = qdiscs.attr(qdiscs.TCA_TBF_PARMS, qdiscs._TBF_QOPT.pack(
        spec, bytes(12), stage.get("limit"), ticks, 0))
    assert qdiscs.stage_from_kernel("tbf", dumped) == stage


def test_a_netem_reads_back_as_written():
    stage = qdiscs.netem_stage({"delay": "40ms", "jitter": "5ms", "correlation": "25%",
                                "loss": "0.5%", "duplicate": "1%", "reorder": "10%",
                                "corrupt": "0.1%", "rate": "10mbit", "limit": 500})
    assert stage.get("gap") == 1  # as tc: reorder without gap
    assert qdiscs.stage_from_kernel("netem", qdiscs.options(stage)) == stage
    assert qdiscs.describe_stage(stage).startswith("netem rate 10mbit limit 500 delay 40ms "
                                                   "jitter 5ms correlation 25%")


def test_the_redirect_filter_names_its_ifb():
    raw = ingress.redirect_filter(42)
    options = qdiscs.parse_attrs(raw)[2]
    assert ingress.redirect_target(options) == 42


def test_an_original_reads_back_and_a_forged_one_is_refused():
    text = qdiscs.original_of("pfifo", 0x10000, b"\x4d\0\0\0")
    assert qdiscs.parse_original(text) == ("pfifo", 0x10000, b"\x4d\0\0\0")
    assert qdiscs.original_of("noqueue", 0, b"") == "default"
    record = OwnershipRecord("t", qdisc_originals={(ROOT, "eth0", EGRESS): "pfifo;rm:1:00"})
    with pytest.raises(Untrusted, match="qdisc original"):
        validated(record, "t")
    again = OwnershipRecord.from_json(OwnershipRecord(
        "t", qdisc_originals={(ROOT, "eth0", EGRESS): text}).to_json())
    assert validated(again, "t").qdisc_originals == {(ROOT, "eth0", EGRESS): text}


# -- the file ------------------------------------------------------------------------------------

BASE = """\
version: 1
name: tc
namespaces: {a: {}}
links:
  - name: va
    kind: veth
    peer: {name: eth0, namespace: a}
"""


def problems(extra: str) -> list[str]:
    with pytest.raises(InvalidTopology) as raised:
        load_topology_text(BASE + extra, "tc.yaml")
    assert raised.value.status == 3
    return [str(d) for d in raised.value.diagnostics]


def test_bad_impairments_are_reported_where_they_are():
    found = problems("    netem: {delay: -4ms, loss: 120%}\n"
                     "    shaping: {egress: {rate: 0, burst: 1mb}}\n")
    assert found == ["tc.yaml:8:20: netem delay must not be negative: '-4ms'",
                     "tc.yaml:8:32: netem loss '120%' is more than 100%",
                     "tc.yaml:9:30: shaping egress rate 0 is zero: a rate must be at least "
                     "8bit"]
    assert problems("    netem: {delay: 40}\n") == [
        "tc.yaml:8:20: netem delay 40 needs a unit (s, ms, us or ns), e.g. 40ms"]
    assert problems("    netem: {jitter: 5ms}\n") == ["tc.yaml:8:12: netem jitter needs a delay"]
    assert problems("    qdisc: fq_codel\n    netem: {delay: 1ms}\n")[0].startswith(
        "tc.yaml:8:12: qdisc names the root scheduler")


def test_ingress_shaping_brings_its_ifb():
    topo = load_topology_text(BASE + "    shaping: {ingress: {rate: 8mbit, burst: 32kb}}\n")
    ifb = ifb_for(ROOT, "va")
    assert len(ifb) == 15 and isinstance(topo.get(("link", ROOT, ifb)), Link)
    assert topo.get(("qdisc", ROOT, "va", "ingress")) == Qdisc(ROOT, "va", "ingress",
                                                             redirect=ifb)
    shaper = topo.get(("qdisc", ROOT, ifb, EGRESS))
    assert isinstance(shaper, Qdisc) and shaper.stages[0].get("rate") == 1_000_000


# -- the engine on the in-memory host ------------------------------------------------------------

def topology(netem: str = "{delay: 40ms}", external: bool = True):
    text = BASE + f"    netem: {netem}\n    shaping: {{ingress: {{rate: 8mbit, burst: 32kb}}}}\n"
    if external:
        text += "  - name: eth9\n    kind: external\n    qdisc: fq_codel\n"
    return load_topology_text(text)


def host_with_hand_set_qdisc() -> FakeHost:
    host = FakeHost()
    host.add_foreign(Link(ROOT, "eth9", "device"))
    link = host.objects[("link", ROOT, "eth9")]
    host.qdiscs[(ROOT, "eth9", getattr(link, "ident", None))] = Qdisc(
        ROOT, "eth9", EGRESS, (QdiscStage("pfifo"),), handle=0x10000,
        original=qdiscs.original_of("pfifo", 0x10000, b"\x4d\0\0\0"))
    return host


def test_a_change_of_delay_is_one_in_place_change_and_destroy_puts_everything_back(tmp_path):
    host = host_with_hand_set_qdisc()
    before = host.state()
    service.apply(topology(), tmp_path, host=host)
    assert host.state()["qdiscs"][(ROOT, "eth9")] == (QdiscStage("fq_codel"),)
    result = service.apply(topology("{delay: 80ms}"), tmp_path, host=host)
    (action,) = result.plan.actions
    assert (action.op, action.key) == (Op.MODIFY, ("qdisc", ROOT, "va", EGRESS))
    assert action.changes["qdisc"][1] == "netem delay 80ms"
    assert service.plan(topology("{delay: 80ms}"), tmp_path, host=host).actions == []
    service.destroy("tc", tmp_path, host=host)
    assert host.state() == before


def test_a_declaration_dropped_from_the_file_puts_the_qdisc_back(tmp_path):
    host = host_with_hand_set_qdisc()
    before = host.state()["qdiscs"]
    service.apply(topology(), tmp_path, host=host)
    result = service.apply(topology(external=False), tmp_path, host=host)
    (action,) = [a for a in result.plan.actions if a.key[2] == "eth9"]
    assert action.changes["qdisc"] == ["fq_codel", "pfifo, as before netdecl"]
    assert host.state()["qdiscs"][(ROOT, "eth9")] == before[(ROOT, "eth9")]


def test_a_failure_at_every_step_rolls_back_the_qdiscs_too(tmp_path):
    base = host_with_hand_set_qdisc()
    service.apply(topology(), tmp_path / "base", host=base)
    changed = topology("{delay: 80ms, loss: 1%}", external=False)
    dry = base.copy()
    start = dry.changes
    service.apply(changed, copied(tmp_path / "base", tmp_path / "dry"), host=dry)
    assert dry.changes - start == 2  # the netem changed in place, the pfifo put back
    for step in (1, 2):
        host = base.copy()
        host.arm(step)
        with pytest.raises(ApplyFailed, match="injected"):
            service.apply(changed, copied(tmp_path / "base", tmp_path / f"step-{step}"),
                          host=host)
        assert host.state() == base.state(), f"after a failure at change {step}"


def copied(source, target):
    shutil.copytree(source, target)
    return target


def test_a_kind_the_kernel_lacks_is_a_conflict_naming_its_module(tmp_path):
    host = host_with_hand_set_qdisc()
    host.qdiscs_lacking = {"netem": "sch_netem"}
    plan = service.plan(topology(), tmp_path, host=host)
    (conflict,) = plan.conflicts
    assert conflict.message == ("netem qdisc for egress of va is not in this kernel: module "
                                "sch_netem is missing (modprobe sch_netem)")


def test_a_kind_the_kernel_already_shows_is_not_probed_again(tmp_path):
    host = host_with_hand_set_qdisc()
    asked: list[set[str]] = []
    host.missing_qdisc_kinds = lambda kinds: asked.append(set(kinds)) or {}  # type: ignore
    service.apply(topology(), tmp_path, host=host)
    # first: netem and fq_codel (tbf under the ingress ifb too) are on no link yet
    assert asked and "netem" in asked[0] and "fq_codel" in asked[0]
    asked.clear()
    (action,) = service.plan(topology("{delay: 80ms}"), tmp_path, host=host).actions
    assert action.key == ("qdisc", ROOT, "va", EGRESS)
    assert asked == []  # the netem it changes in place is there: the kernel has the kind


def test_graph_draws_the_impairments_on_their_links():
    from netdecl.tools.graph import to_dot

    wan = load_topology_text((Path(__file__).parent.parent / "topologies" / "wan-lab.yaml")
                             .read_text())
    dot = to_dot(wan)
    assert "egress: tbf rate 20mbit burst 32kb limit 157768 / netem delay 40ms jitter 5ms " \
           "loss 0.5%" in dot
    assert f"ingress: redirect to {ifb_for('branch', 'eth0')}" in dot


def test_verify_holds_a_probe_to_the_declared_delays_on_its_path():
    from netdecl.model import Probe
    from netdecl.tools.impairments import least_round_trip_ns
    from netdecl.tools.verify import ProbeResult, Target, _judge

    wan = load_topology_text((Path(__file__).parent.parent / "topologies" / "wan-lab.yaml")
                             .read_text())
    # (40 - 5) ms each way, one pair: the branch is one more pair away, unimpaired
    assert least_round_trip_ns(wan, "site-a", "site-b") == 70_000_000
    assert least_round_trip_ns(wan, "branch", "site-a") == 70_000_000
    assert least_round_trip_ns(wan, "branch", "site-b") == 0
    probe = Probe("site-a", "site-b")
    target = Target("10.70.0.2", None, "icmp", "site-b", "site-b", "10.70.0.2", None)
    fast = ProbeResult(probe, target, False, "reachable", "answered", seconds=0.01,
                       declared_rtt=0.07)
    _judge(fast)
    assert not fast.ok and "less than the 70 ms the declared netem delays" in fast.detail
    slow = ProbeResult(probe, target, False, "reachable", "answered", seconds=0.081,
                       declared_rtt=0.07)
    _judge(slow)
    assert slow.ok


def test_a_gilbert_elliott_loss_model_reads_back_and_is_checked():
    stage = qdiscs.netem_stage({"delay": "10ms", "loss_model": {"gemodel": {
        "p": "1%", "r": "25%", "1-h": "50%"}}})
    assert qdiscs.stage_from_kernel("netem", qdiscs.options(stage)) == stage
    # tc's defaults and its naming: the kernel keeps h, tc's option is 1-h
    assert stage.get("ge_h") == units.U32_MAX - units.percent("50%")
    assert qdiscs.describe_stage(stage) == \
        "netem loss gemodel p 1% r 25% 1-h 50% 1-k 0% delay 10ms"
    assert problems("    netem: {loss_model: {gemodel: {p: 1%, r: 120%}}}\n") == [
        "tc.yaml:8:46: gemodel r '120%' is more than 100%"]
    assert problems("    netem: {loss: 1%, loss_model: {gemodel: {p: 1%}}}\n") == [
        "tc.yaml:8:12: netem loss and loss_model are one or the other"]


def test_a_rollback_puts_back_every_stage_of_netdecls_own_chain(tmp_path):
    """A failed apply that changed a netem under a tbf: the snapshot's chain is written back
    whole (the root's dump alone would leave the new netem under the old tbf)."""
    shaped = BASE + "    netem: {delay: 40ms}\n    shaping: {egress: {rate: 8mbit, burst: 32kb}}\n"
    host = FakeHost()
    service.apply(load_topology_text(shaped), tmp_path, host=host)
    before = host.state()
    changed = load_topology_text(shaped.replace("40ms", "80ms")
                                 + "sysctls: {net.ipv4.ip_forward: 1}\n")
    host.arm(2)  # the sysctl, after the netem changed
    with pytest.raises(ApplyFailed, match="injected"):
        service.apply(changed, tmp_path, host=host)
    assert host.state() == before


@pytest.mark.parametrize(("line", "message"), [
    ("shaping: {egress: 5}", "tc.yaml:8:23: egress: expected a mapping, got 5"),
    ("shaping: 5", "tc.yaml:8:14: shaping: expected a mapping, got 5"),
    ("netem: 5", "tc.yaml:8:12: netem: expected a mapping, got 5"),
    ("netem: {loss_model: 5}", "tc.yaml:8:25: loss_model: expected a mapping, got 5"),
    ("netem: {loss_model: {gemodel: 5}}",
     "tc.yaml:8:35: gemodel: expected a mapping, got 5")])
def test_a_misshapen_declaration_is_the_schemas_message_not_a_crash(line, message):
    assert problems(f"    {line}\n") == [message]


@pytest.mark.parametrize("forged", [
    Qdisc(ROOT, "eth0/../x", EGRESS),
    Qdisc(ROOT, "eth0", INGRESS, redirect="ifb 0"),
    Qdisc(ROOT, "eth0", "sideways"),
    Qdisc(ROOT, "eth0", EGRESS, (QdiscStage("tbf; rm"),)),
    Qdisc(ROOT, "eth0", EGRESS, (QdiscStage("tbf", (("rate", -1),)),)),
    Qdisc(ROOT, "eth0", EGRESS, original="pfifo:zz:00")])
def test_a_forged_qdisc_in_a_journal_or_saved_plan_is_refused(forged):
    from netdecl.engine.state.untrusted import check_object

    with pytest.raises(Untrusted):
        check_object(forged)
    assert check_object(Qdisc(ROOT, "eth0", EGRESS, (QdiscStage("tbf", (("rate", 1),)),),
                              original="default"))


# -- htb: one class, in the kernel's ticks --------------------------------------------------------

@pytest.mark.parametrize("rate", ["8kbit", "1mbit", "20mbit", "1gbit", "40gbit"])
def test_an_htb_reads_back_as_written_and_what_show_writes_loads_the_same(rate):
    stage = qdiscs.htb_stage({"kind": "htb", "rate": rate, "burst": "31kb", "cburst": "1000b"},
                             "egress")
    assert qdiscs.htb_from_kernel(qdiscs.options(stage), qdiscs.htb_class_options(stage)) \
        == stage
    written = qdiscs.file_form((stage,))["shaping"]["egress"]
    assert qdiscs.shaper_stage(written, "egress") == stage, written


def test_an_htb_without_netdecls_class_is_not_said_by_the_file():
    bare = qdiscs.htb_from_kernel(qdiscs.options(qdiscs.htb_stage({"rate": "1mbit"}, "e")),
                                  None)
    assert bare == QdiscStage("htb") and qdiscs.file_form((bare,)) == {}
    other_default = qdiscs._stage("htb", {"rate": 125_000, "ceil": 125_000, "buffer": 1,
                                          "cbuffer": 1, "default_class": 2})
    assert qdiscs.file_form((other_default,)) == {}
    assert not qdiscs.same_root(other_default, qdiscs.htb_stage({"rate": "1mbit"}, "e"))


# -- netem's delay distribution --------------------------------------------------------------------

def test_a_distribution_table_is_read_as_tc_writes_it_and_sent_with_the_netem():
    table = qdiscs.parse_dist_table("# a comment\n -32768 12 # more\n 32767\n", "t.dist")
    assert table == b"\x00\x80\x0c\x00\xff\x7f"
    with pytest.raises(ValueError):
        qdiscs.parse_dist_table("1 40000\n", "t.dist")
    stage = qdiscs.netem_stage({"delay": "40ms", "jitter": "10ms", "distribution": "normal"})
    assert qdiscs.distribution_name(stage) == "normal"
    sent = qdiscs.options(stage, table)
    assert qdiscs.TCA_NETEM_DELAY_DIST in _attrs_of_netem(sent)
    # the kernel reports no table back: the record's name completes what it dumps
    dumped = qdiscs.stage_from_kernel("netem", sent)
    assert dumped != stage and qdiscs.with_distribution((dumped,), "normal") == (stage,)
    assert qdiscs.file_form((stage,))["netem"]["distribution"] == "normal"
    assert qdiscs.drops_a_table((stage,), (dumped,))
    assert not qdiscs.drops_a_table((dumped,), (stage,))


def _attrs_of_netem(raw: bytes) -> dict[int, bytes]:
    from netdecl.nlattr import parse_attrs

    return parse_attrs(raw, (struct.calcsize("=IIIIII") + 3) & ~3)


def test_the_shipped_tables_parse():
    from netdecl.backends.qdiscs import dist_table

    for name in qdiscs.DISTRIBUTIONS:
        try:
            assert len(dist_table(name)) > 1000, name
        except OSError as exc:
            pytest.skip(f"iproute2's tables are not installed: {exc}")
    with pytest.raises(ValueError):
        dist_table("../../../etc/passwd")


def test_netem_sits_in_the_htb_class():
    stages = qdiscs.egress_stages({"shaping": {"egress": {"kind": "htb", "rate": "20mbit"}},
                                   "netem": {"delay": "40ms"}})
    assert [s.kind for s in stages] == ["htb", "netem"]
    assert qdiscs.describe_chain(stages) == ("htb rate 20mbit ceil 20mbit burst 1600b cburst "
                                             "1600b / netem delay 40ms")
    shown = qdiscs.file_form(stages)
    assert shown["shaping"]["egress"]["kind"] == "htb" and shown["netem"] == {
        "delay": "40ms", "limit": 1000}
