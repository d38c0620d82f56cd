"""Where a stage's jobs run: in this process, in a local process pool, or on a Ray cluster (harness.engine.ray_executor).

Every executor takes the same jobs (a plain function and its arguments per key) and yields each result with where it
ran, as jobs finish; the stage that asked writes the run folder, so the run store stays single-writer on the driver.
Ray is imported only when the Ray executor is chosen.
"""

from __future__ import annotations

import time
from concurrent.futures import as_completed
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from harness.engine.errors import EvalError
from harness.engine.workers import worker_pool

EXECUTORS = ("local", "ray")
LOCAL_NODE = "local"


@dataclass(frozen=True)
class Placement:
    """Where and how long one job ran: the node (Ray's node id, or "local"), its host, seconds, attempts."""
    node: str
    host: str
    seconds: float
    attempts: int = 1

    def to_dict(self) -> dict:
        return {"node": self.node, "host": self.host, "seconds": round(self.seconds, 3), "attempts": self.attempts}


class LocalExecutor:
    """Jobs in `workers` processes of this machine (0: in this process, one after the other)."""

    name = "local"
    remote = False  # the sample stage renders and scores in this process, with its own volume memory

    def __init__(self, workers: int):
        self.workers = workers
        self.retried = 0  # never: a local job is lost only with the whole run
        self.on_retry = None  # (job key, why) -> None; never called here

    def map(self, fn: Callable, jobs: Mapping, resources: Callable | None = None) -> Iterator[tuple]:
        """(key, fn(*jobs[key]), Placement) as jobs finish. `resources` (per job) matter only on a cluster."""
        import socket

        host = socket.gethostname()
        workers = min(self.workers, len(jobs))
        if workers <= 0:
            for key, args in jobs.items():
                value, seconds = timed(fn, args)
                yield key, value, Placement(LOCAL_NODE, host, seconds)
            return
        with worker_pool(workers) as pool:
            futures = {pool.submit(timed, fn, args): key for key, args in jobs.items()}
            for future in as_completed(futures):
                value, seconds = future.result()
                yield futures[future], value, Placement(LOCAL_NODE, host, seconds)

    def close(self) -> None:
        pass


def timed(fn: Callable, args: tuple) -> tuple:
    """(fn(*args), seconds it took), measured where it runs (a pool's queueing time is not the job's)."""
    t0 = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - t0


def make_executor(name: str, *, workers: int, address: str | None = None):
    """The executor a run asked for: "local" (the default) or "ray" (ADDRESS: a running cluster's, e.g.
    127.0.0.1:6379; None: RAY_ADDRESS or a cluster started on this machine by `ray start`)."""
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        from harness.engine.ray_executor import RayExecutor

        return RayExecutor(address)
    raise EvalError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
