"""End to end through the sandbox tenant: what the onboarding procedure sets up is what makes a real
IMAP/POP3 login work, and each missing or broken link fails the way a mail client sees it.

The procedure is done by hand here with the clients a script would use: Graph over httpx with the
managed identity's token (azure-identity ``ManagedIdentityCredential``), the Exchange admin API's
InvokeCommand, a token from ``ClientSecretCredential`` for ``{EXCHANGE_ENDPOINT}/.default``, then
imaplib/poplib with XOAUTH2. The client-visible error is the same for every broken link (as with
Exchange Online), so each test also checks the sandbox's logged reason to prove which link broke.
"""

from __future__ import annotations

import base64
import imaplib
import logging
import poplib
import ssl
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox import Sandbox, SandboxConfig
from sandbox.mail import IMAP_FAILURE_TEXT, POP_FAILURE_TEXT

EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
SUPPORT = "support@sandbox.example"
SALES = "sales@sandbox.example"
BILLING = "billing@sandbox.example"
IMAP_ROLE, POP_ROLE = "IMAP.AccessAsApp", "POP.AccessAsApp"

IMAP_REFUSAL = f"[CONTACTADMIN] {IMAP_FAILURE_TEXT}"
POP_REFUSAL = f"-ERR [AUTH] {POP_FAILURE_TEXT}".encode()


