"""The admin consent page, driven over plain HTTP as a browser would (forms, redirects)."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import httpx
import pytest

from sandbox import Sandbox
from sandbox.catalog import EXCHANGE_APP_ID

CALLBACK = "http://127.0.0.1:7071/api/consent/callback"
IMAP_ROLE = "5e5addcd-3e8d-4e90-baf5-964efab2b20a"
USER_READ = "e1fe6dd8-ba31-4d61-89e7-88639da4683d"


@pytest.fixture
def app(sandbox: Sandbox) -> tuple[str, str]:
    """An app requiring IMAP.AccessAsApp (and delegated User.Read), with no service principal yet."""
    state = sandbox.state
    created = state.create_application(
        {
            "displayName": "Mail reader",
            "web": {"redirectUris": [CALLBACK]},
            "requiredResourceAccess": [
                {"resourceAppId": EXCHANGE_APP_ID, "resourceAccess": [{"id": IMAP_ROLE, "type": "Role"}]},
                {
                    "resourceAppId": "00000003-0000-0000-c000-000000000000",
                    "resourceAccess": [{"id": USER_READ, "type": "Scope"}],
                },
            ],
        },
        owner=None,
    )
    return created.app_id, created.id


def consent_url(sb: Sandbox, **params: str) -> str:
    return f"{sb.env['ENTRA_AUTHORITY_HOST']}/{sb.tenant_id}/adminconsent?{urlencode(params)}"


def form_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))


def test_page_lists_the_application_permissions_with_accept_and_cancel(
    sandbox: Sandbox, app: tuple[str, str]
) -> None:
    page = httpx.get(
        consent_url(sandbox, client_id=app[0], redirect_uri=CALLBACK, state="s1"),
        verify=sandbox.client_ssl_context(),
    )
    assert page.status_code == 200
    assert "Office 365 Exchange Online</b>: IMAP.AccessAsApp (Application)" in page.text
    assert "User.Read (Delegated)" in page.text
    assert 'id="accept"' in page.text and 'id="cancel"' in page.text
    assert form_fields(page.text) == {"client_id": app[0], "redirect_uri": CALLBACK, "state": "s1"}


def test_accept_creates_the_service_principal_and_grants_then_redirects(
    sandbox: Sandbox, app: tuple[str, str]
) -> None:
    url = consent_url(sandbox, client_id=app[0], redirect_uri=CALLBACK, state="abc/123")
    response = httpx.post(
        url.split("?")[0],
        data={"client_id": app[0], "redirect_uri": CALLBACK, "state": "abc/123", "decision": "accept"},
        verify=sandbox.client_ssl_context(),
    )
    assert response.status_code == 302
    assert (
        response.headers["Location"]
        == f"{CALLBACK}?admin_consent=True&tenant={sandbox.tenant_id}&state=abc%2F123"
    )
    sp = next(s for s in sandbox.state.service_principals() if s.app_id == app[0])
    granted = [
        (a.resource_id, a.app_role_id)
        for a in sandbox.state.app_role_assignments()
        if a.principal_id == sp.id
    ]
    assert granted == [(sandbox.state.exchange_sp.id, IMAP_ROLE)]
    # Accepting twice changes nothing.
    again = httpx.post(
        url.split("?")[0],
        data={"client_id": app[0], "redirect_uri": CALLBACK, "state": "x", "decision": "accept"},
        verify=sandbox.client_ssl_context(),
    )
    assert again.status_code == 302
    assert len([a for a in sandbox.state.app_role_assignments() if a.principal_id == sp.id]) == 1


def test_cancel_redirects_with_access_denied_and_grants_nothing(
    sandbox: Sandbox, app: tuple[str, str]
) -> None:
    base = f"{sandbox.env['ENTRA_AUTHORITY_HOST']}/{sandbox.tenant_id}/v2.0/adminconsent"
    response = httpx.post(
        base,
        data={"client_id": app[0], "redirect_uri": CALLBACK, "state": "s2", "decision": "cancel"},
        verify=sandbox.client_ssl_context(),
    )
    assert response.status_code == 302
    assert response.headers["Location"] == (
        f"{CALLBACK}?admin_consent=True&tenant={sandbox.tenant_id}&state=s2&error=access_denied"
        "&error_description=AADSTS65004%3A+User+declined+to+consent+to+access+the+app."
    )
    assert not [s for s in sandbox.state.service_principals() if s.app_id == app[0]]


def test_unregistered_redirect_uri_and_unknown_app_get_an_error_page_not_a_redirect(
    sandbox: Sandbox, app: tuple[str, str]
) -> None:
    verify = sandbox.client_ssl_context()
    evil = httpx.get(
        consent_url(sandbox, client_id=app[0], redirect_uri="https://evil.example/cb"), verify=verify
    )
    assert evil.status_code == 400 and "AADSTS50011" in evil.text and "Location" not in evil.headers
    posted = httpx.post(
        consent_url(sandbox).split("?")[0],
        data={"client_id": app[0], "redirect_uri": "https://evil.example/cb", "decision": "accept"},
        verify=verify,
    )
    assert posted.status_code == 400 and "Location" not in posted.headers
    assert not [s for s in sandbox.state.service_principals() if s.app_id == app[0]]
    unknown = httpx.get(
        consent_url(sandbox, client_id="11111111-2222-3333-4444-555555555555", redirect_uri=CALLBACK),
        verify=verify,
    )
    assert unknown.status_code == 400 and "AADSTS700016" in unknown.text


def test_v2_scope_limits_the_page_to_that_resource(sandbox: Sandbox, app: tuple[str, str]) -> None:
    url = f"{sandbox.env['ENTRA_AUTHORITY_HOST']}/{sandbox.tenant_id}/v2.0/adminconsent?" + urlencode(
        {
            "client_id": app[0],
            "redirect_uri": CALLBACK,
            "scope": f"{sandbox.env['EXCHANGE_ENDPOINT']}/.default",
        }
    )
    page = httpx.get(url, verify=sandbox.client_ssl_context()).text
    assert "IMAP.AccessAsApp" in page and "User.Read" not in page
