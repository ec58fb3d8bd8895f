"""The onboarding orchestration: the manual procedure, one durable step at a time. The procedure itself
(``Onboarding``) is in ``orchestrations/onboarding_procedure.py``; this module registers the orchestrators and holds
what the other orchestrations share with it.

Deterministic by construction: time comes from ``context.current_utc_datetime``, ids from
``context.new_uuid()``, every effect from an activity. Activities report permanent failures as data
(``{"error": ...}``) and raise only for transient ones, which Durable retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable
from dataclasses import replace
from datetime import timedelta
from enum import StrEnum
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase

from onboarding import contracts as C
from onboarding import logcontext, plan
from onboarding.domain import (
    GRANTED_DETAIL,
    MAILBOX_BATCH_ORCHESTRATOR,
    MAILBOX_GROUP_ORCHESTRATOR,
    ORCHESTRATOR,
    MailboxResult,
    MailboxState,
    Outcome,
    Step,
    StepError,
    WorkflowOptions,
)
from onboarding.webhooks import EventType, StreamPosition

blueprint = df.Blueprint()
log = logging.getLogger("onboarding.orchestrations")

# Transient failures (throttling, 5xx, dropped connections) get a few durable retries; the adapters
# have already retried in-process, honouring Retry-After, before an activity gives up.
ATTEMPTS = 5


def retry_policy(options: WorkflowOptions, attempts: int = ATTEMPTS) -> df.RetryOptions:
    return df.RetryOptions(
        first_retry_interval_in_milliseconds=options.retry_interval_seconds * 1000,
        max_number_of_attempts=attempts,
    )


Steps = Generator[Any, Any, Any]


class StepFailed(Exception):
    def __init__(self, error: StepError) -> None:
        super().__init__(error.message)
        self.error = error


class Stopped(Exception):
    """The admin rejected, the deadline passed, or the requester cancelled.

    ``left`` says what is deliberately not undone (an app an admin consented to) instead of
    compensating."""

    def __init__(self, outcome: Outcome, detail: str, left: tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
        self.left = left


def call(
    context: df.DurableOrchestrationContext,
    step: StrEnum,
    contract: C.Contract[Any, Any],
    payload: C.Payload,
    retry: df.RetryOptions,
    wait: Callable[[TaskBase], Steps] | None = None,
) -> Steps:
    """Run an activity and read its answer with its contract; turn a reported failure, or retries
    running out, into ``StepFailed``. ``wait`` yields the activity's task in place of a bare ``yield``
    (the onboarding sends a webhook hand-over along with it)."""
    task = context.call_activity_with_retry(
        contract.name, retry, logcontext.with_log_fields(context, step.value, payload.to_json())
    )
    try:
        reply = (yield from wait(task)) if wait is not None else (yield task)
    except Exception as exc:  # the activity kept failing; its message is already secret-free
        raise StepFailed(retries_exhausted(step, retry, exc)) from None
    if "error" in reply:
        raise StepFailed(StepError.from_json({**reply["error"], "step": step}))
    return contract.result(reply["ok"])


def retries_exhausted(step: StrEnum, retry: df.RetryOptions, exc: BaseException) -> StepError:
    """The error of a step whose activity kept failing (its message is already secret-free)."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StepError(
        step=step,
        message=f"The step kept failing after {retry.max_number_of_attempts} attempts: {reason}",
        fix="Check the service's health and the function app's permissions, then submit the request again.",
        code="retries_exhausted",
    )


