"""Timer triggers: the daily look for client secrets about to expire."""

from __future__ import annotations

import logging
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from onboarding.domain import OnboardingRequest
from onboarding.settings import load_settings
from onboarding.status_view import stored_request

blueprint = df.Blueprint()
log = logging.getLogger("onboarding.schedules")


@blueprint.timer_trigger(schedule="0 0 6 * * *", arg_name="timer", run_on_startup=False)
@blueprint.durable_client_input(client_name="client")
async def secret_expiry_watch(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    from onboarding.expiry import utcnow, warn_expiring
    from onboarding.services import Services

    settings = load_settings()

    async def request_of(onboarding_id: str) -> OnboardingRequest | None:
        # The admins to tell are the ones the onboarding asked; its input is kept by Durable.
        status: Any = await client.get_status(onboarding_id, show_input=True)
        return stored_request({"input": getattr(status, "input_", None)}) if status else None

    async with Services(settings) as services:
        warned = await warn_expiring(
            services,
            now=utcnow(),
            first_days=settings.credential_expiry_warning_days,
            request_of=request_of,
        )
    log.info("secret expiry watch: %d warning(s) sent", len(warned))


@blueprint.timer_trigger(schedule="0 30 6 * * *", arg_name="timer", run_on_startup=False)
@blueprint.durable_client_input(client_name="client")
async def drift_check(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Start today's drift check (``orchestrations.diagnosis.drift_check_orchestrator``) with what the
    last one reported, unless one still runs. One instance id for every day: a second start while it
    runs would restart it; after it finished, the new run takes over its memory (its output)."""
    from onboarding.drift import DRIFT_INSTANCE, DRIFT_ORCHESTRATOR

    status: Any = await client.get_status(DRIFT_INSTANCE, show_input=True)
    runtime = getattr(getattr(status, "runtime_status", None), "name", None) if status else None
    if runtime in ("Running", "Pending", "ContinuedAsNew"):
        log.info("drift check: yesterday's run is still going; not started again")
        return
    # A finished run's memory is its output; a failed one's, the input it was given.
    last = getattr(status, "output", None) if runtime == "Completed" else getattr(status, "input_", None)
    if isinstance(last, str):
        import json

        try:
            last = json.loads(last)
        except ValueError:
            last = None
    memory = last.get("reported", {}) if isinstance(last, dict) else {}
    await client.start_new(DRIFT_ORCHESTRATOR, DRIFT_INSTANCE, {"reported": memory})
    log.info("drift check started (%d breakage(s) remembered)", len(memory))
