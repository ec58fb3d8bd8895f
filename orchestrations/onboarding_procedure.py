"""The onboarding's procedure inside its orchestrator (``onboarding_orchestrator`` in
``orchestrations/onboarding.py``, which registers it): its state and the steps that move it on.

A module of its own so that the worker's start does not compile it: the orchestrator imports it on its
first run (the same reason as ``onboarding/lazy.py``). Deterministic like the rest of the orchestration.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase, TaskState

from onboarding import contracts as C
from onboarding import emails, logcontext, opsevents, plan
from onboarding.domain import (
    EVENT_CANCEL,
    EVENT_DECISION,
    STEPS,
    AppRegistration,
    ConsentMode,
    DecisionEvent,
    ExchangeResource,
    MailboxResult,
    OnboardingInput,
    OnboardingResult,
    Outcome,
    Progress,
    SecretRef,
    Step,
    StepError,
    StepState,
    Waiting,
    WaitKind,
)
from onboarding.signin import mailbox_digest
from onboarding.webhooks import EVENTS_REPORTED, EventType
from orchestrations.onboarding import (
    MailboxLevel,
    StepFailed,
    Steps,
    Stopped,
    call,
    log,
    merge_replies,
    retry_policy,
)


@dataclass(frozen=True)
class ConsentWait:
    """One wait for an admin's decision: what a decision must carry to answer it, and until when."""

    mode: ConsentMode
    nonce: str  # the links of this wait's emails carry it; a decision for another nonce is stale
    digest: str  # the exact mailbox list (onboarding.signin.mailbox_digest) the admin must have seen
    deadline: datetime

    @property
    def kind(self) -> WaitKind:
        return WaitKind.ADMIN_CONSENT if self.mode is ConsentMode.CONSENT else WaitKind.ADMIN_APPROVAL

    def published(self, reminders_sent: int = 0) -> Waiting:
        return Waiting(
            kind=self.kind.value,
            nonce=self.nonce,
            deadline=self.deadline.isoformat(),
            reminders_sent=reminders_sent,
        )


