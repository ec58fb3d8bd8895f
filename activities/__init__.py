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
from typing import TYPE_CHECKING, Any, TypeVar

import azure.durable_functions as df

from onboarding import contracts as C
from onboarding import logcontext
from onboarding.domain import MailboxState
from onboarding.errors import OnboardingError
from onboarding.lazy import lazy
from onboarding.services import Services
from onboarding.settings import load_settings

if TYPE_CHECKING:
    from onboarding import steps
else:
    steps = lazy(
        "onboarding.steps"
    )  # the procedure's code loads with the first activity (onboarding/lazy.py)

blueprint = df.Blueprint()
log = logging.getLogger("onboarding.activities")
P = TypeVar("P", bound=C.Payload)


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


def activity(
    name: str, work: Callable[[Services, dict[str, Any]], Awaitable[Any]], on: df.Blueprint | None = None
) -> None:
    """Register one activity: ``work(services, payload)`` under the shared error policy."""

    async def run(payload: dict[str, Any]) -> dict[str, Any]:
        return await _run(name, lambda services: work(services, payload), payload)

    run.__name__ = run.__qualname__ = name
    (on or blueprint).activity_trigger(input_name="payload", activity=name)(run)


# Every activity's contract, by name: each activity is registered once, with its types.
REGISTERED: dict[str, C.Contract[Any, Any]] = {}


def register(contract: C.Contract[Any, Any]) -> None:
    """Record an activity's contract; for an activity whose trigger needs more bindings than
    ``typed_activity`` gives (a Durable client), the module registering it calls this itself."""
    if contract.name in REGISTERED:
        raise ValueError(f"activity {contract.name} is registered twice")
    REGISTERED[contract.name] = contract


def typed_activity(
    contract: C.Contract[P, Any],
    work: Callable[[Services, P], Awaitable[Any]],
    on: df.Blueprint | None = None,
) -> None:
    """Register one activity with its types (on ``on``, default this module's blueprint): the payload
    is decoded into ``contract.payload`` before ``work`` runs, under the shared error policy (a
    payload that does not decode is a bug, reported as unexpected), and the policy encodes the answer
    (``to_json``)."""
    register(contract)
    activity(contract.name, lambda services, payload: work(services, contract.payload.from_json(payload)), on)


# The steps of the procedure, in order.
typed_activity(C.RESOLVE_EXCHANGE, lambda s, p: steps.resolve_exchange(s, p.roles))
typed_activity(
    C.REGISTER_APP,
    lambda s, p: steps.register_app(
        s,
        onboarding_id=p.onboarding_id,
        display_name=p.display_name,
        roles=p.roles,
        resource=p.resource,
        external_reference=p.external_reference,
    ),
)
typed_activity(C.ENSURE_SERVICE_PRINCIPAL, lambda s, p: steps.ensure_service_principal(s, p.app_id))
typed_activity(
    C.CREATE_SECRET,
    lambda s, p: steps.create_secret(
        s,
        onboarding_id=p.onboarding_id,
        tenant_id=p.tenant_id,
        app=p.app,
        lifetime_days=p.lifetime_days,
        protocols=p.protocols,
        credential_type=p.credential_type,
    ),
)
typed_activity(
    C.GRANT_SECRET_READER,
    lambda s, p: steps.grant_secret_reader(s, onboarding_id=p.onboarding_id, principal_id=p.principal_id),
)
typed_activity(
    C.SEND_DECISION_EMAIL,
    lambda s, p: steps.send_decision_email(
        s,
        onboarding_id=p.onboarding_id,
        request=p.request,
        app_id=p.app_id,
        nonce=p.nonce,
        deadline=datetime.fromisoformat(p.deadline),
        reminder=p.reminder,
        mailbox_count=p.mailbox_count,
    ),
)
typed_activity(
    C.GRANT_APP_ROLES,
    lambda s, p: steps.grant_app_roles(
        s, service_principal_id=p.service_principal_id, resource=p.resource, roles=p.roles
    ),
)
typed_activity(
    C.CHECK_APP_ROLES,
    lambda s, p: steps.check_app_roles(
        s, service_principal_id=p.service_principal_id, resource=p.resource, roles=p.roles
    ),
)
typed_activity(
    C.REGISTER_IN_EXCHANGE,
    lambda s, p: steps.register_in_exchange(
        s,
        app_id=p.app_id,
        service_principal_id=p.service_principal_id,
        app_object_id=p.app_object_id,
        display_name=p.display_name,
    ),
)


async def _grant_mailboxes(s: Services, p: C.GrantMailboxes) -> C.MailboxResults:
    granted = await steps.grant_mailboxes(
        s, service_principal_id=p.service_principal_id, mailboxes=p.mailboxes, protocols=p.protocols
    )
    if p.only_not_granted:
        granted = [r for r in granted if r.state is not MailboxState.GRANTED]
    return C.MailboxResults(tuple(granted))


async def _verify_mailboxes(s: Services, p: C.VerifyMailboxes) -> C.MailboxResults:
    verified = await steps.verify_mailboxes(
        s, tenant_id=p.tenant_id, app=p.app, secret=p.secret, protocols=p.protocols, mailboxes=p.mailboxes
    )
    return C.MailboxResults(tuple(verified))


async def _compensate(s: Services, p: C.Compensate) -> C.Compensation:
    done = await steps.compensate(
        s,
        onboarding_id=p.onboarding_id,
        app=p.app,
        exchange_registered=p.exchange_registered,
        secret_reader=p.secret_reader,
        credential_type=p.credential_type,
    )
    return C.Compensation(tuple(done))


typed_activity(C.GRANT_MAILBOXES, _grant_mailboxes)
typed_activity(C.VERIFY_MAILBOXES, _verify_mailboxes)
typed_activity(C.COMPENSATE, _compensate)
typed_activity(
    C.NOTIFY_OUTCOME,
    lambda s, p: steps.notify_outcome(s, request=p.request, result=p.result, mailbox_count=p.mailbox_count),
)
