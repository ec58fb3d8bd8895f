"""The delivery orchestration of one onboarding's webhook events (instance ``<id>:webhook``).

It takes the onboarding's events in sequence order, POSTs each to every active subscription in
order (a subscription gets event n+1 only after n), and on a failure waits on a durable timer with
exponential backoff (``onboarding.webhooks.retry_delay``), giving a subscription up only when its
receiver has failed for 24 hours in a row. The onboarding never waits for it. After
``WORK_PER_EXECUTION`` steps it continues as new with its state, so an outage with many events keeps
the history short; before it does (or finishes) it takes in every event already raised to it, because
events left unread at continue-as-new are discarded.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from onboarding import activity_names as A
from onboarding.webhooks import (
    CONTROL_PREFIX,
    DELIVERY_ORCHESTRATOR,
    EVENT_PREFIX,
    WORK_PER_EXECUTION,
    DeliveryState,
    Subscription,
)

blueprint = df.Blueprint()
Steps = Generator[Any, Any, Any]


def _payload(raw: Any) -> dict[str, Any]:
    # The Python Durable client sends an event's data as JSON text (azure-functions-durable-python#295).
    value = json.loads(raw) if isinstance(raw, str) else raw
    return value if isinstance(value, dict) else {}


def _attempt(context: df.DurableOrchestrationContext, sub: Subscription, event: dict[str, Any]) -> Steps:
    """One POST; the reason it failed, or "" when it was delivered. The activity is not retried by
    Durable: the backoff is this orchestration's own, on durable timers."""
    try:
        reply = yield context.call_activity(A.DELIVER_WEBHOOK, {"url": sub.url, "event": event})
    except Exception as exc:  # transient: the activity's message is secret-free
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "delivery failed"
    if "error" in reply:
        return str(reply["error"].get("message") or "delivery refused")
    return ""


def _take(state: DeliveryState, event_task: Any, control_task: Any, winner: Any) -> None:
    if winner is event_task:
        state.add_event(_payload(event_task.result))
    elif winner is control_task:
        state.apply_control(_payload(control_task.result))


def _waits(context: df.DurableOrchestrationContext, state: DeliveryState) -> tuple[Any, Any]:
    return (
        context.wait_for_external_event(f"{EVENT_PREFIX}{state.next_event}"),
        context.wait_for_external_event(f"{CONTROL_PREFIX}{state.next_control}"),
    )


def _drain(context: df.DurableOrchestrationContext, state: DeliveryState) -> Steps:
    """Take every message already raised (a timer due now loses to an event already received)."""
    took = False
    while True:
        event_task, control_task = _waits(context, state)
        timer = context.create_timer(context.current_utc_datetime)
        winner = yield context.task_any([event_task, control_task, timer])
        if winner is timer:
            return took
        timer.cancel()
        _take(state, event_task, control_task, winner)
        took = True


@blueprint.orchestration_trigger(context_name="context", orchestration=DELIVERY_ORCHESTRATOR)
def webhook_delivery_orchestrator(context: df.DurableOrchestrationContext) -> Steps:
    state = DeliveryState.from_json(context.get_input())
    for control in state.inbox:
        state.apply_control(control)
    state.inbox = []
    work = 0
    while True:
        for sub in state.due(context.current_utc_datetime):
            while sub.next <= len(state.events) and sub.state == "active":
                error = yield from _attempt(context, sub, state.event_for(sub))
                work += 1
                if error:
                    state.failed(sub, error, context.current_utc_datetime)
                    break
                state.delivered(sub)
        context.set_custom_status(state.summary())
        if state.done() or work >= WORK_PER_EXECUTION:
            if (yield from _drain(context, state)):
                continue
            if state.done():
                context.set_custom_status(state.summary())
                return state.to_json()
            context.continue_as_new(state.to_json())
            return None
        event_task, control_task = _waits(context, state)
        wake = state.next_wake()
        waits = [event_task, control_task]
        timer = context.create_timer(wake) if wake else None
        winner = yield context.task_any(waits + [timer] if timer else waits)
        if timer is not None and winner is not timer:
            timer.cancel()
        _take(state, event_task, control_task, winner)
        work += 1
