"""The offboarding's procedure inside its orchestrator (``offboarding_orchestrator`` in
``orchestrations/offboarding.py``, which registers it, instance ``<onboarding id>:offboarding``): undo an
onboarding. A module of its own so that the worker's start does not compile it: the orchestrator
imports it on its first run (the same reason as ``onboarding/lazy.py``).

Deterministic like the onboarding's: time from the context, every effect from an activity. Each
removal is its own step; a step that cannot complete is listed in ``left`` with its manual fix and
the next one still runs, because every part left in place keeps some access alive (an app with a live
credential, a FullAccess entry, a secret).
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime
from typing import Any

import azure.durable_functions as df

from onboarding import contracts as C
from onboarding import emails, logcontext, plan
from onboarding.domain import StepState
from onboarding.offboarding import (
    DELETE_APP,
    DELETE_SECRET,
    FIND_APP,
    NOTIFY,
    READ_ONBOARDING,
    REMOVE_EXCHANGE_SP,
    REMOVE_MAILBOX_ACCESS,
    REMOVE_SECRET_READER,
    STEP_TITLES,
    AppDeletion,
    DeleteApp,
    DeletedSecret,
    FindApp,
    FoundApp,
    MailboxRemoval,
    NotifyOffboarded,
    OffboardingInput,
    OffboardingResult,
    OffboardingStatus,
    OffboardStep,
    OnboardingSnapshot,
    ReadOnboarding,
    RemoveExchangeServicePrincipal,
    RemoveMailboxAccess,
)
from onboarding.webhooks import Channel, EventType, StreamPosition
from orchestrations.onboarding import StepFailed, call, emit_after, retry_policy

Steps = Generator[Any, Any, Any]


class Offboarding:
    def __init__(self, context: df.DurableOrchestrationContext) -> None:
        self.context = context
        self.job = OffboardingInput.from_json(context.get_input())
        self.options = self.job.options
        self.retry = retry_policy(self.options)
        self.steps: dict[str, dict[str, str]] = {
            s.value: {"state": StepState.PENDING.value} for s in OffboardStep
        }
        self.removed: list[str] = []
        self.left: list[str] = []
        self.found = FoundApp()
        self.app_unknown = False  # the lookup failed and the onboarding reported no app
        self.stream = StreamPosition(Channel.OFFBOARDING)  # read with the onboarding's state

    # -- progress ------------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        return self.context.current_utc_datetime

    def mark(self, step: OffboardStep, state: StepState, detail: str = "") -> None:
        self.steps[step.value] = {"state": state.value, "at": self.now.isoformat(), "detail": detail}
        self.context.set_custom_status(
            {
                "status": OffboardingStatus.RUNNING.value,
                "purge": self.job.purge,
                "steps": self.steps,
                **self.stream.reported(),
            }
        )

    def call(self, step: OffboardStep, contract: C.Contract[Any, Any], payload: C.Payload) -> Steps:
        return (yield from call(self.context, step, contract, payload, self.retry))

    def attempt(
        self, step: OffboardStep, contract: C.Contract[Any, Any], payload: C.Payload, fix: str
    ) -> Steps:
        """Run a removal step; a failure is listed with its fix, and the offboarding goes on."""
        self.mark(step, StepState.RUNNING)
        try:
            result = yield from self.call(step, contract, payload)
        except StepFailed as failure:
            self.left.append(f"{STEP_TITLES[step]}: {failure.error.message} Fix: {fix}")
            self.mark(step, StepState.FAILED, failure.error.message)
            return None
        return result

    def emit(self, event_type: EventType, data: dict[str, Any]) -> Steps:
        """The next webhook event of the onboarding's stream (see ``Onboarding.emit``); a courtesy that
        never stops the offboarding."""
        self.stream = yield from emit_after(
            self.context,
            self.retry,
            self.job.onboarding_id,
            self.stream,
            event_type,
            data,
            "offboarding",
        )

    # -- the procedure -----------------------------------------------------------------------------
    def run(self) -> Steps:
        onboarding = yield from self.stop_onboarding()
        request = onboarding.request or {}
        mailboxes = onboarding.mailboxes_with_access()
        self.stream = onboarding.stream
        yield from self.emit(EventType.OFFBOARDING_STARTED, {"purge": self.job.purge})
        yield from self.find_app(onboarding)
        mailbox_result = yield from self.remove_mailbox_access(mailboxes)
        yield from self.remove_exchange_service_principal()
        yield from self.delete_app()
        yield from self.remove_secret_reader(request.get("mail_product_principal_id"))
        yield from self.delete_secret()
        return (yield from self.finish(request, mailbox_result, len(mailboxes)))

    def stop_onboarding(self) -> Steps:
        """Cancel a running onboarding and wait until it has ended: until then it may still grant
        a mailbox, and it undoes what it made when cancelled while waiting. A cancellation, not a
        termination: terminating leaves its mailbox sub-orchestrations running (docs/operations.md)."""
        step = OffboardStep.STOP_ONBOARDING
        self.mark(step, StepState.RUNNING)
        attempt = 0
        cancelled, operations = False, list[str]()  # what it waited for
        while True:
            snapshot: OnboardingSnapshot = yield from self.call(
                step,
                READ_ONBOARDING,
                ReadOnboarding(
                    self.job.onboarding_id,
                    cancel=attempt == 0,
                    events_reported=self.job.events_reported,
                ),
            )
            if snapshot.final:
                self.mark(step, StepState.DONE, _stopped(cancelled, operations))
                return snapshot
            if snapshot.waiting_for:
                if snapshot.waiting_for not in operations:
                    operations.append(snapshot.waiting_for)
                self.mark(step, StepState.WAITING, f"Waiting for {snapshot.waiting_for} to end.")
            else:
                cancelled = True
                self.mark(
                    step, StepState.WAITING, "Cancellation requested; waiting for the onboarding to end."
                )
            wait = plan.backoff(attempt, self.options.poll_initial_seconds, self.options.poll_max_seconds)
            yield self.context.create_timer(self.now + wait)
            attempt += 1

    def find_app(self, onboarding: OnboardingSnapshot) -> Steps:
        """The app by its ``uniqueName``; if Graph cannot be asked, what the onboarding reported, and
        without that the app's steps are reported as not attempted (never as nothing to remove)."""
        step = OffboardStep.FIND_APP
        fix = "Check the function app's Microsoft Graph permissions, then send DELETE again."
        found = yield from self.attempt(
            step, FIND_APP, FindApp(self.job.onboarding_id, known_app=onboarding.app), fix
        )
        if found is None:
            self.found = FoundApp.from_json(onboarding.app or {})
            self.app_unknown = not self.found.app_id
            return
        self.found = found
        detail = f"App {self.found.app_id}." if self.found.app_id else "No app registration left."
        self.mark(step, StepState.DONE, detail)

    def nothing_to_do(self, step: OffboardStep, detail: str) -> None:
        if self.app_unknown:
            self.mark(step, StepState.FAILED, "Not attempted: the app registration could not be looked up.")
        else:
            self.mark(step, StepState.SKIPPED, detail)

    def remove_mailbox_access(self, mailboxes: list[str]) -> Steps:
        """In batches (``mailbox_batch_size``), at most ``mailbox_fanout`` at a time; each batch answers
        with a count and its failures, so the history does not grow with every mailbox."""
        step = OffboardStep.MAILBOX_PERMISSIONS
        sp = self.found.service_principal_id
        if not sp or not mailboxes:
            self.nothing_to_do(step, "No service principal or no mailboxes: nothing was granted.")
            return MailboxRemoval(removed=len(mailboxes))
        self.mark(step, StepState.RUNNING)
        size, fanout = self.options.mailbox_batch_size, self.options.mailbox_fanout
        batches = [mailboxes[i : i + size] for i in range(0, len(mailboxes), size)]
        removed, failed = 0, list[tuple[str, str]]()
        for first in range(0, len(batches), fanout):
            wave = batches[first : first + fanout]
            replies = yield from self.wave(sp, wave)
            for batch, reply in zip(wave, replies, strict=True):
                if "error" in reply:
                    why = f"{reply['error']['message']} Fix: run Remove-MailboxPermission for the mailbox."
                    failed.extend((m, why) for m in batch)
                    continue
                answer = MailboxRemoval.from_json(reply["ok"])
                removed += answer.removed
                failed.extend(answer.failed)
        text = f"FullAccess removed on {removed} of {len(mailboxes)} mailboxes."
        if failed:
            self.left.append(
                f"{STEP_TITLES[step]}: {len(failed)} mailboxes still have FullAccess (see mailboxes_failed)."
            )
            self.mark(step, StepState.FAILED, text)
        else:
            self.removed.append(text)
            self.mark(step, StepState.DONE, text)
        return MailboxRemoval(removed=removed, failed=tuple(failed))

    def wave(self, service_principal_id: str, wave: list[list[str]]) -> Steps:
        """Up to ``mailbox_fanout`` batches at once; when one keeps failing, the wave's batches are
        run again one by one, so only the failing batch's mailboxes are reported."""
        step = OffboardStep.MAILBOX_PERMISSIONS

        def payload(batch: list[str]) -> RemoveMailboxAccess:
            return RemoveMailboxAccess(self.job.onboarding_id, service_principal_id, tuple(batch))

        try:
            tasks = [
                self.context.call_activity_with_retry(
                    REMOVE_MAILBOX_ACCESS.name,
                    self.retry,
                    logcontext.with_log_fields(self.context, step.value, payload(b).to_json()),
                )
                for b in wave
            ]
            return (yield self.context.task_all(tasks))
        except Exception:
            replies: list[dict[str, Any]] = []
            for batch in wave:
                try:
                    ok: MailboxRemoval = yield from self.call(step, REMOVE_MAILBOX_ACCESS, payload(batch))
                    replies.append({"ok": ok.to_json()})
                except StepFailed as failure:
                    replies.append({"error": failure.error.to_json()})
            return replies

    def remove_exchange_service_principal(self) -> Steps:
        step = OffboardStep.EXCHANGE_SERVICE_PRINCIPAL
        if not self.found.app_id:
            self.nothing_to_do(step, "No app registration: nothing to remove.")
            return
        app_id = self.found.app_id
        fix = f"Run Remove-ServicePrincipal -Identity {app_id} in Exchange Online PowerShell."
        if (
            yield from self.attempt(
                step,
                REMOVE_EXCHANGE_SP,
                RemoveExchangeServicePrincipal(self.job.onboarding_id, app_id),
                fix,
            )
        ) is not None:
            self.removed.append(f"Removed the Exchange Online service principal of app {app_id}.")
            self.mark(step, StepState.DONE)

    def delete_app(self) -> Steps:
        step = OffboardStep.APP_REGISTRATION
        if not self.found.object_id:
            self.nothing_to_do(step, "No app registration left.")
            return
        fix = f"Delete app registration {self.found.app_id} in Entra ID (App registrations)."
        payload = DeleteApp(
            self.job.onboarding_id, self.found.object_id, self.found.service_principal_id, self.job.purge
        )
        reply: AppDeletion | None = yield from self.attempt(step, DELETE_APP, payload, fix)
        if reply is None:
            return
        if reply.purged:
            text = f"Deleted app registration {self.found.app_id} permanently (purged from deleted items)."
        else:
            text = f"Deleted app registration {self.found.app_id} (restorable for 30 days in Entra ID)."
        self.removed.append(text)
        self.mark(step, StepState.DONE, text)

    def remove_secret_reader(self, principal_id: str | None) -> Steps:
        """Before the secret goes: the mail product's role on it (the request's principal, if any). A role
        assignment is an object of its own in Azure Resource Manager; deleting the secret is not known
        to remove it (no public source says so), so it is removed by name."""
        step = OffboardStep.SECRET_READER
        if not principal_id:
            self.mark(step, StepState.SKIPPED, "The onboarding named no mail product principal.")
            return
        fix = (
            f"Remove the Key Vault Secrets User role assignment of principal {principal_id} on the secret "
            "(the secret's Access control in the Azure portal)."
        )
        payload = C.SecretReaderRef(self.job.onboarding_id, principal_id)
        removed = yield from self.attempt(step, REMOVE_SECRET_READER, payload, fix)
        if removed is not None:
            text = f"Removed the mail product's read access to the secret (principal {principal_id})."
            self.removed.append(text)
            self.mark(step, StepState.DONE, text)

    def delete_secret(self) -> Steps:
        step = OffboardStep.KEY_VAULT_SECRET
        fix = "Delete the secret in the vault."
        reply: DeletedSecret | None = yield from self.attempt(
            step, DELETE_SECRET, C.OnboardingRef(self.job.onboarding_id), fix
        )
        if reply is not None:
            text = f"Deleted Key Vault secret {reply.name} (recoverable while the vault's soft delete lasts)."
            self.removed.append(text)
            self.mark(step, StepState.DONE, text)

    def finish(self, request: dict[str, Any], mailboxes: MailboxRemoval, mailbox_count: int) -> Steps:
        """Tell the admins and the subscribers; the output keeps the steps for the status view."""
        result = OffboardingResult(
            onboarding_id=self.job.onboarding_id,
            status=OffboardingStatus.FAILED if self.left else OffboardingStatus.SUCCEEDED,
            purge=self.job.purge,
            app_id=self.found.app_id,
            removed=tuple(self.removed),
            left=tuple(self.left),
            mailboxes_removed=mailboxes.removed,
            mailboxes_failed=mailboxes.failed[:100],  # the rest are counted, not named
        )
        yield from self.notify(request, result, mailbox_count)
        final = EventType.OFFBOARDING_FAILED if self.left else EventType.OFFBOARDING_COMPLETED
        yield from self.emit(final, result.to_json())
        status = {"status": result.status.value, "purge": self.job.purge, "steps": self.steps}
        self.context.set_custom_status({**status, **self.stream.reported()})
        return {**result.to_json(), "steps": self.steps, **self.stream.reported()}

    def notify(self, request: dict[str, Any], result: OffboardingResult, mailbox_count: int) -> Steps:
        step = OffboardStep.NOTIFY
        if not request.get("admin_emails"):
            self.mark(step, StepState.SKIPPED, "The onboarding named no admins.")
            return
        self.mark(step, StepState.RUNNING)
        shown = {**request, "mailboxes": list(request.get("mailboxes") or [])[: emails.SHOWN_MAILBOXES]}
        payload = NotifyOffboarded(self.job.onboarding_id, shown, result, mailbox_count)
        try:
            yield from self.call(step, NOTIFY, payload)
        except StepFailed as failure:  # the email is a courtesy: what was removed stands
            self.mark(step, StepState.FAILED, f"The summary email could not be sent: {failure.error.message}")
            return
        self.mark(step, StepState.DONE)


def _stopped(cancelled: bool, operations: list[str]) -> str:
    """The stop step's outcome: the onboarding cancelled first, the day-2 operations waited for
    (``OnboardingSnapshot.waiting_for``), or nothing to stop."""
    parts = ["Cancelled first."] if cancelled else []
    if operations:
        parts.append(f"Waited for {' and '.join(operations)} to end.")
    return " ".join(parts) or "It had already ended."
