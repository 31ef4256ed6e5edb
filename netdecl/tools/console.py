"""The terminal: whether to use colour, and a progress line rewritten in place.

Long work (an apply, destroy or rollback of hundreds of namespaces) shows one line on a
terminal, `[328/1202] + link veth-c81 <-> c81/eth0`, rewritten with a carriage return and
cleared at the end, instead of a line per action that scrolls the plan away. Off a terminal
(a log, a pipe) nothing is drawn at all: the caller prints per-action lines only when asked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TextIO

__all__ = ["ProgressLine", "color_wanted", "is_terminal"]


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # closed, or not a real file
        return False


def color_wanted(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Colour on a terminal only; never with NO_COLOR set to anything but the empty string
    (https://no-color.org), nor on a terminal that says it cannot (TERM=dumb)."""
    if environ.get("NO_COLOR", "") != "" or environ.get("TERM") == "dumb":
        return False
    return is_terminal(stream)


class ProgressLine:
    """One line on a terminal, replaced by each ``show`` and wiped by ``clear``. Text longer
    than the terminal is cut: a line that wrapped could not be rewritten with a carriage
    return. Plain text only (escape sequences would upset the width arithmetic)."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.shown = 0  # length of what is on the line now

    def _width(self) -> int:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        return (columns or 80) - 1  # never the last column: some terminals wrap there

    def show(self, text: str) -> None:
        text = text[: self._width()]
        # spaces over whatever is left of a longer previous line (works on any terminal,
        # unlike the erase-line escape)
        self.stream.write("\r" + text + " " * max(0, self.shown - len(text)))
        self.stream.flush()
        self.shown = len(text)

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.stream.flush()
            self.shown = 0
