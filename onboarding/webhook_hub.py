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
import uuid
from typing import Any

from onboarding.durable_status import json_object, runtime_name
from onboarding.webhooks import (
    CHANNEL_EVENTS_REPORTED,
    CONTROL_PREFIX,
    DELIVERY_ORCHESTRATOR,
    EVENTS_REPORTED,
    Channel,
    DeliveryState,
    StreamPosition,
    delivery_instance_id,
    event_name,
    reported_count,
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


async def writer_position(
    client: Any, onboarding_id: str, channel: Channel, writer_instance_id: str | None, *, earlier: int = 0
) -> StreamPosition:
    """Where a day-2 writer about to start stands on its channel: the higher of what the delivery
    has taken of the channel and what the writer's last run reported (its output, or its custom
    status while it runs; ``CHANNEL_EVENTS_REPORTED``). The delivery alone lags: an event raised to it
    is counted only once it took it, and a number read before that would be given twice.

    Only the writer itself adds to its channel, and one run of it at a time, so no other writer's
    start can take its numbers. A delivery still running from before channels existed (its custom
    status has no counts) cannot say how many events of the channel it holds: the writer then numbers
    on from the whole stream, as all writers did before (``last_event_number``).

    ``earlier`` is a report of the writer's last run that its instance no longer shows (an offboarding
    started again under the same id: the DELETE read it first, ``OffboardingInput.events_reported``)."""
    summary = await read_delivery(client, onboarding_id)
    if summary is not None and not isinstance(summary.get("channels"), dict):
        return StreamPosition(None, await last_event_number(client, onboarding_id))
    numbers = [_count(summary or {}, channel), earlier]
    if writer_instance_id is not None:
        numbers.append(_reported(await client.get_status(writer_instance_id), CHANNEL_EVENTS_REPORTED))
    return StreamPosition(channel, max(numbers))


async def last_event_number(client: Any, onboarding_id: str) -> int:
    """The stream's last sequence, for a writer numbering in the whole stream (``writer_position``):
    the highest of what each writer reports (``EVENTS_REPORTED``) and what the delivery holds."""
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
        numbers.append(_reported(await client.get_status(instance_id), EVENTS_REPORTED))
    return max(numbers)


def _reported(status: Any, key: str) -> int:
    """What a writer's run (its Durable status, None when there is none) reports under ``key``."""
    return reported_count(key, getattr(status, "output", None), getattr(status, "custom_status", None))


# A start can lose a race with another sender (the onboarding's first event and a subscribe call
# arriving together); the engine refuses to start a running instance, so read again and raise instead.
_ATTEMPTS = 3


async def _start(client: Any, instance_id: str, state: DeliveryState, *, last_try: bool) -> bool:
    """Start the delivery with ``state``; False when another sender started it first (then the
    caller reads its status again and raises to it), raised on the last try."""
    try:
        await client.start_new(DELIVERY_ORCHESTRATOR, instance_id, state.to_json())
    except Exception:
        if last_try:
            raise
        return False
    return True


async def send_event(
    client: Any,
    onboarding_id: str,
    event: dict[str, Any],
    channel: Channel = Channel.ONBOARDING,
    number: int | None = None,
) -> None:
    """Give an event to the delivery orchestration, starting it if needed: event ``number`` of
    ``channel`` (by default the onboarding's, numbered ``event["sequence"]``).

    A delivery that is not running is started with the event already in its state, so nothing is
    raised to an instance that might not take it. A running one that holds the outcome may be
    finishing at that very moment (events after the outcome, like drift reports, meet this), and an
    event raised to an instance that completes is dropped; so such an event counts as handed over only
    once the delivery shows it, or still runs after a short wait, and otherwise it is sent again."""
    number = int(event["sequence"]) if number is None else number
    instance_id = delivery_instance_id(onboarding_id)
    for attempt in range(_ATTEMPTS):
        status = await client.get_status(instance_id)
        if runtime_name(status) not in _LIVE:
            state = _last_state(status, onboarding_id)
            _add(state, channel, number, event)
            if await _start(client, instance_id, state, last_try=attempt == _ATTEMPTS - 1):
                return
            continue
        await client.raise_event(instance_id, event_name(channel, number), event)
        custom = status.custom_status if isinstance(status.custom_status, dict) else {}
        # Before the outcome is in, the delivery cannot finish (``DeliveryState.done``): nothing to watch.
        if not custom.get("final") or await _taken(client, onboarding_id, channel, number):
            return
    raise RuntimeError("the delivery orchestration did not take the event")


def _add(state: DeliveryState, channel: Channel, number: int, event: dict[str, Any]) -> None:
    """Put the event in a state the delivery is (re)started with; one numbered past an event that
    never arrived is dropped, as the stream has no gaps."""
    expected = state.next_number(channel)
    if number > expected:
        log.warning(
            "webhook event %s of %s (%s) dropped: its delivery holds %s of them",
            number,
            state.onboarding_id,
            channel.value,
            expected - 1,
        )
    else:
        state.take(channel, number, event)


# How long a running delivery is watched after an event was raised to it (see ``send_event``).
_TAKEN_POLLS, _TAKEN_POLL_S = 40, 0.25


async def _taken(client: Any, onboarding_id: str, channel: Channel, number: int) -> bool:
    instance_id = delivery_instance_id(onboarding_id)
    for _ in range(_TAKEN_POLLS):
        status = await client.get_status(instance_id)
        if runtime_name(status) not in _LIVE:
            return _count(_last_state(status, onboarding_id).summary(), channel) >= number
        custom = status.custom_status if isinstance(status.custom_status, dict) else {}
        if _count(custom, channel) >= number:
            return True
        await asyncio.sleep(_TAKEN_POLL_S)
    return True  # still running: a running orchestration keeps the event until it takes it


def _count(summary: dict[str, Any], channel: Channel) -> int:
    """How many events of ``channel`` a delivery summary says it holds (the onboarding's: all)."""
    if channel is Channel.ONBOARDING:
        return int(summary.get("events") or 0)
    return int((summary.get("channels") or {}).get(channel.value) or 0)


async def send_control(client: Any, onboarding_id: str, control: dict[str, Any]) -> None:
    """Subscribe, unsubscribe or redeliver: raised as the next control number, or given in the input
    when the delivery orchestration has to be started (again).

    Two senders that read the number at the same moment raise under one name, and the delivery takes
    only one of them (the SDK keeps one event per name). So the sender watches the delivery move past
    the number, and raises its control again under the next one if the control taken was not its own
    (each carries an id the delivery remembers, ``DeliveryState.applied``)."""
    control = {**control, "controlId": control.get("controlId") or uuid.uuid4().hex}
    instance_id = delivery_instance_id(onboarding_id)
    for attempt in range(_CONTROL_ATTEMPTS):
        status = await client.get_status(instance_id, show_input=True)
        if runtime_name(status) in _LIVE:
            number = _control_number(status)
            await client.raise_event(instance_id, f"{CONTROL_PREFIX}{number}", control)
        else:
            state = _last_state(status, onboarding_id)
            state.inbox.append(control)
            if await _start(client, instance_id, state, last_try=attempt == _CONTROL_ATTEMPTS - 1):
                return
            continue
        if await _control_applied(client, onboarding_id, control["controlId"], number) is not False:
            return
        log.info("webhook control of %s lost a race for number %s; sent again", onboarding_id, number)
    raise RuntimeError("the delivery orchestration did not take the control")


_CONTROL_ATTEMPTS = 5
# How long, and how often, a sender watches for its control: short first, as the delivery normally
# takes a control within milliseconds on a warm host.
_CONTROL_POLLS_S = (0.01, 0.02, 0.05, 0.1, 0.2) + (0.25,) * 40


async def _control_applied(client: Any, onboarding_id: str, control_id: str, number: int) -> bool | None:
    """Whether the delivery applied the control raised as ``number``: True, False (it took another
    control under that number), or None (it has not moved past the number yet: it keeps the event
    and takes it when it gets there)."""
    instance_id = delivery_instance_id(onboarding_id)
    for pause in _CONTROL_POLLS_S:
        await asyncio.sleep(pause)
        status = await client.get_status(instance_id)
        if runtime_name(status) not in _LIVE:
            return control_id in _last_state(status, onboarding_id).applied
        custom = status.custom_status
        if not isinstance(custom, dict):  # (re)started and not through its first episode yet
            continue
        if "applied" not in custom:  # a delivery from before control ids: it cannot tell
            return None
        if control_id in custom["applied"]:
            return True
        if int(custom.get("nextControl", 0)) > number:
            return False
    return None


def _control_number(status: Any) -> int:
    custom = status.custom_status if isinstance(status.custom_status, dict) else None
    if custom is not None:
        return int(custom["nextControl"])
    # Not started yet: its input says which control it waits for first.
    raw = status.input_
    return int((json.loads(raw) if isinstance(raw, str) else raw or {}).get("next_control", 0))
