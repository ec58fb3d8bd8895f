"""Timer triggers: the daily look for client secrets about to expire, and the daily purge of
finished histories past their retention."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from onboarding import records
from onboarding.records import OnboardingRecord
from onboarding.settings import load_settings

blueprint = df.Blueprint()
log = logging.getLogger("onboarding.schedules")
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # before any instance: the query needs a lower bound


@blueprint.timer_trigger(schedule="0 0 6 * * *", arg_name="timer", run_on_startup=False)
@blueprint.durable_client_input(client_name="client")
async def secret_expiry_watch(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    from onboarding.expiry import utcnow, warn_expiring
    from onboarding.services import Services

    settings = load_settings()
    async with Services(settings) as services:

        async def record_of(onboarding_id: str) -> OnboardingRecord | None:
            # Who to tell is in the onboarding's record, which outlives its history. An onboarding
            # that finished before records existed has none until retention writes it from the
            # history (before purging it); until then the history itself answers.
            record = await records.load(services.vault, onboarding_id)
            if record is not None:
                return record
            status: Any = await client.get_status(onboarding_id, show_input=True)
            if not status or not getattr(status, "input_", None):
                return None
            return records.from_history(
                {"input": status.input_, "output": status.output, "runtimeStatus": ""}, app_id="", at=utcnow()
            )

        warned = await warn_expiring(
            services,
            now=utcnow(),
            first_days=settings.credential_expiry_warning_days,
            record_of=record_of,
        )
    log.info("secret expiry watch: %d warning(s) sent", len(warned))


class DurableInstances:
    """``onboarding.retention.InstanceStore`` over the Durable client: the instance query page by
    page (endpoints.instances.query_page follows the continuation token the SDK drops), and the
    SDK's single-instance purge."""

    def __init__(self, client: df.DurableOrchestrationClient, page_size: int = 100) -> None:
        self._client = client
        self._page_size = page_size

    async def finished_before(self, cutoff: datetime) -> AsyncIterator[dict[str, Any]]:
        from endpoints.instances import InstanceQuery, query_page

        statuses = tuple(OrchestrationRuntimeStatus(s) for s in ("Completed", "Failed", "Terminated"))
        token: str | None = None
        while True:
            query = InstanceQuery(_EPOCH, cutoff, statuses, None, self._page_size, token)
            page, token = await query_page(self._client, query)
            for status in page:
                yield status
            if not token:
                return

    async def purge(self, instance_id: str) -> int:
        result = await self._client.purge_instance_history(instance_id)
        return int(result.instances_deleted)


@blueprint.timer_trigger(schedule="0 0 5 * * *", arg_name="timer", run_on_startup=False)
@blueprint.durable_client_input(client_name="client")
async def history_retention(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    from onboarding.expiry import utcnow
    from onboarding.retention import purge_finished
    from onboarding.services import Services

    settings = load_settings()
    async with Services(settings) as services:
        await purge_finished(
            services, DurableInstances(client), now=utcnow(), retention_days=settings.history_retention_days
        )
