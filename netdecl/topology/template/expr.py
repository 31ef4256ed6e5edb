"""The template expression language: small, closed, bounded.

An expression is what goes between ``${`` and ``}`` in a topology file: integers and strings,
arithmetic (``+ - * / %``; ``/`` divides integers, rounding down), comparisons, ``and``/``or``/
``not``, ``a if c else b``, lookups (``name``, ``facts.hostname``, ``hosts[i]``,
``facts.links["eth0"].mac``: a lookup only ever reads a key of a mapping or an item of a list,
never a Python attribute) and the functions in FUNCTIONS (address arithmetic, formatting).

Nothing here calls ``eval``, imports, opens a file or runs a program: the text is tokenised by
one regular expression and parsed by hand into closures over the closed set of operations
below. Everything is bounded: the text's length, its nesting, every string and list a value
can grow to (checked where it grows), and a range's size.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

MAX_TEXT = 1000  # characters of one expression
MAX_NESTING = 32  # brackets and operators nested in one expression
MAX_STRING = 4096  # characters of a string value
MAX_ITEMS = 100_000  # items of a list or range (the loader's limit on a file's values)

Env = Mapping[str, Any]
Compiled = Callable[[Env], Any]


class ExprError(Exception):
    """An expression is malformed or its evaluation failed; the message says why."""


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>\d+)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>==|!=|<=|>=|//|[-+*/%<>()\[\],.])
    )""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "if", "else", "in", "true", "false", "null"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExprError(f"unexpected {text[pos:].lstrip()[:10]!r} in expression")
        kind = m.lastgroup
        assert kind is not None
        value = m.group(kind)
        if kind == "name" and value in _KEYWORDS:
            kind = "kw"
        out.append((kind, value))
        pos = m.end()
    out.append(("end", ""))
    return out


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body)


# ---------------------------------------------------------------------------- checked values


def _str(value: Any) -> str:
    """How a value reads inside a string: true/false and integers as YAML writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    raise ExprError(f"cannot put a {type_name(value)} into a string")


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple, range)):
        return "list"
    if isinstance(value, Mapping):
        return "mapping"
    return "null" if value is None else type(value).__name__


def bounded_str(text: str) -> str:
    if len(text) > MAX_STRING:
        raise ExprError(f"a string would be {len(text)} characters; the limit is {MAX_STRING}")
    return text


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExprError(f"{what} must be a number, not a {type_name(value)} ({_show(value)})")
    return value


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, range) else f"range({value.start}, {value.stop})"
    return text if len(text) <= 40 else text[:37] + "..."


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise ExprError(f"expected a network such as 10.0.0.0/16, not a {type_name(value)}")
    return _parsed_network(value)


@lru_cache(maxsize=1024)  # a loop asks for the same network every iteration
def _parsed_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_interface(value).network
    except ValueError:
        raise ExprError(f"{value!r} is not a network (such as 10.0.0.0/16)") from None


