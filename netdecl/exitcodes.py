"""Exit statuses: the one list of what netdecl's exit codes mean."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    FAILURE = 1
    CHANGES_PENDING = 2
    INVALID_TOPOLOGY = 3
    ROLLBACK_FAILED = 4


# What each status means, as `netdecl --help` (and so the man page) says it.
MEANING = {
    ExitStatus.OK: "success, or nothing to change",
    ExitStatus.FAILURE: "failure: an action, a verification, a conflict, a missing tool; also a "
                        "usage error (unknown command or option, missing argument)",
    ExitStatus.CHANGES_PENDING: "changes pending (plan --detailed-exitcode only)",
    ExitStatus.INVALID_TOPOLOGY: "invalid topology: every problem as FILE:LINE:COL; nothing "
                                 "changed",
    ExitStatus.ROLLBACK_FAILED: "an apply failed and its rollback could not restore everything",
}
