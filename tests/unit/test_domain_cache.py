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
