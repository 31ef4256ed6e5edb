"""The command line. The one place that turns exceptions into exit codes.

Heavy modules (pyroute2, the planner, nft) are imported inside the commands that need them, so
`netdecl --help` and `validate` stay fast, and `--sandbox` can enter its namespaces while the
process is still single-threaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netdecl.errors import EnvironmentProblem, InvalidTopology, NetdeclError
from netdecl.exitcodes import ExitStatus

DESCRIPTION = """\
netdecl: declarative Linux host networking. A YAML topology (namespaces, bridges, veth pairs,
addresses, routes, sysctls, NAT) is compared with the live kernel; `plan` shows the ordered
changes, `apply` makes them (and rolls back on any failure), `destroy` removes what the topology
owns. netdecl never changes or deletes an object it did not create.
"""

EPILOG = """\
exit codes: 0 success / no changes; 1 failure or conflict; 2 changes pending (plan
--detailed-exitcode); 3 invalid topology (nothing changed); 4 rollback failed.

examples:
  netdecl validate topologies/docker-bridge.yaml
  netdecl --sandbox demo apply topologies/docker-bridge.yaml    # try it without touching the host
  netdecl plan --detailed-exitcode topo.yaml                      # drift check for GitOps
  netdecl plan --out plan.json topo.yaml && netdecl apply plan.json
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netdecl", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", metavar="DIR",
                        help="where ownership records and journals live "
                             "(default $NETDECL_STATE_DIR or /var/lib/netdecl)")
    parser.add_argument("--sandbox", metavar="NAME",
                        help="run the command inside a persistent private network + mount "
                             "namespace NAME (created on first use), leaving the host untouched")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", help="check a topology file; change nothing")
    p.add_argument("file")

    p = sub.add_parser("plan", help="show what apply would change",
                       description="Compare the topology with the live kernel and print the "
                                   "ordered actions apply would take.")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--out", metavar="PLAN", help="save the plan (with a fingerprint of the "
                                                 "observed state) for `apply PLAN`")
    p.add_argument("--detailed-exitcode", action="store_true",
                   help="exit 2 when there are changes, 0 when there are none")

    p = sub.add_parser("apply", help="make the host match the topology (or a saved plan)",
                       description="Execute the plan, verify the result, and roll back "
                                   "everything on any failure, Ctrl-C or SIGTERM.")
    p.add_argument("file", help="a topology file, or a plan saved with `plan --out`")
    p.add_argument("--lock-timeout", type=float, default=5.0, metavar="SECS",
                   help="how long to wait for another apply to finish (default 5)")
    p.add_argument("--json", action="store_true", help="print the executed plan as JSON")
    p.add_argument("--confirm-timeout", type=float, default=None, metavar="SECS",
                   help="after applying and verifying, wait SECS for `netdecl confirm` (or "
                        "Enter, on a terminal); roll back by itself if none comes")

    p = sub.add_parser("destroy", help="remove everything the topology owns",
                       description="Delete every namespace, link, route and NAT table the "
                                   "topology created and restore the sysctls it changed.")
    p.add_argument("file")
    p.add_argument("--lock-timeout", type=float, default=5.0, metavar="SECS")

    p = sub.add_parser("rollback",
                       help="restore the state before an apply that was interrupted (crash)")
    p.add_argument("--lock-timeout", type=float, default=5.0, metavar="SECS")

    p = sub.add_parser("confirm", help="keep an apply that waits for confirmation "
                                       "(apply --confirm-timeout)")
    p.add_argument("--name", metavar="TOPOLOGY",
                   help="which topology's apply (needed only when several are waiting)")

    p = sub.add_parser("show", help="print live state in the topology format")
    p.add_argument("--namespace", action="append", default=None, metavar="NS",
                   help="namespace to include (repeatable; default: root and all named ones)")
    p.add_argument("--name", default="imported", help="topology name to put in the output")

    p = sub.add_parser("sandbox", help="manage sandboxes used by --sandbox")
    sandbox_sub = p.add_subparsers(dest="sandbox_command", metavar="ACTION")
    sandbox_sub.add_parser("list", help="list sandboxes")
    rm = sandbox_sub.add_parser("rm", help="remove a sandbox and everything in it")
    rm.add_argument("name")
    _add_traffic_parsers(sub)
    return parser


