"""Worker processes that never outlive the run: a `harness eval` killed with kill -9 gets no chance to stop its pool,
so each worker watches the process that started it and exits when that process is gone (or a zombie)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

WATCH_INTERVAL_S = 0.5


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool (forkserver where available: no copy of the parent's threads and locks) whose workers exit
    within about WATCH_INTERVAL_S of the parent's death."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=exit_with, initargs=(os.getpid(),))


def exit_with(parent_pid: int) -> None:
    """Worker initializer: a daemon thread ends this process once `parent_pid` has died."""
    def watch() -> None:
        while alive(parent_pid):
            time.sleep(WATCH_INTERVAL_S)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def alive(pid: int) -> bool:
    """False for a process that is gone or a zombie (killed, not yet reaped by its own parent)."""
    if os.path.isdir("/proc/self"):  # Linux: a zombie still answers signal 0, its state letter says Z
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
        except (FileNotFoundError, ProcessLookupError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
