"""One `lookout run` per state dir: an exclusive lock on `<state_dir>/lookout.lock` for the run's life.

Two runs pointed at one state dir would interleave their seqs and deletes in one spool (the depth went
negative and metrics stopped validating) and overwrite each other's snapshots. The second run now stops
before loading its model, with one line naming the holder. The lock is flock(2): the kernel drops it
when the process dies, so a crash never leaves a stale lock behind. Where the lock file cannot be created
(a read-only or full state dir) the run goes on without it and the spool reports what it can.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from app.errors import LookoutError

log = logging.getLogger(__name__)
LOCK_NAME = "lookout.lock"


class StateDirInUse(LookoutError):
    """Another process holds the state dir."""


class StateDirLock:
    """Holds the lock from construction until `release()`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / LOCK_NAME
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            log.warning(
                "state dir lock %s not taken (%s): nothing stops a second run here", self.path, exc.strerror
            )
            self._fd = None
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder()
            self.release()
            raise StateDirInUse(
                f"state_dir {state_dir} is in use by another lookout run{holder}: give each run its own "
                "state_dir (--state-dir)"
            ) from None
        with contextlib.suppress(OSError):  # the pid only makes the message above better
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def _read_holder(self) -> str:
        try:
            pid = os.pread(self._fd, 32, 0).decode().strip() if self._fd is not None else ""
        except OSError:
            return ""
        return f" (pid {pid})" if pid.isdigit() else ""

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
