"""The qemu lab: kernel tests for what neither this machine's kernel nor the user-mode Linux of
tests/kernellab.py has (wireguard), run in Debian's own kernel under qemu.

The kernel is Debian's linux-image-amd64 (6.1, everything as modules), not installed: .ci/setup
extracts the package into .cache/qemulab/VERSION/ of this checkout and indexes its modules
there (depmod -b). qemu boots it with a small initramfs built per boot (busybox-static, the
virtio and 9p modules with their dependencies, a script) that mounts this machine's root
filesystem read-only over virtio-9p and hands over to the same init script the UML lab runs
(tests/labcore.py): tmpfs where things write, the test's modules loaded with `modprobe -d`
from the extracted tree, the steps one after another in one boot, power off. The lab's
directory is a second, writable 9p share at the same path as outside, so results come back
as a LabRun, exactly as with KernelLab.

qemu emulates the CPU (TCG), so it is much slower than UML to boot; a test module should boot
it once (a module-scoped fixture) where it can. It is
bounded in time and killed with everything in it like the UML lab (labcore._Kernel: the init
of a PID namespace of its own, under `setpriv --pdeathsig KILL`).

Usage::

    run = QemuLab(["wireguard"]).run(
        [Step("wg", "ip link add wg0 type wireguard\\n"
                    "ip -j -d link show wg0 > $OUT/link.json")])
    assert run["wg"].json["link"][0]["linkinfo"]["info_kind"] == "wireguard"

By hand, a shell inside the lab: `.venv/bin/python tests/qemulab.py wireguard`.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from labcore import (
    MARK,
    Lab,
    LabError,
    Step,
    _module_name,
    modules_in,
)

QEMU = "qemu-system-x86_64"
BUSYBOX = Path("/bin/busybox")  # busybox-static: the initramfs's only program
# .ci/setup extracts Debian's kernel package here: VERSION/boot/vmlinuz-VERSION and
# VERSION/lib/modules/VERSION (indexed)
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "qemulab"
MEM = "1G"
# What the initramfs loads to reach the root filesystem: the virtio PCI transport, 9p over it.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
MSIZE = 512 * 1024  # 9p's largest message: fewer round trips for Python's many small reads


# ---- what the lab can do on this machine ---------------------------------------------------

def kernel_dir() -> Path | None:
    """The extracted kernel's directory (the newest, if .ci/setup left several), or None."""
    found = sorted(p for p in CACHE.glob("*") if (p / "boot" / f"vmlinuz-{p.name}").is_file()
                   and (p / "lib" / "modules" / p.name / "modules.dep").is_file())
    return found[-1] if found else None


def kernel_version() -> str:
    found = kernel_dir()
    if found is None:
        raise LabError(f"no kernel extracted in {CACHE} (bash .ci/setup extracts it)")
    return found.name


def _modules_dir() -> Path:
    return CACHE / kernel_version() / "lib" / "modules" / kernel_version()


def _accel() -> str:
    """qemu's accelerator: the emulated CPU (tcg) unless NETDECL_QEMULAB_ACCEL says (kvm):
    /dev/kvm exists on some machines where a KVM guest never boots (nested virtualisation)."""
    return os.environ.get("NETDECL_QEMULAB_ACCEL", "tcg")


def unavailable(modules: Sequence[str] = ()) -> str | None:
    """Why the lab cannot run here with these modules (a sentence naming what is needed),
    or None."""
    if os.geteuid() != 0:
        return "needs root: the qemu lab runs in a PID namespace of its own"
    for tool, package in ((QEMU, "qemu-system-x86"), ("unshare", "util-linux"),
                          ("setpriv", "util-linux"), ("modprobe", "kmod")):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian package {package}; bash .ci/setup installs it)"
    if not BUSYBOX.is_file():
        return f"needs {BUSYBOX} (Debian package busybox-static; bash .ci/setup installs it)"
    if kernel_dir() is None:
        return (f"needs Debian's kernel extracted into {CACHE} "
                f"(bash .ci/setup extracts linux-image-amd64's kernel there)")
    known = modules_in(_modules_dir())
    missing = [m for m in (*BOOT_MODULES, *modules) if _module_name(m) not in known]
    if missing:
        return (f"needs kernel module {', '.join(missing)} (not among the modules of the "
                f"qemu lab kernel {kernel_version()})")
    return None


# ---- the initramfs -------------------------------------------------------------------------

