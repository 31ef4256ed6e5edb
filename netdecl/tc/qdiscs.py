"""A link's traffic control, from the file to the kernel's bytes and back.

The file says what a link should do (``netem``, ``shaping``, ``qdisc``); ``egress_stages``
turns that into the chain of qdiscs (a shaper at the root, netem under it), each a
``QdiscStage`` in the kernel's own units: exactly what the kernel reports back for it, so the
planner compares desired and observed by equality. ``options`` writes a stage's TCA_OPTIONS,
``stage_from_kernel`` reads one back. Attribute numbers are the kernel's
(include/uapi/linux/pkt_sched.h), defined here since nothing else speaks them.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from netdecl.model import INGRESS, Qdisc, QdiscStage
from netdecl.nlattr import U32, attr, nested, parse_attrs
from netdecl.tc import units

NETEM, TBF, HTB, BFIFO, PFIFO = "netem", "tbf", "htb", "bfifo", "pfifo"
SCHEDULERS = ("fq_codel", "fq", "cake", "pfifo")
"""The root schedulers ``qdisc:`` may name (their defaults: no settings of ours)."""
IMPAIRING = (NETEM, TBF, HTB)
"""The kinds that change what crosses a link (delay, loss, rate), which explain names."""
SHAPERS = (TBF, HTB)
"""What ``shaping.egress.kind`` may name: the root qdisc that holds the rate."""

# kind -> the kernel module that provides it (pfifo and bfifo are always built in)
MODULES = {NETEM: "sch_netem", TBF: "sch_tbf", HTB: "sch_htb", "fq_codel": "sch_fq_codel",
           "fq": "sch_fq", "cake": "sch_cake", "ingress": "sch_ingress"}

# handles: netdecl's root qdisc is D3: (211, its route protocol) or D5: when a root of another
# kind must replace its own (the kernel changes a qdisc in place only when kind and handle
# match, and grafts a new one atomically otherwise: never a gap)
ROOT_HANDLES = (0xD3 << 16, 0xD5 << 16)
TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1
INGRESS_HANDLE = 0xFFFF0000

CNI_LATENCY_NS = 25_000_000  # the CNI bandwidth plugin's queue: 25 ms at the rate, plus burst
NETEM_LIMIT = 1000  # tc's default queue of a netem, packets

# -- tbf (pkt_sched.h) ---------------------------------------------------------------------------
TCA_TBF_PARMS, TCA_TBF_RATE64, TCA_TBF_BURST = 1, 4, 6
_RATESPEC = struct.Struct("=BBHhHI")  # cell_log, linklayer, overhead, cell_align, mpu, rate
_TBF_QOPT = struct.Struct("=12s12sIII")  # rate, peakrate, limit, buffer, mtu
TC_LINKLAYER_ETHERNET = 1
PSCHED_SHIFT = 6  # a psched tick is 64 ns

# -- htb: one class (:1) that the root's default sends everything to, "shape this link" --------
TCA_HTB_PARMS, TCA_HTB_INIT, TCA_HTB_RATE64, TCA_HTB_CEIL64 = 1, 2, 6, 7
_HTB_GLOB = struct.Struct("=IIIII")  # version, rate2quantum, defcls, debug, direct_pkts
_HTB_OPT = struct.Struct("=12s12sIIIII")  # rate, ceil, buffer, cbuffer, quantum, level, prio
HTB_VERSION, HTB_R2Q = 3, 10  # tc's: the kernel refuses another version
HTB_CLASS = 1  # the minor of the one class, and the root's default
HTB_BURST = 1600  # tc's default bucket: one frame of its default mtu, at the rate (and ceil)

# -- netem ---------------------------------------------------------------------------------------
_NETEM_QOPT = struct.Struct("=IIIIII")  # latency, limit, loss, gap, duplicate, jitter
TCA_NETEM_CORR, TCA_NETEM_DELAY_DIST, TCA_NETEM_REORDER, TCA_NETEM_CORRUPT = 1, 2, 3, 4
TCA_NETEM_RATE, TCA_NETEM_RATE64, TCA_NETEM_LATENCY64, TCA_NETEM_JITTER64 = 6, 8, 10, 11
TCA_NETEM_LOSS, NETEM_LOSS_GE = 5, 2
_GEMODEL = struct.Struct("=IIII")  # p, r, h, k1 (the kernel's h: 1 - tc's "1-h")
# a Gilbert-Elliott loss model, as tc names its parameters: p (good -> bad), r (bad -> good),
# 1-h (loss in the bad state, default 100 %), 1-k (loss in the good state, default 0)
GEMODEL_KEYS = ("p", "r", "1-h", "1-k")
_CORR = struct.Struct("=III")  # delay, loss, duplicate correlation
_PROB_CORR = struct.Struct("=II")
_NETEM_RATE = struct.Struct("=IiIi")
_S64 = struct.Struct("=q")
_U64 = struct.Struct("=Q")

_FIFO_QOPT = U32  # struct tc_fifo_qopt { __u32 limit; }

# the delay distributions iproute2 ships as tables (NAME.dist in tc's library directory); the
# stage keeps the name's place here + 1 (the kernel never reports a table back: the ownership
# record keeps which one netdecl sent, see engine/observer.py)
DISTRIBUTIONS = ("normal", "pareto", "paretonormal", "experimental")
DIST_MAX = 16384  # the kernel's NETEM_DIST_MAX entries
_DIST_VALUE = struct.Struct("=h")

# -- the file -> stages --------------------------------------------------------------------------

# netem key -> (parser, parameter name)
_NETEM_KEYS = {
    "delay": (units.time_ns, "delay"),
    "jitter": (units.time_ns, "jitter"),
    "correlation": (units.percent, "delay_corr"),
    "loss": (units.percent, "loss"),
    "duplicate": (units.percent, "duplicate"),
    "reorder": (units.percent, "reorder"),
    "corrupt": (units.percent, "corrupt"),
    "rate": (units.rate_bytes, "rate"),
}


def netem_stage(spec: Mapping[str, Any]) -> QdiscStage:
    """``netem: {delay: 40ms, jitter: 5ms, loss: 0.5%, ...}``; UnitError on a bad value."""
    params: dict[str, int] = {}
    for key, (parse, name) in _NETEM_KEYS.items():
        if spec.get(key) is not None:
            params[name] = parse(spec[key], f"netem {key}")
    if spec.get("gap") is not None:
        params["gap"] = units.count(spec["gap"], "netem gap")
    if spec.get("distribution") is not None:
        params["distribution"] = distribution_number(spec["distribution"])
        if not params.get("jitter"):
            raise units.UnitError("netem distribution shapes the jitter: it needs jitter")
    params["limit"] = units.count(spec.get("limit", NETEM_LIMIT), "netem limit")
    model = (spec.get("loss_model") or {}).get("gemodel")
    if model is not None:
        if params.get("loss"):
            raise units.UnitError("netem loss and loss_model are one or the other")
        params.update(_gemodel(model))
    if params.get("jitter") and not params.get("delay"):
        raise units.UnitError("netem jitter needs a delay")
    if params.get("reorder") or params.get("gap"):
        if not params.get("delay"):
            raise units.UnitError("netem reorder needs a delay (only delayed packets can be "
                                  "overtaken)")
        params.setdefault("gap", 1)  # as tc: reorder alone means every packet may go early
    return _stage(NETEM, params)


def distribution_number(name: object, what: str = "netem distribution") -> int:
    """The stage's number for a table name; UnitError for a name tc does not ship (checked
    here, before any name becomes a file's path)."""
    if not isinstance(name, str) or name not in DISTRIBUTIONS:
        raise units.UnitError(f"{what} {name!r} is none of "
                              f"{', '.join(DISTRIBUTIONS)}")
    return DISTRIBUTIONS.index(name) + 1


