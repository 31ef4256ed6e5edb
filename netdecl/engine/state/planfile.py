"""The plan file: the one module that knows how a plan is written down and read back.

A plan is JSON (`plan --json`, `plan --out`, the journal's intent lines). A saved plan
(`plan --out PLAN`) adds the topology it was made from, as text, and carries a fingerprint of
the observed state: `apply PLAN` re-validates that topology, re-plans against the host as it is
now, and refuses unless the host is unchanged (same fingerprint) and the new plan has exactly
the saved actions, so an edited plan file can never run actions its topology did not ask for.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netdecl.engine.planner.plan import SYMBOLS, Action, Conflict, Op, Plan, Reason
from netdecl.engine.state.statedir import write_json_atomically
from netdecl.errors import NetdeclError
from netdecl.kinds import object_from_dict
from netdecl.model import NetObject, Topology

PLAN_FORMAT = "netdecl-plan/1"
# A saved plan carries its topology's text (at most the loader's 10 MiB) and its actions: a
# plan of 500 namespaces is ~3 MB. The bounds keep a hostile file from costing gigabytes of
# memory or a RecursionError; real plans nest 6 levels deep.
MAX_PLAN_BYTES = 64 * 1024 * 1024
MAX_PLAN_DEPTH = 32


class StalePlan(NetdeclError):
    """A saved plan no longer matches the host or its own topology: nothing was changed."""


# -- actions and plans as JSON -------------------------------------------------------------------

def _encode_object(obj: NetObject | None) -> dict[str, Any] | None:
    return obj.to_dict() if obj is not None else None


def _decode_object(data: dict[str, Any] | None) -> NetObject | None:
    return object_from_dict(data) if data is not None else None


def _plain(value: Any) -> Any:
    """Make a change value JSON-friendly (NAT rule tuples, vxlan parameters...)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def action_to_json(action: Action) -> dict[str, Any]:
    return {
        "op": action.op.value,
        "symbol": SYMBOLS[action.op],
        "type": action.type,
        "key": list(action.key),
        "object": action.describe(),
        "before": _encode_object(action.before),
        "after": _encode_object(action.after),
        "peer_before": _encode_object(action.peer_before),
        "peer_after": _encode_object(action.peer_after),
        "changes": {k: [_plain(v[0]), _plain(v[1])] for k, v in action.changes.items()},
        "reason": action.reason,  # for people; "why" is the one to decide on
        "why": action.why.value,
        "detail": action.detail,
    }


def action_from_json(data: dict[str, Any]) -> Action:
    return Action(
        op=Op(data["op"]), key=tuple(data["key"]), before=_decode_object(data["before"]),
        after=_decode_object(data["after"]), peer_before=_decode_object(data.get("peer_before")),
        peer_after=_decode_object(data.get("peer_after")), changes=dict(data.get("changes", {})),
        why=Reason(data.get("why", Reason.NONE.value)), detail=data.get("detail", ""),
    )


def plan_to_json(plan: Plan) -> dict[str, Any]:
    add, change, destroy = plan.counts()
    return {
        "format": PLAN_FORMAT,
        "topology": plan.topology,
        "fingerprint": plan.fingerprint,
        "summary": {"add": add, "change": change, "destroy": destroy},
        "conflicts": [{"key": list(c.key), "message": c.message} for c in plan.conflicts],
        "notes": list(plan.notes),
        "actions": [action_to_json(a) for a in plan.actions],
    }


def plan_from_json(data: dict[str, Any]) -> Plan:
    if data.get("format") != PLAN_FORMAT:
        raise ValueError(f"not a netdecl plan (format {data.get('format')!r})")
    return Plan(
        topology=data["topology"],
        actions=[action_from_json(a) for a in data["actions"]],
        conflicts=[Conflict(tuple(c["key"]), c["message"]) for c in data.get("conflicts", [])],
        notes=list(data.get("notes", [])),
        known_fingerprint=data.get("fingerprint", ""),
    )


def fingerprint(observed: Topology) -> str:
    """A digest of the observed state a plan was computed against (stale-plan detection)."""
    items = sorted((repr(k), json.dumps(o.to_dict(), sort_keys=True, default=str))
                   for k, o in observed.objects.items())
    digest = hashlib.sha256()
    for k, v in items:
        digest.update(k.encode())
        digest.update(v.encode())
    return digest.hexdigest()


# -- saved plans ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SavedPlan:
    """A plan saved with `plan --out`, as read back (its actions kept as saved, undecoded)."""

    path: str
    source: str  # the topology file it was made from (absolute path, for diagnostics)
    source_text: str  # that file's text: apply re-validates it and plans again
    fingerprint: str
    actions: list[dict[str, Any]]


def save(path: Path, plan: Plan, source: str, source_text: str) -> None:
    data = plan_to_json(plan)
    data["source"] = source
    data["source_text"] = source_text
    write_json_atomically(path, data)


def read(path: str) -> SavedPlan | None:
    """The saved plan at ``path``; None when the file is not one (a topology, say, or not a
    regular file: the loader says what is wrong with it). Raises NetdeclError for a plan file
    that is too big, too deep or lacks what apply needs."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or os.pread(fd, 1, 0) != b"{":
            return None
        if info.st_size > MAX_PLAN_BYTES:
            raise NetdeclError(f"{path} is {info.st_size} bytes; a saved plan is at most "
                               f"{MAX_PLAN_BYTES} bytes")
        raw = os.pread(fd, MAX_PLAN_BYTES + 1, 0)
    finally:
        os.close(fd)
    if len(raw) > MAX_PLAN_BYTES:
        raise NetdeclError(f"{path} grew over {MAX_PLAN_BYTES} bytes while being read")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise NetdeclError(f"{path} is nested too deeply to be a saved plan") from None
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        return None
    if _depth(data) > MAX_PLAN_DEPTH:
        raise NetdeclError(f"{path} is nested more than {MAX_PLAN_DEPTH} levels deep; a saved "
                           f"plan is not")
    try:
        saved = SavedPlan(path=path, source=data["source"], source_text=data["source_text"],
                          fingerprint=data["fingerprint"], actions=data["actions"])
        if not (isinstance(saved.source, str) and isinstance(saved.source_text, str)
                and isinstance(saved.fingerprint, str) and isinstance(saved.actions, list)):
            raise TypeError
    except (KeyError, TypeError):
        raise NetdeclError(f"{path} is not a complete saved plan; make one with "
                           f"`netdecl plan --out PLAN FILE`") from None
    return saved


def _depth(data: Any) -> int:
    """How deeply lists and objects nest in ``data`` (iterative: no recursion to exhaust)."""
    deepest = 0
    todo = [(data, 1)]
    while todo:
        node, level = todo.pop()
        deepest = max(deepest, level)
        if deepest > MAX_PLAN_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node
        todo += [(c, level + 1) for c in children if isinstance(c, (dict, list))]
    return deepest


def check_fresh(saved: SavedPlan, plan: Plan) -> None:
    """``plan`` is the saved plan's topology planned against the host now (its fingerprint
    set): refuse unless the host did not change and the actions are exactly the saved ones."""
    if saved.fingerprint != plan.fingerprint:
        raise StalePlan("the saved plan is stale: the host changed since it was made; "
                        "run `netdecl plan --out` again")
    if [action_to_json(a) for a in plan.actions] != saved.actions:
        raise StalePlan("the saved plan's actions are not what its topology plans against this "
                        "host (edited, or made by another netdecl version): nothing was changed")
