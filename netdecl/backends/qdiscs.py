"""Traffic control on the kernel: root qdisc chains read, replaced in place and put back.

Through the raw rtnetlink codec (rtnl.py), not pyroute2: reading a link's qdiscs is one
RTM_GETQDISC dump per namespace that declares any, on the socket the plan already holds there
(pyroute2 0.9 would add its 2-3 ms per request and decode every statistic of every qdisc, see
rtnl.py), and the writes are three fixed messages whose options netdecl/tc/qdiscs.py encodes.
Every write is a replace (NLM_F_CREATE|NLM_F_REPLACE): the same kind at the same handle is
changed in place (the kernel's qdisc_change, what `tc qdisc change` does: queued packets and
open connections stay), and another kind is grafted in one step; the link is never touched.
"""

from __future__ import annotations

import errno
import socket
import struct
import sysconfig
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from netdecl.backends import namespaces
from netdecl.backends.rtnl import RtnlError, RtnlSocket
from netdecl.model import EGRESS, INGRESS, Qdisc, QdiscStage
from netdecl.nlattr import as_str, attr, attr_str, nested, parse_attrs
from netdecl.nlconst import (
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    RTM_DELQDISC,
    RTM_GETQDISC,
    RTM_GETTCLASS,
    RTM_GETTFILTER,
    RTM_NEWQDISC,
    RTM_NEWTCLASS,
    RTM_NEWTFILTER,
)
from netdecl.tc import ingress
from netdecl.tc import qdiscs as tc

TCA_KIND, TCA_OPTIONS = 1, 2
_TCMSG = struct.Struct("=BBHiIII")  # family, pad, pad, ifindex, handle, parent, info
LOOPBACK_INDEX = 1


@dataclass(frozen=True)
class QdiscMsg:
    index: int
    handle: int
    parent: int
    kind: str
    options: bytes | None


def dump(sock: RtnlSocket) -> list[QdiscMsg]:
    out = []
    for payload in sock.dump(RTM_GETQDISC, _TCMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0)):
        _f, _p1, _p2, index, handle, parent, _info = _TCMSG.unpack_from(payload)
        attrs = parse_attrs(payload, _TCMSG.size)
        out.append(QdiscMsg(index, handle, parent, as_str(attrs.get(TCA_KIND)) or "",
                            attrs.get(TCA_OPTIONS)))
    return out


def classes(sock: RtnlSocket, index: int) -> list[QdiscMsg]:
    """A link's traffic classes (the kernel dumps them one link at a time)."""
    out = []
    body = _TCMSG.pack(socket.AF_UNSPEC, 0, 0, index, 0, 0, 0)
    for payload in sock.dump(RTM_GETTCLASS, body):
        _f, _p1, _p2, where, handle, parent, _info = _TCMSG.unpack_from(payload)
        attrs = parse_attrs(payload, _TCMSG.size)
        out.append(QdiscMsg(where, handle, parent, as_str(attrs.get(TCA_KIND)) or "",
                            attrs.get(TCA_OPTIONS)))
    return [m for m in out if m.index == index]


# the queue a shaper keeps in its class :1 when no netem is there: no stage of the chain
_OWN_QUEUE = {tc.TBF: tc.BFIFO, tc.HTB: tc.PFIFO}


def egress_of(sock: RtnlSocket, ns: str, link: str, index: int,
              msgs: list[QdiscMsg]) -> Qdisc | None:
    """The link's root chain as the model has it: the root qdisc, and the netem netdecl puts
    under a tbf or htb (in its class :1); None when the link has no root qdisc at all. An
    htb's one class is read with it (one more dump, only for a link whose root is an htb)."""
    mine = [m for m in msgs if m.index == index]
    root = next((m for m in mine if m.parent == tc.TC_H_ROOT), None)
    if root is None:
        return None
    if root.kind == tc.HTB:
        found = classes(sock, index)
        only = found[0] if len(found) == 1 and found[0].handle == root.handle | tc.HTB_CLASS \
            and found[0].parent == tc.TC_H_ROOT else None
        stages = [tc.htb_from_kernel(root.options, only.options if only else None)]
    else:
        stages = [tc.stage_from_kernel(root.kind, root.options)]
    if root.kind in _OWN_QUEUE and root.handle:
        child = next((m for m in mine if m.parent == root.handle | 1), None)
        if child is not None and child.kind != _OWN_QUEUE[root.kind]:
            stages.append(tc.stage_from_kernel(child.kind, child.options))
    return Qdisc(ns, link, EGRESS, tuple(stages), handle=root.handle,
                 original=tc.original_of(root.kind, root.handle, root.options))


