"""One training run per run folder: a lock file that names its holder.

Two runs writing into one folder would silently replace each other's checkpoints and interleave their
logs. ``RunLock`` holds ``.train.lock`` in each folder for the life of the run. The lock itself is an
``flock`` on that file, so the kernel releases it when its process dies (``kill -9`` included): a lock
can never stay stale. The file records the holder's pid, host and start time, for the refusal message
and for systems without ``flock``, where a lock whose process is gone (same host) is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import SimVQError

try:
    import fcntl
except ImportError:  # Windows: pid check only
    fcntl = None

LOCK_NAME = ".train.lock"


class RunFolderLockedError(SimVQError):
    """Another live training run holds the run folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _read_holder(path: Path) -> dict:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "another process"
    started = holder.get("started")
    when = f", started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}" if started else ""
    return f"pid {holder['pid']} on {holder.get('host', 'an unknown host')}{when}"


def _refusal(folder: Path, holder: dict) -> RunFolderLockedError:
    return RunFolderLockedError(
        f"{folder}: run folder in use by another training run ({_describe(holder)}); wait for it to finish, "
        f"stop it, or give this run another logging.dir"
    )


class _FolderLock:
    """The lock of one folder; ``acquire`` raises ``RunFolderLockedError`` naming the holder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._fd: int | None = None
        self.stale: dict | None = None  # the dead holder whose lock was taken over, if any

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        raise _refusal(self.folder, _read_holder(self.path)) from None
                    # The holder may have removed the file between our open and flock: lock the file
                    # that is there now, not an unlinked one.
                    with contextlib.suppress(FileNotFoundError):
                        if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                            break
                    os.close(fd)
                    continue
                break
            except BaseException:
                os.close(fd)
                raise
        holder = _read_holder(self.path)
        if holder.get("pid") and holder.get("pid") != me["pid"]:
            if holder.get("host") == me["host"] and _pid_alive(int(holder["pid"])) and fcntl is None:
                os.close(fd)
                raise _refusal(self.folder, holder)
            self.stale = holder  # its process died (the kernel dropped its flock), or it is this file's leftover
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # while still locked, so that nobody locks the file being removed
        os.close(self._fd)
        self._fd = None


@contextlib.contextmanager
def run_lock(folders: Iterable[str | os.PathLike]) -> Iterator[list[dict]]:
    """Hold the lock of each folder (created if missing) for the body; yields the stale holders taken over.

    Raises ``RunFolderLockedError`` ("FOLDER: run folder in use by another training run (pid N on HOST,
    started ...)") when a live process holds one of them; nothing is locked then.
    """
    unique = []
    for folder in folders:
        path = Path(folder).resolve()
        if path not in unique:
            unique.append(path)
    held: list[_FolderLock] = []
    try:
        for folder in unique:
            lock = _FolderLock(folder)
            lock.acquire()
            held.append(lock)
        yield [lock.stale for lock in held if lock.stale]
    finally:
        for lock in reversed(held):
            lock.release()
