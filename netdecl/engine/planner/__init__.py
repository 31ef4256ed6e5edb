"""The planner: desired vs observed -> an ordered Plan. Pure (no I/O), testable without root.

diff.py finds the actions and conflicts (one rule per kind), adopt.py which existing objects
`--adopt` takes over, order.py puts the actions in dependency order, plan.py is the plan as
data; make_plan (here) puts them together, with the notes a plan carries."""

from __future__ import annotations

from collections.abc import Mapping

from netdecl.engine.planner.diff import diff
from netdecl.engine.planner.order import order
from netdecl.engine.planner.plan import Action, Conflict, Plan
from netdecl.engine.state.record import OwnershipRecord
from netdecl.model import NatTable, Sysctl, Topology, ns_label
from netdecl.topology.checks import FORWARDING

__all__ = ["Action", "Conflict", "Plan", "make_plan", "forwarding_notes"]


def make_plan(desired: Topology, observed: Topology, record: OwnershipRecord,
              adopt: bool = False, managed: Mapping[str, str] | None = None) -> Plan:
    """``adopt``: take over declared objects that exist and belong to nobody (planner/adopt.py)
    instead of reporting them as conflicts. ``managed``: which root-namespace links another
    network manager manages (name: manager), conflicts when declared."""
    actions, conflicts = diff(desired, observed, record, adopt=adopt, managed=managed)
    return Plan(
        topology=desired.name,
        actions=order(actions),
        conflicts=conflicts,
        notes=forwarding_notes(desired, observed),
    )


def forwarding_notes(desired: Topology, observed: Topology) -> list[str]:
    """Explain why NAT will not forward when the sysctls it depends on are off: IPv4
    forwarding for the table's IPv4 rules, IPv6 forwarding for its IPv6 ones."""
    notes = []
    for table in desired.of_type(NatTable):
        ns = table.namespace
        for family in sorted(table.forwarded_families()):
            names = FORWARDING[family]
            value = _declared_or_observed(desired, observed, ns, names)
            if value != "1":
                what = "packets" if family == 4 else "IPv6 packets"
                notes.append(
                    f"nat in {ns_label(ns)}: {names[0]} is {value or 'unset'}, so the kernel "
                    f"will not forward {what} between links there and masquerade/port "
                    f"forwards to other namespaces will not work; declare {names[0]}: 1 in "
                    f"that namespace's sysctls")
    return notes


def _declared_or_observed(desired: Topology, observed: Topology, ns: str,
                          names: tuple[str, ...]) -> str | None:
    """The value the file gives any of ``names`` (one switch under several names), else the
    one the kernel has for the first."""
    for name in names:
        want = desired.get(("sysctl", ns, name))
        if isinstance(want, Sysctl):
            return want.value
    now = observed.get(("sysctl", ns, names[0]))
    return now.value if isinstance(now, Sysctl) else None