class Clock:
    """The tenant's clock; tests move it to expire tokens."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Tenant:
    sandbox: Sandbox
    clock: Clock
    graph: httpx.Client
    exchange: httpx.Client
    tls: ssl.SSLContext

    @property
    def env(self) -> dict[str, str]:
        return self.sandbox.env

    def invoke(self, cmdlet: str, **parameters: Any) -> list[dict[str, Any]]:
        response = self.exchange.post(
            f"/adminapi/beta/{self.env['TENANT_ID']}/InvokeCommand",
            json={"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters}},
        )
        assert response.status_code == 200, response.text
        value: list[dict[str, Any]] = response.json()["value"]
        return value


@dataclass
class MailApp:
    app_id: str
    sp_id: str
    credential: ClientSecretCredential

    def token(self, resource: str) -> str:
        return self.credential.get_token(f"{resource}/.default").token


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    # Its own tenant rather than sandbox_session: these tests move the clock and change faults.
    clock = Clock()
    config = SandboxConfig(
        base_dir=tmp_path_factory.mktemp("mail-chain"), clock=clock, mailboxes=[SUPPORT, SALES, BILLING]
    )
    sandbox = Sandbox(config).start()
    env = sandbox.env
    with pytest.MonkeyPatch.context() as patch:
        # What the function app's environment holds: managed identity endpoint and the CA to trust.
        for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
            patch.setenv(name, env[name])
        identity = ManagedIdentityCredential(client_id=env["AZURE_CLIENT_ID"])

        def bearer(resource: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {identity.get_token(f'{resource}/.default').token}"}

        tls = sandbox.client_ssl_context()
        graph = httpx.Client(
            base_url=env["GRAPH_ENDPOINT"] + "/v1.0", headers=bearer(env["GRAPH_ENDPOINT"]), verify=tls
        )
        exchange = httpx.Client(
            base_url=env["EXCHANGE_ENDPOINT"], headers=bearer(env["EXCHANGE_ENDPOINT"]), verify=tls
        )
        try:
            yield Tenant(sandbox, clock, graph, exchange, tls)
        finally:
            graph.close()
            exchange.close()
            sandbox.stop()


def onboard(
    tenant: Tenant,
    *,
    roles: Iterable[str] = (IMAP_ROLE, POP_ROLE),
    mailboxes: Iterable[str] = (SUPPORT,),
    exchange_service_principal: bool = True,
) -> MailApp:
    """The manual procedure, step by step (DOMAIN.md), as an admin script would do it."""
    graph = tenant.graph
    app = graph.post("/applications", json={"displayName": f"mail-reader-{uuid.uuid4().hex[:8]}"})
    assert app.status_code == 201, app.text
    app_object_id, app_id = app.json()["id"], app.json()["appId"]
    password = graph.post(
        f"/applications/{app_object_id}/addPassword", json={"passwordCredential": {"displayName": "mail"}}
    )
    assert password.status_code == 200, password.text
    sp = graph.post("/servicePrincipals", json={"appId": app_id})
    assert sp.status_code == 201, sp.text
    sp_id = sp.json()["id"]
    resource = graph.get(f"/servicePrincipals(appId='{EXCHANGE_APP_ID}')", params={"$select": "id,appRoles"})
    assert resource.status_code == 200, resource.text
    role_ids = {r["value"]: r["id"] for r in resource.json()["appRoles"]}
    for role in roles:  # granting application permissions is the admin consent
        grant = graph.post(
            f"/servicePrincipals/{sp_id}/appRoleAssignments",
            json={"principalId": sp_id, "resourceId": resource.json()["id"], "appRoleId": role_ids[role]},
        )
        assert grant.status_code == 201, grant.text
    if exchange_service_principal:
        tenant.invoke("New-ServicePrincipal", AppId=app_id, ObjectId=sp_id)
    for mailbox in mailboxes:
        tenant.invoke("Add-MailboxPermission", Identity=mailbox, User=sp_id, AccessRights=["FullAccess"])
    credential = ClientSecretCredential(
        tenant.env["TENANT_ID"],
        app_id,
        password.json()["secretText"],
        authority=tenant.env["ENTRA_AUTHORITY_HOST"],
        disable_instance_discovery=True,
    )
    return MailApp(app_id, sp_id, credential)


@pytest.fixture(scope="module")
def full_app(tenant: Tenant) -> MailApp:
    return onboard(tenant, mailboxes=(SUPPORT, SALES))


@pytest.fixture(scope="module")
def exchange_token(tenant: Tenant, full_app: MailApp) -> str:
    return full_app.token(tenant.env["EXCHANGE_ENDPOINT"])


@pytest.fixture
def reasons(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="sandbox.mail")
    return caplog


def refusal_reasons(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if "refused" in r.getMessage())


# -- mail clients ----------------------------------------------------------------------------------


def sasl(mailbox: str, token: str) -> bytes:
    return f"user={mailbox}\x01auth=Bearer {token}\x01\x01".encode()


def imap_read_welcome(tenant: Tenant, mailbox: str, token: str) -> bytes:
    client = imaplib.IMAP4_SSL("127.0.0.1", int(tenant.env["IMAP_PORT"]), ssl_context=tenant.tls, timeout=10)
    try:
        client.authenticate("XOAUTH2", lambda _: sasl(mailbox, token))
        assert client.select("INBOX", readonly=True) == ("OK", [b"1"])
        _status, data = client.fetch("1", "(RFC822)")
        message = data[0]
        assert isinstance(message, tuple)
        return message[1]
    finally:
        client.logout()


def imap_refusal(tenant: Tenant, mailbox: str, token: str) -> str:
    client = imaplib.IMAP4_SSL("127.0.0.1", int(tenant.env["IMAP_PORT"]), ssl_context=tenant.tls, timeout=10)
    try:
        with pytest.raises(imaplib.IMAP4.error) as refused:
            client.authenticate("XOAUTH2", lambda _: sasl(mailbox, token))
        return str(refused.value)
    finally:
        client.logout()


def imap_mailbox_refusal(tenant: Tenant, mailbox: str, token: str) -> tuple[str, list[bytes]]:
    """Exchange's answer when the app may not open the mailbox: AUTHENTICATE completes, the first
    mailbox command does not."""
    client = imaplib.IMAP4_SSL("127.0.0.1", int(tenant.env["IMAP_PORT"]), ssl_context=tenant.tls, timeout=10)
    try:
        assert client.authenticate("XOAUTH2", lambda _: sasl(mailbox, token))[0] == "OK"
        status, data = client.select("INBOX", readonly=True)
        return status, data
    finally:
        client.logout()


def pop_mailbox_refusal(tenant: Tenant, mailbox: str, token: str) -> bytes:
    client = poplib.POP3_SSL("127.0.0.1", int(tenant.env["POP_PORT"]), context=tenant.tls, timeout=10)
    try:
        client._shortcmd("AUTH XOAUTH2 " + base64.b64encode(sasl(mailbox, token)).decode())  # type: ignore[attr-defined]
        with pytest.raises(poplib.error_proto) as refused:
            client.stat()
        reply: bytes = refused.value.args[0]
        return reply
    finally:
        client.close()


def pop_read_welcome(tenant: Tenant, mailbox: str, token: str) -> bytes:
    client = poplib.POP3_SSL("127.0.0.1", int(tenant.env["POP_PORT"]), context=tenant.tls, timeout=10)
    try:
        client._shortcmd("AUTH XOAUTH2 " + base64.b64encode(sasl(mailbox, token)).decode())  # type: ignore[attr-defined]
        assert client.stat()[0] == 1
        return b"\r\n".join(client.retr(1)[1])
    finally:
        client.quit()


def pop_refusal(tenant: Tenant, mailbox: str, token: str) -> bytes:
    client = poplib.POP3_SSL("127.0.0.1", int(tenant.env["POP_PORT"]), context=tenant.tls, timeout=10)
    try:
        with pytest.raises(poplib.error_proto) as refused:
            client._shortcmd("AUTH XOAUTH2 " + base64.b64encode(sasl(mailbox, token)).decode())  # type: ignore[attr-defined]
        reply: bytes = refused.value.args[0]
        return reply
    finally:
        client.close()


# -- the whole chain works -------------------------------------------------------------------------


def test_an_onboarded_app_reads_its_mailbox_over_imap_and_pop(tenant: Tenant, exchange_token: str) -> None:
    assert f"To: {SUPPORT}".encode() in imap_read_welcome(tenant, SUPPORT, exchange_token)
    assert f"To: {SUPPORT}".encode() in pop_read_welcome(tenant, SUPPORT, exchange_token)


def test_an_app_granted_several_mailboxes_reads_each(tenant: Tenant, exchange_token: str) -> None:
    for mailbox in (SUPPORT, SALES):
        assert f"To: {mailbox}".encode() in imap_read_welcome(tenant, mailbox, exchange_token)
        assert f"To: {mailbox}".encode() in pop_read_welcome(tenant, mailbox, exchange_token)


# -- each broken link fails as a client sees it ----------------------------------------------------


def test_a_token_for_graph_is_refused(
    tenant: Tenant, full_app: MailApp, reasons: pytest.LogCaptureFixture
) -> None:
    graph_token = full_app.token(tenant.env["GRAPH_ENDPOINT"])

    assert imap_refusal(tenant, SUPPORT, graph_token) == IMAP_REFUSAL
    assert pop_refusal(tenant, SUPPORT, graph_token) == POP_REFUSAL
    assert "audience" in refusal_reasons(reasons)


def test_an_expired_token_is_refused(
    tenant: Tenant, exchange_token: str, reasons: pytest.LogCaptureFixture
) -> None:
    tenant.clock.offset = timedelta(hours=3)
    try:
        assert imap_refusal(tenant, SUPPORT, exchange_token) == IMAP_REFUSAL
        assert pop_refusal(tenant, SUPPORT, exchange_token) == POP_REFUSAL
    finally:
        tenant.clock.offset = timedelta()
    assert "expired" in refusal_reasons(reasons)
    # The same token works again once it is current: nothing else was broken.
    assert b"Welcome" in imap_read_welcome(tenant, SUPPORT, exchange_token)


def test_a_token_not_signed_by_the_tenant_is_refused(
    tenant: Tenant, exchange_token: str, reasons: pytest.LogCaptureFixture
) -> None:
    # Same header and claims as a good token, signed with another key.
    forged = jwt.encode(
        jwt.decode(exchange_token, options={"verify_signature": False}),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers=jwt.get_unverified_header(exchange_token),
    )

    assert imap_refusal(tenant, SUPPORT, forged) == IMAP_REFUSAL
    assert pop_refusal(tenant, SUPPORT, forged) == POP_REFUSAL
    assert "token rejected" in refusal_reasons(reasons)


def test_each_protocol_needs_its_own_app_role(tenant: Tenant, reasons: pytest.LogCaptureFixture) -> None:
    exchange = tenant.env["EXCHANGE_ENDPOINT"]
    pop_only = onboard(tenant, roles=(POP_ROLE,)).token(exchange)
    imap_only = onboard(tenant, roles=(IMAP_ROLE,)).token(exchange)

    assert imap_refusal(tenant, SUPPORT, pop_only) == IMAP_REFUSAL
    assert b"Welcome" in pop_read_welcome(tenant, SUPPORT, pop_only)
    assert pop_refusal(tenant, SUPPORT, imap_only) == POP_REFUSAL
    assert b"Welcome" in imap_read_welcome(tenant, SUPPORT, imap_only)
    logged = refusal_reasons(reasons)
    assert f"lacks the {IMAP_ROLE} role" in logged and f"lacks the {POP_ROLE} role" in logged


def test_an_app_without_an_exchange_service_principal_is_refused(
    tenant: Tenant, reasons: pytest.LogCaptureFixture
) -> None:
    token = onboard(tenant, exchange_service_principal=False, mailboxes=()).token(
        tenant.env["EXCHANGE_ENDPOINT"]
    )

    assert imap_refusal(tenant, SUPPORT, token) == IMAP_REFUSAL
    assert pop_refusal(tenant, SUPPORT, token) == POP_REFUSAL
    assert "New-ServicePrincipal" in refusal_reasons(reasons)


def test_full_access_on_another_mailbox_only_is_refused(
    tenant: Tenant, exchange_token: str, reasons: pytest.LogCaptureFixture
) -> None:
    # full_app has FullAccess on support and sales, not billing: logged in, but no mailbox.
    assert imap_mailbox_refusal(tenant, BILLING, exchange_token)[0] == "NO"
    assert pop_mailbox_refusal(tenant, BILLING, exchange_token).startswith(b"-ERR")
    assert "no FullAccess" in refusal_reasons(reasons)


def test_a_permission_still_propagating_is_refused_until_it_has(
    tenant: Tenant, reasons: pytest.LogCaptureFixture
) -> None:
    tenant.sandbox.faults.mailbox_permission_delay_s = 3600
    try:
        token = onboard(tenant).token(tenant.env["EXCHANGE_ENDPOINT"])
        assert imap_mailbox_refusal(tenant, SUPPORT, token)[0] == "NO"
        assert pop_mailbox_refusal(tenant, SUPPORT, token).startswith(b"-ERR")
    finally:
        tenant.sandbox.faults.mailbox_permission_delay_s = 0
    assert "not propagated" in refusal_reasons(reasons)
    assert b"Welcome" in imap_read_welcome(tenant, SUPPORT, token)


def test_a_protocol_disabled_on_the_mailbox_is_refused(
    tenant: Tenant, exchange_token: str, reasons: pytest.LogCaptureFixture
) -> None:
    tenant.sandbox.set_protocols(SALES, imap=False)
    try:
        assert imap_refusal(tenant, SALES, exchange_token) == IMAP_REFUSAL
        assert b"Welcome" in pop_read_welcome(tenant, SALES, exchange_token)
    finally:
        tenant.sandbox.set_protocols(SALES, imap=True)
    tenant.sandbox.set_protocols(SALES, pop=False)
    try:
        assert pop_refusal(tenant, SALES, exchange_token) == POP_REFUSAL
        assert b"Welcome" in imap_read_welcome(tenant, SALES, exchange_token)
    finally:
        tenant.sandbox.set_protocols(SALES, pop=True)
    assert "IMAP is disabled" in refusal_reasons(reasons) and "POP is disabled" in refusal_reasons(reasons)


def test_an_unknown_mailbox_is_refused(
    tenant: Tenant, exchange_token: str, reasons: pytest.LogCaptureFixture
) -> None:
    assert imap_refusal(tenant, "nobody@sandbox.example", exchange_token) == IMAP_REFUSAL
    assert pop_refusal(tenant, "nobody@sandbox.example", exchange_token) == POP_REFUSAL
    assert "no such mailbox" in refusal_reasons(reasons)


def test_removing_full_access_takes_effect_on_the_next_login(
    tenant: Tenant, reasons: pytest.LogCaptureFixture
) -> None:
    app = onboard(tenant)
    token = app.token(tenant.env["EXCHANGE_ENDPOINT"])
    assert b"Welcome" in imap_read_welcome(tenant, SUPPORT, token)

    tenant.invoke("Remove-MailboxPermission", Identity=SUPPORT, User=app.sp_id, AccessRights=["FullAccess"])

    assert imap_mailbox_refusal(tenant, SUPPORT, token)[0] == "NO"
    assert pop_mailbox_refusal(tenant, SUPPORT, token).startswith(b"-ERR")
    assert "no FullAccess" in refusal_reasons(reasons)
