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
from typing import Any, NoReturn

from netdecl.errors import EnvironmentProblem, InvalidTopology, NetdeclError
from netdecl.exitcodes import ExitStatus

DESCRIPTION = """\
netdecl: declarative Linux host networking. A YAML topology (namespaces, bridges, veth pairs,
addresses, routes, sysctls, NAT) is compared with the live kernel; `plan` shows the ordered
changes, `apply` makes them (and rolls back on any failure), `destroy` removes what the topology
owns. netdecl never changes or deletes an object it did not create.
"""

EPILOG = """\
exit codes:
  0  success, or nothing to change
  1  failure: an action, a verification, a conflict, a missing tool; also a usage error
     (unknown command or option, missing argument)
  2  changes pending (plan --detailed-exitcode only)
  3  invalid topology: every problem as FILE:LINE:COL; nothing changed
  4  an apply failed and its rollback could not restore everything

examples:
  netdecl validate topologies/docker-bridge.yaml
  netdecl --sandbox demo apply topologies/docker-bridge.yaml   # host untouched
  netdecl plan --detailed-exitcode topo.yaml                   # GitOps drift check
  netdecl plan --out plan.json topo.yaml && netdecl apply plan.json
  source <(netdecl completion bash)                            # tab completion
"""

# How shtab completes a file argument, per shell. Spelled out rather than `shtab.FILE` so that
# building the parser (every run) does not import shtab (~45 ms); `completion` imports it.
# tests/test_cli_generated.py checks that the bash script defines the function named here.
FILE_COMPLETION = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f"}

COMPLETION_SHELLS = ("bash", "zsh")


def package_version() -> str:
    """The installed distribution's version; the source's own when run from a bare checkout."""
    from importlib import metadata

    try:
        return metadata.version("netdecl")
    except metadata.PackageNotFoundError:
        from netdecl import __version__

        return __version__


class UsageErrorParser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; 2 is `plan --detailed-exitcode`'s "changes pending",
    so a typo in a drift check would read as drift. Exit 1 instead, as Terraform does."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitStatus.FAILURE, f"{self.prog}: error: {message}\n"
                                      f"Run '{self.prog} --help' for the options.\n")


