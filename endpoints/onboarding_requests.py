"""How the requester's API answers (its triggers are in ``endpoints/onboardings.py``): start an onboarding,
read its status, list, cancel, offboard, rotate and change its mailboxes.

A module of its own so that the worker's start does not compile it: each trigger imports it on its first
call (the same reason as ``onboarding/lazy.py``). Versions, access and URLs: see that module.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import azure.durable_functions as df
import azure.functions as func

from endpoints import callback_requests
from endpoints.http import (
    ONBOARDING_ID,
    EngineUnavailable,
    RequesterKind,
    engine_unavailable,
    fetch_status,
    header,
    json_response,
    log,
    not_found,
    problem,
    requester,
)
from endpoints.listing import InvalidToken, ListRequest, list_onboardings, parse_list_request, summary
from onboarding import (
    admission,
    durable_status,
    logcontext,
    mailbox_ops,
    offboarding,
    rotation,
    status_view,
    webhook_hub,
)
from onboarding.domain import (
    EVENT_CANCEL,
    ORCHESTRATOR,
    CredentialType,
    MailboxState,
    OnboardingInput,
    OnboardingRequest,
    OnboardingResult,
    SecretRef,
    new_onboarding_id,
    onboarding_id_for,
)
from onboarding.errors import ConfigurationError, OnboardingError
from onboarding.services import Services
from onboarding.settings import Settings, load_settings
from onboarding.validation import (
    MAX_MAILBOXES,
    FieldError,
    RequestRejected,
    check_body_size,
    check_content_type,
    decode_json,
    parse_mailbox_change,
    parse_request,
    parse_rotation,
)
from onboarding.webhooks import Channel

RETRY_AFTER_SECONDS = "10"
_SLUGS = {
    HTTPStatus.BAD_REQUEST: "invalid-request",
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: "unsupported-media-type",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "body-too-large",
    HTTPStatus.UNPROCESSABLE_ENTITY: "tenant-not-served",
}


@dataclass(frozen=True)
class ApiVersion:
    root: str  # the collection's path, e.g. /api/v1/onboardings
    async_status: bool  # GET answers 202 while the onboarding is not final


V1 = ApiVersion("/api/v1/onboardings", async_status=True)
UNVERSIONED = ApiVersion("/api/onboardings", async_status=False)


@dataclass(frozen=True)
class Links:
    """The absolute URLs this request's answers carry.

    ``polling`` is the status URL for ``Location``: when the caller authenticated with the ``code``
    query parameter it carries that same parameter, because a poller follows ``Location`` as it is
    (the key goes back only to the caller that put it in its own URL, as the Durable extension's
    ``statusQueryGetUri`` does). URLs in bodies never carry a key.
    """

    base: str
    version: ApiVersion
    code: str | None

    @classmethod
    def of(cls, req: func.HttpRequest, settings: Settings, version: ApiVersion) -> Links:
        code = req.params.get("code") if not header(req, "x-functions-key") else None
        return cls(settings.public_base_url, version, code or None)

    def collection(self, query: dict[str, str] | None = None) -> str:
        url = f"{self.base}{self.version.root}"
        return f"{url}?{urlencode(query)}" if query else url

    def status(self, onboarding_id: str) -> str:
        return f"{self.collection()}/{onboarding_id}"

    def cancel(self, onboarding_id: str) -> str:
        return f"{self.status(onboarding_id)}/cancel"

    def polling(self, onboarding_id: str) -> str:
        url = self.status(onboarding_id)
        return f"{url}?{urlencode({'code': self.code})}" if self.code else url

    def view(self, view: dict[str, Any]) -> dict[str, Any]:
        """The status view with its links made absolute."""
        onboarding_id = str(view["id"])
        return {**view, "links": {"self": self.status(onboarding_id), "cancel": self.cancel(onboarding_id)}}


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


def _accepted(links: Links, onboarding_id: str, *, existing: bool) -> func.HttpResponse:
    return json_response(
        {
            "id": onboarding_id,
            "statusUrl": links.status(onboarding_id),
            "cancelUrl": links.cancel(onboarding_id),
            "existing": existing,
        },
        HTTPStatus.ACCEPTED,
        headers={"Location": links.polling(onboarding_id), "Retry-After": RETRY_AFTER_SECONDS},
    )


def _existing(
    links: Links, onboarding_id: str, request: OnboardingRequest, status: dict[str, Any]
) -> func.HttpResponse:
    """A resubmission with a known idempotency key: the same onboarding, unless the request differs."""
    stored = status_view.stored_request(status)
    if stored is not None and stored.to_json() != request.to_json():
        return problem(
            HTTPStatus.CONFLICT,
            "idempotency-conflict",
            "Idempotency key already used",
            "An onboarding with this idempotencyKey exists with a different request. "
            "Use a new idempotencyKey for a different request.",
            headers={"Location": links.polling(onboarding_id)},
        )
    return _accepted(links, onboarding_id, existing=True)


def _requester(req: func.HttpRequest) -> str:
    """Who is calling, as the emails and the rate limits name it (onboarding.admission): the Entra
    caller's ``oid`` that ``api_access`` authenticated, else the function key's digest."""
    caller = requester()
    if caller.kind is RequesterKind.ENTRA:
        return admission.requester_id(entra_object_id=caller.object_id)
    return admission.requester_id(function_key=header(req, "x-functions-key") or req.params.get("code"))


async def _admit_admins(settings: Settings, request: OnboardingRequest) -> func.HttpResponse | None:
    """422 unless every admin address is in the tenant's verified domains (or the explicit allow-list):
    checked before anything is created, so nothing is mailed outside the tenant."""
    allowed = settings.admin_email_domains
    if not allowed:

        async def load() -> frozenset[str]:
            from onboarding.adapters.graph import verified_domains

            async with Services(settings) as services:
                return await verified_domains(settings, services.credential)

        try:
            key = f"{settings.graph_endpoint} {settings.tenant_id}"
            allowed = await admission.domain_cache().get(key, load)
        except OnboardingError as exc:
            log.error("could not read the tenant's verified domains (%s)", exc.code)
            return problem(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "domains-unavailable",
                "Could not check the admin addresses",
                f"{exc.message} {exc.fix}".strip(),
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
    errors = admission.admin_domain_errors(request.admin_emails, allowed)
    if not errors:
        return None
    return problem(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "admin-outside-tenant",
        "Admin addresses outside the tenant",
        "Consent and approval emails go only to addresses in this tenant's verified domains.",
        errors,
    )


def _rate_limited(settings: Settings, requester: str) -> func.HttpResponse | None:
    limits = admission.limits_for(
        settings.onboardings_per_requester_per_hour, settings.onboardings_per_hour, settings.emails_per_hour
    )
    spent = limits.admit_onboarding(requester)
    if spent is None:
        return None
    log.warning("onboarding refused: rate limit (%s)", requester)
    return problem(
        HTTPStatus.TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many onboardings",
        f"Try again later: {spent}.",
        headers={"Retry-After": "3600"},
    )


async def _start(
    req: func.HttpRequest,
    client: df.DurableOrchestrationClient,
    version: ApiVersion,
    *,
    callback_required: bool = False,
) -> func.HttpResponse:
    settings = _settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    links = Links.of(req, settings, version)
    try:
        body = req.get_body() or b""
        check_body_size(body, header(req, "Content-Length"))
        check_content_type(header(req, "Content-Type"))
        request = parse_request(
            decode_json(body),
            tenant_id=settings.tenant_id,
            allow_private_callbacks=settings.callback_allow_private_networks,
            allow_grant_mode=settings.enable_grant_mode,
            allow_mail_product_principal=bool(settings.key_vault_resource_id),
        )
        if callback_required and not request.callback_url:
            raise RequestRejected(
                HTTPStatus.BAD_REQUEST,
                "Invalid onboarding request",
                [FieldError("/callbackUrl", "required: the trigger is called back at this URL")],
            )
    except RequestRejected as rejected:
        return problem(
            rejected.status,
            _SLUGS.get(rejected.status, "invalid-request"),
            rejected.title,
            rejected.detail,
            rejected.errors,
        )

    refused = await _admit_admins(settings, request)
    if refused is not None:
        return refused
    request = replace(request, requested_by=_requester(req))

    if request.idempotency_key:
        onboarding_id = onboarding_id_for(
            request.tenant_id, request.idempotency_key, request.external_reference
        )
        found = await fetch_status(client, onboarding_id, show_input=True)
        if found:
            # Never start again: the extension would silently overwrite even a completed instance.
            return _existing(links, onboarding_id, request, found)
    else:
        onboarding_id = new_onboarding_id(request.external_reference, uuid.uuid4().hex)
    logcontext.bind_request(onboarding_id, "start")
    limited = _rate_limited(settings, request.requested_by or "")
    if limited is not None:
        return limited

    job = OnboardingInput(
        onboarding_id=onboarding_id,
        request=request,
        options=settings.workflow_options(),
        submitted_at=datetime.now(UTC).isoformat(),
        requested_by=requester().to_json(),
    )
    try:
        await client.start_new(ORCHESTRATOR, onboarding_id, job.to_json())
    except Exception:  # the SDK raises bare Exception; its text may carry the Durable API's URLs
        # Most likely a concurrent duplicate won the race and the extension refused a second start.
        found = await fetch_status(client, onboarding_id, show_input=True)
        if found and request.idempotency_key:
            return _existing(links, onboarding_id, request, found)
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
    return _accepted(links, onboarding_id, existing=False)


async def _status(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, version: ApiVersion
) -> func.HttpResponse:
    settings = _settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    links = Links.of(req, settings, version)
    onboarding_id = req.route_params.get("id", "")
    if not ONBOARDING_ID.fullmatch(onboarding_id):
        return not_found(onboarding_id)
    current = req.params.get("view")
    if current not in (None, "current"):
        return problem(
            HTTPStatus.BAD_REQUEST,
            "invalid-request",
            "Invalid view",
            "The query parameter view accepts only 'current' (always 200 with the current view).",
        )
    status = await fetch_status(client, onboarding_id, show_input=True)
    if not status:
        return not_found(onboarding_id)
    view = links.view(status_view.build_view(status))
    view["callbackDelivery"] = await callback_requests.delivery_view(client, onboarding_id)
    offboarded = await fetch_status(client, offboarding.offboarding_instance_id(onboarding_id))
    view["offboarding"] = offboarding.offboarding_view(offboarded) if offboarded else None
    rotated = await fetch_status(client, rotation.rotation_instance_id(onboarding_id))
    view["rotation"] = rotation.rotation_view(rotated) if rotated else None
    operated = await fetch_status(
        client, mailbox_ops.mailbox_operation_instance_id(onboarding_id), show_input=True
    )
    view["mailboxOperation"] = mailbox_ops.operation_view(operated) if operated else None
    mailbox_ops.overlay(view, operated)
    if status_view.outcome_is_final(view) and not offboarding.is_running(view["offboarding"]):
        # Every outcome is 200: the poll succeeded, and the outcome is in the body (docs/api.md).
        return json_response(view, HTTPStatus.OK)
    if version.async_status and current is None:
        headers = {"Location": links.polling(onboarding_id), "Retry-After": RETRY_AFTER_SECONDS}
        return json_response(view, HTTPStatus.ACCEPTED, headers=headers)
    return json_response(view, HTTPStatus.OK, headers={"Retry-After": RETRY_AFTER_SECONDS})


async def _list(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    settings = _settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    links = Links.of(req, settings, V1)
    parsed = parse_list_request(req.params)
    if not isinstance(parsed, ListRequest):
        return problem(
            HTTPStatus.BAD_REQUEST,
            "invalid-request",
            "Invalid listing request",
            "; ".join(f"{e.field}: {e.message}" for e in parsed),
            parsed,
        )
    try:
        views, token = await list_onboardings(client, parsed, settings.link_signing_key)
    except InvalidToken:
        return problem(
            HTTPStatus.BAD_REQUEST,
            "invalid-request",
            "Invalid listing request",
            "continuationToken: is not a token this API returned for these filters; start again without it",
            [FieldError("continuationToken", "is not a token this API returned for these filters")],
        )
    next_link = links.collection(parsed.query_with(token)) if token else None
    return json_response(
        {
            "items": [summary(links.view(view)) for view in views],
            "continuationToken": token,
            "nextLink": next_link,
        }
    )


async def _cancel(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, version: ApiVersion
) -> func.HttpResponse:
    settings = _settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    links = Links.of(req, settings, version)
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
            headers={"Location": links.polling(onboarding_id)},
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
    return json_response(
        {"id": onboarding_id, "statusUrl": links.status(onboarding_id), "cancellation": "requested"},
        HTTPStatus.ACCEPTED,
        headers={"Location": links.polling(onboarding_id), "Retry-After": RETRY_AFTER_SECONDS},
    )


def _purge_flag(req: func.HttpRequest) -> bool | func.HttpResponse:
    value = req.params.get("purge")
    if value in (None, "", "false"):
        return False
    if value == "true":
        return True
    return problem(
        HTTPStatus.BAD_REQUEST,
        "invalid-request",
        "Invalid purge",
        "The query parameter purge accepts only 'true' or 'false'.",
        [FieldError("purge", "must be 'true' or 'false'")],
    )


def _offboarding_answer(
    links: Links, onboarding_id: str, found: dict[str, Any], *, existing: bool
) -> func.HttpResponse:
    """202 while the offboarding runs (poll ``Location``, the onboarding's status, which shows it); 200
    with its final view once it ended: a DELETE repeated later gives the same offboarding."""
    view = offboarding.offboarding_view(found)
    body = {
        "id": onboarding_id,
        "statusUrl": links.status(onboarding_id),
        "existing": existing,
        "offboarding": view,
    }
    if offboarding.is_running(view):
        headers = {"Location": links.polling(onboarding_id), "Retry-After": RETRY_AFTER_SECONDS}
        return json_response(body, HTTPStatus.ACCEPTED, headers=headers)
    return json_response(body, HTTPStatus.OK)


async def _offboard(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, version: ApiVersion
) -> func.HttpResponse:
    """DELETE: start the onboarding's one offboarding (``<id>:offboarding``), or answer the one that
    exists. Nothing is removed here: the orchestration cancels a running onboarding first."""
    settings = _settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    links = Links.of(req, settings, version)
    onboarding_id = req.route_params.get("id", "")
    if not ONBOARDING_ID.fullmatch(onboarding_id):
        return not_found(onboarding_id)
    purge = _purge_flag(req)
    if isinstance(purge, func.HttpResponse):
        return purge
    if not await fetch_status(client, onboarding_id):
        return not_found(onboarding_id)
    instance_id = offboarding.offboarding_instance_id(onboarding_id)
    found = await fetch_status(client, instance_id, show_input=True)
    if not found or offboarding.must_restart(found):
        job = offboarding.OffboardingInput(
            onboarding_id=onboarding_id,
            purge=purge,
            requested_at=datetime.now(UTC).isoformat(),
            requested_by=requester().to_json(),
            options=settings.workflow_options(),
            events_reported=offboarding.events_reported(found) if found else 0,
        )
        try:
            await client.start_new(offboarding.OFFBOARDING_ORCHESTRATOR, instance_id, job.to_json())
        except Exception:  # a concurrent DELETE won the race, or the engine refused (type only: URLs)
            found = await fetch_status(client, instance_id, show_input=True)
            if not found or offboarding.must_restart(found):
                log.error("could not start the offboarding of %s", onboarding_id)
                return problem(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "offboard-failed",
                    "Could not start the offboarding",
                    "The workflow engine did not accept the offboarding. Try again shortly: "
                    "a repeated DELETE is safe.",
                    headers={"Retry-After": RETRY_AFTER_SECONDS},
                )
        else:
            log.info("onboarding %s: offboarding started", onboarding_id)
            found = await fetch_status(client, instance_id, show_input=True)
            return _offboarding_answer(
                links, onboarding_id, found or {"runtimeStatus": "Pending"}, existing=False
            )
    if offboarding.requested_purge(found) != purge:
        return problem(
            HTTPStatus.CONFLICT,
            "offboarding-conflict",
            "Offboarding already requested differently",
            f"This onboarding's offboarding was requested with purge={str(not purge).lower()}; it is not "
            "started again. Read the onboarding's status for its progress.",
            headers={"Location": links.polling(onboarding_id)},
        )
    return _offboarding_answer(links, onboarding_id, found, existing=True)


ROTATABLE = frozenset({"succeeded", "partial"})


def _rotation_answer(
    links: Links, onboarding_id: str, found: dict[str, Any], *, existing: bool
) -> func.HttpResponse:
    """202 with the rotation's view; its progress is the ``rotation`` part of the onboarding's status
    (``Location``). A POST while it runs answers the same rotation."""
    body = {
        "id": onboarding_id,
        "statusUrl": links.status(onboarding_id),
        "existing": existing,
        "rotation": rotation.rotation_view(found),
    }
    headers = {"Location": links.polling(onboarding_id), "Retry-After": RETRY_AFTER_SECONDS}
    return json_response(body, HTTPStatus.ACCEPTED, headers=headers)


def _not_rotatable(links: Links, onboarding_id: str, detail: str) -> func.HttpResponse:
    return problem(
        HTTPStatus.CONFLICT,
        "not-rotatable",
        "The onboarding's secret cannot be rotated",
        detail,
        headers={"Location": links.polling(onboarding_id)},
    )


async def _rotation_input(
    client: df.DurableOrchestrationClient,
    settings: Settings,
    status: dict[str, Any],
    credential_type: CredentialType | None = None,
) -> rotation.RotationInput | str:
    """The rotation's input from the finished onboarding (its request and output), or why there is none."""
    onboarding_id = str(status["instanceId"])
    request = status_view.stored_request(status)
    output = durable_status.json_object(status.get("output"))
    result = OnboardingResult.from_json(output) if output else None
    if request is None or result is None or result.app is None:
        return "The onboarding did not leave an app registration to rotate the secret of."
    # The mailboxes as the mailbox operations left them: a removed one refuses every login now.
    view = status_view.build_view(status)
    mailbox_ops.overlay(
        view, await fetch_status(client, mailbox_ops.mailbox_operation_instance_id(onboarding_id))
    )
    current = (view.get("mailboxes") or {}).get("results") or []
    verified = [str(r["mailbox"]) for r in current if r["state"] == MailboxState.VERIFIED.value]
    if not verified:
        return "No mailbox of this onboarding is verified, so a new secret could not be verified."
    instance_id = rotation.rotation_instance_id(onboarding_id)
    stream = await webhook_hub.writer_position(client, onboarding_id, Channel.ROTATION, instance_id)
    return rotation.RotationInput(
        onboarding_id=onboarding_id,
        tenant_id=request.tenant_id,
        app=result.app,
        protocols=tuple(p.value for p in request.protocols),
        mailboxes=tuple(verified[: rotation.VERIFY_SAMPLE]),
        request=request.to_json(),
        mailbox_count=len(current),
        lifetime_days=request.secret_lifetime_days,
        overlap_hours=settings.rotation_overlap_hours,
        requested_at=datetime.now(UTC).isoformat(),
        events_sent=stream.sent,
        webhook_channel=stream.channel_name,
        requested_by=requester().to_json(),
        options=settings.workflow_options(),
        credential_type=credential_type,
    )


def _rotation_body(req: func.HttpRequest) -> CredentialType | None:
    """The optional body ``{"credentialType": ...}``; no body keeps the current type."""
    body = req.get_body() or b""
    if not body.strip():
        return None
    check_body_size(body, header(req, "Content-Length"))
    check_content_type(header(req, "Content-Type"))
    return parse_rotation(decode_json(body))


async def _rotate(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, version: ApiVersion
) -> func.HttpResponse:
    """POST .../rotate: start the onboarding's rotation (``<id>:rotation``), or answer the one that
    runs. Only a succeeded or partial onboarding without an offboarding has a secret to rotate.
    ``{"credentialType": "certificate"}`` switches it to a certificate (or back to a secret)."""
    try:
        credential_type = _rotation_body(req)
    except RequestRejected as rejected:
        return problem(rejected.status, "invalid-request", rejected.title, rejected.detail, rejected.errors)
    settings = _settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    links = Links.of(req, settings, version)
    onboarding_id = req.route_params.get("id", "")
    if not ONBOARDING_ID.fullmatch(onboarding_id):
        return not_found(onboarding_id)
    status = await fetch_status(client, onboarding_id, show_input=True)
    if not status:
        return not_found(onboarding_id)
    outcome = status_view.build_view(status)["status"]
    if outcome not in ROTATABLE:
        return _not_rotatable(
            links,
            onboarding_id,
            f"The onboarding is {outcome}; only a succeeded or partial one has a secret to rotate.",
        )
    if await fetch_status(client, offboarding.offboarding_instance_id(onboarding_id)):
        return _not_rotatable(links, onboarding_id, "The onboarding is offboarded (or being offboarded).")
    instance_id = rotation.rotation_instance_id(onboarding_id)
    found = await fetch_status(client, instance_id, show_input=True)
    if found and durable_status.is_running(found):
        return _rotation_answer(links, onboarding_id, found, existing=True)
    job = await _rotation_input(client, settings, status, credential_type)
    if isinstance(job, str):
        return _not_rotatable(links, onboarding_id, job)
    try:
        await client.start_new(rotation.ROTATION_ORCHESTRATOR, instance_id, job.to_json())
    except Exception:  # a concurrent POST won the race, or the engine refused (type only: URLs)
        found = await fetch_status(client, instance_id, show_input=True)
        if found and durable_status.is_running(found):
            return _rotation_answer(links, onboarding_id, found, existing=True)
        log.error("could not start the rotation of %s", onboarding_id)
        return problem(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "rotate-failed",
            "Could not start the rotation",
            "The workflow engine did not accept the rotation. Try again shortly: a repeated POST is safe.",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    log.info("onboarding %s: rotation started", onboarding_id)
    found = await fetch_status(client, instance_id, show_input=True)
    return _rotation_answer(links, onboarding_id, found or {"runtimeStatus": "Pending"}, existing=False)


def _operation_answer(
    links: Links, onboarding_id: str, found: dict[str, Any], *, existing: bool
) -> func.HttpResponse:
    """202 with the operation's view; its progress is the ``mailboxOperation`` part of the
    onboarding's status (``Location``). A POST while it runs answers the same operation."""
    body = {
        "id": onboarding_id,
        "statusUrl": links.status(onboarding_id),
        "existing": existing,
        "mailboxOperation": mailbox_ops.operation_view(found),
    }
    headers = {"Location": links.polling(onboarding_id), "Retry-After": RETRY_AFTER_SECONDS}
    return json_response(body, HTTPStatus.ACCEPTED, headers=headers)


def _not_retryable(links: Links, onboarding_id: str, detail: str) -> func.HttpResponse:
    return problem(
        HTTPStatus.CONFLICT,
        "not-retryable",
        "The onboarding's mailboxes cannot be retried",
        detail,
        headers={"Location": links.polling(onboarding_id)},
    )


async def _operation_input(
    client: df.DurableOrchestrationClient,
    settings: Settings,
    status: dict[str, Any],
    previous: dict[str, Any] | None,
    change: tuple[mailbox_ops.OperationKind, tuple[str, ...]] | None,
) -> mailbox_ops.MailboxOperationInput | str | func.HttpResponse:
    """The operation's input: for a retry (``change`` None) the mailboxes that still need attention
    (the onboarding's, less those an earlier operation verified); else the added or removed ones.
    Or why not."""
    onboarding_id = str(status["instanceId"])
    request = status_view.stored_request(status)
    output = durable_status.json_object(status.get("output"))
    result = OnboardingResult.from_json(output) if output else None
    if request is None or result is None or result.app is None or result.secret is None:
        return "The onboarding did not leave an app registration and secret to grant mailboxes to."
    view = status_view.build_view(status)
    mailbox_ops.overlay(view, previous)
    kind = mailbox_ops.OperationKind.RETRY if change is None else change[0]
    if change is None:
        mailboxes = mailbox_ops.needing_attention(view)
        if not mailboxes:
            return "No mailbox of this onboarding needs attention."
    else:
        refused = _not_changeable(view, *change)
        if refused is not None:
            return refused
        mailboxes = list(change[1])
    rotated = await fetch_status(client, rotation.rotation_instance_id(onboarding_id))
    newer = durable_status.json_object((rotated or {}).get("output"))
    # After a rotation the verify step must read the current secret, not the onboarding's first one.
    rotated_secret = newer.get("secret") if newer.get("status") == "succeeded" else None
    secret = SecretRef.from_json(rotated_secret) if rotated_secret else result.secret
    before = mailbox_ops.finished_result(previous)
    stream = await webhook_hub.writer_position(
        client, onboarding_id, Channel.MAILBOXES, mailbox_ops.mailbox_operation_instance_id(onboarding_id)
    )
    return mailbox_ops.MailboxOperationInput(
        onboarding_id=onboarding_id,
        kind=kind,
        tenant_id=request.tenant_id,
        app=result.app,
        secret=secret,
        protocols=tuple(p.value for p in request.protocols),
        mailboxes=tuple(mailboxes),
        requested_at=datetime.now(UTC).isoformat(),
        events_sent=stream.sent,
        webhook_channel=stream.channel_name,
        requested_by=requester().to_json(),
        options=settings.workflow_options(),
        request=request.to_json(),
        earlier=before.latest if before else (),
    )


def _not_changeable(
    view: dict[str, Any], kind: mailbox_ops.OperationKind, addresses: tuple[str, ...]
) -> func.HttpResponse | None:
    """400 naming each address to add that the onboarding has already, or to remove that it has not;
    or an addition above the request's maximum."""
    known = {r["mailbox"] for r in (view.get("mailboxes") or {}).get("results") or []}
    adding = kind is mailbox_ops.OperationKind.ADD
    pointer = f"/{kind.value}"
    errors = [
        FieldError(f"{pointer}/{i}", f"{m} is already a mailbox of this onboarding")
        if adding
        else FieldError(f"{pointer}/{i}", f"{m} is not a mailbox of this onboarding")
        for i, m in enumerate(addresses)
        if (m in known) == adding
    ]
    if adding and len(known) + len(addresses) > MAX_MAILBOXES:
        errors.append(FieldError(pointer, f"the onboarding would have more than {MAX_MAILBOXES} mailboxes"))
    if not errors:
        return None
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem(HTTPStatus.BAD_REQUEST, "invalid-request", "Invalid mailbox change", detail, errors)


async def _retry(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, version: ApiVersion
) -> func.HttpResponse:
    """POST .../retry: grant and verify again only the mailboxes that need attention, as the
    onboarding's one mailbox operation (``<id>:mailboxes``), or answer the one that runs."""
    return await _mailbox_operation(req, client, version, None)


async def _change_mailboxes(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, version: ApiVersion
) -> func.HttpResponse:
    """POST .../mailboxes ``{"add": [...]}``: tell the admins, then grant and verify the added
    mailboxes; ``{"remove": [...]}``: remove FullAccess and confirm a login is refused. As the
    onboarding's one mailbox operation, or answer the one that runs."""
    try:
        body = req.get_body() or b""
        check_body_size(body, header(req, "Content-Length"))
        check_content_type(header(req, "Content-Type"))
        change, addresses = parse_mailbox_change(decode_json(body))
    except RequestRejected as rejected:
        return problem(rejected.status, "invalid-request", rejected.title, rejected.detail, rejected.errors)
    kind = mailbox_ops.OperationKind(change)
    return await _mailbox_operation(req, client, version, (kind, addresses))


async def _mailbox_operation(
    req: func.HttpRequest,
    client: df.DurableOrchestrationClient,
    version: ApiVersion,
    change: tuple[mailbox_ops.OperationKind, tuple[str, ...]] | None,
) -> func.HttpResponse:
    settings = _settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    links = Links.of(req, settings, version)
    onboarding_id = req.route_params.get("id", "")
    if not ONBOARDING_ID.fullmatch(onboarding_id):
        return not_found(onboarding_id)
    status = await fetch_status(client, onboarding_id, show_input=True)
    if not status:
        return not_found(onboarding_id)
    instance_id = mailbox_ops.mailbox_operation_instance_id(onboarding_id)
    found = await fetch_status(client, instance_id, show_input=True)
    if found and durable_status.is_running(found):
        return _operation_answer(links, onboarding_id, found, existing=True)
    outcome = status_view.build_view(status)["status"]
    if outcome not in ROTATABLE:
        return _not_retryable(
            links, onboarding_id, f"The onboarding is {outcome}; only a succeeded or partial one can change."
        )
    if await fetch_status(client, offboarding.offboarding_instance_id(onboarding_id)):
        return _not_retryable(links, onboarding_id, "The onboarding is offboarded (or being offboarded).")
    job = await _operation_input(client, settings, status, found, change)
    if isinstance(job, func.HttpResponse):
        return job
    if isinstance(job, str):
        return _not_retryable(links, onboarding_id, job)
    try:
        await client.start_new(mailbox_ops.MAILBOX_OPERATION_ORCHESTRATOR, instance_id, job.to_json())
    except Exception:  # a concurrent POST won the race, or the engine refused (type only: URLs)
        found = await fetch_status(client, instance_id, show_input=True)
        if found and durable_status.is_running(found):
            return _operation_answer(links, onboarding_id, found, existing=True)
        log.error("could not start the mailbox operation of %s", onboarding_id)
        return problem(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "mailboxes-failed",
            "Could not start the mailbox operation",
            "The workflow engine did not accept it. Try again shortly: a repeated POST is safe.",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    log.info("onboarding %s: mailbox operation %s started", onboarding_id, job.kind.value)
    found = await fetch_status(client, instance_id, show_input=True)
    pending = {"runtimeStatus": "Pending", "input": job.to_json()}
    return _operation_answer(links, onboarding_id, found or pending, existing=False)


# The triggers: each delegates, and answers 503 when the Durable engine cannot be asked.
async def _guarded(handler: Any, *args: Any) -> func.HttpResponse:
    # The lines of a call on one onboarding carry its id; a start binds the id once it has one.
    logcontext.bind_request(args[0].route_params.get("id"), handler.__name__.strip("_"))
    try:
        response: func.HttpResponse = await handler(*args)
    except EngineUnavailable:
        return engine_unavailable()
    return response
