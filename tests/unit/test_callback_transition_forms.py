"""Issue 14, item 5: a callback never reaches a non-global address, whatever form it is written in.

Each form below passed before (at submission and, after DNS resolution, at send time)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from onboarding.adapters import webhook
from onboarding.adapters.webhook import check_callback_url
from onboarding.errors import InvalidRequestError
from onboarding.validation import RequestRejected, parse_request

TENANT = "11111111-2222-3333-4444-555555555555"

# Each names a loopback, private, link-local or metadata address through a form ``ipaddress``'s
# properties alone do not catch.
TRANSITION_FORMS = {
    "IPv4-compatible loopback": "::7f00:1",
    "IPv4-translated loopback (::ffff:0:0:0/96)": "::ffff:0:7f00:1",
    "NAT64 of the metadata address": "64:ff9b::a9fe:a9fe",
    "NAT64 local-use prefix": "64:ff9b:1::a00:1",
    "6to4 of the metadata address": "2002:a9fe:a9fe::",
    "6to4 of 10.0.0.1": "2002:a00:1::1",
    "Teredo": "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "site-local": "fec0::1",
    "IPv4-mapped private": "::ffff:10.0.0.1",
}
NUMERIC_IPV4_HOSTS = {
    "decimal loopback": "2130706433",
    "octal loopback": "0177.0.0.1",
    "hex loopback": "0x7f.0.0.1",
    "short hex loopback": "0x7f.1",
    "decimal metadata": "2852039166",
    "hex private": "0x0a000001",
}


def submit(url: str, *, allow_private: bool = False) -> Any:
    body = {
        "tenantId": TENANT,
        "displayName": "Invoice scanner",
        "protocols": ["IMAP"],
        "mailboxes": ["invoices@contoso.com"],
        "adminEmails": ["admin@contoso.com"],
        "callbackUrl": url,
    }
    return parse_request(body, tenant_id=TENANT, allow_private_callbacks=allow_private)


@pytest.mark.parametrize("address", TRANSITION_FORMS.values(), ids=TRANSITION_FORMS.keys())
def test_ipv6_transition_forms_are_refused_at_submission(address: str) -> None:
    with pytest.raises(RequestRejected) as info:
        submit(f"https://[{address}]/hook")
    assert [e.field for e in info.value.errors] == ["/callbackUrl"]


@pytest.mark.parametrize("host", NUMERIC_IPV4_HOSTS.values(), ids=NUMERIC_IPV4_HOSTS.keys())
def test_decimal_octal_and_hex_ipv4_hosts_are_refused_at_submission(host: str) -> None:
    with pytest.raises(RequestRejected):
        submit(f"https://{host}/hook")


def resolve_to(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(webhook.socket, "getaddrinfo", fake)


@pytest.mark.parametrize("address", TRANSITION_FORMS.values(), ids=TRANSITION_FORMS.keys())
def test_names_resolving_to_transition_forms_are_refused_at_send_time(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolve_to(monkeypatch, address)
    submit("https://hooks.example.com/done")  # a name passes submission: DNS is asked at send time
    with pytest.raises(InvalidRequestError):
        check_callback_url("https://hooks.example.com/done", allow_private=False)


@pytest.mark.parametrize("address", ["10.0.0.5", "192.168.1.1", "169.254.169.254", "fd00::1", "fec0::1"])
def test_private_network_switch_allows_loopback_only(address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(RequestRejected):
        submit(f"https://{host}/hook", allow_private=True)
    resolve_to(monkeypatch, address)
    with pytest.raises(InvalidRequestError):
        check_callback_url("https://hooks.example.com/done", allow_private=True)


@pytest.mark.parametrize("url", ["https://127.0.0.1:8443/hook", "http://localhost:7071/x", "https://[::1]/x"])
def test_private_network_switch_still_admits_loopback(url: str) -> None:
    assert submit(url, allow_private=True).callback_url == url


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"]
)
def test_global_addresses_and_transition_forms_of_global_ipv4_are_accepted(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = f"[{address}]" if ":" in address else address
    assert submit(f"https://{host}/hook").callback_url
    resolve_to(monkeypatch, address)
    check_callback_url("https://hooks.example.com/done", allow_private=False)
