"""Entra ID callers of the requester's API, through the local host, with tokens the sandbox tenant issues.

A caller application gets an app-only token for the API's app registration (client credentials) and
sends it as a bearer token; the app checks it against the tenant's signing keys (docs/security.md).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from onboarding.settings import load_settings
from sandbox.entra import ApiCaller
from sandbox.tenant import Sandbox, SandboxConfig
from tests.api.conftest import TENANT, Api, request_body

READ, READ_WRITE = "Onboardings.Read", "Onboardings.ReadWrite"
V1 = "/api/v1/onboardings"
# Settings the sandbox gives the app for its API (sb.env), besides those of tests/api/conftest.py.
API_SETTINGS = (
    "ENTRA_AUTHORITY_HOST",
    "SSL_CERT_FILE",
    "API_CLIENT_ID",
    "API_ACCESS_TOKEN_VERSION",
    "ENTRA_TOKEN_ISSUER_V1_HOST",
)


class TenantClock:
    """The sandbox tenant's clock, which a test can move back to mint tokens that have expired."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture(scope="module")
def clock() -> TenantClock:
    return TenantClock()


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory, clock: TenantClock) -> Iterator[Sandbox]:
    config = SandboxConfig(
        base_dir=tmp_path_factory.mktemp("entra-sandbox"), tenant_id=TENANT, start_mail=False, clock=clock
    )
    with Sandbox(config) as sandbox, pytest.MonkeyPatch.context() as patch:
        for name in API_SETTINGS:
            patch.setenv(name, sandbox.env[name])
        load_settings.cache_clear()
        yield sandbox
    load_settings.cache_clear()


def token_for(sandbox: Sandbox, caller: ApiCaller, resource: str | None = None) -> str:
    """An app-only access token from the tenant's token endpoint, for the API unless ``resource``."""
    resource = resource or sandbox.env["API_CLIENT_ID"]
    response = httpx.post(
        f"{sandbox.env['ENTRA_AUTHORITY_HOST']}/{TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": caller.client_id,
            "client_secret": caller.client_secret,
            "scope": f"{resource}/.default",
        },
        verify=ssl.create_default_context(cafile=sandbox.env["SSL_CERT_FILE"]),
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def resigned(sandbox: Sandbox, token: str, **claims: Any) -> str:
    """The token with some claims changed and signed again with the tenant's own key: only the changed
    claims can make the API refuse it."""
    original = jwt.decode(token, options={"verify_signature": False})
    key = sandbox.state.issuer._key  # the tenant's signing key, to forge a validly signed token
    kid = sandbox.state.issuer.kid
    return jwt.encode({**original, **claims}, key, algorithm="RS256", headers={"kid": kid})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refusal(response: httpx.Response, status: int, error: str, reason: str, token: str) -> None:
    assert response.status_code == status, response.text
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer error="{error}"'), challenge
    assert reason in challenge and reason in response.json()["detail"]
    assert token not in response.text and token not in challenge


def test_caller_with_the_read_write_role_starts_polls_lists_and_cancels(api: Api, tenant: Sandbox) -> None:
    token = token_for(tenant, tenant.api_caller(READ_WRITE))
    started = api.anonymous.post(V1, json=request_body(), headers=bearer(token))
    assert started.status_code == 202, started.text
    api.host.idle()
    location = started.headers["Location"]
    assert "code=" not in location  # the token is not a URL part: the poller sends it again
    location = httpx.URL(location).path  # PUBLIC_BASE_URL stands for the host's address
    assert api.anonymous.get(location, headers=bearer(token)).status_code == 202
    listed = api.anonymous.get(V1, headers=bearer(token))
    assert [item["id"] for item in listed.json()["items"]] == [started.json()["id"]]
    cancelled = api.anonymous.post(f"{location}/cancel", headers=bearer(token))
    assert cancelled.status_code == 202, cancelled.text


def test_the_onboarding_records_which_caller_asked_and_never_its_token(api: Api, tenant: Sandbox) -> None:
    caller = tenant.api_caller(READ_WRITE)
    token = token_for(tenant, caller)
    by_token = api.anonymous.post(V1, json=request_body(idempotencyKey="t"), headers=bearer(token)).json()[
        "id"
    ]
    by_key = api.client.post(V1, json=request_body(idempotencyKey="k")).json()["id"]
    stored = {i: api.durable(i)["input"] for i in (by_token, by_key)}
    stored = {i: json.loads(v) if isinstance(v, str) else v for i, v in stored.items()}
    assert stored[by_token]["requested_by"] == {
        "kind": "entra",
        "objectId": caller.object_id,
        "appId": caller.client_id,
    }
    assert stored[by_key]["requested_by"] == {"kind": "function-key"}
    assert token not in json.dumps(stored) and api.host.function_key not in json.dumps(stored)


