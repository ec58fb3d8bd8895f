"""The diagnosis activities: check an app's chain link by link, and what the drift check needs to
report a breakage (the next webhook sequence, the email, the list of active onboardings).

All read, except the email: the diagnosis changes nothing in the tenant, so running it twice is
harmless; the email goes at least once, like every email of the project. The Durable client
(``durable_client_input``) reads an onboarding's record, never the tenant.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df

from activities import _run, register
from onboarding import contracts as C
from onboarding.errors import InvalidRequestError, NotFoundError, OnboardingError, TransientError
from onboarding.lazy import lazy
from onboarding.services import Services
from onboarding.webhooks import Channel

if TYPE_CHECKING:
    from onboarding import diagnosis, emails, webhook_hub
else:  # what the activities run loads with the first of them (onboarding/lazy.py)
    diagnosis = lazy("onboarding.diagnosis")
    emails = lazy("onboarding.emails")
    webhook_hub = lazy("onboarding.webhook_hub")

blueprint = df.Blueprint()
log = logging.getLogger("onboarding.activities")


def utcnow() -> datetime:
    return datetime.now(UTC)


async def onboarding_record(client: df.DurableOrchestrationClient, onboarding_id: str) -> dict[str, Any]:
    """The onboarding's Durable status document (input and output), as ``status_view`` reads it."""
    try:
        status: Any = await client.get_status(onboarding_id, show_input=True)
    except Exception as exc:  # the SDK's messages can carry the Durable API's URLs: type only
        raise TransientError(
            f"The onboarding's record could not be read ({type(exc).__name__}).", fix="Try again shortly."
        ) from None
    if not status or not getattr(status, "runtime_status", None):
        raise NotFoundError(f"No onboarding {onboarding_id}.", code="onboarding_not_found")
    return {
        "instanceId": onboarding_id,
        "runtimeStatus": status.runtime_status.name,
        "input": status.input_,
        "output": status.output,
    }


async def _target(client: df.DurableOrchestrationClient, p: C.Diagnose) -> diagnosis.Target:
    if p.target:
        return diagnosis.Target.from_json(p.target)
    if p.onboarding_id is None:
        raise InvalidRequestError("A diagnosis needs an onboarding id or a target.", code="not_diagnosable")
    found = diagnosis.target_of(await onboarding_record(client, p.onboarding_id))
    if isinstance(found, str):
        raise InvalidRequestError(found, code="not_diagnosable")
    return found


register(C.DIAGNOSE)
register(C.NEXT_WEBHOOK_SEQUENCE)
register(C.SEND_DRIFT_EMAIL)
register(C.LIST_ACTIVE_ONBOARDINGS)


@blueprint.activity_trigger(input_name="payload", activity=C.DIAGNOSE.name)
@blueprint.durable_client_input(client_name="client")
async def diagnose(payload: dict[str, Any], client: df.DurableOrchestrationClient) -> dict[str, Any]:
    """``C.Diagnose``: answers the whole report, or with ``compact`` only the first broken link (the
    drift check keeps one small object per onboarding in its history)."""
    p = C.Diagnose.from_json(payload)

    async def work(services: Services) -> dict[str, Any]:
        if p.compact:
            return await _compact(services)
        target = await _target(client, p)
        report = await diagnosis.diagnose(services, target, now=utcnow())
        return {
            **report.to_json(),
            "appId": target.app_id,
            "onboardingId": target.onboarding_id,
            "mailboxCount": len(target.mailboxes),
        }

    async def _compact(services: Services) -> dict[str, Any]:
        # For the drift check's fan-out: a diagnosis that cannot run today is an answer too
        # ("unknown"), never an exception that would fail the whole wave.
        try:
            target = await _target(client, p)
            first = (await diagnosis.diagnose(services, target, now=utcnow())).first_broken
        except OnboardingError as exc:
            log.warning("drift check of %s: not diagnosed (%s)", p.onboarding_id, exc.code)
            return {"unknown": exc.message}
        except Exception as exc:
            log.warning("drift check of %s: not diagnosed (%s)", p.onboarding_id, type(exc).__name__)
            return {"unknown": type(exc).__name__}
        return {"firstBroken": first.to_json() if first else None}

    return await _run(C.DIAGNOSE.name, work, payload)


