"""Consent callback and approval pages: GET never acts; every bad link is refused with no state change.

Deciding takes a signed-in admin (``api.signed_in()``); the sign-in rules themselves are in
test_signin.py. Link refusals come first, so they read the same signed in or not."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
import pytest

from onboarding.links import LinkPurpose, LinkSigner
from onboarding.settings import load_settings

from .conftest import SIGNING_KEY, Api

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
OTHER = "onb-" + "f" * 32


def assert_page(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    headers = response.headers
    assert headers["Content-Type"].startswith("text/html")
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "<h1>" in response.text and '<html lang="en">' in response.text
    return response.text


def hidden(page: str) -> dict[str, str]:
    import html

    return {
        m.group(1): html.unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    }


def untouched(api: Api, onboarding_id: str) -> None:
    assert api.events(onboarding_id) == []
    assert api.view(onboarding_id)["status"] == "waiting"


# -- consent callback ----------------------------------------------------------------------------


def test_consent_callback_get_shows_a_page_and_post_continues_the_onboarding(api: Api) -> None:
    onboarding_id = api.start()
    state = api.token(onboarding_id, LinkPurpose.CONSENT)
    query = {"admin_consent": "True", "tenant": "evil-tenant", "state": state}
    # Not signed in: what is asked, and the way to sign in; no form.
    page = assert_page(api.anonymous.get("/api/consent/callback", params=query), 200)
    assert 'id="signin"' in page and 'id="confirm"' not in page
    admin = api.signed_in()
    page = assert_page(admin.get("/api/consent/callback", params=query), 200)
    assert 'id="confirm"' in page and 'method="post"' in page
    assert set(hidden(page)) == {"state", "digest", "form_token"} and hidden(page)["state"] == state
    untouched(api, onboarding_id)  # a mail scanner following the link changes nothing

    done = admin.post("/api/consent/callback", data=hidden(page))
    assert_page(done, 200)
    assert [name for name, _ in api.events(onboarding_id)] == ["AdminDecision"]
    assert api.view(onboarding_id)["status"] == "succeeded"


def test_consent_declined_in_entra_is_reported_as_declined(api: Api) -> None:
    onboarding_id = api.start()
    state = api.token(onboarding_id, LinkPurpose.CONSENT)
    query = {
        "admin_consent": "True",
        "state": state,
        "error": "access_denied",
        "error_description": "AADSTS65004: User declined to consent <script>alert(1)</script>",
    }
    admin = api.signed_in()
    page = assert_page(admin.get("/api/consent/callback", params=query), 200)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert hidden(page)["error"] == "access_denied"
    untouched(api, onboarding_id)
    assert_page(admin.post("/api/consent/callback", data=hidden(page)), 200)
    view = api.view(onboarding_id)
    assert view["status"] == "rejected"
    assert "access_denied" in view["errors"][0]["message"]


def refused_consent(api: Api, onboarding_id: str, form: dict[str, str], status: int) -> None:
    """The same refusal on GET (page) and POST (action), and no event reaches the onboarding."""
    assert_page(api.anonymous.get("/api/consent/callback", params=form), status)
    page = assert_page(api.anonymous.post("/api/consent/callback", data=form), status)
    assert 'id="confirm"' not in page and "Nothing was changed" in page
    untouched(api, onboarding_id)


def test_consent_callback_refuses_a_forged_state(api: Api) -> None:
    onboarding_id = api.start()
    forged = LinkSigner(b"x" * 40).issue(
        onboarding_id, LinkPurpose.CONSENT, api.nonce(onboarding_id), api.signer._clock() + timedelta(hours=1)
    )
    refused_consent(api, onboarding_id, {"state": forged}, 403)


def test_consent_callback_refuses_an_expired_state(api: Api) -> None:
    onboarding_id = api.start()
    refused_consent(
        api,
        onboarding_id,
        {"state": api.token(onboarding_id, LinkPurpose.CONSENT, expires_in=timedelta(seconds=-1))},
        410,
    )


def test_consent_callback_refuses_an_approval_token(api: Api) -> None:
    onboarding_id = api.start()
    refused_consent(api, onboarding_id, {"state": api.token(onboarding_id, LinkPurpose.DECIDE)}, 403)


def test_consent_callback_refuses_a_stale_nonce(api: Api) -> None:
    onboarding_id = api.start()
    refused_consent(
        api,
        onboarding_id,
        {"state": api.token(onboarding_id, LinkPurpose.CONSENT, nonce="earlier-wait")},
        410,
    )


def test_consent_callback_refuses_missing_or_garbage_state(api: Api) -> None:
    onboarding_id = api.start()
    refused_consent(api, onboarding_id, {"admin_consent": "True"}, 400)
    refused_consent(api, onboarding_id, {"state": "not-a-token"}, 403)


def test_consent_callback_refuses_a_state_of_a_grant_mode_onboarding(api: Api) -> None:
    onboarding_id = api.start(consentMode="grant")
    refused_consent(api, onboarding_id, {"state": api.token(onboarding_id, LinkPurpose.CONSENT)}, 410)


def test_consent_link_is_single_use(api: Api) -> None:
    onboarding_id = api.start()
    admin = api.signed_in()
    query = {"state": api.token(onboarding_id, LinkPurpose.CONSENT)}
    form = hidden(assert_page(admin.get("/api/consent/callback", params=query), 200))
    assert_page(admin.post("/api/consent/callback", data=form), 200)
    api.host.idle()
    page = assert_page(admin.post("/api/consent/callback", data=form), 410)
    assert "already used or has expired" in page
    assert len(api.events(onboarding_id)) == 1


def test_consent_post_must_be_a_form(api: Api) -> None:
    onboarding_id = api.start()
    state = api.token(onboarding_id, LinkPurpose.CONSENT)
    response = api.anonymous.post("/api/consent/callback", json={"state": state})
    assert_page(response, 415)
    untouched(api, onboarding_id)


# -- approval pages (grant mode) -----------------------------------------------------------------


def test_approval_page_shows_the_request_and_approve_continues(api: Api) -> None:
    onboarding_id = api.start(
        consentMode="grant", displayName="<b>Scanner</b> & co", externalReference="CHG-7"
    )
    url = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"
    admin = api.signed_in()
    page = assert_page(admin.get(url), 200)
    for shown in (
        "&lt;b&gt;Scanner&lt;/b&gt; &amp; co",
        "IMAP and POP",
        "FullAccess to 2 mailboxes",
        "CHG-7",
    ):
        assert shown in page
    assert "<li>invoices@contoso.com</li><li>orders@contoso.com</li>" in page
    assert "<b>Scanner" not in page
    assert 'id="approve"' in page and 'id="reject"' in page
    untouched(api, onboarding_id)

    assert_page(admin.post(url, data={**hidden(page), "decision": "approve"}), 200)
    assert api.view(onboarding_id)["status"] == "succeeded"


def test_reject_stops_the_onboarding(api: Api) -> None:
    onboarding_id = api.start(consentMode="grant")
    url = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"
    admin = api.signed_in()
    form = hidden(assert_page(admin.get(url), 200))
    assert_page(admin.post(url, data={**form, "decision": "reject"}), 200)
    assert api.view(onboarding_id)["status"] == "rejected"


def test_single_purpose_links_offer_and_allow_only_their_decision(api: Api) -> None:
    onboarding_id = api.start(consentMode="grant")
    reject_url = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.REJECT)}"
    page = assert_page(api.signed_in().get(reject_url), 200)
    assert 'id="reject"' in page and 'id="approve"' not in page
    assert_page(api.anonymous.post(reject_url, data={"decision": "approve"}), 403)
    untouched(api, onboarding_id)
    approve_url = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.APPROVE)}"
    assert_page(api.anonymous.post(approve_url, data={"decision": "reject"}), 403)
    untouched(api, onboarding_id)


@pytest.mark.parametrize("decision", ["", "APPROVE", "yes", "approve ", "approved"])
def test_wrong_decision_values_are_refused(api: Api, decision: str) -> None:
    onboarding_id = api.start(consentMode="grant")
    url = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"
    assert_page(api.anonymous.post(url, data={"decision": decision}), 400)
    untouched(api, onboarding_id)


def refused_approval(api: Api, onboarding_id: str, token: str, status: int) -> None:
    url = f"/api/approvals/{token}"
    page = assert_page(api.anonymous.get(url), status)
    assert 'id="approve"' not in page and 'id="reject"' not in page
    assert_page(api.anonymous.post(url, data={"decision": "approve"}), status)
    untouched(api, onboarding_id)


def test_approval_refuses_forged_expired_stale_foreign_and_consent_tokens(api: Api) -> None:
    onboarding_id = api.start(consentMode="grant")
    nonce = api.nonce(onboarding_id)
    forged = LinkSigner(b"y" * 40).issue(
        onboarding_id, LinkPurpose.DECIDE, nonce, api.signer._clock() + timedelta(hours=1)
    )
    refused_approval(api, onboarding_id, forged, 403)
    refused_approval(
        api,
        onboarding_id,
        api.token(onboarding_id, LinkPurpose.DECIDE, expires_in=timedelta(seconds=-5)),
        410,
    )
    refused_approval(api, onboarding_id, api.token(onboarding_id, LinkPurpose.DECIDE, nonce="old-wait"), 410)
    refused_approval(api, onboarding_id, api.token(onboarding_id, LinkPurpose.CONSENT), 403)
    # A token of another onboarding carrying this one's nonce acts on nothing.
    refused_approval(
        api,
        onboarding_id,
        api.signer.issue(OTHER, LinkPurpose.DECIDE, nonce, api.signer._clock() + timedelta(hours=1)),
        410,
    )
    # Tampering: the token is not in the form, so it cannot be swapped, and a mangled path is refused.
    refused_approval(api, onboarding_id, api.token(onboarding_id, LinkPurpose.DECIDE)[:-3] + "AAA", 403)


def test_approval_token_does_not_work_on_a_consent_mode_onboarding(api: Api) -> None:
    onboarding_id = api.start()
    refused_approval(api, onboarding_id, api.token(onboarding_id, LinkPurpose.DECIDE), 410)


def test_approval_link_is_single_use_and_dead_once_finished(api: Api) -> None:
    onboarding_id = api.start(consentMode="grant")
    url = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"
    admin = api.signed_in()
    form = hidden(assert_page(admin.get(url), 200))
    assert_page(admin.post(url, data={**form, "decision": "approve"}), 200)
    api.host.idle()
    assert "already used or has expired" in assert_page(admin.get(url), 410)
    assert_page(admin.post(url, data={**form, "decision": "reject"}), 410)
    assert len(api.events(onboarding_id)) == 1
    assert api.view(onboarding_id)["status"] == "succeeded"


def test_approval_on_a_cancelled_onboarding_is_refused(api: Api) -> None:
    onboarding_id = api.start(consentMode="grant")
    token = api.token(onboarding_id, LinkPurpose.DECIDE)
    assert api.client.post(f"/api/onboardings/{onboarding_id}/cancel").status_code == 202
    api.host.idle()
    assert_page(api.anonymous.post(f"/api/approvals/{token}", data={"decision": "approve"}), 410)
    assert api.view(onboarding_id)["status"] == "cancelled"


# -- rotating the link-signing key ---------------------------------------------------------------

NEW_KEY = "rotated-link-signing-key-0123456789abcdef"


@contextmanager
def link_keys(current: str, previous: str) -> Iterator[None]:
    """The app settings after a rotation step (the app re-reads them on restart)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LINK_SIGNING_KEY", current)
        patch.setenv("LINK_SIGNING_KEY_PREVIOUS", previous)
        load_settings.cache_clear()
        try:
            yield
        finally:
            load_settings.cache_clear()


