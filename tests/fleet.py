"""A fleet of SSH hosts inside one hermetic host, and Ansible to drive them (tests/test_fleet.py).

Each managed host is a real sshd (Debian's openssh-server) in a network namespace of its own,
`hN`, joined to a management bridge `mgmt0` (10.99.0.1/24) in the hermetic host's root
namespace by a veth whose host end is its `eth0` (10.99.0.1N/24): the NIC its overlay rides on,
set up "by the distro", never declared in a topology. sshd also gets a mount namespace of its
own with fresh tmpfs on /run (so /run/netns, /run/netdecl and sshd's /run/sshd are that host's)
and on /var/lib/netdecl (its state dir). Everything a module run over SSH creates - pod
namespaces bound under /run/netns, records in the state dir - lives in that mount namespace,
which sshd keeps alive; it all goes when sshd does. No traffic leaves the hermetic host.

ansible-playbook runs in the hermetic host's root namespace and logs in with a throwaway key;
the managed hosts run modules with this test's own Python (`ansible_python_interpreter`), the
venv that has netdecl.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from harness import REPO_ROOT, HermeticHost

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself: it must be started by its absolute path
MGMT_BRIDGE = "mgmt0"
MGMT_PREFIX = "10.99.0"
COLLECTION_SOURCE = REPO_ROOT / "ansible"

# Runs as the managed host's first process: its own /run and state dir, then sshd in its place
# (same PID, so the test can enter its namespaces by that PID).
LAUNCHER = r"""
import ctypes, os, subprocess, sys
ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the test, even if killed
for target in ("/run", "/var/lib/netdecl"):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", target], check=True)
for directory in ("/run/netns", "/run/netdecl", "/run/sshd"):
    os.makedirs(directory, mode=0o755)
os.execv(sys.argv[1], [sys.argv[1], "-D", "-e", "-f", sys.argv[2]])
"""

SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
Subsystem sftp internal-sftp
"""

RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                   re.MULTILINE)


def sshd_missing() -> str | None:
    """Why a fleet cannot run here, or None."""
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing: install openssh-server (bash .ci/setup does)"
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing: install openssh-client (bash .ci/setup does)"
    if not ansible_tool("ansible-playbook").exists():
        return "ansible-playbook is missing: pip install -e '.[test]' (bash .ci/setup does)"
    return None


def ansible_tool(name: str) -> Path:
    """ansible-core's commands, installed next to this Python by the test extras."""
    return Path(sys.executable).with_name(name)


