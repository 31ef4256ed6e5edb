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
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

# (a constant; the package is no more than that and docstrings, so --help stays fast)
from netdecl.engine.state import LOCK_TIMEOUT
from netdecl.errors import Diagnostic, EnvironmentProblem, InvalidTopology, NetdeclError
from netdecl.exitcodes import MEANING, ExitStatus

if TYPE_CHECKING:
    from netdecl import api
    from netdecl.model import Topology

DESCRIPTION = """\
netdecl: declarative Linux host networking. A YAML topology (namespaces, bridges, veth pairs,
addresses, routes, sysctls, NAT) is compared with the live kernel; `plan` shows the ordered
changes, `apply` makes them (and rolls back on any failure), `destroy` removes what the topology
owns. netdecl never changes or deletes an object it did not create.
"""

EXIT_CODES = "exit codes:\n" + "".join(
    textwrap.fill(MEANING[status], width=90, initial_indent=f"  {status:d}  ",
                  subsequent_indent="     ") + "\n"
    for status in ExitStatus)

EPILOG = EXIT_CODES + """
examples:
  netdecl examples docker-bridge > topo.yaml                   # a shipped example
  netdecl validate topo.yaml
  netdecl --sandbox demo apply topo.yaml                       # host untouched
  netdecl plan --detailed-exitcode topo.yaml                   # GitOps drift check
  netdecl plan --out plan.json topo.yaml && netdecl apply plan.json
  source <(netdecl completion bash)                            # tab completion
"""

# How shtab completes a file argument, per shell. Spelled out rather than `shtab.FILE` so that
# building the parser (every run) does not import shtab (~45 ms); `completion` imports it.
# tests/test_cli_generated.py checks that the bash script defines the function named here.
FILE_COMPLETION = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f",
                   "fish": "(__fish_complete_path (commandline -ct))"}

COMPLETION_SHELLS = ("bash", "zsh", "fish")


def package_version() -> str:
    """The installed distribution's version; the source's own when run from a bare checkout."""
    from importlib import metadata

    try:
        return metadata.version("netdecl")
    except metadata.PackageNotFoundError:
        from netdecl import __version__

        return __version__


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        return os.get_terminal_size(stdout.fileno()).columns or 80 if stdout else 80
    except (ValueError, OSError):
        return 80


class UsageErrorParser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; 2 is `plan --detailed-exitcode`'s "changes pending",
    so a typo in a drift check would read as drift. Exit 1 instead, as Terraform does.

    ``later(arguments)``: add the parser's arguments only when it parses or shows its help (see
    build_parser)."""

    _arguments: Callable[[argparse.ArgumentParser], None] | None = None

    def later(self, arguments: Callable[[argparse.ArgumentParser], None]) -> None:
        self._arguments = arguments

    def _complete(self) -> None:
        arguments, self._arguments = self._arguments, None
        if arguments is not None:
            arguments(self)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None,
                         ) -> tuple[argparse.Namespace, list[str]]:
        self._complete()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._complete()
        return super().format_usage()

    def format_help(self) -> str:
        self._complete()
        return super().format_help()

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter for every add_argument, and the formatter asks
        # shutil.get_terminal_size() for its width: importing shutil (bz2 and lzma with it,
        # for its archives) cost every command ~7 ms. The same width, without it.
        # (every HelpFormatter takes width; typeshed's protocol names prog only)
        return self.formatter_class(prog=self.prog,  # type: ignore[call-arg]
                                    width=terminal_columns() - 2)

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
    parser.add_argument("--lock-timeout", type=float, default=LOCK_TIMEOUT, metavar="SECS",
                        help="how long to wait for another apply, destroy or rollback on this "
                             f"host to finish (default {LOCK_TIMEOUT:g})")


def _output_options(parser: argparse.ArgumentParser) -> None:
    """-v and -q: how much apply, destroy and rollback say (see Report)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true",
                       help="print a line per action as it runs (on stderr), on a terminal "
                            "or not; without it a terminal shows one progress line")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="print only the summary line (and warnings and errors): no plan, "
                            "no progress")


TOPOLOGY_FILE = "the topology (YAML), or a directory of them read as one"


def _var_assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=VALUE")
    return name, value


def _var_options(parser: argparse.ArgumentParser) -> None:
    """--var and --var-file: values for a templated topology's vars."""
    parser.add_argument("--var", action="append", type=_var_assignment, metavar="NAME=VALUE",
                        help="set the template variable NAME (repeatable; beats --var-file "
                             "and the file's default)")
    parser.add_argument("--var-file", action="append", metavar="FILE",
                        help="a YAML file of NAME: VALUE template variables (repeatable)")


def _adopt_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--adopt", action="store_true", help=help)


# Adds one command's parser: ``arguments`` adds the command's own arguments to it.
Command = Callable[..., None]


def build_parser(lazy: bool = False) -> argparse.ArgumentParser:
    """netdecl's parser. ``lazy`` (what main() uses): each command's own arguments are added
    when that command parses or shows its help, not up front; a run parses one command of
    fifteen, and adding them all was most of building the parser (argparse looks each of its
    own messages up with gettext as it goes). The completion script and the man page read
    every command's arguments: they build it whole."""
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

    def command(name: str, arguments: Callable[[argparse.ArgumentParser], None],
                **kwargs: Any) -> None:
        added = sub.add_parser(name, **kwargs)
        if lazy:
            added.later(arguments)
        else:
            arguments(added)

    _add_state_parsers(command)
    _add_traffic_parsers(command)
    _add_agent_parser(command)
    _add_shipped_data_parsers(command)
    _add_generated_docs_parsers(command)
    return parser