# PID 1 until the root filesystem is mounted; then the lab's init script (labcore.INIT).
INITRAMFS_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "@MARK@ initramfs-failed $*"; poweroff -f; }
mount -t proc proc /proc
for ko in @KO@; do insmod "/ko/$ko" || fail "insmod $ko"; done
# the 9p channels appear as virtio probes them, which may lag insmod: wait, bounded
tries=0
until mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=@MSIZE@ \
        hostroot /root 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -lt 50 ] || fail "mount 9p hostroot"
    sleep 0.1
done
mount -t devtmpfs devtmpfs /root/dev || fail "mount devtmpfs"
umount /proc
exec switch_root /root "$labinit"
"""


def _dependencies(modules_dir: Path, names: Sequence[str]) -> list[str]:
    """The module files (relative to modules_dir) that load these modules, dependencies
    first, each once, as modules.dep lists them."""
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[_module_name(path)] = [path, *rest.split()]
    builtin = modules_in(modules_dir) - set(deps)
    order: list[str] = []
    for name in names:
        name = _module_name(name)
        if name in builtin:
            continue
        path, *needs = deps[name]
        for need in [*reversed(needs), path]:  # modules.dep lists the deepest last
            if need not in order:
                order.append(need)
    return order


def _cpio(entries: Sequence[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive (what the kernel unpacks as an initramfs) of (name, mode, data);
    a character device's data is its b"major,minor"."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        rdev = (0, 0)
        if mode & 0o170000 == 0o020000:
            major, minor = data.split(b",")
            rdev, data = (int(major), int(minor)), b""
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def initramfs(modules_dir: Path) -> bytes:
    """The initramfs: busybox, the modules that reach the 9p root, INITRAMFS_INIT."""
    files = _dependencies(modules_dir, BOOT_MODULES)
    init = (INITRAMFS_INIT.replace("@MARK@", MARK).replace("@MSIZE@", str(MSIZE))
            .replace("@KO@", " ".join(shlex.quote(Path(f).name) for f in files)))
    entries: list[tuple[str, int, bytes]] = [
        (d, 0o040755, b"") for d in ("bin", "dev", "proc", "root", "ko")]
    entries += [("dev/console", 0o020600, b"5,1"),  # init's stdio before devtmpfs
                ("bin/busybox", 0o100755, BUSYBOX.read_bytes()),
                ("init", 0o100755, init.encode())]
    entries += [(f"ko/{Path(f).name}", 0o100644, (modules_dir / f).read_bytes())
                for f in files]
    return _cpio(entries)


# ---- running it ----------------------------------------------------------------------------

@dataclasses.dataclass
class QemuLab(Lab):
    """A lab in Debian's kernel under qemu with these modules loaded (run, shell: see Lab).
    The boot takes longer than UML's (an emulated CPU): boot_timeout is wider."""

    boot_timeout: float = 180.0
    timeout: float = 300.0

    def _prepare(self, lab: Path, scratch: Path, steps: Sequence[Step] | None,
                 files: Mapping[str, str | bytes]) -> tuple[list[str], dict[str, str]]:
        reason = unavailable(self.modules)
        if reason:
            raise LabError(f"the qemu lab cannot run here: {reason}")
        version = kernel_version()
        modules_dir = _modules_dir()
        init = self._fill(lab, steps, files, modules_dir,
                          "mount -t 9p -o trans=virtio,version=9p2000.L,msize="
                          f'{MSIZE} lab "$LAB"')
        initrd = scratch / "initrd.cpio"
        initrd.write_bytes(initramfs(modules_dir))
        cmdline = f"console=ttyS0 panic=-1 quiet labinit={init}"
        argv = [QEMU, "-accel", _accel(), "-m", MEM, "-smp", "1",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                # the console: qemu's stdio (^C goes to the lab's shell, not to qemu)
                "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
                "-kernel", str(CACHE / version / "boot" / f"vmlinuz-{version}"),
                "-initrd", str(initrd), "-append", cmdline,
                "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                           "multidevs=remap",
                "-virtfs", f"local,path={lab},mount_tag=lab,security_model=none"]
        return argv, dict(os.environ)


if __name__ == "__main__":
    # By hand: python tests/qemulab.py [MODULE...] boots the lab with these modules and
    # gives a shell on this terminal; `exit` powers it off.
    qemu_lab = QemuLab(sys.argv[1:])
    reason = unavailable(qemu_lab.modules)
    if reason:
        sys.exit(f"qemulab: {reason}")
    sys.exit(qemu_lab.shell())
