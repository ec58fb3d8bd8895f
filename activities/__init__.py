"""Activities: one step of the procedure each, thin over ``onboarding.steps``.

Error policy, shared by all: a permanent failure (``OnboardingError``) is returned as data,
``{"error": {...}}``, so the orchestrator ends the step with the cause and the fix without pointless
retries; a transient one is raised with a secret-free message so Durable retries it; anything
unexpected is raised with its type name only, because its message might quote a response body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import azure.durable_functions as df

from onboarding import activity_names as A
from onboarding import steps
from onboarding.domain import (
    AppRegistration,
    ExchangeResource,
    OnboardingRequest,
    OnboardingResult,
    SecretRef,
)
from onboarding.errors import OnboardingError
from onboarding.services import Services
from onboarding.settings import load_settings

blueprint = df.Blueprint()
log = logging.getLogger("onboarding.activities")


class ActivityFailed(Exception):
    """Raised to let Durable retry; its message is safe to store."""


async def _run(name: str, work: Callable[[Services], Awaitable[Any]]) -> dict[str, Any]:
    try:
        async with Services(load_settings()) as services:
            result = await work(services)
    except OnboardingError as exc:
        if exc.retryable:
            log.warning("activity %s: transient failure (%s)", name, exc.code)
            raise ActivityFailed(str(exc)) from None
        log.warning("activity %s: failed (%s)", name, exc.code)
        return {"error": {"message": exc.message, "fix": exc.fix, "code": exc.code, "step": name}}
    except Exception as exc:
        log.error("activity %s: unexpected %s", name, type(exc).__name__)
        raise ActivityFailed(f"{name} failed unexpectedly ({type(exc).__name__}).") from None
    if hasattr(result, "to_json"):
        result = result.to_json()
    elif isinstance(result, list):
        result = [item.to_json() if hasattr(item, "to_json") else item for item in result]
    return {"ok": result}


@blueprint.activity_trigger(input_name="payload", activity=A.RESOLVE_EXCHANGE)
async def resolve_exchange(payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(A.RESOLVE_EXCHANGE, lambda s: steps.resolve_exchange(s, payload["roles"]))


@blueprint.activity_trigger(input_name="payload", activity=A.REGISTER_APP)
async def register_app(payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(
        A.REGISTER_APP,
        lambda s: steps.register_app(
            s,
            onboarding_id=payload["onboarding_id"],
            display_name=payload["display_name"],
            roles=payload["roles"],
            resource=ExchangeResource.from_json(payload["resource"]),
            external_reference=payload.get("external_reference"),
        ),
    )


@blueprint.activity_trigger(input_name="payload", activity=A.ENSURE_SERVICE_PRINCIPAL)
async def ensure_service_principal(payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(
        A.ENSURE_SERVICE_PRINCIPAL, lambda s: steps.ensure_service_principal(s, payload["app_id"])
    )


@blueprint.activity_trigger(input_name="payload", activity=A.CREATE_SECRET)
async def create_secret(payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(
        A.CREATE_SECRET,
        lambda s: steps.create_secret(
            s,
            onboarding_id=payload["onboarding_id"],
            tenant_id=payload["tenant_id"],
            app=AppRegistration.from_json(payload["app"]),
            lifetime_days=payload["lifetime_days"],
            protocols=payload["protocols"],
        ),
    )


@blueprint.activity_trigger(input_name="payload", activity=A.SEND_DECISION_EMAIL)
async def send_decision_email(payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(
        A.SEND_DECISION_EMAIL,
        lambda s: steps.send_decision_email(
            s,
            onboarding_id=payload["onboarding_id"],
            request=OnboardingRequest.from_json(payload["request"]),
            app_id=payload["app_id"],
            nonce=payload["nonce"],
            deadline=datetime.fromisoformat(payload["deadline"]),
            reminder=payload["reminder"],
        ),
    )


@blueprint.activity_trigger(input_name="payload", activity=A.GRANT_APP_ROLES)
async def grant_app_roles(payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(
        A.GRANT_APP_ROLES,
        lambda s: steps.grant_app_roles(
            s,
            service_principal_id=payload["service_principal_id"],
            resource=ExchangeResource.from_json(payload["resource"]),
            roles=payload["roles"],
        ),
    )


@blueprint.activity_trigger(input_name="payload", activity=A.CHECK_APP_ROLES)
async def check_app_roles(payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(
        A.CHECK_APP_ROLES,
        lambda s: steps.check_app_roles(
            s,
            service_principal_id=payload["service_principal_id"],
            resource=ExchangeResource.from_json(payload["resource"]),
            roles=payload["roles"],
        ),
    )


@blueprint.activity_trigger(input_name="payload", activity=A.REGISTER_IN_EXCHANGE)
async def register_in_exchange(payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(
        A.REGISTER_IN_EXCHANGE,
        lambda s: steps.register_in_exchange(
            s,
            app_id=payload["app_id"],
            service_principal_id=payload["service_principal_id"],
            display_name=payload["display_name"],
        ),
    )


@blueprint.activity_trigger(input_name="payload", activity=A.GRANT_MAILBOXES)
async def grant_mailboxes(payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(
        A.GRANT_MAILBOXES,
        lambda s: steps.grant_mailboxes(
            s,
            service_principal_id=payload["service_principal_id"],
            mailboxes=payload["mailboxes"],
            protocols=payload["protocols"],
        ),
    )


@blueprint.activity_trigger(input_name="payload", activity=A.VERIFY_MAILBOXES)
async def verify_mailboxes(payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(
        A.VERIFY_MAILBOXES,
        lambda s: steps.verify_mailboxes(
            s,
            tenant_id=payload["tenant_id"],
            app=AppRegistration.from_json(payload["app"]),
            secret=SecretRef.from_json(payload["secret"]),
            protocols=payload["protocols"],
            mailboxes=payload["mailboxes"],
        ),
    )


@blueprint.activity_trigger(input_name="payload", activity=A.COMPENSATE)
async def compensate(payload: dict[str, Any]) -> dict[str, Any]:
    async def work(s: Services) -> dict[str, list[str]]:
        app = AppRegistration.from_json(payload["app"]) if payload.get("app") else None
        done = await steps.compensate(
            s,
            onboarding_id=payload["onboarding_id"],
            app=app,
            exchange_registered=payload["exchange_registered"],
        )
        return {"done": done}

    return await _run(A.COMPENSATE, work)


@blueprint.activity_trigger(input_name="payload", activity=A.NOTIFY_OUTCOME)
async def notify_outcome(payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(
        A.NOTIFY_OUTCOME,
        lambda s: steps.notify_outcome(
            s,
            request=OnboardingRequest.from_json(payload["request"]),
            result=OnboardingResult.from_json(payload["result"]),
        ),
    )


@blueprint.activity_trigger(input_name="payload", activity=A.POST_CALLBACK)
async def post_callback(payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(
        A.POST_CALLBACK, lambda s: steps.post_callback(s, url=payload["url"], result=payload["result"])
    )