def _add_traffic_parsers(sub: Any) -> None:
    """verify, explain, graph: look at a topology's traffic and shape (change nothing)."""
    p = sub.add_parser("verify", help="run the topology's probes with real traffic",
                       description="Run every probe of the topology from inside its source "
                                   "namespace (starting a short-lived listener where nothing "
                                   "listens). Exit 0 when all pass, 1 otherwise.")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--timeout", type=float, default=2.0, metavar="SECS",
                   help="per-probe timeout (default 2)")

    p = sub.add_parser("explain", help="show the path a packet takes, hop by hop",
                       description="Follow one packet from NS to DEST through the live kernel: "
                                   "routes, veths, bridges and netdecl's NAT rules. Exit 0 "
                                   "when it is delivered or leaves the topology, 1 if dropped.")
    p.add_argument("--from", dest="source", required=True, metavar="NS",
                   help="namespace the packet starts in (root for the host)")
    p.add_argument("destination", metavar="DEST[:PORT]")
    p.add_argument("file", nargs="?", help="topology: limits the scope to its namespaces and "
                                           "takes NAT rules from its table")
    p.add_argument("--proto", choices=("tcp", "udp", "icmp"),
                   help="default: tcp with a port, icmp without")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("graph", help="draw the topology (dot, mermaid or svg)")
    p.add_argument("file")
    p.add_argument("--format", choices=("dot", "mermaid", "svg"), default="dot")


# -- helpers ---------------------------------------------------------------------------------

def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _state_root(args: argparse.Namespace) -> Path:
    from netdecl.engine.statedir import state_dir

    return state_dir(args.state_dir)


