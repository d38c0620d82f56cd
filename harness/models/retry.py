"""Retry decisions and per-endpoint adaptive concurrency.

Three kinds of failure are treated differently: rate limits wait (honouring Retry-After) and shrink the endpoint's
concurrency; transient failures (5xx, timeouts, dropped connections) back off exponentially with jitter; permanent
failures (other 4xx, auth) are not retried at all.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone

RATE_LIMIT, TRANSIENT, PERMANENT = "rate_limit", "transient", "permanent"


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0  # a server asking for longer than this is treated as a failure now

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        if retry_after is not None:
            return max(0.0, retry_after)
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return backoff * (0.5 + random.random() / 2)


def classify_status(status: int) -> str:
    if status == 429:
        return RATE_LIMIT
    if status in (408, 409) or status >= 500:
        return TRANSIENT
    return PERMANENT


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class AdaptiveLimiter:
    """Concurrency limit for one endpoint: halves on a 429, grows by one after `grow_after` successes in a row."""

    def __init__(self, limit: int, minimum: int = 1, grow_after: int = 20):
        self.max_limit = max(1, int(limit))
        self.limit = self.max_limit
        self.minimum = max(1, minimum)
        self.grow_after = grow_after
        self.in_flight = 0
        self._streak = 0
        self._cond: asyncio.Condition | None = None
        self.rate_limited = 0  # 429s seen, for reports

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def __aenter__(self):
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        return self

    async def __aexit__(self, *exc):
        cond = self._condition()
        async with cond:
            self.in_flight -= 1
            cond.notify_all()

    def on_success(self) -> None:
        self._streak += 1
        if self._streak >= self.grow_after and self.limit < self.max_limit:
            self.limit += 1
            self._streak = 0
            if self._cond is not None:
                asyncio.get_running_loop().create_task(self._wake())

    def on_rate_limit(self) -> None:
        self.rate_limited += 1
        self._streak = 0
        self.limit = max(self.minimum, self.limit // 2)

    async def _wake(self):
        cond = self._condition()
        async with cond:
            cond.notify_all()


# Keyed by the event loop object (weakly), since asyncio primitives belong to the loop that first used them.
_LIMITERS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AdaptiveLimiter]]" = weakref.WeakKeyDictionary()


def limiter_for(endpoint: str, limit: int) -> AdaptiveLimiter:
    """One limiter per endpoint (and event loop), shared by every model object that talks to that endpoint."""
    per_loop = _LIMITERS.setdefault(asyncio.get_running_loop(), {})
    if endpoint not in per_loop:
        per_loop[endpoint] = AdaptiveLimiter(limit)
    return per_loop[endpoint]

