"""The agent's log: one line per event on stderr, as text for people or JSON for machines.

Every line names its event (started, applied, repaired, invalid, backoff, failed, conflict,
waiting, stopped...), so a test or a log shipper can follow the agent without parsing prose.
journald adds its own timestamps; the lines carry one anyway for a terminal or a file.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

FORMATS = ("text", "json")
# the lowest level written (--log-level); debug lines carry the detail of info lines (every
# action of an apply), which at a thousand namespaces is tens of kilobytes a line
LEVELS = ("debug", "info", "warning", "error")


class AgentLog:
    def __init__(self, fmt: str = "text", stream: TextIO | None = None, level: str = "info"):
        if fmt not in FORMATS:
            raise ValueError(f"log format {fmt!r}: one of {', '.join(FORMATS)}")
        if level not in LEVELS:
            raise ValueError(f"log level {level!r}: one of {', '.join(LEVELS)}")
        self.fmt = fmt
        self.stream = stream or sys.stderr
        self.lowest = LEVELS.index(level)

    def __call__(self, event: str, message: str, level: str = "info", **fields: Any) -> None:
        if LEVELS.index(level) < self.lowest:
            return
        now = time.time()
        if self.fmt == "json":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + \
                f".{int(now % 1 * 1000):03d}Z"
            line = json.dumps({"time": stamp, "level": level, "event": event,
                               "message": message, **fields}, default=str)
        else:
            stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
            line = f"{stamp} {level} {event}: {message}"
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # nobody reads the log any more: keep working
            pass
