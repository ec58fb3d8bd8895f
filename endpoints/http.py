"""Response helpers shared by the triggers: JSON, problem+json (RFC 9457) and HTML pages."""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import azure.functions as func

from onboarding.access_tokens import InvalidToken, MissingRole, Role, TokenConfig, TokenValidator
from onboarding.errors import ConfigurationError
from onboarding.lazy import lazy
from onboarding.settings import load_settings

if TYPE_CHECKING:
    from onboarding import pages, validation
else:  # loaded with the first request that needs it, not at the worker's start (onboarding/lazy.py)
    pages = lazy("onboarding.pages")
    validation = lazy("onboarding.validation")

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
    errors: tuple[validation.FieldError, ...] | list[validation.FieldError] = (),
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


# ---------------------------------------------------------------------------------------------- callers
# The requester's API accepts a function key or a Microsoft Entra access token. The Functions host
# checks keys before the app runs and an App Service Authentication identity does not satisfy the
# "function" level (Azure/azure-functions-host#11394), so these triggers are anonymous at the host and
# `api_access` checks both, the key as strictly as the host does (constant time, from a setting).
class RequesterKind(StrEnum):
    ENTRA = "entra"
    FUNCTION_KEY = "function-key"


@dataclass(frozen=True)
class Requester:
    """Who called: an Entra application (its service principal's ``oid`` and its app id) or a key."""

    kind: RequesterKind
    object_id: str = ""
    app_id: str = ""

    def to_json(self) -> dict[str, str]:
        if self.kind is RequesterKind.FUNCTION_KEY:
            return {"kind": self.kind.value}
        return {"kind": self.kind.value, "objectId": self.object_id, "appId": self.app_id}


_REQUESTER: ContextVar[Requester | None] = ContextVar("requester", default=None)
_VALIDATORS: dict[TokenConfig, TokenValidator] = {}


def requester() -> Requester:
    """The authenticated caller of the API request being handled (set by ``api_access``)."""
    current = _REQUESTER.get()
    if current is None:
        raise RuntimeError("requester() outside an api_access trigger")
    return current


def _bearer_refusal(status: int, error: str, description: str) -> func.HttpResponse:
    """RFC 6750 section 3: the challenge names the error; section 3.1: invalid_token is 401,
    insufficient_scope 403. The description is ours and never quotes the token."""
    challenge = "Bearer" if not error else f'Bearer error="{error}", error_description="{description}"'
    title = "Forbidden" if status == HTTPStatus.FORBIDDEN else "Unauthorized"
    slug = "insufficient-scope" if status == HTTPStatus.FORBIDDEN else "unauthorized"
    return problem(status, slug, title, description, headers={"WWW-Authenticate": challenge})


def _validator(config: TokenConfig) -> TokenValidator:
    # One per configuration, so the tenant's keys are fetched once per process (and on an unknown kid).
    return _VALIDATORS.setdefault(config, TokenValidator(config))


async def authenticate(req: func.HttpRequest, role: Role) -> Requester | func.HttpResponse:
    """The caller, or the 401/403/503 answer that refuses it."""
    try:
        settings = load_settings()
    except ConfigurationError:
        return problem(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "misconfigured",
            "Service misconfigured",
            "The function app's settings are incomplete; an operator must fix them.",
        )
    authorization = header(req, "Authorization") or ""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer":
        config = settings.token_config()
        if config is None:
            return _bearer_refusal(
                HTTPStatus.UNAUTHORIZED, "invalid_token", "this API does not accept Entra tokens"
            )
        try:
            caller = await asyncio.to_thread(_validator(config).validate, token.strip(), role)
        except InvalidToken as exc:
            log.info("bearer token refused: %s", exc)
            return _bearer_refusal(HTTPStatus.UNAUTHORIZED, "invalid_token", str(exc))
        except MissingRole as exc:
            log.info("bearer token of app %s refused: %s", _app_id_of(token), exc)
            return _bearer_refusal(HTTPStatus.FORBIDDEN, "insufficient_scope", str(exc))
        return Requester(RequesterKind.ENTRA, caller.object_id, caller.app_id)
    key = header(req, "x-functions-key") or req.params.get("code")
    if key is None:
        # RFC 6750 section 3.1: no error code when the request carries no credentials at all.
        return _bearer_refusal(
            HTTPStatus.UNAUTHORIZED, "", "send a function key (x-functions-key) or an Entra bearer token"
        )
    expected = settings.api_function_key
    if not expected or not hmac.compare_digest(key.encode(), expected):
        return _bearer_refusal(HTTPStatus.UNAUTHORIZED, "", "the function key is not valid")
    return Requester(RequesterKind.FUNCTION_KEY)


def _app_id_of(token: str) -> str:
    """The app id of a token already validated (for the log line only)."""
    import jwt  # imported by the validator already; not at the worker's start

    try:
        return str(jwt.decode(token, options={"verify_signature": False}).get("appid", "?"))
    except jwt.PyJWTError:
        return "?"


Trigger = Callable[..., Awaitable[func.HttpResponse]]


def api_access(role: Role) -> Callable[[Trigger], Trigger]:
    """Every requester API trigger: authenticate (key or token with ``role``), then run with the caller
    available through ``requester()``."""

    def decorate(trigger: Trigger) -> Trigger:
        @functools.wraps(trigger)
        async def guarded(req: func.HttpRequest, *args: Any, **kwargs: Any) -> func.HttpResponse:
            caller = await authenticate(req, role)
            if isinstance(caller, func.HttpResponse):
                return caller
            reset = _REQUESTER.set(caller)
            try:
                return await trigger(req, *args, **kwargs)
            finally:
                _REQUESTER.reset(reset)

        return guarded

    return decorate
