"""The tenant's verified domains are asked of Graph rarely, and never again before a Retry-After ends."""

from __future__ import annotations

import asyncio

import pytest

from onboarding.admission import DomainCache
from onboarding.errors import TransientError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_throttled_lookup_is_not_sent_again_by_any_caller_before_retry_after() -> None:
    clock = Clock()
    cache = DomainCache(ttl=300, clock=clock)
    calls: list[float] = []
    answers: list[frozenset[str] | TransientError] = [
        TransientError("Graph throttled", retry_after=2.0),
        frozenset({"contoso.com"}),
    ]

    async def load() -> frozenset[str]:
        calls.append(clock.now)
        answer = answers.pop(0)
        if isinstance(answer, TransientError):
            raise answer
        return answer

    async def scenario() -> frozenset[str]:
        with pytest.raises(TransientError):
            await cache.get("tenant", load)
        clock.now += 1.0  # another request, within Retry-After: answered without asking Graph
        with pytest.raises(TransientError):
            await cache.get("tenant", load)
        clock.now += 1.5
        found = await cache.get("tenant", load)
        clock.now += 10  # cached: not asked again
        assert await cache.get("tenant", load) == found
        return found

    assert asyncio.run(scenario()) == frozenset({"contoso.com"})
    assert calls == [100.0, 102.5]


def test_callers_arriving_while_a_lookup_is_in_flight_share_its_answer_and_its_refusal() -> None:
    # Every API request asks for the domains. One arriving while Graph's 503 is still being handled
    # (the adapter reads the answer over several awaits) must not send a lookup of its own: it would
    # reach Graph before the Retry-After the first one is about to honour (trust fault run, seed
    # 556704176: "503 Retry-After 1 then GET /v1.0/domains 0.078s later").
    cache = DomainCache(ttl=300, clock=Clock())
    calls = 0

    async def load() -> frozenset[str]:
        nonlocal calls
        calls += 1
        for _ in range(3):
            await asyncio.sleep(0)
        raise TransientError("Graph unavailable", retry_after=1.0)

    async def scenario() -> list[BaseException | frozenset[str]]:
        first = asyncio.ensure_future(cache.get("tenant", load))
        await asyncio.sleep(0)  # the first lookup is in flight ...
        others = [asyncio.ensure_future(cache.get("tenant", load)) for _ in range(3)]
        return await asyncio.gather(first, *others, return_exceptions=True)

    answers = asyncio.run(scenario())
    assert calls == 1
    assert all(isinstance(a, TransientError) for a in answers)
