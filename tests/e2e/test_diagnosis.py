"""Diagnosis and the daily drift check, end to end: after a successful onboarding, each link of the
chain is broken behind the app's back in the sandbox, one at a time, and the diagnosis names exactly
that link as the first broken one, with a fix an admin can act on; the drift check reports a
breakage once, by webhook and by email, and not again the next day."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from onboarding.domain import EXCHANGE_ONLINE_APP_ID
from onboarding.drift import DRIFT_INSTANCE
from onboarding.webhooks import EventType
from tests.e2e.conftest import Tenant
from tests.e2e.test_webhooks import events
from tests.trust.receiver import CallbackReceiver

BOX = "support@sandbox.example"
DRIFT_TIMER = "drift_check"


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as server:
        yield server


def onboard(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    location = tenant.submit(mailboxes=[BOX], **overrides)
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    assert view["status"] == "succeeded", view
    return view


def diagnose(tenant: Tenant, start: Callable[[], Any]) -> dict[str, Any]:
    """Start a diagnosis, then follow its Location until the report is there."""
    accepted = start()
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["location"]
    assert accepted.headers["retry-after"]
    give_up = time.monotonic() + 60
    while True:
        response = tenant.http.get(location)
        if response.status_code == 200:
            report = dict(response.json())
            assert report["status"] == "completed", report
            return report
        assert response.status_code == 202 and response.headers["location"] == location, response.text
        assert time.monotonic() < give_up, response.text
        time.sleep(0.1)


def of_onboarding(tenant: Tenant, onboarding_id: str) -> dict[str, Any]:
    return diagnose(tenant, lambda: tenant.http.get(f"/api/v1/onboardings/{onboarding_id}/diagnosis"))


def first_broken(report: dict[str, Any]) -> tuple[str | None, str]:
    states = [link["state"] for link in report["links"]]
    name = report["firstBroken"]
    if name is None:
        assert states == ["ok"] * 7, report
        return None, ""
    at = [link["name"] for link in report["links"]].index(name)
    assert states == ["ok"] * at + ["broken"] + ["skipped"] * (6 - at), report
    return name, report["links"][at]["fix"]


class Chain:
    """The onboarded app's objects in the sandbox, to break and mend."""

    def __init__(self, tenant: Tenant, view: dict[str, Any]) -> None:
        self.state = tenant.sandbox.state
        self.app_id = view["app"]["appId"]
        self.sp_id = view["app"]["servicePrincipalId"]

    @property
    def app(self) -> Any:
        app = self.state.find_application(app_id=self.app_id)
        assert app is not None
        return app

    @property
    def esp(self) -> Any:
        [esp] = [e for e in self.state.exchange_service_principals() if e.app_id == self.app_id]
        return esp

    @property
    def mailbox(self) -> Any:
        box = self.state.find_mailbox(BOX)
        assert box is not None
        return box

    def imap_assignment(self) -> Any:
        exo = self.state.find_service_principal(EXCHANGE_ONLINE_APP_ID)
        role = self.state.role_by_value(exo, "IMAP.AccessAsApp")
        found = self.state.find_assignment(self.sp_id, exo.id, role.id)
        assert found is not None
        return exo, role, found


def settled(made: Any) -> Any:
    """A grant mended by hand, dated a day back: under the realistic profile a new FullAccess or app
    role assignment takes up to an hour to apply, and this test is about the diagnosis, not that wait."""
    made.created_at -= timedelta(days=1)
    return made


def test_each_link_broken_behind_the_apps_back_is_named_first_with_its_fix(tenant: Tenant):
    view = onboard(tenant)
    onboarding_id = view["id"]
    chain = Chain(tenant, view)
    state = chain.state

    def expect(link: str | None, fix: str = "") -> None:
        name, said = first_broken(of_onboarding(tenant, onboarding_id))
        assert name == link
        assert fix in said

    expect(None)

    state.set_protocols(BOX, imap=False)
    expect("mailbox_access", f"Set-CASMailbox -Identity {BOX} -ImapEnabled $true")
    state.set_protocols(BOX, imap=True)

    state.remove_mailbox_permission(chain.mailbox, chain.esp)
    expect(
        "mailbox_access",
        f"Add-MailboxPermission -Identity {BOX} -User {chain.sp_id} -AccessRights FullAccess",
    )
    settled(state.add_mailbox_permission(chain.mailbox, chain.esp, auto_mapping=False))

    esp = chain.esp
    state.remove_exchange_sp(esp)
    expect(
        "exchange_service_principal", f"New-ServicePrincipal -AppId {chain.app_id} -ObjectId {chain.sp_id}"
    )
    registered = settled(state.add_exchange_sp(esp.app_id, esp.object_id, esp.display_name))
    settled(state.add_mailbox_permission(chain.mailbox, registered, auto_mapping=False))

    exo, role, assignment = chain.imap_assignment()
    state.remove_assignment(assignment.id)
    expect("token_roles", "Grant admin consent for IMAP.AccessAsApp")
    settled(state.add_assignment(chain.sp_id, exo, role.id))

    [password] = chain.app.passwords
    end = password.end
    password.end = state.clock() - timedelta(days=1)
    expect("credential", "Add a new client secret")
    password.end = end

    state.remove_password(chain.app, password.key_id)
    expect("credential", "Add a new client secret")
    chain.app.passwords.append(password)

    expect(None)  # every link mended

    sp = state.find_service_principal(chain.app_id)
    state.delete_service_principal(sp)
    expect("service_principal", f"New-MgServicePrincipal -AppId {chain.app_id}")

    state.delete_application(chain.app)
    expect("app_registration", "Restore the app registration")


