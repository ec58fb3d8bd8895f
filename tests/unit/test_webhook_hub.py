"""Events after the onboarding's outcome (an offboarding's) reach a delivery orchestration that may
be finishing: an event it completes without reading is dropped by Durable, so the sender starts it
again with the event in its state. A day-2 writer numbers its events on its own channel, after the
higher of what the delivery took of it and what the writer's last run reported; a writer numbering
in the whole stream (from before channels) after the highest number any writer or the delivery
reports."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pytest

from onboarding import webhook_hub
from onboarding.webhooks import Channel, DeliveryState, EventType, StreamPosition, envelope


class Runtime(Enum):
    Pending = 0
    Running = 1
    Completed = 2


@dataclass
class Status:
    runtime_status: Runtime
    custom_status: Any = None
    output: Any = None
    input_: Any = None


@dataclass
class FinishingDelivery:
    """A delivery orchestration that had delivered everything and completes as the event is raised."""

    state: DeliveryState
    raised: list[str] = field(default_factory=list)
    started: list[dict[str, Any]] = field(default_factory=list)
    completed: bool = False

    async def get_status(self, instance_id: str, show_input: bool = False) -> Status:
        if self.started:
            return Status(Runtime.Running, custom_status=DeliveryState.from_json(self.started[-1]).summary())
        if self.completed:
            return Status(Runtime.Completed, output=self.state.to_json())
        return Status(Runtime.Running, custom_status=self.state.summary())

    async def raise_event(self, instance_id: str, name: str, data: Any) -> None:
        self.raised.append(name)
        self.completed = True  # it was draining: it completes without reading the event

    async def start_new(self, name: str, instance_id: str, payload: dict[str, Any]) -> None:
        self.started.append(payload)


def event(sequence: int, type_: EventType) -> dict[str, Any]:
    return envelope("onb-1", sequence, type_.value, "2026-12-02T00:00:00+00:00", {})


async def test_an_event_raised_as_the_delivery_finishes_is_not_lost_but_restarts_it_with_the_event():
    state = DeliveryState("onb-1")
    for n, kind in enumerate([EventType.ACCEPTED, EventType.COMPLETED], start=1):
        state.add_event(event(n, kind))
    client = FinishingDelivery(state)
    await webhook_hub.send_event(client, "onb-1", event(3, EventType.OFFBOARDING_STARTED))
    assert client.raised == ["WebhookEvent-3"]
    [restarted] = client.started
    assert [e["sequence"] for e in restarted["events"]] == [1, 2, 3]


async def test_an_event_to_a_finished_delivery_starts_it_again_with_the_event_in_its_state():
    state = DeliveryState("onb-1")
    state.add_event(event(1, EventType.COMPLETED))
    client = FinishingDelivery(state, completed=True)
    await webhook_hub.send_event(client, "onb-1", event(2, EventType.OFFBOARDING_STARTED))
    assert client.raised == []  # nothing raised to an instance that is not there to read it
    assert [e["type"] for e in client.started[0]["events"]] == ["onboarding.completed", "offboarding.started"]


@dataclass
class Stream:
    """The statuses of an onboarding's instances, by id: what a writer reads before numbering."""

    statuses: dict[str, Status]

    async def get_status(self, instance_id: str, show_input: bool = False) -> Status | None:
        status = self.statuses.get(instance_id)
        if status is not None and not show_input:
            return Status(status.runtime_status, status.custom_status, status.output)
        return status


def holding(count: int) -> DeliveryState:
    """A delivery state with events 1..count, the fifth the onboarding's outcome."""
    state = DeliveryState("onb-1")
    for n in range(1, count + 1):
        state.add_event(event(n, EventType.COMPLETED if n == 5 else EventType.MAILBOX_PROGRESS))
    return state


def delivery_holding(count: int, runtime: Runtime = Runtime.Running) -> Status:
    return Status(runtime, custom_status=holding(count).summary())


