"""Signals and failures at the worst moments (issue 12), in-process against the in-memory host.

The host sends SIGTERM to this very process from inside one of its methods, so the signal
lands exactly there (Python runs the handler before the method returns): no timing, no sleeps.
"""

from __future__ import annotations

import errno
import os
import signal
from collections import Counter

import pytest
from builders import docker_bridge
from fakehost import FakeHost

from netdecl.engine import service
from netdecl.engine.state.statedir import journal_path
from netdecl.errors import ApplyFailed, RollbackFailed
from netdecl.exitcodes import ExitStatus

NAME = "docker-bridge"


@pytest.fixture(autouse=True)
def _nft_present(monkeypatch):
    monkeypatch.setattr("netdecl.backends.nftables.find_nft", lambda: "/usr/sbin/nft")


class SignallingHost(FakeHost):
    """A FakeHost that signals itself on the n-th call of some methods (twice if n is listed
    twice); ``fail`` makes the n-th
    call of a method raise instead."""

    def __init__(self, signal_at: dict[str, list[int]], fail: dict[str, int] | None = None):
        super().__init__()
        self.signal_at = signal_at
        self.fail = fail or {}
        self.calls: Counter[str] = Counter()

    def _hook(self, method: str) -> None:
        self.calls[method] += 1
        if self.fail.get(method) == self.calls[method]:
            raise OSError(errno.EIO, f"{method} failed (injected)")
        for _ in range(self.signal_at.get(method, []).count(self.calls[method])):
            os.kill(os.getpid(), signal.SIGTERM)

    def observe(self, topology, scope):
        self._hook("observe")
        return super().observe(topology, scope)

    def create(self, obj, topology, peer=None, birth=None):
        super().create(obj, topology, peer, birth)
        self._hook("create")

    def delete(self, obj, topology, peer=None):
        self._hook("delete")
        super().delete(obj, topology, peer)

    def reconnect(self):
        self._hook("reconnect")  # the real host closes its sockets here


def apply_expecting(host: FakeHost, tmp_path, error: type[Exception]) -> Exception:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(error) as caught:
            service.apply(docker_bridge(), tmp_path, host=host)
    finally:
        assert signal.getsignal(signal.SIGTERM) == previous  # the trap put it back
    return caught.value


@pytest.mark.parametrize("second", [
    {"reconnect": [1]},  # while the sockets are closed before the rollback
    {"observe": [2]},  # while the rollback reads the host
    {"delete": [1]},  # inside the rollback's first delete
    {"reconnect": [2]},  # while reconnecting after the rollback's actions
])
def test_a_second_sigterm_anywhere_after_the_first_still_rolls_back(tmp_path, second):
    host = SignallingHost({"create": [3], **second})
    before = host.state()
    exc = apply_expecting(host, tmp_path, ApplyFailed)
    assert "interrupted by SIGTERM" in str(exc) and "rolled back" in str(exc)
    assert host.state() == before
    assert not journal_path(tmp_path, NAME).exists()


def test_two_sigterms_inside_one_action_cut_it_short_and_roll_back(tmp_path):
    host = SignallingHost({"create": [3, 3]})
    before = host.state()
    exc = apply_expecting(host, tmp_path, ApplyFailed)
    assert "(twice)" in str(exc)
    assert host.state() == before


def test_a_sigterm_during_verification_rolls_back(tmp_path):
    host = SignallingHost({"observe": [2]})  # 1: the plan, 2: the verification
    before = host.state()
    exc = apply_expecting(host, tmp_path, ApplyFailed)
    assert "interrupted by SIGTERM" in str(exc)
    assert host.state() == before
    assert not journal_path(tmp_path, NAME).exists()


def test_a_rollback_that_cannot_read_the_host_exits_4_and_keeps_the_journal(tmp_path):
    host = SignallingHost({}, fail={"observe": 2})  # the rollback's first look at the host
    host.arm(4)  # the fourth change fails: roll back
    exc = apply_expecting(host, tmp_path, RollbackFailed)
    assert exc.status == ExitStatus.ROLLBACK_FAILED
    assert "observe failed (injected)" in str(exc) and "journal is kept" in str(exc)
    assert journal_path(tmp_path, NAME).exists()
    # and `netdecl rollback` then finishes it
    assert service.rollback(tmp_path, NAME, host=host) == [NAME]
    assert not journal_path(tmp_path, NAME).exists()