def _address(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(value, str):
        raise ExprError(f"expected an address, not a {type_name(value)}")
    try:
        return ipaddress.ip_interface(value).ip
    except ValueError:
        raise ExprError(f"{value!r} is not an address") from None


# ---------------------------------------------------------------------------- functions


def cidrhost(net: Any, n: Any) -> str:
    """The n-th address of a network (negative: from its end), as Terraform's cidrhost."""
    network, n = _network(net), _int(n, "the host number")
    index = n if n >= 0 else network.num_addresses + n
    if not 0 <= index < network.num_addresses:
        raise ExprError(f"host {n} is outside {network} ({network.num_addresses} addresses)")
    return str(network.network_address + index)


def ifaddr(net: Any, n: Any) -> str:
    """cidrhost with the network's prefix: what a link's ``addresses`` takes."""
    return f"{cidrhost(net, n)}/{_network(net).prefixlen}"


def cidrsubnet(net: Any, newbits: Any, k: Any) -> str:
    """The k-th subnet of ``net`` that is ``newbits`` longer, as Terraform's cidrsubnet."""
    network = _network(net)
    newbits, k = _int(newbits, "the new bits"), _int(k, "the subnet number")
    prefix = network.prefixlen + newbits
    if newbits < 0 or prefix > network.max_prefixlen:
        raise ExprError(f"{network} cannot be split {newbits} bits further")
    if not 0 <= k < 2 ** newbits:
        raise ExprError(f"subnet {k} is outside {network} split into {2 ** newbits}")
    base = int(network.network_address) + (k << (network.max_prefixlen - prefix))
    return str(type(network)((base, prefix)))


def ipadd(addr: Any, n: Any) -> str:
    """An address ``n`` further on (``ipadd("10.0.0.250", 10)`` is 10.0.1.4); a prefix kept."""
    text = addr if isinstance(addr, str) else ""
    address = _address(addr)
    try:
        moved = address + _int(n, "the offset")
    except ipaddress.AddressValueError:
        raise ExprError(f"{address} + {n} is past the end of the address space") from None
    return f"{moved}/{text.split('/', 1)[1]}" if "/" in text else str(moved)


def prefixlen(net: Any) -> int:
    return _network(net).prefixlen


def address(cidr: Any) -> str:
    """The address part of ADDRESS/PREFIX."""
    return str(_address(cidr))


def network(cidr: Any) -> str:
    return str(_network(cidr))


_FORMAT_SPEC = re.compile(r"%(?:%|[-0]?\d{0,2}[dsxX])")


def format_(fmt: Any, *args: Any) -> str:
    """printf-style, only %d %s %x %X with a flag (- or 0) and a width up to 99, and %%."""
    if not isinstance(fmt, str):
        raise ExprError("format's first argument must be a string")
    specs = [s for s in _FORMAT_SPEC.findall(fmt) if s != "%%"]
    if len(_FORMAT_SPEC.sub("", fmt).split("%")) > 1:
        raise ExprError(f"format {fmt!r}: only %d, %s, %x and %X (with - or 0 and a width)")
    if len(specs) != len(args):
        raise ExprError(f"format {fmt!r} takes {len(specs)} values, got {len(args)}")
    values = []
    for spec, arg in zip(specs, args, strict=True):
        values.append(_int(arg, "a %d or %x value") if spec[-1] in "dxX" else _str(arg))
    return bounded_str(fmt % tuple(values))


def range_(*args: Any) -> range:
    if not 1 <= len(args) <= 3:
        raise ExprError("range takes 1 to 3 numbers")
    made = range(*(_int(a, "a range bound") for a in args))
    try:
        size = len(made)
    except OverflowError:  # more items than a C integer counts
        size = MAX_ITEMS + 1
    if size > MAX_ITEMS:
        raise ExprError(f"range of {'more than 2^63' if size == MAX_ITEMS + 1 else size} "
                        f"items; the limit is {MAX_ITEMS}")
    return made


def len_(value: Any) -> int:
    if isinstance(value, (str, list, tuple, range, Mapping)):
        return len(value)
    raise ExprError(f"len of a {type_name(value)}")


def str_(value: Any) -> str:
    return _str(value)


def int_(value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            raise ExprError(f"{value!r} is not a number") from None
    return _int(value, "int's argument")


def join(items: Any, sep: Any = "") -> str:
    if not isinstance(items, (list, tuple, range)):
        raise ExprError("join takes a list")
    return bounded_str(_str(sep).join(_str(i) for i in items))


def _min_max(pick: Callable[..., Any]) -> Callable[..., int]:
    def f(*args: Any) -> int:
        if not args:
            raise ExprError("min and max take at least one number")
        return int(pick(_int(a, "min and max's arguments") for a in args))
    return f


def lower(text: Any) -> str:
    return _str(text).lower()


def upper(text: Any) -> str:
    return _str(text).upper()


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "cidrhost": cidrhost, "cidrsubnet": cidrsubnet, "ifaddr": ifaddr, "ipadd": ipadd,
    "prefixlen": prefixlen, "address": address, "network": network,
    "format": format_, "range": range_, "len": len_, "str": str_, "int": int_, "join": join,
    "min": _min_max(min), "max": _min_max(max), "lower": lower, "upper": upper,
}


# ---------------------------------------------------------------------------- operators


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, str) or isinstance(b, str):
        return bounded_str(_str(a) + _str(b))
    if isinstance(a, list) and isinstance(b, list):
        if len(a) + len(b) > MAX_ITEMS:
            raise ExprError(f"a list would have more than {MAX_ITEMS} items")
        return a + b
    return _int(a, "+'s left side") + _int(b, "+'s right side")


