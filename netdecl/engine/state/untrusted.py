"""Nothing read back is trusted: names from records, journals and saved plans are checked with
the loader's own rules before any of them reaches a path, a netlink request or nft.

A namespace name becomes /run/netns/NAME (mounted, unmounted, unlinked), a sysctl name a file
under /proc/sys (read, written): a record or journal naming namespace ``../../tmp/x`` or sysctl
``../../etc/shadow`` would make root unlink or print files far outside them. The rules are the
topology format's (topology/checks.py for interface and namespace names, the JSON Schema's
patterns for topology and sysctl names), so whatever a valid topology can name passes and nothing
else does. A file that fails them, or that is not what netdecl writes at all (garbage, binary,
cut short, the wrong shape), is a DamagedStateFile: one line naming the file and what to do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from netdecl.errors import NetdeclError
from netdecl.kinds import KINDS, Ownership
from netdecl.model import (
    EGRESS,
    INGRESS,
    ROOT,
    Address,
    ExternalLink,
    FdbEntry,
    Link,
    NatTable,
    Neighbor,
    NetObject,
    Qdisc,
    Route,
    Rule,
    Sysctl,
)
from netdecl.tc.qdiscs import parse_original
from netdecl.topology.checks import ifname_problem, nsname_problem
from netdecl.topology.loader import SCHEMA_PATH


class DamagedStateFile(NetdeclError):
    """A record or journal that netdecl cannot trust: nothing was changed because of it."""

    def __init__(self, path: Path | str, problem: str, advice: str):
        self.path = str(path)
        self.problem = problem
        one_line = " ".join(f"{path} is damaged or not netdecl's ({problem}); {advice}".split())
        super().__init__(one_line)


class Untrusted(ValueError):
    """A value read back breaks the format's rules (the message says which and how)."""


def parse_problem(exc: BaseException, shape: str) -> str:
    """What is wrong with a state file (or one line of a journal) that failed to be read as
    ``shape`` (e.g. "an ownership record"): the one wording for every file kind. ``exc`` is
    what parsing and checking it raised."""
    if isinstance(exc, Untrusted):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return "not text"
    if isinstance(exc, ValueError):
        return "not JSON"
    return f"not the shape of {shape}"


@lru_cache(maxsize=1)
def _schema_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(topology name, sysctl name): the patterns the loader validates files with."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    topology = schema["properties"]["name"]["pattern"]
    sysctl = schema["$defs"]["sysctls"]["propertyNames"]["pattern"]
    return re.compile(topology), re.compile(sysctl)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise Untrusted(f"{what} {value!r} is not a string")
    return value


def topology_name(value: Any) -> str:
    name = _text(value, "topology name")
    if not _schema_patterns()[0].fullmatch(name):
        raise Untrusted(f"topology name {name!r} is not a valid topology name")
    return name


def namespace(value: Any) -> str:
    name = _text(value, "namespace")
    if name != ROOT and (problem := nsname_problem(name)):
        raise Untrusted(problem)
    return name


def link_name(value: Any) -> str:
    name = _text(value, "link name")
    if problem := ifname_problem(name):
        raise Untrusted(problem)
    return name


def sysctl_name(value: Any) -> str:
    name = _text(value, "sysctl name")
    if not _schema_patterns()[1].fullmatch(name):
        raise Untrusted(f"sysctl name {name!r} is not a valid sysctl name")
    return name


def sysctl_value(value: Any) -> str:
    """One line of printable text, as the loader accepts (it is written to a /proc/sys file)."""
    text = _text(value, "sysctl value")
    if not text.isprintable() or len(text) > 1024:
        raise Untrusted("a sysctl value is not one line of printable text")
    return text


# what the backends write as identities: nsfs:DEV:INO, .../if<ifindex>, .../nft<handle>,
# claim:<time>, rules:<hash>, secret-name, alternatives joined by "|"
_IDENTITY = re.compile(r"[A-Za-z0-9:/._|-]{1,512}")


def identity(value: Any) -> str:
    """An identity as netdecl records it: compared with what the kernel reports, never used
    as a name or path."""
    if not isinstance(value, str) or not _IDENTITY.fullmatch(value):
        raise Untrusted(f"identity {value!r} is not one netdecl writes")
    return value


def _optional_link(value: Any) -> None:
    if value is not None:
        link_name(value)