def ansible_env(workdir: Path) -> dict[str, str]:
    """Everything Ansible would write goes under the test's directory; no host keys are
    remembered (each test's sshds have a fresh one)."""
    return {
        "LC_ALL": "C.UTF-8",
        "ANSIBLE_HOME": str(workdir / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
        "ANSIBLE_COLLECTIONS_PATH": str(workdir / "collections"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(workdir / "cp"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }


def install_collection(workdir: Path) -> None:
    """`ansible-galaxy collection install ./ansible`, as the README says, into the test's own
    collections path (ansible_env's)."""
    result = subprocess.run(
        [str(ansible_tool("ansible-galaxy")), "collection", "install", str(COLLECTION_SOURCE),
         "-p", str(workdir / "collections")],
        capture_output=True, text=True, env={**os.environ, **ansible_env(workdir)}, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


class Machine(HermeticHost):
    """One managed host seen from the test: every HermeticHost helper (run, ip_json,
    snapshot, start_server, http_get) works inside it, by entering sshd's namespaces."""

    def __init__(self, name: str, address: str, sshd: subprocess.Popen[bytes],
                 log: Path) -> None:
        super().__init__(cwd=REPO_ROOT)
        self.name = name
        self.address = address
        self.sshd = sshd
        self.log = log

    @property
    def pid(self) -> int:
        if self.sshd.poll() is not None:
            raise RuntimeError(f"sshd of {self.name} exited: {self.log.read_text()}")
        return self.sshd.pid

    def stop(self) -> None:
        super().stop()  # its test servers (it holds no holder of its own)
        if self.sshd.poll() is None:
            self.sshd.kill()
        self.sshd.wait(timeout=10)


class Fleet:
    """`count` SSH hosts h1..hN inside ``host``, and ansible-playbook to drive them."""

    def __init__(self, host: HermeticHost, workdir: Path, count: int = 3) -> None:
        self.host = host
        self.workdir = workdir
        self.names = [f"h{n}" for n in range(1, count + 1)]
        self.machines: dict[str, Machine] = {}
        self.key = workdir / "id_ed25519"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Fleet:
        self._keys()
        self.host.run(["ip", "link", "add", MGMT_BRIDGE, "type", "bridge"])
        self.host.run(["ip", "addr", "add", f"{MGMT_PREFIX}.1/24", "dev", MGMT_BRIDGE])
        self.host.run(["ip", "link", "set", MGMT_BRIDGE, "up"])
        for number, name in enumerate(self.names, start=1):
            self.machines[name] = self._start_machine(name, f"{MGMT_PREFIX}.{10 + number}")
        for machine in self.machines.values():
            self._wait_listening(machine)
        install_collection(self.workdir)
        return self

    def stop(self) -> None:
        for machine in self.machines.values():
            machine.stop()

    def _keys(self) -> None:
        for path in (self.key, self.workdir / "ssh_host_ed25519_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "netdecl-test",
                            "-f", str(path)], check=True, capture_output=True)
        shutil.copy(f"{self.key}.pub", self.workdir / "authorized_keys")

    def _start_machine(self, name: str, address: str) -> Machine:
        host = self.host
        host.run(["ip", "netns", "add", name])
        host.run(["ip", "link", "add", f"v-{name}", "type", "veth", "peer", "name", "eth0",
                  "netns", name])
        host.run(["ip", "link", "set", f"v-{name}", "master", MGMT_BRIDGE, "up"])
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "addr", "add", f"{address}/24", "dev", "eth0"],
                     ["ip", "link", "set", "eth0", "up"]):
            host.run(argv, ns=name)
        config = self.workdir / f"sshd_config.{name}"
        config.write_text(SSHD_CONFIG.format(
            address=address, host_key=self.workdir / "ssh_host_ed25519_key",
            authorized_keys=self.workdir / "authorized_keys"))
        log = self.workdir / f"sshd.{name}.log"
        argv = ["nsenter", f"--target={host.pid}", "--net", "--mount", "--",
                "nsenter", f"--net=/run/netns/{name}", "--",
                "unshare", "--mount", "--propagation", "private", "--",
                sys.executable, "-c", LAUNCHER, SSHD, str(config)]
        with open(log, "wb") as out:
            sshd = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        return Machine(name, address, sshd, log)

    @staticmethod
    def _wait_listening(machine: Machine, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while "Server listening on" not in machine.log.read_text(errors="replace"):
            if machine.sshd.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"sshd of {machine.name} did not start:\n"
                                     f"{machine.log.read_text(errors='replace')}")
            time.sleep(0.05)

    # -- ansible ------------------------------------------------------------------------------

    def ansible_env(self) -> dict[str, str]:
        return ansible_env(self.workdir)

    def write_inventory(self, host_vars: dict[str, dict[str, Any]] | None = None) -> Path:
        """The example inventory's shape (ansible/examples/inventory.yml) with this fleet's
        addresses: per host its underlay address and pod CIDR, VNI and overlay for all."""
        hosts = {}
        for number, name in enumerate(self.names, start=1):
            address = self.machines[name].address
            hosts[name] = {"ansible_host": address, "underlay_address": address,
                           "pod_cidr": f"10.244.{number}.0/24", **(host_vars or {}).get(name, {})}
        inventory = {"fleet": {"vars": {
            "ansible_user": "root",
            "ansible_python_interpreter": sys.executable,
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null",
            "overlay_vni": 42,
            "overlay_cidr": "10.244.0.0/16",
            "underlay_dev": "eth0",
            "pods_per_host": 1,
        }, "hosts": hosts}}
        path = self.workdir / "inventory.yml"
        path.write_text(yaml.safe_dump(inventory, sort_keys=False))
        return path

    def playbook(self, playbook: Path, *args: str,
                 host_vars: dict[str, dict[str, Any]] | None = None) -> Playbook:
        inventory = self.write_inventory(host_vars)
        result = self.host.run([str(ansible_tool("ansible-playbook")), "-i", str(inventory),
                                str(playbook), *args], env=self.ansible_env(), check=False,
                               timeout=600)
        return Playbook(result.returncode, result.stdout, result.stderr)


class Playbook:
    """One ansible-playbook run: exit code, output, and its PLAY RECAP as data."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.recap = {m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]),
                             "failed": int(m[5])} for m in RECAP.finditer(stdout)}

    def changed(self) -> dict[str, int]:
        return {host: stats["changed"] for host, stats in self.recap.items()}

    def failed(self) -> dict[str, int]:
        return {host: stats["failed"] + stats["unreachable"]
                for host, stats in self.recap.items()}

    def __str__(self) -> str:
        return f"ansible-playbook exited {self.returncode}\n{self.stdout}\n{self.stderr}"

    __repr__ = __str__  # what pytest shows when an assertion about a run fails
