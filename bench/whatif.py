"""What a change to the Exchange limiter would give, measured by swapping it in for one run.

The product gives every ``ExchangeAdmin`` - so every activity - its own ``AdaptiveLimiter``, which
adapts concurrency only. Against Exchange's per-app limits that loses twice: concurrent batch
activities together exceed the app's concurrency limit, and a request-rate limit answered with
Retry-After pauses everything for a second each time the concurrency creeps back up.

The proposal measured here (``python -m bench --only grants --what-if``):
1. one limiter per Exchange tenant per worker process, shared by every activity on its event loop;
2. it also paces request starts: on a throttling answer it sets its rate to 95% of the requests it
   started in the last second, then raises it by 0.2% of itself per second of successes, so it settles
   just under the service's rate and is throttled rarely instead of every second.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from onboarding.adapters._throttle import AdaptiveLimiter, Ticket

BACK_OFF = 0.95  # rate after a throttling answer, as a share of the last second's starts
GROWTH_PER_S = 0.002  # additive increase: share of the rate gained per second without throttling


class PacedLimiter(AdaptiveLimiter):
    """``AdaptiveLimiter`` plus a learned request rate: starts are spaced ``1/rate`` apart."""

    def __init__(self, max_concurrency: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(max_concurrency, clock=clock)
        self.rate: float | None = None  # None until the service first throttles
        self._next_start = 0.0
        self._starts: deque[float] = deque()
        self._last_growth = clock()

    async def acquire(self) -> Ticket:
        ticket = await super().acquire()
        now = self._clock()
        if self.rate is not None:
            start = max(now, self._next_start)
            self._next_start = start + 1.0 / self.rate
            if start > now:
                await asyncio.sleep(start - now)
                now = self._clock()
        self._starts.append(now)
        while self._starts and self._starts[0] < now - 1.0:
            self._starts.popleft()
        return ticket

    async def release(
        self, ticket: Ticket, *, throttled: bool = False, retry_after: float | None = None
    ) -> None:
        now = self._clock()
        if throttled and ticket.epoch == self._epoch:
            recent = sum(1 for t in self._starts if t >= now - 1.0)
            learned = max(1.0, BACK_OFF * recent)
            self.rate = learned if self.rate is None else min(self.rate * BACK_OFF, learned)
            self._next_start = now
        elif not throttled and self.rate is not None:
            self.rate += self.rate * GROWTH_PER_S * max(0.0, now - self._last_growth)
        self._last_growth = now
        await super().release(ticket, throttled=throttled, retry_after=retry_after)


def product_has_shared_limiter() -> bool:
    """True once the product builds its Exchange limiter per worker itself (then nothing is swapped)."""
    from onboarding.adapters import exchange

    return not hasattr(exchange, "AdaptiveLimiter")


@contextmanager
def shared_paced_limiter() -> Iterator[None]:
    """Every ExchangeAdmin built meanwhile gets the one limiter of its event loop and concurrency."""
    from onboarding.adapters import exchange

    original = getattr(exchange, "AdaptiveLimiter", None)
    if original is None:  # the product already shares one limiter per worker: measure it as it is
        yield
        return
    shared: dict[tuple[int, int], PacedLimiter] = {}

    def limiter(max_concurrency: int, **_: Any) -> AdaptiveLimiter:
        key = (id(asyncio.get_running_loop()), max_concurrency)
        if key not in shared:
            shared[key] = PacedLimiter(max_concurrency)
        return shared[key]

    setattr(exchange, "AdaptiveLimiter", limiter)  # noqa: B010 - the name may not exist for mypy
    try:
        yield
    finally:
        setattr(exchange, "AdaptiveLimiter", original)  # noqa: B010
