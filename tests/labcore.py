"""What the kernel labs share (tests/kernellab.py, tests/qemulab.py): the steps a test gives a
lab and the results it gets back, the lab directory they travel through, and the running
kernel: its console on a pipe, bounded in time, killed with every process of it."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

MARK = "netdecl-lab:"  # lines the init script writes to the console for the driving side
# Where what runs in the lab writes: the root filesystem is this machine's, read-only.
TMPFS = ("/run", "/tmp", "/var/lib/netdecl")
STEP_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


class LabError(RuntimeError):
    """The lab did not run the steps to the end (a crash, a panic, a module that would not
    load). `run` holds what the steps that finished left, and the kernel's console."""

    def __init__(self, message: str, run: LabRun | None = None) -> None:
        super().__init__(message)
        self.run = run


class LabTimeout(LabError):
    """The lab ran out of time; it was killed. `running` is the step it was in, if any."""

    def __init__(self, message: str, run: LabRun | None = None,
                 running: str | None = None) -> None:
        super().__init__(message, run)
        self.running = running


@dataclasses.dataclass(frozen=True)
class Step:
    """One program the lab runs, as root, in the lab's root namespace, with the test's files
    as its working directory and $OUT a directory whose *.json files come back parsed.
    A step's script is shell unless made with Step.python."""

    name: str
    script: str
    interpreter: str = "/bin/sh"

    def __post_init__(self) -> None:
        if not STEP_NAME.fullmatch(self.name):
            raise ValueError(f"step name {self.name!r}: use [a-z0-9_-], it names a directory")

    @classmethod
    def python(cls, name: str, code: str | Callable[[], object]) -> Step:
        """A step in Python (this interpreter, so netdecl imports): source text, or a
        function whose source is sent and then called; it may not use names from outside."""
        if callable(code):
            source = textwrap.dedent(inspect.getsource(code))
            code = f"{source}\n{code.__name__}()\n"
        return cls(name, code, sys.executable)


@dataclasses.dataclass(frozen=True)
class StepResult:
    name: str
    returncode: int
    stdout: str
    stderr: str
    json: dict[str, Any]  # $OUT/NAME.json, parsed, by NAME

    def ok(self) -> str:
        """The step's stdout; an AssertionError telling its exit code and output if it failed."""
        if self.returncode != 0:
            raise AssertionError(f"lab step {self.name} failed with exit code "
                                 f"{self.returncode}\nstdout:\n{self.stdout}\n"
                                 f"stderr:\n{self.stderr}")
        return self.stdout


@dataclasses.dataclass(frozen=True)
class LabRun:
    steps: dict[str, StepResult]  # the steps that finished, in order
    console: str  # the kernel's console: its messages and the init script's
    seconds: float  # from starting the kernel to its exit

    def __getitem__(self, name: str) -> StepResult:
        if name not in self.steps:
            raise AssertionError(f"lab step {name} did not finish; finished: "
                                 f"{list(self.steps)}\nconsole:\n{tail(self.console)}")
        return self.steps[name]


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])



def modules_in(directory: Path) -> frozenset[str]:
    """The module names a kernel with this lib/modules/VERSION directory can load (or has
    built in), `-` spelled `_` as modprobe treats them."""
    names = set()
    for index in ("modules.dep", "modules.builtin"):
        with contextlib.suppress(FileNotFoundError):
            for line in (directory / index).read_text().splitlines():
                path = line.split(":", 1)[0].strip()
                if path:
                    names.add(_module_name(path))
    return frozenset(names)


def _module_name(path_or_name: str) -> str:
    name = path_or_name.rsplit("/", 1)[-1]
    name = re.sub(r"\.ko(\.[a-z]+)?$", "", name)
    return name.replace("-", "_")


# ---- the init script -----------------------------------------------------------------------

