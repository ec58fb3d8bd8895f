"""Clients built as the app builds them, pointed at the sandbox."""

from __future__ import annotations

from typing import Any

import httpx

from sandbox import Sandbox


def graph_client(sb: Sandbox, credential: Any) -> Any:
    """msgraph-sdk exactly as an app would build it for a non-default cloud."""
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph_core import GraphClientFactory

    endpoint = sb.env["GRAPH_ENDPOINT"]
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=[f"{endpoint}/.default"], allowed_hosts=[endpoint.split("//")[1].split(":")[0]]
    )
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=sb.client_ssl_context(), timeout=10)
    )
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = f"{endpoint}/v1.0"
    return GraphServiceClient(request_adapter=adapter)
