"""The real HTTP triggers (``endpoints.blueprint``) with a stand-in onboarding orchestration.

The stand-in keeps the orchestration contract the triggers rely on (input, custom status with the
wait's nonce, decision and cancel events, the result as output) without any external system, so the
HTTP layer is tested on its own, through the local Functions host.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from activities.webhooks import blueprint as webhook_activities
from endpoints import blueprint as endpoints
from onboarding.domain import (
    EVENT_CANCEL,
    EVENT_DECISION,
    ORCHESTRATOR,
    AppRegistration,
    ConsentMode,
    Decision,
    DecisionEvent,
    MailboxState,
    OnboardingInput,
    OnboardingResult,
    Outcome,
    Progress,
    SecretRef,
    Step,
    StepError,
    Waiting,
    WaitKind,
)
from onboarding.offboarding import (
    OFFBOARDING_ORCHESTRATOR,
    OffboardingInput,
    OffboardingResult,
    OffboardingStatus,
    OffboardStep,
)
from onboarding.webhooks import CHANNEL_EVENTS_REPORTED
from orchestrations.webhooks import blueprint as webhook_delivery

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(endpoints)
# The real webhook delivery orchestration, which the subscription and redelivery routes talk to.
app.register_functions(webhook_delivery)
app.register_functions(webhook_activities)


@app.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR)
def stand_in_onboarding(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    job = OnboardingInput.from_json(context.get_input())
    request = job.request
    kind = WaitKind.ADMIN_CONSENT if request.consent_mode is ConsentMode.CONSENT else WaitKind.ADMIN_APPROVAL
    nonce = str(context.new_uuid())
    now = context.current_utc_datetime
    deadline = now + timedelta(hours=job.options.consent_deadline_hours)
    app_id = f"app-{job.onboarding_id[4:12]}"
    steps = {
        Step.RESOLVE_EXCHANGE.value: {"state": "done", "at": now.isoformat(), "detail": ""},
        Step.REGISTER_APP.value: {"state": "done", "at": now.isoformat(), "detail": ""},
        Step.ADMIN_CONSENT.value: {
            "state": "waiting",
            "at": now.isoformat(),
            "detail": "Waiting for a tenant admin.",
        },
    }
    context.set_custom_status(
        Progress(
            steps=steps,
            waiting=Waiting(kind=kind.value, nonce=nonce, deadline=deadline.isoformat()),
            app_id=app_id,
        ).to_json()
    )
    while True:
        decision = context.wait_for_external_event(EVENT_DECISION)
        cancel = context.wait_for_external_event(EVENT_CANCEL)
        winner = yield context.task_any([decision, cancel])
        if winner is cancel:
            return OnboardingResult(
                onboarding_id=job.onboarding_id,
                outcome=Outcome.CANCELLED,
                error=StepError(
                    step=Step.ADMIN_CONSENT,
                    message="The requester cancelled the onboarding.",
                    code="cancelled",
                ),
                compensation=(f"App registration {app_id} deleted.",),
            ).to_json()
        event = DecisionEvent.from_event(decision.result)
        if event is None or event.nonce != nonce:
            continue
        if event.decision in (Decision.CONSENTED, Decision.APPROVED):
            return OnboardingResult(
                onboarding_id=job.onboarding_id,
                outcome=Outcome.SUCCEEDED,
                app=AppRegistration(
                    object_id="obj", app_id=app_id, unique_name="u", service_principal_id="sp"
                ),
                secret=SecretRef(
                    vault_uri="https://vault.example",
                    name=f"mail-app-{job.onboarding_id}",
                    version="v1",
                    expires_on="2031-01-01T00:00:00+00:00",
                    key_id="k",
                ),
                mailbox_counts={MailboxState.VERIFIED.value: len(request.mailboxes)},
            ).to_json()
        detail = f"declined ({event.error})" if event.error else "rejected"
        return OnboardingResult(
            onboarding_id=job.onboarding_id,
            outcome=Outcome.REJECTED,
            error=StepError(step=Step.ADMIN_CONSENT, message=f"The tenant admin {detail}.", code="rejected"),
        ).to_json()


# A DELETE on an onboarding starts this in place of the real offboarding: it keeps the contract the
# triggers rely on (input, custom status while it runs, the result as output) and ends when the test
# raises FINISH_OFFBOARDING.
FINISH_OFFBOARDING = "StandInFinishOffboarding"
STAND_IN_EVENTS = 2  # the webhook events it reports on its channel while it runs, as the real one does


@app.orchestration_trigger(context_name="context", orchestration=OFFBOARDING_ORCHESTRATOR)
def stand_in_offboarding(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    job = OffboardingInput.from_json(context.get_input())
    now = context.current_utc_datetime.isoformat()
    running = {OffboardStep.STOP_ONBOARDING.value: {"state": "running", "at": now, "detail": ""}}
    context.set_custom_status(
        {"status": "running", "purge": job.purge, "steps": running, CHANNEL_EVENTS_REPORTED: STAND_IN_EVENTS}
    )
    yield context.wait_for_external_event(FINISH_OFFBOARDING)
    result = OffboardingResult(
        onboarding_id=job.onboarding_id,
        status=OffboardingStatus.SUCCEEDED,
        purge=job.purge,
        app_id="app-stand-in",
        removed=("Removed FullAccess on 1 of 1 mailboxes.",),
        mailboxes_removed=1,
    )
    done = {step.value: {"state": "done", "at": now, "detail": ""} for step in OffboardStep}
    return {**result.to_json(), "steps": done, "webhook_events": 0}
