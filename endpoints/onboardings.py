"""The requester's API: start an onboarding, read its status, cancel it (function key required)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from endpoints import callbacks
from endpoints.http import (
    ONBOARDING_ID,
    EngineUnavailable,
    engine_unavailable,
    fetch_status,
    header,
    json_response,
    log,
    not_found,
    problem,
)
from endpoints.registry import blueprint
from onboarding import status_view
from onboarding.domain import (
    EVENT_CANCEL,
    ORCHESTRATOR,
    OnboardingInput,
    OnboardingRequest,
    onboarding_id_for,
)
from onboarding.errors import ConfigurationError
from onboarding.settings import Settings, load_settings
from onboarding.validation import (
    RequestRejected,
    check_body_size,
    check_content_type,
    decode_json,
    parse_request,
)

RETRY_AFTER_SECONDS = "10"
_SLUGS = {
    HTTPStatus.BAD_REQUEST: "invalid-request",
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: "unsupported-media-type",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "body-too-large",
    HTTPStatus.UNPROCESSABLE_ENTITY: "tenant-not-served",
}


def _settings() -> Settings | func.HttpResponse:
    try:
        return load_settings()
    except ConfigurationError as exc:
        log.error("configuration problems: %s", "; ".join(exc.problems))
        return problem(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "misconfigured",
            "Service misconfigured",
            "The function app's settings are incomplete; an operator must fix them.",
        )


def _accepted(onboarding_id: str, *, existing: bool) -> func.HttpResponse:
    url = status_view.status_url(onboarding_id)
    return json_response(
        {"id": onboarding_id, "statusUrl": url, "cancelUrl": f"{url}/cancel", "existing": existing},
        HTTPStatus.ACCEPTED,
        headers={"Location": url, "Retry-After": RETRY_AFTER_SECONDS},
    )


def _existing(onboarding_id: str, request: OnboardingRequest, status: dict[str, Any]) -> func.HttpResponse:
    """A resubmission with a known idempotency key: the same onboarding, unless the request differs."""
    stored = status_view.stored_request(status)
    if stored is not None and stored.to_json() != request.to_json():
        return problem(
            HTTPStatus.CONFLICT,
            "idempotency-conflict",
            "Idempotency key already used",
            "An onboarding with this idempotencyKey exists with a different request. "
            "Use a new idempotencyKey for a different request.",
            headers={"Location": status_view.status_url(onboarding_id)},
        )
    return _accepted(onboarding_id, existing=True)


async def _start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    settings = _settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    try:
        body = req.get_body() or b""
        check_body_size(body, header(req, "Content-Length"))
        check_content_type(header(req, "Content-Type"))
        request = parse_request(
            decode_json(body),
            tenant_id=settings.tenant_id,
            allow_private_callbacks=settings.callback_allow_private_networks,
        )
    except RequestRejected as rejected:
        return problem(
            rejected.status,
            _SLUGS.get(rejected.status, "invalid-request"),
            rejected.title,
            rejected.detail,
            rejected.errors,
        )

    if request.idempotency_key:
        onboarding_id = onboarding_id_for(request.tenant_id, request.idempotency_key)
        found = await fetch_status(client, onboarding_id, show_input=True)
        if found:
            # Never start again: the extension would silently overwrite even a completed instance.
            return _existing(onboarding_id, request, found)
    else:
        onboarding_id = f"onb-{uuid.uuid4().hex}"

    job = OnboardingInput(
        onboarding_id=onboarding_id,
        request=request,
        options=settings.workflow_options(),
        submitted_at=datetime.now(UTC).isoformat(),
    )
    try:
        await client.start_new(ORCHESTRATOR, onboarding_id, job.to_json())
    except Exception:  # the SDK raises bare Exception; its text may carry the Durable API's URLs
        # Most likely a concurrent duplicate won the race and the extension refused a second start.
        found = await fetch_status(client, onboarding_id, show_input=True)
        if found and request.idempotency_key:
            return _existing(onboarding_id, request, found)
        log.error("could not start onboarding %s", onboarding_id)
        return problem(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "start-failed",
            "Could not start the onboarding",
            "The workflow engine did not accept the onboarding. Try again shortly (use an idempotencyKey "
            "to make retries safe).",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    log.info("onboarding %s started", onboarding_id)
    return _accepted(onboarding_id, existing=False)


async def _status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    onboarding_id = req.route_params.get("id", "")
    if not ONBOARDING_ID.fullmatch(onboarding_id):
        return not_found(onboarding_id)
    status = await fetch_status(client, onboarding_id, show_input=True)
    if not status:
        return not_found(onboarding_id)
    view = status_view.build_view(status)
    view["callbackDelivery"] = await callbacks.delivery_view(client, onboarding_id)
    headers = {} if status_view.outcome_is_final(view) else {"Retry-After": RETRY_AFTER_SECONDS}
    return json_response(view, HTTPStatus.OK, headers=headers)


async def _cancel(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    onboarding_id = req.route_params.get("id", "")
    if not ONBOARDING_ID.fullmatch(onboarding_id):
        return not_found(onboarding_id)
    status = await fetch_status(client, onboarding_id)
    if not status:
        return not_found(onboarding_id)
    if not status_view.is_running(status):
        return problem(
            HTTPStatus.CONFLICT,
            "already-finished",
            "Onboarding already finished",
            "The onboarding has finished; there is nothing to cancel. Read its status for the outcome.",
            headers={"Location": status_view.status_url(onboarding_id)},
        )
    try:
        await client.raise_event(onboarding_id, EVENT_CANCEL, {})
    except Exception:
        # It finished between the two calls (410) or the engine refused: say which from a fresh status.
        after = await fetch_status(client, onboarding_id)
        if after and not status_view.is_running(after):
            return problem(
                HTTPStatus.CONFLICT,
                "already-finished",
                "Onboarding already finished",
                "The onboarding finished before the cancellation arrived.",
            )
        log.error("could not cancel onboarding %s", onboarding_id)
        return problem(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "cancel-failed",
            "Could not cancel",
            "The workflow engine did not accept the cancellation. Try again shortly.",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    log.info("onboarding %s: cancellation requested", onboarding_id)
    url = status_view.status_url(onboarding_id)
    return json_response(
        {"id": onboarding_id, "statusUrl": url, "cancellation": "requested"},
        HTTPStatus.ACCEPTED,
        headers={"Location": url, "Retry-After": RETRY_AFTER_SECONDS},
    )


# The triggers: each delegates, and answers 503 when the Durable engine cannot be asked.
@blueprint.route(route="onboardings", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@blueprint.durable_client_input(client_name="client")
async def start_onboarding(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        return await _start(req, client)
    except EngineUnavailable:
        return engine_unavailable()


@blueprint.route(route="onboardings/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@blueprint.durable_client_input(client_name="client")
async def get_onboarding(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        return await _status(req, client)
    except EngineUnavailable:
        return engine_unavailable()


@blueprint.route(route="onboardings/{id}/cancel", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@blueprint.durable_client_input(client_name="client")
async def cancel_onboarding(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    try:
        return await _cancel(req, client)
    except EngineUnavailable:
        return engine_unavailable()
