"""The run directory's lock: one process writes a run; the lock file holds its PID so others can say who."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from harness.store.errors import RunLockedError, RunStoreError, os_problem

LOCK = ".lock"


def lock_holder(run_dir) -> int | None:
    """PID of the live process writing this run, or None. Reads the lock file only; never takes the lock."""
    try:
        text = (Path(run_dir) / LOCK).read_text().strip()
        pid = int(text)
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def take_lock(directory: Path) -> int:
    path = directory / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RunStoreError(path, os_problem(exc, "creating the lock file")) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            pid = int(os.pread(fd, 32, 0).decode().strip() or 0) or None
        except (OSError, ValueError):
            pid = None
        os.close(fd)
        raise RunLockedError(directory, pid, alive=pid is not None and alive(pid)) from None
    except OSError as exc:
        os.close(fd)
        raise RunStoreError(path, os_problem(exc, "locking the run directory")) from exc
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        release_lock(fd)
        raise RunStoreError(path, os_problem(exc, "writing the lock file")) from exc
    return fd


def release_lock(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)  # an empty lock file says nobody is writing; we still hold the lock here
    except OSError:
        pass
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
