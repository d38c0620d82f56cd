"""The Ray executor: a stage's jobs as Ray tasks on a running cluster (`harness eval --executor ray --ray-address A`).

Jobs are plain functions of plain arguments (a volume path, a defacer name and parameters, the cache folder): each
node imports harness itself and reads and writes the content-addressed caches; the job's small result (status, QC,
seconds) comes back through Ray and the driver alone writes the run folder. Every node must therefore see the same
--cache-dir and the cohort's files at the same paths (one machine, or a shared file system): see the README.

Ray's own retries are off: a job lost with its node (killed, out of memory) is submitted again here, at most
MAX_ATTEMPTS times, so the run can count and log it. A bug inside a job is not retried: it is raised.
"""

from __future__ import annotations

import socket
from typing import Callable, Iterator, Mapping

from harness.engine.errors import EvalError
from harness.engine.executors import Placement, timed

MAX_ATTEMPTS = 3  # a job lost with its node is run at most this often
CONNECT_TIMEOUT_S = 5.0
WAIT_S = 2.0  # how often a waiting driver checks that the cluster can still run what is pending
DEFAULT_RESOURCES = {"num_cpus": 1}


def placed(fn: Callable, args: tuple):
    """On a cluster node: fn(*args), with the node's id, its host name and the seconds it took."""
    import ray

    value, seconds = timed(fn, args)
    return value, ray.get_runtime_context().get_node_id(), socket.gethostname(), seconds


def _probe(address: str) -> None:
    """A clear error now, instead of Ray's long retry loop, when nothing listens at HOST:PORT."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise EvalError(f"Ray address {address!r} is not HOST:PORT (the head's `ray start --port`, e.g. 127.0.0.1:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise EvalError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it with "
                        f"`ray start --head --port {port}` or pass the head's address with --ray-address") from None


class RayExecutor:
    name = "ray"
    remote = True  # the sample stage sends rendering and scoring here too (harness.engine.sample_jobs)

    def __init__(self, address: str | None):
        try:
            import ray
        except ImportError:
            raise EvalError("--executor ray needs Ray: pip install 'defacing-harness[ray]' (or pip install ray)") from None
        self._ray = ray
        self.address = address or "auto"
        if address:
            _probe(address)
        if ray.is_initialized():
            ray.shutdown()  # a connection left by an earlier run in this process may be to another cluster
        try:
            ray.init(address=self.address, log_to_driver=False, logging_level="WARNING", configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EvalError(f"cannot connect to the Ray cluster at {self.address}: {exc}") from None
        self.retried = 0
        self.on_retry: Callable[[object, str], None] | None = None
        self._remote = ray.remote(placed)
        self._check(DEFAULT_RESOURCES)

    def nodes(self) -> list[dict]:
        """The cluster's live nodes: id, host, resources."""
        return [{"node": n["NodeID"], "host": n.get("NodeManagerHostname", ""), "resources": n.get("Resources", {})}
                for n in self._ray.nodes() if n.get("Alive")]

    def _check(self, resources: Mapping) -> None:
        """An error naming the address when no live node could ever run a job asking for `resources`."""
        need = {"CPU": resources.get("num_cpus", 1), "GPU": resources.get("num_gpus", 0), "memory": resources.get("memory", 0)}
        nodes = self.nodes()
        if not any(n["resources"].get("CPU", 0) > 0 for n in nodes):
            raise EvalError(f"the Ray cluster at {self.address} has no CPU left ({len(nodes)} live node(s), none with a CPU)")
        if not any(all(n["resources"].get(k, 0) >= v for k, v in need.items() if v) for n in nodes):
            asked = ", ".join(f"{k} {v:g}" for k, v in need.items() if v)
            raise EvalError(f"no live node of the Ray cluster at {self.address} has what a job asks for ({asked})")

    def _submit(self, fn: Callable, args: tuple, resources: Mapping):
        return self._remote.options(max_retries=0, retry_exceptions=False, **resources).remote(fn, args)

    def map(self, fn: Callable, jobs: Mapping, resources: Callable | None = None) -> Iterator[tuple]:
        """(key, fn(*jobs[key]), Placement) as jobs finish anywhere on the cluster; `resources(key)` -> Ray resource
        requests (num_cpus, num_gpus, memory in bytes) for that job, default one CPU."""
        ray = self._ray
        wanted = {key: dict(resources(key) if resources else DEFAULT_RESOURCES) for key in jobs}
        for request in {tuple(sorted(r.items())) for r in wanted.values()}:
            self._check(dict(request))
        attempts = dict.fromkeys(jobs, 1)
        pending = {self._submit(fn, args, wanted[key]): key for key, args in jobs.items()}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
                if not ready:
                    for request in {tuple(sorted(wanted[k].items())) for k in pending.values()}:
                        self._check(dict(request))  # the nodes able to run them may all have died
                    continue
                ref = ready[0]
                key = pending.pop(ref)
                try:
                    value, node, host, seconds = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None  # a bug in the job itself: not the cluster's doing
                except ray.exceptions.RayError as exc:  # the job was lost with its worker or node
                    self._lost(key, exc, attempts[key], wanted[key])
                    attempts[key] += 1
                    pending[self._submit(fn, jobs[key], wanted[key])] = key
                    continue
                yield key, value, Placement(node, host, seconds, attempts[key])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def _lost(self, key, exc: Exception, attempt: int, resources: Mapping) -> None:
        """A job lost with its node: an error after MAX_ATTEMPTS, else counted and logged (the caller resubmits)."""
        if attempt >= MAX_ATTEMPTS:
            raise EvalError(f"a job was lost {attempt} times on the Ray cluster at {self.address} "
                            f"(last: {type(exc).__name__}); see `ray status`") from None
        self.retried += 1
        if self.on_retry is not None:
            self.on_retry(key, type(exc).__name__)
        self._check(resources)

    async def call(self, fn: Callable, args: tuple, resources: Mapping | None = None, key=None):
        """(fn(*args), Placement) from one job on the cluster, awaited (the sample stage runs in asyncio)."""
        ray = self._ray
        resources = dict(resources or DEFAULT_RESOURCES)
        attempt = 1
        while True:
            try:
                value, node, host, seconds = await self._submit(fn, args, resources)
            except ray.exceptions.RayTaskError as exc:
                raise exc.as_instanceof_cause() from None
            except ray.exceptions.RayError as exc:
                self._lost(key if key is not None else getattr(fn, "__name__", "a job"), exc, attempt, resources)
                attempt += 1
                continue
            return value, Placement(node, host, seconds, attempt)

    def close(self) -> None:
        if self._ray.is_initialized():
            self._ray.shutdown()