def _body(index: int, handle: int, parent: int, stage: QdiscStage | None = None,
          raw: tuple[str, bytes] | None = None) -> bytes:
    body = _TCMSG.pack(socket.AF_UNSPEC, 0, 0, index, handle, parent, 0)
    kind, options = raw if raw is not None else \
        ((stage.kind, tc.options(stage)) if stage is not None else ("", b""))
    if kind:
        body += attr_str(TCA_KIND, kind)
    if options:
        body += attr(TCA_OPTIONS, options)
    return body


def replace(sock: RtnlSocket, index: int, handle: int, parent: int, stage: QdiscStage) -> None:
    name = tc.distribution_name(stage)
    if name is None:
        sock.call(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE, _body(index, handle, parent, stage))
        return
    # the table goes with every change: the kernel reports none back, so a change is the one
    # moment netdecl can be sure the netem has the one the file names
    sock.call(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE, _body(
        index, handle, parent, raw=(stage.kind, tc.options(stage, dist_table(name)))))


# where iproute2 installs its tables (tc looks in its own LIBDIR, which is one of these)
TC_LIB_DIRS = (f"/usr/lib/{sysconfig.get_config_var('MULTIARCH') or 'x86_64-linux-gnu'}/tc",
               "/usr/lib/tc", "/usr/lib64/tc", "/usr/local/lib/tc")


def dist_table(name: str) -> bytes:
    """A delay distribution's table, read from iproute2's files. ``name`` is one of
    tc.DISTRIBUTIONS (the loader and the record are held to them) before it becomes a path."""
    if name not in tc.DISTRIBUTIONS:
        raise ValueError(f"netem distribution {name!r}")
    for directory in TC_LIB_DIRS:
        path = Path(directory, f"{name}.dist")
        if path.is_file():
            try:
                return tc.parse_dist_table(path.read_text(encoding="ascii"), str(path))
            except (ValueError, UnicodeDecodeError):
                raise RtnlError(errno.EINVAL, f"{path} is not a netem table") from None
    raise RtnlError(errno.ENOENT, f"netem distribution {name}: no {name}.dist in "
                    f"{', '.join(TC_LIB_DIRS)} (iproute2 ships them)")


def root_handle(before: Qdisc | None, after: Qdisc) -> int:
    """netdecl's handle for the new root: the one it has when only parameters change (an
    in-place change), the other one when the kind changes (a graft: the kernel changes a
    qdisc only into its own kind)."""
    if before is not None and before.handle in tc.ROOT_HANDLES and before.stages \
            and after.stages and tc.same_root(before.stages[0], after.stages[0]) \
            and not tc.drops_a_table(before.stages, after.stages):
        return before.handle
    first, second = tc.ROOT_HANDLES
    return second if before is not None and before.handle == first else first


def write_egress(sock: RtnlSocket, index: int, before: Qdisc | None, after: Qdisc) -> None:
    """Replace the root chain with ``after.stages``: the root, then what sits under it."""
    handle = root_handle(before, after)
    root, *rest = after.stages
    if not (root.kind == tc.HTB and before is not None and before.handle == handle):
        replace(sock, index, handle, tc.TC_H_ROOT, root)
    # (an htb kept: it has no change operation, and its only setting, the default class, is
    # netdecl's already (root_handle); what changes is its class, in place below)
    if root.kind == tc.HTB:
        body = _TCMSG.pack(socket.AF_UNSPEC, 0, 0, index, handle | tc.HTB_CLASS, tc.TC_H_ROOT, 0)
        sock.call(RTM_NEWTCLASS, NLM_F_CREATE | NLM_F_REPLACE,
                  body + attr_str(TCA_KIND, tc.HTB) + nested(TCA_OPTIONS,
                                                             tc.htb_class_options(root)))
        inner = rest[0] if rest else QdiscStage(tc.PFIFO)
    elif root.kind == tc.TBF:
        inner = rest[0] if rest else QdiscStage(tc.BFIFO, (("limit", root.get("limit") or 0),))
    else:
        return
    # netem (or the shaper's own fifo, when netem is no longer declared) in the class :1
    replace(sock, index, handle + (1 << 16) if rest else 0, handle | 1, inner)


