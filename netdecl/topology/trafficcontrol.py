"""A link's ``netem``, ``shaping`` and ``qdisc``: checked with tc's own parsers, then built
into Qdisc objects. The units and the kernel's terms are netdecl/tc/'s; this module only knows
where in the file each value is, so every problem is reported at its ``FILE:LINE:COL``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from netdecl.links import LINK_KINDS
from netdecl.links.ifb import NAME as IFB
from netdecl.links.ifb import ifb_for
from netdecl.model import EGRESS, INGRESS, ROOT, Link, NetObject, Qdisc, Topology
from netdecl.tc import qdiscs, units
from netdecl.tc.qdiscs import GEMODEL_KEYS
from netdecl.topology.yamlsrc import Document

if TYPE_CHECKING:
    from netdecl.topology.checks import Context

_NETEM_PARSERS: dict[str, Callable[[Any, str], int]] = {
    "delay": units.time_ns, "jitter": units.time_ns, "correlation": units.percent,
    "loss": units.percent, "duplicate": units.percent, "reorder": units.percent,
    "corrupt": units.percent, "rate": units.rate_bytes}
_BUCKET_PARSERS: dict[str, Callable[[Any, str], int]] = {
    "rate": units.rate_bytes, "burst": units.size_bytes, "latency": units.time_ns,
    "limit": units.size_bytes, "ceil": units.rate_bytes, "cburst": units.size_bytes}
# the settings of one shaper the other does not have: named at their place when misplaced
_ONLY = {"ceil": qdiscs.HTB, "cburst": qdiscs.HTB, "latency": qdiscs.TBF, "limit": qdiscs.TBF}


def declares_tc(entry: Mapping[str, Any]) -> bool:
    return any(entry.get(key) is not None for key in ("netem", "shaping", "qdisc"))


def check_traffic_control(ctx: Context) -> None:
    """Each value in its unit and range, at its own position; then the chain as a whole."""
    for decl in ctx.links:  # each end of a pair declares its own
        path, entry = decl.path, decl.spec
        if not declares_tc(entry):
            continue
        ok = True
        netem = entry.get("netem")
        if isinstance(netem, dict):
            for key, parse in _NETEM_PARSERS.items():
                ok &= _parsed(ctx, (*path, "netem", key), netem.get(key), parse, f"netem {key}")
            ok &= _parsed(ctx, (*path, "netem", "distribution"), netem.get("distribution"),
                          qdiscs.distribution_number, "netem distribution")
            model = netem.get("loss_model")
            ge = model.get("gemodel") if isinstance(model, dict) else None
            for key in GEMODEL_KEYS:
                if not isinstance(ge, dict):
                    break
                ok &= _parsed(ctx, (*path, "netem", "loss_model", "gemodel", key), ge.get(key),
                              units.percent, f"gemodel {key}")
        shaping = entry.get("shaping")
        for direction in ("egress", "ingress"):
            bucket = shaping.get(direction) if isinstance(shaping, dict) else None
            if isinstance(bucket, dict):
                fine = True
                for key, parse in _BUCKET_PARSERS.items():
                    fine &= _parsed(ctx, (*path, "shaping", direction, key), bucket.get(key),
                                    parse, f"shaping {direction} {key}")
                if direction == "egress":
                    fine = _shaper_fits(ctx, (*path, "shaping", direction), bucket) and fine
                    if fine:  # the settings together (an htb's ceil below its rate)
                        fine = _parsed(ctx, (*path, "shaping", direction), bucket,
                                       qdiscs.shaper_stage, "shaping egress")
                ok &= fine
        if entry.get("qdisc") is not None and (netem is not None or shaping):
            ctx.error((*path, "qdisc"), "qdisc names the root scheduler of a link without "
                      "netem or shaping; with them, netdecl builds the root itself (tbf, netem)")
            ok = False
        if ok and _well_shaped(entry):  # (else the schema says what is wrong)
            try:
                qdiscs.egress_stages(entry)
            except (units.UnitError, KeyError, TypeError) as exc:
                ctx.error((*path, "netem") if netem is not None else path, str(exc))


def _shaper_fits(ctx: Context, path: tuple[Any, ...], bucket: Mapping[str, Any]) -> bool:
    """``shaping.egress`` names only its own shaper's settings; a tbf needs its burst."""
    kind = bucket.get("kind") or qdiscs.TBF
    ok = True
    for key, owner in _ONLY.items():
        if bucket.get(key) is not None and owner != kind:
            ctx.error((*path, key), f"shaping egress {key} is a setting of {owner}, not of "
                      f"{kind}" + ("" if kind == qdiscs.HTB else " (say kind: htb)"))
            ok = False
    if kind == qdiscs.TBF and bucket.get("burst") is None:
        ctx.error(path, "shaping egress: a tbf needs its burst (e.g. burst: 32kb)")
        ok = False
    return ok


def _well_shaped(entry: Mapping[str, Any]) -> bool:
    """Mappings where the schema wants them: only then is the chain built as a whole."""
    netem, shaping = entry.get("netem"), entry.get("shaping")
    if netem is not None:
        model = netem.get("loss_model") if isinstance(netem, dict) else None
        if not isinstance(netem, dict) or (model is not None and not (
                isinstance(model, dict) and isinstance(model.get("gemodel"), dict))):
            return False
    if shaping is not None:
        if not isinstance(shaping, dict) or not all(
                isinstance(shaping.get(d), (dict, type(None))) for d in ("egress", "ingress")):
            return False
    return True


def _parsed(ctx: Context, path: tuple[Any, ...], value: Any,
            parse: Callable[[Any, str], object], what: str) -> bool:
    if value is None:
        return True
    try:
        parse(value, what)
    except units.UnitError as exc:
        ctx.error(path, str(exc))
        return False
    return True


def build_qdiscs(topology: Topology, data: dict[str, Any], doc: Document) -> None:
    ends = [end for i, item in enumerate(data.get("links") or [])
            for end in LINK_KINDS[item["kind"]].ends(item, item.get("namespace", ROOT),
                                                     ("links", i))]
    for end in ends:
        entry = end.entry
        if not declares_tc(entry):
            continue
        ns, name, where = end.namespace, end.name, doc.value_pos(end.path)
        stages = qdiscs.egress_stages(entry)
        made: list[NetObject] = []
        if stages:
            made.append(Qdisc(ns, name, EGRESS, stages))
        shaper = qdiscs.ingress_stage(entry)
        if shaper is not None:
            # as the CNI bandwidth plugin: an ifb of the topology's, shaped on its egress, and
            # the link's ingress redirected to it
            ifb = ifb_for(ns, name)
            made += [Link(ns, ifb, IFB), Qdisc(ns, ifb, EGRESS, (shaper,)),
                     Qdisc(ns, name, INGRESS, redirect=ifb)]
        for obj in made:
            topology.add(obj)
            topology.positions[obj.key] = where
