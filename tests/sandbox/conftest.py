"""Contract tests of the sandbox tenant: the real client libraries against the stand-ins."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from sandbox import Sandbox

pytest_plugins = ["sandbox.pytest_plugin"]


@pytest.fixture
def mi_token(sandbox: Sandbox) -> Callable[[str], str]:
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
async def https(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=sandbox.client_ssl_context(), timeout=10) as client:
        yield client


def graph_client(sandbox: Sandbox, credential: Any) -> Any:
    """msgraph-sdk exactly as an app would build it for a non-default cloud."""
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph_core import GraphClientFactory

    endpoint = sandbox.env["GRAPH_ENDPOINT"]
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=[f"{endpoint}/.default"], allowed_hosts=[endpoint.split("//")[1].split(":")[0]]
    )
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=sandbox.client_ssl_context(), timeout=10)
    )
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = f"{endpoint}/v1.0"
    return GraphServiceClient(request_adapter=adapter)
