"""Room for a rollback, taken before the change it may have to undo.

A full state dir must not stop a rollback half-way: a rollback writes too (an intent line per
action it undoes, the identities of what it makes again, the record it puts back). So while an
apply runs, a file of preallocated blocks (fallocate) sits beside its journal: it starts with
the size of the record a rollback writes back, and grows before each action by what undoing
that action may write. A rollback first removes the file: the room it frees is the rollback's
own. An apply that cannot take the room fails before its action runs (ENOSPC), so whatever it
had done is covered.

Preallocated blocks are real: `df` counts them, and another program cannot take them.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from netdecl.engine.state.statedir import FILE_MODE

SUFFIX = ".reserve"
# grown by at least this much at a time: one fallocate per few dozen actions, not per action
CHUNK = 8192
# what undoing one action may write besides its intent line: the identities of an object made
# again (up to three ``made`` lines of ~100 bytes) and slack
PER_ACTION = 400


def reserve_path(journal: Path) -> Path:
    """The reserve of the journal at ``journal`` (a dot file: no journal, no temp file)."""
    return journal.with_name(f".{journal.name}{SUFFIX}")


class Reserve:
    """The preallocated room of one apply's rollback."""

    def __init__(self, path: Path):
        self.path = path
        self.size = 0  # bytes preallocated
        self.needed = 0  # bytes the rollback may have to write so far

    @classmethod
    def take(cls, journal: Path, initial: int) -> Reserve:
        """A fresh reserve beside ``journal`` holding ``initial`` bytes (OSError ENOSPC when
        there is no room for them: raised before anything changed)."""
        reserve = cls(reserve_path(journal))
        fd = os.open(reserve.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                     | os.O_CLOEXEC, FILE_MODE)
        os.close(fd)
        reserve.grow(initial)
        return reserve

    def for_undoing(self, line: bytes) -> None:
        """Room to undo the action whose intent is ``line``, taken before that action runs."""
        self.grow(len(line) + PER_ACTION)

    def grow(self, more: int) -> None:
        self.needed += more
        if self.needed <= self.size:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            try:  # only what is not allocated yet, so growing costs what it adds
                os.posix_fallocate(fd, self.size, self.needed + CHUNK - self.size)
                self.size = self.needed + CHUNK
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                # the room itself, without the slack
                os.posix_fallocate(fd, self.size, self.needed - self.size)
                self.size = self.needed
        except OSError as exc:
            self.needed -= more
            if exc.errno == errno.ENOSPC:
                raise OSError(errno.ENOSPC, f"no room left in {self.path.parent} to keep what "
                                            f"a rollback would need") from None
            raise
        finally:
            os.close(fd)


def release(journal: Path) -> None:
    """Free the reserve of the journal at ``journal`` (if any): the rollback's room."""
    reserve_path(journal).unlink(missing_ok=True)