class VersionAction(argparse.Action):
    """--version, reading the package metadata only when asked (importlib.metadata costs
    ~25 ms that every other run would pay if the parser computed it up front)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        sys.stdout.write(f"netdecl {package_version()}\n")
        parser.exit(ExitStatus.OK)


def _file_argument(parser: argparse.ArgumentParser, help: str, **kwargs: Any) -> None:
    action = parser.add_argument("file", metavar="FILE", help=help, **kwargs)
    action.complete = FILE_COMPLETION  # type: ignore[attr-defined]  # read by shtab


def _lock_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lock-timeout", type=float, default=5.0, metavar="SECS",
                        help="how long to wait for another apply, destroy or rollback on this "
                             "host to finish (default 5)")


TOPOLOGY_FILE = "the topology (YAML)"


def _adopt_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--adopt", action="store_true", help=help)


def build_parser() -> argparse.ArgumentParser:
    parser = UsageErrorParser(
        prog="netdecl", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=VersionAction,
                        help="print netdecl's version and exit")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="where ownership records and journals live "
                             "(default $NETDECL_STATE_DIR or /var/lib/netdecl)")
    parser.add_argument("--sandbox", metavar="NAME",
                        help="run the command inside a persistent private network + mount "
                             "namespace NAME (created on first use), leaving the host untouched")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", help="check a topology file; change nothing",
                       description="Check a topology file against the schema and for meaning "
                                   "(undeclared namespaces, duplicate names, addresses...). "
                                   "Print every problem as FILE:LINE:COL and exit 3, or a "
                                   "one-line summary and exit 0. Reads no kernel state.")
    _file_argument(p, TOPOLOGY_FILE)

    p = sub.add_parser("plan", help="show what apply would change",
                       description="Compare the topology with the live kernel and print the "
                                   "ordered actions apply would take.")
    _file_argument(p, TOPOLOGY_FILE)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--out", metavar="PLAN", help="save the plan (with a fingerprint of the "
                                                 "observed state) for `apply PLAN`")
    p.add_argument("--detailed-exitcode", action="store_true",
                   help="exit 2 when there are changes, 0 when there are none")
    _adopt_option(p, "show declared objects that already exist and belong to nobody as "
                     "adopted (= adopt) instead of as conflicts")

    p = sub.add_parser("apply", help="make the host match the topology (or a saved plan)",
                       description="Execute the plan, verify the result, and roll back "
                                   "everything on any failure, Ctrl-C or SIGTERM.")
    _file_argument(p, "a topology file, or a plan saved with `plan --out`")
    _lock_timeout(p)
    p.add_argument("--json", action="store_true", help="print the executed plan as JSON")
    p.add_argument("--confirm-timeout", type=float, default=None, metavar="SECS",
                   help="after applying and verifying, wait SECS for `netdecl confirm` (or "
                        "Enter, on a terminal); roll back by itself if none comes")
    _adopt_option(p, "take over declared objects that already exist and belong to nobody "
                     "(same kind; a veth paired as declared; a namespace holding only such "
                     "objects): mark, record and reconcile them like ones netdecl made")

    p = sub.add_parser("destroy", help="remove everything the topology owns",
                       description="Delete every namespace, link, route and NAT table the "
                                   "topology created and restore the sysctls it changed.")
    _file_argument(p, TOPOLOGY_FILE)
    _lock_timeout(p)

    p = sub.add_parser("rollback",
                       help="restore the state before an apply that was interrupted (crash)",
                       description="Roll back an apply that was killed before it finished, "
                                   "from its journal in the state directory: the host returns "
                                   "to the state before that apply. Takes no file: the journal "
                                   "knows the topology.")
    _lock_timeout(p)

    p = sub.add_parser("confirm", help="keep an apply that waits for confirmation "
                                       "(apply --confirm-timeout)",
                       description="Tell an `apply --confirm-timeout` that is waiting to keep "
                                   "its changes; without a confirmation it rolls back by itself.")
    p.add_argument("--name", metavar="TOPOLOGY",
                   help="which topology's apply (needed only when several are waiting)")

    p = sub.add_parser("show", help="print live state in the topology format",
                       description="Read the live kernel and print it as a topology file, "
                                   "including objects netdecl does not own (to import an "
                                   "existing setup): links (the host's NICs, and links "
                                   "netdecl cannot recreate, as kind: external), addresses, "
                                   "routes, rules, FDB and neighbour entries, the forwarding "
                                   "sysctls and the NAT of netdecl's own tables. The output "
                                   "validates, and applying it rebuilds that state.")
    p.add_argument("--namespace", action="append", default=None, metavar="NS",
                   help="namespace to include (repeatable; default: root and all named ones)")
    p.add_argument("--name", default="imported",
                   help="topology name to put in the output (default: imported)")

    p = sub.add_parser("sandbox", help="list or remove sandboxes made by --sandbox",
                       description="Sandboxes are persistent private network + mount "
                                   "namespaces that `netdecl --sandbox NAME COMMAND` creates "
                                   "on first use.")
    sandbox_sub = p.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    sandbox_sub.add_parser("list", help="list sandboxes", description="Print the sandboxes' "
                                                                      "names, one a line.")
    rm = sandbox_sub.add_parser("rm", help="remove a sandbox and everything in it",
                                description="Remove a sandbox and every namespace, link and "
                                            "rule inside it.")
    rm.add_argument("name", metavar="NAME", help="the sandbox")
    _add_traffic_parsers(sub)
    _add_generated_docs_parsers(sub)
    return parser


def _add_traffic_parsers(sub: Any) -> None:
    """verify, explain, graph: look at a topology's traffic and shape (change nothing)."""
    p = sub.add_parser("verify", help="run the topology's probes with real traffic",
                       description="Run every probe of the topology from inside its source "
                                   "namespace (starting a short-lived listener where nothing "
                                   "listens). Exit 0 when all pass, 1 otherwise.")
    _file_argument(p, TOPOLOGY_FILE)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--timeout", type=float, default=2.0, metavar="SECS",
                   help="per-probe timeout (default 2)")

    p = sub.add_parser("explain", help="show the path a packet takes, hop by hop",
                       description="Follow one packet from NS to DEST through the live kernel: "
                                   "routes, veths, bridges and netdecl's NAT rules. Exit 0 "
                                   "when it is delivered or leaves the topology, 1 if dropped.")
    p.add_argument("--from", dest="source", required=True, metavar="NS",
                   help="namespace the packet starts in (root for the host)")
    p.add_argument("destination", metavar="DEST[:PORT]",
                   help="destination address, optionally with a port")
    _file_argument(p, "topology: limits the scope to its namespaces and takes NAT rules from "
                      "its table", nargs="?")
    p.add_argument("--proto", choices=("tcp", "udp", "icmp"),
                   help="default: tcp with a port, icmp without")
    p.add_argument("--json", action="store_true", help="print the path as JSON")

    p = sub.add_parser("graph", help="draw the topology (dot, mermaid or svg)",
                       description="Draw the topology's namespaces, links and NAT as a "
                                   "Graphviz dot graph, a Mermaid flowchart or an SVG (svg "
                                   "needs Graphviz's `dot`). Reads no kernel state.")
    _file_argument(p, TOPOLOGY_FILE)
    p.add_argument("--format", choices=("dot", "mermaid", "svg"), default="dot",
                   help="output format (default: dot)")


