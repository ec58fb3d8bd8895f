"""Events after the onboarding's outcome (an offboarding's) reach a delivery orchestration that may
be finishing: an event it completes without reading is dropped by Durable, so the sender starts it
again with the event in its state."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from onboarding import webhook_hub
from onboarding.webhooks import DeliveryState, EventType, envelope


class Runtime(Enum):
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
