"""The offboarding's steps with fakes (each runs at least once: twice must leave the tenant as once),
its status view, and its email."""

from __future__ import annotations

import pytest

from onboarding import emails, offboarding
from onboarding.domain import AppRegistration, OnboardingRequest, Protocol, app_unique_name
from onboarding.errors import InvalidRequestError, PermissionDeniedError
from onboarding.offboarding import OffboardingResult, OffboardingStatus, OffboardStep
from tests.unit.fakes import FakeServices, settings

ID = "onb-" + "a" * 32
APP = AppRegistration(
    object_id="obj-1", app_id="app-1", unique_name=app_unique_name(ID), service_principal_id="sp-1"
)
BOXES = ["a@contoso.test", "b@contoso.test", "c@contoso.test"]


def services() -> FakeServices:
    svc = FakeServices(settings(), mailboxes={m: {"IMAP": True, "POP": True} for m in BOXES})
    svc.graph.applications[APP.unique_name] = APP
    svc.graph.service_principals[APP.app_id] = "sp-1"
    svc.exchange.permissions = {(m, "sp-1") for m in BOXES}
    svc.exchange.principals = {"app-1"}
    return svc


async def test_the_app_is_found_by_its_unique_name_even_without_the_onboardings_output():
    found = await offboarding.find_app(services(), onboarding_id=ID, known=None)
    assert found == offboarding.FoundApp("obj-1", "app-1", "sp-1")


async def test_an_app_already_deleted_falls_back_to_what_the_onboarding_reported_else_nothing():
    svc = FakeServices(settings())
    assert await offboarding.find_app(svc, onboarding_id=ID, known=APP) == offboarding.FoundApp(
        "obj-1", "app-1", "sp-1"
    )
    assert await offboarding.find_app(svc, onboarding_id=ID, known=None) == offboarding.FoundApp()


async def test_removing_fullaccess_twice_removes_it_once_and_counts_every_mailbox():
    svc = services()
    first = await offboarding.remove_mailbox_access(svc, service_principal_id="sp-1", mailboxes=BOXES)
    second = await offboarding.remove_mailbox_access(svc, service_principal_id="sp-1", mailboxes=BOXES)
    assert first == second == offboarding.MailboxRemoval(removed=3)
    assert svc.exchange.permissions == set()


async def test_a_mailbox_exchange_refuses_fails_alone_with_the_manual_command():
    svc = services()
    svc.exchange.refusals["b@contoso.test"] = InvalidRequestError("Exchange Online refused it (HTTP 400).")
    result = await offboarding.remove_mailbox_access(svc, service_principal_id="sp-1", mailboxes=BOXES)
    assert result.removed == 2
    [(mailbox, detail)] = result.failed
    assert mailbox == "b@contoso.test"
    assert "Remove-MailboxPermission -Identity b@contoso.test -User sp-1 -AccessRights FullAccess" in detail
    assert svc.exchange.permissions == {("b@contoso.test", "sp-1")}


async def test_a_refusal_about_the_function_apps_rights_stops_the_batch_to_report_the_step():
    svc = services()
    svc.exchange.refusals["a@contoso.test"] = PermissionDeniedError("may not run Remove-MailboxPermission")
    with pytest.raises(PermissionDeniedError):
        await offboarding.remove_mailbox_access(svc, service_principal_id="sp-1", mailboxes=BOXES)


async def test_deleting_the_app_twice_soft_deletes_once_and_purges_app_and_principal_only_when_asked():
    svc = services()
    for _ in range(2):
        deleted = await offboarding.delete_app(
            svc, object_id="obj-1", service_principal_id="sp-1", purge=False
        )
        assert deleted == offboarding.AppDeletion(True)
    assert svc.graph.deleted == ["obj-1"] and svc.graph.purged == []
    for _ in range(2):
        await offboarding.delete_app(svc, object_id="obj-1", service_principal_id="sp-1", purge=True)
    assert svc.graph.purged == ["obj-1", "sp-1"]


async def test_the_secret_and_the_exchange_principal_are_removed_and_removing_again_is_fine():
    svc = services()
    svc.vault.versions[f"mail-app-{ID}"] = []
    for _ in range(2):
        assert await offboarding.delete_secret(svc, onboarding_id=ID) == f"mail-app-{ID}"
        await offboarding.remove_exchange_service_principal(svc, app_id="app-1")
    assert svc.vault.versions == {} and svc.exchange.principals == set()


