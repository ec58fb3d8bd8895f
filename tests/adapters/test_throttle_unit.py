"""The adaptive limiter: Exchange's limits are unknown, so concurrency must follow what the server takes."""

from __future__ import annotations

import asyncio

import pytest

from onboarding.adapters._throttle import AdaptiveLimiter, shared_limiter


async def test_throttling_halves_once_per_round_and_success_ramps_back_up_after_a_cooldown() -> None:
    now = [0.0]
    limiter = AdaptiveLimiter(16, cooldown=1.0, clock=lambda: now[0])
    tickets = [await limiter.acquire() for _ in range(8)]
    assert limiter.in_flight == 8
    # Eight requests of the same round come back 429: the limit halves once, not eight times.
    for ticket in tickets:
        await limiter.release(ticket, throttled=True)
    assert limiter.limit == 8
    assert limiter.throttled == 8
    # A later round throttled again halves again.
    await limiter.release(await limiter.acquire(), throttled=True)
    assert limiter.limit == 4
    # Right after throttling the limit holds: probing now would likely cost another Retry-After.
    for _ in range(20):
        await limiter.release(await limiter.acquire())
    assert limiter.limit == 4
    # After the cool-down, additive increase: about one more slot per round of successes.
    now[0] += 1.0
    for _ in range(4 + 5 + 6):
        await limiter.release(await limiter.acquire())
    assert 6 <= limiter.limit <= 7


async def test_the_cooldown_starts_when_the_retry_after_pause_ends() -> None:
    now = [0.0]
    limiter = AdaptiveLimiter(8, cooldown=1.0, clock=lambda: now[0])
    await limiter.release(await limiter.acquire(), throttled=True, retry_after=30)
    now[0] += 30  # the pause is over; the limit still holds
    for _ in range(10):
        await limiter.release(await limiter.acquire())
    assert limiter.limit == 4
    now[0] += 1
    for _ in range(10):
        await limiter.release(await limiter.acquire())
    assert limiter.limit > 4


async def test_never_below_the_floor_nor_above_the_ceiling() -> None:
    now = [0.0]
    limiter = AdaptiveLimiter(4, min_concurrency=2, clock=lambda: now[0])
    for _ in range(10):
        await limiter.release(await limiter.acquire(), throttled=True)
    assert limiter.limit == 2
    now[0] += 60
    for _ in range(200):
        await limiter.release(await limiter.acquire())
    assert limiter.limit == 4


async def test_retry_after_pauses_every_new_request() -> None:
    now = [100.0]
    limiter = AdaptiveLimiter(4, clock=lambda: now[0])
    held = await limiter.acquire()
    await limiter.release(await limiter.acquire(), throttled=True, retry_after=5)
    assert limiter.paused_for() == 5
    waiting = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # a free slot, but the server asked for 5 s of quiet
    now[0] += 5
    await limiter.release(held)  # any change wakes the waiters; the pause is over
    await limiter.release(await asyncio.wait_for(waiting, 5))
    assert limiter.paused_for() == 0


async def test_concurrency_converges_to_what_the_server_accepts() -> None:
    """A server that takes at most 3 requests at once: 200 requests through a limiter starting at 20
    end with the limiter near 3, and the overwhelming majority of requests were accepted."""
    capacity, in_server, accepted, refused = 3, 0, 0, 0
    limiter = AdaptiveLimiter(20)

    async def request() -> None:
        nonlocal in_server, accepted, refused
        while True:
            ticket = await limiter.acquire()
            if in_server >= capacity:
                refused += 1
                await limiter.release(ticket, throttled=True)
                await asyncio.sleep(0)
                continue
            in_server += 1
            await asyncio.sleep(0.001)
            in_server -= 1
            accepted += 1
            await limiter.release(ticket)
            return

    await asyncio.gather(*(request() for _ in range(200)))
    assert accepted == 200
    assert 1 <= limiter.limit <= 6
    assert refused < 60
    assert limiter.in_flight == 0