class Onboarding:
    """One onboarding's state inside the orchestrator, and the steps that move it on."""

    def __init__(self, context: df.DurableOrchestrationContext) -> None:
        self.context = context
        raw = context.get_input()
        self.job = OnboardingInput.from_json(raw)
        self.raw_request: dict[str, Any] = raw["request"]  # as given: re-encoding it costs on every replay
        self.request = self.job.request
        # What the emails need: the mailboxes they name and how many there are, not all 10,000.
        self.email_request = replace(self.request, mailboxes=self.request.mailboxes[: emails.SHOWN_MAILBOXES])
        self.mailbox_count = len(self.request.mailboxes)
        self.options = self.job.options
        self.steps: dict[str, dict[str, str]] = {
            name.value: {"state": StepState.PENDING.value} for name, _ in STEPS
        }
        self.waiting: Waiting | None = None
        self.mailbox_counts: dict[str, int] = {}
        self.app: AppRegistration | None = None
        self.secret: SecretRef | None = None
        self.exchange_registered = False
        self.secret_reader: str | None = None  # the principal given a role on the secret, if any
        self.current_step = STEPS[0][0]
        self.retry = retry_policy(self.options)
        self.events_sent = 0  # the last webhook event's sequence number
        # A webhook event's hand-over not settled yet (``emit`` with ``alongside``), and whether the
        # last hand-over succeeded.
        self.handover: TaskBase | None = None
        self.handed_over = True
        self._cancel_wait: TaskBase | None = None

    # -- progress ------------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        return self.context.current_utc_datetime

    def mark(self, step: Step, state: StepState, detail: str = "") -> None:
        self.current_step = step
        self.steps[step.value] = {"state": state.value, "at": self.now.isoformat(), "detail": detail}
        self.publish()

    def event(self, event: opsevents.OpsEvent, **fields: object) -> None:
        """An operational event (onboarding/opsevents.py), logged once: not again on replay."""
        logcontext.replay_safe(
            self.context,
            self.current_step,
            lambda: opsevents.emit(log, event, onboarding_id=self.job.onboarding_id, **fields),
        )

    def publish(self) -> None:
        progress = Progress(
            steps=self.steps,
            waiting=self.waiting,
            mailbox_counts=self.mailbox_counts,
            app_id=self.app.app_id if self.app else None,
        )
        self.context.set_custom_status(progress.to_json())

    def call(self, step: Step, contract: C.Contract[Any, Any], payload: C.Payload) -> Steps:
        return (yield from call(self.context, step, contract, payload, self.retry, self.wait_for))

    def run_step(self, step: Step, contract: C.Contract[Any, Any], payload: C.Payload) -> Steps:
        self.mark(step, StepState.RUNNING)
        result = yield from self.call(step, contract, payload)
        self.mark(step, StepState.DONE)
        return result

    def emit(self, event_type: EventType, data: dict[str, Any], *, alongside: bool = False) -> Steps:
        """Hand webhook event n+1 to the delivery orchestration; never wait for its delivery
        (``settle_handover`` then says whether it was handed over).

        The number only moves on once the activity succeeded, so the delivery orchestration, which
        takes the events in order, is never left waiting for a number that was not sent. Progress
        events are a courtesy: one that cannot be handed over does not stop the onboarding.

        ``alongside`` (procedure version 2): the hand-over goes out with the next activity the
        procedure runs (``wait_for``) instead of taking a step of its own before it; whatever waits
        on anything else settles it first. The next event is numbered only once it has settled."""
        yield from self.settle_handover()
        payload = C.EmitWebhookEvent(
            onboarding_id=self.job.onboarding_id,
            sequence=self.events_sent + 1,
            type=event_type.value,
            occurred_at=self.now.isoformat(),
            data=data,
            # The first event subscribes the request's callback; the last names every mailbox's result.
            callback_url=self.request.callback_url if self.events_sent == 0 else None,
            request=self.raw_request if event_type is EventType.COMPLETED else None,
        )
        task = self.context.call_activity_with_retry(
            C.EMIT_WEBHOOK_EVENT.name,
            self.retry,
            logcontext.with_log_fields(self.context, self.current_step.value, payload.to_json()),
        )
        if alongside and self.options.procedure_version >= 2:
            self.handover = task
            return
        try:
            yield task
        except Exception:
            self.handed_over = False
            return
        self.events_sent += 1
        self.handed_over = True

    def settle_handover(self) -> Steps:
        """Wait for the hand-over left to go ``alongside``, if any; whether the last event was handed
        over."""
        if self.handover is not None:
            # A task already sent out with an activity is waited on through a new task_any, as
            # MailboxLevel does: it is not scheduled a second time.
            yield self.context.task_any([self.handover])
            self._settled()
        return self.handed_over

    def _settled(self) -> None:
        assert self.handover is not None
        self.handed_over = self.handover.state is TaskState.SUCCEEDED
        self.events_sent += int(self.handed_over)
        self.handover = None

    def wait_for(self, task: TaskBase) -> Steps:
        """``yield task`` (an activity), with the webhook hand-over left to go alongside sent out
        together with it; the hand-over is settled here if it ends first, else later."""
        if self.handover is None:
            return (yield task)
        winner = yield self.context.task_any([self.handover, task])
        if winner is self.handover:
            self._settled()
            yield self.context.task_any([task])  # goes on at once if the activity has ended too
        if task.state is TaskState.FAILED:
            raise task.result
        return task.result

    # -- waiting -------------------------------------------------------------------------------
    @property
    def cancel_wait(self) -> TaskBase:
        """The one wait for the requester's cancel, shared by every wait of the run.

        The Python Durable SDK hands an event to the newest open wait of its name, and a wait that
        lost its race stays open. With a wait per timer, a cancel that arrived while an activity ran
        completed a finished poll's wait and was lost (docs/sandbox-facts.md, "Durable Functions")."""
        if self._cancel_wait is None:
            self._cancel_wait = self.context.wait_for_external_event(EVENT_CANCEL)
        return self._cancel_wait

    def sleep(self, until: datetime, waiting: Waiting) -> Steps:
        """A durable timer the requester can cut short by cancelling."""
        yield from self.settle_handover()
        self.waiting = waiting
        self.publish()
        timer = self.context.create_timer(until)
        cancel = self.cancel_wait
        winner = yield self.context.task_any([timer, cancel])
        self.waiting = None
        if winner is cancel:
            timer.cancel()
            raise Stopped(Outcome.CANCELLED, "The requester cancelled the onboarding.")

    def poll(
        self,
        step: Step,
        contract: C.Contract[Any, Any],
        payload: C.Payload,
        *,
        kind: WaitKind,
        limit: timedelta,
    ) -> Steps:
        """Repeat an activity that answers ``Pending`` until it answers, with backoff."""
        self.mark(step, StepState.RUNNING)
        give_up = self.now + limit
        attempt = 0
        while True:
            result = yield from self.call(step, contract, payload)
            if not isinstance(result, C.Pending):
                self.mark(step, StepState.DONE)
                return result
            if self.now >= give_up:
                raise StepFailed(
                    StepError(step=step, message=result.reason, fix=result.fix, code="timed_out")
                )
            self.mark(step, StepState.WAITING, result.reason)
            wake = min(
                self.now
                + plan.backoff(attempt, self.options.poll_initial_seconds, self.options.poll_max_seconds),
                give_up,
            )
            yield from self.sleep(wake, Waiting(kind=kind, deadline=give_up.isoformat()))
            attempt += 1

    # -- the procedure ---------------------------------------------------------------------------
    def run(self) -> Steps:
        yield from self.emit(
            EventType.ACCEPTED,
            {
                "externalReference": self.request.external_reference,
                "mailboxCount": self.mailbox_count,
                "consentMode": self.request.consent_mode.value,
            },
            alongside=True,
        )
        try:
            resource = yield from self.resolve_exchange()
            yield from self.register_app(resource)
            yield from self.create_secret()
            yield from self.obtain_consent(resource)
            yield from self.confirm_permissions(resource)
            yield from self.register_in_exchange()
            counts, attention = yield from self.mailboxes()
            return (yield from self.finish(plan.outcome_for(counts), counts=counts, attention=attention))
        except StepFailed as failure:
            self.mark(Step(failure.error.step), StepState.FAILED, failure.error.message)
            undone = yield from self.compensate()
            return (yield from self.finish(Outcome.FAILED, error=failure.error, compensation=undone))
        except Stopped as stop:
            step = self.current_step
            self.mark(step, StepState.FAILED if stop.left else StepState.COMPENSATED, stop.detail)
            undone = stop.left or (yield from self.compensate())
            error = StepError(step=step, message=stop.detail, code=stop.outcome.value)
            return (yield from self.finish(stop.outcome, error=error, compensation=undone))

    def resolve_exchange(self) -> Steps:
        payload = C.ResolveExchange(roles=self.request.app_roles)
        resource: ExchangeResource = yield from self.run_step(
            Step.RESOLVE_EXCHANGE, C.RESOLVE_EXCHANGE, payload
        )
        return resource

    def register_app(self, resource: ExchangeResource) -> Steps:
        self.app = yield from self.run_step(
            Step.REGISTER_APP,
            C.REGISTER_APP,
            C.RegisterApp(
                onboarding_id=self.job.onboarding_id,
                display_name=self.request.display_name,
                roles=self.request.app_roles,
                resource=resource,
                external_reference=self.request.external_reference,
            ),
        )
        assert self.app is not None
        sp: C.ServicePrincipal = yield from self.poll(
            Step.SERVICE_PRINCIPAL,
            C.ENSURE_SERVICE_PRINCIPAL,
            C.EnsureServicePrincipal(app_id=self.app.app_id),
            kind=WaitKind.DIRECTORY_REPLICATION,
            limit=timedelta(hours=1),
        )
        self.app = replace(self.app, service_principal_id=sp.service_principal_id)
        self.publish()

    def create_secret(self) -> Steps:
        assert self.app is not None
        payload = C.CreateSecret(
            onboarding_id=self.job.onboarding_id,
            tenant_id=self.request.tenant_id,
            app=self.app,
            lifetime_days=self.request.secret_lifetime_days,
            protocols=self.protocols,
            credential_type=self.request.credential_type,
        )
        reader = self.request.mail_product_principal_id
        if reader is None:  # as before the mail product's role existed: such histories replay unchanged
            self.secret = yield from self.run_step(Step.CLIENT_SECRET, C.CREATE_SECRET, payload)
            return
        self.mark(Step.CLIENT_SECRET, StepState.RUNNING)
        self.secret = yield from self.call(Step.CLIENT_SECRET, C.CREATE_SECRET, payload)
        yield from self.grant_secret_reader(reader)

    def grant_secret_reader(self, principal_id: str) -> Steps:
        """The mail product's principal reads this secret and no other: Key Vault Secrets User scoped
        to it (onboarding/adapters/rbac.py). Before anyone is asked for consent, so a principal that
        cannot be given the role fails the onboarding early, and everything made is undone."""
        self.secret_reader = principal_id  # from the first attempt on: removing it later is idempotent
        yield from self.poll(
            Step.CLIENT_SECRET,
            C.GRANT_SECRET_READER,
            C.SecretReaderRef(onboarding_id=self.job.onboarding_id, principal_id=principal_id),
            kind=WaitKind.DIRECTORY_REPLICATION,
            limit=timedelta(hours=1),
        )
        self.mark(
            Step.CLIENT_SECRET,
            StepState.DONE,
            f"The mail product's principal {principal_id} may read this secret (Key Vault Secrets User).",
        )

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(p.value for p in self.request.protocols)

    def obtain_consent(self, resource: ExchangeResource) -> Steps:
        """Email the admins, wait for a signed-in admin's decision on this exact mailbox list (with
        reminders, until the deadline), then act on it."""
        assert self.app is not None
        wait = ConsentWait(
            mode=self.request.consent_mode,
            nonce=str(self.context.new_uuid()),
            digest=mailbox_digest(self.raw_request["mailboxes"]),
            deadline=self.now + timedelta(hours=self.options.consent_deadline_hours),
        )
        # Publish the wait before the email goes out: an admin who clicks at once must find the
        # onboarding already waiting for this nonce, or the link would be refused as stale.
        self.waiting = wait.published()
        self.mark(Step.ADMIN_CONSENT, StepState.WAITING, "Waiting for a tenant admin.")
        yield from self.call(Step.ADMIN_CONSENT, C.SEND_DECISION_EMAIL, self.decision_email(wait, reminder=0))
        yield from self.emit(
            EventType.WAITING_FOR_ADMIN, {"kind": wait.kind.value, "deadline": wait.deadline.isoformat()}
        )
        event = yield from self.decision(wait, resource)
        yield from self.act_on(event, wait.mode, resource)

    def decision_email(self, wait: ConsentWait, reminder: int) -> C.SendDecisionEmail:
        assert self.app is not None
        return C.SendDecisionEmail(
            onboarding_id=self.job.onboarding_id,
            request=self.email_request,
            mailbox_count=self.mailbox_count,
            app_id=self.app.app_id,
            nonce=wait.nonce,
            deadline=wait.deadline.isoformat(),
            reminder=reminder,
        )

    def decision(self, wait: ConsentWait, resource: ExchangeResource) -> Steps:
        """The first decision that answers ``wait``, reminding the admins every
        ``consent_reminder_hours``. Consent given in Entra (or the portal) is looked up in Graph at
        each reminder and at the deadline: a consented app is never deleted."""
        reminders = 0
        consented = False
        decision_wait: TaskBase | None = None  # kept until it yields a decision, for the same reason
        while True:
            if self.now >= wait.deadline:
                consented = consented or (yield from self.consented_in_entra(resource))
                raise self.expired(consented)
            self.show_waiting(wait, reminders, consented)
            wake = plan.next_wake(
                self.now, wait.deadline, timedelta(hours=self.options.consent_reminder_hours)
            )
            timer = self.context.create_timer(wake)
            if decision_wait is None:
                decision_wait = self.context.wait_for_external_event(EVENT_DECISION)
            cancel_wait = self.cancel_wait
            yield from self.settle_handover()
            winner = yield self.context.task_any([decision_wait, cancel_wait, timer])
            if winner is timer:
                if self.now < wait.deadline:
                    consented = consented or (yield from self.consented_in_entra(resource))
                    reminders += 1
                    yield from self.call(
                        Step.ADMIN_CONSENT, C.SEND_DECISION_EMAIL, self.decision_email(wait, reminders)
                    )
                continue
            timer.cancel()
            if winner is cancel_wait:
                self.waiting = None
                raise Stopped(Outcome.CANCELLED, "The requester cancelled the onboarding.")
            event = DecisionEvent.from_event(decision_wait.result)
            decision_wait = None  # read: the next decision needs a wait of its own
            if event is not None and plan.accepts(
                event, nonce=wait.nonce, mode=wait.mode, digest=wait.digest
            ):
                self.waiting = None
                return event
            # A stale, malformed, unsigned decision, or one for another mailbox list, changes nothing.

    def show_waiting(self, wait: ConsentWait, reminders: int, consented: bool) -> None:
        self.waiting = wait.published(reminders)
        detail = "Consented in Entra ID; waiting for a signed-in admin to confirm the mailboxes."
        self.mark(
            Step.ADMIN_CONSENT, StepState.WAITING, detail if consented else "Waiting for a tenant admin."
        )
        # Logged at each reminder too: the "waiting past deadline" alert needs a recent line.
        self.event(
            opsevents.OpsEvent.ONBOARDING_WAITING, kind=wait.kind.value, deadline=wait.deadline.isoformat()
        )

    def act_on(self, event: DecisionEvent, mode: ConsentMode, resource: ExchangeResource) -> Steps:
        """Stop on a refusal; on a go-ahead, say so, and in grant mode assign the app roles."""
        assert self.app is not None
        if not plan.is_go_ahead(event.decision):
            detail = "The tenant admin rejected the request."
            if event.error:
                detail = f"The tenant admin declined consent in Entra ID ({event.error})."
            raise Stopped(Outcome.REJECTED, detail)
        # Who decided stays in the history (the event), not in the status the requester reads.
        self.mark(Step.ADMIN_CONSENT, StepState.DONE, f"{event.decision.value} by a signed-in tenant admin")
        yield from self.emit(
            EventType.APPROVED if mode is ConsentMode.GRANT else EventType.CONSENT_GRANTED,
            {"decision": event.decision.value},
            alongside=True,
        )
        if mode is ConsentMode.GRANT:
            assert self.app.service_principal_id is not None
            yield from self.call(Step.ADMIN_CONSENT, C.GRANT_APP_ROLES, self.app_roles(resource))

    def app_roles(self, resource: ExchangeResource) -> C.AppRoles:
        assert self.app is not None and self.app.service_principal_id is not None
        return C.AppRoles(
            service_principal_id=self.app.service_principal_id,
            resource=resource,
            roles=self.request.app_roles,
        )

    def consented_in_entra(self, resource: ExchangeResource) -> Steps:
        """Whether Graph shows the app's role assignments (consent given in Entra or the portal).
        A lookup that fails counts as not consented: the next reminder or the deadline looks again."""
        try:
            reply = yield from self.call(Step.ADMIN_CONSENT, C.CHECK_APP_ROLES, self.app_roles(resource))
        except StepFailed:
            return False
        return isinstance(reply, C.RolesConfirmed)

    def expired(self, consented: bool) -> Stopped:
        """The deadline passed without a decision. An app an admin consented to stays (deleting it
        would undo an admin's decision behind their back); no mailbox was given FullAccess."""
        if not consented:
            return Stopped(Outcome.EXPIRED, "No decision arrived before the deadline.")
        assert self.app is not None and self.secret is not None
        return Stopped(
            Outcome.EXPIRED,
            "Admin consent was granted in Entra ID, but no signed-in admin confirmed the mailbox list "
            "before the deadline, so no mailbox was given FullAccess.",
            left=(
                f"App registration {self.app.app_id} is consented and was left in place; delete it in "
                "Entra ID if it is not wanted, or submit the onboarding again.",
                f"Key Vault secret {self.secret.name} was left in place with the app; delete it with the app.",
            )
            + (
                (
                    f"The mail product's principal {self.secret_reader} keeps Key Vault Secrets User on that "
                    "secret; offboarding the onboarding (DELETE) removes it with the rest.",
                )
                if self.secret_reader
                else ()
            ),
        )

    def confirm_permissions(self, resource: ExchangeResource) -> Steps:
        """Never trust the redirect: the app role assignments must exist in Graph."""
        yield from self.poll(
            Step.CONFIRM_PERMISSIONS,
            C.CHECK_APP_ROLES,
            self.app_roles(resource),
            kind=WaitKind.DIRECTORY_REPLICATION,
            limit=timedelta(hours=1),
        )

    def register_in_exchange(self) -> Steps:
        assert self.app is not None and self.app.service_principal_id is not None
        self.exchange_registered = True  # from the first attempt on: removing it later is idempotent
        yield from self.poll(
            Step.EXCHANGE_REGISTRATION,
            C.REGISTER_IN_EXCHANGE,
            C.RegisterInExchange(
                app_id=self.app.app_id,
                service_principal_id=self.app.service_principal_id,
                app_object_id=self.app.object_id,
                display_name=self.request.display_name,
            ),
            kind=WaitKind.DIRECTORY_REPLICATION,
            limit=timedelta(hours=1),
        )

    def mailboxes(self) -> Steps:
        """Grant and verify in batches, each its own sub-orchestration, grouped into a tree when there
        are many (see ``mailbox_tree``), so no history grows with N.

        Each batch answers with its counts and the mailboxes that did not verify, never one result
        per mailbox: this runs again on every replay, so its cost must not grow with N."""
        assert self.app is not None and self.secret is not None
        self.mark(Step.MAILBOX_PERMISSIONS, StepState.RUNNING)
        self.mark(Step.VERIFY_LOGIN, StepState.RUNNING)
        job = C.MailboxJob(
            onboarding_id=self.job.onboarding_id,
            tenant_id=self.request.tenant_id,
            app=self.app,
            secret=self.secret,
            protocols=self.protocols,
            options=self.options,
            mailboxes=self.request.mailboxes,
        )
        summary = yield from self.mailbox_children(job)
        counts: dict[str, int] = summary["counts"]
        # Kept as the batches' JSON: decoding and re-encoding them on every replay is wasted work.
        attention: list[dict[str, Any]] = summary["attention"]
        self.mailbox_counts = counts
        total = sum(counts.values())
        text = f"{total - len(attention)} of {total} mailboxes verified"
        state = StepState.DONE if not attention else StepState.FAILED
        self.mark(Step.MAILBOX_PERMISSIONS, StepState.DONE, text)
        self.mark(Step.VERIFY_LOGIN, state, text)
        return counts, attention

    def mailbox_children(self, job: C.MailboxJob) -> Steps:
        """The parent's level of ``mailbox_tree``, taking the children as they finish: one progress
        event per child (a batch, or a group of batches when there are more than the fanout)."""
        level = MailboxLevel(self.context, job)
        replies: list[dict[str, Any]] = []
        done = 0
        while level.running:
            yield from self.settle_handover()
            reply, batches = yield from level.next_done()
            replies.append(reply)
            done += batches
            counts = plan.merge_counts(r["counts"] for r in replies)
            yield from self.emit(  # alongside: the last one goes out with the summary email
                EventType.MAILBOX_PROGRESS,
                {
                    "batchesDone": done,
                    "batchesTotal": level.batches,
                    "mailboxesDone": sum(counts.values()),
                    "mailboxesTotal": self.mailbox_count,
                    "counts": counts,
                },
                alongside=True,
            )
        return merge_replies(replies)

    def compensate(self) -> Steps:
        """Undo what was made, and say what was undone (or what an admin must remove)."""
        if self.app is None and self.secret is None:
            return ()
        try:
            payload = C.Compensate(
                onboarding_id=self.job.onboarding_id,
                app=self.app,
                exchange_registered=self.exchange_registered,
                secret_reader=self.secret_reader,
                credential_type=self.request.credential_type,
            )
            reply = yield from self.wait_for(
                self.context.call_activity_with_retry(
                    C.COMPENSATE.name,
                    self.retry,
                    logcontext.with_log_fields(self.context, Step.COMPENSATE.value, payload.to_json()),
                )
            )
            return C.COMPENSATE.result(reply["ok"]).done
        except Exception:
            left = []
            if self.app:
                left.append(
                    f"App registration {self.app.app_id} could not be deleted: delete it in Entra ID."
                )
            if self.secret:
                left.append(
                    f"Key Vault secret {self.secret.name} could not be deleted: delete it in the vault."
                )
            if self.secret_reader:
                left.append(
                    f"The role of principal {self.secret_reader} on the secret could not be removed: remove "
                    "its Key Vault Secrets User assignment on the secret (Access control)."
                )
            return tuple(left)

    def record(self, outcome: Outcome) -> Steps:
        """Keep what the expiry watch and day-2 operations need past the history's purge
        (onboarding/records.py): written if a credential is left in the vault. Last, so a history
        recorded before this step existed replays unchanged."""
        if self.secret is None or self.app is None:
            return
        payload = C.RecordOnboarding(
            onboarding_id=self.job.onboarding_id,
            request=self.email_request,
            mailbox_count=self.mailbox_count,
            app=self.app,
            outcome=outcome.value,
            at=self.now.isoformat(),
        )
        # A failure is caught up by the retention run, which writes the record from the history.
        with contextlib.suppress(Exception):
            yield from self.wait_for(
                self.context.call_activity_with_retry(
                    C.RECORD_ONBOARDING.name,
                    self.retry,
                    logcontext.with_log_fields(self.context, Step.FINISH.value, payload.to_json()),
                )
            )

    def finish(
        self,
        outcome: Outcome,
        *,
        counts: dict[str, int] | None = None,
        attention: list[dict[str, Any]] | None = None,
        error: StepError | None = None,
        compensation: tuple[str, ...] = (),
    ) -> Steps:
        compensated = outcome not in (Outcome.SUCCEEDED, Outcome.PARTIAL)
        result = OnboardingResult(
            onboarding_id=self.job.onboarding_id,
            outcome=outcome,
            app=None if compensated else self.app,
            secret=None if compensated else self.secret,
            mailbox_counts=counts or {},
            error=error,
            compensation=compensation,
        )
        self.mark(Step.FINISH, StepState.RUNNING)
        summary = {**result.to_json(), "attention": attention or []}
        notes = []
        try:
            email = C.NotifyOutcome(
                request=self.email_request,
                result=replace(result, attention=tuple(MailboxResult.from_json(a) for a in attention or ())),
                mailbox_count=self.mailbox_count,
            )
            yield from self.wait_for(
                self.context.call_activity_with_retry(
                    C.NOTIFY_OUTCOME.name,
                    self.retry,
                    logcontext.with_log_fields(self.context, Step.FINISH.value, email.to_json()),
                )
            )
        except Exception:  # the email is a courtesy; the result and the callback still stand
            notes.append("The summary email could not be sent.")
        yield from self.emit(EventType.COMPLETED, summary, alongside=True)
        yield from self.record(outcome)
        if not (yield from self.settle_handover()):
            notes.append("The completion event could not be queued for delivery.")
        elif self.request.callback_url:
            notes.append("Completion event queued for delivery.")
        self.mark(Step.FINISH, StepState.DONE, " ".join(notes))
        self.event(
            opsevents.OpsEvent.ONBOARDING_FINISHED,
            outcome=outcome.value,
            step=error.step if error else Step.FINISH.value,
            mailbox_counts=counts or {},
        )
        # An offboarding numbers its webhook events on from the onboarding's last one.
        return {**summary, EVENTS_REPORTED: self.events_sent}
