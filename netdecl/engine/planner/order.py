"""Order actions by their dependencies (graphlib), deletes first and in reverse.

Two phases: first everything that removes (routes before the addresses and links they use;
a namespace that goes before the links with an end in it, see _teardown_deps), then everything
that builds (namespaces before the links in
them, bridges before their ports, addresses and link-up before routes). Sysctls go where the
kernel needs them: one of the whole namespace (`all`, `default`, `ip_forward`) before the links
of its namespace, because the kernel gives a new link `default`'s values and an existing one
`all`'s (set after eth0 is made, `all.disable_ipv6: 1` would turn IPv6 off on eth0 and drop
its addresses); one of a link right after that link is made and before its addresses (an
address needs `eth0.disable_ipv6: 0` in force). Per-namespace barrier
nodes ("all links of ns X are done") keep the graph linear in size even for hundreds of
namespaces, where "every route depends on every link" would be quadratic.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from graphlib import TopologicalSorter

from netdecl.engine.planner.plan import ADOPT, DELETE, Action
from netdecl.kinds import KINDS, Stage
from netdecl.model import ExternalLink, Key, Link, Route, Sysctl


def _stage(action: Action) -> int:
    """The kind's build stage within its namespace (kinds.py); teardown runs them backwards."""
    return KINDS[action.type].stage


def order(actions: list[Action]) -> list[Action]:
    # adoption only marks and records what exists (a route is rewritten as it is): it goes
    # first, namespaces before what is in them, so everything after works on owned objects
    adopt = sorted((a for a in actions if a.op == ADOPT), key=lambda a: (_stage(a), repr(a.key)))
    teardown = [a for a in actions if a.op == DELETE]
    build = [a for a in actions if a.op not in (DELETE, ADOPT)]
    return adopt + _sorted(teardown, _teardown_deps) + _sorted(build, _build_deps)


def _sorted(actions: list[Action],
            deps_of: Callable[[Action, dict[Key, int]], list[Dep]]) -> list[Action]:
    actions = sorted(actions, key=lambda a: (_stage(a), repr(a.key)))
    by_key = {a.key: i for i, a in enumerate(actions)}
    for i, a in enumerate(actions):  # a veth pair's action stands for both of its ends
        for end in (a.peer_after, a.peer_before):
            if end is not None:
                by_key.setdefault(end.key, i)
    graph: TopologicalSorter = TopologicalSorter()
    for i, action in enumerate(actions):
        node = ("action", i)
        graph.add(node)
        for dep, barrier in deps_of(action, by_key):
            graph.add(node, dep)
            if barrier is not None:  # a barrier node waits for the action that feeds it
                graph.add(barrier, node)
    out = []
    for node in graph.static_order():
        if node[0] == "action":
            out.append(actions[node[1]])
    return out


def _ns_of_ends(action: Action) -> set[str]:
    names = {action.namespace}
    for end in (action.peer_after, action.peer_before):
        if end is not None:
            names.add(end.namespace)
    return names


Dep = tuple[Hashable, Hashable | None]


def _build_deps(action: Action, by_key: dict[Key, int]) -> list[Dep]:
    """(node this action waits for, barrier node this action feeds)."""
    ns = action.namespace
    deps: list[Dep] = []

    def after_action(key: tuple) -> None:
        if key in by_key:
            deps.append((("action", by_key[key]), None))

    stage = _stage(action)
    if stage == Stage.NAMESPACE:
        return [(("start",), ("ns-ready", ns))]
    for name in _ns_of_ends(action):
        after_action(("namespace", name))
    if isinstance(action.after, Sysctl):
        # the namespace's own feed the barrier its links wait for; a link's waits for that
        # link and feeds the barrier its addresses wait for
        link = action.after.per_link
        if link is None:
            deps.append((("start",), ("ns-sysctls", ns)))
        else:
            after_action(("link", ns, link))
            deps.append((("start",), ("link-sysctls", ns, link)))
        return deps
    if stage == Stage.LINK:
        for name in _ns_of_ends(action):  # made under the namespace's sysctls
            deps.append((("ns-sysctls", name), None))
        for end in (action.after, action.peer_after):
            if isinstance(end, Link):
                deps.append((("start",), ("links-ready", end.namespace)))
                if end.master:
                    after_action(("link", end.namespace, end.master))
                for used in end.spec.uses() if end.spec is not None else ():
                    after_action(("link", end.namespace, used))
                for used_ns, used in end.spec.uses_elsewhere() if end.spec is not None else ():
                    after_action(("namespace", used_ns))  # made there first
                    after_action(("link", used_ns, used))
                    after_action(("external", used_ns, used))
            elif isinstance(end, ExternalLink):  # the host's NIC made a port of our bridge
                deps.append((("start",), ("links-ready", end.namespace)))
                if end.master:
                    after_action(("link", end.namespace, end.master))
                left = action.before.master if isinstance(action.before, ExternalLink) else None
                if left and left != end.master:  # after the master it leaves is deleted
                    after_action(("link", end.namespace, left))
    elif stage == Stage.ADDRESS:
        after_action(("link", ns, action.key[2]))
        deps.append((("ns-sysctls", ns), None))
        deps.append((("link-sysctls", ns, action.key[2]), None))
        deps.append((("start",), ("addrs-ready", ns)))
    elif stage == Stage.AFTER_LINKS:
        # NAT rules name links (and read better after them)
        deps.append((("links-ready", ns), None))
    else:  # Stage.AFTER_ADDRESSES: routes, rules, fdb, neighbours
        deps.append((("links-ready", ns), None))
        deps.append((("addrs-ready", ns), None))
        if isinstance(action.after, Route):
            # a gateway may be on-link only through a route without one (Calico's
            # `169.254.1.1 dev eth0` before `default via 169.254.1.1`)
            if action.after.via is None:
                deps.append((("start",), ("direct-routes-ready", ns)))
            else:
                deps.append((("direct-routes-ready", ns), None))
    return deps


def _teardown_deps(action: Action, by_key: dict[Key, int]) -> list[Dep]:
    ns = action.namespace
    stage = _stage(action)
    if stage >= Stage.AFTER_LINKS:
        return [(("start",), ("leaves-gone", ns))]
    if stage == Stage.ADDRESS:
        return [(("leaves-gone", ns), ("addrs-gone", ns))]
    if stage == Stage.LINK:
        deps: list[Dep] = []
        before = action.before
        if isinstance(before, Link) and before.spec is not None and before.spec.given_back():
            # a host's link taken (a host-device's NIC) goes back before its namespace
            # does: the kernel would delete a veth with it, and give a NIC back under the
            # name it has there
            return [(("leaves-gone", ns), ("taken-back", ns)), (("addrs-gone", ns), None)]
        for name in _ns_of_ends(action):
            deps.append((("leaves-gone", name), ("links-gone", name)))
            deps.append((("addrs-gone", name), None))
            if ("namespace", name) in by_key:
                # Namespace first: the kernel tears down every link in it, and a veth's other
                # end with it, in one batched cleanup instead of an RTM_DELLINK and an RCU
                # grace period per veth; this action then waits for what is left to vanish
                # (kernelhost._delete_link). The planner deletes a namespace only when all of
                # its links are ours.
                deps.append((("action", by_key[("namespace", name)]), None))
        return deps
    # namespace: after the addresses and leaves in it (the planner leaves those to the
    # namespace anyway), before its links (above)
    return [(("addrs-gone", ns), None), (("leaves-gone", ns), None), (("taken-back", ns), None)]