def restore(sock: RtnlSocket, index: int, original: str) -> None:
    """Put back the root qdisc from before netdecl: the kernel's default comes back by itself
    when the root is deleted; a hand-set one is written again as it was dumped."""
    found = tc.parse_original(original)
    if found is None:
        try:
            sock.call(RTM_DELQDISC, 0, _body(index, 0, tc.TC_H_ROOT))
        except RtnlError as exc:
            if exc.errno not in (errno.ENOENT, errno.EINVAL):
                raise  # (ENOENT/EINVAL: the default is there already)
        return
    kind, handle, options = found
    sock.call(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE,
              _body(index, handle, tc.TC_H_ROOT, raw=(kind, options)))


# -- ingress: an ingress qdisc redirecting to an ifb (CNI's bandwidth plugin) ------------------

def ingress_of(sock: RtnlSocket, ns: str, link: str, index: int, msgs: list[QdiscMsg],
               names: dict[int, str]) -> Qdisc | None:
    """The link's ingress qdisc, with the ifb its filter redirects to; None: it has none (a
    clsact is one too: it holds the ingress hook as well)."""
    found = next((m for m in msgs if m.index == index and m.parent == tc.TC_H_INGRESS), None)
    if found is None:
        return None
    target = None
    body = _TCMSG.pack(socket.AF_UNSPEC, 0, 0, index, 0, tc.INGRESS_HANDLE, 0)
    for payload in sock.dump(RTM_GETTFILTER, body):
        attrs = parse_attrs(payload, _TCMSG.size)
        if as_str(attrs.get(TCA_KIND)) == ingress.FILTER_KIND:
            target = ingress.redirect_target(attrs.get(TCA_OPTIONS)) or target
    return Qdisc(ns, link, INGRESS, redirect=names.get(target) if target else None,
                 handle=found.handle, original=found.kind)


def write_ingress(sock: RtnlSocket, index: int, ifb_index: int) -> None:
    """An ingress qdisc (made: never someone else's, the planner saw to that) and its
    match-all filter redirecting to the ifb."""
    sock.call(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, _body(
        index, tc.INGRESS_HANDLE, tc.TC_H_INGRESS, raw=(ingress.INGRESS_KIND, b"")))
    body = _TCMSG.pack(socket.AF_UNSPEC, 0, 0, index, 0, tc.INGRESS_HANDLE,
                       ingress.filter_info()) + ingress.redirect_filter(ifb_index)
    sock.call(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, body)


def delete_ingress(sock: RtnlSocket, index: int) -> None:
    """The ingress qdisc and its filter with it; gone already is no error."""
    try:
        sock.call(RTM_DELQDISC, 0, _body(index, tc.INGRESS_HANDLE, tc.TC_H_INGRESS))
    except RtnlError as exc:
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise


# -- is the kind in the kernel? ------------------------------------------------------------------

_probed: dict[str, bool] = {}


def missing_kinds(kinds: Collection[str]) -> dict[str, str]:
    """kind -> its module, for the kinds this kernel cannot make. Each kind is tried once per
    process on the loopback of a private, throwaway network namespace (a thread's own, gone
    with it): the kernel's answer, module autoloading included, and nothing on the host."""
    unknown = sorted(k for k in set(kinds) if k not in _probed)
    if unknown:
        _probed.update(namespaces.in_thread(lambda: _probe(unknown), name="netdecl-tc-probe"))
    return {k: tc.MODULES.get(k, f"sch_{k}") for k in kinds if not _probed.get(k, True)}


def _probe(kinds: list[str]) -> dict[str, bool]:
    namespaces.unshare(namespaces.CLONE_NEWNET)
    sock = RtnlSocket(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                    socket.NETLINK_ROUTE))
    found = {}
    try:
        for number, kind in enumerate(kinds, start=1):
            try:
                # a handle of its own per kind: at the handle of the kind tried before, the
                # kernel would refuse the kind change (EINVAL) before asking if it knows it
                replace(sock, LOOPBACK_INDEX, number << 16, tc.TC_H_ROOT, tc.probe_stage(kind))
                found[kind] = True
            except RtnlError as exc:
                found[kind] = exc.errno != errno.ENOENT  # ENOENT: "qdisc kind is unknown"
    finally:
        sock.close()
    return found