INIT = r"""#!/bin/sh
# PID 1 of a kernel lab (written by tests/labcore.py for one boot). Its stdout is the
# console, which the driving side reads for the MARK lines; results go to files under $LAB.
LAB=@LAB@
say() { echo "@MARK@ $*"; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for dir in @TMPFS@; do mount -t tmpfs -o mode=0755 tmpfs "$dir"; done
mkdir -p /run/netns /run/netdecl /run/lab/lib/modules "$LAB"
# the one writable piece of this machine: the boot's directory, at the same path as outside
@MOUNT_LAB@
ln -s @MODULES@ /run/lab/lib/modules/
ip link set lo up
export PATH=@PATH@ PYTHON=@PYTHON@ HOME=/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1

finish() {
    sync
    say done
    # Powering off is asynchronous and PID 1 must not exit (the kernel panics): wait for it.
    # Not by exec: the qemu lab's root is a 9p share that power-off may take down first, and
    # an exec failing there (EIO) would end PID 1; a builtin loop needs no file.
    echo o > /proc/sysrq-trigger
    sleep infinity
    while :; do :; done
}

for module in @MODULE_LIST@; do
    if ! modprobe -d /run/lab "$module" 2> "$LAB/modprobe.err"; then
        say "modprobe-failed $module"
        finish
    fi
done
say booted

step() {  # NAME INTERPRETER
    out="$LAB/out/$1"
    mkdir -p "$out"
    say "step $1"
    (cd "$LAB/work" && OUT="$out" "$2" "$LAB/steps/$1" < /dev/null > "$out/stdout" 2> "$out/stderr")
    echo $? > "$out/rc"
    sync  # a kill later on must not take this step's results with it (hostfs and 9p write back)
}
"""

