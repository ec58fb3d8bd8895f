"""The delivery orchestration of one onboarding's webhook events (instance ``<id>:webhook``).

It takes the events of the onboarding and of each later writer in their order (giving a later
writer's event its place in the stream as it takes it, ``onboarding.webhooks``), POSTs each to every
active subscription in order (a subscription gets event n+1 only after n), and on a failure waits on a
durable timer with exponential backoff (``onboarding.webhooks.retry_delay``), giving a subscription up
only when its receiver has failed for 24 hours in a row. The onboarding never waits for it. After
``WORK_PER_EXECUTION`` steps it continues as new with its state, so an outage with many events keeps
the history short; before it does (or finishes) it takes in every event already raised to it, because
events left unread at continue-as-new are discarded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskState

from onboarding import contracts as C
from onboarding import logcontext, opsevents
from onboarding.webhooks import (
    CONTROL_PREFIX,
    DAY2_CHANNELS,
    DELIVERY_ORCHESTRATOR,
    WORK_PER_EXECUTION,
    Channel,
    DeliveryState,
    Subscription,
    SubscriptionState,
    event_name,
)

blueprint = df.Blueprint()
Steps = Generator[Any, Any, Any]


log = logging.getLogger("onboarding.orchestrations")


def _payload(raw: Any) -> dict[str, Any]:
    # The Python Durable client sends an event's data as JSON text (azure-functions-durable-python#295).
    value = json.loads(raw) if isinstance(raw, str) else raw
    return value if isinstance(value, dict) else {}


def _attempt(context: df.DurableOrchestrationContext, sub: Subscription, event: dict[str, Any]) -> Steps:
    """One POST; the reason it failed, or "" when it was delivered. The activity is not retried by
    Durable: the backoff is this orchestration's own, on durable timers."""
    try:
        delivery = C.DeliverWebhook(url=sub.url, event=event)
        payload = logcontext.with_log_fields(context, "callback_delivery", delivery.to_json())
        reply = yield context.call_activity(C.DELIVER_WEBHOOK.name, payload)
    except Exception as exc:  # transient: the activity's message is secret-free
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "delivery failed"
    if "error" in reply:
        return str(reply["error"].get("message") or "delivery refused")
    return ""


class Inbox:
    """The waits of the orchestration: the stream's next event (the onboarding's, numbered in the
    stream), the next event of each day-2 writer's channel, and the next control.

    A wait is kept until its message is taken, never made again while it is open: the Python SDK
    gives a raised event to the oldest open wait of that name, so a wait left behind by a lost
    ``task_any`` would swallow the message meant for a newer one."""

    def __init__(self, context: df.DurableOrchestrationContext, state: DeliveryState) -> None:
        self.context = context
        self.state = state
        self.events: dict[Channel, tuple[int, Any]] = {}  # each channel's open wait, and its number
        self.control: Any = None

    def tasks(self) -> list[Any]:
        wait = self.context.wait_for_external_event
        for channel in (Channel.ONBOARDING, *DAY2_CHANNELS):
            if channel not in self.events:
                number = self.state.next_number(channel)
                self.events[channel] = (number, wait(event_name(channel, number)))
        if self.control is None:
            self.control = wait(f"{CONTROL_PREFIX}{self.state.next_control}")
        return [*self._event_waits(), self.control]

    def _event_waits(self) -> list[Any]:
        return [task for _, task in self.events.values()]

    def take(self, winner: Any) -> bool:
        """Apply ``winner`` if it is one of the waits; a message is taken exactly once."""
        if winner is None:
            return False
        if winner is self.control:
            self.control = None
            self.state.apply_control(_payload(winner.result))
            return True
        for channel, (number, task) in self.events.items():
            if winner is task:
                del self.events[channel]
                self.state.take(channel, number, _payload(winner.result))
                return True
        return False

    def take_arrived(self) -> bool:
        """Take the messages that arrived in the same episode as the task that won."""
        waits = [*self._event_waits(), self.control]
        arrived = [t for t in waits if t is not None and t.state is TaskState.SUCCEEDED]
        return any([self.take(task) for task in arrived])


def _drain(inbox: Inbox) -> Steps:
    """Take every message already raised (a timer due now loses to an event already received)."""
    took = False
    while True:
        timer = inbox.context.create_timer(inbox.context.current_utc_datetime)
        winner = yield inbox.context.task_any([*inbox.tasks(), timer])
        if winner is timer:
            return inbox.take_arrived() or took
        timer.cancel()
        took = inbox.take(winner) or took


@blueprint.orchestration_trigger(context_name="context", orchestration=DELIVERY_ORCHESTRATOR)
def webhook_delivery_orchestrator(context: df.DurableOrchestrationContext) -> Steps:
    state = DeliveryState.from_json(context.get_input())
    for control in state.inbox:
        state.apply_control(control, raised=False)
    state.inbox = []
    inbox = Inbox(context, state)
    work = 0
    while True:
        for sub in state.due(context.current_utc_datetime):
            while sub.next <= len(state.events) and sub.state == SubscriptionState.ACTIVE.value:
                error = yield from _attempt(context, sub, state.event_for(sub))
                work += 1
                if error:
                    state.failed(sub, error, context.current_utc_datetime)
                    if sub.state == SubscriptionState.GIVEN_UP.value and not context.is_replaying:
                        # The "callbacks given up" alert counts these (infra/app/queries).
                        opsevents.emit(
                            log,
                            opsevents.OpsEvent.CALLBACK_GIVEN_UP,
                            onboarding_id=state.onboarding_id,
                            reason="undelivered",
                        )
                    break
                state.delivered(sub)
        context.set_custom_status(state.summary())
        if state.done() or work >= WORK_PER_EXECUTION:
            if (yield from _drain(inbox)):
                continue
            if state.done():
                return state.to_json()
            context.continue_as_new(state.to_json())
            return None
        wake = state.next_wake()
        timer = context.create_timer(wake) if wake else None
        winner = yield context.task_any(inbox.tasks() + ([timer] if timer else []))
        if timer is not None and winner is not timer:
            timer.cancel()
        inbox.take(winner) or inbox.take_arrived()
        work += 1