def distribution_name(stage: QdiscStage) -> str | None:
    number = stage.get("distribution") if stage.kind == NETEM else None
    return DISTRIBUTIONS[number - 1] if number and 0 < number <= len(DISTRIBUTIONS) else None


def parse_dist_table(text: str, name: str) -> bytes:
    """A tc ``.dist`` file (``#`` comments, then whitespace-separated 16-bit integers, as
    iproute2's maketable writes them) as TCA_NETEM_DELAY_DIST's payload; ValueError if it is
    not one."""
    values = [int(word) for line in text.splitlines()
              for word in line.split("#", 1)[0].split()]
    if not 0 < len(values) <= DIST_MAX or not all(-32768 <= v <= 32767 for v in values):
        raise ValueError(f"{name}: not a netem distribution table")
    return b"".join(_DIST_VALUE.pack(v) for v in values)


def with_distribution(stages: tuple[QdiscStage, ...], name: str) -> tuple[QdiscStage, ...]:
    """An observed chain with the table the record says netdecl sent to its netem."""
    number = DISTRIBUTIONS.index(name) + 1
    return tuple(_stage(NETEM, {**dict(s.params), "distribution": number})
                 if s.kind == NETEM and not s.get("distribution") else s for s in stages)


def drops_a_table(before: tuple[QdiscStage, ...], after: tuple[QdiscStage, ...]) -> bool:
    """A netem that has a table and is to have none: the kernel keeps a table across every
    change, so only a new netem (a graft) drops it."""
    had = any(distribution_name(s) for s in before)
    return had and not any(distribution_name(s) for s in after)


