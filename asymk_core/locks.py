"""Lock files that name their holder: one render at a time per output, and leftovers of dead runs.

An :class:`OwnerLock` is a file held with an operating-system lock (``flock`` on POSIX,
``LockFileEx`` on Windows, through ``filelock``) for as long as its owner works. The kernel drops
the lock when the process ends, however it ends (SIGKILL and power loss included), so a lock that
can be taken has no living owner, whatever PID the file still names; a reused PID cannot fool it.
The file records the holder's PID and host, for messages.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from filelock import FileLock, Timeout
from filelock import __version__ as filelock_version


class LockUnsupported(OSError):
    """No lock can be taken here; ``fix`` says what to do."""

    def __init__(self, reason: str, fix: str):
        super().__init__(reason)
        self.reason, self.fix = reason, fix


class LockHeld(Exception):
    """The lock is held by another process (or another thread of this one); ``holder`` says who."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is held by {holder}")
        self.path, self.holder = path, holder


def _record_holder(fd: int) -> None:
    """``filelock``'s ``on_acquired`` hook: write this process's PID and host into the held lock file."""
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, record)


def lock_holder(path: str | os.PathLike) -> str:
    """Who holds the lock at ``path``, as recorded in it: ``"PID 123"``, ``"PID 123 on host h"``, or
    ``"another process"`` when the record cannot be read (e.g. Windows keeps a held file unreadable)."""
    try:
        record = json.loads(Path(path).read_text())
        pid, host = int(record["pid"]), str(record.get("host", ""))
    except (OSError, ValueError, TypeError, KeyError):
        return "another process"
    return f"PID {pid}" if not host or host == socket.gethostname() else f"PID {pid} on host {host}"


class OwnerLock:
    """A lock file at ``path``, taken without waiting and removed on release.

    With ``reentrant`` (the default), taking it again in the thread that holds it only counts;
    otherwise that is refused like any other holder: another process or thread gets
    :class:`LockHeld` at once. :class:`LockUnsupported` means no lock can be taken here (a file
    system that cannot lock files, rare: some network or FUSE ones; or a filelock before 3.31).
    """

    def __init__(self, path: str | os.PathLike, reentrant: bool = True):
        self.path = Path(path)
        # One instance per path (is_singleton) makes a second hold in the same thread reentrant; a
        # separate instance opens the file again, and flock refuses that descriptor while one is held.
        try:
            self._lock = FileLock(self.path, is_singleton=reentrant, on_acquired=_record_holder)
        except TypeError:  # no on_acquired before filelock 3.31
            raise LockUnsupported(f"filelock {filelock_version} cannot record a lock's holder",
                                  "upgrade it: pip install 'filelock>=3.31'") from None

    def acquire(self) -> OwnerLock:
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise LockHeld(self.path, lock_holder(self.path)) from None
        except OSError as exc:
            raise LockUnsupported(f"{self.path} cannot be locked ({exc.strerror or exc})",
                                  "write to a local disk, where files can be locked") from None
        return self

    def release(self) -> None:
        """Give the lock up; the last release in this thread removes the file."""
        if self._lock.lock_counter == 1 and os.name != "nt":
            # Removed while still held, so a process that opens the path from now on makes a new
            # file and locks that one. (filelock leaves the file on POSIX; on Windows it removes it.)
            self.path.unlink(missing_ok=True)
        self._lock.release()

    def __enter__(self) -> OwnerLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def take_if_abandoned(path: str | os.PathLike) -> OwnerLock | None:
    """The lock at ``path``, held by the caller, if nobody holds it (this thread included); else ``None``."""
    try:
        return OwnerLock(path, reentrant=False).acquire()
    except (LockHeld, OSError):
        return None
