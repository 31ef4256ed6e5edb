"""The systemd lab: the kernel lab (tests/kernellab.py) booted with systemd as its init.

Issue 28's units must be proven under a real systemd, and PID 1 here is not systemd. So the
lab's user-mode Linux boots a tiny first init (written here) that puts an overlay over this
machine's root (hostfs, read-only, as the lower layer; a tmpfs as the upper one), so systemd
may write anywhere and nothing reaches this machine; then it switches into the overlay and
execs /lib/systemd/systemd, which reaches multi-user.target in 15-25 s here with udev, D-Bus,
NetworkManager and systemd-networkd running (all from this machine's packages).

What the first init prepares in the overlay before systemd starts:
- /etc/machine-id: a fixed one of the lab's own (this machine's would be shared otherwise);
- /lib/modules/VERSION: the lab kernel's modules (the kernel's module autoload finds them);
- the units this machine enables that make no sense in a lab (sshd, timers, getty on a
  console that is /dev/null, postgresql...) masked;
- the lab's directory mounted (hostfs, writable) at /lab: the test's files in /lab/work, the
  steps in /lab/steps, their results in /lab/out, as in the kernel lab;
- `persist`: a directory of this machine mounted at /etc/netdecl and /var/lib/netdecl (its
  etc/ and state/), so a second boot finds the files and the state the first one left, as a
  real host's disk would keep them;
- lab-steps.service, ordered after multi-user.target: runs the steps one after another,
  saves the journal to /lab/journal.txt and powers off.

The kernel is bounded in time and killed with everything in it (kernellab._Kernel).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from kernellab import (
    MEM,
    MODULES_ROOT,
    UML,
    LabError,
    LabRun,
    LabTimeout,
    Step,
    _boot_dirs,
    _Kernel,
    _precompile_netdecl,
    _results,
    kernel_version,
    tail,
    unavailable,
    write_inputs,
)

SYSTEMD = "/lib/systemd/systemd"
MACHINE_ID = "6e65746465636c2d6c61622d30303031"  # "netdecl-lab-0001", hex
# enabled on this machine, pointless or slow in a lab
MASKED = ("ssh.service", "sshd.service", "postgresql.service", "e2scrub_reap.service",
          "getty@tty1.service", "serial-getty@ttyS0.service", "console-getty.service",
          "systemd-timesyncd.service", "systemd-pstore.service", "apt-daily.timer",
          "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
          "fstrim.timer", "man-db.timer", "NetworkManager-dispatcher.service",
          "ModemManager.service", "wpa_supplicant.service",
          # UML's own networking helper (user-mode-linux's package): waits 20 s for nothing
          "uml-utilities.service")

FIRST_INIT = r"""#!/bin/sh
# The lab's first init (tests/systemdlab.py): an overlay over this machine's root, then systemd.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 tmpfs /mnt
mkdir -p /mnt/lab/lib/modules /mnt/upper /mnt/work /mnt/root
ln -s @MODULES@ /mnt/lab/lib/modules/
if ! modprobe -d /mnt/lab overlay; then
    echo "@MARK@ no-overlay"; echo o > /proc/sysrq-trigger; sleep 60
fi
mount -t overlay overlay -o lowerdir=/,upperdir=/mnt/upper,workdir=/mnt/work /mnt/root
R=/mnt/root
ln -s @MODULES@ "$R/lib/modules/"
for module in @MODULE_LIST@; do
    modprobe -d /mnt/lab "$module" || echo "@MARK@ modprobe-failed $module"
done
mkdir -p "$R/lab" "$R/etc/netdecl" "$R/var/lib/netdecl"
mount -t hostfs -o @LAB@ hostfs "$R/lab"
if [ -n "@PERSIST@" ]; then
    mount -t hostfs -o @PERSIST@/etc hostfs "$R/etc/netdecl"
    mount -t hostfs -o @PERSIST@/state hostfs "$R/var/lib/netdecl"
fi
echo @MACHINE_ID@ > "$R/etc/machine-id"
for unit in @MASKED@; do ln -sf /dev/null "$R/etc/systemd/system/$unit"; done
cp @LAB@/lab-steps.service "$R/etc/systemd/system/lab-steps.service"
mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
ln -s /etc/systemd/system/lab-steps.service "$R/etc/systemd/system/multi-user.target.wants/"
for unit in @ENABLE@; do
    ln -sf "/lib/systemd/system/$unit" "$R/etc/systemd/system/multi-user.target.wants/$unit"