def emit_after(
    context: df.DurableOrchestrationContext,
    retry: df.RetryOptions,
    onboarding_id: str,
    position: StreamPosition,
    event_type: EventType,
    data: dict[str, Any],
    log_step: str,
) -> Steps:
    """Hand a day-2 writer's next event to the onboarding's delivery orchestration: the next on its
    channel (or, for a writer from before channels, the next in the stream); a courtesy that never
    stops the operation. Answers where the writer stands now."""
    after = position.after_one()
    payload = C.EmitWebhookEvent(
        onboarding_id=onboarding_id,
        sequence=after.sent,
        type=event_type.value,
        occurred_at=context.current_utc_datetime.isoformat(),
        data=data,
        channel=after.channel_name,
    )
    try:
        yield context.call_activity_with_retry(
            C.EMIT_WEBHOOK_EVENT.name, retry, logcontext.with_log_fields(context, log_step, payload.to_json())
        )
    except Exception:
        return position
    # Published at once: the writer's next run numbers on from here even before the delivery took it.
    shown = context.custom_status
    if isinstance(shown, dict):
        context.set_custom_status({**shown, **after.reported()})
    return after


@blueprint.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR)
def onboarding_orchestrator(context: df.DurableOrchestrationContext) -> Steps:
    # The procedure is compiled on the orchestrator's first run, not at the worker's start (onboarding/lazy.py).
    from orchestrations.onboarding_procedure import Onboarding

    return (yield from Onboarding(context).run())