def _gemodel(model: Mapping[str, Any]) -> dict[str, int]:
    """tc's defaults (`loss gemodel P`): r = 1 - p, 1-h = 100 %, 1-k = 0."""
    p = units.percent(model.get("p"), "gemodel p")
    r = units.percent(model["r"], "gemodel r") if model.get("r") is not None \
        else units.U32_MAX - p
    loss_bad = units.percent(model["1-h"], "gemodel 1-h") if model.get("1-h") is not None \
        else units.U32_MAX
    k1 = units.percent(model["1-k"], "gemodel 1-k") if model.get("1-k") is not None else 0
    return {"gemodel": 1, "ge_p": p, "ge_r": r, "ge_h": units.U32_MAX - loss_bad, "ge_k1": k1}


def tbf_stage(spec: Mapping[str, Any], where: str) -> QdiscStage:
    """``{rate, burst, latency | limit}``: a token bucket, as the kernel will report it."""
    rate = units.rate_bytes(spec.get("rate"), f"{where} rate")
    burst = units.size_bytes(spec.get("burst"), f"{where} burst")
    if spec.get("limit") is not None:
        limit = units.size_bytes(spec["limit"], f"{where} limit")
    else:
        latency = units.time_ns(spec["latency"], f"{where} latency") \
            if spec.get("latency") is not None else CNI_LATENCY_NS
        limit = rate * latency // units.NSEC_PER_SEC + burst
    if limit > units.U32_MAX:
        raise units.UnitError(f"{where}: the queue (rate x latency + burst) is over 4 GiB")
    buffer = tbf_buffer_ticks(rate, burst)
    return _stage(TBF, {"rate": rate, "burst": tbf_burst(rate, buffer), "limit": limit})


def htb_stage(spec: Mapping[str, Any], where: str) -> QdiscStage:
    """``{kind: htb, rate, ceil, burst, cburst}``: an htb root whose default is its one class,
    as tc users write "shape this link". The buckets are kept as the kernel keeps them, in
    psched ticks (its dump gives back exactly what it was sent), so desired equals observed."""
    rate = units.rate_bytes(spec.get("rate"), f"{where} rate")
    ceil = units.rate_bytes(spec["ceil"], f"{where} ceil") if spec.get("ceil") is not None \
        else rate
    if ceil < rate:
        raise units.UnitError(f"{where}: ceil {spec.get('ceil')!r} is below the rate "
                              f"{spec.get('rate')!r} (ceil is what the class may borrow up to)")
    burst = units.size_bytes(spec["burst"], f"{where} burst") \
        if spec.get("burst") is not None else HTB_BURST
    cburst = units.size_bytes(spec["cburst"], f"{where} cburst") \
        if spec.get("cburst") is not None else HTB_BURST
    buffer, cbuffer = bytes_to_ticks(rate, burst), bytes_to_ticks(ceil, cburst)
    if not (buffer and cbuffer):
        raise units.UnitError(f"{where}: a bucket is sent in under 64ns at its rate (the "
                              "kernel's tick): make burst and cburst larger")
    return _stage(HTB, {"rate": rate, "ceil": ceil, "buffer": buffer, "cbuffer": cbuffer,
                        "default_class": HTB_CLASS})


def shaper_stage(spec: Mapping[str, Any], where: str) -> QdiscStage:
    """``shaping.egress``: a tbf (the default, as the CNI bandwidth plugin) or an htb."""
    return htb_stage(spec, where) if spec.get("kind") == HTB else tbf_stage(spec, where)


