"""Fixtures of the trust suite: sandbox fixtures, a callback receiver, and the reusable pieces in
``tests.trust.lanes`` (a sandbox tenant driven through a killable subprocess host)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from onboarding.settings import load_settings
from sandbox.pytest_plugin import sandbox, sandbox_config, sandbox_env
from tests.e2e.conftest import tenant_factory
from tests.trust.receiver import CallbackReceiver

__all__ = ["sandbox", "sandbox_config", "sandbox_env", "tenant_factory"]


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Settings are cached per process; every test here changes the environment."""
    load_settings.cache_clear()
    yield
    load_settings.cache_clear()
