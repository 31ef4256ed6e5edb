"""The kernel lab: kernel tests for what this machine's kernel lacks, run in a user-mode Linux.

Debian's user-mode-linux package is a whole Linux 6.1 that runs as an ordinary process, with
most network drivers as modules (dummy, 8021q, bonding, vrf, ipvlan, tunnels, netem; not
wireguard). A boot sees this machine's root filesystem read-only through hostfs, so the
installed netdecl, `ip` and Python run in it unchanged; the lab's init script (written here)
puts tmpfs where they write, loads the modules a test asks for with `modprobe -d`, runs the
test's steps one after another in one boot, and powers off. Each step's exit code, stdout,
stderr and the JSON files it writes into $OUT land in a directory of this machine, mounted
writable into the lab through hostfs, and come back to the test as a LabRun: the test asserts
on them outside.

The kernel is bounded in time and never outlives a run: it runs as the init of a PID namespace
of its own (`unshare --pid --kill-child`, under `setpriv --pdeathsig KILL`), so killing it,
or the test process dying, takes every process of the kernel along (UML calls setsid itself,
so a process group would not). Its scratch files (umid, mconsole socket, memory file) live in
a temporary directory per boot, removed afterwards.

Usage::

    run = KernelLab(["dummy", "8021q"]).run(
        [Step("vlan", "ip link add d0 type dummy\\n"
                      "ip link add link d0 name d0.10 type vlan id 10\\n"
                      "ip -j -d link show d0.10 > $OUT/link.json")])
    assert run["vlan"].json["link"][0]["linkinfo"]["info_data"]["id"] == 10

By hand, a shell inside the lab: `.venv/bin/python tests/kernellab.py dummy 8021q`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# What every lab shares (tests/labcore.py), re-exported: tests import Step, LabRun... from here.
from labcore import MARK as MARK
from labcore import STEP_NAME as STEP_NAME
from labcore import TMPFS as TMPFS
from labcore import LabError as LabError
from labcore import LabRun as LabRun
from labcore import LabTimeout as LabTimeout
from labcore import Step as Step
from labcore import StepResult as StepResult
from labcore import _boot_dirs as _boot_dirs
from labcore import _children as _children
from labcore import _in_pid_ns as _in_pid_ns
from labcore import _Kernel as _Kernel
from labcore import _pid_ns as _pid_ns
from labcore import _precompile_netdecl as _precompile_netdecl
from labcore import _results as _results
from labcore import tail as tail
from labcore import write_inputs as write_inputs

UML = "linux.uml"
MODULES_ROOT = Path("/usr/lib/uml/modules")  # where Debian's package puts the kernel's modules
MEM = "1G"  # the lab's RAM: host memory, allocated only as the lab touches it


# ---- what the lab can do on this machine ---------------------------------------------------

@functools.cache
def kernel_version() -> str:
    """The release of the installed lab kernel (`linux.uml --version` prints it)."""
    out = subprocess.run([UML, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


@functools.cache
def modules_of(version: str) -> frozenset[str]:
    """The module names the lab kernel can load (or has built in), `-` spelled `_` as modprobe
    treats them."""
    names = set()
    for index in ("modules.dep", "modules.builtin"):
        with contextlib.suppress(FileNotFoundError):
            for line in (MODULES_ROOT / version / index).read_text().splitlines():
                path = line.split(":", 1)[0].strip()
                if path:
                    names.add(_module_name(path))
    return frozenset(names)


def _module_name(path_or_name: str) -> str:
    name = path_or_name.rsplit("/", 1)[-1]
    name = re.sub(r"\.ko(\.[a-z]+)?$", "", name)
    return name.replace("-", "_")


def unavailable(modules: Sequence[str] = ()) -> str | None:
    """Why the lab cannot run here with these modules (a sentence naming what is needed),
    or None."""
    if os.geteuid() != 0:
        return "needs root: the kernel lab runs in a PID namespace of its own"
    for tool, package in ((UML, "user-mode-linux"), ("unshare", "util-linux"),
                          ("setpriv", "util-linux")):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian package {package}; bash .ci/setup installs it)"
    if not modules:
        return None
    if shutil.which("modprobe") is None:
        return "needs modprobe (Debian package kmod) to load kernel modules in the lab"
    version = kernel_version()
    if not (MODULES_ROOT / version).is_dir():
        return f"needs the lab kernel's modules in {MODULES_ROOT / version}"
    known = modules_of(version)
    missing = [m for m in modules if _module_name(m) not in known]
    if missing:
        return (f"needs kernel module {', '.join(missing)} (not among the modules of the "
                f"lab kernel {version})")
    return None


# ---- the init script -----------------------------------------------------------------------

INIT = r"""#!/bin/sh
# PID 1 of the kernel lab (written by tests/kernellab.py for one boot). Its stdout is the
# console, which the driving side reads for the MARK lines; results go to files under $LAB.
LAB=@LAB@
say() { echo "@MARK@ $*"; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for dir in @TMPFS@; do mount -t tmpfs -o mode=0755 tmpfs "$dir"; done
mkdir -p /run/netns /run/netdecl /run/lab/lib/modules "$LAB"
# the one writable piece of this machine: the boot's directory, at the same path as outside
mount -t hostfs -o "$LAB" hostfs "$LAB"
ln -s @MODULES@ /run/lab/lib/modules/
ip link set lo up
export PATH=@PATH@ PYTHON=@PYTHON@ HOME=/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1

finish() {
    sync
    say done
    # Powering off is asynchronous and PID 1 must not exit (the kernel panics): wait for it.
    echo o > /proc/sysrq-trigger
    exec sleep infinity
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
    sync  # a kill later on must not take this step's results with it (hostfs writes back)
}
"""



def init_script(lab: Path, modules: Sequence[str], steps: Sequence[Step] | None,
                version: str) -> str:
    """The lab's init: set up, then the steps (None: a shell on the console), then power off."""
    path = ":".join([os.path.dirname(sys.executable), "/usr/local/sbin", "/usr/local/bin",
                     "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    fill = {"@LAB@": shlex.quote(str(lab)), "@MARK@": MARK, "@TMPFS@": " ".join(TMPFS),
            "@MODULES@": shlex.quote(str(MODULES_ROOT / version)),
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



@dataclasses.dataclass
class KernelLab:
    """A lab with these modules loaded. Each run() is one boot, bounded in time: boot_timeout
    to start and load the modules, timeout for all steps together."""

    modules: Sequence[str] = ()
    boot_timeout: float = 60.0
    timeout: float = 120.0
    poweroff_timeout: float = 30.0

    def _prepare(self, lab: Path, scratch: Path, steps: Sequence[Step] | None,
                 files: Mapping[str, str | bytes]) -> tuple[list[str], dict[str, str]]:
        """Fill the lab's directory; the kernel's command line and environment."""
        reason = unavailable(self.modules)
        if reason:
            raise LabError(f"the kernel lab cannot run here: {reason}")
        names = [s.name for s in steps or ()]
        if len(set(names)) != len(names):
            raise ValueError(f"step names must differ: {names}")
        _precompile_netdecl()
        version = kernel_version()
        write_inputs(lab, steps or (), files)
        init = lab / "init"
        init.write_text(init_script(lab, self.modules, steps, version))
        init.chmod(0o755)
        argv = [UML, f"mem={MEM}", "rootfstype=hostfs", "rootflags=/", "ro", f"init={init}",
                "quiet", "con=null", "con0=fd:0,fd:1", f"uml_dir={scratch}", "umid=lab"]
        # TMPDIR: where UML makes (and unlinks) the file that backs the lab's memory
        return argv, {**os.environ, "TMPDIR": str(scratch)}

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
            kernel.read_until(lambda _: False, time.monotonic() + self.poweroff_timeout)
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


if __name__ == "__main__":
    # By hand: python tests/kernellab.py [MODULE...] boots the lab with these modules and
    # gives a shell on this terminal; `exit` powers it off.
    lab = KernelLab(sys.argv[1:])
    reason = unavailable(lab.modules)
    if reason:
        sys.exit(f"kernellab: {reason}")
    sys.exit(lab.shell())
