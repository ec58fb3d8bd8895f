"""Who may decide (onboarding.signin): the ID token checks MSAL leaves to the app, the approver rules,
and the cookie that carries the sign-in between pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from onboarding.settings import Settings
from onboarding.signin import (
    APPROVER_ROLES,
    Approver,
    CookieBox,
    SigninError,
    approver_from_claims,
    mailbox_digest,
    refusal,
    safe_return_path,
)

TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT = "aaaaaaaa-0000-0000-0000-000000000001"
NOW = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
CLOUD_APP_ADMIN = "158c047a-c907-4556-b7ef-446551a6b5f7"
ENV = {
    "TENANT_ID": TENANT,
    "KEY_VAULT_URI": "https://vault.example",
    "MAIL_SENDER": "noreply@contoso.com",
    "PUBLIC_BASE_URL": "https://onboarding.example",
    "LINK_SIGNING_KEY": "k" * 40,
    "SIGNIN_CLIENT_ID": CLIENT,
    "SIGNIN_CLIENT_SECRET": "s" * 20,
}
SETTINGS = Settings.from_env(ENV)


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": f"{SETTINGS.authority_host}/{TENANT}/v2.0",
        "aud": CLIENT,
        "tid": TENANT,
        "oid": "0a0a0a0a-0000-0000-0000-00000000000a",
        "name": "IT Admin",
        "preferred_username": "it-admin@contoso.com",
        "iat": int(NOW.timestamp()) - 60,
        "exp": int(NOW.timestamp()) + 3600,
        "wids": [CLOUD_APP_ADMIN, "b79fbf4d-3ef9-4689-8143-76b194e85509"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_an_admin_of_this_tenant_may_decide():
    approver = approver_from_claims(claims(), SETTINGS, NOW)
    assert approver.roles == (CLOUD_APP_ADMIN,)  # only approver roles are kept
    assert refusal(approver, SETTINGS, requested_by=None) is None


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"tid": "99999999-2222-3333-4444-555555555555"}, "another organisation"),
        ({"iss": "https://login.example/99999999-2222-3333-4444-555555555555/v2.0"}, "another issuer"),
        ({"aud": "some-other-app"}, "another application"),
        ({"exp": int((NOW - timedelta(minutes=10)).timestamp())}, "expired"),
        ({"oid": None}, "named no user"),
    ],
)
def test_an_id_token_of_another_tenant_app_or_time_is_refused(changes: dict[str, Any], reason: str):
    with pytest.raises(SigninError, match=reason):
        approver_from_claims(claims(**changes), SETTINGS, NOW)


def test_a_user_without_an_approver_role_or_without_wids_is_refused():
    for wids in (["b79fbf4d-3ef9-4689-8143-76b194e85509"], None):
        approver = approver_from_claims(claims(wids=wids), SETTINGS, NOW)
        assert "Only a tenant admin" in (refusal(approver, SETTINGS, requested_by=None) or "")


def test_each_of_the_four_roles_that_can_grant_consent_may_decide():
    assert len(APPROVER_ROLES) == 4
    for role in APPROVER_ROLES:
        approver = approver_from_claims(claims(wids=[role]), SETTINGS, NOW)
        assert refusal(approver, SETTINGS, requested_by=None) is None


def test_the_requester_cannot_approve_their_own_request():
    approver = approver_from_claims(claims(), SETTINGS, NOW)
    assert "yourself" in (refusal(approver, SETTINGS, requested_by=approver.object_id.upper()) or "")


def test_an_approver_group_narrows_who_may_decide():
    group = "12121212-0000-0000-0000-000000000012"
    narrowed = Settings.from_env({**ENV, "APPROVER_GROUP_ID": group})
    member = approver_from_claims(claims(groups=[group]), narrowed, NOW)
    assert refusal(member, narrowed, requested_by=None) is None
    outsider = approver_from_claims(claims(groups=["34343434-0000-0000-0000-000000000034"]), narrowed, NOW)
    assert "approver group" in (refusal(outsider, narrowed, requested_by=None) or "")
    unknown = approver_from_claims(claims(), narrowed, NOW)  # no groups claim (or an overage)
    assert "cannot be checked" in (refusal(unknown, narrowed, requested_by=None) or "")


def test_the_cookie_is_sealed_and_ages_out():
    box = CookieBox(SETTINGS.link_signing_key)
    approver = Approver("oid", TENANT, "n", "u", (CLOUD_APP_ADMIN,), None)
    sealed = box.seal({"kind": "session", "approver": approver.to_json()}, NOW)
    assert box.open(sealed, kind="session", minutes=30, now=NOW)["approver"]["object_id"] == "oid"  # type: ignore[index]
    assert box.open(sealed, kind="flow", minutes=30, now=NOW) is None  # a session is no flow
    assert box.open(sealed, kind="session", minutes=30, now=NOW + timedelta(minutes=31)) is None
    assert box.open(sealed[:-4] + "AAAA", kind="session", minutes=30, now=NOW) is None
    other = CookieBox(b"o" * 40)
    assert other.open(sealed, kind="session", minutes=30, now=NOW) is None


def test_a_sign_in_returns_only_to_a_decision_page():
    assert safe_return_path("/api/approvals/abc.def-ghi_j") == "/api/approvals/abc.def-ghi_j"
    assert safe_return_path("/api/consent/callback?state=a.b.c&admin_consent=True") is not None
    for elsewhere in ("https://evil.example/", "//evil.example/api/approvals/x", "/api/onboardings", ""):
        assert safe_return_path(elsewhere) is None


def test_the_digest_binds_the_exact_list():
    fifty = [f"box{n}@contoso.com" for n in range(49)] + ["ceo@contoso.com"]
    assert mailbox_digest(fifty) != mailbox_digest(fifty[:49])
    assert mailbox_digest(fifty) != mailbox_digest(list(reversed(fifty)))
    assert mailbox_digest(["ab@c.d", "e@f.g"]) != mailbox_digest(["a@b.c", "de@f.g"])


def test_a_cookie_and_form_sealed_before_a_key_rotation_still_open_until_the_old_key_is_dropped():
    now = datetime(2030, 1, 1, tzinfo=UTC)
    old, new = CookieBox(b"o" * 40), CookieBox(b"n" * 40, previous=[b"o" * 40])
    sealed = old.seal({"kind": "approver", "who": "x"}, now)
    assert new.open(sealed, kind="approver", minutes=10, now=now) == {"kind": "approver", "who": "x"}
    approver = Approver("oid", "tid", "Ada", "ada@contoso.com", (), None)
    token = old.form_token(approver, "onb-1", "nonce", "digest")
    assert new.form_token_matches(token, approver, "onb-1", "nonce", "digest")
    assert new.form_token(approver, "onb-1", "nonce", "digest") != token  # new forms use the new key
    dropped = CookieBox(b"n" * 40)
    assert dropped.open(sealed, kind="approver", minutes=10, now=now) is None
    assert not dropped.form_token_matches(token, approver, "onb-1", "nonce", "digest")