def test_caller_with_the_read_role_reads_but_cannot_start(api: Api, tenant: Sandbox) -> None:
    onboarding_id = api.start()  # by a function-key caller
    token = token_for(tenant, tenant.api_caller(READ))
    assert api.anonymous.get(f"{V1}/{onboarding_id}", headers=bearer(token)).status_code == 202
    refused = api.anonymous.post(V1, json=request_body(), headers=bearer(token))
    refusal(refused, 403, "insufficient_scope", "Onboardings.ReadWrite", token)
    cancel = api.anonymous.post(f"{V1}/{onboarding_id}/cancel", headers=bearer(token))
    refusal(cancel, 403, "insufficient_scope", "Onboardings.ReadWrite", token)
    assert len(api.host.instances()) == 1


def test_caller_with_the_read_role_cannot_offboard(api: Api, tenant: Sandbox) -> None:
    onboarding_id = api.start()
    token = token_for(tenant, tenant.api_caller(READ))
    refused = api.anonymous.delete(f"{V1}/{onboarding_id}", headers=bearer(token))
    refusal(refused, 403, "insufficient_scope", "Onboardings.ReadWrite", token)
    assert len(api.host.instances()) == 1  # no offboarding started
    allowed = token_for(tenant, tenant.api_caller(READ_WRITE))
    assert api.anonymous.delete(f"{V1}/{onboarding_id}", headers=bearer(allowed)).status_code == 202


def test_caller_without_a_role_is_forbidden(api: Api, tenant: Sandbox) -> None:
    token = token_for(tenant, tenant.api_caller())
    refusal(
        api.anonymous.get(V1, headers=bearer(token)), 403, "insufficient_scope", "Onboardings.Read", token
    )


def test_token_for_another_resource_is_refused_as_wrong_audience(api: Api, tenant: Sandbox) -> None:
    token = token_for(tenant, tenant.api_caller(READ_WRITE), resource=tenant.env["GRAPH_ENDPOINT"])
    refused = api.anonymous.post(V1, json=request_body(), headers=bearer(token))
    refusal(refused, 401, "invalid_token", "audience", token)
    assert api.host.instances() == []


def test_token_from_another_issuer_or_tenant_is_refused(api: Api, tenant: Sandbox) -> None:
    token = token_for(tenant, tenant.api_caller(READ_WRITE))
    other = "99999999-8888-7777-6666-555555555555"
    foreign_issuer = resigned(tenant, token, iss=f"{tenant.env['ENTRA_AUTHORITY_HOST']}/{other}/")
    refusal(
        api.anonymous.get(V1, headers=bearer(foreign_issuer)), 401, "invalid_token", "issuer", foreign_issuer
    )
    foreign_tenant = resigned(tenant, token, tid=other)
    refusal(
        api.anonymous.get(V1, headers=bearer(foreign_tenant)), 401, "invalid_token", "tenant", foreign_tenant
    )


def test_expired_token_is_refused(api: Api, tenant: Sandbox, clock: TenantClock) -> None:
    caller = tenant.api_caller(READ_WRITE)
    clock.offset = -timedelta(hours=2)  # minted two hours ago: expired an hour ago
    try:
        token = token_for(tenant, caller)
    finally:
        clock.offset = timedelta()
    refusal(api.anonymous.get(V1, headers=bearer(token)), 401, "invalid_token", "expired", token)


def test_token_not_signed_by_the_tenant_is_refused(api: Api, tenant: Sandbox) -> None:
    token = token_for(tenant, tenant.api_caller(READ_WRITE))
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, "a guessed secret of at least thirty-two bytes", algorithm="HS256")
    refusal(api.anonymous.get(V1, headers=bearer(forged)), 401, "invalid_token", "RS256", forged)
    assert api.anonymous.get(V1, headers=bearer("not-a-jwt")).status_code == 401


def test_function_key_keeps_working_beside_tokens(api: Api, tenant: Sandbox) -> None:
    assert api.client.post(V1, json=request_body()).status_code == 202
    assert api.client.get(V1).status_code == 200
    missing = api.anonymous.get(V1)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