class MailboxLevel:
    """One orchestration's level of the tree of mailbox batches, numbered from the job's
    ``first_batch``.

    At most ``mailbox_fanout`` children: the batches themselves when there are that few, else groups
    of consecutive batches, each a sub-orchestration doing this one level down. A history holds a
    few events per child, so with the children bounded no history grows with N (10,000 mailboxes in
    batches of 200: the parent starts 5 groups of 10 batches instead of 50 batches). Batch ids do not
    depend on the grouping: batch k of an onboarding is always ``<id>:mailboxes:<k>``.

    Pipelined: where the children are batches, this level runs their grant activities itself, in
    batch order, ``mailbox_grants_at_once`` at a time, and starts each batch (which then only
    verifies) as soon as its grants are done, while the next batches are granted. A batch's
    verification so starts when its own FullAccess was given, and waits for its propagation as
    before (``MailboxBatch.verify``), instead of after the grants of every batch; and the worker's
    activity slots are not all held by grants queued behind Exchange's throttling. A grant answer
    names only the mailboxes it did not grant (``C.GrantMailboxes.only_not_granted``), so the
    answers of ten batches stay small in the history replayed at every step. An onboarding started
    before the setting existed (``mailbox_grants_at_once == 0``) replays as it ran: every child at
    once, each batch granting then verifying."""

    def __init__(self, context: df.DurableOrchestrationContext, job: C.MailboxJob) -> None:
        self.context = context
        self.job = job
        self.retry = retry_policy(job.options)
        size = job.options.mailbox_batch_size
        spans = plan.groups(-(-len(job.mailboxes) // size), job.options.mailbox_fanout)
        self.batches = sum(stop - start for start, stop in spans)
        self.children: dict[TaskBase, int] = {}  # running child -> how many batches it runs
        self.grants: dict[TaskBase, C.MailboxJob] = {}  # running grant activity -> its batch
        self.waiting: list[C.MailboxJob] = []  # batches whose grants have not started
        window = job.options.mailbox_grants_at_once
        # One batch has nothing to overlap: it grants and verifies itself, one hop fewer.
        pipelined = window > 0 and len(spans) > 1 and all(stop - start == 1 for start, stop in spans)
        for start, stop in spans:
            part = replace(
                job, mailboxes=job.mailboxes[start * size : stop * size], first_batch=job.first_batch + start
            )
            if pipelined:
                self.waiting.append(part)
            else:
                self.start_child(part, stop - start)
        for _ in range(window if pipelined else 0):
            self.start_grant()

    @property
    def running(self) -> bool:
        return bool(self.children or self.grants)

    def start_child(self, part: C.MailboxJob, batches: int) -> None:
        root = self.job.onboarding_id
        first, last = part.first_batch, part.first_batch + batches - 1
        if first == last:
            name, instance_id = MAILBOX_BATCH_ORCHESTRATOR, f"{root}:mailboxes:{first}"
        else:
            name, instance_id = MAILBOX_GROUP_ORCHESTRATOR, f"{root}:mailboxes:{first}-{last}"
        self.children[self.context.call_sub_orchestrator(name, part.to_json(), instance_id)] = batches

    def start_grant(self) -> None:
        if not self.waiting:
            return
        part = self.waiting.pop(0)
        assert part.app.service_principal_id is not None
        payload = C.GrantMailboxes(
            service_principal_id=part.app.service_principal_id,
            mailboxes=part.mailboxes,
            protocols=part.protocols,
            only_not_granted=True,
        )
        task = self.context.call_activity_with_retry(
            C.GRANT_MAILBOXES.name,
            self.retry,
            logcontext.with_log_fields(self.context, Step.MAILBOX_PERMISSIONS.value, payload.to_json()),
        )
        self.grants[task] = part

    def next_done(self) -> Steps:
        """Wait until a child finishes: its answer (``batch_summary``'s form) and how many batches
        it ran. Grants finishing meanwhile start their batch's verification and the next grants."""
        while True:
            finished = yield self.context.task_any([*self.grants, *self.children])
            if finished in self.children:
                return finished.result, self.children.pop(finished)
            part = self.grants.pop(finished)
            self.start_child(replace(part, grant=self.granted(finished.result)), 1)
            self.start_grant()

    def granted(self, reply: Any) -> C.BatchGrant:
        """A grant activity's answer (only the mailboxes it did not grant) as its batch needs it, or
        the step's error."""
        step = Step.MAILBOX_PERMISSIONS
        if isinstance(reply, BaseException):  # the activity kept failing
            return C.BatchGrant(error=retries_exhausted(step, self.retry, reply))
        if "error" in reply:
            return C.BatchGrant(error=StepError.from_json({**reply["error"], "step": step}))
        return C.BatchGrant(not_granted=C.GRANT_MAILBOXES.result(reply["ok"]).results)


def merge_replies(replies: Iterable[dict[str, Any]]) -> dict[str, Any]:
    replies = list(replies)
    return {
        "counts": plan.merge_counts(reply["counts"] for reply in replies),
        "attention": [item for reply in replies for item in reply["attention"]],
    }


def mailbox_tree(context: df.DurableOrchestrationContext, job: C.MailboxJob) -> Steps:
    """Run the job's mailboxes as batches numbered from its ``first_batch`` and sum up their answers."""
    level = MailboxLevel(context, job)
    replies = []
    while level.running:
        reply, _ = yield from level.next_done()
        replies.append(reply)
    return merge_replies(replies)


@blueprint.orchestration_trigger(context_name="context", orchestration=MAILBOX_GROUP_ORCHESTRATOR)
def mailbox_group_orchestrator(context: df.DurableOrchestrationContext) -> Steps:
    """Consecutive batches of one onboarding, run and summed up as the parent would (``mailbox_tree``)."""
    return (yield from mailbox_tree(context, C.MailboxJob.from_json(context.get_input())))


@blueprint.orchestration_trigger(context_name="context", orchestration=MAILBOX_BATCH_ORCHESTRATOR)
def mailbox_batch_orchestrator(context: df.DurableOrchestrationContext) -> Steps:
    """Log in on each mailbox of a batch its parent granted (``job.grant``) until it works or the
    window ends; without ``job.grant``, grant FullAccess first.

    It never fails as a whole: a step that cannot complete marks its mailboxes failed, with the cause,
    so the parent always gets one result per mailbox.
    """
    job = C.MailboxJob.from_json(context.get_input())
    batch = MailboxBatch(context, job)
    error = job.grant.error if job.grant is not None else None
    if job.grant is None:  # not pipelined (an onboarding started before MAILBOX_GRANTS_AT_ONCE)
        try:
            results = yield from batch.grant()
        except StepFailed as failure:
            error = failure.error
    else:
        results = {m: MailboxResult(m, MailboxState.GRANTED, GRANTED_DETAIL) for m in job.mailboxes}
        results.update((r.mailbox, r) for r in job.grant.not_granted)
    if error is not None:
        detail = f"FullAccess could not be granted: {error.message} {error.fix}".strip()
        return batch_summary(MailboxResult(m, MailboxState.FAILED, detail) for m in batch.mailboxes)
    results = yield from batch.verify(results)
    return batch_summary(results.values())


class MailboxBatch:
    """One batch's grants and its verification loop (``mailbox_batch_orchestrator``)."""

    def __init__(self, context: df.DurableOrchestrationContext, job: C.MailboxJob) -> None:
        self.context = context
        self.options = job.options
        self.retry = retry_policy(self.options)
        self.mailboxes = job.mailboxes
        self.app = job.app
        self.secret = job.secret
        self.tenant_id = job.tenant_id
        self.protocols = job.protocols

    def grant(self) -> Steps:
        """Each mailbox's result after the grants, by mailbox."""
        assert self.app.service_principal_id is not None
        payload = C.GrantMailboxes(
            service_principal_id=self.app.service_principal_id,
            mailboxes=self.mailboxes,
            protocols=self.protocols,
        )
        granted: C.MailboxResults = yield from call(
            self.context, Step.MAILBOX_PERMISSIONS, C.GRANT_MAILBOXES, payload, self.retry
        )
        return {r.mailbox: r for r in granted.results}

    def verify(self, results: dict[str, MailboxResult]) -> Steps:
        """Log in on every granted mailbox, again with backoff while logins are refused (permissions
        propagate), until each verified or the window ended; what still waits then has failed."""
        options = self.options
        pending = [m for m, r in results.items() if r.state is MailboxState.GRANTED]
        give_up = self.context.current_utc_datetime + timedelta(minutes=options.verify_window_minutes)
        attempt = 0
        why = ""
        while pending:
            try:
                results.update((yield from self.verify_once(pending)))
            except StepFailed as failure:
                why = f"Verification could not run: {failure.error.message} {failure.error.fix}".strip()
                break
            pending = [m for m in pending if results[m].state is MailboxState.GRANTED]
            if not pending or self.context.current_utc_datetime >= give_up:
                break
            wait = plan.backoff(attempt, options.poll_initial_seconds, options.poll_max_seconds)
            yield self.context.create_timer(min(self.context.current_utc_datetime + wait, give_up))
            attempt += 1
        for mailbox in pending:
            results[mailbox] = self.unverified(results[mailbox], why)
        return results

    def verify_once(self, mailboxes: list[str]) -> Steps:
        payload = C.VerifyMailboxes(
            tenant_id=self.tenant_id,
            app=self.app,
            secret=self.secret,
            protocols=self.protocols,
            mailboxes=tuple(mailboxes),
        )
        verified: C.MailboxResults = yield from call(
            self.context, Step.VERIFY_LOGIN, C.VERIFY_MAILBOXES, payload, self.retry
        )
        return {r.mailbox: r for r in verified.results}

    def unverified(self, last: MailboxResult, why: str) -> MailboxResult:
        detail = why or (
            f"Login still refused after {self.options.verify_window_minutes} minutes. {last.detail} "
            "Check the mailbox permission with Get-MailboxPermission, then onboard the mailbox again."
        )
        return replace(last, state=MailboxState.FAILED, detail=detail.strip())


def batch_summary(results: Iterable[MailboxResult]) -> dict[str, Any]:
    """What a batch tells the parent: counts, and the results of the mailboxes that need an admin."""
    results = list(results)
    return {
        "counts": plan.count_states(r.state.value for r in results),
        "attention": [r.to_json() for r in results if r.state is not MailboxState.VERIFIED],
    }
