"""Listing onboardings: filters mapped onto the Durable instance query, one page per request.

Nothing is scanned: each request reads one page of the instance query (``top`` = the page size) with
the filters the query itself supports (created from/to, runtime status, instance-id prefix), and only
refines that page:

- ``externalReference`` becomes the id prefix every onboarding with that reference has
  (``onboarding.domain.reference_prefix``); the page is then checked for the exact reference.
- ``status`` becomes the runtime statuses that can show it (``waiting`` is ``Running`` with a wait in
  its custom status; ``rejected`` is ``Completed`` with that outcome); the page is then checked for the
  exact status.

So a page may hold fewer items than ``pageSize`` (even none) while ``continuationToken`` says more
may follow: clients follow the token until it is null.

The ``continuationToken`` handed out wraps the engine's token with an HMAC over it and the filters
(a key derived from ``LINK_SIGNING_KEY``): a forged, altered or reused-with-other-filters token is
refused with 400 before the engine is asked, and no caller string reaches the engine's headers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus as Rt

from endpoints.http import ONBOARDING_ID
from endpoints.instances import InstanceQuery, query_page
from onboarding import status_view
from onboarding.domain import reference_prefix
from onboarding.validation import FieldError

SEALED_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,4000}\.[0-9a-f]{64}")
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
_LIVE = (Rt.Pending, Rt.Running, Rt.ContinuedAsNew, Rt.Suspended)
_RUNTIME_FOR_STATUS: dict[str, tuple[Rt, ...]] = {
    "running": _LIVE,
    "waiting": _LIVE,
    "succeeded": (Rt.Completed,),
    "partial": (Rt.Completed,),
    "rejected": (Rt.Completed,),
    "expired": (Rt.Completed,),
    "cancelled": (Rt.Completed,),
    # An unexpected end (Failed, Terminated) shows as failed too.
    "failed": (Rt.Completed, Rt.Failed, Rt.Terminated, Rt.Canceled),
}


@dataclass(frozen=True)
class ListRequest:
    statuses: tuple[str, ...]
    external_reference: str | None
    created_from: datetime | None
    created_to: datetime | None
    page_size: int
    continuation_token: str | None

    def filters(self) -> str:
        """What a continuation token is bound to (everything but the page position)."""
        return repr(
            (self.statuses, self.external_reference, self.created_from, self.created_to, self.page_size)
        )

    def query_with(self, token: str) -> dict[str, str]:
        """The query string of the next page: the same filters, the new token."""
        query = {"pageSize": str(self.page_size), "continuationToken": token}
        if self.statuses:
            query["status"] = ",".join(self.statuses)
        if self.external_reference is not None:
            query["externalReference"] = self.external_reference
        if self.created_from:
            query["createdFrom"] = self.created_from.isoformat()
        if self.created_to:
            query["createdTo"] = self.created_to.isoformat()
        return query


def parse_list_request(params: Mapping[str, str]) -> ListRequest | list[FieldError]:
    """The listing's query parameters, or every problem with them at once."""
    errors: list[FieldError] = []

    statuses = tuple(s for s in (params.get("status") or "").split(",") if s)
    for unknown in [s for s in statuses if s not in _RUNTIME_FOR_STATUS]:
        errors.append(
            FieldError("status", f"unknown status {unknown!r}; one of {', '.join(status_view.STATUSES)}")
        )

    reference = params.get("externalReference")
    if reference is not None and not 1 <= len(reference) <= 200:
        errors.append(FieldError("externalReference", "must be 1 to 200 characters"))

    def moment(name: str) -> datetime | None:
        text = params.get(name)
        if text is None:
            return None
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            value = None
        if value is None or value.tzinfo is None:
            errors.append(
                FieldError(name, "must be an RFC 3339 date-time with an offset, e.g. 2026-12-01T00:00:00Z")
            )
            return None
        if not 1970 <= value.year <= 9998:
            errors.append(FieldError(name, "must be between the years 1970 and 9998"))
            return None
        # The SDK's query builder writes the time with a "Z" whatever its zone: give it UTC.
        return value.astimezone(UTC)

    created_from, created_to = moment("createdFrom"), moment("createdTo")
    if created_from and created_to and created_from > created_to:
        errors.append(FieldError("createdFrom", "must not be after createdTo"))

    page_size = DEFAULT_PAGE_SIZE
    text = params.get("pageSize")
    if text is not None:
        if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_SIZE:
            errors.append(FieldError("pageSize", f"must be a whole number from 1 to {MAX_PAGE_SIZE}"))
        else:
            page_size = int(text)

    token = params.get("continuationToken")
    if token is not None and not SEALED_TOKEN.fullmatch(token):
        errors.append(FieldError("continuationToken", "is not a token this API returned"))

    if errors:
        return errors
    return ListRequest(statuses, reference, created_from, created_to, page_size, token)


def _token_key(signing_key: bytes) -> bytes:
    return hmac.new(signing_key, b"mail-onboarding/continuation/v1", hashlib.sha256).digest()


def seal(engine_token: str, request: ListRequest, signing_key: bytes) -> str:
    body = base64.urlsafe_b64encode(engine_token.encode()).decode().rstrip("=")
    mac = hmac.new(_token_key(signing_key), f"{request.filters()}\n{body}".encode(), hashlib.sha256)
    return f"{body}.{mac.hexdigest()}"


def unseal(token: str, request: ListRequest, signing_key: bytes) -> str | None:
    """The engine's token inside ``token``, or None when this API did not issue it for these filters."""
    body, _, given = token.partition(".")
    mac = hmac.new(_token_key(signing_key), f"{request.filters()}\n{body}".encode(), hashlib.sha256)
    if not hmac.compare_digest(mac.hexdigest(), given):
        return None
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


class InvalidToken(Exception):
    """The continuation token was not issued by this API for these filters."""


async def list_onboardings(
    client: Any, request: ListRequest, signing_key: bytes
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of status views matching the request, and the (sealed) token of the next page."""
    engine_token = None
    if request.continuation_token is not None:
        engine_token = unseal(request.continuation_token, request, signing_key)
        if engine_token is None:
            raise InvalidToken
    runtime = {rt for s in request.statuses for rt in _RUNTIME_FOR_STATUS[s]}
    query = InstanceQuery(
        created_from=request.created_from,
        created_to=request.created_to,
        runtime_statuses=tuple(sorted(runtime, key=lambda r: r.value)),
        instance_id_prefix=reference_prefix(request.external_reference)
        if request.external_reference is not None
        else "onb-",
        top=request.page_size,
        continuation_token=engine_token,
    )
    page, token = await query_page(client, query)
    # Sub-orchestrations share their parent's id as a prefix: only onboardings themselves are listed.
    views = [
        status_view.build_view(status)
        for status in page
        if ONBOARDING_ID.fullmatch(str(status.get("instanceId", "")))
    ]
    views = [
        v
        for v in views
        if (not request.statuses or v["status"] in request.statuses)
        and (request.external_reference is None or v["externalReference"] == request.external_reference)
    ]
    return views, seal(token, request, signing_key) if token else None


def summary(view: dict[str, Any]) -> dict[str, Any]:
    """What a list shows of each onboarding; its status URL has the rest."""
    request = view.get("request") or {}
    return {
        "id": view["id"],
        "status": view["status"],
        "externalReference": view["externalReference"],
        "displayName": request.get("displayName"),
        "createdAt": view["createdAt"],
        "updatedAt": view["updatedAt"],
        "links": view["links"],
    }