def test_an_app_id_and_a_mailbox_are_diagnosed_without_an_onboarding_id(tenant: Tenant):
    view = onboard(tenant)
    body = {"appId": view["app"]["appId"], "mailbox": BOX, "tenantId": tenant.sandbox.env["TENANT_ID"]}
    report = diagnose(tenant, lambda: tenant.http.post("/api/v1/diagnoses", json=body))
    assert first_broken(report) == (None, "")
    assert report["appId"] == view["app"]["appId"] and report["mailboxCount"] == 1

    bad = tenant.http.post("/api/v1/diagnoses", json={**body, "appId": "not-a-guid", "tenantId": "x"})
    assert bad.status_code == 400
    assert {e["field"] for e in bad.json()["errors"]} == {"/appId", "/tenantId"}
    assert tenant.http.get("/api/v1/diagnoses/diag-" + "0" * 32).status_code == 404
    unknown = tenant.http.get("/api/v1/onboardings/onb-" + "0" * 32 + "/diagnosis")
    assert unknown.status_code == 404


def run_drift_check(tenant: Tenant) -> dict[str, Any]:
    if tenant.clock is not None:  # a manual clock (realistic profile): each run at its own time
        tenant.clock.advance(timedelta(seconds=1))
    tenant.host.run_timer(DRIFT_TIMER)
    give_up = time.monotonic() + 60
    while True:  # the timer starts the instance; wait for this run to finish
        status = tenant.host.wait_for(DRIFT_INSTANCE, timeout=60)
        output = status.get("output")
        if isinstance(output, dict) and output.get("at") not in run_drift_check.seen:  # type: ignore[attr-defined]
            run_drift_check.seen.add(output["at"])  # type: ignore[attr-defined]
            tenant.host.idle()
            return output
        assert time.monotonic() < give_up, status
        time.sleep(0.1)


run_drift_check.seen = set()  # type: ignore[attr-defined]


def drift_mails(tenant: Tenant) -> list[Any]:
    return [m for m in tenant.mails_to_admin() if "stopped working" in m.subject]


def drift_events(
    tenant: Tenant, receiver: CallbackReceiver, onboarding_id: str, count: int
) -> list[dict[str, Any]]:
    """The drift events received, once the delivery holds exactly the onboarding's events and ``count``
    drift events and has delivered them all (no sleeping on a guess)."""
    give_up = time.monotonic() + 60
    while True:
        delivery = tenant.status(f"/api/v1/onboardings/{onboarding_id}?view=current")["callbackDelivery"]
        received = events(tenant, receiver.received())
        completed = [e["sequence"] for e in received if e["type"] == EventType.COMPLETED.value]
        if completed and delivery["state"] == "delivered" and delivery["events"] == completed[0] + count:
            return [e for e in received if e["type"] == EventType.DRIFT_DETECTED.value]
        assert time.monotonic() < give_up, (delivery, [(e["sequence"], e["type"]) for e in received])
        time.sleep(0.05)


def test_the_daily_drift_check_reports_a_breakage_once_by_webhook_and_email(
    tenant_factory: Callable[..., Tenant], receiver: CallbackReceiver
):
    tenant = tenant_factory()
    view = onboard(tenant, callbackUrl=receiver.url)
    chain = Chain(tenant, view)

    healthy = run_drift_check(tenant)
    assert healthy["checked"] == 1 and healthy["reported"] == {}
    assert drift_mails(tenant) == [] and drift_events(tenant, receiver, view["id"], 0) == []

    tenant.sandbox.state.remove_mailbox_permission(chain.mailbox, chain.esp)
    broken = run_drift_check(tenant)
    assert broken["reported"] == {view["id"]: {"link": "mailbox_access", "channels": ["email", "webhook"]}}
    [mail] = drift_mails(tenant)
    assert "Add-MailboxPermission" in mail.html and view["app"]["appId"] in mail.html
    [event] = drift_events(tenant, receiver, view["id"], 1)
    assert event["data"]["link"]["name"] == "mailbox_access"
    assert "Add-MailboxPermission" in event["data"]["link"]["fix"]
    completed = [e for e in events(tenant, receiver.received()) if e["type"] == EventType.COMPLETED.value]
    assert event["sequence"] == completed[0]["sequence"] + 1  # numbered after the onboarding's own events

    run_drift_check(tenant)  # the next day: the same breakage is not reported again
    assert len(drift_mails(tenant)) == 1 and len(drift_events(tenant, receiver, view["id"], 1)) == 1

    settled(tenant.sandbox.state.add_mailbox_permission(chain.mailbox, chain.esp, auto_mapping=False))
    assert run_drift_check(tenant)["reported"] == {}  # mended: forgotten

    tenant.sandbox.state.set_protocols(BOX, pop=False)  # a new breakage is news again
    run_drift_check(tenant)
    assert len(drift_mails(tenant)) == 2
    assert [e["data"]["link"]["name"] for e in drift_events(tenant, receiver, view["id"], 2)] == [
        "mailbox_access"
    ] * 2
