"""Rate limiting and backoff for remote extractors.

The pipeline calls `extract` from a thread pool, and several jobs' kernels may share a
process, so the limiter is thread-safe and shared by key (see `shared_limiter`)."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class RateLimiter:
    """At most `max_calls` acquisitions in any `period` seconds (a sliding window log).

    A window rather than even spacing: a 10-item batch goes out at once (one round trip, not
    ten), while a minute's total never exceeds the quota, which Gemini counts per minute."""

    def __init__(
        self,
        max_calls: int,
        period: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_calls < 1 or period <= 0:
            raise ValueError("RateLimiter needs max_calls >= 1 and period > 0")
        self.max_calls = max_calls
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a call may start; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._starts and now - self._starts[0] >= self.period:
                    self._starts.popleft()
                if len(self._starts) < self.max_calls:
                    self._starts.append(now)
                    return waited
                delay = self._starts[0] + self.period - now
            # Sleep outside the lock so other threads can see the window too; re-check after,
            # since another waiter may have taken the slot that freed up.
            self._sleep(delay)
            waited += delay


_SHARED: dict[tuple[object, ...], RateLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(key: tuple[object, ...], max_calls: int, period: float = 60.0) -> RateLimiter:
    """The process-wide limiter for `key` (e.g. endpoint and model): every extractor built
    for the same quota shares one window, whichever job or thread built it."""
    full_key = (*key, max_calls, period)
    with _SHARED_LOCK:
        limiter = _SHARED.get(full_key)
        if limiter is None:
            limiter = _SHARED[full_key] = RateLimiter(max_calls, period)
        return limiter


def backoff_delay(
    attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Delay before retry number `attempt` (0-based): exponential, capped, with "equal jitter"
    (half fixed, half random) so that items failing together do not retry in lockstep."""
    ceiling = min(cap, base * (2**attempt))
    return ceiling / 2 + rng() * ceiling / 2


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date), or None."""
    if value is None:
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
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def parse_duration(value: object) -> float | None:
    """Seconds from a protobuf Duration in JSON form ("37s", "1.5s"), as in google.rpc.RetryInfo."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return max(0.0, float(value[:-1]))
    except ValueError:
        return None
