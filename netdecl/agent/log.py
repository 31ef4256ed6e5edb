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


class AgentLog:
    def __init__(self, fmt: str = "text", stream: TextIO | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"log format {fmt!r}: one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self.stream = stream or sys.stderr

    def __call__(self, event: str, message: str, level: str = "info", **fields: Any) -> None:
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