@blueprint.activity_trigger(input_name="payload", activity=C.NEXT_WEBHOOK_SEQUENCE.name)
@blueprint.durable_client_input(client_name="client")
async def next_webhook_sequence(
    payload: dict[str, Any], client: df.DurableOrchestrationClient
) -> dict[str, Any]:
    """The number a drift report's event of a finished onboarding gets: the next on the drift check's
    channel (``webhook_hub.writer_position``; the daily runs are its only writer, one at a time).
    Only once its delivery holds the outcome: a report describes a finished onboarding."""

    p = C.OnboardingRef.from_json(payload)

    async def work(_: Services) -> dict[str, Any]:
        try:
            summary = await webhook_hub.read_delivery(client, p.onboarding_id)
            stream = await webhook_hub.writer_position(client, p.onboarding_id, Channel.DRIFT, None)
        except Exception as exc:
            raise TransientError(
                f"The webhook delivery state could not be read ({type(exc).__name__})."
            ) from None
        if summary is None or not summary.get("final"):
            raise TransientError("The onboarding's outcome event has not reached its delivery yet.")
        after = stream.after_one()
        return C.NextWebhookEvent(after.sent, after.channel_name).to_json()

    return await _run(C.NEXT_WEBHOOK_SEQUENCE.name, work, payload)


@blueprint.activity_trigger(input_name="payload", activity=C.SEND_DRIFT_EMAIL.name)
@blueprint.durable_client_input(client_name="client")
async def send_drift_email(payload: dict[str, Any], client: df.DurableOrchestrationClient) -> dict[str, Any]:
    """Tell the onboarding's admins which link broke and how to fix it."""
    from onboarding.status_view import stored_request
    from onboarding.steps import send_email

    p = C.DriftEmail.from_json(payload)

    async def work(services: Services) -> None:
        record = await onboarding_record(client, p.onboarding_id)
        request = stored_request(record)
        if request is None:
            raise NotFoundError("The onboarding's request is no longer on record: nobody to tell.")
        link = p.link
        message = emails.drift_detected(
            request,
            app_id=p.app_id,
            link=link["name"],
            detail=link["detail"],
            fix=link["fix"],
            brand=emails.Brand.from_settings(services.settings),
        )
        await send_email(services, request.admin_emails, message)

    return await _run(C.SEND_DRIFT_EMAIL.name, work, payload)


@blueprint.activity_trigger(input_name="payload", activity=C.LIST_ACTIVE_ONBOARDINGS.name)
@blueprint.durable_client_input(client_name="client")
async def list_active_onboardings(
    payload: dict[str, Any], client: df.DurableOrchestrationClient
) -> dict[str, Any]:
    """The ids and app ids of the succeeded and partial onboardings, through the Durable instance query
    (completed onboarding instances, every page)."""

    async def work(_: Services) -> list[dict[str, str]]:
        try:
            return await active_onboardings(client)
        except Exception as exc:
            raise TransientError(f"The onboardings could not be listed ({type(exc).__name__}).") from None

    C.NoPayload.from_json(payload)

    return await _run(C.LIST_ACTIVE_ONBOARDINGS.name, work, payload)


ACTIVE_PAGE = 100


async def active_onboardings(client: df.DurableOrchestrationClient) -> list[dict[str, str]]:
    """Every completed onboarding whose outcome left a working app, oldest first. The query is the
    listing's (``endpoints.instances``: the SDK's own returns the first page only), filtered on the
    ``onb-`` id prefix and the Completed runtime status, so no other instance is read."""
    from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

    from endpoints.instances import InstanceQuery, query_page

    found: list[dict[str, str]] = []
    token: str | None = None
    while True:
        query = InstanceQuery(None, None, (OrchestrationRuntimeStatus.Completed,), "onb-", ACTIVE_PAGE, token)
        page, token = await query_page(client, query)
        for status in page:
            output = status.get("output")
            if not isinstance(output, dict) or output.get("outcome") not in diagnosis.ACTIVE_OUTCOMES:
                continue
            app = output.get("app") or {}
            if app.get("app_id"):
                found.append({"onboardingId": str(status.get("instanceId")), "appId": str(app["app_id"])})
        if not token:
            return found
