"""Errors of the run store: they name the file and what to do."""

from __future__ import annotations

import errno

from harness.core.errors import PathError


class RunStoreError(PathError):
    """A run directory cannot be read or written; names the path and what to do."""


class RunLockedError(RunStoreError):
    """Another process is writing the same run directory."""

    def __init__(self, path, pid: int | None, alive: bool = True):
        self.pid = pid
        if pid and not alive:
            problem = (f"run directory is still locked although process {pid}, which opened it, has exited: a worker "
                       "process it started may still be running; stop it, or choose another run directory")
        else:
            holder = f"process {pid}" if pid else "another process"
            problem = (f"run directory is in use by {holder} (another `harness eval` on the same --out/--resume?); "
                       "wait for it to finish or stop it, or choose another run directory")
        super().__init__(path, problem)


def os_problem(exc: OSError, doing: str) -> str:
    if exc.errno == errno.ENOSPC:
        return f"disk full while {doing}; free space and resume the run (completed samples are kept)"
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded while {doing}; free space and resume the run (completed samples are kept)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied while {doing}; choose a run directory you can write to"
    if exc.errno == errno.EROFS:
        return f"read-only file system while {doing}; choose a run directory you can write to"
    return f"{exc.strerror or exc} while {doing}"
