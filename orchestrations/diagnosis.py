"""Two small orchestrations around the diagnosis activity.

- ``diagnosis_orchestrator``: one diagnosis asked over HTTP (``endpoints/diagnoses.py``). The checks
  take seconds (a token, a few cmdlets per mailbox, IMAP and POP logins), so the API answers 202 with
  a Location to poll, as for onboardings, and the work runs here with Durable's retries.
- ``drift_check_orchestrator``: the daily drift check (instance ``drift-check``, started by the timer
  in ``schedules``): diagnose every active onboarding, a few at a time, and report each newly broken
  link once, by webhook event and email. Its output is the memory of what it reported
  (``onboarding.drift``), given to the next day's run.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from onboarding import contracts as C
from onboarding import drift
from onboarding.webhooks import EventType

blueprint = df.Blueprint()
log = logging.getLogger("onboarding.orchestrations")
Steps = Generator[Any, Any, Any]
ATTEMPTS = 3


def _retry() -> df.RetryOptions:
    return df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=ATTEMPTS)


def _failure(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@blueprint.orchestration_trigger(context_name="context", orchestration=drift.DIAGNOSIS_ORCHESTRATOR)
def diagnosis_orchestrator(context: df.DurableOrchestrationContext) -> Steps:
    """Input ``{"onboarding_id"}`` or ``{"target"}``; output ``{"ok": report}`` or ``{"error": ...}``."""
    try:
        payload = C.Diagnose.from_json(context.get_input() or {}).to_json()
        reply = yield context.call_activity_with_retry(C.DIAGNOSE.name, _retry(), payload)
    except Exception as exc:  # retries ran out; the activity's message is secret-free
        return {
            "error": {
                "message": f"The diagnosis could not run after {ATTEMPTS} attempts: {_failure(exc)}",
                "fix": "Diagnose again later; if this lasts, check the services' health.",
            }
        }
    return reply


@blueprint.orchestration_trigger(context_name="context", orchestration=drift.DRIFT_ORCHESTRATOR)
def drift_check_orchestrator(context: df.DurableOrchestrationContext) -> Steps:
    before = drift.remembered(context.get_input())
    try:
        listing = yield context.call_activity_with_retry(
            C.LIST_ACTIVE_ONBOARDINGS.name, _retry(), C.NoPayload().to_json()
        )
    except Exception as exc:
        return {"reported": {k: v.to_json() for k, v in before.items()}, "error": _failure(exc)}
    active: list[dict[str, str]] = listing.get("ok") or []
    memory: dict[str, drift.Reported] = {}
    checked = unknown = 0
    for wave in drift.waves(active):
        tasks = [
            context.call_activity(
                C.DIAGNOSE.name, C.Diagnose(onboarding_id=o["onboardingId"], compact=True).to_json()
            )
            for o in wave
        ]
        try:
            replies = yield context.task_all(tasks)
        except Exception:  # the activity answers even a failed diagnosis as data; this is a crash
            replies = [{} for _ in wave]
        for onboarding, reply in zip(wave, replies, strict=True):
            onboarding_id = onboarding["onboardingId"]
            previous = before.get(onboarding_id)
            if "firstBroken" not in (reply.get("ok") or {}):  # could not ask today: remember as before
                unknown += 1
                if previous is not None:
                    memory[onboarding_id] = previous
                continue
            checked += 1
            first = reply["ok"]["firstBroken"]
            told = yield from _report(context, onboarding, first, drift.channels_due(previous, first))
            now = drift.after(previous, first, told)
            if now is not None:
                memory[onboarding_id] = now
    return {
        "reported": {k: v.to_json() for k, v in memory.items()},
        "checked": checked,
        "unknown": unknown,
        "at": context.current_utc_datetime.isoformat(),
    }


def _report(
    context: df.DurableOrchestrationContext,
    onboarding: dict[str, str],
    first: dict[str, Any] | None,
    due: tuple[drift.Channel, ...],
) -> Steps:
    """Tell the channels due about ``first``; the channels that were told. A channel that fails (after
    Durable's retries) is tried again the next day; one told is never told again."""
    told: list[drift.Channel] = []
    onboarding_id = onboarding["onboardingId"]
    for channel in due:
        assert first is not None
        try:
            if channel is drift.Channel.WEBHOOK:
                reply = yield context.call_activity_with_retry(
                    C.NEXT_WEBHOOK_SEQUENCE.name, _retry(), C.OnboardingRef(onboarding_id).to_json()
                )
                if "ok" not in reply:
                    continue
                number = C.NEXT_WEBHOOK_SEQUENCE.result(reply["ok"])
                event = C.EmitWebhookEvent(
                    onboarding_id=onboarding_id,
                    sequence=number.sequence,
                    type=EventType.DRIFT_DETECTED.value,
                    occurred_at=context.current_utc_datetime.isoformat(),
                    data={"appId": onboarding["appId"], "link": first},
                    channel=number.channel,
                )
                yield context.call_activity_with_retry(C.EMIT_WEBHOOK_EVENT.name, _retry(), event.to_json())
            else:
                reply = yield context.call_activity_with_retry(
                    C.SEND_DRIFT_EMAIL.name,
                    _retry(),
                    C.DriftEmail(onboarding_id, onboarding["appId"], first).to_json(),
                )
                if "ok" not in reply:
                    continue
        except Exception:  # retries ran out: tomorrow's run tries this channel again
            if not context.is_replaying:
                log.warning("drift report of %s by %s failed; retried tomorrow", onboarding_id, channel.value)
            continue
        told.append(channel)
    return told
