"""Validation of onboarding requests: every bad value is reported, all at once, and nothing else escapes."""

from __future__ import annotations

import contextlib
import json
from http import HTTPStatus
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onboarding.domain import ConsentMode, Protocol
from onboarding.lookalike import display_name_problem
from onboarding.validation import (
    MAX_BODY_BYTES,
    RequestRejected,
    check_body_size,
    check_content_type,
    decode_json,
    parse_request,
    parse_rotation,
    request_to_wire,
)

TENANT = "11111111-2222-3333-4444-555555555555"


def valid(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenantId": TENANT,
        "displayName": "Invoice scanner",
        "protocols": ["IMAP"],
        "mailboxes": ["invoices@contoso.com"],
        "adminEmails": ["admin@contoso.com"],
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


def rejected(body: Any, *, allow_private: bool = False) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        parse_request(body, tenant_id=TENANT, allow_private_callbacks=allow_private)
    return info.value


def fields(error: RequestRejected) -> list[str]:
    return [e.field for e in error.errors]


def test_minimal_request_gets_defaults() -> None:
    request = parse_request(valid(), tenant_id=TENANT)
    assert request.consent_mode is ConsentMode.CONSENT
    assert request.secret_lifetime_days == 180
    assert request.protocols == (Protocol.IMAP,)
    assert request.callback_url is None and request.idempotency_key is None


def test_full_request_is_normalised() -> None:
    request = parse_request(
        valid(
            tenantId=TENANT.upper(),
            protocols=["POP", "IMAP"],
            mailboxes=["Invoices@Contoso.COM", "b@contoso.com"],
            adminEmails=["Admin@Contoso.com"],
            consentMode="grant",
            secretLifetimeDays=365,
            callbackUrl="https://hooks.contoso.com/onboarding?x=1",
            externalReference="CHG-1234",
            idempotencyKey="chg-1234:v1",
        ),
        tenant_id=TENANT,
    )
    assert request.tenant_id == TENANT
    assert request.mailboxes == ("invoices@contoso.com", "b@contoso.com")
    assert request.admin_emails == ("admin@contoso.com",)
    assert request.protocols == (Protocol.POP, Protocol.IMAP)
    assert request.consent_mode is ConsentMode.GRANT
    assert request.secret_lifetime_days == 365


def test_every_problem_is_reported_at_once() -> None:
    error = rejected(
        {
            "tenantId": "not-a-guid",
            "displayName": "",
            "protocols": ["SMTP"],
            "mailboxes": ["nope"],
            "adminEmails": [],
            "consentMode": "auto",
            "secretLifetimeDays": 0,
            "callbackUrl": "ftp://x",
            "externalReference": "x" * 201,
            "idempotencyKey": "has space",
            "extra": 1,
        }
    )
    assert error.status == HTTPStatus.BAD_REQUEST
    assert set(fields(error)) == {
        "/tenantId",
        "/displayName",
        "/protocols/0",
        "/mailboxes/0",
        "/adminEmails",
        "/consentMode",
        "/secretLifetimeDays",
        "/callbackUrl",
        "/externalReference",
        "/idempotencyKey",
        "/extra",
    }


def test_missing_required_fields_are_named() -> None:
    error = rejected({})
    assert fields(error) == ["/tenantId", "/displayName", "/protocols", "/mailboxes", "/adminEmails"]
    assert all(e.message == "is required" for e in error.errors)


@pytest.mark.parametrize("body", [[], "x", 1, None, True])
def test_body_must_be_an_object(body: Any) -> None:
    assert fields(rejected(body)) == [""]


def test_another_tenant_alone_is_422_naming_the_field() -> None:
    error = rejected(valid(tenantId="99999999-2222-3333-4444-555555555555"))
    assert error.status == HTTPStatus.UNPROCESSABLE_ENTITY
    assert fields(error) == ["/tenantId"]


def test_another_tenant_with_other_problems_is_400_listing_all() -> None:
    error = rejected(valid(tenantId="99999999-2222-3333-4444-555555555555", displayName=""))
    assert error.status == HTTPStatus.BAD_REQUEST
    assert fields(error) == ["/tenantId", "/displayName"]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        " padded",
        "x" * 121,
        "line\nbreak",
        "tab\there",
        "bell\x07",
        "del\x7f",
        "rtl\u202eexe.txt",  # right-to-left override: spoofs what the admin reads
        "zero\u200bwidth",
        "bom\ufeffinside",
        "private\ue000use",
        "line\u2028separator",
        "unassigned\U000e0080",
        123,
        ["a"],
    ],
)
def test_display_name_refuses_bad_values(name: Any) -> None:
    assert fields(rejected(valid(displayName=name))) == ["/displayName"]