def _add_state_parsers(command: Command) -> None:
    """validate, plan, apply, destroy, rollback, confirm, show, sandbox."""
    command("validate", _validate_arguments, help="check a topology file; change nothing",
            description="Check a topology file against the schema and for meaning "
                        "(undeclared namespaces, duplicate names, addresses...). "
                        "Print every problem as FILE:LINE:COL and exit 3, or a "
                        "one-line summary and exit 0. Reads no kernel state.")
    command("render", _render_arguments, help="print a templated topology expanded",
            description="Expand a topology's template (vars, loops, defaults, includes, "
                        "host facts) and print the plain topology: it validates, and "
                        "apply takes it as it is. Changes nothing.")
    command("plan", _plan_arguments, help="show what apply would change",
            description="Compare the topology with the live kernel and print the "
                        "ordered actions apply would take.")
    command("apply", _apply_arguments,
            help="make the host match the topology (or a saved plan)",
            description="Execute the plan, verify the result, and roll back "
                        "everything on any failure, Ctrl-C or SIGTERM.")
    command("destroy", _destroy_arguments, help="remove everything the topology owns",
            description="Delete every namespace, link, route and NAT table the "
                        "topology created and restore the sysctls it changed.")
    command("rollback", _rollback_arguments,
            help="restore the state before an apply that was interrupted (crash)",
            description="Roll back an apply that was killed before it finished, "
                        "from its journal in the state directory: the host returns "
                        "to the state before that apply. With FILE or --name, only "
                        "that topology's; without, every interrupted apply's, each "
                        "on its own (a damaged journal does not stop the others).")
    command("confirm", _confirm_arguments, help="keep an apply that waits for confirmation "
                                                "(apply --confirm-timeout)",
            description="Tell an `apply --confirm-timeout` that is waiting to keep "
                        "its changes; without a confirmation it rolls back by itself.")
    command("show", _show_arguments, help="print live state in the topology format",
            description="Read the live kernel and print it as a topology file, "
                        "including objects netdecl does not own (to import an "
                        "existing setup): links (the host's NICs, and links "
                        "netdecl cannot recreate, as kind: external), addresses, "
                        "routes, rules, FDB and neighbour entries, the forwarding "
                        "sysctls and the NAT of netdecl's own tables. The output "
                        "validates, and applying it rebuilds that state.")
    command("sandbox", _sandbox_arguments, help="list or remove sandboxes made by --sandbox",
            description="Sandboxes are persistent private network + mount "
                        "namespaces that `netdecl --sandbox NAME COMMAND` creates "
                        "on first use.")


def _validate_arguments(p: argparse.ArgumentParser) -> None:
    _file_argument(p, TOPOLOGY_FILE)
    _var_options(p)
    _json_option(p, "print the result and every problem as JSON (exit status unchanged)")


def _json_option(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--json", action="store_true",
                   help=f"{help}; the format is versioned (format_version) and documented in "
                        f"docs/json.md")


def _render_arguments(p: argparse.ArgumentParser) -> None:
    _file_argument(p, TOPOLOGY_FILE)
    _var_options(p)


def _plan_arguments(p: argparse.ArgumentParser) -> None:
    _file_argument(p, TOPOLOGY_FILE)
    _var_options(p)
    _json_option(p, "print the plan as JSON")
    p.add_argument("--out", metavar="PLAN", help="save the plan (with a fingerprint of the "
                                                 "observed state) for `apply PLAN`")
    p.add_argument("--detailed-exitcode", action="store_true",
                   help="exit 2 when there are changes, 0 when there are none")
    _adopt_option(p, "show declared objects that already exist and belong to nobody as "
                     "adopted (= adopt) instead of as conflicts")


def _apply_arguments(p: argparse.ArgumentParser) -> None:
    _file_argument(p, "a topology file, or a plan saved with `plan --out`")
    _var_options(p)
    _lock_timeout(p)
    _output_options(p)
    _json_option(p, "print one JSON document at the end: the outcome and the plan")
    p.add_argument("--verify", action="store_true",
                   help="run the topology's probes with real traffic after the verified "
                        "apply, under the lock; if one fails, roll the apply back (exit 1)")
    p.add_argument("--probe-timeout", type=float, default=2.0, metavar="SECS",
                   help="per-probe timeout for --verify (default 2)")
    _wait_for_links(p)
    p.add_argument("--confirm-timeout", type=float, default=None, metavar="SECS",
                   help="after applying and verifying, wait SECS for `netdecl confirm` (or "
                        "Enter, on a terminal); roll back by itself if none comes")
    _adopt_option(p, "take over declared objects that already exist and belong to nobody "
                     "(same kind; a veth paired as declared; a namespace holding only such "
                     "objects): mark, record and reconcile them like ones netdecl made")


def _destroy_arguments(p: argparse.ArgumentParser) -> None:
    _file_argument(p, TOPOLOGY_FILE)
    _var_options(p)
    _lock_timeout(p)
    _output_options(p)
    _json_option(p, "print one JSON document at the end: the outcome and the plan")


