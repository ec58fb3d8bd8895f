"""In-process retries for idempotent calls: honour ``Retry-After``, else capped exponential backoff
with full jitter, then give up with the last ``TransientError`` so the orchestration retries durably.

Waits longer than ``max_wait`` are not slept here: an activity that sleeps minutes holds a worker
and may time out, while the orchestrator can wait on a durable timer for free.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from onboarding.errors import TransientError

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # calls in all, the first included
    base_delay: float = 0.5  # seconds; doubled per attempt
    max_delay: float = 20.0  # cap of one backoff wait
    max_wait: float = 60.0  # a Retry-After longer than this goes back to the orchestrator

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter (uniform in [0, min(cap, base * 2**attempt)]): clients that failed together
        do not come back together."""
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return (rng or random).uniform(0, ceiling)


DEFAULT_POLICY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent
    or unreadable (the caller then uses its own backoff)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
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


def retry_after_of(response: object) -> float | None:
    """The seconds a response's ``Retry-After`` header asks for (azure-core and httpx responses
    alike), if it has one."""
    headers = getattr(response, "headers", None)
    return parse_retry_after(headers.get("Retry-After")) if headers is not None else None


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy = DEFAULT_POLICY,
    *,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
) -> T:
    """Run ``call`` (an idempotent operation) until it succeeds, retrying only ``TransientError``."""
    for attempt in range(policy.attempts):
        try:
            return await call()
        except TransientError as exc:
            delay = retry_delay(exc, attempt, policy, rng)
            if delay is None:
                raise
            await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def retry_delay(
    exc: TransientError, attempt: int, policy: RetryPolicy = DEFAULT_POLICY, rng: random.Random | None = None
) -> float | None:
    """How long to wait before attempt ``attempt + 1`` (0-based) after ``exc``; None to give up."""
    if attempt + 1 >= policy.attempts:
        return None
    if exc.retry_after is not None:
        if exc.retry_after > policy.max_wait:
            return None
        # At least what the server asked, plus a little jitter so a crowd spreads out.
        return exc.retry_after + (rng or random).uniform(0, min(1.0, exc.retry_after * 0.1 + 0.05))
    return policy.backoff(attempt, rng)