@pytest.mark.parametrize("name", ["a", "x" * 120, "Scanner – Contoso", "Сканер", "請求書", "Ünïcödé ok"])
def test_display_name_accepts_ordinary_text(name: str) -> None:
    assert parse_request(valid(displayName=name), tenant_id=TENANT).display_name == name


def test_display_name_is_nfc_normalised_before_its_length_is_counted() -> None:
    decomposed = "e\u0301" * 120  # 240 code points, 120 once composed
    assert parse_request(valid(displayName=decomposed), tenant_id=TENANT).display_name == "\u00e9" * 120


@pytest.mark.parametrize(
    "protocols", [[], ["imap"], ["IMAP", "IMAP"], ["IMAP "], "IMAP", [None], ["SMTP"], {"IMAP": 1}]
)
def test_protocols_refuse_bad_values(protocols: Any) -> None:
    assert fields(rejected(valid(protocols=protocols)))[0].startswith("/protocols")


@pytest.mark.parametrize(
    "address",
    [
        "plain",
        "@contoso.com",
        "a@",
        "a@contoso",
        "a@@contoso.com",
        "a b@contoso.com",
        ".a@contoso.com",
        "a.@contoso.com",
        "a..b@contoso.com",
        "a@-contoso.com",
        "a@contoso-.com",
        "a@contoso..com",
        "a@contoso.c",
        "a@contoso.123",
        "a@[127.0.0.1]",
        '"quoted"@contoso.com',
        "ünï@contoso.com",
        "a@cöntoso.com",
        "a@contoso.com\n",
        "a\r\nbcc: x@contoso.com",
        "a@contoso.com,b@contoso.com",
        "x" * 65 + "@contoso.com",
        "a@" + "b" * 64 + ".com",
        "a@" + ".".join(["b" * 60] * 5) + ".com",
        5,
        None,
    ],
)
def test_mailbox_addresses_refuse_bad_syntax(address: Any) -> None:
    assert fields(rejected(valid(mailboxes=["ok@contoso.com", address]))) == ["/mailboxes/1"]


@pytest.mark.parametrize(
    "address",
    ["a@contoso.com", "first.last+tag@sub.contoso.co.uk", "o'brien@contoso.com", "x@xn--bcher-kva.example"],
)
def test_mailbox_addresses_accept_valid_syntax(address: str) -> None:
    assert parse_request(valid(mailboxes=[address]), tenant_id=TENANT).mailboxes == (address.lower(),)


def test_duplicate_mailboxes_are_found_case_insensitively() -> None:
    error = rejected(valid(mailboxes=["a@contoso.com", "b@contoso.com", "A@CONTOSO.com"]))
    assert fields(error) == ["/mailboxes/2"]
    assert "/mailboxes/0" in error.errors[0].message


def test_mailbox_count_limits() -> None:
    assert fields(rejected(valid(mailboxes=[]))) == ["/mailboxes"]
    assert fields(rejected(valid(mailboxes=[f"m{i}@contoso.com" for i in range(10_001)]))) == ["/mailboxes"]
    many = [f"m{i}@contoso.com" for i in range(10_000)]
    assert len(parse_request(valid(mailboxes=many), tenant_id=TENANT).mailboxes) == 10_000


def test_admin_email_limits() -> None:
    assert fields(rejected(valid(adminEmails=[f"a{i}@contoso.com" for i in range(21)]))) == ["/adminEmails"]
    assert fields(rejected(valid(adminEmails="admin@contoso.com"))) == ["/adminEmails"]
    assert fields(rejected(valid(adminEmails=["a@contoso.com", "A@contoso.com"]))) == ["/adminEmails/1"]