def _alias(value: Any) -> None:
    """An ifalias a rollback may write back: text the kernel accepts (at most 255 bytes)."""
    if value is not None and not (isinstance(value, str) and "\0" not in value
                                  and len(value.encode()) <= 255):
        raise Untrusted(f"link alias {value!r} is not one the kernel keeps")


def _protocol(value: Any) -> None:
    """A route protocol a rollback may write back: one byte."""
    if value is not None and not (isinstance(value, int) and not isinstance(value, bool)
                                  and 0 <= value <= 255):
        raise Untrusted(f"route protocol {value!r} is not one byte")


def check_object(obj: NetObject) -> NetObject:
    """``obj`` if every name in it is one a topology could declare."""
    namespace(obj.namespace)
    if (ident := getattr(obj, "ident", None)) is not None:
        identity(ident)
    if isinstance(obj, ExternalLink):
        link_name(obj.name)
        _optional_link(obj.master)
    elif isinstance(obj, Link):
        link_name(obj.name)
        _optional_link(obj.master)
        _alias(obj.alias)
        if obj.peer is not None:
            if len(obj.peer) != 2:
                raise Untrusted(f"link peer {obj.peer!r} is not (namespace, name)")
            namespace(obj.peer[0])
            link_name(obj.peer[1])
        for used in obj.spec.uses() if obj.spec is not None else ():
            link_name(used)
        for used_ns, used in obj.spec.uses_elsewhere() if obj.spec is not None else ():
            namespace(used_ns)
            link_name(used)
        for entry in obj.vlans or ():
            if not (len(entry) == 3 and isinstance(entry[0], int)
                    and not isinstance(entry[0], bool) and 1 <= entry[0] <= 4094
                    and all(isinstance(flag, bool) for flag in entry[1:])):
                raise Untrusted(f"bridge VLAN {entry!r} is not (1-4094, pvid, untagged)")
    elif isinstance(obj, (Address, FdbEntry, Neighbor)):
        link_name(obj.link)
    elif isinstance(obj, Route):
        _optional_link(obj.dev)
        _protocol(obj.proto)
    elif isinstance(obj, Rule):
        _optional_link(obj.iif)
        _optional_link(obj.oif)
    elif isinstance(obj, Sysctl):
        sysctl_name(obj.name)
        sysctl_value(obj.value)
    elif isinstance(obj, NatTable):
        for rule in obj.rules or ():
            for value in (rule.out, rule.not_out, rule.in_):
                _optional_link(value)
    elif isinstance(obj, Qdisc):
        _qdisc(obj)
    return obj


_QDISC_KIND = re.compile(r"[a-z][a-z0-9_]{0,14}")


def _qdisc(obj: Qdisc) -> None:
    """Names reach the kernel (the link, the ifb, a kind) and an original is replayed: each
    must be what netdecl itself writes."""
    link_name(obj.link)
    _optional_link(obj.redirect)
    if obj.direction not in (EGRESS, INGRESS):
        raise Untrusted(f"qdisc direction {obj.direction!r}")
    for stage in obj.stages:
        if not isinstance(stage.kind, str) or not _QDISC_KIND.fullmatch(stage.kind) or any(
                not isinstance(name, str) or not isinstance(value, int) or isinstance(
                    value, bool) or not 0 <= value < 1 << 64 for name, value in stage.params):
            raise Untrusted(f"qdisc stage {stage!r} is not one netdecl writes")
    if obj.original is not None:
        try:
            parse_original(obj.original)
        except ValueError as exc:
            raise Untrusted(f"qdisc original is not one netdecl keeps: {exc}") from None


def check_key(key: Any, kinds: Iterable[Ownership] | None = None) -> tuple[Any, ...]:
    """An object key as the record keeps it: (kind, namespace, scalar...)."""
    if not isinstance(key, (list, tuple)) or len(key) < 2:
        raise Untrusted(f"key {key!r} is not (kind, namespace, ...)")
    kind = KINDS.get(key[0]) if isinstance(key[0], str) else None
    if kind is None or (kinds is not None and kind.ownership not in kinds):
        raise Untrusted(f"key {list(key)!r} names no kind netdecl records")
    namespace(key[1])
    for part in key[2:]:
        if part is not None and not isinstance(part, (str, int)):
            raise Untrusted(f"key {list(key)!r} holds {part!r}")
    if kind.name in ("link", "fdb", "neighbor", "address") and len(key) > 2:
        link_name(key[2])
    if kind.name == "sysctl" and len(key) > 2:
        sysctl_name(key[2])
    if kind.name == "qdisc" and len(key) > 2:
        link_name(key[2])
    return tuple(key)
