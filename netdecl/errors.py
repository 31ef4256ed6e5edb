"""Exceptions that end a command. cli.main() is the one place that turns them into exit codes."""

from __future__ import annotations

from dataclasses import dataclass

from netdecl.exitcodes import ExitStatus


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in a topology file, reported as FILE:LINE:COL: message."""

    file: str
    line: int
    col: int
    message: str
    severity: str = "error"  # error | warning
    # the loop iteration of a templated file that made the value ("i=17"), or ""
    note: str = ""

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        note = f" ({self.note})" if self.note else ""
        return f"{self.file}:{self.line}:{self.col}{note}: {prefix}{self.message}"


class NetdeclError(Exception):
    """An error with a message meant for the user (no traceback) and an exit status."""

    status: ExitStatus = ExitStatus.FAILURE


class InvalidTopology(NetdeclError):
    """The topology file is wrong. Carries every diagnostic found, not just the first."""

    status = ExitStatus.INVALID_TOPOLOGY

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class EnvironmentProblem(NetdeclError):
    """The machine cannot do what was asked: no privileges, a missing tool, a locked state dir."""


class ActionFailed(NetdeclError):
    """An action of an apply failed (the kernel or nft refused it)."""

    def __init__(self, action_description: str, reason: str):
        self.action_description = action_description
        self.reason = reason
        super().__init__(f"{action_description}: {reason}")


class VerificationFailed(NetdeclError):
    """After an apply, re-reading the host still shows differences from the topology."""


class ApplyFailed(NetdeclError):
    """An apply failed and was rolled back completely (exit 1)."""


class NotConfirmed(NetdeclError):
    """--confirm-timeout ran out without `netdecl confirm`: the apply is rolled back."""


class RollbackFailed(NetdeclError):
    """A rollback could not restore everything (exit 4); the journal is kept."""

    status = ExitStatus.ROLLBACK_FAILED
