"""The diff rule of traffic control (kind ``qdisc``): pure, like the rest of the planner.

A qdisc on a link is never netdecl's the way a link is: the link keeps some root qdisc all
its life (the kernel's default, or one someone set by hand), so netdecl only replaces the root
qdisc a file declares, and the ownership record keeps the one that was there before
(``qdisc_originals``, claimed by engine/claims.py on the first change) to put back when the
declaration goes (destroy, prune, rollback). A change of parameters is a MODIFY: the backend
replaces in place (the same kind at the same handle is a ``tc qdisc change``), never a new
link and never a moment without a qdisc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netdecl.engine.planner.plan import CREATE, MODIFY, Action, Reason
from netdecl.kinds import Kind
from netdecl.model import INGRESS, Qdisc, qualify
from netdecl.tc.qdiscs import KERNEL_DEFAULT, describe_qdisc

if TYPE_CHECKING:
    from netdecl.engine.planner.diff import _Diff


def chain_change(now: Qdisc | None, want: Qdisc) -> dict[str, list]:
    return {"qdisc": [describe_qdisc(now) if now is not None else None, describe_qdisc(want)]}


def qdisc_rule(d: _Diff, kind: Kind) -> None:
    desired = {o.key: o for o in d.desired.of_type(Qdisc)}
    observed = {o.key: o for o in d.observed.of_type(Qdisc)}
    for key, want in sorted(desired.items()):
        link_key = ("link", want.namespace, want.link)
        now = observed.get(key)
        if link_key in d.rebuilt_links or now is None:
            # a link made (again) by this plan: its root qdisc is the kernel's default
            d.add(Action(CREATE, key, after=want,
                         why=Reason.DEPENDENCY_REBUILT if now is not None else Reason.NONE))
        elif want.direction == INGRESS and key[1:] not in d.record.qdisc_originals:
            d.conflict(key, f"{qualify(want.namespace, want.link)} already has an ingress "
                            f"qdisc ({now.original}) that topology {d.topology} did not make: "
                            "netdecl will not replace it for ingress shaping (its filters may "
                            "be someone's policy); delete it or drop shaping.ingress")
        elif now.stages != want.stages or now.redirect != want.redirect:
            d.add(Action(MODIFY, key, before=now, after=want, changes=chain_change(now, want)))
    for (ns, link, direction), original in sorted(d.record.qdisc_originals.items()):
        key = ("qdisc", ns, link, direction)
        now = observed.get(key)
        if key in desired or now is None or ns in d.deleted_namespaces \
                or ("link", ns, link) in d.rebuilt_links:
            continue  # declared, or gone with its link: nothing to put back
        what = "the kernel's default" if original == KERNEL_DEFAULT else original.split(":")[0]
        if direction == INGRESS:
            what = "no ingress qdisc"
        d.add(Action(MODIFY, key, before=now, after=Qdisc(ns, link, direction, original=original),
                     changes={"qdisc": [describe_qdisc(now), f"{what}, as before netdecl"]},
                     why=Reason.RESTORE_ORIGINAL))
