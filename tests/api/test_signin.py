"""Who may decide, and on what: the attacks of issue 14 against the decision pages.

A function-key holder can name itself as the admin and receive the links; the links route to the
decision but never authorise it. Only a signed-in admin of this tenant decides, on exactly the
mailbox list the page showed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest

from onboarding import signin
from onboarding.domain import onboarding_id_for
from onboarding.links import LinkPurpose
from onboarding.settings import load_settings
from onboarding.signin import mailbox_digest
from sandbox.tenant import OUTSIDER, PLAIN_USER

from .conftest import TENANT, Api
from .test_decisions import assert_page, hidden, untouched

# The key holder names a mailbox of the tenant it reads (outside addresses are refused: test_sender_abuse).
ATTACKER = {"adminEmails": ["attacker@contoso.com"]}
FIFTY = [f"box{n:02}@contoso.com" for n in range(1, 50)] + ["ceo@contoso.com"]


def test_a_key_holders_own_approve_link_posted_without_sign_in_is_refused(api: Api) -> None:
    onboarding_id = api.start(consentMode="grant", mailboxes=["ceo@contoso.com"], **ATTACKER)
    url = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.APPROVE)}"
    cross_origin = {"Origin": "https://evil.example"}
    page = assert_page(api.anonymous.post(url, data={"decision": "approve"}, headers=cross_origin), 401)
    assert "Only a tenant admin signed in with Microsoft can decide" in page
    untouched(api, onboarding_id)


def test_a_consent_state_posted_without_sign_in_is_refused(api: Api) -> None:
    onboarding_id = api.start(mailboxes=["ceo@contoso.com"], **ATTACKER)
    form = {"admin_consent": "True", "state": api.token(onboarding_id, LinkPurpose.CONSENT)}
    assert_page(api.anonymous.post("/api/consent/callback", data=form), 401)
    untouched(api, onboarding_id)


def test_a_signed_in_user_without_an_admin_role_is_refused_with_nothing_changed(api: Api) -> None:
    onboarding_id = api.start(consentMode="grant")
    url = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"
    user = api.signed_in(PLAIN_USER)
    page = assert_page(user.get(url), 403)
    assert "You cannot make this decision" in page and "helpdesk@sandbox.example" in page
    assert 'id="approve"' not in page and "<li>" not in page  # neither the form nor the list
    # Posting what an admin's form would hold does not help: it is bound to who is signed in.
    admin_form = hidden(assert_page(api.signed_in().get(url), 200))
    assert_page(user.post(url, data={**admin_form, "decision": "approve"}), 403)
    untouched(api, onboarding_id)


def test_a_user_of_another_tenant_cannot_sign_in_and_changes_nothing(api: Api) -> None:
    onboarding_id = api.start(consentMode="grant")
    url = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"
    outsider = api.signed_in(OUTSIDER)
    assert outsider.cookies.get("onboarding-approver") is not None  # only the pending flow
    page = assert_page(outsider.get(url), 200)
    assert 'id="signin"' in page and 'id="approve"' not in page  # still not signed in
    assert_page(outsider.post(url, data={"decision": "approve"}), 401)
    untouched(api, onboarding_id)


def test_the_decision_page_lists_the_hidden_50th_mailbox_and_says_full_access(api: Api) -> None:
    onboarding_id = api.start(consentMode="grant", mailboxes=FIFTY, secretLifetimeDays=30)
    url = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"
    page = assert_page(api.signed_in().get(url), 200)
    assert "<li>ceo@contoso.com</li>" in page and page.count("<li>") == 50
    for said in ("FullAccess to 50 mailboxes", "read, change and delete", "IMAP and POP", "30 days"):
        assert said in page
    assert "a system holding this service&#x27;s API key (reference CHG-1001)" in page


def test_a_decision_for_another_mailbox_list_is_refused(api: Api) -> None:
    onboarding_id = api.start(consentMode="grant", mailboxes=FIFTY)
    url = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"
    admin = api.signed_in()
    form = hidden(assert_page(admin.get(url), 200))
    assert form["digest"] == mailbox_digest(FIFTY)
    shown_without_ceo = mailbox_digest(FIFTY[:49])
    assert_page(admin.post(url, data={**form, "digest": shown_without_ceo, "decision": "approve"}), 403)
    untouched(api, onboarding_id)


def test_thousands_of_mailboxes_are_listed_page_by_page(api: Api) -> None:
    many = [f"m{n:04}@contoso.com" for n in range(1, 1202)]
    onboarding_id = api.start(consentMode="grant", mailboxes=many)
    url = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"
    admin = api.signed_in()
    first = assert_page(admin.get(url), 200)
    assert "All 1201 mailboxes (page 1 of 3)" in first and first.count("<li>") == 500
    assert 'id="next"' in first and 'id="previous"' not in first
    last = assert_page(admin.get(url, params={"page": "3"}), 200)
    assert '<ol id="mailboxes" start="1001">' in last and "<li>m1201@contoso.com</li>" in last
    assert 'id="approve"' in last  # every page decides on the whole list
    assert hidden(last)["digest"] == mailbox_digest(many)


def test_grant_mode_while_disabled_is_refused_with_422_and_nothing_started(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENABLE_GRANT_MODE", "false")
    load_settings.cache_clear()
    try:
        response = api.client.post(
            "/api/onboardings",
            json={
                "tenantId": TENANT,
                "displayName": "Scanner",
                "protocols": ["IMAP"],
                "mailboxes": ["ceo@contoso.com"],
                "consentMode": "grant",
                "idempotencyKey": "grant-while-off",
                **ATTACKER,
            },
        )
    finally:
        monkeypatch.undo()
        load_settings.cache_clear()
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "/consentMode"
    api.host.idle()
    assert api.host.get_status(onboarding_id_for(TENANT, "grant-while-off")) is None


def test_the_sign_in_cookie_holds_no_token_and_cannot_be_forged(api: Api) -> None:
    admin = api.signed_in()
    cookie = admin.cookies.get("onboarding-approver")
    # Encrypted: one Fernet token (base64url, version byte 0x80), with no room for a JWT's dots. (Not a
    # search for "eyJ": a random token of its 420 characters holds that about once in 600.)
    assert cookie and "." not in cookie and base64.urlsafe_b64decode(cookie)[0] == 0x80
    # Opened with the app's key, it names the approver and holds no token.
    now = datetime.now(UTC)
    content = signin.CookieBox.from_settings(load_settings()).open(cookie, kind="session", minutes=5, now=now)
    assert content is not None and set(content) == {"kind", "approver"}
    assert "eyJ" not in json.dumps(content)
    onboarding_id = api.start(consentMode="grant")
    url = f"/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"
    forged = api.anonymous
    forged.cookies.set("onboarding-approver", cookie[:-8] + hashlib.sha256(b"x").hexdigest()[:8])
    page = assert_page(forged.get(url), 200)
    assert 'id="signin"' in page and 'id="approve"' not in page


def test_admins_signing_in_one_after_another_fetch_the_tenants_configuration_once_and_leave_no_token(
    api: Api,
) -> None:
    signin._shared_msal_app.cache_clear()  # as in a worker that has not seen a sign-in yet

    def discovery_fetches() -> int:
        log = api.entra.state.request_log()
        return sum(1 for e in log if e.path.endswith("/.well-known/openid-configuration"))

    before = discovery_fetches()
    for _ in range(3):
        admin = api.signed_in()
        assert admin.cookies.get("onboarding-approver")  # each sign-in completed
    # Built per sign-in, the MSAL application fetched it twice per sign-in (start, then the code).
    assert discovery_fetches() - before == 1
    assert signin._shared_msal_app.cache_info().currsize == 1
    app = signin._msal_app(load_settings())  # the one the sign-ins used
    assert signin._shared_msal_app.cache_info().currsize == 1
    assert app.get_accounts() == []  # no admin's token is kept for the next one
