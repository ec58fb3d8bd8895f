"""pytest fixtures for the sandbox tenant. Load with ``pytest_plugins = ["sandbox.pytest_plugin"]``.

- ``sandbox``: a fresh tenant per test (about 0.15 s with Dovecot); override ``sandbox_config`` to
  change how it is built.
- ``sandbox_env``: the same sandbox with its settings (``sandbox.env``) exported to ``os.environ`` for
  the test, for code that reads the environment (``ManagedIdentityCredential``, ``Settings.from_env``),
  and the sandbox CA trusted by in-process aiohttp clients (see ``Sandbox.trust_in_process``).
- ``sandbox_session``: one tenant shared by a whole session, for read-only or self-isolating tests.

Strictness: a test whose requests reached something the sandbox does not model (answered 501, see
sandbox/web.py) fails at teardown, naming what was asked; ``sandbox.acknowledge_unmodelled()`` is for a
test that does so on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.tenant import Sandbox, SandboxConfig


@pytest.fixture
def sandbox_config(tmp_path: Path) -> SandboxConfig:
    return SandboxConfig(base_dir=tmp_path / "sandbox")


@pytest.fixture
def sandbox(sandbox_config: SandboxConfig) -> Iterator[Sandbox]:
    with Sandbox(sandbox_config) as sb:
        yield sb
        sb.assert_all_modelled()


@pytest.fixture
def sandbox_env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in sandbox.env.items():
        monkeypatch.setenv(name, value)
    sandbox.trust_in_process()
    return sandbox.env


@pytest.fixture(scope="session")
def sandbox_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(base_dir=tmp_path_factory.mktemp("sandbox-session"))) as sb:
        yield sb