def _div(a: Any, b: Any) -> int:
    a, b = _int(a, "/'s left side"), _int(b, "/'s right side")
    if b == 0:
        raise ExprError("division by zero")
    return a // b


def _mod(a: Any, b: Any) -> int:
    a, b = _int(a, "%'s left side"), _int(b, "%'s right side")
    if b == 0:
        raise ExprError("division by zero")
    return a % b


def _mul(a: Any, b: Any) -> int:  # numbers only: "x" * 10**9 would be a memory bomb
    result = _int(a, "*'s left side") * _int(b, "*'s right side")
    if abs(result) > 2 ** 128:
        raise ExprError("a number grew past 2^128")
    return result


def _compare(op: str) -> Callable[[Any, Any], bool]:
    def ordered(a: Any, b: Any) -> bool:
        if isinstance(a, str) and isinstance(b, str):
            pass
        else:
            a, b = _int(a, f"{op}'s left side"), _int(b, f"{op}'s right side")
        return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])
    return ordered


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": _add, "-": lambda a, b: _int(a, "-'s left side") - _int(b, "-'s right side"),
    "*": _mul, "/": _div, "//": _div, "%": _mod,
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "<": _compare("<"), "<=": _compare("<="), ">": _compare(">"), ">=": _compare(">="),
}
_LEVELS: tuple[tuple[str, ...], ...] = (
    ("==", "!=", "<", "<=", ">", ">="), ("+", "-"), ("*", "/", "//", "%"))


def _index(container: Any, key: Any) -> Any:
    if isinstance(container, Mapping):
        if not isinstance(key, str) or key not in container:
            known = ", ".join(sorted(str(k) for k in container)[:8])
            raise ExprError(f"no key {key!r} (known: {known or 'none'})")
        return container[key]
    if isinstance(container, (list, tuple, range, str)):
        i = _int(key, "an index")
        if not -len(container) <= i < len(container):
            raise ExprError(f"index {i} is outside a list of {len(container)}")
        return container[i]
    raise ExprError(f"cannot look up {key!r} in a {type_name(container)}")