def _rollback_arguments(p: argparse.ArgumentParser) -> None:
    _file_argument(p, "the topology whose interrupted apply to roll back (optional)",
                   nargs="?")
    _var_options(p)  # a template without defaults is read only with its vars
    p.add_argument("--name", metavar="TOPOLOGY",
                   help="the topology whose interrupted apply to roll back, by name")
    p.add_argument("--salvage", action="store_true",
                   help="the journal is damaged: undo only what its readable parts prove that "
                        "apply made, after showing the plan; keep and name the rest")
    p.add_argument("--yes", action="store_true",
                   help="with --salvage: act without asking (needed when stdin is no terminal)")
    _lock_timeout(p)
    _output_options(p)


def _confirm_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", metavar="TOPOLOGY",
                   help="which topology's apply (needed only when several are waiting)")


def _show_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespace", action="append", default=None, metavar="NS",
                   help="namespace to include (repeatable; default: root and all named ones)")
    p.add_argument("--name", default="imported",
                   help="topology name to put in the output (default: imported)")


def _sandbox_arguments(p: argparse.ArgumentParser) -> None:
    sandbox_sub = p.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    sandbox_sub.add_parser("list", help="list sandboxes", description="Print the sandboxes' "
                                                                      "names, one a line.")
    rm = sandbox_sub.add_parser("rm", help="remove a sandbox and everything in it",
                                description="Remove a sandbox and every namespace, link and "
                                            "rule inside it.")
    rm.add_argument("name", metavar="NAME", help="the sandbox")


def _metrics_listen(text: str) -> str:
    from netdecl.agent.metrics import parse_listen  # checked here: a typo is a usage error

    try:
        parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _add_agent_parser(command: Command) -> None:
    """agent: the GitOps loop (apply, then repair drift from kernel events)."""
    command("agent", _agent_arguments,
            help="keep the host matching the topologies: repair drift "
                 "from kernel events, apply file edits",
            description="Apply the topologies, then keep the host matching them: "
                        "listen to the kernel's netlink events (links, addresses, "
                        "routes, rules, neighbours, nftables) in every namespace "
                        "in scope and to changes of the files, and repair drift "
                        "through the normal apply (lock, journal, rollback). An "
                        "invalid edit is logged and the last good version kept. "
                        "An object that drifts again and again is repaired less "
                        "and less often (back-off). SIGTERM/Ctrl-C: exit 0, the "
                        "host left as it is; SIGHUP: re-read the files.")
    command("boot", _boot_arguments,
            help="apply every topology in a directory, each on its own (the boot unit)",
            description="Apply the *.yaml topologies of DIR once, in name order, each "
                        "on its own: a file that does not validate, whose NICs do not "
                        "appear in time, or whose apply fails (and is rolled back) is "
                        "reported with its FILE:LINE:COL and the others are applied. "
                        "Exit status: the worst of them. contrib/systemd/"
                        "netdecl-boot.service runs it before network.target.")


def _agent_arguments(p: argparse.ArgumentParser) -> None:
    action = p.add_argument("files", nargs="+", metavar="FILE",
                            help="topology files, or directories of *.yaml files")
    action.complete = FILE_COMPLETION  # type: ignore[attr-defined]  # read by shtab
    p.add_argument("--metrics-listen", type=_metrics_listen, metavar="ADDR:PORT",
                   help="serve Prometheus metrics at http://ADDR:PORT/metrics, liveness at "
                        "/healthz and readiness at /ready (ADDR: an IP, a host name, or none "
                        "for every address: :9464) (default: none)")
    p.add_argument("--resync", type=_positive_seconds, default=60.0, metavar="SECS",
                   help="re-plan every topology every SECS even without events, for what "
                        "sends none (sysctls) (default 60)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="log lines on stderr as text or as one JSON object each "
                        "(default text)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   default="info",
                   help="the lowest level logged (default info); debug adds every action of "
                        "each apply (applied-actions)")
    _var_options(p)


def _wait_for_links(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait-for-links", type=_duration, default=0.0, metavar="DURATION",
                   help="first wait up to DURATION (30s, 2m, 500ms; a number: seconds) for "
                        "the host's NICs the topology declares (kind: external) to appear, "
                        "then name those that did not (default: no wait)")


def _duration(text: str) -> float:
    from netdecl.agent.boot import parse_duration  # a bad one is a usage error

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _boot_arguments(p: argparse.ArgumentParser) -> None:
    action = p.add_argument("directory", metavar="DIR", help="a directory of *.yaml topologies")
    action.complete = FILE_COMPLETION  # type: ignore[attr-defined]  # read by shtab
    _wait_for_links(p)
    _lock_timeout(p)


def _add_traffic_parsers(command: Command) -> None:
    """verify, explain, graph: look at a topology's traffic and shape (change nothing)."""
    command("verify", _verify_arguments, help="run the topology's probes with real traffic",
            description="Run every probe of the topology from inside its source "
                        "namespace (starting a short-lived listener where nothing "
                        "listens). Exit 0 when all pass, 1 otherwise.")
    command("explain", _explain_arguments, help="show the path a packet takes, hop by hop",
            description="Follow one packet from NS to DEST through the live kernel: "
                        "routes, veths, bridges and netdecl's NAT rules. Exit 0 "
                        "when it is delivered or leaves the topology, 1 if dropped.")
    command("graph", _graph_arguments, help="draw the topology (dot, mermaid or svg)",
            description="Draw the topology's namespaces, links and NAT as a "
                        "Graphviz dot graph, a Mermaid flowchart or an SVG (svg "
                        "needs Graphviz's `dot`). Reads no kernel state.")


