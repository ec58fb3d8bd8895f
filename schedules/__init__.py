"""Timer triggers: the daily look for client secrets about to expire, and the daily purge of
finished histories past their retention."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from onboarding.lazy import lazy
from onboarding.settings import load_settings

if TYPE_CHECKING:
    from onboarding import records
else:  # the records load with the first timer run that reads them (onboarding/lazy.py)
    records = lazy("onboarding.records")

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

        async def record_of(onboarding_id: str) -> records.OnboardingRecord | None:
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
        rotated = (
            await _rotate_expiring(client, services, settings, record_of)
            if settings.rotate_days_before_expiry
            else []
        )
    log.info("secret expiry watch: %d warning(s) sent, %d rotation(s) started", len(warned), len(rotated))


async def _rotate_expiring(
    client: df.DurableOrchestrationClient,
    services: Any,
    settings: Any,
    record_of: Callable[[str], Awaitable[records.OnboardingRecord | None]],
) -> list[str]:
    """Start the rotation of each succeeded onboarding whose secret expires within
    ``ROTATE_DAYS_BEFORE_EXPIRY`` days (onboarding/rotation.py). One that cannot be started is logged
    and tried again on the next run; the others still start."""
    from onboarding import rotation
    from onboarding.expiry import utcnow

    now = utcnow()
    secrets = await services.vault.list_secrets()
    started = []
    for onboarding_id in rotation.due_for_rotation(secrets, now=now, days=settings.rotate_days_before_expiry):
        try:
            if await _start_rotation(client, settings, onboarding_id, now, record_of):
                started.append(onboarding_id)
        except Exception as exc:  # the SDK's messages can carry the Durable API's URLs: type only
            log.warning("automatic rotation of %s not started (%s)", onboarding_id, type(exc).__name__)
    return started


async def _start_rotation(
    client: df.DurableOrchestrationClient,
    settings: Any,
    onboarding_id: str,
    now: datetime,
    record_of: Callable[[str], Awaitable[records.OnboardingRecord | None]],
) -> bool:
    """Not while an offboarding exists or a rotation runs, nor after one failed (its admins were told;
    they rotate by POST once the cause is fixed)."""
    from endpoints.http import status_json
    from onboarding import durable_status, offboarding, rotation, webhook_hub
    from onboarding.webhooks import Channel

    if status_json(await client.get_status(offboarding.offboarding_instance_id(onboarding_id))):
        return False
    instance_id = rotation.rotation_instance_id(onboarding_id)
    previous = status_json(await client.get_status(instance_id))
    if previous and (
        durable_status.is_running(previous) or rotation.rotation_view(previous)["status"] == "failed"
    ):
        return False
    record = await record_of(onboarding_id)
    stream = await webhook_hub.writer_position(client, onboarding_id, Channel.ROTATION, instance_id)
    job = (
        rotation.input_from_record(
            record,
            overlap_hours=settings.rotation_overlap_hours,
            requested_at=now.isoformat(),
            stream=stream,
            options=settings.workflow_options(),
            days_before_expiry=settings.rotate_days_before_expiry,
        )
        if record
        else None
    )
    if job is None:
        log.info(
            "onboarding %s: secret expiring, not rotated automatically (see docs/api.md, Rotate)",
            onboarding_id,
        )
        return False
    await client.start_new(rotation.ROTATION_ORCHESTRATOR, instance_id, job.to_json())
    log.info("onboarding %s: automatic rotation started", onboarding_id)
    return True


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
