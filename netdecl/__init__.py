"""netdecl: a declarative reconciler for Linux host networking.

The Python API (netdecl/api.py) is re-exported here lazily (PEP 562): ``netdecl.load``,
``netdecl.plan``, ``netdecl.apply``... import it on first use, so ``import netdecl`` and
``netdecl --help`` do not pay for the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ provides it
    from netdecl.api import (
        Action,
        ActionFailed,
        ApplyFailed,
        ApplyResult,
        Conflict,
        Diagnostic,
        EnvironmentProblem,
        Events,
        InvalidTopology,
        NetdeclError,
        NotConfirmed,
        PendingApply,
        Plan,
        PlanConflicts,
        ProbeResult,
        RollbackFailed,
        Scope,
        StalePlan,
        Topology,
        UnfinishedApply,
        VerificationFailed,
        VerifyResult,
        apply,
        confirm,
        destroy,
        enter_sandbox,
        load,
        plan,
        probe_gate,
        read_plan,
        read_var_file,
        remove_sandbox,
        render,
        rollback,
        salvage,
        sandboxes,
        scope,
        show,
        unfinished,
        verify,
        wait_for_links,
    )

# the names netdecl.api exports (tests/test_api_unit.py checks that they agree)
__all__ = [
    "__version__",
    "load", "plan", "read_plan", "apply", "destroy", "rollback", "salvage", "unfinished",
    "confirm", "show", "scope", "verify", "probe_gate", "enter_sandbox", "sandboxes",
    "remove_sandbox", "render", "read_var_file", "wait_for_links",
    "Action", "ApplyResult", "Conflict", "Events", "PendingApply", "Plan", "ProbeResult",
    "Scope", "Topology", "VerifyResult", "Diagnostic", "NetdeclError", "InvalidTopology",
    "EnvironmentProblem", "PlanConflicts", "StalePlan", "UnfinishedApply", "ActionFailed",
    "ApplyFailed", "VerificationFailed", "NotConfirmed", "RollbackFailed",
]
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from netdecl import api

        return getattr(api, name)
    raise AttributeError(f"module 'netdecl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
