"""Adaptive concurrency for a throttled service (Exchange Online's admin API).

Exchange does not publish its limits and they change with tenant load, so the limiter learns them:
additive increase, multiplicative decrease (AIMD, as TCP does). Each success raises the allowed
concurrency by about one per "round" of requests; a 429/503 halves it, once per round (the other
requests already in flight when the limit dropped were sent under the old limit and do not count
again), and a ``Retry-After`` stops new requests until it has passed. After a throttling answer the
limit holds for ``cooldown`` seconds after the pause ends before probing upwards
again: a refused request costs a whole Retry-After, far more than one request slot earns, so probing
the ceiling every few requests would spend more time waiting than it gains.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Ticket:
    """A granted slot; remembers the limit's epoch when the request started."""

    epoch: int


class AdaptiveLimiter:
    def __init__(
        self,
        max_concurrency: int,
        *,
        min_concurrency: int = 1,
        initial: float | None = None,
        decrease_factor: float = 0.5,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
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
        self._changed = asyncio.Condition()
        self.throttled = 0  # how many throttling answers were seen (for logs and benchmarks)

    @property
    def limit(self) -> int:
        """Requests allowed in flight right now."""
        return max(self.min_concurrency, min(self.max_concurrency, int(self._limit)))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    async def acquire(self) -> Ticket:
        async with self._changed:
            while True:
                pause = self.paused_for()
                if pause > 0:
                    # Wake when the pause ends, or earlier if something changes.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), timeout=pause)
                    continue
                if self._in_flight < self.limit:
                    self._in_flight += 1
                    return Ticket(self._epoch)
                await self._changed.wait()

    async def release(
        self, ticket: Ticket, *, throttled: bool = False, retry_after: float | None = None
    ) -> None:
        """Give the slot back and tell the limiter how the request went."""
        async with self._changed:
            self._in_flight -= 1
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
                # +1/limit per success: about +1 once every request of a round has succeeded.
                self._limit = min(float(self.max_concurrency), self._limit + 1.0 / max(1.0, self._limit))
            self._changed.notify_all()
