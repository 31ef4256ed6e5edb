"""The planner: desired vs observed -> an ordered Plan. Pure (no I/O), testable without root."""

from __future__ import annotations

from netdecl.engine.planner.diff import diff
from netdecl.engine.planner.order import order
from netdecl.engine.planner.plan import Action, Conflict, Plan
from netdecl.engine.record import OwnershipRecord
from netdecl.model import NatTable, Sysctl, Topology, ns_label

__all__ = ["Action", "Conflict", "Plan", "make_plan", "forwarding_notes"]


def make_plan(desired: Topology, observed: Topology, record: OwnershipRecord,
              adopt: bool = False) -> Plan:
    """``adopt``: take over declared objects that exist and belong to nobody (planner/adopt.py)
    instead of reporting them as conflicts."""
    actions, conflicts = diff(desired, observed, record, adopt=adopt)
    return Plan(
        topology=desired.name,
        actions=order(actions),
        conflicts=conflicts,
        notes=forwarding_notes(desired, observed),
    )


def forwarding_notes(desired: Topology, observed: Topology) -> list[str]:
    """Explain why NAT will not forward when the sysctls it depends on are off."""
    notes = []
    for table in desired.of_type(NatTable):
        if not table.rules:
            continue
        ns = table.namespace
        want = desired.get(("sysctl", ns, "net.ipv4.ip_forward"))
        now = observed.get(("sysctl", ns, "net.ipv4.ip_forward"))
        value = want.value if isinstance(want, Sysctl) else (
            now.value if isinstance(now, Sysctl) else None)
        if value != "1":
            notes.append(
                f"nat in {ns_label(ns)}: net.ipv4.ip_forward is {value or 'unset'}, so the "
                f"kernel will not forward packets between links there and masquerade/port "
                f"forwards to other namespaces will not work; declare "
                f"net.ipv4.ip_forward: 1 in that namespace's sysctls")
    return notes
