"""ExchangeAdmin against the sandbox's Exchange admin API: cmdlets, refusals, faults and throttling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from onboarding.adapters._retry import RetryPolicy
from onboarding.adapters.exchange import ExchangeAdmin
from onboarding.errors import InvalidRequestError, NotFoundError, PermissionDeniedError, TransientError
from onboarding.settings import Settings
from sandbox import Sandbox
from tests.adapters.conftest import RecordingSleep

SUPPORT, SALES = "support@sandbox.example", "sales@sandbox.example"


@pytest.fixture
async def exchange(settings: Settings, credential: Any) -> AsyncIterator[ExchangeAdmin]:
    admin = ExchangeAdmin(settings, credential, sleep=RecordingSleep())
    yield admin
    await admin.close()


@pytest.fixture
def client_app(sb: Sandbox) -> tuple[str, str, str]:
    """(appId, service principal object id, secret) of a consented IMAP/POP app."""
    return sb.create_client_app("Mail client", roles=("IMAP.AccessAsApp", "POP.AccessAsApp"))


async def test_service_principal_and_full_access_lifecycle(
    sb: Sandbox, exchange: ExchangeAdmin, client_app: tuple[str, str, str]
) -> None:
    app_id, sp_id, _ = client_app
    for _ in range(2):  # a retried activity changes nothing
        await exchange.ensure_service_principal(app_id, sp_id, "Mail client")
        await exchange.grant_full_access(SUPPORT, sp_id)
    (registered,) = sb.state.exchange_service_principals()
    assert (registered.app_id, registered.object_id) == (app_id, sp_id)
    (permission,) = sb.state.mailbox_permissions()
    assert (permission.mailbox.lower(), permission.user, permission.auto_mapping) == (SUPPORT, sp_id, False)

    for _ in range(2):
        await exchange.remove_full_access(SUPPORT, sp_id)
    assert sb.state.mailbox_permissions() == []
    for _ in range(2):
        await exchange.remove_service_principal(app_id)
    assert sb.state.exchange_service_principals() == []


async def test_app_object_id_instead_of_service_principal_id_is_explained(
    sb: Sandbox, exchange: ExchangeAdmin, client_app: tuple[str, str, str]
) -> None:
    app_id, _, _ = client_app
    app_object_id = next(a.id for a in sb.state.applications() if a.app_id == app_id)
    with pytest.raises(InvalidRequestError) as caught:
        await exchange.ensure_service_principal(
            app_id, app_object_id, "Mail client", app_object_id=app_object_id
        )
    assert caught.value.code == "wrong_object_id"
    assert "Enterprise applications" in caught.value.fix
    # Without the app's object id to compare, Exchange's answer is ambiguous: retryable, fix included.
    with pytest.raises(TransientError) as ambiguous:
        await exchange.ensure_service_principal(app_id, app_object_id, "Mail client")
    assert "Enterprise applications" in ambiguous.value.fix
    assert sb.state.exchange_service_principals() == []


async def test_a_service_principal_still_replicating_is_retryable(
    sb: Sandbox, settings: Settings, credential: Any, exchange: ExchangeAdmin
) -> None:
    from onboarding.adapters.graph import GraphDirectory
    from onboarding.domain import EXCHANGE_ONLINE_APP_ID

    graph = GraphDirectory(settings, credential)
    resource = await graph.get_resource(EXCHANGE_ONLINE_APP_ID, ["IMAP.AccessAsApp"])
    app = await graph.upsert_application(
        unique_name="mail-onboarding-repl",
        display_name="Mail client",
        resource=resource,
        resource_app_id=EXCHANGE_ONLINE_APP_ID,
        role_values=["IMAP.AccessAsApp"],
        redirect_uris=[],
        notes="",
        tags=[],
    )
    sb.faults.set_replication(service_principal_s=3600)
    app_id, sp_id = app.app_id, await graph.ensure_service_principal(app.app_id)
    await graph.close()
    with pytest.raises(TransientError) as caught:
        await exchange.ensure_service_principal(app_id, sp_id, "Mail client")
    assert caught.value.code == "replication"
    sb.faults.set_replication(service_principal_s=0)
    await exchange.ensure_service_principal(app_id, sp_id, "Mail client")


async def test_a_stale_registration_under_the_wrong_object_id_is_replaced(
    sb: Sandbox, exchange: ExchangeAdmin, client_app: tuple[str, str, str]
) -> None:
    app_id, sp_id, _ = client_app
    app_object_id = next(a.id for a in sb.state.applications() if a.app_id == app_id)
    sb.state.add_exchange_sp(app_id, app_object_id, "registered by hand, wrongly")
    await exchange.ensure_service_principal(app_id, sp_id, "Mail client")
    (registered,) = sb.state.exchange_service_principals()
    assert registered.object_id == sp_id


async def test_mailboxes_unknown_or_with_protocols_disabled(
    sb: Sandbox, exchange: ExchangeAdmin, client_app: tuple[str, str, str]
) -> None:
    app_id, sp_id, _ = client_app
    await exchange.ensure_service_principal(app_id, sp_id, "Mail client")
    with pytest.raises(NotFoundError, match=r"nobody@sandbox\.example"):
        await exchange.grant_full_access("nobody@sandbox.example", sp_id)
    with pytest.raises(NotFoundError):
        await exchange.protocols_enabled("nobody@sandbox.example")
    sb.set_protocols(SALES, imap=False)
    assert await exchange.protocols_enabled(SALES) == {"IMAP": False, "POP": True}
    assert await exchange.protocols_enabled(SUPPORT) == {"IMAP": True, "POP": True}


@pytest.mark.parametrize("missing", ["Exchange.ManageAsApp", "Exchange Administrator"])
async def test_missing_exchange_permission_or_role_names_both(
    sb: Sandbox, settings: Settings, credential: Any, client_app: tuple[str, str, str], missing: str
) -> None:
    if missing == "Exchange.ManageAsApp":
        sb.set_identity_roles(exchange=[])
    else:
        sb.set_identity_roles(directory_roles=[])
    exchange = ExchangeAdmin(settings, credential, sleep=RecordingSleep())
    with pytest.raises(PermissionDeniedError) as caught:
        await exchange.ensure_service_principal(client_app[0], client_app[1], "Mail client")
    assert "Exchange.ManageAsApp" in caught.value.fix and "Exchange Administrator" in caught.value.fix
    await exchange.close()


@pytest.mark.parametrize("fault", [503, "drop", 429])
async def test_faults_are_retried(sb: Sandbox, settings: Settings, credential: Any, fault: int | str) -> None:
    sleep = RecordingSleep(on_sleep=sb.faults.exchange.reset)
    exchange = ExchangeAdmin(settings, credential, sleep=sleep)
    sb.faults.exchange.configure(error_rate=1.0, errors=(fault,), retry_after=0.3)
    assert await exchange.protocols_enabled(SUPPORT) == {"IMAP": True, "POP": True}
    assert len(sleep.waits) == 1
    if fault in (429, 503):
        assert sleep.waits[0] >= 0.3  # the server's Retry-After
    await exchange.close()


async def test_grants_track_the_servers_concurrency_limit(
    sb: Sandbox, settings: Settings, credential: Any, client_app: tuple[str, str, str]
) -> None:
    """Exchange allows this caller 2 requests at a time: 40 concurrent grants all land, and once the
    limiter has learned the limit (halving its concurrency, pacing its starts) most requests are
    accepted at the first try."""
    app_id, sp_id, _ = client_app
    mailboxes = [f"user{i:02d}@sandbox.example" for i in range(40)]
    for address in mailboxes:
        sb.add_mailbox(address)
    exchange = ExchangeAdmin(settings, credential, max_concurrency=10, policy=RetryPolicy(attempts=10))
    await exchange.ensure_service_principal(app_id, sp_id, "Mail client")
    sb.faults.exchange.configure(latency_ms=20)
    sb.faults.throttle_exchange(max_concurrency=2, retry_after=0.1)
    await asyncio.gather(*(exchange.grant_full_access(m, sp_id) for m in mailboxes))

    assert {p.mailbox.lower() for p in sb.state.mailbox_permissions()} == set(mailboxes)
    throttled = [e for e in sb.state.request_log() if e.service == "exchange" and e.status == 429]
    assert 0 < exchange.limiter.throttled == len(throttled)
    assert len(throttled) <= len(mailboxes) // 4  # a fixed concurrency of 10 would be refused ~4 times in 5
    assert exchange.limiter.limit < 10 or exchange.limiter.rate is not None
    await exchange.close()


async def test_a_registration_exchange_already_has_is_kept_whatever_property_names_its_object_id(
    sb: Sandbox, exchange: ExchangeAdmin, client_app: tuple[str, str, str]
) -> None:
    # Get-ServicePrincipal names the object id Identity/ServiceId, not ObjectId: a rerun must see its
    # own registration and leave it (and the mailbox permissions made for it) alone.
    app_id, sp_id, _ = client_app
    await exchange.ensure_service_principal(app_id, sp_id, "Mail client")
    (first,) = sb.state.exchange_service_principals()
    await exchange.grant_full_access(SUPPORT, sp_id)
    await exchange.ensure_service_principal(app_id, sp_id, "Mail client")
    (kept,) = sb.state.exchange_service_principals()
    assert kept.identity == first.identity  # not removed and registered anew
    assert len(sb.state.mailbox_permissions()) == 1


async def test_a_json_form_cmdlet_error_reads_as_its_message(sb: Sandbox, exchange: ExchangeAdmin) -> None:
    from onboarding.adapters.exchange import CmdletError

    with pytest.raises(CmdletError) as caught:
        await exchange.invoke("Get-ServicePrincipal", {"Identity": "no-such-app"})
    assert caught.value.not_found
    assert caught.value.text.startswith("The operation couldn't be performed because object 'no-such-app'")
    assert "TypeName" not in str(caught.value) and "{" not in caught.value.text
