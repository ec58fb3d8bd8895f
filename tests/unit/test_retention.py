"""The onboarding record and the retention run, on fakes: a record is written once, only for an
onboarding that left a credential; a history is purged only once its live credential is tracked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from onboarding import records
from onboarding.domain import ORCHESTRATOR, OnboardingRequest, Protocol, vault_secret_name
from onboarding.errors import TransientError
from onboarding.retention import purge_finished
from tests.unit.fakes import FakeVault

NOW = datetime(2027, 3, 1, 5, tzinfo=UTC)
OLD = "onb-" + "1" * 32
REQUEST = OnboardingRequest(
    tenant_id="11111111-1111-1111-1111-111111111111",
    display_name="Helpdesk",
    protocols=(Protocol.IMAP,),
    mailboxes=tuple(f"m{i}@contoso.com" for i in range(12)),
    admin_emails=("admin@contoso.com", "second@contoso.com"),
    requested_by="function-key",
)
APP = {"app_id": "app-1", "object_id": "obj-1", "unique_name": "u", "service_principal_id": "sp-1"}


async def credential(vault: FakeVault, onboarding_id: str, value: str = "s3cr3t-client-secret") -> None:
    tags = {"onboardingId": onboarding_id, "appId": "app-1", "keyId": "k1"}
    await vault.put(
        vault_secret_name(onboarding_id),
        json.dumps({"clientSecret": value}),
        content_type="x",
        expires_on=NOW + timedelta(days=60),
        tags=tags,
    )


async def finished(vault: FakeVault, onboarding_id: str = OLD, at: datetime = NOW) -> bool:
    return await records.record_finished(
        vault,
        onboarding_id=onboarding_id,
        request=REQUEST,
        mailbox_count=12,
        app=APP,
        outcome="succeeded",
        at=at,
    )


async def test_a_finished_onboarding_is_recorded_once_without_any_secret() -> None:
    vault = FakeVault()
    await credential(vault, OLD)
    assert await finished(vault) is True
    assert await finished(vault) is True  # the activity ran again: the same answer, nothing written
    assert len(vault.versions[records.record_name(OLD)]) == 1
    record = await records.load(vault, OLD)
    assert record is not None
    assert record.admin_emails == REQUEST.admin_emails and record.mailbox_count == 12
    assert record.mailboxes_shown == REQUEST.mailboxes[:5] and record.service_principal_id == "sp-1"
    assert record.as_request().display_name == "Helpdesk"
    text = vault.versions[records.record_name(OLD)][0].value
    assert "s3cr3t" not in text and "clientSecret" not in text


async def test_recording_a_finished_onboarding_reads_its_record_once() -> None:
    vault = FakeVault()
    await credential(vault, OLD)
    vault.reads.clear()
    assert await finished(vault) is True
    # The credential's check, then the record once: every read is a round trip at the end of the run.
    assert vault.reads == [vault_secret_name(OLD), records.record_name(OLD)]


async def test_an_onboarding_that_left_no_credential_gets_no_record() -> None:
    vault = FakeVault()
    assert await finished(vault) is False
    assert records.record_name(OLD) not in vault.versions


async def test_a_day_2_update_changes_the_record_and_logs_the_operation_once() -> None:
    vault = FakeVault()
    await credential(vault, OLD)
    await finished(vault)
    at = NOW + timedelta(days=3)
    for _ in range(2):  # an activity retried
        await records.update(
            vault, OLD, records.Operation.MAILBOXES_ADDED, at, "2 mailboxes", mailbox_count=14
        )
    record = await records.load(vault, OLD)
    assert record is not None and record.mailbox_count == 14
    assert [o.kind for o in record.operations] == [
        records.Operation.ONBOARDED,
        records.Operation.MAILBOXES_ADDED,
    ]
    assert len(vault.versions[records.record_name(OLD)]) == 2
    await finished(vault)  # a late retry of the completion does not undo the update
    assert (await records.load(vault, OLD)).mailbox_count == 14  # type: ignore[union-attr]
    assert await records.update(vault, "onb-" + "9" * 32, records.Operation.ROTATED, at) is None


class Instances:
    def __init__(self, statuses: list[dict[str, Any]]) -> None:
        self.statuses = statuses
        self.purged: list[str] = []

    async def finished_before(self, cutoff: datetime) -> AsyncIterator[dict[str, Any]]:
        for status in self.statuses:
            yield status

    async def purge(self, instance_id: str) -> int:
        self.purged.append(instance_id)
        return 1


def history(onboarding_id: str, name: str = ORCHESTRATOR, readable: bool = True) -> dict[str, Any]:
    job = {"onboarding_id": onboarding_id, "request": REQUEST.to_json()}
    return {
        "instanceId": onboarding_id,
        "name": name,
        "runtimeStatus": "Completed",
        "input": json.dumps(job) if readable else "{not json",
        "output": {"outcome": "succeeded", "app": APP},
    }


class RefusingVault(FakeVault):
    """Refuses to write records (throttled), after the credential is in."""

    async def put(self, name: str, value: str, **kwargs: Any) -> str:
        if name.startswith(records.RECORD_PREFIX):
            raise TransientError("Key Vault is throttling.", code="throttled")
        return await super().put(name, value, **kwargs)


async def test_a_history_is_purged_only_once_its_live_credential_has_a_record() -> None:
    vault = FakeVault()
    legacy, tracked, unreadable, gone = ("onb-" + c * 32 for c in "2345")
    for onboarding_id in (legacy, tracked, unreadable):
        await credential(vault, onboarding_id)
    await finished(vault, tracked)
    batch = history(f"{legacy}:mailboxes:0", name="mailbox_batch_orchestrator")
    instances = Instances(
        [history(legacy), history(tracked), history(unreadable, readable=False), history(gone), batch]
    )
    report = await purge_finished(SimpleNamespace(vault=vault), instances, now=NOW, retention_days=90)
    assert instances.purged == [legacy, tracked, gone, f"{legacy}:mailboxes:0"]
    assert report.kept == (unreadable,) and report.recorded == 1
    record = await records.load(vault, legacy)
    assert record is not None and record.admin_emails == REQUEST.admin_emails
    assert [o.kind for o in record.operations] == [records.Operation.RECORDED_FROM_HISTORY]
    assert await records.load(vault, gone) is None  # it left nothing to track


async def test_a_history_stays_when_the_vault_refuses_its_record() -> None:
    vault = RefusingVault()
    await credential(vault, OLD)
    instances = Instances([history(OLD)])
    report = await purge_finished(SimpleNamespace(vault=vault), instances, now=NOW, retention_days=90)
    assert instances.purged == [] and report.kept == (OLD,)


async def test_a_record_whose_credential_is_gone_is_removed() -> None:
    vault = FakeVault()
    await credential(vault, OLD)
    await finished(vault)
    await vault.delete(vault_secret_name(OLD))  # deleted by hand
    report = await purge_finished(SimpleNamespace(vault=vault), Instances([]), now=NOW, retention_days=90)
    assert report.records_removed == 1 and await records.load(vault, OLD) is None
