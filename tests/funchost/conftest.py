"""Fixtures for the local host's own tests: sample apps live in tests/funchost/apps/."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from funchost import LocalHost, ManualClock
from funchost.pytest_plugin import host_process_factory, local_host_factory

__all__ = ["host_process_factory", "local_host_factory"]

APPS = Path(__file__).parent / "apps"
SAMPLES = APPS / "samples"
KILLABLE = APPS / "killable"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2030, 1, 7, 8, 0, tzinfo=UTC))


@pytest.fixture
def samples(local_host_factory: Callable[..., LocalHost], clock: ManualClock) -> Iterator[LocalHost]:
    host = local_host_factory(SAMPLES, clock=clock)
    yield host


@pytest.fixture
def sample_state(samples: LocalHost) -> dict[str, Any]:
    """The samples app's module-level switches and counters, reset for each test."""
    module = next(
        m for m in sys.modules.values() if getattr(m, "__file__", None) == str(SAMPLES / "function_app.py")
    )
    state: dict[str, Any] = module.STATE
    state.update(attempts={}, nondeterministic=False, timer_runs=0, running=0, peak=0)
    return state


def drive(
    host: LocalHost, clock: ManualClock, instance_id: str, step: timedelta, limit: int = 50
) -> dict[str, Any]:
    """Advance the manual clock step by step until the instance finishes."""
    for _ in range(limit):
        host.idle()
        status = host.get_status(instance_id)
        if status and status["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
            return status
        clock.advance(step)
    raise AssertionError(f"{instance_id} did not finish: {host.get_status(instance_id)}")


def on_host_loop(host: LocalHost, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a Durable client call on the host's loop (the SDK's HTTP session belongs to that loop)."""
    return asyncio.run_coroutine_threadsafe(coro, host.loop).result(timeout=30)
