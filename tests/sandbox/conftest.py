"""Contract tests of the sandbox tenant: the real client libraries against the stand-ins."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from sandbox import Sandbox

# The plugin's fixtures, imported rather than listed in ``pytest_plugins`` (which pytest accepts only
# in the top-level conftest) until tests/conftest.py loads ``sandbox.pytest_plugin`` for everyone.
from sandbox.pytest_plugin import sandbox, sandbox_config, sandbox_env, sandbox_session  # noqa: F401


@pytest.fixture
def mi_token(sandbox: Sandbox) -> Callable[[str], str]:  # noqa: F811 - the imported fixture
    """A token for the function app's managed identity, straight from the identity endpoint."""

    def get(resource: str) -> str:
        url = {"graph": sandbox.env["GRAPH_ENDPOINT"], "exchange": sandbox.env["EXCHANGE_ENDPOINT"]}.get(
            resource, resource
        )
        response = httpx.get(
            sandbox.env["IDENTITY_ENDPOINT"],
            params={"api-version": "2019-08-01", "resource": url},
            headers={"X-IDENTITY-HEADER": sandbox.env["IDENTITY_HEADER"]},
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    return get


@pytest.fixture
async def https(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811 - the imported fixture
    async with httpx.AsyncClient(verify=sandbox.client_ssl_context(), timeout=10) as client:
        yield client