def egress_stages(entry: Mapping[str, Any]) -> tuple[QdiscStage, ...]:
    """A links entry's egress chain (empty: it declares none): the shaper over netem when
    both."""
    stages: list[QdiscStage] = []
    shaping = (entry.get("shaping") or {}).get("egress")
    if shaping:
        stages.append(shaper_stage(shaping, "shaping egress"))
    if entry.get("netem") is not None:
        stages.append(netem_stage(entry["netem"] or {}))
    if entry.get("qdisc"):
        stages.append(QdiscStage(entry["qdisc"]))
    return tuple(stages)


def ingress_stage(entry: Mapping[str, Any]) -> QdiscStage | None:
    shaping = (entry.get("shaping") or {}).get("ingress")
    return tbf_stage(shaping, "shaping ingress") if shaping else None


def _stage(kind: str, params: Mapping[str, int]) -> QdiscStage:
    return QdiscStage(kind, tuple(sorted((k, v) for k, v in params.items() if v)))


# -- the kernel's precision ----------------------------------------------------------------------

def _mult_shift(rate: int) -> tuple[int, int]:
    """psched_ratecfg_precompute: time_ns = (len * mult) >> shift."""
    factor, shift = units.NSEC_PER_SEC, 0
    while True:
        mult = factor // rate
        if mult & (1 << 31) or factor & (1 << 63):
            return mult, shift
        factor <<= 1
        shift += 1


def tbf_buffer_ticks(rate: int, burst: int) -> int:
    """The bucket as the kernel keeps it for TCA_TBF_BURST: the time to send it, in ticks."""
    mult, shift = _mult_shift(rate)
    return ((burst * mult) >> shift) >> PSCHED_SHIFT


def tbf_burst(rate: int, buffer_ticks: int) -> int:
    """The bucket in bytes from the kernel's ticks, as tc prints it."""
    return round(rate * (buffer_ticks << PSCHED_SHIFT) / units.NSEC_PER_SEC)


def bytes_to_ticks(rate: int, size: int) -> int:
    """An htb bucket: the time to send ``size`` at ``rate``, in psched ticks (rounded).
    With ticks_to_bytes, exact both ways on what it returns, so what ``show`` writes loads
    back to the same ticks (a tick is under a byte below 125 Mbit/s)."""
    unit = rate << PSCHED_SHIFT
    return (2 * size * units.NSEC_PER_SEC + unit) // (2 * unit)


def ticks_to_bytes(rate: int, ticks: int) -> int:
    return (2 * rate * (ticks << PSCHED_SHIFT) + units.NSEC_PER_SEC) // (2 * units.NSEC_PER_SEC)


def same_root(old: QdiscStage, new: QdiscStage) -> bool:
    """Can the root ``old`` become ``new`` in place? The kernel changes a qdisc only into its
    own kind; an htb not even that (it has no change operation: only its class changes), so
    an htb whose default is not netdecl's class must be grafted anew."""
    return old.kind == new.kind and (
        old.kind != HTB or old.get("default_class") == new.get("default_class") == HTB_CLASS)


# -- stages -> TCA_OPTIONS -----------------------------------------------------------------------