def _verify_arguments(p: argparse.ArgumentParser) -> None:
    _file_argument(p, TOPOLOGY_FILE)
    _var_options(p)
    _json_option(p, "print the results as JSON")
    p.add_argument("--timeout", type=float, default=2.0, metavar="SECS",
                   help="per-probe timeout (default 2)")
    p.add_argument("--measure", action="store_true",
                   help="also measure the netem loss (a few thousand numbered datagrams, "
                        "within 4 binomial standard deviations) and the least rate (2 s of "
                        "bulk UDP, within 15%%) declared on each probe's way: seconds per "
                        "probe")


def _explain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", required=True, metavar="NS",
                   help="namespace the packet starts in (root for the host)")
    p.add_argument("destination", metavar="DEST[:PORT]",
                   help="destination address, optionally with a port")
    _file_argument(p, "topology: limits the scope to its namespaces and takes NAT rules from "
                      "its table", nargs="?")
    _var_options(p)
    p.add_argument("--proto", choices=("tcp", "udp", "icmp"),
                   help="default: tcp with a port, icmp without")
    _json_option(p, "print the path as JSON")


def _graph_arguments(p: argparse.ArgumentParser) -> None:
    _file_argument(p, TOPOLOGY_FILE)
    _var_options(p)
    p.add_argument("--format", choices=("dot", "mermaid", "svg"), default="dot",
                   help="output format (default: dot)")


def _add_shipped_data_parsers(command: Command) -> None:
    """examples and schema: what travels inside the package, for use outside the checkout."""
    command("examples", _examples_arguments, help="list the example topologies, or print one",
            description="Without NAME, list the example topologies shipped with netdecl; "
                        "with NAME, print that one (its schema line names "
                        "topology.schema.json beside it: `netdecl schema > "
                        "topology.schema.json`). `netdecl examples docker-bridge > "
                        "topo.yaml` starts a topology of your own.")
    command("schema", _no_arguments, help="print the topology file's JSON Schema",
            description="Print the JSON Schema of the topology file format, as this "
                        "netdecl validates with it, for editors (the YAML language "
                        "server's `$schema`) and other tools.")


def _examples_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="the example to print (without it: the list)")


def _add_generated_docs_parsers(command: Command) -> None:
    """completion and manpage: generated from this very parser, so they cannot go stale."""
    command("completion", _completion_arguments, help="print a shell completion script",
            description="Print a completion script for SHELL, generated from "
                        "netdecl's own options. Load it with "
                        "`source <(netdecl completion bash)` (in ~/.bashrc), "
                        "save the zsh one as _netdecl in a directory of $fpath, or the "
                        "fish one as ~/.config/fish/completions/netdecl.fish.")
    command("manpage", _no_arguments, help="print the man page (roff): netdecl manpage | "
                                           "man -l -",
            description="Print netdecl's man page (roff), generated from its own options: "
                        "`netdecl manpage | man -l -`.")


def _completion_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", metavar="SHELL", choices=COMPLETION_SHELLS,
                   help=f"one of: {', '.join(COMPLETION_SHELLS)}")


def _no_arguments(p: argparse.ArgumentParser) -> None:
    return None


# -- helpers ---------------------------------------------------------------------------------

def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _state_root(args: argparse.Namespace) -> Path:
    from netdecl.engine.state.statedir import state_dir

    return state_dir(args.state_dir)


