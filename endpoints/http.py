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
