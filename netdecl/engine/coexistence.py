"""Living beside NetworkManager and systemd-networkd (issue 28): what the engine decides about
the other managers of the host's links; backends/managers.py reads and writes their files.

- A declared link of the root namespace that another manager manages, and that this topology
  does not own, is a plan-time conflict (planner/diff.py, from ``managed_names``): two
  programs configuring one link undo each other's work forever.
- The links a topology makes in the root namespace are marked unmanaged for both, before the
  apply creates them (so neither ever takes one up; the temporary names links are born under
  are covered while the apply runs), and exactly the declared ones after it;
  a failed apply puts the marks back as they were, and destroy (nothing declared) removes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from netdecl.backends.managers import Managers
from netdecl.engine.ownership import owns
from netdecl.engine.state.record import OwnershipRecord
from netdecl.model import ROOT, Link, Topology


def managed_names(observed: Topology, managers: Managers | None) -> dict[str, str]:
    """The root namespace's links another manager manages: name -> manager."""
    if managers is None:
        return {}
    by_index = managers.managed()
    if not by_index:
        return {}
    return {o.name: by_index[o.ifindex] for o in observed.of_type(Link)
            if o.namespace == ROOT and o.ifindex in by_index}


def _made_here(topology: Topology) -> set[str]:
    """The links netdecl makes in the root namespace for ``topology`` (not its NICs)."""
    return {o.name for o in topology.of_type(Link) if o.namespace == ROOT}


@contextmanager
def marks_around_apply(managers: Managers | None, desired: Topology, observed: Topology,
                       record: OwnershipRecord, notice: Callable[[str], None]) -> Iterator[None]:
    """Mark before, settle after, restore on failure (see the module's docstring)."""
    if managers is None:
        yield
        return
    before = managers.marked(desired.name)
    owned_now = {o.name for o in observed.of_type(Link)
                 if o.namespace == ROOT and owns(o, observed, record)}
    wanted = _made_here(desired)
    for problem in managers.mark(desired.name, wanted | owned_now, creating=True):
        notice(f"netdecl: {problem}")
    try:
        yield
    except BaseException:
        for problem in managers.restore(desired.name, before):
            notice(f"netdecl: {problem}")
        raise
    for problem in managers.mark(desired.name, wanted):
        notice(f"netdecl: {problem}")


def settle_marks(managers: Managers | None, desired: Topology,
                 notice: Callable[[str], None]) -> None:
    """Marks for a topology whose plan has nothing to do (a mark lost, or left by an older
    netdecl): exactly its declared links."""
    if managers is not None:
        for problem in managers.mark(desired.name, _made_here(desired)):
            notice(f"netdecl: {problem}")
