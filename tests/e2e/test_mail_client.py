"""The documented mail client (demo/mail_client.py, docs/client.md) against a real onboarding: it
reads the hand-off from Key Vault as the mail product's own principal, gets an app-only token and
opens each mailbox over IMAP and POP3 with XOAUTH2 on the sandbox's Dovecot."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from azure.identity import ClientSecretCredential
from jsonschema import Draft202012Validator

from demo import mail_client
from onboarding.handoff import CREDENTIALS_SCHEMA
from tests.e2e.conftest import MAILBOXES, Tenant

ONBOARDED, NOT_ONBOARDED = MAILBOXES[:2], MAILBOXES[2]


def onboard(tenant: Tenant, **request: Any) -> dict:
    location = tenant.submit(mailboxes=list(ONBOARDED), **request)
    tenant.wait_for_decision(location)
    tenant.consent(accept=True)
    view = tenant.finished(location)
    assert view["status"] == "succeeded", view
    return view


def mail_product(tenant: Tenant) -> tuple[str, ClientSecretCredential]:
    """The mail product's own identity (its service principal's object id, and its credential): the
    onboarding request names it, and it gets Key Vault Secrets User on that one secret."""
    app_id, sp_id, secret = tenant.sandbox.create_client_app("Mail product")
    env = tenant.sandbox.env
    credential = ClientSecretCredential(
        env["TENANT_ID"],
        app_id,
        secret,
        authority=env["ENTRA_AUTHORITY_HOST"],
        disable_instance_discovery=True,
    )
    return sp_id, credential


def test_the_documented_client_reads_the_handoff_and_opens_each_onboarded_mailbox(tenant: Tenant):
    principal_id, credential = mail_product(tenant)
    view = onboard(tenant, mailProductPrincipalId=principal_id)
    secret = view["secret"]
    if tenant.drives_time and tenant.clock is not None:
        # The role takes up to 10 minutes to reach Key Vault (the realistic profile's vault_role_s).
        tenant.clock.advance(timedelta(minutes=11))
    with credential:
        # The sandbox vault is an IP literal, which cannot match the challenge's resource domain.
        handoff = mail_client.read_handoff(
            secret["vaultUri"], secret["name"], credential, verify_challenge_resource=False
        )
    assert handoff.client_id == view["app"]["appId"]
    assert handoff.secret not in repr(handoff)
    token = mail_client.app_token(handoff, disable_instance_discovery=True)

    assert handoff.imap is not None and handoff.pop is not None
    for mailbox in ONBOARDED:
        assert mail_client.imap_select_inbox(handoff.imap, mailbox, token) >= 0
        messages, size = mail_client.pop_stat(handoff.pop, mailbox, token)
        assert messages >= 0 and size >= 0
    # A mailbox the onboarding did not grant stays closed to the app.
    with pytest.raises(mail_client.MailLoginError):
        mail_client.imap_select_inbox(handoff.imap, NOT_ONBOARDED, token)
    with pytest.raises(mail_client.MailLoginError):
        mail_client.pop_stat(handoff.pop, NOT_ONBOARDED, token)


def test_the_secret_in_the_vault_is_the_documented_version_1_document(tenant: Tenant):
    view = onboard(tenant)
    [stored] = tenant.live_secrets()
    document = json.loads(stored.current.value)
    schema = json.loads(CREDENTIALS_SCHEMA.read_text(encoding="utf-8"))
    assert list(Draft202012Validator(schema).iter_errors(document)) == []
    assert stored.current.content_type == view["secret"]["contentType"]
    assert document["schemaVersion"] == view["secret"]["schemaVersion"] == 1


def test_the_demo_uses_the_documented_client_as_the_function_apps_identity(tenant: Tenant):
    from demo.__main__ import mail_client_check

    view = onboard(tenant)
    lines = mail_client_check(tenant.sandbox.env, view["secret"]["name"], list(ONBOARDED))
    assert [line.split(":")[0].strip() for line in lines] == list(ONBOARDED)
    assert all("IMAP login ok" in line and "POP3 login ok" in line for line in lines)