async def test_the_next_writer_numbers_after_a_finished_rotations_events_the_delivery_has_not_taken_yet():
    # CI run of 2026-12-03: the offboarding read only the delivery (11 events taken) while the
    # rotation had handed over 12 and 13; it numbered its own events 12 and 13, and the delivery kept
    # one event per number.
    stream = Stream(
        {
            "onb-1": Status(Runtime.Completed, output={"webhook_events": 5}),
            "onb-1:mailboxes": Status(Runtime.Completed, output={"webhook_events": 9}),
            "onb-1:rotation": Status(
                Runtime.Completed, output='{"status": "succeeded", "webhook_events": 13}'
            ),
            "onb-1:webhook": delivery_holding(11),
        }
    )
    assert await webhook_hub.last_event_number(stream, "onb-1") == 13


async def test_a_delivery_started_again_is_counted_by_the_events_in_its_input_before_it_first_ran():
    stream = Stream(
        {
            "onb-1": Status(Runtime.Completed, output={"webhook_events": 5}),
            "onb-1:webhook": Status(Runtime.Pending, input_=holding(12).to_json()),
        }
    )
    assert (await webhook_hub.read_delivery(stream, "onb-1") or {})["events"] == 12
    assert await webhook_hub.last_event_number(stream, "onb-1") == 12


async def test_the_delivery_counts_when_it_holds_more_than_any_writer_reported():
    # An onboarding without the number in its output (it failed, or ran before the output had it).
    stream = Stream(
        {
            "onb-1": Status(Runtime.Completed, output="The onboarding failed."),
            "onb-1:webhook": Status(Runtime.Completed, output=holding(7).to_json()),
        }
    )
    assert await webhook_hub.last_event_number(stream, "onb-1") == 7


async def test_a_writer_starting_while_a_rotation_waits_in_its_overlap_numbers_after_the_rotations_first_event():
    # The rotation handed over event 12 and waits a day before its last; a mailbox operation started
    # meanwhile must not take 12 again, whether or not the delivery has taken it yet.
    running = {"status": "running", "steps": {}, "webhook_events": 12}
    stream = Stream(
        {
            "onb-1": Status(Runtime.Completed, output={"webhook_events": 5}),
            "onb-1:rotation": Status(Runtime.Running, custom_status=running),
            "onb-1:webhook": delivery_holding(11, Runtime.Completed),
        }
    )
    assert await webhook_hub.last_event_number(stream, "onb-1") == 12


async def test_an_event_numbered_past_a_lost_one_is_not_taken_and_the_loss_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = DeliveryState("onb-1")
    state.add_event(event(1, EventType.COMPLETED))
    client = FinishingDelivery(state, completed=True)
    with caplog.at_level("WARNING", logger="onboarding.webhooks"):
        await webhook_hub.send_event(client, "onb-1", event(3, EventType.OFFBOARDING_STARTED))
    assert [e["sequence"] for e in client.started[0]["events"]] == [1]  # never a gap in the stream
    assert "webhook event 3 of onb-1 (onboarding) dropped: its delivery holds 1 of them" in caplog.text


def with_channels(count: int, **taken: int) -> DeliveryState:
    state = holding(count)
    state.channels = dict(taken)
    return state


async def test_a_writer_counts_on_from_its_last_runs_report_when_the_delivery_has_not_taken_it_yet():
    stream = Stream(
        {
            "onb-1:rotation": Status(
                Runtime.Completed, output={"status": "succeeded", "webhook_channel_events": 3}
            ),
            "onb-1:webhook": Status(Runtime.Running, custom_status=with_channels(6, rotation=1).summary()),
        }
    )
    position = await webhook_hub.writer_position(stream, "onb-1", Channel.ROTATION, "onb-1:rotation")
    assert position == StreamPosition(Channel.ROTATION, 3)


async def test_other_writers_and_numbers_from_before_channels_do_not_move_a_writers_count():
    # A mailbox operation in the rotation's overlap window, or one from before channels that reported
    # the stream's number, has no say in the rotation's numbers.
    stream = Stream(
        {
            "onb-1": Status(Runtime.Completed, output={"webhook_events": 5}),
            "onb-1:mailboxes": Status(Runtime.Running, custom_status={"webhook_channel_events": 4}),
            "onb-1:rotation": Status(Runtime.Completed, output={"webhook_events": 40}),
            "onb-1:webhook": Status(
                Runtime.Completed, output=with_channels(11, rotation=2, mailboxes=4).to_json()
            ),
        }
    )
    position = await webhook_hub.writer_position(stream, "onb-1", Channel.ROTATION, "onb-1:rotation")
    assert position == StreamPosition(Channel.ROTATION, 2)


