"""Tokens from the sandbox's Entra ID and managed identity endpoint, and real XOAUTH2 logins to Dovecot."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import trustme

from onboarding.adapters.exchange import ExchangeAdmin
from onboarding.adapters.identity import TokenInfo, acquire_token, app_secret_credential
from onboarding.adapters.mailprobe import probe_login
from onboarding.domain import Protocol
from onboarding.errors import InvalidRequestError, TransientError
from onboarding.settings import Settings
from sandbox import Sandbox

SUPPORT, SALES = "support@sandbox.example", "sales@sandbox.example"


async def app_token(settings: Settings, app_id: str, secret: str) -> TokenInfo:
    credential = app_secret_credential(settings, settings.tenant_id, app_id, secret)
    try:
        return await acquire_token(credential, settings.exchange_scope)
    finally:
        await credential.close()


async def test_the_function_apps_own_token(settings: Settings, credential: Any) -> None:
    token = await acquire_token(credential, settings.graph_scope)
    assert token.audience == settings.graph_endpoint
    assert "Application.ReadWrite.OwnedBy" in token.roles
    assert token.app_id == settings.managed_identity_client_id
    assert token.token not in repr(token)


async def test_an_apps_token_for_exchange_carries_its_roles(sb: Sandbox, settings: Settings) -> None:
    app_id, sp_id, secret = sb.create_client_app("Mail client", roles=("IMAP.AccessAsApp",))
    token = await app_token(settings, app_id, secret)
    assert (token.audience, token.roles, token.app_id, token.object_id) == (
        settings.exchange_endpoint,
        ("IMAP.AccessAsApp",),
        app_id,
        sp_id,
    )


async def test_a_wrong_secret_is_explained_without_echoing_it(sb: Sandbox, settings: Settings) -> None:
    app_id, _, secret = sb.create_client_app("Mail client", roles=("IMAP.AccessAsApp",))
    key_id = next(a for a in sb.state.applications() if a.app_id == app_id).passwords[0].key_id
    with pytest.raises(InvalidRequestError) as caught:
        await app_token(settings, app_id, key_id)  # the secret's id pasted instead of its value
    assert "AADSTS7000215" in str(caught.value) and "secret id" in str(caught.value)
    assert key_id not in str(caught.value) and secret not in str(caught.value)


async def test_an_unknown_app_is_replication_or_a_wrong_id(sb: Sandbox, settings: Settings) -> None:
    with pytest.raises(TransientError) as caught:
        await app_token(settings, "8d3d1f0c-0000-4000-8000-000000000000", "whatever")
    assert caught.value.code == "replication"


async def test_login_succeeds_only_with_service_principal_and_full_access(
    sb: Sandbox, settings: Settings, credential: Any
) -> None:
    app_id, sp_id, secret = sb.create_client_app("Mail client", roles=("IMAP.AccessAsApp", "POP.AccessAsApp"))
    token = await app_token(settings, app_id, secret)
    imap = (settings.imap_host, settings.imap_port, Protocol.IMAP)
    pop = (settings.pop_host, settings.pop_port, Protocol.POP)

    refused = await probe_login(*imap, SUPPORT, token.token)
    assert not refused.ok and "NO AUTHENTICATE failed" in refused.detail and "FullAccess" in refused.detail

    exchange = ExchangeAdmin(settings, credential)
    await exchange.ensure_service_principal(app_id, sp_id, "Mail client")
    await exchange.grant_full_access(SUPPORT, sp_id)
    await exchange.close()
    for host, port, protocol in (imap, pop):
        result = await probe_login(host, port, protocol, SUPPORT, token.token, timeout=10)
        assert result.ok, result.detail
    # FullAccess is per mailbox. On the other one the login itself completes, as Exchange's does, and
    # only opening the mailbox fails: the probe must not call that verified.
    for host, port, protocol, command in ((*imap, "EXAMINE INBOX"), (*pop, "STAT")):
        result = await probe_login(host, port, protocol, SALES, token.token, timeout=10)
        assert not result.ok
        assert f"succeeded but {command} was refused" in result.detail and "FullAccess" in result.detail
        assert token.token not in result.detail


async def test_unreachable_and_untrusted_servers_are_told_apart(
    sb: Sandbox, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    down = await probe_login("127.0.0.1", closed, Protocol.IMAP, SUPPORT, "t", timeout=5)
    assert not down.ok and "unreachable" in down.detail

    other_ca = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))
    untrusted = await probe_login(
        settings.imap_host, settings.imap_port, Protocol.IMAP, SUPPORT, "t", timeout=5
    )
    assert not untrusted.ok and "TLS error" in untrusted.detail and "not trusted" in untrusted.detail
