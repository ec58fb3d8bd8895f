"""What the diagnosis triggers (``endpoints/diagnoses.py``) do. A module of its own so that the worker's
start does not compile it: each trigger imports it on its first call (the same reason as
``onboarding/lazy.py``).
"""

from __future__ import annotations

import re
import uuid
from http import HTTPStatus
from typing import Any

import azure.durable_functions as df
import azure.functions as func

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
from onboarding import diagnosis, logcontext
from onboarding.drift import DIAGNOSIS_ORCHESTRATOR
from onboarding.errors import ConfigurationError
from onboarding.settings import Settings, load_settings
from onboarding.validation import (
    FieldError,
    RequestRejected,
    check_body_size,
    check_content_type,
    decode_json,
    email_problem,
)

DIAGNOSIS_ID = re.compile(r"diag-[0-9a-f]{32}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
RETRY_AFTER_SECONDS = "5"
_RUNNING = {"Running", "Pending", "ContinuedAsNew"}


def _settings() -> Settings | func.HttpResponse:
    try:
        return load_settings()
    except ConfigurationError:
        return problem(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "misconfigured",
            "Service misconfigured",
            "The function app's settings are incomplete; an operator must fix them.",
        )


def _location(settings: Settings, req: func.HttpRequest, diagnosis_id: str) -> str:
    """The report's URL; with the caller's own ``code`` parameter when it used one (as onboardings do)."""
    url = f"{settings.public_base_url}/api/v1/diagnoses/{diagnosis_id}"
    code = req.params.get("code") if not header(req, "x-functions-key") else None
    return f"{url}?code={code}" if code else url


async def _start(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, settings: Settings, payload: dict[str, Any]
) -> func.HttpResponse:
    diagnosis_id = f"diag-{uuid.uuid4().hex}"
    try:
        await client.start_new(DIAGNOSIS_ORCHESTRATOR, diagnosis_id, payload)
    except Exception:  # the SDK's text may carry the Durable API's URLs
        log.error("could not start diagnosis %s", diagnosis_id)
        return engine_unavailable()
    location = _location(settings, req, diagnosis_id)
    return json_response(
        {"id": diagnosis_id, "status": "running", "statusUrl": location.split("?")[0]},
        HTTPStatus.ACCEPTED,
        headers={"Location": location, "Retry-After": RETRY_AFTER_SECONDS},
    )


async def _diagnose_onboarding(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    settings = _settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    onboarding_id = req.route_params.get("id", "")
    if not ONBOARDING_ID.fullmatch(onboarding_id):
        return not_found(onboarding_id)
    status = await fetch_status(client, onboarding_id, show_input=True)
    if not status:
        return not_found(onboarding_id)
    target = diagnosis.target_of(status)
    if isinstance(target, str):
        return problem(HTTPStatus.CONFLICT, "not-diagnosable", "Nothing to diagnose", target)
    return await _start(req, client, settings, {"onboarding_id": onboarding_id})


def parse_diagnosis_request(data: Any, *, tenant_id: str) -> diagnosis.Target | list[FieldError]:
    """``{"appId", "mailbox", "tenantId"[, "protocols"]}``, or every problem with it."""
    if not isinstance(data, dict):
        return [FieldError("", "must be a JSON object")]
    errors = [
        FieldError(f"/{k}", "unknown field")
        for k in data
        if k not in {"appId", "mailbox", "tenantId", "protocols"}
    ]
    app_id, mailbox, tenant = data.get("appId"), data.get("mailbox"), data.get("tenantId")
    if not isinstance(app_id, str) or not _GUID.fullmatch(app_id):
        errors.append(FieldError("/appId", "required: the app's application (client) id, a GUID"))
    if not isinstance(mailbox, str) or email_problem(mailbox):
        reason = email_problem(mailbox) if isinstance(mailbox, str) else None
        errors.append(
            FieldError("/mailbox", f"required: a mailbox address{f' ({reason})' if reason else ''}")
        )
    if not isinstance(tenant, str) or not _GUID.fullmatch(tenant):
        errors.append(FieldError("/tenantId", "required: the tenant id, a GUID"))
    elif tenant.lower() != tenant_id.lower():
        errors.append(FieldError("/tenantId", "is not the tenant this deployment serves"))
    protocols = data.get("protocols", [])
    if (
        not isinstance(protocols, list)
        or not all(p in ("IMAP", "POP") for p in protocols)
        or len(set(protocols)) != len(protocols)
    ):
        errors.append(FieldError("/protocols", "optional: a list of distinct values IMAP, POP"))
    if errors:
        return errors
    return diagnosis.Target.from_json(
        {
            "tenant_id": str(tenant).lower(),
            "app_id": str(app_id).lower(),
            "mailboxes": [mailbox],
            "protocols": protocols,
        }
    )


async def _diagnose_app(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    settings = _settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    try:
        body = req.get_body() or b""
        check_body_size(body, header(req, "Content-Length"))
        check_content_type(header(req, "Content-Type"))
        parsed = parse_diagnosis_request(decode_json(body), tenant_id=settings.tenant_id)
    except RequestRejected as rejected:
        return problem(rejected.status, "invalid-request", rejected.title, rejected.detail, rejected.errors)
    if isinstance(parsed, list):
        return problem(
            HTTPStatus.BAD_REQUEST,
            "invalid-request",
            "Invalid diagnosis request",
            "; ".join(f"{e.field}: {e.message}" for e in parsed),
            parsed,
        )
    return await _start(req, client, settings, {"target": parsed.to_json()})


async def _report(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    settings = _settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    diagnosis_id = req.route_params.get("diagnosisId", "")
    if not DIAGNOSIS_ID.fullmatch(diagnosis_id):
        return _unknown()
    status = await fetch_status(client, diagnosis_id)
    if not status:
        return _unknown()
    runtime = status.get("runtimeStatus")
    if runtime in _RUNNING:
        return json_response(
            {"id": diagnosis_id, "status": "running"},
            HTTPStatus.ACCEPTED,
            headers={"Location": _location(settings, req, diagnosis_id), "Retry-After": RETRY_AFTER_SECONDS},
        )
    output = status.get("output") if runtime == "Completed" else None
    if isinstance(output, dict) and isinstance(output.get("ok"), dict):
        return json_response(
            {
                "id": diagnosis_id,
                "status": "completed",
                "checkedAt": status.get("lastUpdatedTime"),
                **output["ok"],
            }
        )
    error = output.get("error") if isinstance(output, dict) else None
    if not isinstance(error, dict):
        error = {"message": "The diagnosis ended unexpectedly.", "fix": "Diagnose again."}
    return json_response(
        {
            "id": diagnosis_id,
            "status": "failed",
            "error": {
                "message": error.get("message", ""),
                "fix": error.get("fix", ""),
                "code": error.get("code", ""),
            },
        }
    )


def _unknown() -> func.HttpResponse:
    return problem(HTTPStatus.NOT_FOUND, "not-found", "Diagnosis not found", "No diagnosis has this id.")


async def _guarded(
    handler: Any, req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    logcontext.bind_request(req.route_params.get("id"), handler.__name__.strip("_"))
    try:
        response: func.HttpResponse = await handler(req, client)
    except EngineUnavailable:
        return engine_unavailable()
    return response


async def diagnose_onboarding_v1(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _guarded(_diagnose_onboarding, req, client)


async def diagnose_app_v1(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await _guarded(_diagnose_app, req, client)


async def get_diagnosis_v1(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await _guarded(_report, req, client)