# What a command that needs root looks like when typed: the hint names a real invocation
# (tests/test_cli_messages.py parses each one with build_parser()).
PRIVILEGED_USAGE = {
    "apply": "apply FILE",
    "destroy": "destroy FILE",
    "rollback": "rollback",
    "verify": "verify FILE",
    "explain": "explain --from NS DEST FILE",
    "agent": "agent FILE",
    "boot": "boot DIR",
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


def _load(path: str, args: argparse.Namespace) -> Topology:
    from netdecl import api

    topo = api.load(path, variables=_variables(args))
    for warning in topo.warnings:
        _err(warning)
    return topo


def _variables(args: argparse.Namespace) -> dict[str, Any]:
    """--var-file files in order, then --var: a later value wins."""
    from netdecl import api

    found: dict[str, Any] = {}
    for path in getattr(args, "var_file", None) or ():
        found.update(api.read_var_file(path))
    found.update(dict(getattr(args, "var", None) or ()))
    return found


class Report:
    """How apply, destroy and rollback talk while they work, for people and for logs.

    stdout: the plan (or its JSON), then the summary the command prints. stderr: notices, and
    progress: on a terminal one line rewritten in place and cleared at the end; with -v a line
    per action, terminal or not; otherwise (a log, a pipe) nothing. -q: no plan and no
    progress. Colour only on a terminal and never with NO_COLOR."""

    def __init__(self, args: argparse.Namespace, as_json: bool = False):
        from netdecl.tools.console import ProgressLine, color_wanted, is_terminal

        # apply and destroy roll an interrupted apply back before their own work; rollback
        # does nothing else
        self.then = "" if args.command == "rollback" else " first"

        self.verbose = bool(getattr(args, "verbose", False))
        self.quiet = bool(getattr(args, "quiet", False))
        self.as_json = as_json
        self.plan: api.Plan | None = None  # the plan being executed, once planned
        self.color = color_wanted(sys.stdout)
        self.err_color = color_wanted(sys.stderr)
        drawn = not (self.verbose or self.quiet) and is_terminal(sys.stderr)
        self.line = ProgressLine(sys.stderr) if drawn else None

    def events(self) -> api.Events:
        from netdecl import api

        return api.Events(planned=self.planned, progress=self._step(""),
                          rollback_progress=self._step("rolling back: "), notice=self.say,
                          recovering=self.recovering, recovered=self.recovered)

    def planned(self, plan: api.Plan) -> None:
        self.plan = plan
        if not (self.as_json or self.quiet):  # JSON: the plan goes into the final document
            _out(plan.text(self.color))

    def _step(self, what: str) -> Callable[[int, int, api.Action], None]:
        def step(number: int, total: int, action: api.Action) -> None:
            if self.verbose:
                _err(f"[{number}/{total}] {what}{action.text(self.err_color)}")
            elif self.line is not None:
                self.line.show(f"[{number}/{total}] {what}{action.text()}")
        return step

    def say(self, text: str) -> None:
        self.clear()
        _err(text)

    def recovering(self, interrupted: api.PendingApply) -> None:
        self.say(f"netdecl: an earlier apply of {interrupted.topology!r} did not finish (it "
                 f"stopped {interrupted.how_far()}); rolling it back{self.then}")

    def recovered(self, name: str) -> None:
        self.say(f"netdecl: rolled back {name!r} to the state before that apply")

    def clear(self) -> None:
        """Wipe the progress line (before any other output, and at the end)."""
        if self.line is not None:
            self.line.clear()


# -- commands ----------------------------------------------------------------------------------

# Every JSON document the command line prints carries this, as Terraform's do: a minor bump
# adds fields (consumers ignore what they do not know), a major bump changes or removes one.
# docs/json.md documents each document field by field; tests/test_cli_json.py holds the
# documents to it.
JSON_FORMAT_VERSION = "1.0"


def _json_out(document: dict[str, Any]) -> None:
    _out(json.dumps({"format_version": JSON_FORMAT_VERSION, **document}, indent=2))


def _diagnostic_json(diagnostic: Diagnostic) -> dict[str, Any]:
    return {"severity": diagnostic.severity, "file": diagnostic.file, "line": diagnostic.line,
            "col": diagnostic.col, "message": diagnostic.message}


def _warning_diagnostic(file: str, text: str) -> Diagnostic:
    """A loader warning (a Topology keeps them as their text, "FILE:LINE:COL: warning: ...")
    as a Diagnostic again; FILE is known, so the split is exact."""
    line, col, message = text.removeprefix(f"{file}:").split(":", 2)
    return Diagnostic(file, int(line), int(col),
                      message.strip().removeprefix("warning: "), severity="warning")


def cmd_validate(args: argparse.Namespace) -> int:
    from netdecl import api

    if not args.json:
        topo = _load(args.file, args)
        _out(f"{args.file}: valid topology {topo.name!r} "
             f"({_plural(len(topo.objects), 'object')}, "
             f"{_plural(len(topo.namespaces()), 'namespace')})")
        return ExitStatus.OK
    try:
        topo = api.load(args.file, variables=_variables(args))
    except InvalidTopology as exc:
        _json_out(_validation_document(args.file, None, exc.diagnostics))
        return ExitStatus.INVALID_TOPOLOGY
    warnings = [_warning_diagnostic(args.file, w) for w in topo.warnings]
    _json_out(_validation_document(args.file, topo, warnings))
    return ExitStatus.OK


def _validation_document(file: str, topo: Topology | None,
                         diagnostics: Sequence[Diagnostic]) -> dict[str, Any]:
    errors = sum(d.severity == "error" for d in diagnostics)
    return {
        "valid": topo is not None, "file": file,
        "topology": topo.name if topo else None,
        "objects": len(topo.objects) if topo else None,
        "namespaces": len(topo.namespaces()) if topo else None,
        "error_count": errors, "warning_count": len(diagnostics) - errors,
        "diagnostics": [_diagnostic_json(d) for d in diagnostics],
    }


def cmd_render(args: argparse.Namespace) -> int:
    from netdecl import api

    sys.stdout.write(api.render(args.file, variables=_variables(args)))
    return ExitStatus.OK


def cmd_plan(args: argparse.Namespace) -> int:
    from netdecl import api
    from netdecl.tools.console import color_wanted

    plan = api.plan(_load(args.file, args), state_dir=args.state_dir, adopt=args.adopt)
    if args.out:
        plan.save(args.out, source=args.file)
    if args.json:
        _json_out(plan.to_json())
    else:
        _out(plan.text(color_wanted(sys.stdout)))
    if args.out and not args.json:
        _out(f"Saved the plan to {args.out}; `netdecl apply {args.out}` applies exactly it.")
    if plan.conflicts:
        return ExitStatus.FAILURE
    if args.detailed_exitcode and plan.has_changes:
        return ExitStatus.CHANGES_PENDING
    return ExitStatus.OK


def _refused(exc: api.PlanConflicts, command: str) -> int:
    """A plan with conflicts: show it, and say that nothing changed."""
    from netdecl.tools.console import color_wanted

    _err(exc.plan.text(color_wanted(sys.stderr)))
    _err(f"{command} refused: nothing was changed")
    return ExitStatus.FAILURE


def _outcome_document(command: str, topology: str | None, outcome: str,
                      plan: api.Plan | None, *,
                      result: api.ApplyResult[api.Plan, api.Action] | None = None,
                      probes: api.VerifyResult | None = None,
                      error: BaseException | None = None) -> dict[str, Any]:
    """What `apply --json` and `destroy --json` print, once, at the end (docs/json.md)."""
    add, change, destroy = plan.counts() if plan else (0, 0, 0)
    return {
        "command": command, "topology": topology, "outcome": outcome,
        "summary": {"add": add, "change": change, "destroy": destroy,
                    "adopt": plan.adoptions() if plan else 0},
        "recovered": list(result.recovered) if result else [],
        "confirmed": result.confirmed if result else False,
        "probes": probes.to_json() if probes else None,
        "error": ({"message": str(error),
                   "exit_status": int(getattr(error, "status", ExitStatus.FAILURE))}
                  if error is not None else None),
        "plan": plan.to_json() if plan else None,
    }


class _Run:
    """How far apply or destroy got: for its JSON document, whatever stops it."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.topology: str | None = None  # once the file is read
        self.report: Report | None = None  # its plan, once planned
        self.probes: api.VerifyResult | None = None  # apply --verify: the last run

    def seen(self, result: api.VerifyResult) -> None:
        self.probes = result

    def document(self, outcome: str, plan: api.Plan | None = None, **more: Any
                 ) -> dict[str, Any]:
        if plan is None and self.report is not None:
            plan = self.report.plan
        return _outcome_document(self.command, self.topology, outcome, plan,
                                 probes=self.probes, **more)


def _with_document(args: argparse.Namespace, run: _Run, body: Callable[[], int]) -> int:
    """``body``; with --json, a failure still prints the one document (then goes to main(),
    which says it on stderr and picks the exit status): an invalid file, no root, the lock."""
    try:
        return body()
    except (NetdeclError, OSError) as exc:
        if args.json:
            _json_out(run.document("failed", error=exc))
        raise


def cmd_apply(args: argparse.Namespace) -> int:
    run = _Run("apply")
    return _with_document(args, run, lambda: _apply(args, run))


def _apply(args: argparse.Namespace, run: _Run) -> int:
    from netdecl import api

    target = api.read_plan(args.file) or _load(args.file, args)
    desired = target.declared if isinstance(target, api.Plan) else target
    run.topology = name = target.topology if isinstance(target, api.Plan) else target.name
    if args.verify and desired is not None and not desired.probes:
        raise NetdeclError(f"apply --verify: topology {name} has no probes to run: add a "
                           f"probes: section or drop --verify. Nothing was changed.")
    _require_privileges("apply")
    _require_lasting_namespaces()
    if args.wait_for_links and isinstance(target, api.Topology):
        # (a saved plan was made against the host with its NICs: nothing to wait for)
        api.wait_for_links(target, args.wait_for_links)
    run.report = report = Report(args, as_json=args.json)
    gate = (api.probe_gate(desired, timeout=args.probe_timeout, seen=run.seen)
            if args.verify and desired is not None else None)
    try:
        result = api.apply(target, state_dir=args.state_dir, lock_timeout=args.lock_timeout,
                           confirm_timeout=args.confirm_timeout, events=report.events(),
                           adopt=args.adopt, gate=gate)
        if gate is not None and not result.plan.has_changes:
            gate()  # nothing was applied, so nothing to roll back: the probes still decide
    except api.PlanConflicts as exc:
        report.clear()
        if args.json:
            _json_out(run.document("refused", exc.plan, error=exc))
            return ExitStatus.FAILURE
        return _refused(exc, "apply")
    finally:
        report.clear()
    if args.json:
        _json_out(run.document("changed" if result.plan.has_changes else "unchanged",
                               result.plan, result=result))
        return ExitStatus.OK
    if run.probes is not None and not args.quiet:
        _out(run.probes.text())
    if not result.plan.has_changes:
        _out(f"No changes. Topology {result.topology} matches the host.")
    else:
        add, change, destroy = result.counts()
        adopted = result.plan.adoptions()
        extra = f", {adopted} adopted" if adopted else ""
        probed = " and probed" if run.probes is not None else ""
        _out(f"Apply complete: {add} added, {change} changed, {destroy} destroyed{extra}. "
             f"Verified{probed}.")
    return ExitStatus.OK


def cmd_destroy(args: argparse.Namespace) -> int:
    run = _Run("destroy")
    return _with_document(args, run, lambda: _destroy(args, run))


def _destroy(args: argparse.Namespace, run: _Run) -> int:
    from netdecl import api

    # the whole file is validated, though only its name is used: bad input changes nothing
    run.topology = name = _load(args.file, args).name
    _require_privileges("destroy")
    _require_lasting_namespaces()
    run.report = report = Report(args, as_json=args.json)
    try:
        result = api.destroy(name, state_dir=args.state_dir,
                             lock_timeout=args.lock_timeout, events=report.events())
    except api.PlanConflicts as exc:
        report.clear()
        if args.json:
            _json_out(run.document("refused", exc.plan, error=exc))
            return ExitStatus.FAILURE
        return _refused(exc, "destroy")
    finally:
        report.clear()
    if args.json:
        _json_out(run.document("changed" if result.plan.has_changes else "unchanged",
                               result.plan, result=result))
    elif not result.plan.has_changes:
        _out(f"Nothing to destroy: topology {name} owns nothing on this host.")
    else:
        _, change, destroy = result.counts()
        _out(f"Destroy complete: {destroy} destroyed, {change} restored. Verified.")
    return ExitStatus.OK


def cmd_rollback(args: argparse.Namespace) -> int:
    from netdecl import api
    from netdecl.engine.state import untrusted

    if args.file and args.name:
        raise NetdeclError("rollback takes a topology FILE or --name, not both")
    name = _load(args.file, args).name if args.file else args.name
    if name is not None:
        try:
            untrusted.topology_name(name)
        except untrusted.Untrusted as exc:
            raise NetdeclError(f"rollback --name: {exc}") from None
    _require_privileges("rollback")
    _require_lasting_namespaces()
    if args.salvage:
        return _salvage(args, name)
    report = Report(args)
    try:
        rolled_back = api.rollback(name, state_dir=args.state_dir,
                                   lock_timeout=args.lock_timeout, events=report.events())
    finally:
        report.clear()
    if not rolled_back:
        which = f"of {name} " if name else ""
        _out(f"Nothing to roll back: no interrupted apply {which}left a journal.")
    return ExitStatus.OK


def _salvage(args: argparse.Namespace, name: str | None) -> int:
    """rollback --salvage: the plan, a yes (or --yes), then the rollback and what it kept."""
    from netdecl import api

    if name is None:
        raise NetdeclError("rollback --salvage takes the topology FILE or --name")

    def approve(plan: api.Plan) -> None:
        _err(plan.text())
        if args.yes:
            return
        if not sys.stdin.isatty():
            raise NetdeclError("rollback --salvage: nothing was changed; run it again with "
                               "--yes to act without a terminal to ask on")
        sys.stderr.write("Undo these changes? Only 'yes' is accepted: ")
        sys.stderr.flush()
        if sys.stdin.readline().strip() != "yes":
            raise NetdeclError("rollback --salvage: not confirmed; nothing was changed")

    report = Report(args)
    events = report.events()
    events.planned = approve
    try:
        kept = api.salvage(name, state_dir=args.state_dir, lock_timeout=args.lock_timeout,
                           events=events)
    finally:
        report.clear()
    if kept is None:
        _out(f"Nothing to salvage: no interrupted apply of {name} left a journal.")
        return ExitStatus.OK
    for line in kept:
        _err(f"netdecl: kept: {line}")
    _out(f"Salvaged {name}: undid what its journal proves"
         + (f"; kept {len(kept)} thing(s) nothing proves, named above." if kept else "."))
    return ExitStatus.OK


def cmd_confirm(args: argparse.Namespace) -> int:
    from netdecl import api

    name = api.confirm(args.name, state_dir=args.state_dir)
    _out(f"Confirmed the apply of {name}: its changes stay.")
    return ExitStatus.OK


def cmd_show(args: argparse.Namespace) -> int:
    from netdecl import api
    from netdecl.topology.export import to_yaml

    for unfinished in api.unfinished(state_dir=args.state_dir):
        _err(_unfinished_warning(unfinished))
    observed = api.show(args.namespace, state_dir=args.state_dir)
    _out(to_yaml(observed, args.name))
    return ExitStatus.OK


def _unfinished_warning(unfinished: api.PendingApply) -> str:
    if not unfinished.interrupted:
        return (f"netdecl: warning: an apply of {unfinished.topology!r} is running right now: "
                f"what follows may be half-way between two states")
    return (f"netdecl: warning: an apply of {unfinished.topology!r} was interrupted "
            f"{unfinished.how_far()}: what follows is a half-changed host; `netdecl rollback` "
            f"restores the state before it")


def cmd_sandbox(args: argparse.Namespace) -> int:
    from netdecl import api

    if args.sandbox_command == "list":
        for name in api.sandboxes():
            _out(name)
        return ExitStatus.OK
    if args.sandbox_command == "rm":
        api.remove_sandbox(args.name)
        _out(f"removed sandbox {args.name}")
        return ExitStatus.OK
    raise NetdeclError("usage: netdecl sandbox list | netdecl sandbox rm NAME")


def cmd_verify(args: argparse.Namespace) -> int:
    from netdecl import api

    topo = _load(args.file, args)
    _require_privileges("verify", "sends traffic from inside namespaces")
    result = api.verify(topo, timeout=args.timeout, measure=args.measure)
    if args.json:
        _json_out(result.to_json())
    else:
        _out(result.text())
    return ExitStatus.OK if result.ok else ExitStatus.FAILURE


def cmd_explain(args: argparse.Namespace) -> int:
    from netdecl.tools.explain import explain_live

    topo = _load(args.file, args) if args.file else None
    _require_privileges("explain", "asks the kernel inside namespaces")
    result = explain_live(args.source, args.destination, args.proto, topo)
    if args.json:
        _json_out(result.to_json())
    else:
        _out(result.text())
    return ExitStatus.FAILURE if result.outcome == "dropped" else ExitStatus.OK


def cmd_graph(args: argparse.Namespace) -> int:
    from netdecl.tools.graph import render

    sys.stdout.write(render(_load(args.file, args), args.format))
    return ExitStatus.OK


def cmd_agent(args: argparse.Namespace) -> int:
    from netdecl.agent.log import AgentLog
    from netdecl.agent.runner import Agent

    agent = Agent(args.files, _state_root(args), resync=args.resync,
                  log=AgentLog(args.log_format, level=args.log_level),
                  variables=_variables(args))
    agent.load()  # an invalid file at start: every problem as FILE:LINE:COL, exit 3
    _require_privileges("agent", "changes the kernel's network state")
    # in a mount namespace of its own (ip netns exec, a unit with ProtectSystem= and the like)
    # the namespaces it made would vanish with it
    _require_lasting_namespaces()
    return agent.run(args.metrics_listen)


def cmd_examples(args: argparse.Namespace) -> int:
    from netdecl.tools import examples

    if args.name is None:
        for name in examples.names():
            _out(name)
    else:
        sys.stdout.write(examples.text(args.name))
    return ExitStatus.OK


def cmd_schema(args: argparse.Namespace) -> int:
    from netdecl.tools import examples

    sys.stdout.write(examples.schema())
    return ExitStatus.OK


def cmd_boot(args: argparse.Namespace) -> int:
    from netdecl.agent.boot import boot

    _require_privileges("boot")
    _require_lasting_namespaces()
    return boot(args.directory, args.state_dir, wait_for_links=args.wait_for_links,
                lock_timeout=args.lock_timeout, say=_err)


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return ExitStatus.OK


def cmd_manpage(args: argparse.Namespace) -> int:
    from argparse_manpage.manpage import Manpage

    parser = build_parser()
    parser.epilog = None  # its parts get sections of their own (argparse-manpage: COMMENTS)
    page = Manpage(parser)
    # the page's header and NAME line (Manpage's documented way: set its attributes)
    page.source = f"netdecl {package_version()}"
    page.manual = "netdecl manual"
    page.description = "declarative Linux host networking: YAML topology in, kernel state out"
    for heading, content in _manpage_sections():
        page.add_section(heading, "=", content)
    sys.stdout.write(str(page))
    return ExitStatus.OK


# The man page's sections after the commands, in man-pages(7)'s order. Roff: .TP items, with
# \- for a literal hyphen in names.
MANPAGE_ENVIRONMENT = (
    ("NETDECL_STATE_DIR", "the state directory when --state-dir is not given (default "
                          "/var/lib/netdecl)"),
    ("NO_COLOR", "set to anything but the empty string: no colour, even on a terminal "
                 "(https://no-color.org)"),
    ("TERM", "dumb: no colour"),
    ("NETDECL_FAIL_AT", "testing aid: the N-th action of an apply fails as if the kernel had "
                        "refused it (and is rolled back)"),
    ("NETDECL_FAIL_ROLLBACK_AT", "testing aid: the same for the N-th action of a rollback"),
)
MANPAGE_FILES = (
    ("/var/lib/netdecl/", "the state directory (0700, root's): "
                          "topologies/NAME.json, the ownership record of each topology; "
                          "journal/NAME.jsonl, the journal of an apply under way or "
                          "interrupted (netdecl rollback reads it); lock, the host lock; "
                          "confirm/, the markers of apply --confirm-timeout"),
    ("/run/netns/NAME", "the network namespaces netdecl makes, as ip netns does"),
    ("/run/netdecl/sandboxes/", "the sandboxes of --sandbox NAME"),
)


def _manpage_sections() -> list[tuple[str, str]]:
    def items(pairs: Sequence[tuple[str, str]]) -> str:
        return "\n".join(f".TP\n.B {name.replace('-', chr(92) + '-')}\n{text}"
                         for name, text in pairs)

    examples = EPILOG.split("examples:\n", 1)[1]
    return [
        ("exit status", items([(str(int(status)), MEANING[status]) for status in ExitStatus])),
        ("environment", items(MANPAGE_ENVIRONMENT)),
        ("files", items(MANPAGE_FILES)),
        ("examples", ".nf\n" + examples.replace("\\", "\\\\").replace("-", "\\-")
         .rstrip() + "\n.fi"),
    ]


COMMANDS = {
    "validate": cmd_validate,
    "render": cmd_render,
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
    "agent": cmd_agent,
    "examples": cmd_examples,
    "schema": cmd_schema,
    "boot": cmd_boot,
    "completion": cmd_completion,
    "manpage": cmd_manpage,
}


def _permission_message(args: argparse.Namespace, exc: PermissionError) -> str:
    """EPERM/EACCES, blamed on what was refused: the state dir (its files are root's), or the
    kernel (network namespaces)."""
    what = exc.filename or exc.strerror or exc
    state = os.path.abspath(_state_root(args))
    refused = os.path.abspath(exc.filename) if exc.filename else ""
    if refused and (refused == state or refused.startswith(state.rstrip("/") + "/")):
        return (f"{args.command}: permission denied on the state dir {state} ({exc.filename}): "
                f"it belongs to root; run netdecl as root, or give a state dir of your own "
                f"with --state-dir")
    if refused.startswith("/run/netns/"):
        return (f"{args.command} cannot enter the network namespace "
                f"{os.path.basename(refused)} ({refused}): entering a namespace needs root "
                f"(CAP_SYS_ADMIN), even to read it; run it as root. Namespaces that do not "
                f"exist yet need no root to plan")
    return (f"{args.command} was refused by the kernel ({what}): reading network namespaces "
            f"needs root (CAP_SYS_ADMIN to enter them, CAP_NET_ADMIN to change them)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(lazy=True)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return ExitStatus.FAILURE
    try:
        if args.sandbox:
            from netdecl import api

            api.enter_sandbox(args.sandbox)
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
        _err(f"netdecl: {_permission_message(args, exc)}")
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
