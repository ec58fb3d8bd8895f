"""The rotation's procedure inside its orchestrator: ``rotation_orchestrator`` in
``orchestrations/rotation.py`` registers it and imports this module on its first run, so the worker's
start does not compile it (the same reason as ``onboarding/lazy.py``).

Deterministic: time from the context, every effect from an activity, the secret only in Key Vault.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from onboarding import contracts as C
from onboarding import plan
from onboarding.domain import MailboxState, StepError, StepState
from onboarding.rotation import (
    ADD_CREDENTIAL,
    DISCARD_NEW,
    NOTIFY,
    REMOVE_OLD,
    AddCredential,
    CredentialChange,
    NewCredential,
    NotifyRotated,
    RemovedCredentials,
    RotateStep,
    RotationInput,
    RotationResult,
    RotationStatus,
)
from onboarding.webhooks import EventType
from orchestrations.onboarding import StepFailed, call, emit_after, retry_policy

Steps = Generator[Any, Any, Any]


class Rotation:
    def __init__(self, context: df.DurableOrchestrationContext) -> None:
        self.context = context
        self.job = RotationInput.from_json(context.get_input())
        self.retry = retry_policy(self.job.options)
        self.steps: dict[str, dict[str, str]] = {
            s.value: {"state": StepState.PENDING.value} for s in RotateStep
        }
        self.stream = self.job.stream
        self.extra: dict[str, Any] = {}

    @property
    def now(self) -> datetime:
        return self.context.current_utc_datetime

    def mark(self, step: RotateStep, state: StepState, detail: str = "") -> None:
        self.steps[step.value] = {"state": state.value, "at": self.now.isoformat(), "detail": detail}
        self.context.set_custom_status(
            {
                "status": RotationStatus.RUNNING.value,
                "steps": self.steps,
                **self.extra,
                **self.stream.reported(),
            }
        )

    def call(self, step: RotateStep, contract: C.Contract[Any, Any], payload: C.Payload) -> Steps:
        return (yield from call(self.context, step, contract, payload, self.retry))

    def emit(self, event_type: EventType, data: dict[str, Any]) -> Steps:
        """The next event of the onboarding's stream; a courtesy that never stops the rotation."""
        self.stream = yield from emit_after(
            self.context, self.retry, self.job.onboarding_id, self.stream, event_type, data, "rotation"
        )

    # -- the procedure -----------------------------------------------------------------------------
    def run(self) -> Steps:
        yield from self.emit(EventType.CREDENTIAL_ROTATION_STARTED, {"appId": self.job.app.app_id})
        try:
            new: NewCredential = yield from self.add_credential()
            yield from self.verify(new)
        except StepFailed as failure:
            return (yield from self.finish(RotationStatus.FAILED, None, (), failure.error.message))
        yield from self.overlap()
        removed: RemovedCredentials = yield from self.remove_old(new)
        return (yield from self.finish(RotationStatus.SUCCEEDED, new, removed.key_ids, ""))

    def add_credential(self) -> Steps:
        step = RotateStep.NEW_CREDENTIAL
        self.mark(step, StepState.RUNNING)
        job = self.job
        payload = AddCredential(
            job.onboarding_id,
            job.tenant_id,
            job.app,
            job.protocols,
            job.lifetime_days,
            job.requested_at,
            job.credential_type,
        )
        try:
            new: NewCredential = yield from self.call(step, ADD_CREDENTIAL, payload)
        except StepFailed as failure:
            self.mark(step, StepState.FAILED, failure.error.message)
            raise
        self.extra["secret"] = new.secret.to_json()
        self.mark(step, StepState.DONE, f"Key Vault version {new.secret.version}.")
        return new

    def verify(self, new: NewCredential) -> Steps:
        """Log in with the new secret until every sampled mailbox verifies or the verify window ends
        (a new credential can take a while to be accepted everywhere); then keep or discard it."""
        step = RotateStep.VERIFY
        self.mark(step, StepState.RUNNING)
        payload = C.VerifyMailboxes(
            self.job.tenant_id, self.job.app, new.secret, self.job.protocols, self.job.mailboxes
        )
        options = self.job.options
        deadline = self.now + timedelta(minutes=options.verify_window_minutes)
        attempt = 0
        while True:
            try:
                results: C.MailboxResults = yield from self.call(step, C.VERIFY_MAILBOXES, payload)
                failing = [r for r in results.results if r.state is not MailboxState.VERIFIED]
            except StepFailed as failure:
                failing, cause = [], failure.error.message
            else:
                cause = f"{failing[0].mailbox}: {failing[0].detail}" if failing else ""
            if not cause:
                self.mark(
                    step, StepState.DONE, f"{len(results.results)} mailboxes logged in with the new secret."
                )
                return
            wait = plan.backoff(attempt, options.poll_initial_seconds, options.poll_max_seconds)
            if self.now + wait > deadline:
                return (yield from self.discard(new, cause))
            yield self.context.create_timer(self.now + wait)
            attempt += 1

    def discard(self, new: NewCredential, cause: str) -> Steps:
        step = RotateStep.VERIFY
        message = f"The new client secret did not verify: {cause} The old secret is kept."
        change = CredentialChange(
            self.job.onboarding_id, self.job.app.object_id, new.secret.key_id, new.previous_version
        )
        try:
            yield from self.call(step, DISCARD_NEW, change)
        except StepFailed as failure:
            message += f" Discarding the new secret failed too ({failure.error.message}): remove it by hand."
        self.extra.pop("secret", None)
        self.mark(step, StepState.FAILED, message)
        raise StepFailed(StepError(step=step, message=message, fix="", code="rotation_not_verified"))

    def overlap(self) -> Steps:
        step = RotateStep.OVERLAP
        until = self.now + timedelta(hours=self.job.overlap_hours)
        self.extra["removeOldAt"] = until.isoformat()
        self.mark(step, StepState.WAITING, f"Both secrets work until {until.isoformat()}.")
        if self.job.overlap_hours:
            yield self.context.create_timer(until)
        self.mark(step, StepState.DONE)

    def remove_old(self, new: NewCredential) -> Steps:
        """Retried until done: the new secret is verified and stored, so leaving the old one only
        delays its removal; a failure is reported and the next POST removes it."""
        step = RotateStep.REMOVE_OLD
        self.mark(step, StepState.RUNNING)
        change = CredentialChange(self.job.onboarding_id, self.job.app.object_id, new.secret.key_id)
        try:
            removed: RemovedCredentials = yield from self.call(step, REMOVE_OLD, change)
        except StepFailed as failure:
            self.mark(step, StepState.FAILED, f"{failure.error.message} Fix: remove it in Entra ID by hand.")
            return RemovedCredentials(())
        self.mark(step, StepState.DONE, f"Removed {len(removed.key_ids)} old client secret(s).")
        return removed

    def finish(
        self, status: RotationStatus, new: NewCredential | None, removed: tuple[str, ...], error: str
    ) -> Steps:
        result = RotationResult(
            onboarding_id=self.job.onboarding_id,
            status=status,
            app_id=self.job.app.app_id,
            secret=new.secret if new else None,
            removed_key_ids=removed,
            error=error,
            credential_type=new.credential_type if new else self.job.credential_type,
        )
        yield from self.notify(result)
        succeeded = status is RotationStatus.SUCCEEDED
        final = EventType.CREDENTIAL_ROTATED if succeeded else EventType.CREDENTIAL_ROTATION_FAILED
        yield from self.emit(final, result.to_json())
        shown = {"status": status.value, "steps": self.steps, **self.extra, **self.stream.reported()}
        self.context.set_custom_status(shown)
        return {**result.to_json(), **self.extra, "steps": self.steps, **self.stream.reported()}

    def notify(self, result: RotationResult) -> Steps:
        step = RotateStep.NOTIFY
        self.mark(step, StepState.RUNNING)
        payload = NotifyRotated(
            self.job.onboarding_id, self.job.request, result, self.job.mailbox_count, self.now.isoformat()
        )
        try:
            yield from self.call(step, NOTIFY, payload)
        except StepFailed as failure:  # a courtesy: the rotation's outcome stands
            self.mark(step, StepState.FAILED, f"The summary email could not be sent: {failure.error.message}")
            return
        self.mark(step, StepState.DONE)
