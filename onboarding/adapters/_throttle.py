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
by 1% of itself per second without throttling (0.2% left a run at 80-90% of the limit for the 20 s
after a late throttling answer; the ceiling below is what keeps it from the limit). It settles just
under the service's rate and is throttled rarely instead of every second (measured in bench/: 5
throttled calls instead of 1,093 at 10,000 grants). The rise stops at 98% of the highest rate the service has throttled at (its
ceiling), which itself creeps up by 0.02% per second: left to rise, the rate met the ceiling again
every half minute and each time lost a whole ``Retry-After``, which kept a long run at about 90% of
the allowed rate; a service whose limit went up is still found, slowly, and one whose limit went
down throttles, which lowers the rate as before.

The ceiling is read as the service would have counted: when a request is refused, the calls started
in the second before *its own* start (not before its answer, which comes a round trip later, when
other requests have started and early ones have left the window), and it is never below the busiest
second the service accepted. A refused request says the limit is under that second's calls plus its
own; an accepted one that it is at least the calls of the second ending at its start.

A request may carry several calls (Exchange's ``$batch``): it acquires a ``weight``, one unit per call,
so the concurrency and the rate stay counted in calls whatever their packaging.

Callers take their turn by ``priority`` (lowest first; by default the time they first asked): a worker
granting many batches finishes the batch it started first before the next, instead of every batch
advancing a little at a time and all finishing together, so each batch's verification starts as soon
as its own grants are done and the logins come steadily rather than all at once (bench/findings.md).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

BACK_OFF = 0.95  # rate after a throttling answer, as a share of the last second's request starts
GROWTH_PER_S = 0.01  # share of the rate gained per second without throttling
CEILING_SHARE = 0.98  # the rate rises to this share of the highest rate throttled at, no further
CEILING_GROWTH_PER_S = 0.0002  # how fast that ceiling creeps up, to find a limit that went up


@dataclass(frozen=True)
class Ticket:
    """A granted slot; remembers the limit's epoch when the request started, how many calls it
    carries, when it started and how many calls (its own included) started in the second ending then."""

    epoch: int
    weight: int = 1
    started: float = 0.0
    window: int = 0


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
        self._starts: deque[float] = deque()  # every call's start in the last two seconds
        self._last_growth = clock()
        self.accepted_peak = 0  # the most calls started in one second that the service all took
        self._in_line: list[float] = []  # the priorities of the callers waiting for a turn, sorted

    @property
    def limit(self) -> int:
        """Requests allowed in flight right now."""
        return max(self.min_concurrency, min(self.max_concurrency, int(self._limit)))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    async def acquire(self, weight: int = 1, priority: float | None = None) -> Ticket:
        """Wait for room for ``weight`` calls and for no caller of a lower ``priority`` to be waiting.
        A request heavier than the limit starts alone, so a batch formed before the limit dropped still
        goes out (callers size batches to ``limit``)."""
        if weight < 1:
            raise ValueError("weight must be at least 1")
        async with self._changed:
            await self._turn(weight, priority)
            self._in_flight += weight
            epoch = self._epoch
        started, window = await self._pace(weight)
        return Ticket(epoch, weight, started, window)

    async def room(self, weight: int = 1, priority: float | None = None) -> None:
        """Wait until ``acquire(weight, priority)`` would not wait (without taking a slot): a caller
        that packs several calls into one request packs them when they can go."""
        async with self._changed:
            await self._turn(weight, priority)

    async def _turn(self, weight: int, priority: float | None) -> None:
        """With the condition held: until no pause, room for ``weight`` calls, and this caller first
        in line (lowest priority; equal ones go as they wake)."""
        mine = self._clock() if priority is None else priority
        bisect.insort(self._in_line, mine)
        try:
            while True:
                pause = self.paused_for()
                if pause > 0:
                    # Wake when the pause ends, or earlier if something changes.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), timeout=pause)
                    continue
                fits = self._in_flight + weight <= self.limit or self._in_flight == 0
                if fits and mine <= self._in_line[0]:
                    return
                await self._changed.wait()
        finally:
            del self._in_line[bisect.bisect_left(self._in_line, mine)]
            if self._in_line:
                self._changed.notify_all()  # the next in line may go now

    async def _pace(self, weight: int = 1) -> tuple[float, int]:
        """Space request starts ``weight/rate`` apart once a rate has been learned. Answers when the
        request started and how many calls (its own included) started in the second ending then."""
        now = self._clock()
        if self.rate is not None:
            start = max(now, self._next_start)
            self._next_start = start + weight / self.rate
            if start > now:
                await self._sleep(start - now)
                now = self._clock()
        self._starts.extend([now] * weight)
        while self._starts and self._starts[0] < now - 2.0:  # two seconds: see _started_before
            self._starts.popleft()
        return now, self._started_before(now)

    def _started_before(self, moment: float) -> int:
        """Calls started in the second ending at ``moment``, those starting at it included."""
        return sum(1 for t in self._starts if moment - 1.0 < t <= moment)

    def _learn_rate(self, throttled: bool, ticket: Ticket) -> None:
        if not self.pace:
            return
        now = self._clock()
        elapsed = max(0.0, now - self._last_growth)
        if not throttled:
            self.accepted_peak = max(self.accepted_peak, ticket.window)
        if throttled and ticket.epoch == self._epoch:
            # What the service took in the second before the refused request: the starts up to its
            # own, less its own calls (a $batch of 5 refused whole had counted 5 and, left in, set a
            # rate above the limit).
            recent = max(1, self._started_before(ticket.started) - ticket.weight)
            learned = max(1.0, BACK_OFF * recent)
            self.rate = learned if self.rate is None else min(self.rate * BACK_OFF, learned)
            # The limit is under recent + weight and at least what a busiest accepted second held.
            took = min(self.accepted_peak, recent + ticket.weight - 1)
            self.ceiling = max(self.ceiling or 0.0, float(recent), float(took))
            self.accepted_peak = 0  # what the service takes from now on is learned afresh
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
