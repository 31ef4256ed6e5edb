"""`netdecl agent` as a subprocess inside a HermeticHost, followed through its JSON log.

The agent logs one JSON object per line on stderr, each naming its event; a reader thread
queues them, and tests wait for the event they expect (with a deadline), never for a fixed
time. nsenter execs the agent (no fork for net+mnt), so the Popen's pid is the agent's own:
signals reach it directly and /proc/PID/stat is its CPU time.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from harness import STATE_DIR

Event = dict[str, Any]


class AgentProcess:
    def __init__(self, host: Any, *args: str, env: dict[str, str] | None = None):
        argv = host._argv([sys.executable, "-m", "netdecl", "agent", "--log-format", "json",
                           *args], None)
        self.proc = subprocess.Popen(
            argv, env=host._env({"NETDECL_STATE_DIR": STATE_DIR, **(env or {})}),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: list[Event] = []  # every event read so far, in order
        self.other: list[str] = []  # stderr lines that are not JSON (a traceback...)
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._seen = 0  # events consumed by wait_for

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                self.other.append(line.rstrip("\n"))
                continue
            self._queue.put(event)
        self._queue.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for(self, event: str, match: Callable[[Event], bool] = lambda e: True,
                 timeout: float = 30.0) -> Event:
        """The next event named ``event`` that ``match``es (earlier ones are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            while self._seen < len(self.events):
                found = self.events[self._seen]
                self._seen += 1
                if found.get("event") == event and match(found):
                    return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {event!r} event within {timeout}s; log so far:\n"
                                     + self.transcript())
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if item is None:
                self._queue.put(None)  # keep the end marker for the next caller
                raise AssertionError(f"the agent exited (rc={self.proc.wait()}) before a "
                                     f"{event!r} event; log:\n" + self.transcript())
            self.events.append(item)

    def drain(self) -> None:
        """Take in what the reader has queued so far (without waiting)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._queue.put(None)
                return
            self.events.append(item)

    def count(self, event: str) -> int:
        self.drain()
        return sum(e.get("event") == event for e in self.events)

    def transcript(self) -> str:
        self.drain()
        lines = [f"{e.get('event')}: {e.get('message')}" for e in self.events]
        return "\n".join(lines + self.other)

    def cpu_seconds(self) -> float:
        """utime + stime of the agent, from /proc/PID/stat."""
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> float:
    """Poll ``check`` until true; returns the seconds it took (fails after ``timeout``)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.005)
    return time.monotonic() - start
