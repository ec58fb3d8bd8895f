"""Fixtures for the adapter tests: a fresh sandbox tenant per test, its settings, and the adapters
built over the function app's managed identity exactly as ``onboarding.services`` builds them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from onboarding.settings import Settings
from sandbox import Sandbox
from sandbox.pytest_plugin import sandbox, sandbox_config  # noqa: F401 - fixtures

# The variables client libraries read themselves (trust store, managed identity endpoint).
LIBRARY_ENV = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "IDENTITY_ENDPOINT", "IDENTITY_HEADER")


class RecordingSleep:
    """Stands in for asyncio.sleep in retry loops: records each wait, optionally runs a hook."""

    def __init__(self, on_sleep: object = None) -> None:
        self.waits: list[float] = []
        self.on_sleep = on_sleep

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if callable(self.on_sleep):
            self.on_sleep()


@pytest.fixture
def sb(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:  # noqa: F811
    for name in LIBRARY_ENV:
        monkeypatch.setenv(name, sandbox.env[name])
    yield sandbox


@pytest.fixture
def settings(sb: Sandbox) -> Settings:
    return Settings.from_env(sb.env)


@pytest.fixture
async def credential(settings: Settings) -> AsyncIterator[object]:
    from onboarding.adapters.identity import function_credential

    cred = function_credential(settings)
    yield cred
    await cred.close()
