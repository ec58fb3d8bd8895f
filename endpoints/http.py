"""Response helpers shared by the triggers: JSON, problem+json (RFC 9457) and HTML pages."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import azure.functions as func

from onboarding import pages
from onboarding.validation import FieldError

log = logging.getLogger("endpoints")

# Ids this API hands out (see onboarding.domain.onboarding_id_for): anything else is unknown, and is
# never put into a Durable API URL.
ONBOARDING_ID = re.compile(r"onb-[0-9a-f]{32}")
PROBLEM_TYPE = "urn:mail-onboarding:problem:"
_API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_response(
    body: Any, status: int = HTTPStatus.OK, headers: Mapping[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=int(status),
        headers={**_API_HEADERS, **(headers or {})},
        mimetype="application/json",
        charset="utf-8",
    )


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str = "",
    errors: tuple[FieldError, ...] | list[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> func.HttpResponse:
    body = {
        "type": PROBLEM_TYPE + slug,
        "title": title,
        "status": int(status),
        "detail": detail or title,
        "errors": [e.to_json() for e in errors],
    }
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=int(status),
        headers={**_API_HEADERS, **(headers or {})},
        mimetype="application/problem+json",
        charset="utf-8",
    )


def not_found(onboarding_id: str) -> func.HttpResponse:
    return problem(
        HTTPStatus.NOT_FOUND,
        "not-found",
        "Onboarding not found",
        "No onboarding has this id. Check the id returned when the request was accepted.",
    )


def html(document: str, status: int = HTTPStatus.OK) -> func.HttpResponse:
    return func.HttpResponse(document, status_code=int(status), headers=dict(pages.HEADERS))


def header(req: func.HttpRequest, name: str) -> str | None:
    value = req.headers.get(name)
    return value if value is not None else None


class EngineUnavailable(Exception):
    """The Durable engine could not be asked (its API failed or is unreachable)."""


async def fetch_status(client: Any, onboarding_id: str, *, show_input: bool = False) -> dict[str, Any]:
    """The instance's status document, ``{}`` when unknown; ``EngineUnavailable`` when it cannot be read.

    Only the exception's type is logged: the SDK's messages can carry the Durable API's URLs, whose
    ``code`` is the extension's system key.
    """
    try:
        return status_json(await client.get_status(onboarding_id, show_input=show_input))
    except Exception as exc:
        log.error("status of %s could not be read (%s)", onboarding_id, type(exc).__name__)
        raise EngineUnavailable from None


def engine_unavailable() -> func.HttpResponse:
    return problem(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "engine-unavailable",
        "Workflow engine unavailable",
        "The workflow engine could not be reached. Try again shortly.",
        headers={"Retry-After": "10"},
    )


def status_json(status: Any) -> dict[str, Any]:
    """A ``DurableOrchestrationStatus`` as the plain status document ``status_view`` reads."""
    if not status:
        return {}
    return {
        "instanceId": status.instance_id,
        "runtimeStatus": status.runtime_status.name if status.runtime_status else None,
        "createdTime": status.created_time.isoformat() if status.created_time else None,
        "lastUpdatedTime": status.last_updated_time.isoformat() if status.last_updated_time else None,
        "customStatus": status.custom_status,
        "output": status.output,
        "input": status.input_,
    }