def test_many_bad_mailboxes_give_a_bounded_error_list() -> None:
    error = rejected(valid(mailboxes=[f"bad{i}" for i in range(5000)]))
    assert len(error.errors) == 101
    assert error.errors[-1].message == "4900 more problems not listed"


@pytest.mark.parametrize("days", [0, 731, -1, "180", True, 1.5, None])
def test_secret_lifetime_refuses_bad_values(days: Any) -> None:
    body = valid(secretLifetimeDays=days)
    if days is None:
        assert parse_request(body, tenant_id=TENANT).secret_lifetime_days == 180
    else:
        assert fields(rejected(body)) == ["/secretLifetimeDays"]


def test_secret_lifetime_accepts_its_bounds_and_integral_floats() -> None:
    for days in (1, 730, 90.0):
        assert parse_request(valid(secretLifetimeDays=days), tenant_id=TENANT).secret_lifetime_days == int(
            days
        )


@pytest.mark.parametrize("mode", ["Consent", "GRANT", "", 1, "auto"])
def test_consent_mode_refuses_bad_values(mode: Any) -> None:
    assert fields(rejected(valid(consentMode=mode))) == ["/consentMode"]


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.contoso.com/x",
        "ftp://hooks.contoso.com/x",
        "https://",
        "https:///path",
        "//hooks.contoso.com/x",
        "hooks.contoso.com/x",
        "https://user:pass@hooks.contoso.com/x",
        "https://user@hooks.contoso.com/x",
        "https://hooks.contoso.com/x#frag",
        "https://hooks.contoso.com/a b",
        "https://hooks.contoso.com/\r\nX-Injected: 1",
        "https://hooks.contoso.com:99999/x",
        "https://hooks.contoso.com:0/x",
        "https://hööks.contoso.com/x",
        "javascript:alert(1)",
        "http://127.0.0.1:8080/hook",  # loopback http only where private networks are allowed
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata endpoint
        "https://[::ffff:192.168.0.1]/hook",
        "https://[fd00::1]/hook",
        "https://224.0.0.1/hook",
        "https://0.0.0.0/hook",
        "https://" + "a" * 2048 + ".com",
        42,
    ],
)
def test_callback_url_refuses_bad_values(url: Any) -> None:
    assert fields(rejected(valid(callbackUrl=url))) == ["/callbackUrl"]


def test_callback_url_allows_loopback_http_only_when_private_networks_are_allowed() -> None:
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]:9/x"):
        request = parse_request(valid(callbackUrl=url), tenant_id=TENANT, allow_private_callbacks=True)
        assert request.callback_url == url
    assert fields(rejected(valid(callbackUrl="http://10.0.0.5/hook"), allow_private=True)) == ["/callbackUrl"]
    # The switch admits loopback only (issue 14): other private ranges stay refused over https too.
    assert fields(rejected(valid(callbackUrl="https://10.0.0.5/hook"), allow_private=True)) == [
        "/callbackUrl"
    ]
    assert parse_request(valid(callbackUrl="https://93.184.216.34/hook"), tenant_id=TENANT).callback_url


@pytest.mark.parametrize("key", ["", "a" * 101, "has space", "ünï", "a/b", "a\nb", 7])
def test_idempotency_key_refuses_bad_values(key: Any) -> None:
    assert fields(rejected(valid(idempotencyKey=key))) == ["/idempotencyKey"]


@pytest.mark.parametrize("reference", ["", "x" * 201, "a\x00b", "a\u202eb", 3])
def test_external_reference_refuses_bad_values(reference: Any) -> None:
    assert fields(rejected(valid(externalReference=reference))) == ["/externalReference"]


def test_unknown_fields_are_named_escaped_and_clipped() -> None:
    error = rejected(valid(**{"a/b~c": 1, "tenantId\u200b": 2, "y" * 500: 3}))
    named = fields(error)
    assert "/a~1b~0c" in named
    assert "/tenantId\u200b" in named
    assert max(len(f) for f in named) <= 65


