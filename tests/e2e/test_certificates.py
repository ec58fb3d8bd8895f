"""Certificate credentials end to end (issue 11 item 3), on the local host with the manual clock:
an onboarding with ``credentialType: "certificate"`` hands the mail product a certificate it logs in
with (a client assertion, then IMAP SELECT and POP STAT), and a client-secret onboarding switched to
a certificate by ``POST .../rotate {"credentialType": "certificate"}`` loses its password once the
overlap is over (``ROTATION_OVERLAP_HOURS=0``). The tenant_factory's leak scan also looks for every
private key Key Vault made: none may appear in the task hub, a log line, an HTTP answer or an email."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from demo import mail_client
from onboarding.domain import vault_certificate_name
from tests.e2e import test_rotation as rotation
from tests.e2e.conftest import MAILBOXES, Tenant
from tests.e2e.test_diagnosis import first_broken, of_onboarding
from tests.e2e.test_mail_client import mail_product
from tests.e2e.test_rotation import step_of, v1, vault_documents


@pytest.fixture
def tenant(tenant_factory: Any) -> Tenant:
    return tenant_factory(manual_clock=True, extra_env={"ROTATION_OVERLAP_HOURS": "0"})


def onboard(tenant: Tenant, lifetime_days: int, name: str, **request: Any) -> dict[str, Any]:
    view = rotation.onboard(tenant, lifetime_days, name, **request)
    assert view["status"] == "succeeded", view
    return view


def rotation_of(tenant: Tenant, view: dict[str, Any]) -> dict[str, Any]:
    """The rotation's part of the status once it has ended."""
    return rotation.rotation_of(tenant, view, lambda r: r["status"] != "running")


def test_a_certificate_onboarding_hands_over_a_certificate_that_logs_in_and_no_secret(tenant: Tenant) -> None:
    principal_id, credential = mail_product(tenant)
    view = onboard(tenant, 90, "Cert", credentialType="certificate", mailProductPrincipalId=principal_id)
    [document] = vault_documents(tenant, view["secret"]["name"])
    assert document["credentialType"] == "certificate" and "clientSecret" not in document
    [app] = tenant.live_apps()
    assert app.passwords == []  # the onboarding never made a client secret
    [key] = app.keys
    certificate = tenant.sandbox.state.get_certificate(vault_certificate_name(view["id"]))
    assert certificate is not None and key.der == certificate.versions[-1].der
    assert key.key_id == final_key(tenant, view["secret"]["name"])
    assert (view["secret"]["schemaVersion"], view["secret"]["credentialType"]) == (2, "certificate")
    assert document["certificateThumbprint"] == key.custom_key_identifier.hex().upper()
    assert rotation.client_logs_in(tenant, document)
    assert all(rotation.client_logs_in(tenant, document, mailbox) for mailbox in MAILBOXES[1:])
    # Not the private key, not the PEM: the status names where the credential is, never what it is.
    assert "PRIVATE KEY" not in json.dumps(view)

    # The documented client (docs/client.md) as the mail product: its own principal reads the
    # hand-off (the request named it: Secrets User on this one secret), and the certificate in it
    # signs the client assertion.
    with credential:
        assert tenant.clock is not None
        tenant.clock.advance(timedelta(minutes=11))  # its new vault role propagates (realistic: minutes)
        handoff = mail_client.read_handoff(
            view["secret"]["vaultUri"], view["secret"]["name"], credential, verify_challenge_resource=False
        )
    assert handoff.credential_type == "certificate" and handoff.secret not in repr(handoff)
    token = mail_client.app_token(handoff, disable_instance_discovery=True)
    assert handoff.imap is not None and handoff.pop is not None
    assert mail_client.imap_select_inbox(handoff.imap, MAILBOXES[0], token) >= 0
    assert mail_client.pop_stat(handoff.pop, MAILBOXES[0], token)[0] >= 0


def test_a_secret_onboarding_switched_to_a_certificate_keeps_no_password_after_the_overlap(
    tenant: Tenant,
) -> None:
    view = onboard(tenant, 180, "Switch")
    name = view["secret"]["name"]
    [old] = vault_documents(tenant, name)
    assert rotation.client_logs_in(tenant, old)

    refused = tenant.http.post(f"{v1(view)}/rotate", json={"credentialType": "pfx"})
    assert refused.status_code == 400 and "/credentialType" in refused.text
    response = tenant.http.post(f"{v1(view)}/rotate", json={"credentialType": "certificate"})
    assert response.status_code == 202, response.text
    final = rotation_of(tenant, view)
    assert final["status"] == "succeeded", final
    assert [s["state"] for s in final["steps"]] == ["done"] * 5

    documents = vault_documents(tenant, name)
    assert documents[:-1] == [old] and documents[-1]["credentialType"] == "certificate"
    new = documents[-1]
    [app] = tenant.live_apps()
    assert app.passwords == [] and [k.key_id for k in app.keys] == [final_key(tenant, name)]
    assert not rotation.client_logs_in(tenant, old)  # the password is gone from the app
    for mailbox in MAILBOXES:
        assert rotation.client_logs_in(tenant, new, mailbox)  # the certificate works for IMAP and POP
    assert step_of(final, "remove_old_credential")["state"] == "done"
    assert tenant.mails_to_admin()[-1].subject == "Certificate rotated: Switch"

    # The diagnosis follows the switch: every link holds, the credential named as a certificate.
    report = of_onboarding(tenant, view["id"])
    assert first_broken(report) == (None, "")
    [link] = [link for link in report["links"] if link["name"] == "credential"]
    assert link["detail"].startswith("Certificate "), link


def final_key(tenant: Tenant, name: str) -> str:
    current = tenant.sandbox.state.get_secret(name)
    assert current is not None
    return current.current.tags["keyId"]


def test_a_certificate_onboarding_rotates_to_a_new_certificate_version_and_key(tenant: Tenant) -> None:
    view = onboard(tenant, 30, "CertRotated", credentialType="certificate")
    name = view["secret"]["name"]
    [old] = vault_documents(tenant, name)

    response = tenant.http.post(f"{v1(view)}/rotate")  # no body: the type in use, a certificate
    assert response.status_code == 202, response.text
    final = rotation_of(tenant, view)
    assert final["status"] == "succeeded", final

    new = vault_documents(tenant, name)[-1]
    assert (
        new["credentialType"] == "certificate"
        and new["certificateThumbprint"] != old["certificateThumbprint"]
    )
    certificate = tenant.sandbox.state.get_certificate(vault_certificate_name(view["id"]))
    assert certificate is not None and len(certificate.versions) == 2
    [app] = tenant.live_apps()
    assert [k.der for k in app.keys] == [certificate.versions[-1].der] and app.passwords == []
    assert rotation.client_logs_in(tenant, new) and not rotation.client_logs_in(tenant, old)
    assert tenant.mails_to_admin()[-1].subject == "Certificate rotated: CertRotated"
