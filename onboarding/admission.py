"""What a request must pass before anything is created: the sender mailbox serves the tenant only.

- **Admin addresses** must be in the tenant's verified domains (Microsoft Graph ``GET /domains``,
  read once per ``DOMAIN_CACHE_SECONDS`` per instance) or, when ``ADMIN_EMAIL_DOMAINS`` is set, in
  that explicit allow-list instead. Anyone else's inbox is not the tenant's sender mailbox's to fill.
- **Rate limits** on new onboardings, per requester and for everyone, and on email recipients at send
  time, kept by pyrate-limiter (sliding-window log, in memory). The limits are per instance: a
  deployment scaled to N instances admits up to N times as many (docs/security.md says so).

A *requester* is whoever the caller authenticated as: the Entra caller's object id (``oid``) when the
API is called with an Entra token, else the function key, of which only a digest is kept (the key
itself never leaves this module).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from onboarding.errors import TransientError
from onboarding.validation import FieldError

DOMAIN_CACHE_SECONDS = 300.0


def requester_id(*, entra_object_id: str | None = None, function_key: str | None = None) -> str:
    """A stable, secret-free name of the caller: ``entra:<oid>`` or ``key:<digest>``, else ``anonymous``."""
    if entra_object_id:
        return f"entra:{entra_object_id.lower()}"
    if function_key:
        return "key:" + hashlib.sha256(function_key.encode()).hexdigest()[:16]
    return "anonymous"


def admin_domain_errors(admin_emails: Iterable[str], allowed: frozenset[str]) -> list[FieldError]:
    """An error per admin address outside ``allowed`` (lower-case domain names, matched exactly)."""
    errors = []
    for index, address in enumerate(admin_emails):
        domain = address.rpartition("@")[2].lower()
        if domain not in allowed:
            errors.append(
                FieldError(
                    f"/adminEmails/{index}",
                    f"{domain} is not one of this tenant's verified domains; consent and approval emails "
                    "go only to the tenant's own addresses",
                )
            )
    return errors


@dataclass
class DomainCache:
    """Each tenant's verified domains, asked of Graph at most once per ``ttl`` seconds."""

    ttl: float = DOMAIN_CACHE_SECONDS
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)
    # When Graph throttled or failed with Retry-After: no request before then, for any caller
    # (every API request asks for the domains, so each would otherwise resend at once).
    _not_before: dict[str, tuple[float, TransientError]] = field(default_factory=dict)

    # A lookup under way, per key: callers arriving meanwhile wait for it rather than send their own,
    # which could reach Graph before the Retry-After the first is about to read. Per event loop (a
    # future belongs to one); a caller on another loop loads on its own.
    _in_flight: dict[str, asyncio.Future[frozenset[str]]] = field(default_factory=dict)

    async def get(self, key: str, load: Callable[[], Awaitable[frozenset[str]]]) -> frozenset[str]:
        now = self.clock()
        found = self._entries.get(key)
        if found is not None and now - found[0] < self.ttl:
            return found[1]
        waiting = self._not_before.get(key)
        if waiting is not None and now < waiting[0]:
            raise waiting[1]
        loop = asyncio.get_running_loop()
        shared = self._in_flight.get(key)
        if shared is not None and shared.get_loop() is loop and not shared.done():
            return await asyncio.shield(shared)
        future: asyncio.Future[frozenset[str]] = loop.create_future()
        self._in_flight[key] = future
        try:
            domains = await self._load(key, now, load)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody shared it
            raise
        else:
            future.set_result(domains)
            return domains
        finally:
            if self._in_flight.get(key) is future:
                del self._in_flight[key]

    async def _load(
        self, key: str, now: float, load: Callable[[], Awaitable[frozenset[str]]]
    ) -> frozenset[str]:
        try:
            found = (now, await load())
        except TransientError as exc:
            if exc.retry_after:
                self._not_before[key] = (self.clock() + exc.retry_after, exc)
            raise
        self._entries[key] = found
        return found[1]


def _limiter(per_hour: int) -> Any:
    """A pyrate-limiter ``Limiter`` with one in-memory bucket per name (``Limiter(rate)`` alone would
    share one bucket among all names). The library's leaker drops expired entries, so a bucket per
    requester does not grow past an hour's worth of requests."""
    from pyrate_limiter import BucketFactory, Duration, InMemoryBucket, Limiter, Rate, RateItem

    rates = [Rate(per_hour, Duration.HOUR)]

    class PerName(BucketFactory):
        def __init__(self) -> None:
            self.buckets: dict[str, Any] = {}

        def wrap_item(self, name: str, weight: int = 1) -> RateItem:
            return RateItem(name, int(time.monotonic() * 1000), weight=weight)  # the buckets' clock

        def get(self, item: RateItem) -> Any:
            if item.name not in self.buckets:
                self.buckets[item.name] = self.create(InMemoryBucket, rates)
            return self.buckets[item.name]

    return Limiter(PerName())


class Limits:
    """Hourly budgets: new onboardings per requester and in all, and email recipients."""

    def __init__(self, *, per_requester: int, overall: int, emails: int) -> None:
        self.settings = (per_requester, overall, emails)
        self._per_requester = _limiter(per_requester)
        self._overall = _limiter(overall)
        self._emails = _limiter(emails)

    @staticmethod
    def _take(limiter: Any, name: str, weight: int = 1) -> bool:
        return bool(limiter.try_acquire(name, weight=weight, blocking=False))

    def admit_onboarding(self, requester: str) -> str | None:
        """None if ``requester`` may start one more onboarding now, else which limit is spent."""
        if not self._take(self._per_requester, requester):
            return f"this requester may start {self.settings[0]} onboardings per hour"
        if not self._take(self._overall, "all"):
            return f"this deployment starts at most {self.settings[1]} onboardings per hour"
        return None

    def admit_email(self, recipients: int) -> bool:
        """Whether the sender mailbox may address ``recipients`` more people now."""
        return self._take(self._emails, "sender", weight=max(1, recipients))


_limits: Limits | None = None
_domains = DomainCache()


def limits_for(per_requester: int, overall: int, emails: int) -> Limits:
    """The process's limits (one set per instance), rebuilt only if the settings change."""
    global _limits
    if _limits is None or _limits.settings != (per_requester, overall, emails):
        _limits = Limits(per_requester=per_requester, overall=overall, emails=emails)
    return _limits


def domain_cache() -> DomainCache:
    return _domains
