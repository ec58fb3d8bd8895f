"""Certificate credentials (issue 11 item 3) with fakes: the onboarding's step, a certificate
rotation, and the switch of a client-secret onboarding to a certificate. Each step runs at least
once, so twice (or after a crash) must leave the app and the vault as once does; and no private key
ever reaches a payload that crosses Durable."""

from __future__ import annotations

import json
from typing import Any

import pytest

from onboarding import rotation
from onboarding.certificates import validity_months
from onboarding.domain import (
    AppRegistration,
    CredentialType,
    app_unique_name,
    vault_certificate_name,
    vault_secret_name,
)
from onboarding.rotation import AddCredential, CredentialChange
from onboarding.steps import create_secret, password_label
from tests.unit.fakes import Crash, FakeServices, settings

ID = "onb-" + "c" * 32
AT = "2030-01-01T00:00:00+00:00"
LATER = "2030-06-01T00:00:00+00:00"
APP = AppRegistration("obj-1", "app-1", app_unique_name(ID), "sp-1")
NAME = vault_secret_name(ID)
CERT = vault_certificate_name(ID)


async def onboard(svc: FakeServices, credential_type: CredentialType, days: int = 180) -> Any:
    return await create_secret(
        svc,
        onboarding_id=ID,
        tenant_id="t",
        app=APP,
        lifetime_days=days,
        protocols=["IMAP", "POP"],
        credential_type=credential_type,
    )


def current_document(svc: FakeServices) -> dict[str, Any]:
    return json.loads(svc.vault.versions[NAME][-1].value)


def key_ids(svc: FakeServices) -> list[str]:
    return [k.key_id for k in svc.graph.keys.get(APP.object_id, [])]


async def test_a_certificate_onboarding_puts_the_public_part_on_the_app_and_the_key_in_the_vault() -> None:
    svc = FakeServices(settings())
    ref = await onboard(svc, CredentialType.CERTIFICATE, days=365)

    made = svc.certificates.versions[CERT][-1]
    assert svc.certificates.created == [(CERT, f"CN={APP.unique_name}", 13)]  # 365 days: 13 months
    [key] = svc.graph.keys[APP.object_id]
    assert (key.key_id, key.display_name, key.certificate) == (ref.key_id, password_label(ID), made.cer)
    assert svc.graph.passwords.get(APP.object_id, []) == []  # no client secret at all
    document = current_document(svc)
    assert document["credentialType"] == "certificate" and document["schemaVersion"] == 2
    assert document["clientCertificate"] == svc.certificates.keys[(CERT, made.version)]
    assert document["certificateThumbprint"] == made.thumbprint
    assert "clientSecret" not in document
    assert ref.expires_on == made.expires_on.isoformat() == document["expiresOn"]
    assert "PRIVATE KEY" not in json.dumps(ref.to_json())


async def test_running_the_certificate_step_twice_makes_one_certificate_and_one_key() -> None:
    svc = FakeServices(settings())
    first = await onboard(svc, CredentialType.CERTIFICATE)
    second = await onboard(svc, CredentialType.CERTIFICATE)
    assert first == second
    assert len(svc.certificates.created) == 1 and len(key_ids(svc)) == 1
    assert len(svc.vault.versions[NAME]) == 1


async def test_a_run_that_died_after_key_vault_made_the_certificate_is_finished_not_repeated() -> None:
    svc = FakeServices(settings())
    svc.certificates.crash_after_create = True
    with pytest.raises(Crash):
        await onboard(svc, CredentialType.CERTIFICATE)
    assert key_ids(svc) == [] and NAME not in svc.vault.versions

    ref = await onboard(svc, CredentialType.CERTIFICATE)
    assert len(svc.certificates.created) == 1  # the version made before the crash is the one used
    assert key_ids(svc) == [ref.key_id]
    assert current_document(svc)["certificateThumbprint"] == svc.certificates.versions[CERT][0].thumbprint


@pytest.mark.parametrize(("days", "months"), [(1, 1), (30, 1), (31, 2), (180, 6), (730, 25)])
def test_the_certificate_lives_at_least_as_long_as_the_request_asks(days: int, months: int) -> None:
    assert validity_months(days) == months


def adding(credential_type: CredentialType | None, at: str = LATER) -> AddCredential:
    return AddCredential(ID, "t", APP, ("IMAP", "POP"), 180, at, credential_type)