async def test_a_paced_limiter_learns_the_rate_it_was_throttled_at_and_spaces_starts() -> None:
    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = AdaptiveLimiter(10, pace=True, clock=lambda: now[0], sleep=sleep)
    for _ in range(20):  # 20 starts within one second, then the service says "too many"
        await limiter.release(await limiter.acquire())
        now[0] += 0.04
    await limiter.release(await limiter.acquire(), throttled=True)
    assert limiter.rate is not None and 17 <= limiter.rate <= 20  # 95% of what it had just sent
    now[0] += 5  # past the pause and the cooldown
    started = now[0]
    for _ in range(10):
        await limiter.release(await limiter.acquire())
    assert now[0] - started >= 9 / limiter.rate * 0.99  # starts spaced 1/rate apart
    assert all(w > 0 for w in waits)


async def test_the_shared_limiter_is_one_per_service_and_tenant_on_a_loop() -> None:
    first = shared_limiter("https://exchange.example.test", "tenant-a", 10)
    assert shared_limiter("https://exchange.example.test", "tenant-a", 10) is first
    assert shared_limiter("https://exchange.example.test", "tenant-b", 10) is not first
    assert first.pace


async def test_a_batch_counts_each_of_its_calls_against_the_limit() -> None:
    limiter = AdaptiveLimiter(10)
    batch = await limiter.acquire(10)
    assert limiter.in_flight == 10
    waiting = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # ten calls are out in one request: no room for an eleventh
    await limiter.release(batch)
    await limiter.release(await asyncio.wait_for(waiting, 5))
    assert limiter.in_flight == 0


async def test_a_learned_rate_spaces_a_batch_by_its_calls() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = AdaptiveLimiter(10, pace=True, clock=lambda: now[0], sleep=sleep)
    limiter.rate = 100.0  # calls per second
    await limiter.release(await limiter.acquire(10))
    await limiter.release(await limiter.acquire(10))
    assert slept == [pytest.approx(0.1)]  # ten calls at 100/s: the next request 0.1 s later


async def test_a_paced_limiter_rises_back_towards_the_rate_it_was_throttled_at_but_not_past_it() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = AdaptiveLimiter(10, pace=True, clock=lambda: now[0], sleep=sleep)
    for _ in range(100):  # 100 starts within one second, then the service says "too many"
        await limiter.release(await limiter.acquire())
        now[0] += 0.0099
    await limiter.release(await limiter.acquire(), throttled=True)
    assert limiter.rate is not None and 90 <= limiter.rate <= 96
    now[0] += 5
    for _ in range(6_000):  # a minute at the learned pace, never throttled
        await limiter.release(await limiter.acquire())
    # It came back up to 98% of the ceiling (plus the ceiling's slow creep), not into the next 429.
    assert 0.97 * 101 <= limiter.rate <= 0.98 * 101 * 1.02


async def test_the_caller_that_started_first_takes_its_turn_before_later_ones() -> None:
    limiter = AdaptiveLimiter(1)
    holding = await limiter.acquire()
    order: list[str] = []

    async def caller(name: str, priority: float) -> None:
        await limiter.release(await limiter.acquire(1, priority))
        order.append(name)

    later = asyncio.create_task(caller("batch started second", 2.0))
    await asyncio.sleep(0.01)  # it asks first...
    earlier = asyncio.create_task(caller("batch started first", 1.0))
    await asyncio.sleep(0.01)
    await limiter.release(holding)
    await asyncio.wait_for(asyncio.gather(later, earlier), 5)
    assert order == ["batch started first", "batch started second"]  # ...but the older activity goes first
    assert limiter.in_flight == 0


async def test_the_ceiling_is_read_at_the_refused_requests_own_start_not_at_its_answer() -> None:
    now = [0.0]
    limiter = AdaptiveLimiter(10, pace=True, clock=lambda: now[0])
    # 20 batches of 5 within one second, all accepted: the service took 100 calls.
    for _ in range(20):
        ticket = await limiter.acquire(5)
        now[0] += 0.049
        await limiter.release(ticket)
    refused = await limiter.acquire(5)  # the 21st batch, refused
    now[0] += 0.05  # its 429 comes back a round trip later, when the first batch has left the second
    await limiter.release(refused, throttled=True)
    # Counted at the answer, 95 calls; in the second before the refused batch started, 100.
    assert limiter.ceiling == 100
    assert limiter.rate == pytest.approx(95)
