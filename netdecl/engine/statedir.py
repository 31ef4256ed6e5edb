"""The state directory: where every file netdecl keeps lives, and the one way to write one.

    <state dir>/lock                          HostLock: one apply/destroy/rollback at a time
    <state dir>/topologies/<name>.json        the ownership record of a topology
    <state dir>/journal/<name>.jsonl          the journal of an apply in progress (or crashed)
    <state dir>/confirm/<name>.pending        an apply waiting for `netdecl confirm` (its PID)
    <state dir>/confirm/<name>.confirmed      ... and confirmed, until that apply has finished
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = "/var/lib/netdecl"
STATE_DIR_ENV = "NETDECL_STATE_DIR"


def state_dir(override: str | None = None) -> Path:
    """--state-dir, else $NETDECL_STATE_DIR, else /var/lib/netdecl."""
    return Path(override or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def lock_path(root: Path) -> Path:
    return root / "lock"


def records_dir(root: Path) -> Path:
    return root / "topologies"


def record_path(root: Path, topology: str) -> Path:
    return records_dir(root) / f"{topology}.json"


def journal_dir(root: Path) -> Path:
    return root / "journal"


def journal_path(root: Path, topology: str) -> Path:
    return journal_dir(root) / f"{topology}.jsonl"


def confirm_dir(root: Path) -> Path:
    return root / "confirm"


def pending_path(root: Path, topology: str) -> Path:
    return confirm_dir(root) / f"{topology}.pending"


def confirmed_path(root: Path, topology: str) -> Path:
    return confirm_dir(root) / f"{topology}.confirmed"


def temp_path(path: Path) -> Path:
    """Where write_atomically stages ``path``; a write killed before the rename leaves it."""
    return path.with_name(path.name + ".tmp")


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` whole or not at all, durably: temp file, fsync, rename,
    fsync of the directory (so the rename itself survives a power loss)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json_atomically(path: Path, data: Any) -> None:
    write_atomically(path, json.dumps(data, indent=1, sort_keys=True))
