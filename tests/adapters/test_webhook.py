"""Completion callbacks: only to public https receivers, pinned to the address that was checked."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from onboarding.adapters import webhook
from onboarding.adapters.webhook import check_callback_url, post_callback
from onboarding.errors import InvalidRequestError, TransientError

PRIVATE_NETWORKS = [
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "0.0.0.0/8",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]


@st.composite
def private_ipv4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    network = draw(st.sampled_from(PRIVATE_NETWORKS))
    offset = draw(st.integers(0, network.num_addresses - 1))
    return ipaddress.IPv4Address(int(network.network_address) + offset)


@given(ip=private_ipv4(), mapped=st.booleans())
def test_private_loopback_link_local_and_reserved_targets_are_refused(
    ip: ipaddress.IPv4Address, mapped: bool
) -> None:
    host = f"[::ffff:{ip}]" if mapped else str(ip)
    with pytest.raises(InvalidRequestError):
        check_callback_url(f"https://{host}/hook", allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://203.0.113.7/hook",  # plain http to a public host
        "ftp://8.8.8.8/hook",
        "https://user:pw@8.8.8.8/hook",  # credentials in the URL
        "https:///nohost",
        "https://[::1]/hook",
        "https://[fe80::1]/hook",
        "https://8.8.8.8:99999/hook",
    ],
)
def test_malformed_or_unsafe_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequestError):
        check_callback_url(url, allow_private=False)


def test_public_https_and_sandbox_loopback_are_accepted() -> None:
    check_callback_url("https://8.8.8.8/hook", allow_private=False)
    check_callback_url("https://[2606:4700:4700::1111]:8443/hook", allow_private=False)
    check_callback_url("http://127.0.0.1:7071/hook", allow_private=True)
    with pytest.raises(InvalidRequestError):
        check_callback_url("http://10.1.2.3/hook", allow_private=True)  # http only on loopback


# ------------------------------------------------------------------ sending
Handler = Callable[[web.Request], Any]


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    return ca


@pytest.fixture
async def receiver(tls: trustme.CA) -> AsyncIterator[tuple[int, list[web.Request], dict[str, Handler]]]:
    """An HTTPS receiver on 127.0.0.1 whose certificate names callback.test and 127.0.0.1."""
    seen: list[web.Request] = []
    route: dict[str, Handler] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        seen.append(request)
        custom = route.get(request.path)
        return await custom(request) if custom else web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.issue_cert("callback.test", "127.0.0.1").configure_cert(context)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port, seen, route
    await runner.cleanup()


def resolve_as(monkeypatch: pytest.MonkeyPatch, answers: list[str]) -> list[str]:
    """Make every lookup of callback.test answer the next address in ``answers`` (rebinding)."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "callback.test":
            return real(host, port, *args, **kwargs)
        ip = answers[min(len(asked), len(answers) - 1)]
        asked.append(ip)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]

    monkeypatch.setattr(webhook.socket, "getaddrinfo", fake)
    return asked


async def test_posts_to_the_checked_address_with_the_name_verified_by_tls(
    receiver: tuple[int, list[web.Request], dict[str, Handler]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, seen, _ = receiver
    resolve_as(monkeypatch, ["127.0.0.1"])
    status = await post_callback(
        f"https://callback.test:{port}/done?x=1",
        b'{"ok":true}',
        {"Content-Type": "application/json", "X-Onboarding-Signature": "t=1,v1=abc", "Host": "evil.test"},
        allow_private=True,
    )
    assert status == 204
    (request,) = seen
    assert request.host == f"callback.test:{port}"
    assert request.path_qs == "/done?x=1"
    assert request.headers["X-Onboarding-Signature"] == "t=1,v1=abc"


async def test_dns_rebinding_to_a_private_address_is_caught_at_send_time(
    receiver: tuple[int, list[web.Request], dict[str, Handler]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, seen, _ = receiver
    asked = resolve_as(monkeypatch, ["8.8.8.8", "127.0.0.1"])
    check_callback_url(f"https://callback.test:{port}/done", allow_private=False)  # public at submission
    with pytest.raises(InvalidRequestError):
        await post_callback(f"https://callback.test:{port}/done", b"{}", {}, allow_private=False)
    assert asked == ["8.8.8.8", "127.0.0.1"]
    assert seen == []


async def test_redirects_are_not_followed(
    receiver: tuple[int, list[web.Request], dict[str, Handler]],
) -> None:
    port, seen, route = receiver

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "http://169.254.169.254/metadata"})

    route["/hook"] = redirect
    with pytest.raises(InvalidRequestError, match="redirect"):
        await post_callback(f"https://127.0.0.1:{port}/hook", b"{}", {}, allow_private=True)
    assert [r.path for r in seen] == ["/hook"]


async def test_unavailable_receivers_are_transient(
    receiver: tuple[int, list[web.Request], dict[str, Handler]],
) -> None:
    port, _, route = receiver

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "30"}, text="secret-looking body")

    route["/hook"] = busy
    with pytest.raises(TransientError) as caught:
        await post_callback(f"https://127.0.0.1:{port}/hook", b"{}", {}, allow_private=True)
    assert caught.value.retry_after == 30 and "secret-looking" not in str(caught.value)
    assert await post_callback(f"https://127.0.0.1:{port}/other", b"{}", {}, allow_private=True) == 204

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(TransientError):
        await post_callback(f"https://127.0.0.1:{closed_port}/hook", b"{}", {}, allow_private=True)


async def test_an_untrusted_certificate_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver: tuple[int, list[web.Request], dict[str, Handler]],
) -> None:
    port, seen, _ = receiver
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    with pytest.raises(TransientError):
        await post_callback(f"https://127.0.0.1:{port}/hook", b"{}", {}, allow_private=True)
    assert seen == []
