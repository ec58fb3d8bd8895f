"""Completion callbacks to a URL the requester chose, without letting that URL reach inside our network.

The requester controls the URL, so it is checked like any server-side request forgery target: https
only, and every address the name resolves to must be public. The address is resolved again when
sending and the connection goes to the checked address itself (TLS still verifies the name), so a
DNS answer that changes between the check and the send (rebinding) cannot redirect the request.
Redirects are not followed: a 3xx could point anywhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit, urlunsplit

from onboarding import netcheck
from onboarding.adapters._retry import parse_retry_after
from onboarding.errors import InvalidRequestError, TransientError

IPAddress = netcheck.IPAddress


def _parse(url: str, allow_private: bool) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise InvalidRequestError("The callback URL is not a valid URL.", code="callback_url") from None
    host = parts.hostname or ""
    if not host:
        raise InvalidRequestError("The callback URL has no host.", code="callback_url")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequestError("The callback URL must not carry credentials.", code="callback_url")
    if parts.scheme == "https":
        return parts
    if parts.scheme == "http" and allow_private and netcheck.is_loopback_host(host):
        return parts
    raise InvalidRequestError(
        "The callback URL must use https.",
        fix="Give an https URL for the completion callback.",
        code="callback_url",
    )


def _resolve(parts: SplitResult) -> list[IPAddress]:
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


def _check_addresses(addresses: list[IPAddress], allow_private: bool) -> None:
    if not addresses:
        raise InvalidRequestError("The callback host has no address.", code="callback_url")
    # The sandbox switch admits loopback only: every other private range stays refused.
    if not all(netcheck.allowed(ip, allow_loopback=allow_private) for ip in addresses):
        raise InvalidRequestError(
            "The callback URL points to a private, loopback, link-local, site-local or reserved address.",
            fix="Use a publicly reachable https URL.",
            code="callback_url",
        )


def check_callback_url(url: str, *, allow_private: bool) -> None:
    """Raise ``InvalidRequestError`` unless ``url`` is an acceptable callback target (resolves the host)."""
    parts = _parse(url, allow_private)
    try:
        addresses = _resolve(parts)
    except (OSError, UnicodeError):
        raise InvalidRequestError(
            "The callback URL's host name does not resolve.",
            fix="Check the callback URL.",
            code="callback_url",
        ) from None
    _check_addresses(addresses, allow_private)


def _pinned(parts: SplitResult, ip: IPAddress) -> str:
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


async def post_callback(
    url: str, body: bytes, headers: Mapping[str, str], *, allow_private: bool, timeout: float = 10
) -> int:
    """POST ``body`` once; returns the HTTP status. Throttling, 5xx and network failures raise
    ``TransientError`` (the orchestration retries); a redirect raises ``InvalidRequestError``."""
    import httpx

    parts = _parse(url, allow_private)
    try:
        addresses = await asyncio.to_thread(_resolve, parts)
    except (OSError, UnicodeError):
        raise TransientError(
            "The callback URL's host name did not resolve.", code="callback_network"
        ) from None
    _check_addresses(addresses, allow_private)
    host = parts.hostname or ""
    request_headers = {k: v for k, v in headers.items() if k.lower() != "host"}
    request_headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
    # No proxies from the environment (they would bypass the pinned address); the trust store is the
    # system's, which honours SSL_CERT_FILE.
    async with httpx.AsyncClient(
        follow_redirects=False, timeout=timeout, trust_env=False, verify=ssl.create_default_context()
    ) as client:
        response = None
        for ip in addresses:
            try:
                response = await client.post(
                    _pinned(parts, ip),
                    content=body,
                    headers=request_headers,
                    extensions={"sni_hostname": host} if parts.scheme == "https" else {},
                )
                break
            except httpx.ConnectError:
                continue  # nothing was sent: the next checked address may answer
            except (httpx.TimeoutException, httpx.TransportError):
                raise TransientError(
                    "The callback receiver did not answer (connection dropped or timed out).",
                    code="callback_network",
                ) from None
        if response is None:
            raise TransientError("The callback receiver could not be reached.", code="callback_network")
    status = response.status_code
    if status == 429 or status >= 500:
        raise TransientError(
            f"The callback receiver answered HTTP {status}.",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            code="callback_unavailable",
        )
    if 300 <= status < 400:
        raise InvalidRequestError(
            f"The callback receiver answered with a redirect (HTTP {status}), which is not followed.",
            fix="Give the final URL of the receiver.",
            code="callback_redirect",
        )
    return status
