"""The agent after an edit that conflicts with a foreign object (issue 29), against the
in-memory host: a fixing edit applies at once (not after the conflict's back-off), and drift of
the last applied version is repaired while the conflicting file is on disk.

Driven through the agent's own entry points (a file changed, the kernel changed, is a
reconcile due now?) with the time passed in: no sleeps, no clock.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from fakehost import FakeHost

from netdecl.agent.events import Change
from netdecl.agent.log import AgentLog
from netdecl.agent.runner import DEBOUNCE, Agent
from netdecl.model import ROOT, Link

V1 = """version: 1
name: t
namespaces:
  a: {}
links:
  - name: br
    kind: bridge
    addresses: [10.0.0.1/24]
  - name: v
    kind: veth
    master: br
    peer: {name: eth0, namespace: a, addresses: [10.0.0.2/24]}
"""
# v1 and a dummy link that someone else already has on the host: a conflict
V2 = V1 + """  - name: d0
    kind: dummy
"""
# the fix: another name for the dummy
V3 = V1 + """  - name: d1
    kind: dummy
"""


@pytest.fixture
def agent(tmp_path, monkeypatch) -> tuple[Agent, FakeHost, Path]:
    host = FakeHost()
    monkeypatch.setattr("netdecl.engine.service._kernel_host", lambda: host)
    monkeypatch.setattr(Agent, "_sync_watches", lambda self: None)  # no kernel sockets
    path = tmp_path / "t.yaml"
    path.write_text(V1)
    agent = Agent([str(path)], tmp_path / "state", log=AgentLog(stream=io.StringIO()))
    agent.load()
    source = agent.sources[path]
    source.scope = {ROOT, "a"}  # what _sync_watches would find (it opens kernel sockets)
    agent._mark(source, "start", "start", time.monotonic())
    agent._reconcile(source)
    assert host.objects.get(("link", ROOT, "br")) is not None
    host.add_foreign(Link(ROOT, "d0", "dummy"))
    return agent, host, path


def edit(agent: Agent, path: Path, text: str) -> float:
    path.write_text(text)
    now = time.monotonic()
    agent._files_changed({path}, now)
    return now


def conflict_repeatedly(agent: Agent, path: Path, times: int) -> None:
    """The conflicting version, retried ``times`` times (each retry once it is due)."""
    source = agent.sources[path]
    edit(agent, path, V2)
    for _ in range(times):
        source.retry_at = 0.0  # as if its back-off had passed
        agent._reconcile(source)
    assert source.failures == times
    assert source.retry_at > time.monotonic() + 2 ** (times - 1) - 1  # backing off now


def test_a_new_version_does_not_wait_out_the_old_ones_back_off(agent):
    agent, host, path = agent
    source = agent.sources[path]
    conflict_repeatedly(agent, path, 5)  # 16 s to wait before its next try
    now = edit(agent, path, V3)
    assert agent._due(source, now + DEBOUNCE), "the fix waits out the conflict's back-off"
    agent._reconcile(source)
    assert source.failures == 0
    assert ("link", ROOT, "d1") in host.objects


def test_touching_the_file_without_a_new_version_keeps_the_back_off(agent):
    agent, host, path = agent
    source = agent.sources[path]
    conflict_repeatedly(agent, path, 3)
    now = edit(agent, path, V2)  # the same text again
    assert not agent._due(source, now + DEBOUNCE)
    assert source.failures == 3


def test_drift_of_the_last_applied_version_is_repaired_while_a_conflict_waits(agent):
    agent, host, path = agent
    source = agent.sources[path]
    conflict_repeatedly(agent, path, 4)
    retry_at, failures = source.retry_at, source.failures
    host.remove(("link", ROOT, "br"))  # drift of what v1 made
    now = time.monotonic()
    agent._kernel_changed(Change(ROOT, "link br deleted", 1), now)
    assert source.pending is not None
    assert agent._due(source, now + DEBOUNCE), "drift waits for the conflicting version"
    agent._reconcile(source)
    assert ("link", ROOT, "br") in host.objects  # v1 repaired
    assert ("link", ROOT, "d1") not in host.objects
    # the conflicting version is still to be retried, at the time its back-off says
    assert (source.retry_at, source.failures) == (retry_at, failures)
    assert source.pending is not None and not agent._due(source, now + DEBOUNCE)
    log = agent.log.stream.getvalue()  # type: ignore[attr-defined]
    assert "repaired 3 object(s) of the last applied version" in log


def test_a_failed_repair_of_the_last_applied_version_waits_for_the_retry(agent):
    agent, host, path = agent
    source = agent.sources[path]
    conflict_repeatedly(agent, path, 4)
    host.remove(("link", ROOT, "br"))
    host.arm(1)  # the repair's first change fails: the apply rolls back (and makes events)
    now = time.monotonic()
    agent._kernel_changed(Change(ROOT, "link br deleted", 1), now)
    agent._reconcile(source)
    assert ("link", ROOT, "br") not in host.objects
    # the rollback's own events do not start the next attempt at once: it waits for the retry
    agent._kernel_changed(Change(ROOT, "link v changed", 1), now)
    assert not agent._due(source, now + DEBOUNCE)
    assert agent._due(source, source.retry_at + DEBOUNCE)
