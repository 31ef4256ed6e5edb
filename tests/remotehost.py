"""A KernelHost living inside a HermeticHost, driven from the test process.

The pytest process must never enter a namespace (a namespace switch is per thread, a mount
namespace per process, and one mistake would change the real machine), so the real Host runs in
a worker process started inside the hermetic host (``nsenter``, like every other command there),
and ``RemoteHost`` forwards each Host call to it. That lets one test body drive the fake and the
kernel alike (tests/test_host_conformance.py).

The wire: a 4-byte length, then a pickle, both ways. Pickle is fine here: both ends are this
test suite, on one machine. What does not travel is handled explicitly:

- a ``Birth``'s callback: the worker records the ``made(key, identity)`` calls and the proxy
  replays them into the caller's Birth, in order, before it returns or raises (as a local
  Host would have made them before its call ended);
- exceptions: sent as (module, class, errno, text) and raised again here as the same class with
  the same ``errno``, so a test can ask ``isinstance(exc, NetdeclError)`` and ``exc.errno`` of
  either host.
"""

from __future__ import annotations

import importlib
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
from collections.abc import Collection, Mapping
from typing import Any

from harness import HermeticHost

from netdecl.backends.host import Birth, Scope
from netdecl.model import NetObject

_LEN = struct.Struct("=I")
# Any one Host call of these tests is quick (at most a namespace deletion the kernel cleans up
# in the background); a worker silent this long is stuck, and the test says so instead of
# hanging the whole run.
REPLY_TIMEOUT = 60.0

WORKER = r"""
import os, pickle, struct, sys, traceback

from netdecl.backends.host import Birth
from netdecl.backends.kernelhost import KernelHost

LEN = struct.Struct("=I")
inp, out = sys.stdin.buffer, sys.stdout.buffer
sys.stdout = sys.stderr  # a stray print must not corrupt the replies

def read(n):
    data = b""
    while len(data) < n:
        chunk = inp.read(n - len(data))
        if not chunk:
            sys.exit(0)  # the test closed the pipe: done
        data += chunk
    return data

def send(reply):
    data = pickle.dumps(reply)
    out.write(LEN.pack(len(data)) + data)
    out.flush()

host = KernelHost()
send(("ready", os.getpid()))
while True:
    method, args, kwargs, secret = pickle.loads(read(LEN.unpack(read(LEN.size))[0]))
    made = []
    if secret is not None:
        kwargs["birth"] = Birth(secret, lambda key, ident: made.append((key, ident)))
    try:
        result = getattr(host, method)(*args, **kwargs)
    except Exception as exc:
        traceback.print_exc()
        cls = type(exc)
        send(("error", made, cls.__module__, cls.__qualname__, getattr(exc, "errno", None),
              str(exc)))
    else:
        send(("ok", made, result))
"""


class RemoteHost:
    """The Host protocol (netdecl/backends/host.py), carried out by a KernelHost inside
    ``hermetic``. Call ``shutdown`` when done (``close`` is the protocol's: it only drops the
    KernelHost's sockets, as on a local one)."""

    def __init__(self, hermetic: HermeticHost) -> None:
        # the worker's tracebacks go to a file: shown when a call fails in an unexpected way,
        # and never a pipe nobody drains
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(hermetic._argv([sys.executable, "-c", WORKER], None),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log)
        reply = self._read()
        if reply[0] != "ready":
            raise AssertionError(f"KernelHost worker did not start: {reply!r}")

    # -- the wire ------------------------------------------------------------------------------
    def _worker_log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def _read_exactly(self, n: int) -> bytes:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        data = b""
        while len(data) < n:
            if not select.select([fd], [], [], REPLY_TIMEOUT)[0]:
                raise AssertionError(f"KernelHost worker silent for {REPLY_TIMEOUT}s\n"
                                     f"{self._worker_log()}")
            chunk = os.read(fd, n - len(data))
            if not chunk:
                self._proc.wait(timeout=10)
                raise AssertionError(f"KernelHost worker exited ({self._proc.returncode})\n"
                                     f"{self._worker_log()}")
            data += chunk
        return data

    def _read(self) -> Any:
        (size,) = _LEN.unpack(self._read_exactly(_LEN.size))
        return pickle.loads(self._read_exactly(size))

    def _call(self, method: str, *args: Any, birth: Birth | None = None,
              **kwargs: Any) -> Any:
        assert self._proc.stdin is not None
        data = pickle.dumps((method, args, kwargs, birth.secret if birth is not None else None))
        self._proc.stdin.write(_LEN.pack(len(data)) + data)
        self._proc.stdin.flush()
        reply = self._read()
        status, made = reply[0], reply[1]
        if birth is not None:
            for key, ident in made:
                birth.made(key, ident)
        if status == "ok":
            return reply[2]
        raise _rebuilt(*reply[2:])

    def shutdown(self) -> None:
        """End the worker (its KernelHost closes with it). Safe to call twice."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()

    # -- the Host protocol ---------------------------------------------------------------------
    def observe(self, topology: str, scope: Scope) -> list[NetObject]:
        result: list[NetObject] = self._call("observe", topology, scope)
        return result

    def named_namespaces(self) -> list[str]:
        result: list[str] = self._call("named_namespaces")
        return result

    def unmodelled(self, namespaces: list[str]) -> list[str]:
        result: list[str] = self._call("unmodelled", namespaces)
        return result

    def missing_kinds(self, kinds: Collection[str]) -> list[str]:
        result: list[str] = self._call("missing_kinds", list(kinds))
        return result

    def create(self, obj: NetObject, topology: str, peer: NetObject | None = None,
               birth: Birth | None = None) -> None:
        self._call("create", obj, topology, peer, birth=birth)

    def delete(self, obj: NetObject, topology: str, peer: NetObject | None = None) -> None:
        self._call("delete", obj, topology, peer)

    def modify(self, before: NetObject | None, after: NetObject,
               changes: dict[str, Any], topology: str, birth: Birth | None = None) -> None:
        self._call("modify", before, after, changes, topology, birth=birth)

    def missing_qdisc_kinds(self, kinds: Collection[str]) -> dict[str, str]:
        result: dict[str, str] = self._call("missing_qdisc_kinds", kinds)
        return result

    def set_alias(self, link: NetObject, alias: str | None) -> None:
        self._call("set_alias", link, alias)

    def restore_route(self, route: NetObject) -> None:
        self._call("restore_route", route)

    def remove_placeholders(self, proven: Mapping[str, str]) -> list[str]:
        result: list[str] = self._call("remove_placeholders", dict(proven))
        return result

    def refresh(self, namespaces: Collection[str] | None = None) -> None:
        self._call("refresh", None if namespaces is None else list(namespaces))

    def reconnect(self) -> None:
        self._call("reconnect")

    def close(self) -> None:
        self._call("close")


def _rebuilt(module: str, qualname: str, code: int | None, text: str) -> BaseException:
    """The worker's exception as the same class here (netdecl's own and the builtins; any
    other as an AssertionError naming it), carrying the same ``errno``."""
    cls: Any = None
    if module == "builtins" or module.split(".")[0] == "netdecl":
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        return AssertionError(f"KernelHost raised {module}.{qualname}: {text}")
    # not through __init__: KernelError(code, what) would format its text a second time
    exc = cls.__new__(cls)
    BaseException.__init__(exc, text)
    if code is not None:
        setattr(exc, "errno", code)  # noqa: B010 - (not every class declares one)
    result: BaseException = exc
    return result


__all__ = ["RemoteHost", "REPLY_TIMEOUT"]
