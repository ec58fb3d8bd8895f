"""Adaptive concurrency for a throttled service (Exchange Online's admin API).

Exchange does not publish its limits and they change with tenant load, so the limiter learns them:
additive increase, multiplicative decrease (AIMD, as TCP does). Each success raises the allowed
concurrency by about one per "round" of requests; a 429/503 halves it, once per round (the other
requests already in flight when the limit dropped were sent under the old limit and do not count
again), and a ``Retry-After`` stops new requests until it has passed. After a throttling answer the
limit holds for ``cooldown`` seconds after the pause ends before probing upwards
again: a refused request costs a whole Retry-After, far more than one request slot earns, so probing
the ceiling every few requests would spend more time waiting than it gains.

Concurrency alone cannot keep under a request-rate limit (short round trips at full concurrency
exceed it), so the limiter also learns a rate: on a throttling answer it sets the rate to 95% of the
requests started in the last second, then spaces request starts ``1/rate`` apart and raises the rate
by 0.2% of itself per second without throttling. It settles just under the service's rate and is
throttled rarely instead of every second (measured in bench/: 5 throttled calls instead of 1,093 at
10,000 grants). The rise stops at 98% of the highest rate the service has throttled at (its
ceiling), which itself creeps up by 0.02% per second: left to rise, the rate met the ceiling again
every half minute and each time lost a whole ``Retry-After``, which kept a long run at about 90% of
the allowed rate; a service whose limit went up is still found, slowly, and one whose limit went
down throttles, which lowers the rate as before.

A request may carry several calls (Exchange's ``$batch``): it acquires a ``weight``, one unit per call,
so the concurrency and the rate stay counted in calls whatever their packaging.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

BACK_OFF = 0.95  # rate after a throttling answer, as a share of the last second's request starts
GROWTH_PER_S = 0.002  # share of the rate gained per second without throttling
CEILING_SHARE = 0.98  # the rate rises to this share of the highest rate throttled at, no further
CEILING_GROWTH_PER_S = 0.0002  # how fast that ceiling creeps up, to find a limit that went up


@dataclass(frozen=True)
class Ticket:
    """A granted slot; remembers the limit's epoch when the request started and how many calls it
    carries."""

    epoch: int
    weight: int = 1


class AdaptiveLimiter:
    def __init__(
        self,
        max_concurrency: int,
        *,
        min_concurrency: int = 1,
        initial: float | None = None,
        decrease_factor: float = 0.5,
        cooldown: float = 1.0,
        pace: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_concurrency < 1 or not 1 <= min_concurrency <= max_concurrency:
            raise ValueError("need 1 <= min_concurrency <= max_concurrency")
        self.max_concurrency = max_concurrency
        self.min_concurrency = min_concurrency
        self.decrease_factor = decrease_factor
        self.cooldown = cooldown
        self._hold_until = 0.0
        self._limit = float(initial if initial is not None else max_concurrency)
        self._in_flight = 0
        self._epoch = 0
        self._paused_until = 0.0
        self._clock = clock
        self._sleep = sleep
        self.pace = pace  # also learn and keep to a request rate (see the module's doc)
        self._changed = asyncio.Condition()
        self.throttled = 0  # how many throttling answers were seen (for logs and benchmarks)
        self.rate: float | None = None  # requests/s; None until the service first throttles
        self.ceiling: float | None = None  # the highest request rate the service has throttled at
        self._next_start = 0.0
        self._starts: deque[float] = deque()
        self._last_growth = clock()

    @property
    def limit(self) -> int:
        """Requests allowed in flight right now."""
        return max(self.min_concurrency, min(self.max_concurrency, int(self._limit)))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    async def acquire(self, weight: int = 1) -> Ticket:
        """Wait for room for ``weight`` calls. A request heavier than the limit starts alone, so a
        batch formed before the limit dropped still goes out (callers size batches to ``limit``)."""
        if weight < 1:
            raise ValueError("weight must be at least 1")
        async with self._changed:
            while True:
                pause = self.paused_for()
                if pause > 0:
                    # Wake when the pause ends, or earlier if something changes.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), timeout=pause)
                    continue
                if self._in_flight + weight <= self.limit or self._in_flight == 0:
                    self._in_flight += weight
                    ticket = Ticket(self._epoch, weight)
                    break
                await self._changed.wait()
        await self._pace(weight)
        return ticket

    async def room(self, weight: int = 1) -> None:
        """Wait until ``acquire(weight)`` would not wait for a slot (without taking one): a caller that
        packs several calls into one request packs them when they can go."""
        async with self._changed:
            while True:
                pause = self.paused_for()
                if pause > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), timeout=pause)
                    continue
                if self._in_flight + weight <= self.limit or self._in_flight == 0:
                    return
                await self._changed.wait()

    async def _pace(self, weight: int = 1) -> None:
        """Space request starts ``weight/rate`` apart once a rate has been learned."""
        now = self._clock()
        if self.rate is not None:
            start = max(now, self._next_start)
            self._next_start = start + weight / self.rate
            if start > now:
                await self._sleep(start - now)
                now = self._clock()
        self._starts.extend([now] * weight)
        while self._starts and self._starts[0] < now - 1.0:
            self._starts.popleft()

    def _learn_rate(self, throttled: bool, ticket: Ticket) -> None:
        if not self.pace:
            return
        now = self._clock()
        elapsed = max(0.0, now - self._last_growth)
        if throttled and ticket.epoch == self._epoch:
            # What the service took in the last second: the starts less the refused request's own
            # calls (a $batch of 5 refused whole had counted 5 and, left in, set a rate above the limit).
            started = sum(1 for t in self._starts if t >= now - 1.0)
            recent = max(1, started - ticket.weight)
            learned = max(1.0, BACK_OFF * recent)
            self.rate = learned if self.rate is None else min(self.rate * BACK_OFF, learned)
            self.ceiling = max(self.ceiling or 0.0, float(recent))
            self._next_start = now
        elif not throttled and self.rate is not None:
            grown = self.rate + self.rate * GROWTH_PER_S * elapsed
            if self.ceiling is not None:
                self.ceiling += self.ceiling * CEILING_GROWTH_PER_S * elapsed
                grown = min(grown, max(self.rate, CEILING_SHARE * self.ceiling))
            self.rate = grown
        self._last_growth = now

    async def release(
        self, ticket: Ticket, *, throttled: bool = False, retry_after: float | None = None
    ) -> None:
        """Give the slot back and tell the limiter how the request went."""
        async with self._changed:
            self._in_flight -= ticket.weight
            self._learn_rate(throttled, ticket)
            if throttled:
                self.throttled += 1
                if ticket.epoch == self._epoch:
                    self._limit = max(float(self.min_concurrency), self._limit * self.decrease_factor)
                    self._epoch += 1
                now = self._clock()
                if retry_after:
                    self._paused_until = max(self._paused_until, now + retry_after)
                self._hold_until = max(self._hold_until, now + (retry_after or 0.0) + self.cooldown)
            elif self._clock() >= self._hold_until:
                # +1/limit per successful call: about +1 once every call of a round has succeeded.
                grown = self._limit + ticket.weight / max(1.0, self._limit)
                self._limit = min(float(self.max_concurrency), grown)
            self._changed.notify_all()


# One limiter per (service, tenant) per event loop: Exchange's limits are per app, so every activity
# running in this worker must share one budget; limiters of separate loops cannot share a Condition.
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str, int], AdaptiveLimiter]]
_SHARED = weakref.WeakKeyDictionary()


def shared_limiter(service: str, tenant: str, max_concurrency: int) -> AdaptiveLimiter:
    """The limiter of this worker's calls to ``service`` for ``tenant`` (a fresh one outside a loop)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return AdaptiveLimiter(max_concurrency, pace=True)
    limiters = _SHARED.setdefault(loop, {})
    key = (service, tenant, max_concurrency)
    if key not in limiters:
        limiters[key] = AdaptiveLimiter(max_concurrency, pace=True)
    return limiters[key]
