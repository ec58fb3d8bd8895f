"""The worker's shared HTTP clients (onboarding.adapters._tls): reused by activities on one loop,
apart per trust store, closed with their loop, and carrying nothing between activities."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from onboarding.adapters._tls import azure_transport_options, http_client


async def test_activities_on_one_loop_share_a_client_they_must_not_close() -> None:
    first, first_owned = http_client(timeout=30.0)
    second, second_owned = http_client(timeout=30.0)
    assert first is second
    assert not first_owned and not second_owned


async def test_differently_set_up_clients_are_kept_apart() -> None:
    plain, _ = http_client(timeout=30.0)
    graph, _ = http_client(timeout=30.0, use="graph")
    longer, _ = http_client(timeout=60.0)
    assert len({id(plain), id(graph), id(longer)}) == 3


async def test_a_new_trust_store_gets_a_new_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import trustme

    before, _ = http_client(timeout=30.0)
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    after, _ = http_client(timeout=30.0)
    assert after is not before


def test_outside_a_loop_the_caller_gets_its_own_client() -> None:
    client, owned = http_client(timeout=30.0)
    assert owned
    asyncio.run(client.aclose())


def test_a_loop_that_ends_closes_its_clients() -> None:
    async def take() -> httpx.AsyncClient:
        return http_client(timeout=30.0)[0]

    client = asyncio.run(take())
    assert client.is_closed


async def test_a_shared_client_keeps_no_cookie_a_service_sets() -> None:
    client, _ = http_client(timeout=30.0)
    response = httpx.Response(
        200,
        headers={"Set-Cookie": "session=tenant-a; Path=/"},
        request=httpx.Request("GET", "https://directory.example/v1.0/organization"),
    )
    client.cookies.extract_cookies(response)  # what httpx does with every response
    assert len(client.cookies.jar) == 0


async def test_azure_clients_share_the_loops_session_and_closing_one_leaves_it_open() -> None:
    first = azure_transport_options()["transport"]
    second = azure_transport_options()["transport"]
    assert first is not second  # each client closes its own transport
    await first.open()
    await second.open()
    assert first.session is second.session
    await first.close()
    assert not second.session.closed
    assert second.session.cookie_jar.__class__.__name__ == "DummyCookieJar"
