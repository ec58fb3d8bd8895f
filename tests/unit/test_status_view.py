"""The status view: Durable's status JSON mapped to what requesters read, and nothing they must not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from onboarding.domain import (
    STEPS,
    AppRegistration,
    MailboxResult,
    MailboxState,
    OnboardingInput,
    OnboardingRequest,
    OnboardingResult,
    Outcome,
    Progress,
    Protocol,
    SecretRef,
    StepError,
    Waiting,
)
from onboarding.status_view import build_view, decision_refusal, stored_request

ONB = "onb-" + "c" * 32
REQUEST = OnboardingRequest(
    tenant_id="11111111-2222-3333-4444-555555555555",
    display_name="Scanner",
    protocols=(Protocol.IMAP, Protocol.POP),
    mailboxes=("a@contoso.com", "b@contoso.com", "c@contoso.com"),
    admin_emails=("admin@contoso.com",),
    callback_url="https://hooks.contoso.com/x?token=abc",
    external_reference="CHG-42",
)
APP = AppRegistration(object_id="obj-1", app_id="app-1", unique_name="u", service_principal_id="sp-1")
SECRET = SecretRef(
    vault_uri="https://vault.example/",
    name="mail-app-x",
    version="v9",
    expires_on="2031-01-01T00:00:00+00:00",
    key_id="k1",
)


def durable(runtime: str, *, custom: Any = None, output: Any = None, as_text: bool = False) -> dict[str, Any]:
    raw_input = OnboardingInput(onboarding_id=ONB, request=REQUEST).to_json()
    return {
        "name": "onboarding_orchestrator",
        "instanceId": ONB,
        "runtimeStatus": runtime,
        "createdTime": "2030-01-07T08:00:00+00:00",
        "lastUpdatedTime": "2030-01-07T08:05:00+00:00",
        "customStatus": json.dumps(custom) if as_text and custom is not None else custom,
        "output": output,
        "input": json.dumps(raw_input) if as_text else raw_input,
        # What the real extension also returns; none of it may reach the view.
        "statusQueryGetUri": "https://host/runtime/webhooks/durabletask/instances/x?code=SYSTEMKEY",
        "sendEventPostUri": "https://host/runtime/webhooks/durabletask/instances/x/raiseEvent/{eventName}?code=SYSTEMKEY",
    }


def waiting_progress() -> dict[str, Any]:
    return Progress(
        steps={
            "resolve_exchange": {"state": "done", "at": "2030-01-07T08:01:00+00:00", "detail": ""},
            "admin_consent": {"state": "waiting", "at": "2030-01-07T08:02:00+00:00", "detail": "Waiting"},
        },
        waiting=Waiting(
            kind="admin_consent", nonce="n-1", deadline="2030-01-12T08:00:00+00:00", reminders_sent=2
        ),
        app_id="app-1",
    ).to_json()


@pytest.mark.parametrize("as_text", [False, True])
def test_waiting_onboarding_shows_steps_in_order_and_what_it_waits_for(as_text: bool) -> None:
    view = build_view(durable("Running", custom=waiting_progress(), as_text=as_text))
    assert view["status"] == "waiting"
    assert [s["name"] for s in view["steps"]] == [name for name, _ in STEPS]
    assert view["steps"][0] == {
        "name": "resolve_exchange",
        "title": STEPS[0][1],
        "state": "done",
        "at": "2030-01-07T08:01:00+00:00",
        "detail": "",
    }
    assert view["steps"][1]["state"] == "pending" and view["steps"][1]["at"] is None
    assert view["waitingFor"] == {
        "kind": "admin_consent",
        "deadline": "2030-01-12T08:00:00+00:00",
        "remindersSent": 2,
    }
    assert view["app"] == {"appId": "app-1", "servicePrincipalId": None}
    assert view["externalReference"] == "CHG-42"
    assert view["mailboxes"] == {"total": 3, "counts": {}, "results": None}
    assert view["request"]["mailboxCount"] == 3 and view["request"]["protocols"] == ["IMAP", "POP"]


def test_running_without_a_wait_is_running_with_counts() -> None:
    progress = Progress(steps={}, mailbox_counts={"verified": 1, "granted": 2}).to_json()
    view = build_view(durable("Running", custom=progress))
    assert view["status"] == "running" and view["waitingFor"] is None
    assert view["mailboxes"]["counts"] == {"verified": 1, "granted": 2}


def test_pending_instance_without_custom_status_is_running() -> None:
    view = build_view(durable("Pending"))
    assert view["status"] == "running"
    assert all(s["state"] == "pending" for s in view["steps"])


def test_finished_partial_onboarding_lists_each_mailbox_and_the_secrets_uri() -> None:
    result = OnboardingResult(
        onboarding_id=ONB,
        outcome=Outcome.PARTIAL,
        app=APP,
        secret=SECRET,
        mailbox_counts={"verified": 1, "protocol_disabled": 1, "not_found": 1},
        attention=(
            MailboxResult(
                "b@contoso.com", MailboxState.PROTOCOL_DISABLED, detail="POP is off. Fix: Set-CASMailbox"
            ),
            MailboxResult("c@contoso.com", MailboxState.NOT_FOUND, detail="No such mailbox."),
        ),
    ).to_json()
    view = build_view(durable("Completed", custom=waiting_progress(), output=result))
    assert view["status"] == "partial"
    assert view["waitingFor"] is None
    assert view["app"] == {"appId": "app-1", "servicePrincipalId": "sp-1"}
    assert view["secret"]["secretUri"] == "https://vault.example/secrets/mail-app-x/v9"
    assert view["mailboxes"]["total"] == 3
    assert view["mailboxes"]["counts"] == {"verified": 1, "protocol_disabled": 1, "not_found": 1}
    a, b, c = view["mailboxes"]["results"]
    # Mailboxes the result does not list verified: their result is spelled out from the request.
    assert a == {
        "mailbox": "a@contoso.com",
        "state": "verified",
        "protocols": {"IMAP": True, "POP": True},
        "detail": "Login verified.",
        "needsAction": False,
    }
    assert c["state"] == "not_found" and c["needsAction"]
    assert b == {
        "mailbox": "b@contoso.com",
        "state": "protocol_disabled",
        "protocols": {},
        "detail": "POP is off. Fix: Set-CASMailbox",
        "needsAction": True,
    }


@pytest.mark.parametrize("outcome", [Outcome.REJECTED, Outcome.EXPIRED, Outcome.CANCELLED, Outcome.FAILED])
def test_stopped_onboardings_show_the_error_with_a_fix_and_what_was_undone(outcome: Outcome) -> None:
    result = OnboardingResult(
        onboarding_id=ONB,
        outcome=outcome,
        error=StepError(
            step="admin_consent", message="Stopped.", fix="" if outcome is not Outcome.FAILED else "Do X."
        ),
        compensation=("App registration app-1 deleted.",),
    ).to_json()
    view = build_view(durable("Completed", output=result))
    assert view["status"] == outcome.value
    assert view["errors"][0]["step"] == "admin_consent"
    assert view["errors"][0]["fix"]  # always something to do
    assert view["compensation"] == ["App registration app-1 deleted."]
    assert view["secret"] is None and view["app"] is None


@pytest.mark.parametrize("runtime", ["Failed", "Terminated", "Canceled"])
def test_unexpected_ends_are_failed_without_durables_text(runtime: str) -> None:
    view = build_view(durable(runtime, output="Traceback ... token=eyJhbGciOi secret!"))
    assert view["status"] == "failed"
    assert view["errors"][0]["fix"]
    assert "eyJ" not in json.dumps(view) and "secret!" not in json.dumps(view)


def test_view_never_contains_management_urls_callback_url_or_admin_emails() -> None:
    text = json.dumps(build_view(durable("Running", custom=waiting_progress())))
    for forbidden in ("SYSTEMKEY", "webhooks", "raiseEvent", "hooks.contoso.com", "admin@contoso.com", "n-1"):
        assert forbidden not in text


def test_garbage_custom_status_and_output_do_not_break_the_view() -> None:
    for custom, output in (
        (["x"], None),
        ("not json", None),
        ({"steps": 5}, None),
        (None, {"outcome": "weird"}),
    ):
        view = build_view(durable("Completed" if output else "Running", custom=custom, output=output))
        assert view["status"] in ("running", "failed")


def test_stored_request_reads_the_input() -> None:
    assert stored_request(durable("Running")) == REQUEST
    assert stored_request(durable("Running", as_text=True)) == REQUEST
    assert stored_request({"input": None}) is None


def test_decision_refusal() -> None:
    waiting = durable("Running", custom=waiting_progress())
    assert decision_refusal(waiting, nonce="n-1", kind="admin_consent") is None
    assert decision_refusal(waiting, nonce="n-0", kind="admin_consent")  # an earlier wait's link
    assert decision_refusal(waiting, nonce="n-1", kind="admin_approval")  # another kind of link
    assert decision_refusal(
        durable("Completed", custom=waiting_progress()), nonce="n-1", kind="admin_consent"
    )
    assert decision_refusal(durable("Running"), nonce="n-1", kind="admin_consent")
    assert decision_refusal({}, nonce="n-1", kind="admin_consent")


def test_the_secret_is_named_by_uri_and_format_never_by_an_app_service_key_vault_reference() -> None:
    # A Key Vault reference resolves to the whole secret value: an app setting made from it would
    # hold the JSON hand-off document, not a client secret. The view says where and what it is.
    result = OnboardingResult(onboarding_id=ONB, outcome=Outcome.SUCCEEDED, app=APP, secret=SECRET).to_json()
    secret = build_view(durable("Completed", custom=waiting_progress(), output=result))["secret"]
    assert "keyVaultReference" not in secret
    assert "@Microsoft.KeyVault" not in json.dumps(secret)
    assert secret["latestSecretUri"] == "https://vault.example/secrets/mail-app-x"
    assert secret["secretUri"] == "https://vault.example/secrets/mail-app-x/v9"
    assert secret["contentType"] == "application/vnd.mail-onboarding.credentials+json"
    assert secret["schemaVersion"] == 1
