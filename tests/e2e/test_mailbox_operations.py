"""Mailbox operations end to end (issue 11 item 1): POST .../retry grants and verifies again only the
mailboxes that need attention, shows its progress as the ``mailboxOperation`` part of the
onboarding's view, records itself and continues the onboarding's webhook stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sandbox.profiles import REALISTIC, profile_from_env
from tests.e2e.conftest import MAILBOXES, Tenant
from tests.e2e.test_webhooks import events
from tests.trust.receiver import CallbackReceiver

SALES = "sales@sandbox.example"
DOCUMENT = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "openapi" / "openapi.yaml").read_text("utf-8")
)


def conforms(operation: dict[str, Any]) -> dict[str, Any]:
    """The ``mailboxOperation`` part as the OpenAPI document describes it."""
    schema = {**DOCUMENT["components"]["schemas"]["MailboxOperation"], "components": DOCUMENT["components"]}
    jsonschema.validate(operation, schema, cls=jsonschema.Draft202012Validator)
    return operation


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as server:
        yield server


def v1(view: dict[str, Any]) -> str:
    return f"/api/v1/onboardings/{view['id']}"


def partial_onboarding(tenant: Tenant, **request: Any) -> dict[str, Any]:
    location = tenant.submit(**request)
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    assert view["status"] == "partial", view
    return view


def test_retry_regrants_and_verifies_only_the_mailbox_that_needed_attention(
    tenant_factory: Any, receiver: CallbackReceiver
):
    tenant = tenant_factory(configure=lambda sb: sb.set_protocols(SALES, imap=False))
    view = partial_onboarding(tenant, callbackUrl=receiver.url)
    before = {r["mailbox"]: r["state"] for r in view["mailboxes"]["results"]}
    assert before[SALES] == "protocol_disabled"

    # The admin applies the fix the view names; a permission not yet visible keeps the retry running.
    tenant.sandbox.set_protocols(SALES, imap=True)
    tenant.sandbox.faults.set_mailbox_permission_delay(3600)
    response = tenant.http.post(f"{v1(view)}/retry")
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["existing"] is False and response.headers["Location"].endswith(v1(view))
    assert conforms(started["mailboxOperation"])["mailboxes"] == [SALES]

    # A second POST while it runs answers the same operation and starts nothing.
    again = tenant.http.post(f"{v1(view)}/retry")
    assert again.status_code == 202 and again.json()["existing"] is True, again.text
    assert again.json()["mailboxOperation"]["status"] == "running"

    tenant.sandbox.faults.set_mailbox_permission_delay(0)
    final = tenant.wait(
        view["links"]["self"], lambda v: (v["mailboxOperation"] or {}).get("status") != "running"
    )
    operation = conforms(final["mailboxOperation"])
    assert operation["status"] == "succeeded", operation
    assert [r["mailbox"] for r in operation["results"]] == [SALES]
    assert operation["results"][0]["state"] == "verified"
    after = {r["mailbox"]: r["state"] for r in final["mailboxes"]["results"]}
    assert after == {m: "verified" for m in before}
    assert final["mailboxes"]["counts"] == {"verified": len(before)}
    # Nothing else needs attention now: a further retry is refused with the reason.
    refused = tenant.http.post(f"{v1(view)}/retry")
    assert refused.status_code == 409 and "No mailbox" in refused.json()["detail"]

    [record] = [r for r in tenant.live_records() if view["id"] in r.name]
    assert "mailboxes_retried" in [o["kind"] for o in json.loads(record.current.value)["operations"]]
    give_up = time.monotonic() + 30
    while not any(b["type"] == "mailboxes.retried" for b in events(tenant, receiver.received())):
        assert time.monotonic() < give_up, [d.body for d in receiver.received()]
        time.sleep(0.2)
    bodies = events(tenant, receiver.received())
    assert [b["sequence"] for b in bodies] == list(range(1, len(bodies) + 1))
    assert [b["type"] for b in bodies][-2:] == ["mailboxes.retry_started", "mailboxes.retried"]


def test_retry_is_refused_for_an_unknown_or_fully_verified_onboarding(tenant: Tenant):
    assert tenant.http.post("/api/v1/onboardings/nope-unknown/retry").status_code == 404
    location = tenant.submit()
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    assert view["status"] == "succeeded"
    response = tenant.http.post(f"{v1(view)}/retry")
    assert response.status_code == 409
    assert response.json()["detail"] == "No mailbox of this onboarding needs attention."
    assert view["id"] and tenant.status(location)["mailboxOperation"] is None


def test_added_mailboxes_are_announced_to_the_admins_then_granted_and_verified(tenant_factory: Any):
    extra = "extra@sandbox.example"
    tenant = tenant_factory(mailboxes=(*MAILBOXES, extra))
    location = tenant.submit(mailboxes=list(MAILBOXES))
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    assert view["status"] == "succeeded" and extra not in {m for m, _ in tenant.permissions()}

    # Bad input is named and starts nothing.
    bad = tenant.http.post(f"{v1(view)}/mailboxes", json={"add": ["not-an-address", MAILBOXES[0]]})
    assert bad.status_code == 400
    assert "/add/0" in bad.json()["detail"]
    known = tenant.http.post(f"{v1(view)}/mailboxes", json={"add": [MAILBOXES[0]]})
    assert known.status_code == 400
    assert f"{MAILBOXES[0]} is already a mailbox of this onboarding" in known.json()["detail"]
    assert tenant.status(location)["mailboxOperation"] is None

    response = tenant.http.post(f"{v1(view)}/mailboxes", json={"add": [extra.upper()]})
    assert response.status_code == 202, response.text
    assert conforms(response.json()["mailboxOperation"])["mailboxes"] == [extra]
    final = tenant.wait(location, lambda v: (v["mailboxOperation"] or {}).get("status") != "running")
    operation = conforms(final["mailboxOperation"])
    assert operation["kind"] == "add" and operation["status"] == "succeeded", operation
    results = {r["mailbox"]: r["state"] for r in final["mailboxes"]["results"]}
    assert results == {m: "verified" for m in (*MAILBOXES, extra)}
    assert final["mailboxes"]["total"] == len(MAILBOXES) + 1
    assert extra in {m for m, _ in tenant.permissions()}
    [told] = [m for m in tenant.mails_to_admin() if m.subject.startswith("Mailboxes added")]
    assert extra in told.html


def test_a_removed_mailbox_loses_full_access_and_its_select_login_is_refused(tenant: Tenant):
    from tests.e2e.test_rotation import client_logs_in, vault_documents

    location = tenant.submit()
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    assert view["status"] == "succeeded"
    [document] = vault_documents(tenant, view["secret"]["name"])
    gone, kept = MAILBOXES[1], MAILBOXES[0]
    assert client_logs_in(tenant, document, gone)

    stranger = tenant.http.post(f"{v1(view)}/mailboxes", json={"remove": ["other@sandbox.example"]})
    assert stranger.status_code == 400
    assert "other@sandbox.example is not a mailbox of this onboarding" in stranger.json()["detail"]

    response = tenant.http.post(f"{v1(view)}/mailboxes", json={"remove": [gone]})
    assert response.status_code == 202, response.text
    final = tenant.wait(location, lambda v: (v["mailboxOperation"] or {}).get("status") != "running")
    operation = conforms(final["mailboxOperation"])
    assert operation["kind"] == "remove" and operation["status"] == "succeeded", operation
    assert [(r["mailbox"], r["state"]) for r in operation["results"]] == [(gone, "removed")]
    assert gone not in {r["mailbox"] for r in final["mailboxes"]["results"]}
    assert gone not in {m for m, _ in tenant.permissions()}
    # The mail client's login (token, IMAP SELECT, POP STAT) is refused there, and still works elsewhere.
    assert not client_logs_in(tenant, document, gone)
    assert client_logs_in(tenant, document, kept)


def test_a_rotation_after_a_mailbox_was_removed_verifies_on_the_mailboxes_left(tenant_factory: Any):
    """The removed mailbox refuses every login now: the rotation must not try to verify the new
    credential there (it did, and discarded a good credential once the verify window ended)."""
    from tests.e2e.test_rotation import client_logs_in, vault_documents

    window = {} if profile_from_env() == REALISTIC else {"VERIFY_WINDOW_MINUTES": "0"}
    tenant = tenant_factory(extra_env={"ROTATION_OVERLAP_HOURS": "0", **window})
    location = tenant.submit()
    tenant.wait_for_decision(location)
    tenant.consent()
    view = tenant.finished(location)
    assert view["status"] == "succeeded"
    gone = MAILBOXES[1]
    assert tenant.http.post(f"{v1(view)}/mailboxes", json={"remove": [gone]}).status_code == 202
    tenant.wait(location, lambda v: (v["mailboxOperation"] or {}).get("status") == "succeeded")

    response = tenant.http.post(f"{v1(view)}/rotate")
    assert response.status_code == 202, response.text
    final = tenant.wait(location, lambda v: (v["rotation"] or {}).get("status") not in (None, "running"))
    assert final["rotation"]["status"] == "succeeded", final["rotation"]
    old, new = vault_documents(tenant, view["secret"]["name"])
    assert not client_logs_in(tenant, old) and client_logs_in(tenant, new)
    assert tenant.mails_to_admin()[-1].subject.startswith("Client secret rotated")
