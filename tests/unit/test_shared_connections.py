"""The worker's shared HTTP clients (onboarding.adapters._tls): reused by activities on one loop,
apart per trust store, closed with their loop, and carrying nothing between activities."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from azure.core.exceptions import ServiceRequestError

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


async def _serve(handler: Any) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def _azure_get(url: str) -> tuple[int, str]:
    """One request as an azure-core client sends it: through the shared transport, with a token."""
    from azure.core.rest import HttpRequest

    transport = azure_transport_options()["transport"]
    await transport.open()
    try:
        response = await transport.send(
            HttpRequest("GET", url, headers={"Authorization": "Bearer the-token"})
        )
        await response.read()
        return response.status_code, response.text()
    finally:
        await transport.close()


async def test_a_netrc_entry_neither_breaks_an_azure_request_nor_replaces_its_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A developer's .netrc with a default entry (or one naming the vault) made aiohttp's trust_env
    refuse every Key Vault and identity request: "Cannot combine AUTHORIZATION header with AUTH
    argument"."""
    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password their-password\n")
    monkeypatch.setenv("NETRC", str(netrc))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=request.headers.get("Authorization", "none"))

    runner, port = await _serve(echo)
    try:
        assert await _azure_get(f"http://127.0.0.1:{port}/secrets/x") == (200, "Bearer the-token")
    finally:
        await runner.cleanup()


async def test_the_proxy_the_environment_names_is_used_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append(str(request.url))  # a proxy is asked for the absolute URL
        return web.Response(text="via proxy")

    runner, port = await _serve(proxy)
    try:
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        assert await _azure_get("http://vault.example/secrets/x") == (200, "via proxy")
        assert seen == ["http://vault.example/secrets/x"]

        monkeypatch.setenv("NO_PROXY", "vault.example")
        with pytest.raises(ServiceRequestError):  # direct, so the made-up host is not found
            await _azure_get("http://vault.example/secrets/y")
        assert len(seen) == 1
    finally:
        await runner.cleanup()


def test_the_admins_sign_in_sends_entra_no_login_from_netrc(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """requests (MSAL's HTTP client) adds the login .netrc names to any request without its own: the
    token redemption would carry a developer's default login to Entra beside the client secret."""
    import http.server
    import threading

    from onboarding.signin import msal_session

    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password their-password\n")
    monkeypatch.setenv("NETRC", str(netrc))
    heard: list[str | None] = []

    class Token(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            heard.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Token)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    session = msal_session()
    try:
        url = f"http://127.0.0.1:{server.server_port}/tenant/oauth2/v2.0/token"
        assert session.post(url, data={"grant_type": "authorization_code"}).status_code == 200
    finally:
        session.close()
        server.shutdown()
        server.server_close()
    assert heard == [None]
