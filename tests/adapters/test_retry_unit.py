"""Retry policy and Retry-After parsing: what an idempotent call does when a service pushes back."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onboarding.adapters._retry import RetryPolicy, parse_retry_after, retrying
from onboarding.errors import NotFoundError, TransientError
from tests.adapters.conftest import RecordingSleep


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("-3") == 0.0
    for unreadable in (None, "", "soon", "12 parsecs"):
        assert parse_retry_after(unreadable) is None


@given(attempt=st.integers(0, 30), seed=st.integers())
def test_backoff_is_capped_and_never_negative(attempt: int, seed: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=20)
    delay = policy.backoff(attempt, random.Random(seed))
    assert 0 <= delay <= min(20, 0.5 * 2**attempt)


async def test_waits_at_least_what_retry_after_asks_then_succeeds() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientError("throttled", retry_after=2.5)
        return "done"

    sleep = RecordingSleep()
    assert await retrying(flaky, RetryPolicy(attempts=4), sleep=sleep) == "done"
    assert calls == 3
    assert len(sleep.waits) == 2
    assert all(2.5 <= w <= 3.5 for w in sleep.waits)


async def test_gives_up_after_the_attempts_with_the_last_transient_error() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise TransientError(f"down {calls}")

    sleep = RecordingSleep()
    with pytest.raises(TransientError, match="down 3"):
        await retrying(down, RetryPolicy(attempts=3, base_delay=1, max_delay=1.5), sleep=sleep)
    assert calls == 3
    assert len(sleep.waits) == 2
    assert all(0 <= w <= 1.5 for w in sleep.waits)


async def test_long_retry_after_goes_back_to_the_orchestrator_at_once() -> None:
    calls = 0

    async def throttled() -> None:
        nonlocal calls
        calls += 1
        raise TransientError("throttled", retry_after=600)

    sleep = RecordingSleep()
    with pytest.raises(TransientError) as caught:
        await retrying(throttled, RetryPolicy(attempts=5, max_wait=60), sleep=sleep)
    assert calls == 1 and sleep.waits == []
    assert caught.value.retry_after == 600


async def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    async def missing() -> None:
        nonlocal calls
        calls += 1
        raise NotFoundError("no such mailbox")

    with pytest.raises(NotFoundError):
        await retrying(missing, RetryPolicy(attempts=5), sleep=RecordingSleep())
    assert calls == 1
