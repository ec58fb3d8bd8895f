"""The webhook activities: hand an event to the delivery orchestration, and POST one event.

Both run at least once. Emitting twice raises the event's name (``onboarding.webhooks.event_name``)
twice, which the delivery orchestration reads once; delivering twice POSTs the same body with the same
event id, on which receivers de-duplicate.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df

from activities import ActivityFailed, register, typed_activity
from onboarding import activity_names as A
from onboarding import contracts as C
from onboarding import logcontext
from onboarding.domain import OnboardingRequest, OnboardingResult
from onboarding.errors import OnboardingError
from onboarding.lazy import lazy
from onboarding.services import Services
from onboarding.webhooks import Channel, EventType, envelope, event_name, subscription_id

if TYPE_CHECKING:
    from onboarding import webhook_hub
else:  # loaded by the first activity that needs it (onboarding/lazy.py)
    webhook_hub = lazy("onboarding.webhook_hub")

blueprint = df.Blueprint()
log = logging.getLogger("onboarding.activities")


def event_data(emitted: C.EmitWebhookEvent) -> Any:
    """The completion event names every requested mailbox's result; the orchestration keeps only
    counts and the mailboxes that need an admin, so the list is spelled out here."""
    data = emitted.data
    if emitted.type == EventType.COMPLETED.value and emitted.request is not None:
        result = OnboardingResult.from_json(data)
        request = OnboardingRequest.from_json(emitted.request)
        data = {**data, "mailboxes": [m.to_json() for m in result.mailbox_results(request)]}
    return data


register(C.EMIT_WEBHOOK_EVENT)


@blueprint.activity_trigger(input_name="payload", activity=A.EMIT_WEBHOOK_EVENT)
@blueprint.durable_client_input(client_name="client")
async def emit_webhook_event(
    payload: dict[str, Any], client: df.DurableOrchestrationClient
) -> dict[str, Any]:
    emitted = C.EMIT_WEBHOOK_EVENT.payload.from_json(payload)
    with logcontext.bound(emitted.onboarding_id, A.EMIT_WEBHOOK_EVENT):
        return await _emit(client, emitted)


async def _emit(client: df.DurableOrchestrationClient, emitted: C.EmitWebhookEvent) -> dict[str, Any]:
    onboarding_id = emitted.onboarding_id
    channel = Channel(emitted.channel) if emitted.channel else Channel.ONBOARDING
    # A day-2 writer's event gets its place in the stream from the delivery (onboarding/webhooks.py).
    sequence = emitted.sequence if channel is Channel.ONBOARDING else 0
    event = envelope(onboarding_id, sequence, emitted.type, emitted.occurred_at, event_data(emitted))
    url = emitted.callback_url
    try:
        if url:  # the request's callbackUrl is the first subscription, in place before event 1
            control = {"op": "subscribe", "subscriptionId": subscription_id(onboarding_id, url), "url": url}
            await webhook_hub.send_control(client, onboarding_id, control)
        await webhook_hub.send_event(client, onboarding_id, event, channel, emitted.sequence)
    except Exception as exc:  # the SDK's messages can carry the Durable API's URLs: type only
        log.warning(
            "activity %s: could not reach the delivery orchestration (%s)",
            A.EMIT_WEBHOOK_EVENT,
            type(exc).__name__,
        )
        raise ActivityFailed("The webhook event could not be handed to its delivery orchestration.") from None
    return {"ok": C.EventHandedOver(event_name(channel, emitted.sequence)).to_json()}


async def _deliver(services: Services, payload: C.DeliverWebhook) -> int:
    from onboarding.adapters.webhook import post_callback
    from onboarding.links import sign_callback

    event = payload.event
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Onboarding-Signature": sign_callback(services.settings.link_signing_key, body, int(time.time())),
        "X-Onboarding-Event-Id": event["id"],
        "X-Onboarding-Event-Type": event["type"],
    }
    status = await post_callback(
        payload.url, body, headers, allow_private=services.settings.callback_allow_private_networks
    )
    if status >= 400:
        raise OnboardingError(f"The callback receiver answered HTTP {status}.", fix="Check the receiver.")
    return status


typed_activity(C.DELIVER_WEBHOOK, _deliver, on=blueprint)