# ---------------------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over the tokens, building closures ``env -> value``."""

    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.at = 0
        self.depth = 0
        self.names: set[str] = set()

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at]

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.tokens[self.at]
        if value is not None and token[1] != value:
            shown = repr(token[1]) if token[0] != "end" else "the end"
            raise ExprError(f"expected {value!r}, found {shown}")
        self.at += 1
        return token

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExprError(f"expression nested deeper than {MAX_NESTING}")

    def parse(self) -> Compiled:
        node = self.conditional()
        kind, value = self.peek()
        if kind != "end":
            raise ExprError(f"unexpected {value!r} in expression")
        return node

    def conditional(self) -> Compiled:
        self.deeper()
        then = self.disjunction()
        if self.peek() == ("kw", "if"):
            self.take()
            cond = self.disjunction()
            self.take("else")
            other = self.conditional()
            self.depth -= 1
            return lambda env: then(env) if cond(env) else other(env)
        self.depth -= 1
        return then

    def disjunction(self) -> Compiled:
        left = self.conjunction()
        while self.peek() == ("kw", "or"):
            self.take()
            right = self.conjunction()
            left = (lambda a, b: lambda env: a(env) or b(env))(left, right)
        return left

    def conjunction(self) -> Compiled:
        left = self.negation()
        while self.peek() == ("kw", "and"):
            self.take()
            right = self.negation()
            left = (lambda a, b: lambda env: a(env) and b(env))(left, right)
        return left

    def negation(self) -> Compiled:
        if self.peek() == ("kw", "not"):
            self.take()
            self.deeper()
            inner = self.negation()
            self.depth -= 1
            return lambda env: not inner(env)
        return self.binary(0)

    def binary(self, level: int) -> Compiled:
        if level == len(_LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in _LEVELS[level]:
            op = _BINARY[self.take()[1]]
            right = self.binary(level + 1)
            left = (lambda f, a, b: lambda env: f(a(env), b(env)))(op, left, right)
        return left

    def unary(self) -> Compiled:
        if self.peek() == ("op", "-"):
            self.take()
            self.deeper()
            inner = self.unary()
            self.depth -= 1
            return lambda env: -_int(inner(env), "a negated value")
        return self.postfix(self.primary())

    def postfix(self, node: Compiled) -> Compiled:
        while True:
            kind, value = self.peek()
            if (kind, value) == ("op", "."):
                self.take()
                kind, key = self.take()
                if kind not in ("name", "kw"):
                    raise ExprError(f"expected a name after '.', found {key!r}")
                node = (lambda n, k: lambda env: _index(n(env), k))(node, key)
            elif (kind, value) == ("op", "["):
                self.take()
                self.deeper()
                key_node = self.conditional()
                self.depth -= 1
                self.take("]")
                node = (lambda n, k: lambda env: _index(n(env), k(env)))(node, key_node)
            else:
                return node

    def primary(self) -> Compiled:
        kind, value = self.take()
        if kind == "num":
            number = int(value)
            return lambda env: number
        if kind == "str":
            text = _unquote(value)
            return lambda env: text
        if kind == "kw" and value in ("true", "false", "null"):
            constant = {"true": True, "false": False, "null": None}[value]
            return lambda env: constant
        if (kind, value) == ("op", "("):
            self.deeper()
            inner = self.conditional()
            self.depth -= 1
            self.take(")")
            return inner
        if (kind, value) == ("op", "["):
            return self.list_literal()
        if kind == "name":
            if self.peek() == ("op", "("):
                return self.call(value)
            self.names.add(value)
            return (lambda name: lambda env: _lookup(env, name))(value)
        shown = repr(value) if kind != "end" else "the end of the expression"
        raise ExprError(f"unexpected {shown}")

    def list_literal(self) -> Compiled:
        self.deeper()
        items: list[Compiled] = []
        while self.peek() != ("op", "]"):
            items.append(self.conditional())
            if self.peek() != ("op", "]"):
                self.take(",")
        self.take("]")
        self.depth -= 1
        return lambda env: [item(env) for item in items]

    def call(self, name: str) -> Compiled:
        function = FUNCTIONS.get(name)
        if function is None:
            raise ExprError(f"unknown function {name!r} (known: {', '.join(sorted(FUNCTIONS))})")
        self.take("(")
        self.deeper()
        args: list[Compiled] = []
        while self.peek() != ("op", ")"):
            args.append(self.conditional())
            if self.peek() != ("op", ")"):
                self.take(",")
        self.take(")")
        self.depth -= 1

        def run(env: Env) -> Any:
            values = [arg(env) for arg in args]
            try:
                return function(*values)
            except TypeError:
                raise ExprError(f"{name}() does not take {len(args)} arguments") from None
            except (ArithmeticError, ValueError) as e:  # a number too big for what it names
                raise ExprError(f"{name}(): {e}") from None
        return run


def _lookup(env: Env, name: str) -> Any:
    try:
        return env[name]
    except KeyError:
        known = ", ".join(sorted(env)[:12])
        raise ExprError(f"unknown name {name!r} (known: {known or 'none'})") from None


@lru_cache(maxsize=4096)
def compile_expr(text: str) -> Compiled:
    """The expression as a function of its environment (names -> values). Raises ExprError."""
    if len(text) > MAX_TEXT:
        raise ExprError(f"expression is {len(text)} characters; the limit is {MAX_TEXT}")
    if not text.strip():
        raise ExprError("empty expression")
    return _Parser(text).parse()


def evaluate(text: str, env: Env) -> Any:
    return compile_expr(text)(env)


def names_in(text: str) -> set[str]:
    """The names an expression reads (its free variables), for checks before evaluating."""
    parser = _Parser(text)
    parser.parse()
    return parser.names


def as_sequence(value: Any) -> Sequence[Any]:
    """What a loop may go over: a list or a range (a mapping: its keys, in order)."""
    if isinstance(value, (list, tuple, range)):
        return value
    if isinstance(value, Mapping):
        return list(value)
    raise ExprError(f"a loop goes over a list or a range, not a {type_name(value)}")
