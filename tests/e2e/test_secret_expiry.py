"""The daily timer trigger warns the admins before an onboarded app's client secret expires."""

from __future__ import annotations

from tests.e2e.conftest import Tenant


def onboard(tenant: Tenant, lifetime_days: int, key: str) -> dict:
    location = tenant.submit(
        secretLifetimeDays=lifetime_days, idempotencyKey=key, mailboxes=["support@sandbox.example"]
    )
    tenant.wait_for_decision(location)
    mail = [m for m in tenant.mails_to_admin() if "Admin consent needed" in m.subject][-1]
    tenant.consent_from(mail)
    return tenant.finished(location)


def test_admins_are_warned_about_a_secret_that_expires_within_the_window(tenant: Tenant):
    short = onboard(tenant, 10, "short-lived")
    onboard(tenant, 180, "long-lived")
    before = len(tenant.mails_to_admin())
    tenant.host.run_timer("secret_expiry_watch")
    warnings = tenant.mails_to_admin()[before:]
    assert len(warnings) == 1
    [warning] = warnings
    assert warning.subject.startswith("Client secret of Helpdesk mail connector expires in 9 days")
    assert short["app"]["appId"] in warning.html and short["secret"]["name"] in warning.html
