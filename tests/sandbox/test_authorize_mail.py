"""Exchange Online's decision on an IMAP/POP XOAUTH2 login, link by link (``TenantState.authorize_mail``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest

from sandbox import Sandbox, SandboxConfig

MAILBOX = "support@sandbox.example"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox_config(tmp_path: Path, clock: Clock) -> SandboxConfig:
    return SandboxConfig(base_dir=tmp_path / "sb", clock=clock, start_mail=False)


def app_token(sb: Sandbox, app_id: str, secret: str, resource: str) -> str:
    response = httpx.post(
        f"{sb.env['ENTRA_AUTHORITY_HOST']}/{sb.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": app_id,
            "client_secret": secret,
            "scope": f"{resource}/.default",
        },
        verify=sb.client_ssl_context(),
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def test_each_link_of_the_chain_is_required(sandbox: Sandbox, clock: Clock) -> None:
    state = sandbox.state
    app_id, sp_id, secret = sandbox.create_client_app("reader", roles=["IMAP.AccessAsApp"])
    token = app_token(sandbox, app_id, secret, sandbox.env["EXCHANGE_ENDPOINT"])
    assert "not registered in Exchange" in state.authorize_mail(MAILBOX, token, "imap")
    esp = state.add_exchange_sp(app_id, sp_id, "reader")
    assert "no FullAccess" in state.authorize_mail(MAILBOX, token, "imap")
    sandbox.faults.set_mailbox_permission_delay(600)
    state.add_mailbox_permission(state.find_mailbox(MAILBOX), esp, auto_mapping=False)
    assert "not propagated" in state.authorize_mail(MAILBOX, token, "imap")
    clock.now += timedelta(seconds=601)
    assert state.authorize_mail(MAILBOX, token, "imap") is None
    assert state.authorize_mail(MAILBOX.upper(), token, "imap") is None  # addresses are case-insensitive
    assert "lacks the POP.AccessAsApp role" in state.authorize_mail(MAILBOX, token, "pop")
    assert "no FullAccess" in state.authorize_mail("sales@sandbox.example", token, "imap")
    assert state.authorize_mail("nobody@sandbox.example", token, "imap") == "no such mailbox"
    sandbox.set_protocols(MAILBOX, imap=False)
    assert state.authorize_mail(MAILBOX, token, "imap") == "IMAP is disabled on this mailbox"


def test_token_audience_signature_and_expiry_are_checked(sandbox: Sandbox, clock: Clock) -> None:
    state = sandbox.state
    app_id, sp_id, secret = sandbox.create_client_app("reader", roles=["IMAP.AccessAsApp", "POP.AccessAsApp"])
    esp = state.add_exchange_sp(app_id, sp_id, "reader")
    state.add_mailbox_permission(state.find_mailbox(MAILBOX), esp, auto_mapping=False)
    token = app_token(sandbox, app_id, secret, sandbox.env["EXCHANGE_ENDPOINT"])
    assert state.authorize_mail(MAILBOX, token, "pop") is None
    graph_token = app_token(sandbox, app_id, secret, sandbox.env["GRAPH_ENDPOINT"])
    assert state.authorize_mail(MAILBOX, graph_token, "imap") == "token audience is not Exchange Online"
    forged = jwt.encode(jwt.decode(token, options={"verify_signature": False}), "k" * 32, algorithm="HS256")
    assert state.authorize_mail(MAILBOX, forged, "imap").startswith("token rejected")
    assert state.authorize_mail(MAILBOX, "not a token", "imap").startswith("token rejected")
    clock.now += timedelta(hours=2)
    assert state.authorize_mail(MAILBOX, token, "imap") == "token rejected: token expired"


def test_the_exchange_registration_must_be_the_tokens_service_principal(sandbox: Sandbox) -> None:
    """Registering the app object id (a common mistake) leaves the token's oid unknown to Exchange."""
    state = sandbox.state
    app_id, _, secret = sandbox.create_client_app("reader", roles=["IMAP.AccessAsApp"])
    app_object_id = next(a.id for a in state.applications() if a.app_id == app_id)
    esp = state.add_exchange_sp(app_id, app_object_id, "reader")
    state.add_mailbox_permission(state.find_mailbox(MAILBOX), esp, auto_mapping=False)
    token = app_token(sandbox, app_id, secret, sandbox.env["EXCHANGE_ENDPOINT"])
    assert "not registered in Exchange" in state.authorize_mail(MAILBOX, token, "imap")
    assert state.authorize_mail(MAILBOX, token, "smtp") == "unknown protocol 'smtp'"


def test_a_grant_is_not_in_tokens_until_replicated(sandbox: Sandbox, clock: Clock) -> None:
    state = sandbox.state
    app_id, sp_id, secret = sandbox.create_client_app("reader")
    sandbox.faults.set_replication(app_role_assignment_s=30)
    state.add_assignment(
        sp_id, state.exchange_sp, state.role_by_value(state.exchange_sp, "IMAP.AccessAsApp").id
    )
    early = jwt.decode(
        app_token(sandbox, app_id, secret, sandbox.env["EXCHANGE_ENDPOINT"]),
        options={"verify_signature": False},
    )
    assert "roles" not in early
    clock.now += timedelta(seconds=31)
    later = jwt.decode(
        app_token(sandbox, app_id, secret, sandbox.env["EXCHANGE_ENDPOINT"]),
        options={"verify_signature": False},
    )
    assert later["roles"] == ["IMAP.AccessAsApp"]
