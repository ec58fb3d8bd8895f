"""The mailbox operations' contracts (each payload survives Durable's JSON, the record activity is
registered with its types and records once however often it runs) and their status view."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import activities
import function_app  # noqa: F401 - registers every activity with its contract
from onboarding import mailbox_ops, records
from onboarding.domain import AppRegistration, MailboxResult, MailboxState, Protocol, SecretRef
from onboarding.mailbox_ops import (
    MailboxOperationInput,
    MailboxOperationResult,
    OperationKind,
    OperationStatus,
    RecordMailboxOperation,
)
from onboarding.settings import default_workflow_options
from tests.unit.fakes import FakeServices, settings

ID = "onb-" + "c" * 32
AT = "2030-01-01T00:00:00+00:00"
APP = AppRegistration("obj-1", "app-1", "u", "sp-1")
SECRET = SecretRef("https://vault.example.test", "mail-app", "v1", AT, "key-1")
VERIFIED = MailboxResult("b@contoso.test", MailboxState.VERIFIED, "Login verified.", {"IMAP": True})
FAILED = MailboxResult("c@contoso.test", MailboxState.PROTOCOL_DISABLED, "IMAP is off.", {"IMAP": False})
RESULT = MailboxOperationResult.of(ID, OperationKind.RETRY, [VERIFIED, FAILED])
PAYLOADS: list[Any] = [
    MailboxOperationInput(
        ID,
        OperationKind.RETRY,
        "t",
        APP,
        SECRET,
        ("IMAP",),
        ("b@contoso.test",),
        AT,
        5,
        {"kind": "key"},
        default_workflow_options(),
    ),
    RESULT,
    RecordMailboxOperation(RESULT, AT),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_every_payload_reads_back_as_it_was_built_after_crossing_durable(payload: Any) -> None:
    assert type(payload).from_json(json.loads(json.dumps(payload.to_json()))) == payload


def test_an_operation_with_a_mailbox_still_failing_is_partial_and_one_all_verified_succeeded() -> None:
    assert RESULT.status is OperationStatus.PARTIAL
    assert MailboxOperationResult.of(ID, OperationKind.RETRY, [VERIFIED]).status is OperationStatus.SUCCEEDED


def test_the_record_activity_is_registered_with_its_contract() -> None:
    assert activities.REGISTERED[mailbox_ops.RECORD.name] is mailbox_ops.RECORD


def test_recording_a_retry_twice_logs_it_once_in_the_onboarding_record() -> None:
    svc = FakeServices(settings())
    record = records.OnboardingRecord(
        onboarding_id=ID,
        tenant_id="t",
        display_name="Helpdesk",
        protocols=(Protocol.IMAP,),
        admin_emails=("admin@contoso.test",),
        mailbox_count=3,
        mailboxes_shown=(),
        app_id="app-1",
        secret_name="mail-app",
        outcome="partial",
    )

    async def run() -> records.OnboardingRecord | None:
        await records.save(svc.vault, record)
        payload = RecordMailboxOperation(RESULT, AT)
        await mailbox_ops.record_operation(svc, payload)
        await mailbox_ops.record_operation(svc, payload)
        return await records.load(svc.vault, ID)

    stored = asyncio.run(run())
    assert stored is not None
    [done] = stored.operations
    assert done.kind is records.Operation.MAILBOXES_RETRIED and "1 of 2" in done.detail


def test_the_record_counts_mailboxes_added_and_removed_once_however_often_it_runs() -> None:
    """The onboarding record's mailbox count follows the onboarding: an addition counts every mailbox
    added (one that failed stays the onboarding's, to be retried); a removal only those whose
    FullAccess is gone. A rerun of the activity changes nothing."""
    svc = FakeServices(settings())
    shown = ("a@contoso.test", "b@contoso.test", "c@contoso.test")
    record = records.OnboardingRecord(
        onboarding_id=ID,
        tenant_id="t",
        display_name="Helpdesk",
        protocols=(Protocol.IMAP,),
        admin_emails=("admin@contoso.test",),
        mailbox_count=3,
        mailboxes_shown=shown,
        app_id="app-1",
        secret_name="mail-app",
        outcome="succeeded",
    )
    added = MailboxOperationResult.of(
        ID,
        OperationKind.ADD,
        [
            MailboxResult("d@contoso.test", MailboxState.VERIFIED, "Login verified."),
            MailboxResult("e@contoso.test", MailboxState.FAILED, "Login refused."),
        ],
    )
    removed = MailboxOperationResult.of(
        ID,
        OperationKind.REMOVE,
        [
            MailboxResult("a@contoso.test", MailboxState.REMOVED, "FullAccess removed."),
            MailboxResult("b@contoso.test", MailboxState.FAILED, "Login still works."),
        ],
    )

    async def run(result: MailboxOperationResult, at: str) -> records.OnboardingRecord | None:
        for _ in range(2):  # an activity runs at least once
            await mailbox_ops.record_operation(svc, RecordMailboxOperation(result, at))
        return await records.load(svc.vault, ID)

    asyncio.run(records.save(svc.vault, record))
    after_add = asyncio.run(run(added, AT))
    assert after_add is not None
    assert after_add.mailbox_count == 5
    assert after_add.mailboxes_shown == (*shown, "d@contoso.test", "e@contoso.test")
    after_remove = asyncio.run(run(removed, "2030-01-02T00:00:00+00:00"))
    assert after_remove is not None
    assert after_remove.mailbox_count == 4
    assert "a@contoso.test" not in after_remove.mailboxes_shown
    assert "b@contoso.test" in after_remove.mailboxes_shown
    assert [op.kind for op in after_remove.operations] == [
        records.Operation.MAILBOXES_ADDED,
        records.Operation.MAILBOXES_REMOVED,
    ]
    assert "1 of 2 mailboxes removed: a@contoso.test" in after_remove.operations[-1].detail


def onboarding_view() -> dict[str, Any]:
    def shown(mailbox: str, state: str) -> dict[str, Any]:
        return {
            "mailbox": mailbox,
            "state": state,
            "protocols": {},
            "detail": "",
            "needsAction": state != "verified",
        }

    results = [
        shown("a@contoso.test", "verified"),
        shown("b@contoso.test", "failed"),
        shown("c@contoso.test", "failed"),
    ]
    return {"mailboxes": {"total": 3, "counts": {"verified": 1, "failed": 2}, "results": results}}


def test_a_finished_retry_shows_each_mailbox_s_latest_state_in_the_onboarding_view() -> None:
    view = onboarding_view()
    assert mailbox_ops.needing_attention(view) == ["b@contoso.test", "c@contoso.test"]
    finished = {"runtimeStatus": "Completed", "output": RESULT.to_json()}
    mailbox_ops.overlay(view, finished)
    assert [r["state"] for r in view["mailboxes"]["results"]] == ["verified", "verified", "protocol_disabled"]
    assert view["mailboxes"]["counts"] == {"verified": 2, "protocol_disabled": 1}
    assert mailbox_ops.needing_attention(view) == ["c@contoso.test"]


def test_a_running_retry_changes_nothing_in_the_onboarding_view_and_shows_its_mailboxes() -> None:
    view = onboarding_view()
    running = {"runtimeStatus": "Running", "input": PAYLOADS[0].to_json(), "customStatus": {"counts": {}}}
    mailbox_ops.overlay(view, running)
    assert view == onboarding_view()
    part = mailbox_ops.operation_view(running)
    assert part["status"] == "running" and part["kind"] == "retry" and part["mailboxes"] == ["b@contoso.test"]


def test_a_retry_that_stopped_unexpectedly_is_shown_failed_with_the_fix() -> None:
    part = mailbox_ops.operation_view({"runtimeStatus": "Terminated", "input": PAYLOADS[0].to_json()})
    assert part["status"] == "failed" and "POST it again" in part["error"]


def test_a_mailbox_change_names_each_bad_address_and_unknown_field() -> None:
    from onboarding.validation import RequestRejected, parse_mailbox_change

    assert parse_mailbox_change({"add": ["New@Contoso.test"]}) == ("add", ("new@contoso.test",))
    assert parse_mailbox_change({"remove": ["a@contoso.test"]}) == ("remove", ("a@contoso.test",))
    with pytest.raises(RequestRejected) as rejected:
        parse_mailbox_change({"add": ["nope", "a@contoso.test", "A@contoso.test"], "keep": []})
    fields = [e.field for e in rejected.value.errors]
    assert fields == ["/keep", "/add/0", "/add/2"]
    with pytest.raises(RequestRejected) as both:
        parse_mailbox_change({"add": ["a@contoso.test"], "remove": ["b@contoso.test"]})
    assert "exactly one of add or remove" in both.value.detail
    with pytest.raises(RequestRejected) as empty:
        parse_mailbox_change({"add": []})
    assert [e.field for e in empty.value.errors] == ["/add"]


def test_the_admins_email_lists_every_mailbox_gaining_full_access() -> None:
    from onboarding import emails
    from onboarding.domain import ConsentMode, OnboardingRequest

    request = OnboardingRequest(
        tenant_id="t",
        display_name="Helpdesk",
        protocols=(Protocol.IMAP,),
        mailboxes=("a@contoso.test",),
        admin_emails=("admin@contoso.test",),
        consent_mode=ConsentMode.CONSENT,
    )
    mail = emails.mailboxes_added(request, ("new1@contoso.test", "new2@contoso.test"))
    assert mail.subject == "Mailboxes added: Helpdesk"
    assert "new1@contoso.test" in mail.html and "new2@contoso.test" in mail.html


def test_the_mailboxes_holding_access_are_the_requests_plus_those_added_less_those_removed() -> None:
    added = MailboxResult("New@contoso.test", MailboxState.VERIFIED, "Login verified.", {"IMAP": True})
    removed = MailboxResult("a@contoso.test", MailboxState.REMOVED, "FullAccess removed.", {})
    kept = MailboxResult("b@contoso.test", MailboxState.FAILED, "Removal refused.", {})
    requested = ["A@contoso.test", "b@contoso.test", "c@contoso.test"]
    assert mailbox_ops.holding_access(requested, None) == tuple(requested)
    first = MailboxOperationResult.of(ID, OperationKind.ADD, [added])
    later = MailboxOperationResult.of(ID, OperationKind.REMOVE, [removed, kept], earlier=first.latest)
    # The last operation carries every earlier one's results; a failed removal keeps its mailbox.
    assert mailbox_ops.holding_access(requested, later) == (
        "b@contoso.test",
        "c@contoso.test",
        "New@contoso.test",
    )
