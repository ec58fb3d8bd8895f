"""Webhook events handed over alongside the onboarding's next step (procedure version 2), driven with a
recording stand-in for the orchestration context: what is scheduled together, how events are numbered
when a hand-over ends before or after the step, or fails, and that a version-1 history replays as it
ran (each hand-over on its own, before the step)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.durable_functions.models.Task import TaskState

from onboarding import contracts as C
from onboarding.domain import OnboardingInput, Step
from onboarding.settings import default_workflow_options
from onboarding.webhooks import EventType
from orchestrations.onboarding import StepFailed
from orchestrations.onboarding_procedure import Onboarding
from tests.unit.test_status_view import REQUEST

ONBOARDING = "onb-9"
RESOURCE = {"service_principal_id": "exo-sp", "app_role_ids": {"IMAP.AccessAsApp": "r1"}}


@dataclass(eq=False)
class Task:
    name: str
    payload: dict[str, Any]
    state: TaskState = TaskState.RUNNING
    result: Any = None

    def ends(self, result: Any) -> Task:
        self.state, self.result = TaskState.SUCCEEDED, result
        return self

    def fails(self, reason: str) -> Task:
        self.state, self.result = TaskState.FAILED, RuntimeError(reason)
        return self


@dataclass(eq=False)
class Any_:
    tasks: list[Task]


@dataclass
class Context:
    procedure_version: int
    instance_id: str = ONBOARDING
    current_utc_datetime: datetime = datetime(2030, 1, 1, tzinfo=UTC)
    is_replaying: bool = False
    started: list[Task] = field(default_factory=list)

    def get_input(self) -> dict[str, Any]:
        options = replace(default_workflow_options(), procedure_version=self.procedure_version)
        return OnboardingInput(onboarding_id=ONBOARDING, request=REQUEST, options=options).to_json()

    def call_activity_with_retry(self, name: str, retry: object, payload: dict[str, Any]) -> Task:
        task = Task(name, payload)
        self.started.append(task)
        return task

    def task_any(self, tasks: list[Task]) -> Any_:
        return Any_(list(tasks))

    def set_custom_status(self, status: Any) -> None:
        pass


Steps = Generator[Any, Any, Any]


def accepted_then_first_step(onboarding: Onboarding) -> Steps:
    yield from onboarding.emit(EventType.ACCEPTED, {"mailboxCount": 1}, alongside=True)
    return (
        yield from onboarding.call(Step.RESOLVE_EXCHANGE, C.RESOLVE_EXCHANGE, C.ResolveExchange(("IMAP",)))
    )


def sequence(task: Task) -> int:
    return int(task.payload["sequence"])


def last_answer(steps: Steps, task: Task) -> Any:
    """What the procedure returns once ``task`` (its last wait) has ended."""
    with pytest.raises(StopIteration) as done:
        steps.send(task)
    return done.value.value


def test_the_first_step_is_scheduled_with_the_accepted_event_not_after_it() -> None:
    context = Context(procedure_version=2)
    onboarding = Onboarding(context)
    steps = accepted_then_first_step(onboarding)
    waited = next(steps)
    assert isinstance(waited, Any_)
    handover, step = waited.tasks
    assert (handover.name, sequence(handover)) == (C.EMIT_WEBHOOK_EVENT.name, 1)
    assert step.name == C.RESOLVE_EXCHANGE.name
    # The step ends first: the procedure goes on; the hand-over is still out and not counted.
    step.ends({"ok": RESOURCE})
    assert last_answer(steps, step).service_principal_id == "exo-sp"
    assert onboarding.events_sent == 0 and onboarding.handover is handover
    # The next event waits for it, then takes the next number.
    following = onboarding.emit(EventType.WAITING_FOR_ADMIN, {})
    waited = next(following)
    assert isinstance(waited, Any_) and waited.tasks == [handover]
    handover.ends({"ok": {"event_id": "e1"}})
    emitted = following.send(waited)
    assert (emitted.name, sequence(emitted)) == (C.EMIT_WEBHOOK_EVENT.name, 2)
    assert onboarding.events_sent == 1


def test_a_hand_over_that_ends_first_is_counted_and_the_step_is_still_awaited() -> None:
    context = Context(procedure_version=2)
    onboarding = Onboarding(context)
    steps = accepted_then_first_step(onboarding)
    handover, step = next(steps).tasks
    handover.ends({"ok": {"event_id": "e1"}})
    waited = steps.send(handover)
    assert isinstance(waited, Any_) and waited.tasks == [step]
    assert onboarding.events_sent == 1 and onboarding.handover is None
    step.ends({"ok": RESOURCE})
    assert last_answer(steps, step).service_principal_id == "exo-sp"


def test_a_failed_hand_over_takes_no_number_and_a_failed_step_still_fails() -> None:
    context = Context(procedure_version=2)
    onboarding = Onboarding(context)
    steps = accepted_then_first_step(onboarding)
    handover, step = next(steps).tasks
    handover.fails("the Durable API did not answer")
    next_wait = steps.send(handover)
    step.fails("Graph answered 503 five times")
    try:
        steps.send(next_wait.tasks[0])
        raise AssertionError("a step whose activity kept failing must fail")
    except StepFailed as failure:
        assert failure.error.step == Step.RESOLVE_EXCHANGE
    assert onboarding.events_sent == 0 and not onboarding.handed_over
    again = next(onboarding.emit(EventType.COMPLETED, {}))
    assert sequence(again) == 1  # the delivery orchestration never waits for a number not sent


def test_an_onboarding_recorded_before_version_2_hands_each_event_over_before_the_step() -> None:
    context = Context(procedure_version=1)
    onboarding = Onboarding(context)
    steps = accepted_then_first_step(onboarding)
    first = next(steps)
    assert isinstance(first, Task) and first.name == C.EMIT_WEBHOOK_EVENT.name
    assert [t.name for t in context.started] == [C.EMIT_WEBHOOK_EVENT.name]
    second = steps.send(first.ends({"ok": {"event_id": "e1"}}).result)
    assert isinstance(second, Task) and second.name == C.RESOLVE_EXCHANGE.name
    assert onboarding.events_sent == 1


def test_an_input_without_a_procedure_version_is_version_1() -> None:
    recorded = OnboardingInput(onboarding_id=ONBOARDING, request=REQUEST).to_json()
    del recorded["options"]["procedure_version"]
    assert OnboardingInput.from_json(recorded).options.procedure_version == 1
    assert OnboardingInput(onboarding_id=ONBOARDING, request=REQUEST).options.procedure_version == 2