async def test_a_certificate_rotation_adds_a_new_version_and_key_then_removes_only_the_old_key() -> None:
    svc = FakeServices(settings())
    old = await onboard(svc, CredentialType.CERTIFICATE)

    new = await rotation.add_credential(svc, adding(None))  # no type asked: the current one
    again = await rotation.add_credential(svc, adding(None))
    assert new == again and new.previous_version == svc.vault.versions[NAME][0].version
    assert len(svc.certificates.versions[CERT]) == 2
    assert key_ids(svc) == [old.key_id, new.secret.key_id]  # both work during the overlap
    assert current_document(svc)["credentialType"] == "certificate"

    removed = await rotation.remove_old(svc, CredentialChange(ID, APP.object_id, new.secret.key_id))
    assert removed.key_ids == (old.key_id,)
    assert key_ids(svc) == [new.secret.key_id]


async def test_switching_a_secret_onboarding_to_a_certificate_removes_the_password_after_the_overlap() -> (
    None
):
    svc = FakeServices(settings())
    old = await onboard(svc, CredentialType.SECRET)

    new = await rotation.add_credential(svc, adding(CredentialType.CERTIFICATE))
    assert current_document(svc)["credentialType"] == "certificate"
    assert [p.key_id for p in svc.graph.passwords[APP.object_id]] == [old.key_id]  # kept for the overlap

    removed = await rotation.remove_old(svc, CredentialChange(ID, APP.object_id, new.secret.key_id))
    assert removed.key_ids == (old.key_id,)
    assert svc.graph.passwords[APP.object_id] == [] and key_ids(svc) == [new.secret.key_id]

    # The next rotation without a type stays a certificate.
    later = await rotation.add_credential(svc, adding(None, at="2030-09-01T00:00:00+00:00"))
    assert later.secret.key_id in key_ids(svc) and svc.graph.passwords[APP.object_id] == []


async def test_a_certificate_that_did_not_verify_is_discarded_and_the_old_document_is_current_again() -> None:
    svc = FakeServices(settings())
    await onboard(svc, CredentialType.SECRET)
    before = current_document(svc)
    new = await rotation.add_credential(svc, adding(CredentialType.CERTIFICATE))

    change = CredentialChange(ID, APP.object_id, new.secret.key_id, new.previous_version)
    await rotation.discard_new(svc, change)
    await rotation.discard_new(svc, change)  # at least once
    assert current_document(svc) == before and key_ids(svc) == []
    assert len(svc.graph.passwords[APP.object_id]) == 1


async def test_no_rotation_payload_of_a_certificate_carries_its_private_key() -> None:
    svc = FakeServices(settings())
    await onboard(svc, CredentialType.CERTIFICATE)
    new = await rotation.add_credential(svc, adding(CredentialType.CERTIFICATE))
    for payload in (new, adding(CredentialType.CERTIFICATE)):
        text = json.dumps(payload.to_json())
        assert "PRIVATE KEY" not in text and "clientCertificate" not in text
    assert type(new).from_json(json.loads(json.dumps(new.to_json()))) == new


async def test_offboarding_deletes_the_certificate_with_the_hand_off_secret_and_twice_is_once() -> None:
    from onboarding import offboarding

    svc = FakeServices(settings())
    await onboard(svc, CredentialType.CERTIFICATE)
    await offboarding.delete_secret(svc, onboarding_id=ID)
    await offboarding.delete_secret(svc, onboarding_id=ID)
    assert CERT not in svc.certificates.versions


async def test_a_failed_certificate_onboarding_is_undone_with_its_certificate() -> None:
    from onboarding.steps import compensate

    svc = FakeServices(settings())
    await onboard(svc, CredentialType.CERTIFICATE)
    report = await compensate(
        svc, onboarding_id=ID, app=APP, exchange_registered=False, credential_type=CredentialType.CERTIFICATE
    )
    assert CERT not in svc.certificates.versions
    assert any(line.startswith(f"Deleted Key Vault certificate {CERT}") for line in report)


async def test_a_certificate_that_cannot_be_read_fails_verification_without_quoting_it() -> None:
    from onboarding.domain import SecretRef
    from onboarding.errors import OnboardingError
    from onboarding.steps import verify_mailboxes

    svc = FakeServices(settings())
    ref = await onboard(svc, CredentialType.CERTIFICATE)  # the fake's key is not a real PEM
    with pytest.raises(OnboardingError) as caught:
        await verify_mailboxes(
            svc,
            tenant_id="t",
            app=APP,
            secret=SecretRef.from_json(ref.to_json()),
            protocols=["IMAP"],
            mailboxes=["a@contoso.test"],
        )
    assert caught.value.code == "credential_unreadable"
    assert "PRIVATE KEY" not in str(caught.value) and "key-" not in str(caught.value)
