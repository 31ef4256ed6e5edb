"""Exit statuses: the one list of what netdecl's exit codes mean."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0  # success, or nothing to change
    FAILURE = 1  # an action, a verification, a conflict or the environment failed
    CHANGES_PENDING = 2  # plan --detailed-exitcode: the plan is not empty
    INVALID_TOPOLOGY = 3  # the file is wrong; nothing was changed
    ROLLBACK_FAILED = 4  # an apply failed and its rollback could not restore everything
