"""The daily timer trigger warns the admins before an onboarded app's client secret expires: at 30,
14, 7 and 1 days and once at expiry, never daily, and never again after a rotation or offboarding."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from onboarding import expiry
from sandbox.state import SecretVersion, new_id
from tests.e2e.conftest import Tenant

WATCH = "secret_expiry_watch"


def onboard(tenant: Tenant, lifetime_days: int, name: str) -> dict:
    location = tenant.submit(
        secretLifetimeDays=lifetime_days,
        idempotencyKey=name,
        displayName=name,
        mailboxes=["support@sandbox.example"],
    )
    tenant.wait_for_decision(location)
    mail = [m for m in tenant.mails_to_admin() if "Admin consent needed" in m.subject][-1]
    tenant.consent_from(mail)
    if tenant.clock is None or tenant.drives_time:  # real time, or waits that move the clock themselves
        return tenant.finished(location)
    for _ in range(400):  # the host's clock only moves when told: let polls and retries come due
        tenant.host.idle(10)
        view = tenant.status(location)
        if view["status"] == "succeeded":
            return view
        tenant.clock.advance(timedelta(seconds=5))
    raise AssertionError(f"onboarding {name} did not finish: {view}")


def warnings(tenant: Tenant, name: str) -> list[str]:
    prefix = f"Client secret of {name} "
    return [m.subject[len(prefix) :] for m in tenant.mails_to_admin() if m.subject.startswith(prefix)]


def rotate(tenant: Tenant, view: dict, expires_on: datetime) -> None:
    """What a rotation leaves behind: a new credential on the app, stored as the secret's new Key
    Vault version, and the old credential removed after the overlap."""
    state = tenant.sandbox.state
    app = state.find_application(app_id=view["app"]["appId"])  # the live object, not a copy
    assert app is not None
    old = state.get_secret(view["secret"]["name"])
    assert old is not None
    old_key = old.current.tags["keyId"]
    new = state.add_password(app, "rotated", None, expires_on)
    now = state.clock()
    tags = {**old.current.tags, "keyId": new.key_id}
    tags = {k: v for k, v in tags.items() if not k.startswith("expiryWarned")}
    version = SecretVersion(
        new_id().replace("-", ""), json.dumps({"keyId": new.key_id}), now, now, old.current.content_type, tags
    )
    version.expires = expires_on
    state.put_secret(old.name, version)
    state.remove_password(app, old_key)


def offboard_app(tenant: Tenant, view: dict) -> None:
    state = tenant.sandbox.state
    app = state.find_application(app_id=view["app"]["appId"])  # the live object, not a copy
    assert app is not None
    state.delete_application(app)


def test_admins_are_warned_about_a_secret_that_expires_within_the_window(tenant: Tenant):
    short = onboard(tenant, 10, "Short")
    onboard(tenant, 180, "Long")
    tenant.host.run_timer(WATCH)
    [warning] = [m for m in tenant.mails_to_admin() if m.subject.startswith("Client secret of")]
    assert warning.subject == "Client secret of Short expires in 9 days"
    assert short["app"]["appId"] in warning.html and short["secret"]["name"] in warning.html
    tenant.host.run_timer(WATCH)  # a second run the same day tells nobody again
    assert warnings(tenant, "Short") == ["expires in 9 days"] and warnings(tenant, "Long") == []


def test_over_200_days_each_milestone_is_sent_once_and_the_watch_stops_after_rotation_offboarding_and_expiry(
    tenant_factory: Callable[..., Tenant], monkeypatch: pytest.MonkeyPatch
):
    tenant = tenant_factory(manual_clock=True)
    clock = tenant.clock
    assert clock is not None
    monkeypatch.setattr(expiry, "utcnow", clock.now)  # the watch reads the host's clock
    alpha = onboard(tenant, 40, "Alpha")  # runs to expiry
    bravo = onboard(tenant, 60, "Bravo")  # rotated after its first warning
    charlie = onboard(tenant, 50, "Charlie")  # its app is deleted after its first warning

    def left(view: dict) -> int:
        return expiry.days_left(datetime.fromisoformat(view["secret"]["expiresOn"]), clock.now())

    runs, day, skipped, doubled = 0, 0, False, False
    while day < 200:
        step = 1
        if not skipped and left(alpha) == 15:
            step, skipped = 2, True  # the host was down on the day of the 14-day milestone
        clock.advance(timedelta(days=step))  # crosses 06:00: the host runs the watch on its schedule
        day += step
        runs += 1
        tenant.host.wait_timer_runs(WATCH, runs)
        if not doubled and left(alpha) == 7:
            tenant.host.run_timer(WATCH)  # at-least-once: the same day's run again
            runs, doubled = runs + 1, True
        if left(bravo) == 25 and len(warnings(tenant, "Bravo")) == 1:
            rotate(tenant, bravo, clock.now() + timedelta(days=100))
        if left(charlie) == 20:
            offboard_app(tenant, charlie)

    alpha_expiry = datetime.fromisoformat(alpha["secret"]["expiresOn"]).strftime("%Y-%m-%d")
    assert skipped and doubled
    assert warnings(tenant, "Alpha") == [
        "expires in 30 days",
        "expires in 13 days",  # late, after the skipped day, but once
        "expires in 7 days",
        "expires in 1 day",
        f"expired on {alpha_expiry}",
    ]
    # The old secret's warnings stop at the rotation; the new version gets its own schedule.
    assert warnings(tenant, "Bravo")[0] == "expires in 30 days"
    assert warnings(tenant, "Bravo")[1:] == [
        "expires in 30 days",
        "expires in 14 days",
        "expires in 7 days",
        "expires in 1 day",
        warnings(tenant, "Bravo")[-1],
    ]
    assert warnings(tenant, "Bravo")[-1].startswith("expired on ")
    assert warnings(tenant, "Charlie") == ["expires in 30 days"]  # the app was deleted
    assert tenant.sandbox.state.get_secret(charlie["secret"]["name"]) is not None  # the secret stayed