def test_a_link_emailed_before_a_rotation_works_while_the_previous_key_is_kept(api: Api) -> None:
    onboarding_id = api.start(consentMode="grant")
    emailed = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"  # signed with the old key
    with link_keys(NEW_KEY, SIGNING_KEY):
        forged = LinkSigner(b"z" * 40).issue(
            onboarding_id,
            LinkPurpose.DECIDE,
            api.nonce(onboarding_id),
            api.signer._clock() + timedelta(hours=1),
        )
        refused_approval(api, onboarding_id, forged, 403)  # a third key is still refused
        admin = api.signed_in()  # the sign-in cookie is sealed with the new key
        form = hidden(assert_page(admin.get(emailed), 200))
        assert_page(admin.post(emailed, data={**form, "decision": "approve"}), 200)
    assert api.view(onboarding_id)["status"] == "succeeded"


def test_a_link_signed_with_a_removed_previous_key_gets_a_page_saying_so(api: Api) -> None:
    onboarding_id = api.start(consentMode="grant")
    old = api.token(onboarding_id, LinkPurpose.DECIDE)
    with link_keys(NEW_KEY, ""):  # the rotation window is over: the previous key was removed
        page = assert_page(api.anonymous.get(f"/api/approvals/{old}"), 403)
        assert "signed with a key this service no longer accepts" in page
        assert "ask the requester to submit the onboarding again" in page
        refused_approval(api, onboarding_id, old, 403)
        fresh = LinkSigner(NEW_KEY.encode()).issue(
            onboarding_id,
            LinkPurpose.DECIDE,
            api.nonce(onboarding_id),
            api.signer._clock() + timedelta(hours=1),
        )
        assert_page(api.anonymous.get(f"/api/approvals/{fresh}"), 200)  # the new key's links work


def test_a_consent_state_signed_before_a_rotation_still_continues_the_onboarding(api: Api) -> None:
    onboarding_id = api.start()
    state = api.token(onboarding_id, LinkPurpose.CONSENT)
    with link_keys(NEW_KEY, SIGNING_KEY):
        admin = api.signed_in()
        page = assert_page(
            admin.get("/api/consent/callback", params={"admin_consent": "True", "state": state}), 200
        )
        assert_page(admin.post("/api/consent/callback", data=hidden(page)), 200)
    assert api.view(onboarding_id)["status"] == "succeeded"
