"""The kernel lab: kernel tests for what this machine's kernel lacks, run in a user-mode Linux.

Debian's user-mode-linux package is a whole Linux 6.1 that runs as an ordinary process, with
most network drivers as modules (dummy, 8021q, bonding, vrf, ipvlan, tunnels, netem; not
wireguard). A boot sees this machine's root filesystem read-only through hostfs, so the
installed netdecl, `ip` and Python run in it unchanged; the lab's init script (written by
tests/labcore.py, which the qemu lab shares) puts tmpfs where they write, loads the modules a
test asks for with `modprobe -d`, runs the test's steps one after another in one boot, and
powers off. Each step's exit code, stdout, stderr and the JSON files it writes into $OUT land
in a directory of this machine, mounted writable into the lab through hostfs, and come back
to the test as a LabRun: the test asserts on them outside.

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

import dataclasses
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# What every lab shares (tests/labcore.py), re-exported: tests import Step, LabRun... from here.
from labcore import MARK as MARK
from labcore import STEP_NAME as STEP_NAME
from labcore import TMPFS as TMPFS
from labcore import Lab as Lab
from labcore import LabError as LabError
from labcore import LabRun as LabRun
from labcore import LabTimeout as LabTimeout
from labcore import Step as Step
from labcore import StepResult as StepResult
from labcore import _boot_dirs as _boot_dirs
from labcore import _children as _children
from labcore import _in_pid_ns as _in_pid_ns
from labcore import _Kernel as _Kernel
from labcore import _module_name as _module_name
from labcore import _pid_ns as _pid_ns
from labcore import _precompile_netdecl as _precompile_netdecl
from labcore import _results as _results
from labcore import init_script as init_script
from labcore import modules_in as modules_in
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
    return modules_in(MODULES_ROOT / version)


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


@dataclasses.dataclass
class KernelLab(Lab):
    """A lab in user-mode Linux with these modules loaded (run, shell: see Lab)."""

    def _prepare(self, lab: Path, scratch: Path, steps: Sequence[Step] | None,
                 files: Mapping[str, str | bytes]) -> tuple[list[str], dict[str, str]]:
        """Fill the lab's directory; the kernel's command line and environment."""
        reason = unavailable(self.modules)
        if reason:
            raise LabError(f"the kernel lab cannot run here: {reason}")
        init = self._fill(lab, steps, files, MODULES_ROOT / kernel_version(),
                          'mount -t hostfs -o "$LAB" hostfs "$LAB"')
        argv = [UML, f"mem={MEM}", "rootfstype=hostfs", "rootflags=/", "ro", f"init={init}",
                "quiet", "con=null", "con0=fd:0,fd:1", f"uml_dir={scratch}", "umid=lab"]
        # TMPDIR: where UML makes (and unlinks) the file that backs the lab's memory
        return argv, {**os.environ, "TMPDIR": str(scratch)}

if __name__ == "__main__":
    # By hand: python tests/kernellab.py [MODULE...] boots the lab with these modules and
    # gives a shell on this terminal; `exit` powers it off.
    lab = KernelLab(sys.argv[1:])
    reason = unavailable(lab.modules)
    if reason:
        sys.exit(f"kernellab: {reason}")
    sys.exit(lab.shell())
