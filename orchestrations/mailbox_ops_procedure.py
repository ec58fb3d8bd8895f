"""The mailbox operation's procedure inside its orchestrator: ``mailbox_operation_orchestrator`` in
``orchestrations/mailbox_ops.py`` registers it and imports this module on its first run, so the worker's
start does not compile it (the same reason as ``onboarding/lazy.py``).

Deterministic: time from the context, every effect from an activity, the secret only in Key Vault.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from onboarding import contracts as C
from onboarding import plan
from onboarding.domain import MailboxResult, MailboxState
from onboarding.mailbox_ops import (
    NOTIFY_ADDED,
    RECORD,
    MailboxOperationInput,
    MailboxOperationResult,
    NotifyAdded,
    OperationKind,
    OperationStatus,
    OperationStep,
    RecordMailboxOperation,
)
from onboarding.offboarding import REMOVE_MAILBOX_ACCESS, MailboxRemoval, RemoveMailboxAccess
from onboarding.webhooks import EventType
from orchestrations.onboarding import MailboxBatch, StepFailed, call, emit_after, retry_policy

Steps = Generator[Any, Any, Any]
EVENTS = {
    OperationKind.RETRY: (EventType.MAILBOXES_RETRY_STARTED, EventType.MAILBOXES_RETRIED),
    OperationKind.ADD: (EventType.MAILBOXES_ADD_STARTED, EventType.MAILBOXES_ADDED),
    OperationKind.REMOVE: (EventType.MAILBOXES_REMOVE_STARTED, EventType.MAILBOXES_REMOVED),
}


class MailboxOperation:
    def __init__(self, context: df.DurableOrchestrationContext) -> None:
        self.context = context
        self.job = MailboxOperationInput.from_json(context.get_input())
        self.retry = retry_policy(self.job.options)
        self.stream = self.job.stream
        self.done: list[MailboxResult] = []

    def show(self) -> None:
        counts = plan.count_states(r.state.value for r in self.done)
        self.context.set_custom_status(
            {
                "status": OperationStatus.RUNNING.value,
                "kind": self.job.kind.value,
                "counts": counts,
                **self.stream.reported(),
            }
        )

    def emit(self, event_type: EventType, data: dict[str, Any]) -> Steps:
        """The next event of the onboarding's stream; a courtesy that never stops the operation."""
        self.stream = yield from emit_after(
            self.context, self.retry, self.job.onboarding_id, self.stream, event_type, data, "mailboxes"
        )

    # -- the procedure -----------------------------------------------------------------------------
    def run(self) -> Steps:
        started, ended = EVENTS[self.job.kind]
        yield from self.emit(started, {"mailboxes": list(self.job.mailboxes)})
        self.show()
        told = (yield from self.tell_admins()) if self.job.kind is OperationKind.ADD else True
        if told:
            size = self.job.options.mailbox_batch_size
            work = self.remove_and_confirm if self.job.kind is OperationKind.REMOVE else self.grant_and_verify
            for start in range(0, len(self.job.mailboxes), size):
                yield from work(self.job.mailboxes[start : start + size])
                self.show()
        result = MailboxOperationResult.of(self.job.onboarding_id, self.job.kind, self.done, self.job.earlier)
        yield from self.record(result)
        yield from self.emit(ended, {k: v for k, v in result.to_json().items() if k != "latest"})
        shown = {
            "status": result.status.value,
            "kind": self.job.kind.value,
            **self.stream.reported(),
        }
        self.context.set_custom_status(shown)
        return {**result.to_json(), **self.stream.reported()}

    def tell_admins(self) -> Steps:
        """Before the grants: no consent is asked for added mailboxes, so the admins are told. An
        email that cannot be sent stops the operation before any access is granted."""
        payload = NotifyAdded(self.job.onboarding_id, self.job.request, self.job.mailboxes)
        try:
            yield from call(self.context, OperationStep.NOTIFY, NOTIFY_ADDED, payload, self.retry)
        except StepFailed as failure:
            detail = f"Not granted: the admins could not be told by email ({failure.error.message}). POST the add again."
            self.done.extend(MailboxResult(m, MailboxState.FAILED, detail) for m in self.job.mailboxes)
            return False
        return True

    def grant_and_verify(self, mailboxes: tuple[str, ...]) -> Steps:
        """The onboarding's own batch steps: grant FullAccess, then log in until verified or the
        verify window ends. A grant that cannot complete fails its mailboxes with the cause."""
        batch = MailboxBatch(self.context, self.job.job(mailboxes))
        try:
            results = yield from batch.grant()
        except StepFailed as failure:
            detail = f"FullAccess could not be granted: {failure.error.message} {failure.error.fix}".strip()
            self.done.extend(MailboxResult(m, MailboxState.FAILED, detail) for m in mailboxes)
            return
        results = yield from batch.verify(results)
        self.done.extend(results[m] for m in mailboxes)

    def remove_and_confirm(self, mailboxes: tuple[str, ...]) -> Steps:
        """The offboarding's ``Remove-MailboxPermission`` step, then log in until each mailbox is
        refused (a removal takes a while to apply everywhere) or the verify window ends."""
        assert self.job.app.service_principal_id is not None
        payload = RemoveMailboxAccess(self.job.onboarding_id, self.job.app.service_principal_id, mailboxes)
        try:
            removal: MailboxRemoval = yield from call(
                self.context, OperationStep.REMOVE, REMOVE_MAILBOX_ACCESS, payload, self.retry
            )
        except StepFailed as failure:
            detail = f"FullAccess could not be removed: {failure.error.message} {failure.error.fix}".strip()
            self.done.extend(MailboxResult(m, MailboxState.FAILED, detail) for m in mailboxes)
            return
        refused = dict(removal.failed)
        results = {m: MailboxResult(m, MailboxState.FAILED, refused[m]) for m in mailboxes if m in refused}
        pending = [m for m in mailboxes if m not in refused]
        options = self.job.options
        give_up = self.context.current_utc_datetime + timedelta(minutes=options.verify_window_minutes)
        attempt = 0
        while pending:
            check = C.VerifyMailboxes(
                self.job.tenant_id, self.job.app, self.job.secret, self.job.protocols, tuple(pending)
            )
            try:
                logins: C.MailboxResults = yield from call(
                    self.context, OperationStep.CONFIRM_REMOVED, C.VERIFY_MAILBOXES, check, self.retry
                )
            except StepFailed as failure:
                why = f"FullAccess removed, but a login could not be tried to confirm it: {failure.error.message}"
                results.update((m, MailboxResult(m, MailboxState.FAILED, why)) for m in pending)
                break
            for login in logins.results:
                if login.state is not MailboxState.VERIFIED:  # the login is refused: the removal holds
                    results[login.mailbox] = MailboxResult(
                        login.mailbox, MailboxState.REMOVED, "FullAccess removed; a login is now refused."
                    )
            pending = [m for m in pending if m not in results]
            if not pending or self.context.current_utc_datetime >= give_up:
                break
            wait = plan.backoff(attempt, options.poll_initial_seconds, options.poll_max_seconds)
            yield self.context.create_timer(min(self.context.current_utc_datetime + wait, give_up))
            attempt += 1
        stale = (
            f"FullAccess was removed, but a login still worked after {options.verify_window_minutes} minutes. "
            "Check Get-MailboxPermission, then remove the mailbox again."
        )
        results.update((m, MailboxResult(m, MailboxState.FAILED, stale)) for m in pending)
        self.done.extend(results[m] for m in mailboxes)

    def record(self, result: MailboxOperationResult) -> Steps:
        payload = RecordMailboxOperation(result, self.context.current_utc_datetime.isoformat())
        try:
            yield from call(self.context, OperationStep.RECORD, RECORD, payload, self.retry)
        except StepFailed:  # the record is a log of operations: the mailboxes' results stand
            return
