"""The sandbox's tokens, metadata, envelopes and protocol texts in their documented forms.

Each test names the entry of docs/sandbox-facts.md whose source it checks against; a test failing
here means the sandbox drifted from what Microsoft documents (or a client captured), so a product
built against it could come to rely on something the real services do not do.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import uuid
from collections.abc import Callable

import httpx
import jwt
import pytest

from sandbox import Sandbox

# "Access token claims": the payload claims of a v1.0 app-only (client credentials) token.
V1_APP_ONLY_CLAIMS = {
    *("aud", "iss", "iat", "nbf", "exp", "aio", "appid", "appidacr", "idp", "oid", "rh", "roles"),
    *("sub", "tid", "uti", "ver"),
}
# "OpenID discovery documents": the keys of Entra ID's published documents.
V2_DISCOVERY_KEYS = {
    *("token_endpoint", "token_endpoint_auth_methods_supported", "jwks_uri", "response_modes_supported"),
    *("subject_types_supported", "id_token_signing_alg_values_supported", "response_types_supported"),
    *("scopes_supported", "issuer", "request_uri_parameter_supported", "userinfo_endpoint"),
    *("authorization_endpoint", "device_authorization_endpoint", "http_logout_supported"),
    *("frontchannel_logout_supported", "end_session_endpoint", "claims_supported", "kerberos_endpoint"),
    *("tenant_region_scope", "cloud_instance_name", "cloud_graph_host_name", "msgraph_host", "rbac_url"),
}
V1_DISCOVERY_KEYS = (V2_DISCOVERY_KEYS - {"request_uri_parameter_supported"}) | {
    "microsoft_multi_refresh_token",
    "check_session_iframe",
}
AUTH_METHODS = ["client_secret_post", "private_key_jwt", "client_secret_basic"]
# "IMAP and POP", MP-2: Exchange Online's capability list, less AUTH=PLAIN (plaintext is refused here).
EXCHANGE_IMAP_CAPABILITY = {
    *(b"IMAP4", b"IMAP4rev1", b"AUTH=XOAUTH2", b"SASL-IR", b"UIDPLUS", b"MOVE", b"ID", b"UNSELECT"),
    *(b"CHILDREN", b"IDLE", b"NAMESPACE", b"LITERAL+"),
}


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _client_token(sandbox: Sandbox, app_id: str, secret: str, resource: str) -> httpx.Response:
    return httpx.post(
        f"{sandbox.env['ENTRA_AUTHORITY_HOST']}/{sandbox.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": app_id,
            "client_secret": secret,
            "scope": f"{resource}/.default",
        },
        verify=sandbox.client_ssl_context(),
    )


def _discovery(sandbox: Sandbox, tenant: str, v2: bool) -> dict:
    version = "v2.0/" if v2 else ""
    url = f"{sandbox.env['ENTRA_AUTHORITY_HOST']}/{tenant}/{version}.well-known/openid-configuration"
    response = httpx.get(url, verify=sandbox.client_ssl_context())
    response.raise_for_status()
    document: dict = response.json()
    return document


# ------------------------------------------------------------------ tokens


def test_app_only_token_has_exactly_the_documented_v1_claims(sandbox: Sandbox) -> None:
    """docs/sandbox-facts.md EN-5 Access token claims."""
    app_id, sp_id, secret = sandbox.create_client_app("mail client", roles=["IMAP.AccessAsApp"])
    response = _client_token(sandbox, app_id, secret, sandbox.env["EXCHANGE_ENDPOINT"])
    token = response.json()["access_token"]
    claims = _claims(token)
    assert set(claims) == V1_APP_ONLY_CLAIMS
    # v1.0 only: appid/appidacr, never the v2.0 azp/azpacr; 1 means a client secret.
    assert (claims["ver"], claims["appid"], claims["appidacr"]) == ("1.0", app_id, "1")
    assert claims["oid"] == claims["sub"] == sp_id
    # The v1.0 issuer is the tenant's STS URI with a trailing slash, and idp repeats it for an app.
    assert claims["iss"] == claims["idp"] == _discovery(sandbox, sandbox.tenant_id, v2=False)["issuer"]
    assert claims["iss"].endswith(f"/{sandbox.tenant_id}/")
    assert claims["nbf"] <= claims["iat"] < claims["exp"]
    header = jwt.get_unverified_header(token)
    # x5t is the legacy twin of kid, "emitted only in v1.0 access tokens".
    assert header["typ"] == "JWT" and header["alg"] == "RS256" and header["kid"] == header["x5t"]


def test_token_response_of_the_v2_endpoint_has_the_documented_fields(sandbox: Sandbox) -> None:
    """docs/sandbox-facts.md EN-4 Token response."""
    app_id, _, secret = sandbox.create_client_app("mail client", roles=["IMAP.AccessAsApp"])
    body = _client_token(sandbox, app_id, secret, sandbox.env["EXCHANGE_ENDPOINT"]).json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and isinstance(body["ext_expires_in"], int)
    assert 0 < body["expires_in"] <= 3600


def test_managed_identity_response_is_the_app_service_2019_08_01_form(sandbox: Sandbox) -> None:
    """docs/sandbox-facts.md MI-1 App Service identity endpoint."""
    response = httpx.get(
        sandbox.env["IDENTITY_ENDPOINT"],
        params={"api-version": "2019-08-01", "resource": sandbox.env["GRAPH_ENDPOINT"]},
        headers={"X-IDENTITY-HEADER": sandbox.env["IDENTITY_HEADER"]},
    )
    body = response.json()
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert body["expires_on"].isdigit()  # seconds since the epoch, as a string
    assert body["resource"] == sandbox.env["GRAPH_ENDPOINT"] and body["token_type"] == "Bearer"
    assert _claims(body["access_token"])["appid"] == body["client_id"]


# ------------------------------------------------------------------ OpenID discovery


def test_v2_discovery_document_has_entras_keys_and_values(sandbox: Sandbox) -> None:
    """docs/sandbox-facts.md EN-6 OpenID discovery documents (v2.0)."""
    authority, tid = sandbox.env["ENTRA_AUTHORITY_HOST"], sandbox.tenant_id
    document = _discovery(sandbox, tid, v2=True)
    assert set(document) == V2_DISCOVERY_KEYS
    assert document["issuer"] == f"{authority}/{tid}/v2.0"
    assert document["token_endpoint"] == f"{authority}/{tid}/oauth2/v2.0/token"
    assert document["jwks_uri"] == f"{authority}/{tid}/discovery/v2.0/keys"
    assert document["token_endpoint_auth_methods_supported"] == AUTH_METHODS
    assert document["request_uri_parameter_supported"] is False


def test_v1_discovery_document_names_the_v1_issuer_endpoints_and_keys(sandbox: Sandbox) -> None:
    """docs/sandbox-facts.md EN-6 (v1) and EN-7 JWKS."""
    authority, tid = sandbox.env["ENTRA_AUTHORITY_HOST"], sandbox.tenant_id
    document = _discovery(sandbox, tid, v2=False)
    assert set(document) == V1_DISCOVERY_KEYS
    assert document["issuer"] == f"{authority}/{tid}/"
    assert document["token_endpoint"] == f"{authority}/{tid}/oauth2/token"
    assert document["jwks_uri"] == f"{authority}/{tid}/discovery/keys"
    assert document["token_endpoint_auth_methods_supported"] == AUTH_METHODS
    assert document["microsoft_multi_refresh_token"] is True
    keys = httpx.get(document["jwks_uri"], verify=sandbox.client_ssl_context()).json()["keys"]
    assert {"kty", "use", "kid", "x5t", "n", "e"} <= set(keys[0])


@pytest.mark.parametrize("v2", [True, False])
def test_common_authority_publishes_the_issuer_with_a_tenantid_placeholder(
    sandbox: Sandbox, v2: bool
) -> None:
    """docs/sandbox-facts.md EN-6: the `{tenantid}` issuer of the multi-tenant documents."""
    authority = sandbox.env["ENTRA_AUTHORITY_HOST"]
    document = _discovery(sandbox, "common", v2=v2)
    expected = f"{authority}/{{tenantid}}/v2.0" if v2 else f"{authority}/{{tenantid}}/"
    assert document["issuer"] == expected
    assert document["tenant_region_scope"] is None


# ------------------------------------------------------------------ token endpoint errors


def test_token_endpoint_error_envelope_carries_the_aadsts_code_and_ids(sandbox: Sandbox) -> None:
    """docs/sandbox-facts.md EN-1 Token endpoint error envelope."""
    app_id, _, _ = sandbox.create_client_app("mail client")
    response = _client_token(sandbox, app_id, "not-the-secret", sandbox.env["GRAPH_ENDPOINT"])
    body = response.json()
    assert response.status_code == 401
    assert set(body) == {
        "error",
        "error_description",
        "error_codes",
        "timestamp",
        "trace_id",
        "correlation_id",
    }
    assert body["error"] == "invalid_client" and body["error_codes"] == [7000215]
    description = body["error_description"]
    assert description.startswith("AADSTS7000215: ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", body["timestamp"])
    trailer = [
        f"Trace ID: {body['trace_id']}",
        f"Correlation ID: {body['correlation_id']}",
        f"Timestamp: {body['timestamp']}",
    ]
    assert description.split("\r\n")[1:] == trailer


# ------------------------------------------------------------------ IMAP and POP texts


def _tls(sandbox: Sandbox, port: int) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sandbox.client_ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")


def _read_until(conn: ssl.SSLSocket, done: Callable[[bytes], bool]) -> bytes:
    data = b""
    while not done(data):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _tagged(answer: bytes) -> bytes:
    return next(line for line in answer.split(b"\r\n") if line.startswith(b"a1 "))


def _xoauth2(mailbox: str, token: str) -> bytes:
    return base64.b64encode(f"user={mailbox}\x01auth=Bearer {token}\x01\x01".encode())


def _mail_token(sandbox: Sandbox, mailbox: str, *, grant: bool) -> str:
    app_id, sp_id, secret = sandbox.create_client_app("mail", roles=["IMAP.AccessAsApp", "POP.AccessAsApp"])
    if grant:
        state = sandbox.state
        esp = state.add_exchange_sp(app_id, sp_id, "mail")
        state.add_mailbox_permission(state.find_mailbox(mailbox), esp, auto_mapping=False)
    token: str = _client_token(sandbox, app_id, secret, sandbox.env["EXCHANGE_ENDPOINT"]).json()[
        "access_token"
    ]
    return token


def _imap_authenticate(sandbox: Sandbox, mailbox: str, token: str) -> tuple[bytes, bytes, bytes]:
    """(greeting, CAPABILITY answer, AUTHENTICATE answer)."""
    with _tls(sandbox, sandbox.mail.imap_port) as conn:
        greeting = _read_until(conn, lambda d: d.endswith(b"\r\n"))
        conn.sendall(b"c1 CAPABILITY\r\n")
        capability = _read_until(conn, lambda d: b"c1 " in d and d.endswith(b"\r\n"))
        conn.sendall(b"a1 AUTHENTICATE XOAUTH2 " + _xoauth2(mailbox, token) + b"\r\n")
        answer = _read_until(conn, lambda d: (b"a1 " in d or d.startswith(b"+")) and d.endswith(b"\r\n"))
        if answer.startswith(b"+"):  # the error challenge: an empty line gets the tagged NO
            conn.sendall(b"\r\n")
            answer = _read_until(conn, lambda d: b"a1 " in d and d.endswith(b"\r\n"))
    return greeting, capability, answer


def _pop_authenticate(sandbox: Sandbox, mailbox: str, token: str) -> tuple[bytes, bytes, bytes]:
    """(greeting, CAPA answer, final AUTH answer)."""
    with _tls(sandbox, sandbox.mail.pop_port) as conn:
        greeting = _read_until(conn, lambda d: d.endswith(b"\r\n"))
        conn.sendall(b"CAPA\r\n")
        capa = _read_until(conn, lambda d: d.endswith(b"\r\n.\r\n"))
        conn.sendall(b"AUTH XOAUTH2\r\n")
        assert _read_until(conn, lambda d: d.endswith(b"\r\n")).startswith(b"+")
        conn.sendall(_xoauth2(mailbox, token) + b"\r\n")
        answer = _read_until(conn, lambda d: d.endswith(b"\r\n"))
        if answer.startswith(b"+ ") or answer == b"+\r\n":
            conn.sendall(b"\r\n")
            answer = _read_until(conn, lambda d: d.endswith(b"\r\n"))
    return greeting, capa, answer


@pytest.fixture
def mailbox(sandbox: Sandbox) -> str:
    address = f"forms@{sandbox.state.domain}"
    sandbox.add_mailbox(address)
    return address


def test_imap_greeting_capability_and_failure_read_like_exchange(sandbox: Sandbox, mailbox: str) -> None:
    """docs/sandbox-facts.md MP-1, MP-2, MP-4 (IMAP)."""
    greeting, capability, answer = _imap_authenticate(
        sandbox, mailbox, _mail_token(sandbox, mailbox, grant=False)
    )
    assert greeting.startswith(b"* OK ")
    assert b"The Microsoft Exchange IMAP4 service is ready." in greeting
    listed = capability.split(b"\r\n")[0].split()
    assert listed[:2] == [b"*", b"CAPABILITY"]
    assert set(listed) >= EXCHANGE_IMAP_CAPABILITY
    # Exchange: "a1 NO AUTHENTICATE failed."; Dovecot puts a response code between NO and the text.
    assert re.fullmatch(rb"a1 NO (\[[A-Z-]+\] )?AUTHENTICATE failed\.", _tagged(answer)), answer


def test_imap_app_token_with_full_access_authenticates(sandbox: Sandbox, mailbox: str) -> None:
    """docs/sandbox-facts.md MP-3 (IMAP)."""
    _, _, answer = _imap_authenticate(sandbox, mailbox, _mail_token(sandbox, mailbox, grant=True))
    assert _tagged(answer).startswith(b"a1 OK "), answer


def test_pop_greeting_capa_and_failure_read_like_exchange(sandbox: Sandbox, mailbox: str) -> None:
    """docs/sandbox-facts.md MP-1, MP-2, MP-4 (POP)."""
    greeting, capa, answer = _pop_authenticate(sandbox, mailbox, _mail_token(sandbox, mailbox, grant=False))
    assert greeting == b"+OK The Microsoft Exchange POP3 service is ready.\r\n" or greeting.startswith(
        b"+OK The Microsoft Exchange POP3 service is ready. ["
    )
    sasl = next(line for line in capa.split(b"\r\n") if line.startswith(b"SASL "))
    assert b"XOAUTH2" in sasl.split()
    assert {b"USER", b"UIDL", b"TOP"} <= set(capa.split(b"\r\n"))
    assert re.fullmatch(
        rb"-ERR (\[[A-Z-]+\] )?Authentication failure: unknown user name or bad password\.\r\n", answer
    ), answer


def test_pop_app_token_with_full_access_authenticates(sandbox: Sandbox, mailbox: str) -> None:
    """docs/sandbox-facts.md MP-3 (POP)."""
    _, _, answer = _pop_authenticate(sandbox, mailbox, _mail_token(sandbox, mailbox, grant=True))
    assert answer.startswith(b"+OK"), answer


# ------------------------------------------------------------------ Graph and Exchange envelopes


def test_graph_error_envelope_has_code_message_and_inner_error_ids(sandbox: Sandbox, mi_token) -> None:
    """docs/sandbox-facts.md GR-1 Error envelope."""
    sent = "7b1f0c36-0000-4000-8000-00000000c1d1"
    response = httpx.get(
        f"{sandbox.env['GRAPH_ENDPOINT']}/v1.0/applications/00000000-0000-4000-8000-000000000404",
        headers={"Authorization": f"Bearer {mi_token('graph')}", "client-request-id": sent},
        verify=sandbox.client_ssl_context(),
    )
    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) == {"code", "message", "innerError"}
    assert error["code"] == "Request_ResourceNotFound"
    inner = error["innerError"]
    assert set(inner) == {"date", "request-id", "client-request-id"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", inner["date"])
    assert inner["client-request-id"] == sent == response.headers["client-request-id"]
    assert inner["request-id"] == response.headers["request-id"]


def test_graph_collection_envelope_has_odata_context_and_value(sandbox: Sandbox, mi_token) -> None:
    """docs/sandbox-facts.md GR-2 Collections."""
    response = httpx.get(
        f"{sandbox.env['GRAPH_ENDPOINT']}/v1.0/servicePrincipals",
        headers={"Authorization": f"Bearer {mi_token('graph')}"},
        verify=sandbox.client_ssl_context(),
    )
    body = response.json()
    assert body["@odata.context"].endswith("/v1.0/$metadata#servicePrincipals")
    assert isinstance(body["value"], list)


def _invoke(sandbox: Sandbox, token: str, cmdlet: str, parameters: dict) -> httpx.Response:
    return httpx.post(
        f"{sandbox.env['EXCHANGE_ENDPOINT']}/adminapi/beta/{sandbox.tenant_id}/InvokeCommand",
        json={"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters}},
        headers={"Authorization": f"Bearer {token}"},
        verify=sandbox.client_ssl_context(),
    )


def test_exchange_envelopes_value_warnings_and_error_details(
    sandbox: Sandbox, mi_token, mailbox: str
) -> None:
    """docs/sandbox-facts.md EX-2 Success envelope and EX-3 Error envelope."""
    token = mi_token("exchange")
    app_id, sp_id, _ = sandbox.create_client_app("mail")
    created = _invoke(sandbox, token, "New-ServicePrincipal", {"AppId": app_id, "ObjectId": sp_id})
    body = created.json()
    # The keys of a captured InvokeCommand answer, warnings always present and typed.
    assert list(body) == ["@odata.context", "adminapi.warnings@odata.type", "@adminapi.warnings", "value"]
    assert body["@odata.context"].endswith(
        f"/adminapi/beta/{sandbox.tenant_id}/$metadata#Collection(Exchange.GenericHashTable)"
    )
    assert body["adminapi.warnings@odata.type"] == "#Collection(String)" and isinstance(body["value"], list)
    grant = {"Identity": mailbox, "User": sp_id, "AccessRights": ["FullAccess"]}
    assert _invoke(sandbox, token, "Add-MailboxPermission", grant).json()["@adminapi.warnings"] == []
    again = _invoke(sandbox, token, "Add-MailboxPermission", grant).json()
    # A repeated grant succeeds with a warning: a list of strings beside the (empty) value.
    assert again["value"] == [] and all(isinstance(w, str) for w in again["@adminapi.warnings"])
    # Not-found and already-exists refusals take the JSON-string detail form (docs/sandbox-facts.md,
    # issue 15 item 4); any other refusal, such as an id Exchange does not know, takes this one.
    missing = _invoke(
        sandbox, token, "New-ServicePrincipal", {"AppId": app_id, "ObjectId": str(uuid.uuid4())}
    )
    assert missing.status_code == 400
    error = missing.json()["error"]
    # A captured cmdlet refusal: "Invalid Operation" on top, the text in details and the inner exception.
    assert (error["code"], error["message"], error["innererror"]["message"]) == (
        "BadRequest",
        "Invalid Operation",
        "Invalid Operation",
    )
    assert error["innererror"]["type"] == "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"
    detail = error["details"][0]
    assert (detail["code"], detail["target"]) == ("Client", "")
    text = error["innererror"]["internalexception"]["message"]
    assert re.fullmatch(r"Ex[0-9A-F]{6}\|[\w.]+\|" + re.escape(text), detail["message"])
    assert error["@adminapi.warnings"] == []


def test_exchange_refusal_of_a_token_has_the_captured_401_shape(sandbox: Sandbox, mi_token) -> None:
    """docs/sandbox-facts.md EX-4 401 and 403."""
    refused = _invoke(sandbox, mi_token("graph"), "Get-CASMailbox", {})  # a Graph token, not Exchange's
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert set(error) == {"code", "message", "innererror"} and error["code"] == "Unauthorized"
    assert error["innererror"] == {
        "message": error["message"],
        "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
    }
