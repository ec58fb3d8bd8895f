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
