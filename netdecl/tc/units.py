"""Units as tc writes them, and bare numbers as the CNI bandwidth plugin takes them.

Every parser returns the value in the kernel's unit (nanoseconds, bytes per second, bytes, a
probability scaled to 2**32-1) or raises UnitError with a message for the file's diagnostics.
The suffixes are tc(8)'s: a rate in ``bit`` or ``bps`` (bytes per second) with SI or IEC
prefixes, a size in ``b`` (bytes), ``kb``/``mb``/``gb`` (binary multiples of bytes, as tc
reads them) or ``kbit``/``mbit``/``gbit`` (bits); a time in ``s``, ``ms``, ``us``/``usec`` or
``ns``.
"""

from __future__ import annotations

import math
import re

U32_MAX = 0xFFFFFFFF
NSEC_PER_SEC = 1_000_000_000


class UnitError(ValueError):
    """A value the file gives in no unit tc knows, or out of its range."""


_NUMBER = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z%]*)\s*")

_TIME = {"s": NSEC_PER_SEC, "sec": NSEC_PER_SEC, "secs": NSEC_PER_SEC,
         "ms": 1_000_000, "msec": 1_000_000, "msecs": 1_000_000,
         "us": 1_000, "usec": 1_000, "usecs": 1_000, "ns": 1}

# rate suffix -> bytes per second per unit
_RATE = {"bit": 1 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8, "tbit": 1e12 / 8,
         "kibit": 1024 / 8, "mibit": 1024**2 / 8, "gibit": 1024**3 / 8, "tibit": 1024**4 / 8,
         "bps": 1, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9, "tbps": 1e12,
         "kibps": 1024, "mibps": 1024**2, "gibps": 1024**3, "tibps": 1024**4}

# size suffix -> bytes per unit (tc's get_size: "kb" is KiB, "kbit" 1024 bits)
_SIZE = {"b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3,
         "gb": 1024**3, "kbit": 1024 / 8, "mbit": 1024**2 / 8, "gbit": 1024**3 / 8}


def _split(value: object, what: str) -> tuple[float, str]:
    if isinstance(value, bool):
        raise UnitError(f"{what} must be a number or a text like the examples, not {value}")
    if isinstance(value, (int, float)):
        if value < 0 or math.isnan(value) or math.isinf(value):
            raise UnitError(f"{what} must not be negative: {value}")
        return float(value), ""
    if not isinstance(value, str):
        raise UnitError(f"{what} must be a number or a text with a unit")
    if value.strip().startswith("-"):
        raise UnitError(f"{what} must not be negative: {value!r}")
    match = _NUMBER.fullmatch(value)
    if match is None:
        raise UnitError(f"{what} {value!r} is not a number with a unit")
    return float(match.group(1)), match.group(2).lower()


def time_ns(value: object, what: str = "time") -> int:
    """``40ms`` -> 40_000_000. A time needs its unit: a bare ``40`` could be anything."""
    number, unit = _split(value, what)
    if not unit:
        raise UnitError(f"{what} {value!r} needs a unit (s, ms, us or ns), e.g. 40ms")
    if unit not in _TIME:
        raise UnitError(f"{what} {value!r}: unknown unit {unit!r} (s, ms, us or ns)")
    return round(number * _TIME[unit])


def rate_bytes(value: object, what: str = "rate") -> int:
    """Bytes per second: ``20mbit`` -> 2_500_000; a bare number is bits per second (CNI)."""
    number, unit = _split(value, what)
    if unit and unit not in _RATE:
        raise UnitError(f"{what} {value!r}: unknown unit {unit!r} (bit, kbit, mbit, gbit, "
                        "bps, kbps, mbps...)")
    rate = round(number * _RATE[unit]) if unit else round(number / 8)
    if rate <= 0:
        raise UnitError(f"{what} {value!r} is zero: a rate must be at least 8bit")
    return rate


def size_bytes(value: object, what: str = "size") -> int:
    """Bytes: ``64kb`` -> 65536; a bare number is bits (CNI's burst)."""
    number, unit = _split(value, what)
    if unit and unit not in _SIZE:
        raise UnitError(f"{what} {value!r}: unknown unit {unit!r} (b, kb, mb, gb, kbit, mbit)")
    size = round(number * _SIZE[unit]) if unit else round(number / 8)
    if size <= 0:
        raise UnitError(f"{what} {value!r} is zero")
    if size > U32_MAX:
        raise UnitError(f"{what} {value!r} is more than the kernel's 4 GiB")
    return size


def percent(value: object, what: str = "probability") -> int:
    """``0.5%`` (or a bare 0.5, percent as tc takes it) -> the kernel's 32-bit probability."""
    number, unit = _split(value, what)
    if unit not in ("", "%"):
        raise UnitError(f"{what} {value!r} must be a percentage, e.g. 0.5%")
    if number > 100:
        raise UnitError(f"{what} {value!r} is more than 100%")
    return round(number / 100 * U32_MAX)


def count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= U32_MAX:
        raise UnitError(f"{what} must be a whole number from 1 to {U32_MAX}")
    return value


# -- back to text, as tc prints them (plans, show, explain) --------------------------------------

def show_time(ns: int) -> str:
    for unit, scale in (("s", NSEC_PER_SEC), ("ms", 1_000_000), ("us", 1_000)):
        if ns >= scale and ns % (scale // 1000 or 1) == 0:
            return f"{ns / scale:g}{unit}"
    return f"{ns}ns"


def show_rate(bytes_per_s: int) -> str:
    bits = bytes_per_s * 8
    for unit, scale in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        text = f"{bits / scale:g}{unit}"
        if bits >= scale and rate_bytes(text) == bytes_per_s:  # exact: show's output loads
            return text
    return f"{bits}bit"


def show_size(size: int) -> str:
    for unit, scale in (("mb", 1024**2), ("kb", 1024)):
        if size >= scale and size % (scale // 1024) == 0:
            return f"{size / scale:g}{unit}"
    return f"{size}b"


def show_percent(probability: int) -> str:
    return f"{probability / U32_MAX * 100:.4g}%"