async def test_an_offboarding_started_again_numbers_on_from_its_earlier_runs_report():
    # The earlier run's last event may not be taken yet (the delivery counts 1), and its instance now
    # shows the new run: the count the DELETE read from the earlier run (3) decides.
    stream = Stream(
        {"onb-1:webhook": Status(Runtime.Running, custom_status=with_channels(6, offboarding=1).summary())}
    )
    position = await webhook_hub.writer_position(stream, "onb-1", Channel.OFFBOARDING, None, earlier=3)
    assert position == StreamPosition(Channel.OFFBOARDING, 3)
    caught_up = Stream(
        {"onb-1:webhook": Status(Runtime.Running, custom_status=with_channels(9, offboarding=4).summary())}
    )
    position = await webhook_hub.writer_position(caught_up, "onb-1", Channel.OFFBOARDING, None, earlier=3)
    assert position == StreamPosition(Channel.OFFBOARDING, 4)


async def test_a_delivery_still_running_from_before_channels_makes_the_writer_number_in_the_stream():
    old_summary = {k: v for k, v in holding(7).summary().items() if k != "channels"}
    stream = Stream(
        {
            "onb-1": Status(Runtime.Completed, output={"webhook_events": 5}),
            "onb-1:webhook": Status(Runtime.Running, custom_status=old_summary),
        }
    )
    position = await webhook_hub.writer_position(stream, "onb-1", Channel.MAILBOXES, "onb-1:mailboxes")
    assert position == StreamPosition(None, 7)


async def test_a_writers_event_to_a_finished_delivery_starts_it_again_with_its_place_in_the_stream():
    client = FinishingDelivery(with_channels(5, drift=1), completed=True)
    drift = envelope("onb-1", 0, EventType.DRIFT_DETECTED.value, "2026-12-02T00:00:00+00:00", {})
    await webhook_hub.send_event(client, "onb-1", drift, Channel.DRIFT, 2)
    assert client.raised == []
    restarted = DeliveryState.from_json(client.started[0])
    assert restarted.events[-1]["sequence"] == 6 and restarted.events[-1]["id"] == "onb-1:6"
    assert restarted.taken(Channel.DRIFT) == 2


async def test_a_writers_event_to_a_running_delivery_is_raised_under_its_channels_name():
    client = FinishingDelivery(with_channels(3, mailboxes=2))  # the outcome is not in: nothing to watch
    added = envelope("onb-1", 0, EventType.MAILBOXES_ADDED.value, "2026-12-02T00:00:00+00:00", {})
    await webhook_hub.send_event(client, "onb-1", added, Channel.MAILBOXES, 3)
    assert client.raised == ["WebhookEvent-mailboxes-3"]


@dataclass
class BusyDelivery:
    """A running delivery that takes a raised message only between its senders' reads, and keeps one
    buffered message per name as the Python SDK does (a second raise under a name replaces the first)."""

    state: DeliveryState
    buffered: dict[str, Any] = field(default_factory=dict)

    async def get_status(self, instance_id: str, show_input: bool = False) -> Status:
        await asyncio.sleep(0)  # the other sender reads here too
        name = f"WebhookControl-{self.state.next_control}"
        if name in self.buffered:
            self.state.apply_control(self.buffered.pop(name))
        return Status(Runtime.Running, custom_status=self.state.summary())

    async def raise_event(self, instance_id: str, name: str, data: Any) -> None:
        self.buffered[name] = data


async def test_two_subscribe_calls_at_the_same_moment_both_subscribe():
    # Both read control number 0 and raise under it; the delivery takes one. The other sender sees the
    # number move on without its control, and raises it again under the next.
    delivery = BusyDelivery(holding(3))
    urls = ["https://a.example/hook", "https://b.example/hook"]
    await asyncio.gather(
        *(
            webhook_hub.send_control(
                delivery, "onb-1", {"op": "subscribe", "subscriptionId": f"sub-{n}", "url": url}
            )
            for n, url in enumerate(urls)
        )
    )
    assert sorted(s.url for s in delivery.state.subscriptions) == urls
    assert delivery.state.next_control == 2 and delivery.buffered == {}
