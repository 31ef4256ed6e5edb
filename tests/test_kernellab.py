"""The kernel lab itself (tests/kernellab.py): a missing module is a skip that names it, steps
run in the lab's kernel, a failing step's stderr comes back, and a lab out of time is killed
with every process of it, leaving no file behind."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import kernellab
import pytest
from kernellab import KernelLab, LabTimeout, Step


@pytest.fixture
def usable() -> None:
    """These tests judge the lab's own answers: they need a machine where it can boot."""
    reason = kernellab.unavailable()
    if reason:
        pytest.skip(reason)


@pytest.mark.lab("dummy", "no-such-module")
def test_a_missing_module_is_a_skip_naming_it(usable: None,
                                              request: pytest.FixtureRequest) -> None:
    with pytest.raises(pytest.skip.Exception) as skipped:
        request.getfixturevalue("lab")
    assert str(skipped.value) == ("needs kernel module no-such-module (not among the modules "
                                  f"of the lab kernel {kernellab.kernel_version()})")
    assert kernellab.unavailable(["dummy", "8021q"]) is None  # what the kernel has: no skip


def test_without_root_or_user_mode_linux_the_skip_says_which(
        monkeypatch: pytest.MonkeyPatch) -> None:
    which = shutil.which
    monkeypatch.setattr(kernellab.os, "geteuid", lambda: 0)
    monkeypatch.setattr(kernellab.shutil, "which",
                        lambda tool: None if tool == "linux.uml" else which(tool))
    assert kernellab.unavailable(["dummy"]) == (
        "needs linux.uml (Debian package user-mode-linux; bash .ci/setup installs it)")
    monkeypatch.setattr(kernellab.os, "geteuid", lambda: 1000)
    assert kernellab.unavailable() == (
        "needs root: the kernel lab runs in a PID namespace of its own")


def facts() -> None:
    """A lab step in Python: what kernel it runs in, and where."""
    import json
    import os

    with open(os.path.join(os.environ["OUT"], "facts.json"), "w") as f:
        json.dump({"release": os.uname().release, "cwd": os.getcwd(),
                   "dummy": os.path.isdir("/sys/module/dummy"),
                   "note": open("note.txt").read()}, f)


def lab_processes(where: str) -> list[int]:
    """Processes of this machine whose command line names the lab's directory."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if where.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.lab("dummy")
def test_a_failing_step_reports_its_stderr_and_a_hanging_one_is_killed(lab: KernelLab) -> None:
    lab.timeout = 3.0  # for the steps, once booted: the hanging step would take ten minutes
    started = time.monotonic()
    with pytest.raises(LabTimeout) as timeout:
        lab.run([Step.python("facts", facts),
                 Step("fails", "echo partial\necho 'frobnicate: no such thing' >&2\nexit 3"),
                 Step("hangs", "sleep 600"),
                 Step("never", "true")],
                files={"note.txt": "from outside"})
    took = time.monotonic() - started
    assert timeout.value.running == "hangs"
    assert "ran out of time to run its steps (in step hangs); it was killed" in str(
        timeout.value)
    run = timeout.value.run
    assert run is not None and list(run.steps) == ["facts", "fails"]

    # the steps ran in the lab's kernel (not this machine's), with the module loaded and the
    # test's files as their working directory
    facts_ = run["facts"].json["facts"]
    assert facts_["release"] == kernellab.kernel_version() != os.uname().release
    assert facts_["dummy"] is True and facts_["note"] == "from outside"

    failed = run["fails"]
    assert (failed.returncode, failed.stdout, failed.stderr) == (
        3, "partial\n", "frobnicate: no such thing\n")
    with pytest.raises(AssertionError, match="exit code 3(.|\n)*frobnicate: no such thing"):
        failed.ok()

    # killed, not waited for, and nothing of it is left: no process, no directory
    assert took < 60, took
    lab_dir = str(Path(facts_["cwd"]).parent)
    assert lab_processes(lab_dir) == []
    assert not os.path.exists(lab_dir)