def options(stage: QdiscStage, table: bytes = b"") -> bytes:
    """The TCA_OPTIONS payload that makes ``stage`` (b"": the kind's defaults); ``table``, a
    netem's delay distribution (parse_dist_table), sent with each change of it."""
    p = dict(stage.params)
    if stage.kind == TBF:
        rate = p["rate"]
        spec = _RATESPEC.pack(0, TC_LINKLAYER_ETHERNET, 0, 0, 0, min(rate, units.U32_MAX))
        body = attr(TCA_TBF_PARMS, _TBF_QOPT.pack(spec, bytes(12), p["limit"], 0, 0))
        if rate > units.U32_MAX:
            body += attr(TCA_TBF_RATE64, _U64.pack(rate))
        return body + attr(TCA_TBF_BURST, U32.pack(p["burst"]))
    if stage.kind == NETEM:
        delay, jitter = p.get("delay", 0), p.get("jitter", 0)
        body = _NETEM_QOPT.pack(min(delay >> PSCHED_SHIFT, units.U32_MAX), p["limit"],
                                p.get("loss", 0), p.get("gap", 0), p.get("duplicate", 0),
                                min(jitter >> PSCHED_SHIFT, units.U32_MAX))
        body += attr(TCA_NETEM_CORR, _CORR.pack(p.get("delay_corr", 0), 0, 0))
        if table:
            body += attr(TCA_NETEM_DELAY_DIST, table)
        body += attr(TCA_NETEM_REORDER, _PROB_CORR.pack(p.get("reorder", 0), 0))
        body += attr(TCA_NETEM_CORRUPT, _PROB_CORR.pack(p.get("corrupt", 0), 0))
        rate = p.get("rate", 0)
        body += attr(TCA_NETEM_RATE, _NETEM_RATE.pack(min(rate, units.U32_MAX), 0, 0, 0))
        if p.get("gemodel"):
            body += nested(TCA_NETEM_LOSS, attr(NETEM_LOSS_GE, _GEMODEL.pack(
                p.get("ge_p", 0), p.get("ge_r", 0), p.get("ge_h", 0), p.get("ge_k1", 0))))
        if rate > units.U32_MAX:
            body += attr(TCA_NETEM_RATE64, _U64.pack(rate))
        return body + attr(TCA_NETEM_LATENCY64, _S64.pack(delay)) + \
            attr(TCA_NETEM_JITTER64, _S64.pack(jitter))
    if stage.kind == BFIFO:
        return _FIFO_QOPT.pack(p["limit"])
    if stage.kind == HTB:
        return attr(TCA_HTB_INIT, _HTB_GLOB.pack(HTB_VERSION, HTB_R2Q, HTB_CLASS, 0, 0))
    return b""


def _ratespec(rate: int) -> bytes:
    return _RATESPEC.pack(0, TC_LINKLAYER_ETHERNET, 0, 0, 0, min(rate, units.U32_MAX))


def htb_class_options(stage: QdiscStage) -> bytes:
    """The TCA_OPTIONS of an htb stage's one class (its rate, ceil and buckets); the kernel
    works out the quantum (rate / r2q)."""
    p = dict(stage.params)
    rate, ceil = p["rate"], p["ceil"]
    body = attr(TCA_HTB_PARMS, _HTB_OPT.pack(_ratespec(rate), _ratespec(ceil), p["buffer"],
                                              p["cbuffer"], 0, 0, 0))
    if rate > units.U32_MAX:
        body += attr(TCA_HTB_RATE64, _U64.pack(rate))
    if ceil > units.U32_MAX:
        body += attr(TCA_HTB_CEIL64, _U64.pack(ceil))
    return body


def htb_from_kernel(raw: bytes | None, class_raw: bytes | None) -> QdiscStage:
    """An htb root and its one class, as the kernel dumps them; without the class (or with
    classes netdecl does not make) just the kind, which equals no declared chain."""
    glob = parse_attrs(raw or b"").get(TCA_HTB_INIT)
    found = parse_attrs(class_raw or b"")
    parms = found.get(TCA_HTB_PARMS)
    if glob is None or len(glob) < _HTB_GLOB.size or parms is None \
            or len(parms) < _HTB_OPT.size:
        return QdiscStage(HTB)
    rate_spec, ceil_spec, buffer, cbuffer, _quantum, _level, _prio = _HTB_OPT.unpack_from(parms)
    rate, ceil = _RATESPEC.unpack(rate_spec)[5], _RATESPEC.unpack(ceil_spec)[5]
    if TCA_HTB_RATE64 in found:
        rate = _U64.unpack_from(found[TCA_HTB_RATE64])[0]
    if TCA_HTB_CEIL64 in found:
        ceil = _U64.unpack_from(found[TCA_HTB_CEIL64])[0]
    return _stage(HTB, {"rate": rate, "ceil": ceil, "buffer": buffer, "cbuffer": cbuffer,
                        "default_class": _HTB_GLOB.unpack_from(glob)[2]})