# -- the HTTP envelope ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
    ],
)
def test_content_type_accepts_json(value: str) -> None:
    check_content_type(value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "text/plain",
        "application/jsonp",
        "application/json-patch+json",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        "application/json, text/html",
        "application/json; boundary=x",
        "multipart/form-data; boundary=application/json",
    ],
)
def test_content_type_refuses_everything_else_with_415(value: str | None) -> None:
    with pytest.raises(RequestRejected) as info:
        check_content_type(value)
    assert info.value.status == HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    assert fields(info.value) == ["Content-Type"]


def test_body_size_limit_is_413_whether_declared_or_actual() -> None:
    check_body_size(b"x" * MAX_BODY_BYTES, str(MAX_BODY_BYTES))
    for body, declared in ((b"x" * (MAX_BODY_BYTES + 1), None), (b"{}", str(MAX_BODY_BYTES + 1))):
        with pytest.raises(RequestRejected) as info:
            check_body_size(body, declared)
        assert info.value.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"{'a': 1}",
        b'{"a": 1, "a": 2}',  # duplicate keys: parsers disagree on which wins
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"\xef\xbb\xbf{}",  # BOM
        b'{"a": "\xff"}',  # invalid UTF-8
        b"[" * 10_000 + b"]" * 10_000,  # would blow the recursion limit
        b'{"a": ' + b"9" * 5000 + b"}",  # int too long to convert
        b"{} {}",
    ],
)
def test_malformed_json_is_400(raw: bytes) -> None:
    with pytest.raises(RequestRejected) as info:
        decode_json(raw)
    assert info.value.status == HTTPStatus.BAD_REQUEST
    assert fields(info.value) == ["body"]


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert decode_json(json.dumps({"displayName": "[" * 100}).encode()) == {"displayName": "[" * 100}


# -- properties -----------------------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_address = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.from_regex(r"[a-z0-9_+-]{1,10}(?:\.[a-z0-9_+-]{1,10}){0,2}", fullmatch=True),
    _label,
    st.from_regex(r"[a-z]{2,6}", fullmatch=True),
)
_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")), min_size=1, max_size=60
).filter(lambda s: s.strip() == s and s.strip() != "")
# Display names in one script (Latin and its extensions), as look-alike checks refuse mixed ones.
_display_name = st.text(
    st.characters(
        min_codepoint=0x20, max_codepoint=0x24F, blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn")
    ),
    min_size=1,
    max_size=60,
).filter(lambda s: s.strip() == s and s.strip() != "" and display_name_problem(s) is None)
_requests = st.fixed_dictionaries(
    {
        "tenantId": st.just(TENANT),
        "displayName": _display_name,
        "protocols": st.sampled_from([["IMAP"], ["POP"], ["IMAP", "POP"], ["POP", "IMAP"]]),
        "mailboxes": st.lists(_address, min_size=1, max_size=20, unique_by=str.lower),
        "adminEmails": st.lists(_address, min_size=1, max_size=5, unique_by=str.lower),
    },
    optional={
        "consentMode": st.sampled_from(["consent", "grant"]),
        "secretLifetimeDays": st.integers(1, 730),
        "credentialType": st.sampled_from(["secret", "certificate"]),
        "callbackUrl": st.builds(lambda h: f"https://{h}.example.com/cb", _label),
        "externalReference": _text,
        "idempotencyKey": st.from_regex(r"[A-Za-z0-9._:-]{1,100}", fullmatch=True),
    },
)


@given(_requests)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_valid_requests_round_trip(body: dict[str, Any]) -> None:
    import unicodedata

    request = parse_request(decode_json(json.dumps(body).encode()), tenant_id=TENANT)
    wire = request_to_wire(request)
    expected = {
        **body,
        "displayName": unicodedata.normalize("NFC", body["displayName"]),
        "mailboxes": [m.lower() for m in body["mailboxes"]],
        "adminEmails": [m.lower() for m in body["adminEmails"]],
    }
    if "externalReference" in body:
        expected["externalReference"] = unicodedata.normalize("NFC", body["externalReference"])
    expected.setdefault("consentMode", "consent")
    expected.setdefault("secretLifetimeDays", 180)
    expected.setdefault("credentialType", "secret")
    assert wire == expected
    assert parse_request(wire, tenant_id=TENANT) == request


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
_near_misses = _requests.flatmap(
    lambda body: st.dictionaries(
        st.sampled_from([*body.keys(), "consentMode", "secretLifetimeDays", "callbackUrl", "other"]),
        _json_values,
        max_size=3,
    ).map(lambda changes: {**body, **changes})
)


