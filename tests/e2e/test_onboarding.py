"""The onboarding, end to end, in every way an admin or a ticketing system will meet it."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from demo.admin import link_in
from onboarding.domain import EXCHANGE_ONLINE_APP_ID
from tests.e2e.conftest import ADMIN, MAILBOXES, Tenant, TenantClock, step_state


def exchange_roles(tenant: Tenant, app_id: str) -> set[str]:
    state = tenant.sandbox.state
    sp = state.find_service_principal(app_id, visible_only=False)  # what exists, replicated or not
    assert sp is not None
    exo = state.find_service_principal(EXCHANGE_ONLINE_APP_ID)
    assert exo is not None
    return set(state.role_values(sp.id, exo))


def assert_fully_onboarded(tenant: Tenant, view: dict, mailboxes=MAILBOXES, roles=("IMAP", "POP")) -> None:
    """The tenant holds exactly what the manual procedure would have made, once."""
    assert view["status"] == "succeeded", view
    [app] = tenant.live_apps()
    assert app.app_id == view["app"]["appId"]
    assert app.sign_in_audience == "AzureADMyOrg"
    assert len(app.passwords) == 1  # one credential in use, no orphan
    sp = tenant.sandbox.state.find_service_principal(app.app_id)
    assert sp is not None and sp.id == view["app"]["servicePrincipalId"]
    assert exchange_roles(tenant, app.app_id) == {f"{r}.AccessAsApp" for r in roles}
    # Exchange knows the enterprise app's object id, not the application's.
    [registration] = [e for e in tenant.sandbox.state.exchange_service_principals() if e.app_id == app.app_id]
    assert registration.object_id == sp.id != app.id
    assert tenant.permissions() == {(m, registration.object_id) for m in mailboxes}
    [secret] = tenant.live_secrets()
    assert secret.name == view["secret"]["name"]
    assert len(secret.versions) == 1
    document = json.loads(secret.current.value)
    assert document["clientId"] == app.app_id
    assert document["clientSecret"] == app.passwords[0].secret_text
    assert secret.current.content_type and secret.current.expires is not None
    assert {r["mailbox"]: r["state"] for r in view["mailboxes"]["results"]} == {
        m: "verified" for m in mailboxes
    }
    # Its record, for the expiry watch and day-2 operations once the history is purged: no secret.
    [record] = tenant.live_records()
    assert record.name == f"onboarding-record-{view['id']}"
    assert json.loads(record.current.value)["appId"] == app.app_id
    assert app.passwords[0].secret_text not in record.current.value


def assert_cleaned_up(tenant: Tenant) -> None:
    assert tenant.live_apps() == []
    assert tenant.live_secrets() == []
    assert tenant.live_records() == []  # nothing left to track: no addresses kept past retention
    assert tenant.sandbox.state.exchange_service_principals() == []


def test_consent_mode_accepted_gives_a_verified_app_with_its_secret_only_in_key_vault(tenant: Tenant):
    location = tenant.submit(externalReference="TICKET-1")
    waiting = tenant.wait_for_decision(location)
    assert waiting["waitingFor"]["kind"] == "admin_consent"
    [mail] = tenant.mails_to_admin()
    assert "Admin consent needed" in mail.subject
    # Nothing is granted before the admin decides.
    [app] = tenant.live_apps()
    assert exchange_roles(tenant, app.app_id) == set()
    tenant.consent(accept=True)
    view = tenant.finished(location)
    assert_fully_onboarded(tenant, view)
    # The redirect URI registered on the app is the project's callback.
    assert app.redirect_uris == [f"{tenant.host.base_url}/api/consent/callback"]
    outcome_mail = tenant.mails_to_admin()[-1]
    assert "succeeded" in outcome_mail.subject


def test_grant_mode_approved_assigns_the_roles_itself(tenant: Tenant):
    location = tenant.submit(consentMode="grant", protocols=["IMAP"])
    assert tenant.wait_for_decision(location)["waitingFor"]["kind"] == "admin_approval"
    admin = tenant.admin_opens("approve-link")
    # Opening the link (what a mail scanner does) changes nothing.
    assert tenant.status(location)["waitingFor"] is not None
    admin.press("approve")
    view = tenant.finished(location)
    assert_fully_onboarded(tenant, view, roles=("IMAP",))


def test_grant_mode_rejected_removes_everything(tenant: Tenant):
    location = tenant.submit(consentMode="grant")
    tenant.wait_for_decision(location)
    admin = tenant.admin_opens("reject-link")
    admin.press("reject")
    view = tenant.finished(location)
    assert view["status"] == "rejected"
    assert_cleaned_up(tenant)
    assert view["compensation"]


def test_admin_cancelling_in_entra_ends_rejected_and_cleaned_up(tenant: Tenant):
    location = tenant.submit()
    tenant.wait_for_decision(location)
    tenant.consent(accept=False)
    view = tenant.finished(location)
    assert view["status"] == "rejected"
    assert "declined" in view["errors"][0]["message"]
    assert_cleaned_up(tenant)


def test_the_requester_can_cancel_while_the_admin_has_not_decided(tenant: Tenant):
    location = tenant.submit()
    tenant.wait_for_decision(location)
    response = tenant.http.post(f"{location}/cancel")
    assert response.status_code == 202
    view = tenant.finished(location)
    assert view["status"] == "cancelled"
    assert_cleaned_up(tenant)
    # The consent link now leads nowhere: Entra no longer knows the app ...
    admin = tenant.admin_opens("consent-link", tenant.mails_to_admin()[0])
    assert "AADSTS700016" in admin.pages[-1][2]
    # ... and replaying its state to the callback changes nothing.
    state = parse_qs(urlsplit(link_in(tenant.mails_to_admin()[0].html, "consent-link")).query)["state"][0]
    replay = tenant.http.post(
        "/api/consent/callback",
        data={"admin_consent": "True", "tenant": tenant.sandbox.env["TENANT_ID"], "state": state},
    )
    assert replay.status_code >= 400
    assert tenant.status(location)["status"] == "cancelled"


def test_a_cancel_sent_while_an_activity_runs_after_a_replication_poll_is_not_lost(tenant_factory):
    # Each wait the requester can cut short waits for the cancel event. The Python Durable SDK gives
    # an event to the newest open wait of its name: with a fresh wait per poll, a cancel that came
    # while the decision email went out completed a finished poll's wait, and the onboarding kept
    # waiting for a decision that had been called off (docs/sandbox-facts.md).
    tenant = tenant_factory(configure=lambda sb: sb.faults.set_replication(application_s=2))
    tenant.sandbox.faults.graph.configure(latency_ms=700)  # the email takes its time going out ...
    location = tenant.submit()
    tenant.wait(location, lambda v: (v.get("waitingFor") or {}).get("kind") == "admin_consent")
    assert not tenant.mails_to_admin()
    response = tenant.http.post(f"{location}/cancel")  # ... when the cancel arrives
    assert response.status_code == 202
    tenant.sandbox.faults.graph.configure(latency_ms=0)
    view = tenant.finished(location, timeout=30)
    assert view["status"] == "cancelled"
    assert_cleaned_up(tenant)


def test_no_decision_before_the_deadline_sends_reminders_then_expires(tenant_factory):
    tenant = tenant_factory(manual_clock=True)
    location = tenant.submit()
    tenant.wait_for_decision(location)
    assert tenant.clock is not None
    for day in range(1, 5):
        tenant.host.idle(10)
        tenant.clock.advance(timedelta(hours=24))
        tenant.wait(location, lambda v, d=day: (v["waitingFor"] or {}).get("remindersSent") == d)
    tenant.host.idle(10)
    tenant.clock.advance(timedelta(hours=24))
    view = tenant.finished(location)
    assert view["status"] == "expired"
    subjects = [m.subject for m in tenant.mails_to_admin()]
    assert sum(s.startswith("Reminder") for s in subjects) == 4
    assert "expired" in subjects[-1]
    assert_cleaned_up(tenant)


def test_a_mailbox_with_imap_disabled_is_reported_with_the_fix(tenant_factory):
    tenant = tenant_factory(configure=lambda sb: sb.set_protocols("sales@sandbox.example", imap=False))
    location = tenant.submit()
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    assert view["status"] == "partial"
    results = {r["mailbox"]: r for r in view["mailboxes"]["results"]}
    assert results["sales@sandbox.example"]["state"] == "protocol_disabled"
    assert (
        "Set-CASMailbox -Identity sales@sandbox.example -ImapEnabled $true"
        in results["sales@sandbox.example"]["detail"]
    )
    assert results["support@sandbox.example"]["state"] == "verified"
    assert len(tenant.live_apps()) == 1 and len(tenant.live_secrets()) == 1  # the app stays: it works


def test_a_mailbox_that_does_not_exist_is_reported_and_the_others_work(tenant: Tenant):
    location = tenant.submit(mailboxes=[*MAILBOXES, "nobody@sandbox.example"])
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    assert view["status"] == "partial"
    results = {r["mailbox"]: r["state"] for r in view["mailboxes"]["results"]}
    assert results["nobody@sandbox.example"] == "not_found"
    assert [results[m] for m in MAILBOXES] == ["verified"] * 3
    assert "nobody@sandbox.example" not in {m for m, _ in tenant.permissions()}


def verify_attempts(tenant: Tenant, location: str) -> int:
    """How many times the first mailbox batch tried to log in (from its orchestration history)."""
    batch = tenant.host.get_status(f"{location.rsplit('/', 1)[-1]}:mailboxes:0", show_history=True)
    assert batch is not None
    history = batch.get("historyEvents") or batch.get("history") or []
    return sum(
        1
        for e in history
        if e.get("FunctionName", e.get("Name")) == "verify_mailboxes"
        and e.get("EventType", "") in ("TaskCompleted", "TaskScheduled")
    )


def test_a_permission_slower_than_the_first_login_is_waited_for(tenant_factory):
    tenant = tenant_factory(configure=lambda sb: sb.faults.set_mailbox_permission_delay(2.5))
    location = tenant.submit(protocols=["IMAP"])
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    assert_fully_onboarded(tenant, view, roles=("IMAP",))
    assert verify_attempts(tenant, location) >= 2


def test_graph_replication_delay_is_ridden_out(tenant_factory):
    # Minutes of replication on the tenant clock, moved by the test while the onboarding waits.
    clock = TenantClock()
    tenant = tenant_factory(
        sandbox_clock=clock,
        configure=lambda sb: sb.faults.set_replication(
            application_s=120, service_principal_s=60, app_role_assignment_s=90
        ),
    )
    location = tenant.submit()
    tenant.wait(location, lambda v: step_state(v, "service_principal") == "waiting")
    clock.advance(timedelta(minutes=3))
    tenant.wait_for_decision(location)
    tenant.consent()
    tenant.wait(location, lambda v: step_state(v, "confirm_permissions") == "waiting")
    clock.advance(timedelta(minutes=3))
    view = tenant.finished(location)
    assert_fully_onboarded(tenant, view)
    # The service principal create was refused during replication (NoBackingApplicationObject) and
    # retried by durable timers.
    creates = [
        e
        for e in tenant.sandbox.state.request_log()
        if e.method == "POST" and e.path.endswith("/servicePrincipals")
    ]
    assert any(e.status == 400 for e in creates) and creates[-1].status < 300


def test_the_same_request_twice_is_one_onboarding(tenant: Tenant):
    first = tenant.http.post("/api/onboardings", json=tenant.request(idempotencyKey="ticket-77"))
    second = tenant.http.post("/api/onboardings", json=tenant.request(idempotencyKey="ticket-77"))
    assert first.status_code == second.status_code == 202
    assert first.headers["location"] == second.headers["location"]
    location = first.headers["location"]
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    assert_fully_onboarded(tenant, view)
    # Sending it again after completion still names the same, finished onboarding.
    third = tenant.http.post("/api/onboardings", json=tenant.request(idempotencyKey="ticket-77"))
    assert third.headers["location"] == location
    assert len(tenant.live_apps()) == 1
    assert len([m for m in tenant.mails_to_admin() if "Admin consent needed" in m.subject]) == 1


def test_status_never_shows_a_secret_or_the_durable_management_urls(tenant: Tenant):
    location = tenant.submit()
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    text = json.dumps(view)
    for secret in tenant.sandbox.state.issued_secrets():
        assert secret not in text
    assert "runtime/webhooks" not in text and "sendEventPostUri" not in text and "code=" not in text
    assert ADMIN  # the admin email is the requester's own data


def test_many_batches_run_as_a_tree_no_orchestration_starting_more_than_the_fanout(tenant_factory):
    # Batches of one mailbox, at most two children per orchestration: 7 mailboxes make a tree three
    # levels deep. Every mailbox is still granted and verified once, and the one that does not exist
    # comes up through the groups to the status.
    boxes = tuple(f"desk{i}@sandbox.example" for i in range(6))
    tenant = tenant_factory(mailboxes=boxes, extra_env={"MAILBOX_BATCH_SIZE": "1", "MAILBOX_FANOUT": "2"})
    location = tenant.submit(mailboxes=[*boxes[:3], "nobody@sandbox.example", *boxes[3:]])
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    assert view["status"] == "partial"
    results = {r["mailbox"]: r["state"] for r in view["mailboxes"]["results"]}
    assert results == {**dict.fromkeys(boxes, "verified"), "nobody@sandbox.example": "not_found"}
    assert sorted(m for m, _ in tenant.permissions()) == sorted(boxes)

    onboarding_id = location.rsplit("/", 1)[-1]
    tenant.host.idle()  # the webhook delivery instance finishes after the onboarding it reports on
    instances = [i["instanceId"] for i in tenant.host.engine.query(prefix=onboarding_id)]
    batches = sorted(i for i in instances if i.rsplit(":", 1)[-1].isdigit() and ":mailboxes:" in i)
    assert batches == [f"{onboarding_id}:mailboxes:{k}" for k in range(7)]
    children: dict[str, int] = {}
    for instance in instances:
        status = tenant.host.get_status(instance, show_history=True)
        assert status is not None and status["runtimeStatus"] == "Completed", instance
        events = status["historyEvents"]
        children[instance] = sum(1 for e in events if e["EventType"] == "SubOrchestrationInstanceCreated")
    assert max(children.values()) == 2
    groups = sorted(
        i.rsplit(":", 1)[-1] for i in instances if ":mailboxes:" in i and "-" in i.rsplit(":", 1)[-1]
    )
    assert groups == ["0-1", "0-3", "2-3", "4-5", "4-6"]  # the parent starts 0-3 and 4-6


def test_each_batch_verifies_as_soon_as_it_is_granted_while_later_batches_are_granted(tenant_factory):
    # Five batches of one mailbox (one of which does not exist), two grants at a time: the onboarding
    # grants in batch order, never more than two at once, and starts a batch's verification when its
    # own grant is done, before the last batches are granted. Every mailbox still ends as it would.
    boxes = tuple(f"desk{i}@sandbox.example" for i in range(4))
    tenant = tenant_factory(
        mailboxes=boxes, extra_env={"MAILBOX_BATCH_SIZE": "1", "MAILBOX_GRANTS_AT_ONCE": "2"}
    )
    location = tenant.submit(mailboxes=[*boxes[:2], "nobody@sandbox.example", *boxes[2:]])
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    results = {r["mailbox"]: r["state"] for r in view["mailboxes"]["results"]}
    assert results == {**dict.fromkeys(boxes, "verified"), "nobody@sandbox.example": "not_found"}
    assert sorted(m for m, _ in tenant.permissions()) == sorted(boxes)

    onboarding_id = location.rsplit("/", 1)[-1]
    status = tenant.host.get_status(onboarding_id, show_history=True)
    assert status is not None
    grants: set[int] = set()  # the grant activities scheduled and not yet answered
    most, order = 0, []
    for event in status["historyEvents"]:
        kind = event["EventType"]
        if kind == "TaskScheduled" and event.get("FunctionName", event.get("Name")) == "grant_mailboxes":
            grants.add(event["EventId"])
            most = max(most, len(grants))
            order.append("grant")
        elif kind in ("TaskCompleted", "TaskFailed"):
            grants.discard(event.get("TaskScheduledId", -1))
        elif kind == "SubOrchestrationInstanceCreated":
            order.append(event["InstanceId"].rsplit(":", 1)[-1])
    assert order.count("grant") == 5 and most == 2
    # A batch starts verifying when its own grant is answered; two grants run at once, so the second
    # of a pair may be answered first (it is, under the realistic profile's latencies).
    assert sorted(o for o in order if o != "grant") == ["0", "1", "2", "3", "4"]
    # A batch verifies (its sub-orchestration starts) before the last batch is granted.
    assert order.index(next(o for o in order if o != "grant")) < len(order) - 1 - order[::-1].index("grant")
    # Each batch's own sub-orchestration only verified: no grant in its history.
    batch = tenant.host.get_status(f"{onboarding_id}:mailboxes:0", show_history=True)
    assert batch is not None
    names = {e.get("FunctionName", e.get("Name")) for e in batch["historyEvents"]}
    assert "verify_mailboxes" in names and "grant_mailboxes" not in names


def test_an_unrecognised_exchange_error_on_one_mailbox_fails_only_that_mailbox(tenant_factory):
    upstream = "Mailbox database DB-PRD-07 rejected the change on EXHUB-22."
    tenant = tenant_factory(
        configure=lambda sb: sb.faults.fail_cmdlet(
            "Add-MailboxPermission",
            "sales@sandbox.example",
            exception_type="Microsoft.Exchange.Sandbox.UnexpectedSandboxException",
            message=upstream,
        )
    )
    location = tenant.submit()
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    assert view["status"] == "partial"
    results = {r["mailbox"]: r for r in view["mailboxes"]["results"]}
    others = [m for m in MAILBOXES if m != "sales@sandbox.example"]
    assert [results[m]["state"] for m in others] == ["verified"] * 2
    assert {m for m, _ in tenant.permissions()} == set(others)
    failed = results["sales@sandbox.example"]
    assert failed["state"] == "failed"
    assert "Add-MailboxPermission -Identity sales@sandbox.example" in failed["detail"]
    assert "DB-PRD-07" not in json.dumps(view)  # Exchange's words stay out of the status


def test_exchange_catching_up_with_entra_is_waited_for_on_the_tenant_clock(tenant_factory):
    # Exchange's copy of the directory sees the new service principal ten minutes after Graph does;
    # meanwhile New-ServicePrincipal answers AADServicePrincipalNotFound.
    clock = TenantClock()
    tenant = tenant_factory(
        sandbox_clock=clock,
        configure=lambda sb: sb.faults.set_replication(exchange_service_principal_s=600),
    )
    location = tenant.submit()
    tenant.wait_for_decision(location)
    tenant.consent()
    waiting = tenant.wait(location, lambda v: step_state(v, "exchange_registration") == "waiting")
    assert waiting["status"] not in {"failed", "rejected"}
    clock.advance(timedelta(minutes=11))
    view = tenant.finished(location)
    assert_fully_onboarded(tenant, view)
    refused = [e for e in tenant.sandbox.state.request_log() if e.service == "exchange" and e.status == 400]
    assert refused  # the early New-ServicePrincipal was refused, and waited out
