"""The pipelined level of mailbox batches (orchestrations.onboarding.MailboxLevel), driven with a
recording stand-in for the orchestration context: which activities and sub-orchestrations it starts,
in which order, and what a batch is told about its grants."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from onboarding import contracts as C
from onboarding.domain import MailboxState
from onboarding.settings import default_workflow_options
from orchestrations.onboarding import MailboxLevel
from tests.unit.test_contracts import APP, SECRET

ONBOARDING = "onb-7"


@dataclass(eq=False)
class Task:
    kind: str  # "grant" or "batch"
    payload: dict[str, Any]
    instance_id: str = ""
    result: Any = None


@dataclass(eq=False)
class Any_:
    tasks: list[Task]


class Context:
    instance_id = ONBOARDING
    current_utc_datetime = datetime(2030, 1, 1, tzinfo=UTC)

    def __init__(self) -> None:
        self.started: list[Task] = []

    def call_activity_with_retry(self, name: str, retry: object, payload: dict[str, Any]) -> Task:
        assert name == C.GRANT_MAILBOXES.name
        task = Task("grant", payload)
        self.started.append(task)
        return task

    def call_sub_orchestrator(self, name: str, payload: dict[str, Any], instance_id: str) -> Task:
        task = Task("batch", payload, instance_id)
        self.started.append(task)
        return task

    def task_any(self, tasks: list[Task]) -> Any_:
        return Any_(list(tasks))


def job(mailboxes: int, at_once: int) -> C.MailboxJob:
    options = replace(default_workflow_options(), mailbox_batch_size=1, mailbox_grants_at_once=at_once)
    boxes = tuple(f"m{i}@contoso.test" for i in range(mailboxes))
    app = replace(APP, service_principal_id="sp-1")
    return C.MailboxJob(ONBOARDING, "t", app, SECRET, ("IMAP",), options, boxes)


def test_grants_run_in_batch_order_a_few_at_a_time_and_each_batch_starts_when_its_grant_is_done() -> None:
    context = Context()
    level = MailboxLevel(context, job(3, at_once=2))
    assert [(t.kind, t.payload["mailboxes"]) for t in context.started] == [
        ("grant", ["m0@contoso.test"]),
        ("grant", ["m1@contoso.test"]),
    ]
    assert all(t.payload["only_not_granted"] for t in context.started)
    steps = level.next_done()
    waited = next(steps)
    assert isinstance(waited, Any_) and len(waited.tasks) == 2
    first, second = context.started
    # Batch 0's grant step kept failing: batch 0 starts, told why; batch 2's grant starts.
    first.result = RuntimeError("Exchange answered 503 five times")
    waited = steps.send(first)
    assert [(t.kind, t.instance_id) for t in context.started[2:]] == [
        ("batch", f"{ONBOARDING}:mailboxes:0"),
        ("grant", ""),
    ]
    told = C.MailboxJob.from_json(context.started[2].payload)
    assert told.mailboxes == ("m0@contoso.test",) and told.grant is not None and told.grant.error is not None
    assert told.grant.error.code == "retries_exhausted" and "503" in told.grant.error.message
    # Batch 1's grant answered one mailbox not granted: only that one is passed on.
    second.result = {"ok": [{"mailbox": "m1@contoso.test", "state": "not_found", "detail": "No mailbox."}]}
    waited = steps.send(second)
    batch1 = C.MailboxJob.from_json(context.started[4].payload)
    assert batch1.grant is not None and batch1.grant.error is None
    assert [(r.mailbox, r.state) for r in batch1.grant.not_granted] == [
        ("m1@contoso.test", MailboxState.NOT_FOUND)
    ]
    # A batch finishing is what the level answers.
    batch0 = context.started[2]
    batch0.result = {"counts": {"failed": 1}, "attention": []}
    try:
        steps.send(batch0)
    except StopIteration as done:
        assert done.value == ({"counts": {"failed": 1}, "attention": []}, 1)
    else:
        raise AssertionError("the level did not answer the finished batch")


def test_one_batch_and_an_onboarding_from_before_the_setting_grant_inside_the_batch() -> None:
    for mailboxes, at_once in ((1, 2), (3, 0)):
        context = Context()
        MailboxLevel(context, job(mailboxes, at_once))
        assert [t.kind for t in context.started] == ["batch"] * mailboxes
        assert all("grant" not in t.payload for t in context.started)
