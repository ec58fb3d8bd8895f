"""Entra ID stand-in driven by azure-identity (MSAL underneath) and plain HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential

from sandbox import Sandbox, SandboxConfig
from sandbox.catalog import EXCHANGE_ADMINISTRATOR


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def credential(sb: Sandbox, client_id: str, secret: str, tenant: str | None = None) -> ClientSecretCredential:
    return ClientSecretCredential(
        tenant or sb.tenant_id,
        client_id,
        secret,
        authority=sb.env["ENTRA_AUTHORITY_HOST"],
        disable_instance_discovery=True,
    )


def test_openid_configuration_points_at_the_sandbox(sandbox: Sandbox) -> None:
    authority = sandbox.env["ENTRA_AUTHORITY_HOST"]
    url = f"{authority}/{sandbox.tenant_id}/v2.0/.well-known/openid-configuration"
    config = httpx.get(url, verify=sandbox.client_ssl_context()).json()
    assert config["issuer"] == f"{authority}/{sandbox.tenant_id}/v2.0"
    assert config["token_endpoint"] == f"{authority}/{sandbox.tenant_id}/oauth2/v2.0/token"
    keys = httpx.get(config["jwks_uri"], verify=sandbox.client_ssl_context()).json()["keys"]
    assert keys[0]["kty"] == "RSA"


def test_client_secret_credential_gets_a_token_with_exactly_the_granted_roles(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    app_id, sp_id, secret = sandbox.create_client_app("mail client", roles=["IMAP.AccessAsApp"])
    token = (
        credential(sandbox, app_id, secret).get_token(f"{sandbox.env['EXCHANGE_ENDPOINT']}/.default").token
    )
    c = claims(token)
    assert c["aud"] == sandbox.env["EXCHANGE_ENDPOINT"]
    assert c["roles"] == ["IMAP.AccessAsApp"]
    assert (c["appid"], c["oid"], c["tid"]) == (app_id, sp_id, sandbox.tenant_id)
    assert c["exp"] > c["iat"] and c["ver"] == "1.0"
    assert token in sandbox.state.issued_tokens()
    graph_token = (
        credential(sandbox, app_id, secret).get_token(f"{sandbox.env['GRAPH_ENDPOINT']}/.default").token
    )
    assert "roles" not in claims(graph_token)  # nothing granted on Graph


def test_wrong_secret_is_refused_with_aadsts7000215(sandbox: Sandbox, sandbox_env: dict[str, str]) -> None:
    app_id, _, _ = sandbox.create_client_app("mail client")
    with pytest.raises(ClientAuthenticationError) as err:
        credential(sandbox, app_id, "not-the-secret").get_token(
            f"{sandbox.env['EXCHANGE_ENDPOINT']}/.default"
        )
    assert "AADSTS7000215" in str(err.value)


def test_unknown_app_tenant_and_resource_are_refused_like_entra(sandbox: Sandbox) -> None:
    app_id, _, secret = sandbox.create_client_app("mail client")
    url = f"{sandbox.env['ENTRA_AUTHORITY_HOST']}/{{}}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": app_id, "client_secret": secret}
    verify = sandbox.client_ssl_context()

    def post(tenant: str, **changes: str) -> httpx.Response:
        return httpx.post(
            url.format(tenant),
            data={**form, "scope": f"{sandbox.env['GRAPH_ENDPOINT']}/.default", **changes},
            verify=verify,
        )

    unknown_app = post(sandbox.tenant_id, client_id="11111111-2222-3333-4444-555555555555")
    assert (unknown_app.status_code, unknown_app.json()["error"]) == (400, "unauthorized_client")
    assert unknown_app.json()["error_codes"] == [700016]
    unknown_tenant = post("00000000-0000-0000-0000-000000000001")
    assert (unknown_tenant.status_code, unknown_tenant.json()["error_codes"]) == (400, [90002])
    unknown_resource = post(sandbox.tenant_id, scope="https://example.invalid/.default")
    assert (unknown_resource.status_code, unknown_resource.json()["error_codes"]) == (400, [500011])
    wrong = post(sandbox.tenant_id, client_secret="x")
    assert (wrong.status_code, wrong.json()["error"], wrong.json()["error_codes"]) == (
        401,
        "invalid_client",
        [7000215],
    )
    assert secret not in wrong.text


def test_expired_secret_is_refused_with_aadsts7000222(tmp_path) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    with Sandbox(SandboxConfig(base_dir=tmp_path, clock=lambda: now[0], start_mail=False)) as sb:
        app_id, _, secret = sb.create_client_app("mail client")
        form = {
            "grant_type": "client_credentials",
            "client_id": app_id,
            "client_secret": secret,
            "scope": f"{sb.env['EXCHANGE_ENDPOINT']}/.default",
        }
        url = f"{sb.env['ENTRA_AUTHORITY_HOST']}/{sb.tenant_id}/oauth2/v2.0/token"
        ok = httpx.post(url, data=form, verify=sb.client_ssl_context())
        assert ok.status_code == 200
        token = ok.json()["access_token"]
        now[0] += timedelta(days=731)  # past the default two-year lifetime
        expired = httpx.post(url, data=form, verify=sb.client_ssl_context())
        assert (expired.status_code, expired.json()["error_codes"]) == (401, [7000222])
        # The token minted earlier has expired too, by the same tenant clock.
        assert (
            sb.state.authorize_mail("support@sandbox.example", token, "imap")
            == "token rejected: token expired"
        )


def test_managed_identity_credential_reads_the_app_service_settings(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    mi = ManagedIdentityCredential(client_id=sandbox_env["AZURE_CLIENT_ID"])
    graph = claims(mi.get_token(f"{sandbox_env['GRAPH_ENDPOINT']}/.default").token)
    assert graph["roles"] == [
        "AppRoleAssignment.ReadWrite.All",
        "Application.Read.All",
        "Application.ReadWrite.OwnedBy",
        "Domain.Read.All",
        "Mail.Send",
    ]
    assert graph["oid"] == sandbox.identity.id and graph["appid"] == sandbox_env["AZURE_CLIENT_ID"]
    exchange = claims(mi.get_token(f"{sandbox_env['EXCHANGE_ENDPOINT']}/.default").token)
    assert exchange["roles"] == ["Exchange.ManageAsApp"] and exchange["wids"] == [EXCHANGE_ADMINISTRATOR]


def test_identity_roles_are_configurable_and_the_header_is_checked(sandbox: Sandbox) -> None:
    sandbox.set_identity_roles(graph=["Application.ReadWrite.All"])
    url = sandbox.env["IDENTITY_ENDPOINT"]
    params = {"api-version": "2019-08-01", "resource": sandbox.env["GRAPH_ENDPOINT"]}
    body = httpx.get(url, params=params, headers={"X-IDENTITY-HEADER": sandbox.env["IDENTITY_HEADER"]}).json()
    assert claims(body["access_token"])["roles"] == ["Application.ReadWrite.All"]
    assert int(body["expires_on"]) > datetime.now(UTC).timestamp() and body["token_type"] == "Bearer"
    assert httpx.get(url, params=params, headers={"X-IDENTITY-HEADER": "wrong"}).status_code == 401


async def test_async_client_secret_credential(sandbox: Sandbox, sandbox_env: dict[str, str]) -> None:
    from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential

    app_id, _, secret = sandbox.create_client_app("mail client", roles=["POP.AccessAsApp"])
    async with AsyncClientSecretCredential(
        sandbox.tenant_id,
        app_id,
        secret,
        authority=sandbox_env["ENTRA_AUTHORITY_HOST"],
        disable_instance_discovery=True,
    ) as cred:
        token = await cred.get_token(f"{sandbox_env['EXCHANGE_ENDPOINT']}/.default")
    assert claims(token.token)["roles"] == ["POP.AccessAsApp"]
