"""Kernel parameters under /proc/sys, read and written from inside a namespace.

/proc/sys/net shows the network namespace of the thread that opens it, so for a named
namespace the files are opened from a thread that has entered it (namespaces.run_in): no fork.
"""

from __future__ import annotations

from netdecl.backends import namespaces
from netdecl.errors import NetdeclError

PROC_SYS = "/proc/sys"


class SysctlError(NetdeclError):
    """The kernel has no such key in that namespace, or refused the value."""


def path_of(name: str) -> str:
    """net.ipv4.ip_forward -> /proc/sys/net/ipv4/ip_forward. A name written with '/' is taken
    as it is (that is how a link name with a dot, net/ipv4/conf/eth0.100/rp_filter, is said).
    Names are validated by the loader and when read back from the state dir; this refuses, once
    more, any name that would leave /proc/sys (root reads and writes these files)."""
    relative = name if "/" in name else name.replace(".", "/")
    parts = relative.split("/")
    if not name or any(part in ("", ".", "..") for part in parts) or "\0" in name:
        raise SysctlError(f"sysctl {name!r}: not a sysctl name (it would leave {PROC_SYS})")
    return f"{PROC_SYS}/{relative}"


def normalise(value: str) -> str:
    """The kernel prints some values tab-separated (e.g. ping_group_range); compare by words."""
    return " ".join(str(value).split())


def _read(names: list[str]) -> dict[str, str | None]:
    """Values as this thread's namespace sees them (None when the key does not exist)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            with open(path_of(name)) as fh:
                out[name] = normalise(fh.read())
        except (FileNotFoundError, NotADirectoryError):
            out[name] = None
    return out


def read_many(namespace: str, names: list[str]) -> dict[str, str | None]:
    """Current values in one namespace."""
    return namespaces.run_in(namespace, lambda: _read(names))


def read_everywhere(wanted: dict[str, list[str]]) -> dict[str, dict[str, str | None]]:
    """Current values in many namespaces, from one thread (namespace -> names -> value)."""
    return namespaces.run_in_each(sorted(wanted), lambda ns: _read(wanted[ns]))


def write(namespace: str, name: str, value: str) -> None:
    def body() -> None:
        try:
            with open(path_of(name), "w") as fh:
                fh.write(str(value))
        except FileNotFoundError:
            raise SysctlError(f"sysctl {name}: no such key in this kernel/namespace") from None
        except OSError as exc:
            raise SysctlError(f"sysctl {name} = {value}: {exc.strerror}") from None

    namespaces.run_in(namespace, body)
