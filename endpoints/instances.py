"""The Durable instance query, one page at a time (the adapter for listing onboardings).

The Durable Functions HTTP API's "Get all instances status" pages: ``top`` sets the page size and, while
more instances may match, the response carries an ``x-ms-continuation-token`` header that the next
request sends back as a request header (Microsoft Learn, "HTTP API reference", Durable Functions).
The Python SDK's ``get_status_by`` neither sends ``top`` nor reads the token, so it only ever returns
the first page (azure-functions-durable-python#580). This adapter calls the same endpoint the SDK
calls (the client binding's RPC base URL, with the SDK's own query builder) and adds the two paging
parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus
from azure.durable_functions.models.RpcManagementOptions import RpcManagementOptions

from endpoints.http import EngineUnavailable, log

CONTINUATION_HEADER = "x-ms-continuation-token"
_NULL_TOKEN = "bnVsbA=="  # noqa: S105 - base64 of "null", not a credential
_TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass(frozen=True)
class InstanceQuery:
    created_from: datetime | None
    created_to: datetime | None
    runtime_statuses: tuple[OrchestrationRuntimeStatus, ...]
    instance_id_prefix: str | None
    top: int
    continuation_token: str | None


async def query_page(client: Any, query: InstanceQuery) -> tuple[list[dict[str, Any]], str | None]:
    """One page of instance status documents (with input) and the token of the next, if any.

    Raises ``EngineUnavailable`` when the engine cannot be asked; only the exception's type is logged
    (the URL carries no key here, but the SDK's errors elsewhere do and one rule is simpler).
    """
    options = RpcManagementOptions(
        created_time_from=query.created_from,
        created_time_to=query.created_to,
        runtime_status=list(query.runtime_statuses) or None,
        instance_id_prefix=query.instance_id_prefix,
        show_input=True,
    )
    url = options.to_url(client._orchestration_bindings.rpc_base_url)
    url += ("&" if "?" in url else "?") + f"top={query.top}"
    headers = {CONTINUATION_HEADER: query.continuation_token} if query.continuation_token else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as session,
            session.get(url, headers=headers) as response,
        ):
            if response.status != 200:
                raise RuntimeError(f"instance query answered {response.status}")
            page = await response.json(content_type=None)
            token = response.headers.get(CONTINUATION_HEADER)
    except Exception as exc:
        log.error("instance query failed (%s)", type(exc).__name__)
        raise EngineUnavailable from None
    if not isinstance(page, list):
        log.error("instance query answered something other than a list")
        raise EngineUnavailable
    # Some storage providers answer a token even on the last page; "null" is one of them
    # (azure-functions-durable-extension#1174).
    return page, token if token and token != _NULL_TOKEN else None
