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
from onboarding import logcontext, steps
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


async def _run(
    name: str, work: Callable[[Services], Awaitable[Any]], payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``work`` under the error policy, every line it logs (ours and the libraries') tagged with the
    onboarding and step the orchestrator named in the payload (``logcontext.LOG_FIELDS``)."""
    onboarding_id, step = logcontext.fields_of(payload or {}, default_step=name)
    with logcontext.bound(onboarding_id, step):
        return await _policy(name, work)


async def _policy(name: str, work: Callable[[Services], Awaitable[Any]]) -> dict[str, Any]:
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


def activity(name: str, work: Callable[[Services, dict[str, Any]], Awaitable[Any]]) -> None:
    """Register one activity: ``work(services, payload)`` under the shared error policy."""

    async def run(payload: dict[str, Any]) -> dict[str, Any]:
        return await _run(name, lambda services: work(services, payload), payload)

    run.__name__ = run.__qualname__ = name
    blueprint.activity_trigger(input_name="payload", activity=name)(run)


async def _compensate(s: Services, p: dict[str, Any]) -> dict[str, list[str]]:
    app = AppRegistration.from_json(p["app"]) if p.get("app") else None
    done = await steps.compensate(
        s, onboarding_id=p["onboarding_id"], app=app, exchange_registered=p["exchange_registered"]
    )
    return {"done": done}


# The steps of the procedure, in order, each decoding its (secret-free) payload.
activity(A.RESOLVE_EXCHANGE, lambda s, p: steps.resolve_exchange(s, p["roles"]))
activity(
    A.REGISTER_APP,
    lambda s, p: steps.register_app(
        s,
        onboarding_id=p["onboarding_id"],
        display_name=p["display_name"],
        roles=p["roles"],
        resource=ExchangeResource.from_json(p["resource"]),
        external_reference=p.get("external_reference"),
    ),
)
activity(A.ENSURE_SERVICE_PRINCIPAL, lambda s, p: steps.ensure_service_principal(s, p["app_id"]))
activity(
    A.CREATE_SECRET,
    lambda s, p: steps.create_secret(
        s,
        onboarding_id=p["onboarding_id"],
        tenant_id=p["tenant_id"],
        app=AppRegistration.from_json(p["app"]),
        lifetime_days=p["lifetime_days"],
        protocols=p["protocols"],
    ),
)
activity(
    A.SEND_DECISION_EMAIL,
    lambda s, p: steps.send_decision_email(
        s,
        onboarding_id=p["onboarding_id"],
        request=OnboardingRequest.from_json(p["request"]),
        app_id=p["app_id"],
        nonce=p["nonce"],
        deadline=datetime.fromisoformat(p["deadline"]),
        reminder=p["reminder"],
        mailbox_count=p.get("mailbox_count"),
    ),
)
activity(
    A.GRANT_APP_ROLES,
    lambda s, p: steps.grant_app_roles(
        s,
        service_principal_id=p["service_principal_id"],
        resource=ExchangeResource.from_json(p["resource"]),
        roles=p["roles"],
    ),
)
activity(
    A.CHECK_APP_ROLES,
    lambda s, p: steps.check_app_roles(
        s,
        service_principal_id=p["service_principal_id"],
        resource=ExchangeResource.from_json(p["resource"]),
        roles=p["roles"],
    ),
)
activity(
    A.REGISTER_IN_EXCHANGE,
    lambda s, p: steps.register_in_exchange(
        s,
        app_id=p["app_id"],
        service_principal_id=p["service_principal_id"],
        app_object_id=p["app_object_id"],
        display_name=p["display_name"],
    ),
)
activity(
    A.GRANT_MAILBOXES,
    lambda s, p: steps.grant_mailboxes(
        s, service_principal_id=p["service_principal_id"], mailboxes=p["mailboxes"], protocols=p["protocols"]
    ),
)
activity(
    A.VERIFY_MAILBOXES,
    lambda s, p: steps.verify_mailboxes(
        s,
        tenant_id=p["tenant_id"],
        app=AppRegistration.from_json(p["app"]),
        secret=SecretRef.from_json(p["secret"]),
        protocols=p["protocols"],
        mailboxes=p["mailboxes"],
    ),
)
activity(A.COMPENSATE, _compensate)
activity(
    A.NOTIFY_OUTCOME,
    lambda s, p: steps.notify_outcome(
        s,
        request=OnboardingRequest.from_json(p["request"]),
        result=OnboardingResult.from_json(p["result"]),
        mailbox_count=p.get("mailbox_count"),
    ),
)
