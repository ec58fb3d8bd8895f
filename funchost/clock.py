"""Clocks: the host reads time only through one of these, so tests can move time by hand."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever time jumps (never for a real clock)."""
        ...


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def subscribe(self, callback: Callable[[], None]) -> None:
        return None


class OffsetClock(RealClock):
    """Real time shifted by a fixed offset, for a host process that is restarted later in the
    day: a test that SIGKILLs the host can start it again hours ahead, so a durable timer set for
    an hour (a rotation's overlap window) is due at once. Set by ``FUNCHOST_CLOCK_OFFSET_SECONDS``."""

    def __init__(self, offset: timedelta) -> None:
        if offset < timedelta(0):
            raise ValueError("time never runs backwards")
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class ManualClock:
    """A clock that only moves when told to: a 5-day deadline is tested in milliseconds."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2030, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("time never runs backwards")
        with self._lock:
            self._now += delta
            now = self._now
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
        return now

    def subscribe(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(callback)