def _require_privileges(command: str, why: str = "changes the kernel's network state") -> None:
    """Commands that change state or enter namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN;
    say so in one line instead of failing halfway with EPERM."""
    needed = {12: "CAP_NET_ADMIN", 21: "CAP_SYS_ADMIN"}
    try:
        with open("/proc/self/status") as fh:
            caps = next(int(line.split()[1], 16) for line in fh if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        caps = -1 if os.geteuid() == 0 else 0
    missing = [name for bit, name in needed.items() if not caps & (1 << bit)]
    if missing:
        raise EnvironmentProblem(
            f"{command} {why} and needs root "
            f"({' and '.join(missing)}); run it as root, or try it in a sandbox: "
            f"netdecl --sandbox demo {command} FILE")


def _load(path: str):
    from netdecl.topology.loader import load_topology

    topo = load_topology(path)
    for warning in topo.warnings:
        _err(warning)
    return topo


def _progress(number: int, total: int, action) -> None:
    if sys.stderr.isatty() or total >= 50:
        from netdecl.tools.render import action_line

        _err(f"[{number}/{total}]{action_line(action)[0]}")


# -- commands ----------------------------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    topo = _load(args.file)
    _out(f"{args.file}: valid topology {topo.name!r} ({len(topo.objects)} objects, "
         f"{len(topo.namespaces())} namespaces)")
    return ExitStatus.OK


def cmd_plan(args: argparse.Namespace) -> int:
    from netdecl.engine import service
    from netdecl.tools.render import plan_json, plan_text

    desired = _load(args.file)
    plan = service.plan(desired, _state_root(args))
    if args.out:
        service.save_plan(plan, Path(args.out), Path(args.file))
    _out(plan_json(plan) if args.json else plan_text(plan))
    if args.out and not args.json:
        _out(f"Saved the plan to {args.out}; `netdecl apply {args.out}` applies exactly it.")
    if plan.conflicts:
        return ExitStatus.FAILURE
    if args.detailed_exitcode and plan.actions:
        return ExitStatus.CHANGES_PENDING
    return ExitStatus.OK


def _events(as_json: bool = False):
    """How apply, destroy and rollback report while they work: plan and summary on stdout,
    progress and notices on stderr."""
    from netdecl.engine.service import Events
    from netdecl.tools.render import plan_json, plan_text

    def recovering(name: str, steps: int) -> None:
        _err(f"netdecl: an earlier apply of {name!r} did not finish ({steps} steps done); "
             f"rolling it back first")

    return Events(
        planned=lambda plan: _out(plan_json(plan) if as_json else plan_text(plan)),
        progress=_progress,
        notice=_err,
        recovering=recovering,
        recovered=lambda name: _err(f"netdecl: rolled back {name!r} to the state before "
                                    f"that apply"),
    )


def _refused(exc) -> int:
    """A plan with conflicts: show it, and say that nothing changed."""
    from netdecl.tools.render import plan_text

    _err(plan_text(exc.plan))
    _err(str(exc))
    return ExitStatus.FAILURE


def cmd_apply(args: argparse.Namespace) -> int:
    from netdecl.engine import service

    loaded = service.load_saved_plan(args.file)
    saved, desired = loaded if loaded is not None else (None, _load(args.file))
    _require_privileges("apply")
    try:
        result = service.apply(desired, _state_root(args), saved=saved,
                               lock_timeout=args.lock_timeout,
                               confirm_timeout=args.confirm_timeout, events=_events(args.json))
    except service.PlanConflicts as exc:
        return _refused(exc)
    if not result.plan.actions:
        _out(f"No changes. Topology {desired.name} matches the host.")
    elif not args.json:
        add, change, destroy = result.counts()
        _out(f"Apply complete: {add} added, {change} changed, {destroy} destroyed. Verified.")
    return ExitStatus.OK


def cmd_destroy(args: argparse.Namespace) -> int:
    from netdecl.engine import service

    name = _load(args.file).name
    _require_privileges("destroy")
    try:
        result = service.destroy(name, _state_root(args), lock_timeout=args.lock_timeout,
                                 events=_events())
    except service.PlanConflicts as exc:
        return _refused(exc)
    if not result.plan.actions:
        _out(f"Nothing to destroy: topology {name} owns nothing on this host.")
    else:
        _, change, destroy = result.counts()
        _out(f"Destroy complete: {destroy} destroyed, {change} restored. Verified.")
    return ExitStatus.OK


def cmd_rollback(args: argparse.Namespace) -> int:
    from netdecl.engine import service

    _require_privileges("rollback")
    if not service.rollback(_state_root(args), lock_timeout=args.lock_timeout,
                            events=_events()):
        _out("Nothing to roll back: no interrupted apply left a journal.")
    return ExitStatus.OK


def cmd_confirm(args: argparse.Namespace) -> int:
    from netdecl.engine import service

    name = service.confirm(_state_root(args), args.name)
    _out(f"Confirmed the apply of {name}: its changes stay.")
    return ExitStatus.OK


def cmd_show(args: argparse.Namespace) -> int:
    import yaml

    from netdecl.engine import service
    from netdecl.topology.export import to_document

    observed = service.show(args.namespace)
    _out(yaml.safe_dump(to_document(observed, args.name), sort_keys=False).rstrip())
    return ExitStatus.OK


def cmd_sandbox(args: argparse.Namespace) -> int:
    from netdecl.tools import sandbox

    if args.sandbox_command == "list":
        for name in sandbox.list_sandboxes():
            _out(name)
        return ExitStatus.OK
    if args.sandbox_command == "rm":
        sandbox.remove(args.name)
        _out(f"removed sandbox {args.name}")
        return ExitStatus.OK
    raise NetdeclError("usage: netdecl sandbox list | netdecl sandbox rm NAME")


def cmd_verify(args: argparse.Namespace) -> int:
    from netdecl.tools.verify import render_table, run_probes

    topo = _load(args.file)
    _require_privileges("verify", "sends traffic from inside namespaces")
    results = run_probes(topo, timeout=args.timeout)
    if args.json:
        _out(json.dumps({"topology": topo.name, "probes": [r.to_json() for r in results],
                         "passed": sum(r.ok for r in results),
                         "failed": sum(not r.ok for r in results)}, indent=2))
    else:
        _out(render_table(results))
    return ExitStatus.OK if all(r.ok for r in results) else ExitStatus.FAILURE


def cmd_explain(args: argparse.Namespace) -> int:
    from netdecl.tools.explain import explain_live

    topo = _load(args.file) if args.file else None
    _require_privileges("explain", "asks the kernel inside namespaces")
    result = explain_live(args.source, args.destination, args.proto, topo)
    _out(json.dumps(result.to_json(), indent=2) if args.json else result.text())
    return ExitStatus.FAILURE if result.outcome == "dropped" else ExitStatus.OK


def cmd_graph(args: argparse.Namespace) -> int:
    from netdecl.tools.graph import render

    sys.stdout.write(render(_load(args.file), args.format))
    return ExitStatus.OK


COMMANDS = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "apply": cmd_apply,
    "destroy": cmd_destroy,
    "rollback": cmd_rollback,
    "confirm": cmd_confirm,
    "show": cmd_show,
    "sandbox": cmd_sandbox,
    "verify": cmd_verify,
    "explain": cmd_explain,
    "graph": cmd_graph,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return ExitStatus.FAILURE
    try:
        if args.sandbox:
            from netdecl.tools import sandbox

            sandbox.enter(args.sandbox, create_if_missing=True)
        return int(COMMANDS[args.command](args))
    except InvalidTopology as exc:
        for diagnostic in exc.diagnostics:
            _err(str(diagnostic))
        n = sum(d.severity == "error" for d in exc.diagnostics)
        _err(f"{n} error{'s' if n != 1 else ''}: nothing was changed")
        return ExitStatus.INVALID_TOPOLOGY
    except NetdeclError as exc:
        _err(f"netdecl: {exc}")
        return int(exc.status)
    except PermissionError as exc:
        what = exc.filename or exc.strerror or exc
        _err(f"netdecl: {args.command} was refused by the kernel ({what}): reading network "
             f"namespaces needs root (CAP_SYS_ADMIN to enter them, CAP_NET_ADMIN to change them)")
        return ExitStatus.FAILURE
    except OSError as exc:  # a file or socket the command needed: one line, not a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        _err(f"netdecl: {args.command}: {exc.strerror or exc}{where}")
        return ExitStatus.FAILURE
    except KeyboardInterrupt:
        _err("netdecl: interrupted")
        return ExitStatus.FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