def stage_from_kernel(kind: str, raw: bytes | None) -> QdiscStage:
    """What the kernel reports for a qdisc, as a stage; a kind netdecl does not write is
    just its kind (it never equals a declared chain, which is what the planner needs)."""
    raw = raw or b""
    if kind == TBF and raw:
        found = parse_attrs(raw)
        parms = found.get(TCA_TBF_PARMS)
        if parms is None or len(parms) < _TBF_QOPT.size:
            return QdiscStage(kind)
        rate_spec, _peak, limit, buffer, _mtu = _TBF_QOPT.unpack_from(parms)
        rate = _RATESPEC.unpack(rate_spec)[5]
        if TCA_TBF_RATE64 in found:
            rate = _U64.unpack_from(found[TCA_TBF_RATE64])[0]
        return _stage(TBF, {"rate": rate, "burst": tbf_burst(rate, buffer) if rate else 0,
                            "limit": limit})
    if kind == NETEM and len(raw) >= _NETEM_QOPT.size:
        latency, limit, loss, gap, duplicate, jitter = _NETEM_QOPT.unpack_from(raw)
        found = parse_attrs(raw, (_NETEM_QOPT.size + 3) & ~3)
        params = {"limit": limit, "loss": loss, "gap": gap, "duplicate": duplicate,
                  "delay": latency << PSCHED_SHIFT, "jitter": jitter << PSCHED_SHIFT}
        if TCA_NETEM_LATENCY64 in found:
            params["delay"] = _S64.unpack_from(found[TCA_NETEM_LATENCY64])[0]
        if TCA_NETEM_JITTER64 in found:
            params["jitter"] = _S64.unpack_from(found[TCA_NETEM_JITTER64])[0]
        if TCA_NETEM_CORR in found:
            params["delay_corr"] = _CORR.unpack_from(found[TCA_NETEM_CORR])[0]
        if TCA_NETEM_REORDER in found:
            params["reorder"] = _PROB_CORR.unpack_from(found[TCA_NETEM_REORDER])[0]
        if TCA_NETEM_CORRUPT in found:
            params["corrupt"] = _PROB_CORR.unpack_from(found[TCA_NETEM_CORRUPT])[0]
        if TCA_NETEM_RATE in found:
            params["rate"] = _NETEM_RATE.unpack_from(found[TCA_NETEM_RATE])[0]
        if TCA_NETEM_RATE64 in found:
            params["rate"] = _U64.unpack_from(found[TCA_NETEM_RATE64])[0]
        ge = parse_attrs(found.get(TCA_NETEM_LOSS, b"")).get(NETEM_LOSS_GE)
        if ge is not None and len(ge) >= _GEMODEL.size:
            params["gemodel"] = 1
            params["ge_p"], params["ge_r"], params["ge_h"], params["ge_k1"] = \
                _GEMODEL.unpack_from(ge)
        return _stage(NETEM, params)
    if kind == BFIFO and len(raw) >= 4:
        return _stage(BFIFO, {"limit": U32.unpack_from(raw)[0]})
    return QdiscStage(kind)


def probe_stage(kind: str) -> QdiscStage:
    """A valid stage of ``kind`` to try on a throwaway link (is the kind in the kernel?)."""
    if kind == TBF:
        return _stage(TBF, {"rate": 125_000, "burst": 16_384, "limit": 32_768})
    if kind == NETEM:
        return _stage(NETEM, {"limit": NETEM_LIMIT})
    if kind == HTB:
        return _stage(HTB, {"default_class": HTB_CLASS})
    return QdiscStage(kind)


# -- what was there before -----------------------------------------------------------------------

KERNEL_DEFAULT = "default"


def original_of(kind: str, handle: int, raw: bytes | None) -> str:
    """How the record keeps a root qdisc to put back: the kernel's default (handle 0, which
    the kernel attaches again when netdecl's is deleted) or the kind, handle and options it
    was dumped with, which a replace writes back."""
    if handle == 0:
        return KERNEL_DEFAULT
    return f"{kind}:{handle:08x}:{(raw or b'').hex()}"


def parse_original(text: str) -> tuple[str, int, bytes] | None:
    """(kind, handle, options) of a recorded original; None: the kernel's default. ValueError
    for anything original_of does not write (the record is not trusted)."""
    if text == KERNEL_DEFAULT:
        return None
    kind, handle, raw = text.split(":")
    if not (kind.isascii() and kind.replace("_", "").isalnum() and 0 < len(kind) < 16):
        raise ValueError(f"qdisc kind {kind!r}")
    if len(handle) != 8 or len(raw) > 65536:
        raise ValueError("qdisc handle or options")
    return kind, int(handle, 16), bytes.fromhex(raw)


# -- text (plans, show, explain, graph) ----------------------------------------------------------

