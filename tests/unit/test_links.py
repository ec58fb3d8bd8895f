"""Signed links: only an untampered, unexpired token of the right purpose verifies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from onboarding.links import (
    LinkError,
    LinkPurpose,
    LinkSigner,
    approval_url,
    callback_key,
    consent_redirect_uri,
    consent_url,
    sign_callback,
    verify_callback,
)
from onboarding.settings import Settings

KEY = b"k" * 40
NOW = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
ONB = "onb-" + "a" * 32


def signer(key: bytes = KEY, now: datetime = NOW) -> LinkSigner:
    return LinkSigner(key, clock=lambda: now)


def issue(purpose: LinkPurpose = LinkPurpose.DECIDE, expires: datetime = NOW + timedelta(hours=1)) -> str:
    return signer().issue(ONB, purpose, "nonce-1", expires)


def refused(token: str, purposes: set[LinkPurpose], **kwargs: object) -> str:
    with pytest.raises(LinkError) as info:
        signer(**kwargs).verify(token, purposes=purposes)  # type: ignore[arg-type]
    return info.value.reason


def test_issued_token_verifies_with_its_claims() -> None:
    token = issue()
    claims = signer().verify(token, purposes={LinkPurpose.DECIDE})
    assert (claims.onboarding_id, claims.purpose, claims.nonce) == (ONB, LinkPurpose.DECIDE, "nonce-1")
    assert claims.expires_at == NOW + timedelta(hours=1)
    assert token.isascii() and "/" not in token and "+" not in token and "=" not in token
    assert len(token) < 300


def test_expired_token_is_refused() -> None:
    token = issue(expires=NOW + timedelta(hours=1))
    assert "expired" in refused(token, {LinkPurpose.DECIDE}, now=NOW + timedelta(hours=1))
    signer(now=NOW + timedelta(minutes=59)).verify(token, purposes={LinkPurpose.DECIDE})


def test_token_for_another_purpose_is_refused() -> None:
    assert "another page" in refused(issue(LinkPurpose.CONSENT), {LinkPurpose.DECIDE, LinkPurpose.APPROVE})


def test_editing_the_purpose_claim_breaks_the_signature() -> None:
    header, payload, signature = issue(LinkPurpose.REJECT).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["pur"] = "approve"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert "signature" in refused(f"{header}.{forged_payload}.{signature}", {LinkPurpose.APPROVE})


def test_token_signed_with_another_key_is_refused() -> None:
    other = LinkSigner(b"z" * 40, clock=lambda: NOW).issue(
        ONB, LinkPurpose.DECIDE, "n", NOW + timedelta(hours=1)
    )
    assert "signature" in refused(other, {LinkPurpose.DECIDE})


def test_unsigned_and_other_algorithm_tokens_are_refused() -> None:
    import jwt

    claims = {"sub": ONB, "pur": "decide", "non": "n", "exp": int((NOW + timedelta(hours=1)).timestamp())}
    unsigned = jwt.encode(claims, "", algorithm="none")  # PyJWT reads "" as no key
    assert refused(unsigned, {LinkPurpose.DECIDE})
    hs512 = jwt.encode(claims, KEY * 2, algorithm="HS512")
    assert "signature" in refused(hs512, {LinkPurpose.DECIDE})


def test_token_of_another_onboarding_is_refused_when_bound() -> None:
    with pytest.raises(LinkError, match="another onboarding"):
        signer().verify(issue(), purposes={LinkPurpose.DECIDE}, onboarding_id="onb-" + "b" * 32)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "a.b.c",
        "!!.??.##",
        "x" * 2000,
        issue()[:-5],
        issue() + "x",
        issue().upper(),
    ],
)
def test_malformed_tokens_are_refused_without_exceptions_leaking(token: str) -> None:
    assert refused(token, set(LinkPurpose))


def test_missing_claims_are_refused() -> None:
    import jwt

    from onboarding.links import derive_key

    key = derive_key(KEY, "link/decide")
    no_nonce = jwt.encode({"sub": ONB, "pur": "decide", "exp": 2_000_000_000}, key, algorithm="HS256")
    assert refused(no_nonce, {LinkPurpose.DECIDE})
    bad_exp = jwt.encode({"sub": ONB, "pur": "decide", "non": "n", "exp": "soon"}, key, algorithm="HS256")
    assert refused(bad_exp, {LinkPurpose.DECIDE})


def test_refusal_reasons_never_contain_the_key_or_token() -> None:
    token = issue()
    for reason in (refused(token + "x", {LinkPurpose.DECIDE}), refused(token, {LinkPurpose.CONSENT})):
        assert KEY.decode() not in reason and token not in reason


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        LinkSigner(b"short")


def test_naive_expiry_is_refused() -> None:
    with pytest.raises(ValueError):
        signer().issue(ONB, LinkPurpose.CONSENT, "n", datetime(2030, 1, 1))


def settings() -> Settings:
    return Settings.from_env(
        {
            "TENANT_ID": "11111111-2222-3333-4444-555555555555",
            "KEY_VAULT_URI": "https://vault.example",
            "MAIL_SENDER": "noreply@contoso.com",
            "PUBLIC_BASE_URL": "https://onboard.contoso.com/",
            "LINK_SIGNING_KEY": KEY.decode(),
        }
    )


def test_urls() -> None:
    s = settings()
    assert consent_redirect_uri(s) == "https://onboard.contoso.com/api/consent/callback"
    url = consent_url(s, tenant_id="t1", app_id="app 1", state="a.b-c_d")
    assert url == (
        f"{s.authority_host}/t1/adminconsent?client_id=app+1"
        "&redirect_uri=https%3A%2F%2Fonboard.contoso.com%2Fapi%2Fconsent%2Fcallback&state=a.b-c_d"
    )
    assert approval_url(s, "a.b.c") == "https://onboard.contoso.com/api/approvals/a.b.c"


def test_callback_signature_verifies_with_the_derived_key_only() -> None:
    body = b'{"outcome":"succeeded"}'
    header = sign_callback(KEY, body, 1_900_000_000)
    ts, mac = header.split(",")
    assert ts == "t=1900000000"
    expected = hmac.new(callback_key(KEY), b"1900000000." + body, hashlib.sha256).hexdigest()
    assert mac == f"v1={expected}"
    assert verify_callback(callback_key(KEY), body, header, now=1_900_000_100)
    assert not verify_callback(KEY, body, header, now=1_900_000_100)  # the master key is not the callback key
    assert not verify_callback(callback_key(KEY), body + b" ", header, now=1_900_000_100)
    assert not verify_callback(callback_key(KEY), body, header, now=1_900_001_000)  # replayed later
    assert not verify_callback(callback_key(KEY), body, "garbage", now=1_900_000_000)


def test_callback_key_cannot_sign_links() -> None:
    """A callback receiver holds callback_key(KEY); links it signs with it must not verify."""
    forged = LinkSigner(callback_key(KEY), clock=lambda: NOW).issue(
        ONB, LinkPurpose.DECIDE, "n", NOW + timedelta(hours=1)
    )
    assert "signature" in refused(forged, {LinkPurpose.DECIDE})


def test_operator_command_prints_the_callback_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from onboarding.links import main
    from onboarding.settings import load_settings

    env = {
        "TENANT_ID": "11111111-2222-3333-4444-555555555555",
        "KEY_VAULT_URI": "https://vault.example",
        "MAIL_SENDER": "noreply@contoso.com",
        "PUBLIC_BASE_URL": "https://onboard.contoso.com",
        "LINK_SIGNING_KEY": KEY.decode(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    load_settings.cache_clear()
    try:
        assert main(["callback-key"]) == 0
    finally:
        load_settings.cache_clear()
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"callbackKeyHex": callback_key(KEY).hex()}
    assert KEY.hex() not in printed["callbackKeyHex"]
    assert main([]) == 2


def test_after_a_rotation_new_links_are_signed_with_the_new_key_only_and_old_ones_still_verify():
    new_key = b"n" * 40
    rotated = LinkSigner(new_key, previous=[KEY], clock=lambda: NOW)
    old_link = issue()
    assert rotated.verify(old_link, purposes={LinkPurpose.DECIDE}).onboarding_id == ONB
    new_link = rotated.issue(ONB, LinkPurpose.DECIDE, "nonce-2", NOW + timedelta(hours=1))
    assert (
        LinkSigner(new_key, clock=lambda: NOW).verify(new_link, purposes={LinkPurpose.DECIDE}).nonce
        == "nonce-2"
    )
    assert "no longer accepts" in refused(new_link, {LinkPurpose.DECIDE})  # the old key alone refuses it
    # The previous key does not widen what a link may do: a consent state is still no approval.
    consent = issue(LinkPurpose.CONSENT)
    with pytest.raises(LinkError):
        rotated.verify(consent, purposes={LinkPurpose.DECIDE})
