"""Retention over a simulated 120 days: the daily timer purges finished histories older than
HISTORY_RETENTION_DAYS (90), and the credentials they made are still watched: the expiry warnings
go out from the onboarding records (onboarding/records.py), including for an onboarding that finished
before records existed, whose record the purge writes from its history first."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from onboarding import expiry, records
from onboarding.drift import DRIFT_INSTANCE
from tests.e2e.conftest import Tenant
from tests.e2e.test_secret_expiry import WATCH, onboard, warnings

RETENTION = "history_retention"
DRIFT = "drift_check"


def rejected(tenant: Tenant, name: str) -> dict:
    """An onboarding the admin declined: compensated, so nothing of it is left to watch."""
    location = tenant.submit(idempotencyKey=name, displayName=name, mailboxes=["support@sandbox.example"])
    tenant.wait_for_decision(location)
    mail = [m for m in tenant.mails_to_admin() if "Admin consent needed" in m.subject][-1]
    tenant.consent_from(mail, accept=False)
    if tenant.drives_time:  # the realistic profile: the waits move the clock themselves
        return tenant.finished(location)
    for _ in range(200):
        tenant.host.idle(10)
        view = tenant.status(location)
        if view["status"] == "rejected":
            return view
        assert tenant.clock is not None
        tenant.clock.advance(timedelta(seconds=5))
    raise AssertionError(f"onboarding {name} was not rejected: {view}")


def instances_of(tenant: Tenant, onboarding_id: str) -> list[str]:
    """The onboarding's Durable instances: itself, its mailbox batches, its webhook delivery."""
    return [i["instanceId"] for i in tenant.host.instances() if i["instanceId"].startswith(onboarding_id)]


def record_text(tenant: Tenant, onboarding_id: str) -> str | None:
    secret = tenant.sandbox.state.get_secret(records.record_name(onboarding_id))
    return None if secret is None or secret.deleted_at is not None else secret.current.value


def test_over_120_days_old_histories_are_purged_and_live_credentials_are_still_warned(
    tenant_factory: Callable[..., Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = tenant_factory(manual_clock=True)
    clock = tenant.clock
    assert clock is not None
    monkeypatch.setattr(expiry, "utcnow", clock.now)  # both timers read the host's clock
    kept = onboard(tenant, 130, "Kept")  # warnings on days 100 and 116, after its history is purged
    legacy = onboard(tenant, 140, "Legacy")  # first warning on day 110
    declined = rejected(tenant, "Declined")
    ids = {name: view["id"] for name, view in (("Kept", kept), ("Legacy", legacy), ("Declined", declined))}
    # Each finished onboarding that left a credential has its record; a declined one left nothing.
    record = records.OnboardingRecord.from_json(json.loads(record_text(tenant, ids["Kept"]) or "{}"))
    assert record.admin_emails == ("it-admin@sandbox.example",) and record.app_id == kept["app"]["appId"]
    assert record.secret_name == kept["secret"]["name"] and record.mailbox_count == 1
    assert record_text(tenant, ids["Declined"]) is None
    # Legacy finished before records existed: only its history knows its admins.
    tenant.sandbox.state.purge_secret(records.record_name(ids["Legacy"]))
    assert all(instances_of(tenant, i) for i in ids.values())

    for day in range(1, 121):
        clock.advance(timedelta(days=1))  # crosses 05:00 (retention) and 06:00 (expiry watch)
        tenant.host.wait_timer_runs(RETENTION, day)
        tenant.host.wait_timer_runs(WATCH, day)
        # Today's drift check logs in as each app: let it finish before the next day's jump, or the
        # app's token (an hour long) expires under it and the check reports a breakage that is not.
        tenant.host.wait_timer_runs(DRIFT, day)
        tenant.host.wait_for(DRIFT_INSTANCE, timeout=60)
        if day == 89:  # not yet 90 days old: everything is still there
            assert all(instances_of(tenant, i) for i in ids.values())
            assert tenant.status(f"/api/onboardings/{ids['Kept']}")["status"] == "succeeded"
        if day == 91:
            assert {name: instances_of(tenant, i) for name, i in ids.items()} == {
                "Kept": [],
                "Legacy": [],
                "Declined": [],
            }
            assert tenant.http.get(f"/api/onboardings/{ids['Kept']}").status_code == 404

    # The purge wrote Legacy's record from its history before removing it.
    legacy_record = records.OnboardingRecord.from_json(json.loads(record_text(tenant, ids["Legacy"]) or "{}"))
    assert [o.kind for o in legacy_record.operations] == [records.Operation.RECORDED_FROM_HISTORY]
    assert legacy_record.admin_emails == ("it-admin@sandbox.example",)
    # Both live credentials were still warned about, months after their histories were purged.
    assert warnings(tenant, "Kept") == ["expires in 30 days", "expires in 14 days"]
    assert warnings(tenant, "Legacy") == ["expires in 30 days"]
    assert warnings(tenant, "Declined") == []
    # Nothing broke in those 120 days, and the daily drift check said so by saying nothing.
    assert not [m.subject for m in tenant.mails_to_admin() if "stopped working" in m.subject]
    # No record holds a secret.
    for onboarding_id in (ids["Kept"], ids["Legacy"]):
        text = record_text(tenant, onboarding_id) or ""
        assert not any(secret in text for secret in tenant.sandbox.state.issued_secrets())