def init_script(lab: Path, modules: Sequence[str], steps: Sequence[Step] | None,
                modules_dir: Path, mount_lab: str) -> str:
    """The lab's init: set up, then the steps (None: a shell on the console), then power off.
    modules_dir: the kernel's lib/modules/VERSION; mount_lab: the shell command that mounts
    this machine's $LAB, writable, at $LAB."""
    path = ":".join([os.path.dirname(sys.executable), "/usr/local/sbin", "/usr/local/bin",
                     "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    fill = {"@LAB@": shlex.quote(str(lab)), "@MARK@": MARK, "@TMPFS@": " ".join(TMPFS),
            "@MODULES@": shlex.quote(str(modules_dir)), "@MOUNT_LAB@": mount_lab,
            "@PATH@": shlex.quote(path), "@PYTHON@": shlex.quote(sys.executable),
            "@MODULE_LIST@": " ".join(shlex.quote(m) for m in modules)}
    text = INIT
    for key, value in fill.items():
        text = text.replace(key, value)
    if steps is None:
        # by hand: a shell with the console as its terminal (so ^C works), in the work dir
        text += 'cd "$LAB/work"\nsetsid -c /bin/bash -i\n'
    else:
        text += "".join(f"step {s.name} {shlex.quote(s.interpreter)}\n" for s in steps)
    return text + "finish\n"


def write_inputs(lab: Path, steps: Sequence[Step], files: Mapping[str, str | bytes]) -> None:
    """The lab directory's inputs, as the init script reads them: ``work/`` (the steps'
    working directory, ``files`` in it), ``steps/`` (one script each) and an empty ``out/``."""
    for sub in ("work", "steps", "out"):
        (lab / sub).mkdir()
    for name, content in files.items():
        target = lab / "work" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    for step in steps:
        (lab / "steps" / step.name).write_text(step.script)



# ---- running it ----------------------------------------------------------------------------

def _precompile_netdecl() -> None:
    """Byte-compile the netdecl package the lab will run. The checkout is installed editable
    and nothing may have imported every module of it yet; the lab sees the tree read-only, so
    Python would compile what it imports again in every process (seconds each in UML)."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("netdecl")
    for directory in (spec.submodule_search_locations or []) if spec else []:
        if os.access(directory, os.W_OK):
            compileall.compile_dir(directory, quiet=2)


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
    return found


def _in_pid_ns(ns: str) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and _pid_ns(int(e)) == ns]


class _Kernel:
    """One running linux.uml, the init of its own PID namespace, its console on a pipe."""

    def __init__(self, argv: list[str], env: Mapping[str, str], *, terminal: bool = False
                 ) -> None:
        """terminal: the console is this process's terminal (by hand), not a pipe."""
        # its own session: a ^C meant for pytest reaches pytest, which then kills the lab
        piped: dict[str, Any] = {} if terminal else {
            "stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT,
            "start_new_session": True}
        self.proc = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "--",
             "unshare", "--pid", "--fork", "--kill-child", "--", *argv], env=dict(env), **piped)
        self._fd = self.proc.stdout.fileno() if self.proc.stdout else -1
        self._buf = b""
        self.lines: list[str] = []
        self.eof = False
        self.ns: str | None = None  # the lab's PID namespace, once its kernel runs

    def _note_ns(self) -> None:
        """Remember the kernel's PID namespace (not our own: unshare may not have forked)."""
        if self.ns is None:
            for child in _children(self.proc.pid):
                ns = _pid_ns(child)
                if ns and ns != _pid_ns(os.getpid()):
                    self.ns = ns

    def read_until(self, want: Callable[[str], bool], deadline: float) -> str | None:
        """Read the console until a line `want`s, the console closes (None) or the deadline
        passes (TimeoutError). A kernel panic is a LabError at once: it would hang."""
        with selectors.DefaultSelector() as sel:
            sel.register(self._fd, selectors.EVENT_READ)
            while not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                if not sel.select(left):
                    continue
                chunk = os.read(self._fd, 65536)
                self._note_ns()
                if not chunk:
                    self.eof = True
                    break
                *lines, self._buf = (self._buf + chunk).split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace").rstrip("\r")
                    self.lines.append(line)
                    if "Kernel panic" in line:
                        raise LabError(f"the lab kernel panicked: {line}")
                    if want(line):
                        return line
        if self._buf:
            self.lines.append(self._buf.decode(errors="replace"))
            self._buf = b""
        return None

    @property
    def console(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        """Kill the kernel and every process of it; return once none is left. Idempotent."""
        self._note_ns()
        # The namespace's init first: the kernel kills the rest of the namespace with it and
        # unshare reaps it (killing unshare first would leave the init a zombie of PID 1's).
        for child in _children(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        if self.ns:
            deadline = time.monotonic() + 10
            while (left := _in_pid_ns(self.ns)) and time.monotonic() < deadline:
                time.sleep(0.05)
            if left:
                raise LabError(f"processes of the lab outlived it: {left}")



@dataclasses.dataclass
class Lab:
    """A lab with these modules loaded. Each run() is one boot, bounded in time: boot_timeout
    to start and load the modules, timeout for all steps together. A kind of lab says how
    its kernel starts (_prepare)."""

    modules: Sequence[str] = ()
    boot_timeout: float = 60.0
    timeout: float = 120.0
    poweroff_timeout: float = 30.0

    def _prepare(self, lab: Path, scratch: Path, steps: Sequence[Step] | None,
                 files: Mapping[str, str | bytes]) -> tuple[list[str], dict[str, str]]:
        """Fill the lab's directory; the kernel's command line and environment."""
        raise NotImplementedError

    def _fill(self, lab: Path, steps: Sequence[Step] | None, files: Mapping[str, str | bytes],
              modules_dir: Path, mount_lab: str) -> Path:
        """Write the steps, the files and the init script (init_script) into the lab's
        directory; the init script's path."""
        names = [s.name for s in steps or ()]
        if len(set(names)) != len(names):
            raise ValueError(f"step names must differ: {names}")
        _precompile_netdecl()
        write_inputs(lab, steps or (), files)
        init = lab / "init"
        init.write_text(init_script(lab, self.modules, steps, modules_dir, mount_lab))
        init.chmod(0o755)
        return init

    def run(self, steps: Sequence[Step], files: Mapping[str, str | bytes] | None = None
            ) -> LabRun:
        """Boot, run the steps in order (a failing step does not stop the next), power off.
        `files` (relative path: content) are the steps' working directory."""
        with _boot_dirs() as (lab, scratch):
            argv, env = self._prepare(lab, scratch, steps, files or {})
            started = time.monotonic()
            kernel = _Kernel(argv, env)
            problem: LabError | None = None
            try:
                problem = self._drive(kernel, lab)
            finally:
                kernel.kill()
            run = LabRun(_results(lab / "out", steps), kernel.console,
                         time.monotonic() - started)
        if problem is not None:
            problem.run = run
            problem.args = (f"{problem.args[0]}\nfinished steps: {list(run.steps)}\n"
                            f"console:\n{tail(run.console)}",)
            raise problem
        return run

    def _drive(self, kernel: _Kernel, lab: Path) -> LabError | None:
        """Follow the console through boot, steps and power-off; what went wrong, or None."""
        def marked(*words: str) -> Callable[[str], bool]:
            return lambda line: line.startswith(MARK) and line.split()[1] in words

        phase, running = "to boot", None
        try:
            line = kernel.read_until(marked("booted", "modprobe-failed"),
                                     time.monotonic() + self.boot_timeout)
            if line is None:
                return LabError(f"the lab kernel exited while booting "
                                f"(exit code {kernel.proc.wait()})")
            if "modprobe-failed" in line:
                err = (lab / "modprobe.err").read_text().strip()
                return LabError(f"modprobe {line.split()[-1]} failed in the lab: {err}")
            phase, deadline = "to run its steps", time.monotonic() + self.timeout
            while (line := kernel.read_until(marked("step", "done"), deadline)) is not None:
                if line.split()[1] == "done":
                    break
                running = line.split()[2]
            else:
                return LabError(f"the lab kernel exited in step {running} "
                                f"(exit code {kernel.proc.wait()})")
            phase, running = "to power off", None
            try:
                kernel.read_until(lambda _: False, time.monotonic() + self.poweroff_timeout)
            except LabError:
                pass  # a panic while powering off: every step's results were synced before
        except TimeoutError:
            where = f" (in step {running})" if running else ""
            return LabTimeout(f"the lab ran out of time {phase}{where}; it was killed",
                              running=running)
        except LabError as exc:
            return exc
        return None

    def shell(self) -> int:
        """Boot with a shell on this terminal (by hand); power off when it exits."""
        with _boot_dirs() as (lab, scratch):
            argv, env = self._prepare(lab, scratch, None, {})
            kernel = _Kernel(argv, env, terminal=True)
            try:
                return kernel.proc.wait()
            finally:
                kernel.kill()


@contextlib.contextmanager
def _boot_dirs() -> Iterator[tuple[Path, Path]]:
    """One boot's two directories, removed afterwards: the lab's (the test's files in, the
    results out; the lab mounts it writable) and UML's scratch (umid, mconsole socket, and the
    file backing the lab's memory, which UML wants on a tmpfs: /dev/shm where there is one)."""
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    lab = Path(tempfile.mkdtemp(prefix="netdecl-lab-"))
    try:
        scratch = Path(tempfile.mkdtemp(prefix="netdecl-lab-uml-", dir=shm))
        try:
            yield lab, scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        shutil.rmtree(lab, ignore_errors=True)


def _results(out: Path, steps: Sequence[Step]) -> dict[str, StepResult]:
    """What each finished step left in out/NAME (a step without an rc file did not finish)."""
    results = {}
    for step in steps:
        where = out / step.name
        try:
            returncode = int((where / "rc").read_text())
        except (OSError, ValueError):
            continue
        parsed = {}
        for path in sorted(where.glob("*.json")):
            try:
                parsed[path.stem] = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise LabError(f"lab step {step.name} wrote {path.name}, not JSON: {exc}"
                               ) from None
        results[step.name] = StepResult(step.name, returncode,
                                        (where / "stdout").read_text(errors="replace"),
                                        (where / "stderr").read_text(errors="replace"), parsed)
    return results