def describe_stage(stage: QdiscStage) -> str:
    p = dict(stage.params)
    shown: list[str] = [stage.kind]
    if p.pop("gemodel", None):
        values = (p.pop("ge_p", 0), p.pop("ge_r", 0), units.U32_MAX - p.pop("ge_h", 0),
                  p.pop("ge_k1", 0))
        shown.append("loss gemodel " + " ".join(
            f"{key} {units.show_percent(value)}" for key, value in zip(GEMODEL_KEYS, values,
                                                                        strict=True)))
    if stage.kind == HTB:
        return " ".join(shown + [f"{k} {v}" for k, v in _htb_file(p).items() if k != "kind"]
                        + ([] if p.get("default_class") == HTB_CLASS else ["(not netdecl's)"]))
    if stage.kind == NETEM and p.get("distribution"):
        p.pop("distribution")
        shown.append(f"distribution {distribution_name(stage)}")
    for name, value in sorted(p.items(), key=lambda kv: _ORDER.get(kv[0], 99)):
        if stage.kind == NETEM and (name, value) == ("limit", NETEM_LIMIT):
            continue  # tc's default: noise in every plan line
        shown.append(f"{_SHOWN_AS.get(name, name)} {_show(name, value)}")
    return " ".join(shown)


def _htb_file(p: Mapping[str, int]) -> dict[str, str]:
    """An htb stage's settings as the file writes them (buckets in bytes, from the ticks)."""
    if not p.get("rate"):
        return {}
    rate, ceil = p["rate"], p.get("ceil") or p["rate"]
    return {"kind": HTB, "rate": units.show_rate(rate), "ceil": units.show_rate(ceil),
            "burst": f"{ticks_to_bytes(rate, p.get('buffer', 0))}b",
            "cburst": f"{ticks_to_bytes(ceil, p.get('cbuffer', 0))}b"}


def describe_chain(stages: tuple[QdiscStage, ...]) -> str:
    return " / ".join(describe_stage(s) for s in stages) or "none"


def describe_qdisc(qdisc: Qdisc) -> str:
    """``tbf rate 20mbit ... / netem delay 40ms ...``, or ``ingress redirect to IFB``."""
    if qdisc.direction == INGRESS:
        return f"redirect to {qdisc.redirect}" if qdisc.redirect else "ingress qdisc"
    return describe_chain(qdisc.stages)


_ORDER = {n: i for i, n in enumerate(("rate", "burst", "limit", "delay", "jitter", "delay_corr",
                                      "loss", "duplicate", "reorder", "gap", "corrupt"))}
_SHOWN_AS = {"delay_corr": "correlation"}


def _show(name: str, value: int) -> str:
    if name in ("delay", "jitter"):
        return units.show_time(value)
    if name == "rate":
        return units.show_rate(value)
    if name == "burst":
        return units.show_size(value)
    if name in ("loss", "duplicate", "reorder", "corrupt", "delay_corr"):
        return units.show_percent(value)
    return str(value)


def file_form(stages: tuple[QdiscStage, ...]) -> dict[str, Any]:
    """A chain as the file writes it (``show``): netem, shaping egress, qdisc."""
    out: dict[str, Any] = {}
    if stages and stages[0].kind == HTB and not (
            stages[0].get("rate") and stages[0].get("default_class") == HTB_CLASS):
        return out  # an htb with classes of someone's: the file cannot say it
    for stage in stages:
        p = dict(stage.params)
        if stage.kind == NETEM:
            out["netem"] = {key: _show(name, p[name]) for key, (_, name) in _NETEM_KEYS.items()
                            if p.get(name)}
            for extra in ("gap", "limit"):
                if p.get(extra):
                    out["netem"][extra] = p[extra]
            if distribution_name(stage):
                out["netem"]["distribution"] = distribution_name(stage)
            if p.get("gemodel"):
                values = (p.get("ge_p", 0), p.get("ge_r", 0), units.U32_MAX - p.get("ge_h", 0),
                          p.get("ge_k1", 0))
                out["netem"]["loss_model"] = {"gemodel": {
                    key: units.show_percent(value)
                    for key, value in zip(GEMODEL_KEYS, values, strict=True)}}
        elif stage.kind == TBF:
            out.setdefault("shaping", {})["egress"] = {
                "rate": _show("rate", p["rate"]), "burst": f"{p['burst']}b",
                "limit": f"{p['limit']}b"}
        elif stage.kind == HTB:
            out.setdefault("shaping", {})["egress"] = _htb_file(p)
        elif stage.kind in SCHEDULERS:
            out["qdisc"] = stage.kind
    return out
