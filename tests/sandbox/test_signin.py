"""The sandbox's user sign-in: authorize page, code grant with PKCE, ID tokens with wids."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox import Sandbox
from sandbox.catalog import CLOUD_APPLICATION_ADMINISTRATOR
from sandbox.tenant import ADMIN_USER, OUTSIDER

REDIRECT = "http://127.0.0.1:7071/api/signin/callback"
VERIFIER = "v" * 50
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()


def claims_of(token: str) -> dict:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


@pytest.fixture
def browser(sandbox: Sandbox) -> httpx.Client:
    sandbox.allow_signin_redirect("http://127.0.0.1:7071")
    with httpx.Client(verify=sandbox.client_ssl_context(), timeout=10) as client:
        yield client


def sign_in(sandbox: Sandbox, browser: httpx.Client, login: str) -> httpx.Response:
    authority = f"{sandbox.env['ENTRA_AUTHORITY_HOST']}/{sandbox.tenant_id}/oauth2/v2.0/authorize"
    page = browser.get(
        authority,
        params={
            "client_id": sandbox.env["SIGNIN_CLIENT_ID"],
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "scope": "openid profile",
            "state": "st-1",
            "nonce": "n-1",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
        },
    )
    assert page.status_code == 200 and 'id="passwd"' in page.text
    fields = {k: unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', page.text)}
    password = sandbox.people.users[login].password
    return browser.post(authority, data={**fields, "login": login, "passwd": password})


def redeem(sandbox: Sandbox, browser: httpx.Client, code: str, verifier: str = VERIFIER) -> httpx.Response:
    return browser.post(
        f"{sandbox.env['ENTRA_AUTHORITY_HOST']}/{sandbox.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": sandbox.env["SIGNIN_CLIENT_ID"],
            "client_secret": sandbox.env["SIGNIN_CLIENT_SECRET"],
        },
    )


def test_an_admin_signs_in_and_the_code_gives_an_id_token_with_wids(sandbox: Sandbox, browser: httpx.Client):
    response = sign_in(sandbox, browser, ADMIN_USER)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert response.headers["location"].startswith(REDIRECT) and query["state"] == ["st-1"]
    token = redeem(sandbox, browser, query["code"][0])
    assert token.status_code == 200, token.text
    claims = claims_of(token.json()["id_token"])
    assert claims["iss"] == f"{sandbox.env['ENTRA_AUTHORITY_HOST']}/{sandbox.tenant_id}/v2.0"
    assert claims["aud"] == sandbox.env["SIGNIN_CLIENT_ID"] and claims["tid"] == sandbox.tenant_id
    assert claims["nonce"] == "n-1" and claims["wids"] == [CLOUD_APPLICATION_ADMINISTRATOR]
    # A code is redeemed once.
    again = redeem(sandbox, browser, query["code"][0])
    assert again.status_code == 400 and "AADSTS54005" in again.json()["error_description"]


def test_a_verifier_that_does_not_match_the_challenge_is_refused(sandbox: Sandbox, browser: httpx.Client):
    code = parse_qs(urlsplit(sign_in(sandbox, browser, ADMIN_USER).headers["location"]).query)["code"][0]
    response = redeem(sandbox, browser, code, verifier="w" * 50)
    assert response.status_code == 400
    assert (
        response.json()["error"] == "invalid_grant" and "AADSTS501481" in response.json()["error_description"]
    )


def test_a_user_of_another_tenant_gets_no_code(sandbox: Sandbox, browser: httpx.Client):
    response = sign_in(sandbox, browser, OUTSIDER)
    assert response.status_code == 400 and "AADSTS50020" in response.text
    assert "location" not in response.headers
