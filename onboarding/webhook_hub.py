"""Messages to an onboarding's delivery orchestration (``<id>:webhook``), through a Durable client.

Durable Functions drops an event raised to an instance that does not exist ("If the target
orchestration doesn't exist, the event will be silently dropped", TaskOrchestrationContext.SendEvent
on Microsoft Learn), so every sender first reads the instance's status and starts it when it is
missing. A finished delivery orchestration (the outcome was delivered) is started again from its
last state (its output), with the message in that state, since an event to it would be refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from onboarding.durable_status import json_object, runtime_name
from onboarding.webhooks import (
    CONTROL_PREFIX,
    DELIVERY_ORCHESTRATOR,
    EVENT_PREFIX,
    EVENTS_REPORTED,
    DeliveryState,
    delivery_instance_id,
)

_LIVE = {"Running", "Pending", "ContinuedAsNew"}
log = logging.getLogger("onboarding.webhooks")


def _state_in(value: Any, onboarding_id: str) -> DeliveryState:
    """The delivery state an input or output holds, or an empty one."""
    data = json_object(value)
    if data.get("onboarding_id") == onboarding_id:
        return DeliveryState.from_json(data)
    return DeliveryState(onboarding_id)


def _last_state(status: Any, onboarding_id: str) -> DeliveryState:
    return _state_in(getattr(status, "output", None), onboarding_id)


async def read_delivery(client: Any, onboarding_id: str) -> dict[str, Any] | None:
    """The delivery orchestration's summary (``DeliveryState.summary``), None when it never ran.

    A delivery started (again) with an event in its input shows no custom status until its first
    episode ends, and no output: its input is what it holds then, not an empty state."""
    instance_id = delivery_instance_id(onboarding_id)
    status = await client.get_status(instance_id)
    runtime = runtime_name(status)
    if runtime is None:
        return None
    if runtime not in _LIVE:
        return _last_state(status, onboarding_id).summary()
    if not isinstance(status.custom_status, dict):
        # Rarely: asked again with its input, which holds every event (the status views poll this).
        status = await client.get_status(instance_id, show_input=True)
        if runtime_name(status) not in _LIVE:  # it ended in between
            return _last_state(status, onboarding_id).summary()
    if isinstance(status.custom_status, dict):
        return dict(status.custom_status)
    return _state_in(getattr(status, "input_", None), onboarding_id).summary()


async def last_event_number(client: Any, onboarding_id: str) -> int:
    """The number of the last event of the onboarding's stream, for a writer about to add to it.

    The highest of what each writer reports (``EVENTS_REPORTED`` in the onboarding's, rotation's,
    mailbox operation's and offboarding's outputs, exact, and in a running day-2 operation's custom
    status) and what the delivery holds.

    The delivery alone lags: an event raised to it is counted only once it took it, and a number
    read before that would be given twice. Two events raised under one name before the delivery
    waits for it leave only the later (the SDK keeps one deferred completion per name), so the
    earlier, already handed over, would be lost. Two writers starting at the same moment can still
    read the same number: day-2 operations are rare and the offboarding waits for the others."""
    from onboarding.mailbox_ops import mailbox_operation_instance_id
    from onboarding.offboarding import offboarding_instance_id
    from onboarding.rotation import rotation_instance_id

    writers = (
        onboarding_id,
        rotation_instance_id(onboarding_id),
        mailbox_operation_instance_id(onboarding_id),
        offboarding_instance_id(onboarding_id),
    )
    numbers = [int((await read_delivery(client, onboarding_id) or {}).get("events") or 0)]
    for instance_id in writers:
        status = await client.get_status(instance_id)
        for shown in (getattr(status, "output", None), getattr(status, "custom_status", None)):
            reported = json_object(shown).get(EVENTS_REPORTED)
            numbers.append(reported if isinstance(reported, int) else 0)
    return max(numbers)


# A start can lose a race with another sender (the onboarding's first event and a subscribe call
# arriving together); the engine refuses to start a running instance, so read again and raise instead.
_ATTEMPTS = 3


async def send_event(client: Any, onboarding_id: str, event: dict[str, Any]) -> None:
    """Give event ``event["sequence"]`` to the delivery orchestration, starting it if needed.

    A delivery that is not running is started with the event already in its state, so nothing is
    raised to an instance that might not take it. A running one that holds the outcome may be
    finishing at that very moment (events after the outcome, like drift reports, meet this), and an
    event raised to an instance that completes is dropped; so such an event counts as handed over only
    once the delivery shows it, or still runs after a short wait, and otherwise it is sent again."""
    instance_id = delivery_instance_id(onboarding_id)
    for attempt in range(_ATTEMPTS):
        status = await client.get_status(instance_id)
        if runtime_name(status) not in _LIVE:
            state = _last_state(status, onboarding_id)
            if int(event["sequence"]) > state.next_event:  # numbered past an event that never arrived
                log.warning(
                    "webhook event %s of %s dropped: its delivery holds %s events",
                    event["sequence"],
                    onboarding_id,
                    len(state.events),
                )
            state.add_event(event)
            try:
                await client.start_new(DELIVERY_ORCHESTRATOR, instance_id, state.to_json())
                return
            except Exception:
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
            return
        await client.raise_event(instance_id, f"{EVENT_PREFIX}{event['sequence']}", event)
        custom = status.custom_status if isinstance(status.custom_status, dict) else {}
        # Before the outcome is in, the delivery cannot finish (``DeliveryState.done``): nothing to watch.
        if not custom.get("final") or await _taken(client, onboarding_id, int(event["sequence"])):
            return
    raise RuntimeError("the delivery orchestration did not take the event")


# How long a running delivery is watched after an event was raised to it (see ``send_event``).
_TAKEN_POLLS, _TAKEN_POLL_S = 40, 0.25


async def _taken(client: Any, onboarding_id: str, sequence: int) -> bool:

    instance_id = delivery_instance_id(onboarding_id)
    for _ in range(_TAKEN_POLLS):
        status = await client.get_status(instance_id)
        if runtime_name(status) not in _LIVE:
            return len(_last_state(status, onboarding_id).events) >= sequence
        custom = status.custom_status if isinstance(status.custom_status, dict) else {}
        if int(custom.get("events", 0)) >= sequence:
            return True
        await asyncio.sleep(_TAKEN_POLL_S)
    return True  # still running: a running orchestration keeps the event until it takes it


async def send_control(client: Any, onboarding_id: str, control: dict[str, Any]) -> None:
    """Subscribe, unsubscribe or redeliver: raised as the next control number, or given in the input
    when the delivery orchestration has to be started (again)."""
    instance_id = delivery_instance_id(onboarding_id)
    for attempt in range(_ATTEMPTS):
        status = await client.get_status(instance_id, show_input=True)
        if runtime_name(status) in _LIVE:
            await client.raise_event(instance_id, f"{CONTROL_PREFIX}{_control_number(status)}", control)
            return
        state = _last_state(status, onboarding_id)
        state.inbox.append(control)
        try:
            await client.start_new(DELIVERY_ORCHESTRATOR, instance_id, state.to_json())
            return
        except Exception:
            if attempt == _ATTEMPTS - 1:
                raise


def _control_number(status: Any) -> int:
    custom = status.custom_status if isinstance(status.custom_status, dict) else None
    if custom is not None:
        return int(custom["nextControl"])
    # Not started yet: its input says which control it waits for first.
    raw = status.input_
    return int((json.loads(raw) if isinstance(raw, str) else raw or {}).get("next_control", 0))
