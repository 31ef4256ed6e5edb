"""Plans and states as text for people and as JSON for machines.

``color=True`` paints the action symbols (+ green, - red, ~ yellow) with ANSI escapes; the
caller decides when (tools/console.py: a terminal, and NO_COLOR unset).
"""

from __future__ import annotations

import json
from typing import Any

from netdecl.engine.planner.plan import ADOPT, CREATE, DELETE, MODIFY, SYMBOLS, Action, Plan
from netdecl.engine.state.planfile import plan_to_json
from netdecl.model import Link, NatTable, Qdisc, Route, qualify
from netdecl.tc.qdiscs import describe_qdisc

_GREEN, _RED, _YELLOW, _RESET = "\033[32m", "\033[31m", "\033[33m", "\033[0m"
_PAINT = {"+": _GREEN, "-": _RED, "~": _YELLOW}


def paint_symbol(symbol: str, color: bool) -> str:
    """'+', '-', '~' in their colour; '-/+' as a red minus and a green plus."""
    if not color:
        return symbol
    return "".join(f"{_PAINT[c]}{c}{_RESET}" if c in _PAINT else c for c in symbol)


def _fmt(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _object_details(action: Action) -> str:
    obj = action.obj
    if isinstance(obj, Link):
        bits = [obj.kind]
        if obj.master:
            bits.append(f"master {obj.master}")
        if obj.mtu:
            bits.append(f"mtu {obj.mtu}")
        peer = action.peer_after or action.peer_before
        name = obj.describe()
        if peer is not None:
            name += f" <-> {qualify(peer.namespace, peer.name)}"  # type: ignore[attr-defined]
        return f"{name} ({', '.join(bits)})"
    if isinstance(obj, Route) and action.op != DELETE:
        bits = []
        if obj.via:
            bits.append(f"via {obj.via}")
        if obj.dev:
            bits.append(f"dev {obj.dev}")
        if obj.type and obj.type != "unicast":
            bits.append(obj.type)
        return obj.describe() + (f" ({', '.join(bits)})" if bits else "")
    if isinstance(obj, Qdisc) and action.op == CREATE:
        return f"{obj.describe()} ({describe_qdisc(obj)})"
    return obj.describe()


def _rule_lines(action: Action, color: bool) -> list[str]:
    before = action.before.rules if isinstance(action.before, NatTable) else ()
    after = action.after.rules if isinstance(action.after, NatTable) else ()
    before = before or ()
    after = after or ()
    lines = []
    for rule in before:
        if rule not in after:
            lines.append(f"      {paint_symbol('-', color)} {rule.describe()}")
    for rule in after:
        if rule not in before:
            lines.append(f"      {paint_symbol('+', color)} {rule.describe()}")
    return lines


def action_line(action: Action, color: bool = False) -> list[str]:
    """The action as people read it: one line, plus a line per NAT rule it adds or removes."""
    symbol = SYMBOLS[action.op]
    verb = "adopt " if action.op == ADOPT else ""
    head = (f"  {' ' * (3 - len(symbol))}{paint_symbol(symbol, color)} "
            f"{verb}{_object_details(action)}")
    if action.op == MODIFY and action.type != "nat":
        changes = ", ".join(f"{k} {_fmt(v[0])} -> {_fmt(v[1])}"
                            for k, v in action.changes.items())
        head += f": {changes}"
    if action.reason:
        head += f"  [{action.reason}]"
    lines = [head]
    if action.type == "nat":
        if action.op == MODIFY and action.before is not None and \
                getattr(action.before, "rules", ()) is None:
            lines.append("      (the live table was edited by hand; it is rewritten whole)")
        lines += _rule_lines(action, color)
    return lines


def plan_text(plan: Plan, color: bool = False) -> str:
    lines: list[str] = []
    conflict = f"{_RED}conflict:{_RESET}" if color else "conflict:"
    for found in plan.conflicts:
        lines.append(f"{conflict} {found.message}")
    if plan.conflicts:
        lines.append("")
    for action in plan.actions:
        lines += action_line(action, color)
    if plan.actions:
        lines.append("")
    for note in plan.notes:
        lines.append(f"note: {note}")
    add, change, destroy = plan.counts()
    if plan.actions:
        adopt = f", {plan.adoptions()} to adopt" if plan.adoptions() else ""
        lines.append(f"Plan: {add} to add, {change} to change, {destroy} to destroy{adopt}.")
    elif not plan.conflicts:
        lines.append(f"No changes. Topology {plan.topology} matches the host.")
    if plan.conflicts:  # never "matches the host": apply would refuse
        n = len(plan.conflicts)
        lines.append(f"{n} conflict{'s' if n != 1 else ''}: apply changes nothing until "
                     f"{'they are' if n != 1 else 'it is'} resolved.")
    return "\n".join(lines)


def plan_json(plan: Plan) -> str:
    return json.dumps(plan_to_json(plan), indent=2, sort_keys=False)


__all__ = ["action_line", "paint_symbol", "plan_json", "plan_text"]
