"""Retention: finished Durable histories older than ``HISTORY_RETENTION_DAYS`` are purged.

A history holds mailbox and admin addresses; kept forever it is personal data nobody needs. But the
expiry watch and the day-2 operations must keep working for a credential that outlives its history,
so before an onboarding's history goes, its record (``onboarding.records``) must exist:

- every instance created before the cutoff that is Completed, Failed or Terminated is a candidate
  (the Durable instance query filters on creation time; an onboarding finishes within days of its
  creation, far inside any retention worth setting);
- an onboarding whose credential secret is still in the vault and has no record gets one written
  from its history first; if that cannot be done (the vault refuses, the input is unreadable), its
  history is kept and tried again on the next run. Purging therefore never loses track of a live
  credential, whether its record was written at completion, failed then, or predates records;
- the other candidates (mailbox batches, webhook deliveries, onboardings that left nothing behind)
  are purged as they are;
- a record whose credential is gone (deleted by hand, or an offboarding that stopped between the
  two deletes) is deleted too: it tracks nothing any more.

Each instance is purged on its own (``purge_instance_history``) rather than by one time-range purge,
so that one whose record could not be written stays. The run is idempotent: a second run the same
day finds nothing older than the cutoff, and a crash mid-run leaves records written and histories
that the next run purges.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from onboarding import logcontext, records
from onboarding.domain import ORCHESTRATOR, vault_secret_name
from onboarding.errors import OnboardingError

if TYPE_CHECKING:
    from onboarding.ports import ServicesPort

# The Durable runtime statuses of an instance that will not run again.
FINISHED = ("Completed", "Failed", "Terminated")
STEP = "retention"  # the step named on log lines about one onboarding
log = logging.getLogger("onboarding.retention")


class InstanceStore(Protocol):
    """The Durable instances, as the purge needs them (schedules/ adapts the Durable client)."""

    def finished_before(self, cutoff: datetime) -> AsyncIterator[dict[str, Any]]:
        """Status documents (with input and output) of FINISHED instances created before ``cutoff``."""
        ...

    async def purge(self, instance_id: str) -> int:
        """Purge one instance's history; the number of instances deleted (0 if already gone)."""
        ...


@dataclass(frozen=True)
class RetentionReport:
    purged: int
    recorded: int  # records written from a history just before it was purged
    kept: tuple[str, ...]  # onboardings whose history stays until their record can be written
    records_removed: int


async def purge_finished(
    svc: ServicesPort, instances: InstanceStore, *, now: datetime, retention_days: int
) -> RetentionReport:
    cutoff = now - timedelta(days=retention_days)
    live = {info.name: dict(info.tags) for info in await svc.vault.list_secrets()}
    purged = recorded = 0
    kept: list[str] = []
    async for status in instances.finished_before(cutoff):
        instance_id = str(status.get("instanceId", ""))
        if status.get("name") == ORCHESTRATOR:
            with logcontext.bound(instance_id, STEP):
                wrote = await _keep_track_or_log(svc, status, live, now)
            if wrote is None:
                kept.append(instance_id)
                continue
            recorded += wrote
        purged += await instances.purge(instance_id)
    removed = await _remove_orphan_records(svc, live)
    log.info(
        "retention: %d histories purged (created before %s), %d records written, %d kept, %d records removed",
        purged,
        cutoff.isoformat(),
        recorded,
        len(kept),
        removed,
    )
    return RetentionReport(purged=purged, recorded=recorded, kept=tuple(kept), records_removed=removed)


async def _keep_track_or_log(
    svc: ServicesPort, status: dict[str, Any], live: dict[str, dict[str, str]], now: datetime
) -> int | None:
    try:
        wrote = await _keep_track(svc, status, live, now)
    except OnboardingError as exc:
        log.warning("retention: history kept, its record could not be written: %s", exc.message)
        return None
    if wrote is None:
        log.warning("retention: history kept, its input cannot be read into a record")
    return wrote


async def _keep_track(
    svc: ServicesPort, status: dict[str, Any], live: dict[str, dict[str, str]], now: datetime
) -> int | None:
    """1 when a record had to be written, 0 when none was needed, None when one is needed but
    cannot be made from this history."""
    onboarding_id = str(status["instanceId"])
    credential = live.get(vault_secret_name(onboarding_id))
    if credential is None or records.record_name(onboarding_id) in live:
        return 0  # nothing left to track, or already tracked
    record = records.from_history(status, app_id=credential.get("appId", ""), at=now)
    if record is None:
        return None
    await records.save(svc.vault, record)
    return 1


async def _remove_orphan_records(svc: ServicesPort, live: dict[str, dict[str, str]]) -> int:
    removed = 0
    for name, tags in live.items():
        onboarding_id = tags.get("onboardingId", "")
        if name != records.record_name(onboarding_id) or vault_secret_name(onboarding_id) in live:
            continue
        with logcontext.bound(onboarding_id, STEP):
            removed += await _remove_record(svc, onboarding_id)
    return removed


async def _remove_record(svc: ServicesPort, onboarding_id: str) -> int:
    try:
        # The listing is paged, not a snapshot: ask once more before deleting.
        if await records.credential_exists(svc.vault, onboarding_id):
            return 0
        await records.forget(svc.vault, onboarding_id)
    except OnboardingError as exc:
        log.warning("retention: record not removed: %s", exc.message)
        return 0
    log.info("retention: record removed, its credential is no longer in the vault")
    return 1
