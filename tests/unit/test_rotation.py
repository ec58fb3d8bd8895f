"""The rotation's payload contracts (each survives Durable's JSON), its steps with fakes (each runs
at least once: twice must leave the app and the vault as once), and its status view."""

from __future__ import annotations

import json
from typing import Any

import pytest

from onboarding import rotation
from onboarding.domain import AppRegistration, Protocol, SecretRef, app_unique_name, vault_secret_name
from onboarding.rotation import (
    AddCredential,
    CredentialChange,
    NewCredential,
    NotifyRotated,
    RemovedCredentials,
    RotationInput,
    RotationResult,
    RotationStatus,
)
from onboarding.settings import default_workflow_options
from onboarding.steps import create_secret, password_label
from onboarding.webhooks import Channel, StreamPosition
from tests.unit.fakes import FakeServices, settings

ID = "onb-" + "b" * 32
AT = "2030-01-01T00:00:00+00:00"
APP = AppRegistration(
    object_id="obj-1", app_id="app-1", unique_name=app_unique_name(ID), service_principal_id="sp-1"
)
SECRET = SecretRef("https://vault.example.test", vault_secret_name(ID), "v2", AT, "key-2")
RESULT = RotationResult(ID, RotationStatus.SUCCEEDED, "app-1", SECRET, ("key-1",))
PAYLOADS: list[Any] = [
    RotationInput(
        ID,
        "t",
        APP,
        ("IMAP", "POP"),
        ("a@contoso.test",),
        {"display_name": "x"},
        3,
        180,
        24,
        AT,
        7,
        {"kind": "function-key"},
        default_workflow_options(),
    ),
    AddCredential(ID, "t", APP, ("IMAP",), 180, AT),
    NewCredential(SECRET, "v1"),
    NewCredential(SECRET, None),
    CredentialChange(ID, "obj-1", "key-2", "v1"),
    RemovedCredentials(("key-1",)),
    RESULT,
    RotationResult(ID, RotationStatus.FAILED, "app-1", error="IMAP is disabled."),
    NotifyRotated(ID, {"display_name": "x"}, RESULT, 3, AT),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_every_rotation_payload_reads_back_as_it_was_built_after_crossing_durable(payload: Any) -> None:
    assert type(payload).from_json(json.loads(json.dumps(payload.to_json()))) == payload


def test_no_rotation_payload_carries_a_secret_value() -> None:
    for payload in PAYLOADS:
        assert "clientSecret" not in json.dumps(payload.to_json()) and "secret_text" not in json.dumps(
            payload.to_json()
        )


async def onboarded() -> FakeServices:
    svc = FakeServices(settings())
    await create_secret(svc, onboarding_id=ID, tenant_id="t", app=APP, lifetime_days=180, protocols=["IMAP"])
    return svc


async def test_adding_the_new_credential_twice_adds_it_once_as_the_vaults_new_version() -> None:
    svc = await onboarded()
    [old] = svc.graph.passwords["obj-1"]
    step = AddCredential(ID, "t", APP, ("IMAP",), 180, AT)
    first = await rotation.add_credential(svc, step)
    second = await rotation.add_credential(svc, step)
    assert first == second and first.previous_version == "v1"
    assert [p.key_id for p in svc.graph.passwords["obj-1"]] == [old.key_id, first.secret.key_id]
    versions = svc.vault.versions[vault_secret_name(ID)]
    assert [v.version for v in versions] == ["v1", "v2"] == ["v1", first.secret.version]
    new = svc.graph.passwords["obj-1"][1]
    assert json.loads(versions[-1].value)["clientSecret"] == new.secret_text
    assert new.display_name == rotation.rotation_label(ID, AT)


async def test_the_old_credentials_are_removed_but_the_new_one_and_foreign_ones_stay() -> None:
    svc = await onboarded()
    foreign = await svc.graph.add_password(
        "obj-1", "someone else's", svc.graph.passwords["obj-1"][0].end_date_time
    )
    new = await rotation.add_credential(svc, AddCredential(ID, "t", APP, ("IMAP",), 180, AT))
    change = CredentialChange(ID, "obj-1", new.secret.key_id)
    first = await rotation.remove_old(svc, change)
    assert len(first.key_ids) == 1
    assert await rotation.remove_old(svc, change) == RemovedCredentials(())
    assert {p.key_id for p in svc.graph.passwords["obj-1"]} == {foreign.key_id, new.secret.key_id}


async def test_discarding_a_new_credential_puts_the_old_document_back_and_keeps_the_old_key() -> None:
    svc = await onboarded()
    name = vault_secret_name(ID)
    old_value = svc.vault.versions[name][0].value
    [old] = svc.graph.passwords["obj-1"]
    new = await rotation.add_credential(svc, AddCredential(ID, "t", APP, ("IMAP",), 180, AT))
    change = CredentialChange(ID, "obj-1", new.secret.key_id, new.previous_version)
    await rotation.discard_new(svc, change)
    await rotation.discard_new(svc, change)  # a rerun restores nothing twice
    assert [p.key_id for p in svc.graph.passwords["obj-1"]] == [old.key_id]
    current = await svc.vault.get(name)
    assert current is not None and current.value == old_value and current.tags["keyId"] == old.key_id
    assert len(svc.vault.versions[name]) == 3


def test_the_label_marks_a_rotation_of_this_onboarding_only() -> None:
    label = rotation.rotation_label(ID, AT)
    assert label.startswith(password_label(ID)) and rotation._owned(ID, label)
    assert not rotation._owned("onb-" + "c" * 32, label) and rotation._owned(ID, password_label(ID))


def test_the_status_view_shows_the_overlap_while_running_then_the_result() -> None:
    steps = {"add_new_credential": {"state": "done", "at": AT, "detail": ""}}
    running = rotation.rotation_view(
        {
            "runtimeStatus": "Running",
            "customStatus": {"steps": steps, "secret": SECRET.to_json(), "removeOldAt": AT},
        }
    )
    assert running["status"] == "running" and running["oldCredentialRemovalAt"] == AT
    assert running["secretVersion"] == "v2" and [s["state"] for s in running["steps"]][:2] == [
        "done",
        "pending",
    ]
    done = rotation.rotation_view(
        {"runtimeStatus": "Completed", "output": {**RESULT.to_json(), "steps": steps}}
    )
    assert done["status"] == "succeeded" and done["error"] is None
    crashed = rotation.rotation_view({"runtimeStatus": "Terminated"})
    assert crashed["status"] == "failed" and "POST" in crashed["error"]


def test_only_credentials_expiring_within_the_lead_time_are_due_for_rotation() -> None:
    from datetime import datetime, timedelta

    from onboarding.adapters.keyvault import SecretInfo
    from onboarding.expiry import CREDENTIALS_CONTENT_TYPE
    from onboarding.records import RECORD_CONTENT_TYPE

    now = datetime.fromisoformat(AT)

    def secret(onboarding: str, days: float, content_type: str = CREDENTIALS_CONTENT_TYPE) -> SecretInfo:
        return SecretInfo(
            f"s-{onboarding}", now + timedelta(days=days), {"onboardingId": onboarding}, content_type
        )

    secrets = [
        secret("soon", 13),
        secret("later", 15),
        secret("expired", -1),
        secret("record", 3, RECORD_CONTENT_TYPE),
        SecretInfo("untagged", now + timedelta(days=1), {}, CREDENTIALS_CONTENT_TYPE),
    ]
    assert rotation.due_for_rotation(secrets, now=now, days=14) == ["soon"]


def test_only_a_succeeded_onboarding_whose_secret_outlives_the_lead_time_is_rotated_automatically() -> None:
    from dataclasses import replace

    from onboarding.records import OnboardingRecord

    record = OnboardingRecord(
        onboarding_id=ID,
        tenant_id="t",
        display_name="Helpdesk",
        protocols=(Protocol.IMAP,),
        admin_emails=("admin@contoso.test",),
        mailbox_count=12,
        mailboxes_shown=("a@contoso.test",),
        app_id="app-1",
        secret_name=vault_secret_name(ID),
        app_object_id="obj-1",
        service_principal_id="sp-1",
        secret_lifetime_days=180,
        outcome="succeeded",
    )

    def job(r: OnboardingRecord) -> RotationInput | None:
        options = default_workflow_options()
        return rotation.input_from_record(
            r,
            overlap_hours=24,
            requested_at=AT,
            stream=StreamPosition(Channel.ROTATION, 4),
            options=options,
            days_before_expiry=14,
        )

    made = job(record)
    assert made is not None and made.app == APP and made.mailboxes == ("a@contoso.test",)
    assert made.mailbox_count == 12 and made.lifetime_days == 180
    assert made.stream == StreamPosition(Channel.ROTATION, 4)
    assert job(replace(record, outcome="partial")) is None  # a mailbox may not verify: by hand
    assert job(replace(record, secret_lifetime_days=14)) is None  # it would be rotated every day


async def test_two_rotations_asked_for_within_one_second_each_make_their_own_credential() -> None:
    svc = await onboarded()
    first = await rotation.add_credential(svc, AddCredential(ID, "t", APP, ("IMAP",), 180, AT))
    later = AT.replace("00+00:00", "00.250000+00:00")
    second = await rotation.add_credential(svc, AddCredential(ID, "t", APP, ("IMAP",), 180, later))
    assert second.secret.key_id != first.secret.key_id and second.previous_version == first.secret.version