@given(st.one_of(_json_values, _near_misses))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_json_never_raises_anything_but_a_rejection(data: Any) -> None:
    try:
        parse_request(data, tenant_id=TENANT)
    except RequestRejected as error:
        assert error.status in (HTTPStatus.BAD_REQUEST, HTTPStatus.UNPROCESSABLE_ENTITY)
        assert error.errors
        json.dumps([e.to_json() for e in error.errors])  # always serialisable


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_never_raise_anything_but_a_rejection(raw: bytes) -> None:
    try:
        data = decode_json(raw)
    except RequestRejected as error:
        assert error.status == HTTPStatus.BAD_REQUEST
        return
    with contextlib.suppress(RequestRejected):
        parse_request(data, tenant_id=TENANT)


def test_the_mail_product_principal_is_an_object_id_named_in_the_error_when_it_is_not() -> None:
    principal = "5B1C6F0E-AAAA-4000-8000-000000000001"
    request = parse_request(valid(mailProductPrincipalId=principal), tenant_id=TENANT)
    assert request.mail_product_principal_id == principal.lower()
    assert request_to_wire(request)["mailProductPrincipalId"] == principal.lower()
    assert parse_request(valid(), tenant_id=TENANT).mail_product_principal_id is None
    for wrong in ("api://mail-product", "5b1c6f0e", 42, ""):
        error = rejected(valid(mailProductPrincipalId=wrong))
        assert error.status == HTTPStatus.BAD_REQUEST
        assert fields(error) == ["/mailProductPrincipalId"]
        assert "object id" in error.errors[0].message


def test_a_mail_product_principal_where_the_deployment_cannot_grant_it_is_422_naming_the_field() -> None:
    with pytest.raises(RequestRejected) as info:
        parse_request(
            valid(mailProductPrincipalId="5b1c6f0e-aaaa-4000-8000-000000000001"),
            tenant_id=TENANT,
            allow_mail_product_principal=False,
        )
    assert info.value.status == HTTPStatus.UNPROCESSABLE_ENTITY
    assert fields(info.value) == ["/mailProductPrincipalId"]
    assert "KEY_VAULT_RESOURCE_ID" in info.value.errors[0].message


@pytest.mark.parametrize("value", ["certificate", "secret"])
def test_the_credential_type_is_taken_as_asked(value: str) -> None:
    request = parse_request(valid(credentialType=value), tenant_id=TENANT)
    assert request.credential_type.value == value


def test_without_a_credential_type_the_onboarding_makes_a_client_secret() -> None:
    assert parse_request(valid(), tenant_id=TENANT).credential_type.value == "secret"


@pytest.mark.parametrize("value", ["cert", "Certificate", 1, "", ["certificate"]])
def test_an_unknown_credential_type_is_refused_naming_the_field(value: Any) -> None:
    error = rejected(valid(credentialType=value))
    assert error.status == HTTPStatus.BAD_REQUEST
    assert fields(error) == ["/credentialType"]
    assert "certificate" in error.errors[0].message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, None),
        ({}, None),
        ({"credentialType": "certificate"}, "certificate"),
        ({"credentialType": "secret"}, "secret"),
    ],
)
def test_a_rotation_body_names_the_type_to_switch_to_or_keeps_it(body: Any, expected: str | None) -> None:
    wanted = parse_rotation(body)
    assert (wanted.value if wanted else None) == expected


@pytest.mark.parametrize(
    ("body", "field"),
    [({"credentialType": "pfx"}, "/credentialType"), ({"type": "certificate"}, "/type"), ([], "")],
)
def test_a_bad_rotation_body_is_refused_naming_what_is_wrong(body: Any, field: str) -> None:
    with pytest.raises(RequestRejected) as caught:
        parse_rotation(body)
    assert caught.value.status == HTTPStatus.BAD_REQUEST
    assert [e.field for e in caught.value.errors] == [field]