def _add_generated_docs_parsers(sub: Any) -> None:
    """completion and manpage: generated from this very parser, so they cannot go stale."""
    p = sub.add_parser("completion", help="print a shell completion script",
                       description="Print a completion script for SHELL, generated from "
                                   "netdecl's own options. Load it with "
                                   "`source <(netdecl completion bash)` (in ~/.bashrc), or "
                                   "save the zsh one as _netdecl in a directory of $fpath.")
    p.add_argument("shell", metavar="SHELL", choices=COMPLETION_SHELLS,
                   help=f"one of: {', '.join(COMPLETION_SHELLS)}")

    # no help=: left out of the command list (the README says how to install the page)
    p = sub.add_parser("manpage", description="Print netdecl's man page (roff), generated "
                                              "from its own options: "
                                              "`netdecl manpage | man -l -`.")


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


# What a command that needs root looks like when typed: the hint names a real invocation
# (tests/test_cli_messages.py parses each one with build_parser()).
PRIVILEGED_USAGE = {
    "apply": "apply FILE",
    "destroy": "destroy FILE",
    "rollback": "rollback",
    "verify": "verify FILE",
    "explain": "explain --from NS DEST FILE",
}


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
        usage = PRIVILEGED_USAGE[command]
        # rollback repairs this host after an interrupted apply: a sandbox has nothing to offer
        sandbox = ("" if command == "rollback" else
                   f"; to try it without touching this host's network: "
                   f"sudo netdecl --sandbox demo {usage}")
        raise EnvironmentProblem(
            f"{command} {why} and needs root ({' and '.join(missing)}); "
            f"run it as root: sudo netdecl {usage}{sandbox}")


def _require_lasting_namespaces() -> None:
    """Refuse to change anything from a mount namespace that dies with this command (`ip
    netns exec`): the namespaces created would vanish after a report of success."""
    from netdecl.backends.mountns import namespaces_would_vanish

    problem = namespaces_would_vanish()
    if problem:
        raise EnvironmentProblem(problem)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


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
    _out(f"{args.file}: valid topology {topo.name!r} ({_plural(len(topo.objects), 'object')}, "
         f"{_plural(len(topo.namespaces()), 'namespace')})")
    return ExitStatus.OK


def cmd_plan(args: argparse.Namespace) -> int:
    from netdecl.engine import service
    from netdecl.tools.render import plan_json, plan_text

    desired = _load(args.file)
    plan = service.plan(desired, _state_root(args), adopt=args.adopt)
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


def _refused(exc, command: str) -> int:
    """A plan with conflicts: show it, and say that nothing changed."""
    from netdecl.tools.render import plan_text

    _err(plan_text(exc.plan))
    _err(f"{command} refused: nothing was changed")
    return ExitStatus.FAILURE


def cmd_apply(args: argparse.Namespace) -> int:
    from netdecl.engine import service

    loaded = service.load_saved_plan(args.file)
    saved, desired = loaded if loaded is not None else (None, _load(args.file))
    _require_privileges("apply")
    _require_lasting_namespaces()
    try:
        result = service.apply(desired, _state_root(args), saved=saved,
                               lock_timeout=args.lock_timeout,
                               confirm_timeout=args.confirm_timeout, events=_events(args.json),
                               adopt=args.adopt)
    except service.PlanConflicts as exc:
        return _refused(exc, "apply")
    if not result.plan.actions:
        _out(f"No changes. Topology {desired.name} matches the host.")
    elif not args.json:
        add, change, destroy = result.counts()
        adopted = result.plan.adoptions()
        extra = f", {adopted} adopted" if adopted else ""
        _out(f"Apply complete: {add} added, {change} changed, {destroy} destroyed{extra}. "
             "Verified.")
    return ExitStatus.OK


def cmd_destroy(args: argparse.Namespace) -> int:
    from netdecl.engine import service

    name = _load(args.file).name
    _require_privileges("destroy")
    _require_lasting_namespaces()
    try:
        result = service.destroy(name, _state_root(args), lock_timeout=args.lock_timeout,
                                 events=_events())
    except service.PlanConflicts as exc:
        return _refused(exc, "destroy")
    if not result.plan.actions:
        _out(f"Nothing to destroy: topology {name} owns nothing on this host.")
    else:
        _, change, destroy = result.counts()
        _out(f"Destroy complete: {destroy} destroyed, {change} restored. Verified.")
    return ExitStatus.OK


def cmd_rollback(args: argparse.Namespace) -> int:
    from netdecl.engine import service

    _require_privileges("rollback")
    _require_lasting_namespaces()
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

    observed = service.show(args.namespace, state_root=_state_root(args))
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


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return ExitStatus.OK


def cmd_manpage(args: argparse.Namespace) -> int:
    from argparse_manpage.manpage import Manpage

    page = Manpage(build_parser())
    # the page's header and NAME line (Manpage's documented way: set its attributes)
    page.source = f"netdecl {package_version()}"
    page.manual = "netdecl manual"
    page.description = "declarative Linux host networking: YAML topology in, kernel state out"
    sys.stdout.write(str(page))
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
    "completion": cmd_completion,
    "manpage": cmd_manpage,
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
    except BrokenPipeError:  # `netdecl show | head`: the reader left; nothing to report
        # Python flushes stdout again at exit and would complain about the same closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
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
