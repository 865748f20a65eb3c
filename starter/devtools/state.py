"""The dev stack's state directory: one stack at a time, and a note that says where that stack is.

``<state dir>/dev-stack.json`` is both

- **the lock**: a running ``enrollments dev`` holds an exclusive ``flock`` on it, shared with its Temporal
  server, so it lasts until both are gone. A second stack on the same directory is refused with the
  directory and the running stack's pid. The kernel drops the lock when the processes end, however they
  end: a crashed stack leaves the file, never a stale lock;
- **the announcement**: what the stack printed when it started (pid, Temporal address, namespace, Web UI,
  database), so that the command line run in that directory or below it finds the stack's database and
  server without options (:func:`find_announcement`). Only its owner may read it: a database URL may hold a
  password.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

DEFAULT_STATE_DIR = Path(".enrollments")
STATE_FILE = "dev-stack.json"


class DevStackError(RuntimeError):
    """The stack could not start (state directory in use, port taken, server exited, …); the message says what
    to do."""


class Announcement(BaseModel):
    """Where a dev stack runs, as it announced it in its state directory."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    pid: int
    state_dir: str
    temporal_address: str
    namespace: str
    web_ui: str
    database_url: str


def _read(path: Path) -> Announcement | None:
    try:
        return Announcement.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None


def find_announcement(start: Path) -> tuple[Path, Announcement] | None:
    """The announcement of the dev stack whose default state directory (``.enrollments``) is in ``start`` or
    one of its parents, nearest first, with the file's path; None when there is none."""
    for directory in (start, *start.parents):
        path = directory / DEFAULT_STATE_DIR / STATE_FILE
        found = _read(path) if path.is_file() else None
        if found is not None:
            return path, found
    return None


class StateDirLock:
    """The exclusive lock on a state directory, held from :meth:`acquire` to :meth:`release` (or process end)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE
        self._fd: int | None = None

    @property
    def fd(self) -> int:
        """The locked file's descriptor: a child process that inherits it keeps the directory locked."""
        if self._fd is None:
            raise RuntimeError("the state directory is not locked")
        return self._fd

    def acquire(self, announcement: Announcement) -> None:
        """Lock the directory and write ``announcement``; :class:`DevStackError` when another stack holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read(self.path)
            pid = f"pid {holder.pid}" if holder is not None else "its pid not written yet"
            raise DevStackError(
                f"the state directory {self.path.parent.resolve()} is in use by another `enrollments dev` ({pid}); "
                "stop that one first, or give this one another --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, announcement.model_dump_json(indent=2).encode() + b"\n", 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