done
@PREPARE@
# shared, as systemd makes / on a real machine (here it leaves the moved root private), so
# that a mount under /run/netns propagates as it does there (backends/mountns.py checks)
mount --make-rshared "$R"
echo "@MARK@ switching"
exec switch_root "$R" @SYSTEMD@
"""

STEPS_UNIT = """[Unit]
Description=the test's steps, then power off
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh /lab/run-steps
StandardOutput=journal+console
"""

RUN_STEPS = r"""# the test's steps (tests/systemdlab.py), each as root, its results in /lab/out
export PATH=@PATH@ PYTHON=@PYTHON@ HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
step() {  # NAME INTERPRETER
    out=/lab/out/$1
    mkdir -p "$out"
    echo "@MARK@ step $1" > /dev/console
    (cd /lab/work && OUT="$out" "$2" "/lab/steps/$1" < /dev/null > "$out/stdout" 2> "$out/stderr")
    echo $? > "$out/rc"
    sync
}
"""

FINISH = r"""journalctl -b --no-pager -o short-monotonic > /lab/journal.txt 2>&1
sync
echo "@MARK@ done" > /dev/console
systemctl poweroff --no-block
"""


@dataclasses.dataclass(frozen=True)
class SystemdRun:
    run: LabRun
    journal: str  # `journalctl -b` of the boot, saved just before power-off


def systemd_unavailable() -> str | None:
    """Why the systemd lab cannot run here, or None."""
    reason = unavailable(["overlay"])
    if reason:
        return reason
    for path, package in ((SYSTEMD, "systemd"), ("/usr/sbin/NetworkManager", "network-manager"),
                          ("/lib/systemd/systemd-networkd", "systemd"),
                          ("/lib/systemd/systemd-udevd", "udev")):
        if not os.path.exists(path):
            return f"needs {path} (Debian package {package}; bash .ci/setup installs it)"
    if shutil.which("switch_root") is None:
        return "needs switch_root (util-linux)"
    return None


@dataclasses.dataclass
class SystemdLab:
    timeout: float = 180.0  # boot, steps and power-off together
    # loaded before systemd starts (the lab kernel's autoload does not find them by itself)
    modules: Sequence[str] = ("veth", "bridge", "dummy")
    # shell run by the first init just before systemd starts, with $R the overlay's root
    # (install units, write configuration): the machine as it is at power-on
    prepare: str = ""
    enable: Sequence[str] = ("systemd-networkd.service",)

    def run(self, steps: Sequence[Step], files: Mapping[str, str | bytes] | None = None,
            persist: Path | None = None) -> SystemdRun:
        reason = systemd_unavailable() or unavailable(self.modules)
        if reason:
            raise LabError(f"the systemd lab cannot run here: {reason}")
        _precompile_netdecl()
        with _boot_dirs() as (lab, scratch):
            argv = self._prepare(lab, scratch, steps, files or {}, persist)
            started = time.monotonic()
            kernel = _Kernel(argv, {**os.environ, "TMPDIR": str(scratch)})
            problem: LabError | None = None
            running = None
            try:
                deadline = started + self.timeout
                while (line := kernel.read_until(
                        lambda text: text.startswith("netdecl-lab: "), deadline)) is not None:
                    words = line.split()
                    if words[1] == "step":
                        running = words[2]
                    elif words[1] in ("no-overlay", "modprobe-failed"):
                        problem = LabError(f"the lab kernel could not load {words[-1]}")
            except TimeoutError:
                where = f" in step {running}" if running else " (booting?)"
                problem = LabTimeout(f"the systemd lab ran out of time{where}; it was killed",
                                     running=running)
            except LabError as exc:
                problem = exc
            finally:
                kernel.kill()
            run = LabRun(_results(lab / "out", steps), kernel.console,
                         time.monotonic() - started)
            journal_file = lab / "journal.txt"
            journal = journal_file.read_text(errors="replace") if journal_file.exists() else ""
        if problem is None and len(run.steps) != len(steps):
            problem = LabError("the systemd lab powered off before its steps finished")
        if problem is not None:
            problem.run = run
            problem.args = (f"{problem.args[0]}\nfinished steps: {list(run.steps)}\n"
                            f"console:\n{tail(run.console, 60)}\njournal:\n{tail(journal, 60)}",)
            raise problem
        return SystemdRun(run, journal)

    def _prepare(self, lab: Path, scratch: Path, steps: Sequence[Step],
                 files: Mapping[str, str | bytes], persist: Path | None) -> list[str]:
        version = kernel_version()
        write_inputs(lab, steps, files)
        if persist is not None:
            (persist / "etc").mkdir(parents=True, exist_ok=True)
            (persist / "state").mkdir(mode=0o700, parents=True, exist_ok=True)
        path = ":".join([os.path.dirname(sys.executable), "/usr/local/sbin", "/usr/local/bin",
                         "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        fill = {"@LAB@": shlex.quote(str(lab)), "@MARK@": "netdecl-lab:",
                "@MODULES@": shlex.quote(str(MODULES_ROOT / version)),
                "@PERSIST@": shlex.quote(str(persist)) if persist else "",
                "@MACHINE_ID@": MACHINE_ID, "@MASKED@": " ".join(MASKED),
                "@ENABLE@": " ".join(self.enable),
                "@MODULE_LIST@": " ".join(shlex.quote(m) for m in self.modules),
                "@SYSTEMD@": SYSTEMD, "@PREPARE@": self.prepare,
                "@PATH@": shlex.quote(path), "@PYTHON@": shlex.quote(sys.executable)}

        def filled(text: str) -> str:
            for key, value in fill.items():
                text = text.replace(key, value)
            return text

        (lab / "lab-steps.service").write_text(STEPS_UNIT)
        (lab / "run-steps").write_text(
            filled(RUN_STEPS)
            + "".join(f"step {s.name} {shlex.quote(s.interpreter)}\n" for s in steps)
            + filled(FINISH))
        init = lab / "init"
        init.write_text(filled(FIRST_INIT))
        init.chmod(0o755)
        return [UML, f"mem={MEM}", "rootfstype=hostfs", "rootflags=/", "ro", f"init={init}",
                "con=null", "con0=fd:0,fd:1", f"uml_dir={scratch}", "umid=lab",
                "systemd.show_status=0", "systemd.journald.forward_to_console=1"]


if __name__ == "__main__":
    # By hand: python tests/systemdlab.py boots, prints `systemctl is-system-running` and the
    # failed units, and powers off.
    # (the steps are part of the boot transaction: is-system-running says "starting")
    result = SystemdLab().run([Step("state", "systemctl is-active multi-user.target; "
                                             "systemctl --failed --no-pager")])
    print(result.run["state"].stdout, f"({result.run.seconds:.1f}s)")
