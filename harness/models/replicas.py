"""Several servers for one model (vLLM data-parallel: one replica per GPU, or several `ray serve` / vLLM-on-Ray
endpoints): each request goes to the live replica with the fewest requests outstanding, and each replica has its
own concurrency limit (harness.models.retry.limiter_for, keyed by its URL).

A replica that refuses connections or times out is taken out of rotation; after `probe_after_s` (doubling, up to
`max_probe_after_s`, while it keeps failing) a cheap probe (`probe`, e.g. GET /models) decides whether it comes
back. Requests that were in flight on it are retried on the others by the caller. When every replica is out, the
one due back first is tried anyway, so a model with one replica behaves as before.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

PROBE_AFTER_S = 2.0
MAX_PROBE_AFTER_S = 60.0


@dataclass
class Replica:
    url: str
    clients: list = field(default_factory=list)  # what the backend talks to it through (its connection pools)
    outstanding: int = 0  # requests assigned and not yet answered (queued on its limiter included)
    down_until: float = 0.0  # monotonic time; 0: in rotation
    failures: int = 0  # in a row, since it was last healthy
    served: int = 0
    probing: asyncio.Task | None = field(default=None, repr=False)

    @property
    def live(self) -> bool:
        return self.down_until == 0.0


class ReplicaSet:
    def __init__(self, replicas: list[Replica], probe: Callable[[Replica], Awaitable[bool]] | None = None, *,
                 probe_after_s: float = PROBE_AFTER_S, max_probe_after_s: float = MAX_PROBE_AFTER_S):
        if not replicas:
            raise ValueError("a model needs at least one replica")
        self.replicas = replicas
        self._probe = probe
        self.probe_after_s = probe_after_s
        self.max_probe_after_s = max_probe_after_s

    def pick(self, avoid: Replica | None = None) -> Replica:
        """The live replica with the fewest outstanding requests (not `avoid`, the one that just failed, while
        another is live); with none live, the one due back soonest. Starts probes of those due."""
        now = time.monotonic()
        for r in self.replicas:
            if not r.live and r.down_until <= now and self._probe is not None and r.probing is None:
                r.probing = asyncio.get_running_loop().create_task(self._run_probe(r))
        live = [r for r in self.replicas if r.live and r is not avoid] or [r for r in self.replicas if r.live]
        if not live:
            return min(self.replicas, key=lambda r: r.down_until)
        return min(live, key=lambda r: r.outstanding)  # min keeps the first of equals: the list's order

    def any_live_besides(self, replica: Replica) -> bool:
        return any(r.live and r is not replica for r in self.replicas)

    def mark_down(self, replica: Replica) -> None:
        replica.failures += 1
        wait = min(self.max_probe_after_s, self.probe_after_s * 2 ** (replica.failures - 1))
        replica.down_until = time.monotonic() + wait

    def mark_up(self, replica: Replica) -> None:
        replica.down_until = 0.0
        replica.failures = 0

    async def _run_probe(self, replica: Replica) -> None:
        try:
            healthy = await self._probe(replica)
        except Exception:  # a probe that fails in any way means: not back yet
            healthy = False
        finally:
            replica.probing = None
        if healthy:
            self.mark_up(replica)
        else:
            self.mark_down(replica)

    async def aclose(self) -> None:
        for r in self.replicas:
            if r.probing is not None:
                r.probing.cancel()