async def test_the_mail_products_role_is_removed_once_and_removing_it_again_is_fine():
    svc = services()
    reader = "5b1c6f0e-aaaa-4000-8000-000000000001"
    svc.secret_access.readers = {(f"mail-app-{ID}", reader), ("mail-app-other", reader)}
    first = await offboarding.remove_secret_reader(svc, onboarding_id=ID, principal_id=reader)
    again = await offboarding.remove_secret_reader(svc, onboarding_id=ID, principal_id=reader)
    assert (first, again) == (True, False)
    assert svc.secret_access.readers == {("mail-app-other", reader)}  # another onboarding's stays


def result(**changes: object) -> OffboardingResult:
    base: dict[str, object] = {
        "onboarding_id": ID,
        "status": OffboardingStatus.SUCCEEDED,
        "app_id": "app-1",
        "removed": ("Removed FullAccess on 3 of 3 mailboxes.",),
        "mailboxes_removed": 3,
    }
    return OffboardingResult(**{**base, **changes})  # type: ignore[arg-type]


def request() -> OnboardingRequest:
    return OnboardingRequest(
        tenant_id="t",
        display_name="Helpdesk <connector>",
        protocols=(Protocol.IMAP,),
        mailboxes=tuple(BOXES),
        admin_emails=("admin@contoso.test",),
    )


def test_the_email_says_what_was_removed_and_how_to_restore_in_the_one_template():
    mail = emails.offboarded(request(), result(), 3)
    assert mail.subject == "Mailbox access removed: Helpdesk <connector>"
    assert "Helpdesk &lt;connector&gt;" in mail.html  # autoescaped like every email
    assert "Removed FullAccess on 3 of 3 mailboxes." in mail.text
    assert "restored from Entra ID" in mail.text and "app-1" in mail.text


def test_the_email_lists_what_is_left_and_says_a_purged_app_cannot_be_restored():
    left = "Delete the app registration: refused. Fix: Delete app registration app-1 in Entra ID."
    mail = emails.offboarded(request(), result(status=OffboardingStatus.FAILED, left=(left,), purge=True), 3)
    assert mail.subject.startswith("Mailbox access removal incomplete")
    assert left in mail.text and "cannot be restored" in mail.text


def test_the_status_view_shows_the_steps_in_order_while_running_then_the_result():
    running = {
        "runtimeStatus": "Running",
        "input": {"onboarding_id": ID, "purge": True},
        "customStatus": {"status": "running", "steps": {"stop_onboarding": {"state": "waiting", "at": "x"}}},
    }
    view = offboarding.offboarding_view(running)
    assert view["status"] == "running" and view["purge"] is True and offboarding.is_running(view)
    assert [s["name"] for s in view["steps"]] == [s.value for s in OffboardStep]
    assert view["steps"][0]["state"] == "waiting" and view["steps"][1]["state"] == "pending"
    done = {
        "runtimeStatus": "Completed",
        "input": '{"onboarding_id": "x", "purge": false}',  # Durable may hand back JSON text
        "output": {**result().to_json(), "steps": {}},
    }
    final = offboarding.offboarding_view(done)
    assert final["status"] == "succeeded" and final["removed"] == list(result().removed)
    assert not offboarding.is_running(final) and not offboarding.must_restart(done)


def test_an_offboarding_that_crashed_or_was_terminated_is_failed_and_restarted_by_the_next_delete():
    for runtime in ("Failed", "Terminated"):
        status = {"runtimeStatus": runtime, "input": {"onboarding_id": ID}}
        view = offboarding.offboarding_view(status)
        assert view["status"] == "failed" and "send DELETE again" in view["left"][0]
        assert offboarding.must_restart(status)


def test_a_stopped_runs_count_of_webhook_events_is_read_from_its_custom_status_and_carried_to_the_next():
    terminated = {
        "runtimeStatus": "Terminated",
        "output": "stopped by an operator",  # a terminated run's output is the reason, not its result
        "customStatus": {"status": "running", "webhook_channel_events": 3},
    }
    assert offboarding.events_reported(terminated) == 3
    assert offboarding.events_reported({"runtimeStatus": "Failed", "customStatus": None}) == 0
    job = offboarding.OffboardingInput(onboarding_id=ID, events_reported=3)
    assert offboarding.OffboardingInput.from_json(job.to_json()).events_reported == 3
    read = offboarding.ReadOnboarding(ID, cancel=True, events_reported=3)
    assert offboarding.ReadOnboarding.from_json(read.to_json()) == read
    assert "events_reported" not in offboarding.ReadOnboarding(ID).to_json()  # a first run's payload
