"""Parsing and validating an onboarding request from untrusted HTTP input.

Pure functions: no Azure Functions imports, no I/O. The HTTP trigger hands over the raw body and
headers and gets back either an ``OnboardingRequest`` or a ``RequestRejected`` carrying the HTTP
status and *every* problem found, so a requester fixes everything in one round trip.

Rules worth knowing:
- The body is strict JSON: duplicate keys, NaN/Infinity, a byte-order mark, invalid UTF-8 and absurd
  nesting are rejected (parsers disagree about them, which is how request smuggling starts).
- Text fields refuse control, format (bidi overrides, zero-width), private-use, surrogate and
  unassigned code points, so a display name cannot spoof what an admin reads in the consent email.
  A display name that mixes scripts or folds to a Microsoft product name is refused too
  (``onboarding.lookalike``).
- Email addresses are ASCII dot-atom addresses (what Exchange accepts for primary SMTP addresses),
  compared and stored lower-case.
- ``tenantId`` must name this deployment's tenant. A request whose only problem is another tenant is
  answered 422 (well-formed, but not something this deployment serves); any other problem makes it 400.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from onboarding import netcheck
from onboarding.domain import (
    DEFAULT_SECRET_LIFETIME_DAYS,
    ConsentMode,
    CredentialType,
    OnboardingRequest,
    Protocol,
)
from onboarding.lookalike import display_name_problem

MAX_BODY_BYTES = 1024 * 1024
MAX_MAILBOXES = 10_000
MAX_ADMIN_EMAILS = 20
MAX_DISPLAY_NAME = 120
MAX_EXTERNAL_REFERENCE = 200
MAX_IDEMPOTENCY_KEY = 100
MAX_CALLBACK_URL = 2048
SECRET_LIFETIME_DAYS = (1, 730)
MAX_REPORTED_ERRORS = 100  # 10,000 bad mailboxes must not make a 10,000-entry error document
_MAX_DEPTH = 32

# camelCase wire name -> snake_case field of OnboardingRequest
FIELDS: dict[str, str] = {
    "tenantId": "tenant_id",
    "displayName": "display_name",
    "protocols": "protocols",
    "mailboxes": "mailboxes",
    "adminEmails": "admin_emails",
    "consentMode": "consent_mode",
    "secretLifetimeDays": "secret_lifetime_days",
    "callbackUrl": "callback_url",
    "externalReference": "external_reference",
    "idempotencyKey": "idempotency_key",
    "mailProductPrincipalId": "mail_product_principal_id",
    "credentialType": "credential_type",
}
REQUIRED = ("tenantId", "displayName", "protocols", "mailboxes", "adminEmails")

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]+")
# RFC 5322 dot-atom local part (ASCII atext) and an LDH domain with at least two labels.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TLD = re.compile(r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})")
# Unicode categories never allowed in text: control, format, surrogate, private use, unassigned,
# line and paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


@dataclass(frozen=True)
class FieldError:
    field: str  # a JSON pointer into the body ("/mailboxes/3"), or a header name ("Content-Type")
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class RequestRejected(Exception):
    """The request cannot be accepted. ``errors`` lists every problem; nothing was created."""

    def __init__(self, status: HTTPStatus, title: str, errors: list[FieldError] | tuple[FieldError, ...]):
        super().__init__(title)
        self.status = status
        self.title = title
        self.errors = tuple(errors)

    @property
    def detail(self) -> str:
        if not self.errors:
            return self.title
        shown = "; ".join(f"{e.field}: {e.message}" for e in self.errors[:3])
        more = len(self.errors) - 3
        return shown + (f"; and {more} more" if more > 0 else "")


# -- the HTTP envelope ---------------------------------------------------------------------------


def check_content_type(value: str | None) -> None:
    """Only ``application/json`` (optionally ``; charset=utf-8``) is accepted: 415 otherwise."""
    if value is not None:
        media_type, _, params = value.partition(";")
        if media_type.strip().lower() == "application/json" and "," not in value:
            charset = None
            for param in params.split(";"):
                name, _, param_value = param.partition("=")
                if name.strip().lower() == "charset":
                    charset = param_value.strip().strip('"').lower()
                elif param.strip():
                    charset = "unexpected"  # no other parameters are defined for JSON
            if charset in (None, "utf-8", "utf8"):
                return
    raise RequestRejected(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "Unsupported media type",
        [FieldError("Content-Type", "must be application/json (UTF-8)")],
    )


def check_body_size(body: bytes, content_length: str | None = None) -> None:
    declared = None
    if content_length is not None and content_length.strip().isdigit():
        declared = int(content_length.strip())
    if len(body) > MAX_BODY_BYTES or (declared is not None and declared > MAX_BODY_BYTES):
        raise RequestRejected(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "Request body too large",
            [FieldError("body", f"must be at most {MAX_BODY_BYTES} bytes")],
        )


def decode_json(body: bytes) -> Any:
    """Strict JSON: UTF-8 without BOM, no duplicate keys, no NaN/Infinity, bounded nesting."""

    def reject(message: str) -> RequestRejected:
        return RequestRejected(HTTPStatus.BAD_REQUEST, "Malformed JSON", [FieldError("body", message)])

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise reject("is not valid UTF-8") from None
    if text.startswith("\ufeff"):
        raise reject("must not start with a byte-order mark")
    if _nesting_depth(text) > _MAX_DEPTH:
        raise reject(f"nests deeper than {_MAX_DEPTH} levels")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                raise ValueError(f"duplicate key {_clip(key)!r}")
            result[key] = value
        return result

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise reject(f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # duplicate keys, NaN, integers with 4,300+ digits
        raise reject(f"is not acceptable JSON ({_clip(str(exc), 120)})") from None


def _nesting_depth(text: str) -> int:
    """Upper bound of the nesting depth, counting brackets outside strings (cheap, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


# -- the request document ------------------------------------------------------------------------


class _Errors:
    def __init__(self) -> None:
        self.items: list[FieldError] = []
        self.total = 0

    def add(self, pointer: str, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_REPORTED_ERRORS:
            self.items.append(FieldError(pointer, message))

    def final(self) -> list[FieldError]:
        hidden = self.total - len(self.items)
        if hidden:
            return [*self.items, FieldError("", f"{hidden} more problems not listed")]
        return list(self.items)


def parse_request(
    data: Any,
    *,
    tenant_id: str,
    allow_private_callbacks: bool = False,
    allow_grant_mode: bool = True,
    allow_mail_product_principal: bool = True,
) -> OnboardingRequest:
    """Validate a decoded JSON body against this deployment; raise ``RequestRejected`` with every problem.

    A well-formed request this deployment does not serve (another tenant; ``grant`` mode while
    ``ENABLE_GRANT_MODE`` is off; a mail product principal while ``KEY_VAULT_RESOURCE_ID`` is not set)
    is 422 when that is its only problem."""
    errors = _Errors()
    if not isinstance(data, dict):
        raise RequestRejected(
            HTTPStatus.BAD_REQUEST,
            "Invalid onboarding request",
            [FieldError("", f"must be a JSON object, not {_json_type(data)}")],
        )
    for key in data:
        if key not in FIELDS:
            errors.add(_pointer(key), "unknown field")
    for key in REQUIRED:
        if key not in data or data[key] is None:
            errors.add(_pointer(key), "is required")

    tenant = _tenant(data.get("tenantId"), errors)
    wrong_tenant = False
    if tenant is not None and tenant != tenant_id.lower():
        wrong_tenant = True
    display_name = _display_name(data.get("displayName"), errors)
    protocols = _protocols(data.get("protocols"), errors)
    mailboxes = _addresses(data.get("mailboxes"), "/mailboxes", errors, MAX_MAILBOXES)
    admin_emails = _addresses(data.get("adminEmails"), "/adminEmails", errors, MAX_ADMIN_EMAILS)
    consent_mode = _consent_mode(data.get("consentMode"), errors)
    lifetime = _lifetime(data.get("secretLifetimeDays"), errors)
    credential_type = credential_type_of(data.get("credentialType"), "/credentialType", errors)
    callback = _callback_url(data.get("callbackUrl"), errors, allow_private=allow_private_callbacks)
    reference = _text(data.get("externalReference"), "/externalReference", errors, MAX_EXTERNAL_REFERENCE)
    key = _idempotency_key(data.get("idempotencyKey"), errors)
    reader = _principal_id(data.get("mailProductPrincipalId"), errors)

    not_served = []
    if wrong_tenant:
        not_served.append(FieldError("/tenantId", "is not the tenant this deployment serves"))
    if consent_mode is ConsentMode.GRANT and not allow_grant_mode:
        not_served.append(
            FieldError("/consentMode", 'grant mode is not enabled in this deployment; use "consent"')
        )
    if reader is not None and not allow_mail_product_principal:
        not_served.append(
            FieldError(
                "/mailProductPrincipalId",
                "this deployment cannot give a principal access to the secret (KEY_VAULT_RESOURCE_ID is not "
                "set); leave the field out and have a vault administrator assign the role",
            )
        )
    if errors.total or not_served:
        found = not_served + errors.final()
        if errors.total:
            raise RequestRejected(HTTPStatus.BAD_REQUEST, "Invalid onboarding request", found)
        title = (
            "Tenant not served here"
            if wrong_tenant
            else "Grant mode is not enabled"
            if not_served[0].field == "/consentMode"
            else "Secret access is not enabled"
        )
        raise RequestRejected(HTTPStatus.UNPROCESSABLE_ENTITY, title, found)

    assert tenant is not None and display_name is not None
    return OnboardingRequest(
        tenant_id=tenant,
        display_name=display_name,
        protocols=tuple(protocols),
        mailboxes=tuple(mailboxes),
        admin_emails=tuple(admin_emails),
        consent_mode=consent_mode,
        secret_lifetime_days=lifetime,
        callback_url=callback,
        external_reference=reference,
        idempotency_key=key,
        mail_product_principal_id=reader,
        credential_type=credential_type,
    )


def request_to_wire(request: OnboardingRequest) -> dict[str, Any]:
    """The camelCase JSON form of a request (the inverse of ``parse_request``)."""
    plain = request.to_json()
    wire = {name: plain[attr] for name, attr in FIELDS.items()}
    return {k: v for k, v in wire.items() if v is not None}


def _tenant(value: Any, errors: _Errors) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _GUID.fullmatch(value):
        errors.add(
            "/tenantId", "must be a directory (tenant) id: a GUID like 00000000-0000-0000-0000-000000000000"
        )
        return None
    return value.lower()


def _text(value: Any, pointer: str, errors: _Errors, limit: int, *, required: bool = False) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors.add(pointer, f"must be a string, not {_json_type(value)}")
        return None
    text = unicodedata.normalize("NFC", value)
    problem = text_problem(text, limit)
    if problem:
        errors.add(pointer, problem)
        return None
    return text


def _display_name(value: Any, errors: _Errors) -> str | None:
    """A one-line label that cannot pass for Microsoft's (onboarding.lookalike): the admin reads it in
    an email from the tenant's own mailbox and in Entra's consent prompt."""
    text = _text(value, "/displayName", errors, MAX_DISPLAY_NAME, required=True)
    problem = display_name_problem(text) if text is not None else None
    if problem:
        errors.add("/displayName", problem)
        return None
    return text


def text_problem(text: str, limit: int) -> str | None:
    """Why ``text`` is not acceptable as a one-line label, or None."""
    if not text.strip():
        return "must not be empty"
    if len(text) > limit:
        return f"must be at most {limit} characters"
    if text != text.strip():
        return "must not start or end with whitespace"
    for char in text:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return f"must not contain control or invisible characters (found U+{ord(char):04X})"
    return None


def _protocols(value: Any, errors: _Errors) -> list[Protocol]:
    if value is None:
        return []
    allowed = [p.value for p in Protocol]
    if not isinstance(value, list) or not value:
        errors.add("/protocols", f"must be a non-empty array of {allowed}")
        return []
    found: list[Protocol] = []
    for index, item in enumerate(value):
        pointer = f"/protocols/{index}"
        if item not in allowed:  # exact match: "imap" or "IMAP " is not a protocol
            errors.add(pointer, f"must be one of {allowed}")
        elif Protocol(item) in found:
            errors.add(pointer, f"duplicate protocol {item}")
        else:
            found.append(Protocol(item))
    return found


def email_problem(address: str) -> str | None:
    """Why ``address`` is not an acceptable mailbox address, or None."""
    if not address.isascii():
        return "must be an ASCII email address"
    if len(address) > 254:
        return "must be at most 254 characters"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return "must be an email address like name@example.com"
    if len(local) > 64 or not _LOCAL.fullmatch(local):
        return "has an invalid local part (before @)"
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return "has an invalid domain (after @)"
    if not _TLD.fullmatch(labels[-1]):
        return "has an invalid top-level domain"
    return None


def _addresses(value: Any, pointer: str, errors: _Errors, limit: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(pointer, f"must be an array of email addresses, not {_json_type(value)}")
        return []
    if not 1 <= len(value) <= limit:
        errors.add(pointer, f"must list between 1 and {limit} addresses")
        if len(value) > limit:
            return []
    seen: dict[str, int] = {}
    result: list[str] = []
    for index, item in enumerate(value):
        item_pointer = f"{pointer}/{index}"
        if not isinstance(item, str):
            errors.add(item_pointer, f"must be a string, not {_json_type(item)}")
            continue
        problem = email_problem(item)
        if problem:
            errors.add(item_pointer, problem)
            continue
        normal = item.lower()
        if normal in seen:
            errors.add(
                item_pointer, f"duplicate of {pointer}/{seen[normal]} (addresses are case-insensitive)"
            )
            continue
        seen[normal] = index
        result.append(normal)
    return result


def parse_mailbox_change(data: Any) -> tuple[str, tuple[str, ...]]:
    """The body of POST .../mailboxes, ``{"add": [...]}`` or ``{"remove": [...]}``: which, and the
    addresses, checked as the onboarding request's ``mailboxes`` are (lower-cased); or
    ``RequestRejected`` naming every bad one."""
    errors = _Errors()
    if not isinstance(data, dict):
        errors.add("", f"must be a JSON object, not {_json_type(data)}")
        raise RequestRejected(HTTPStatus.BAD_REQUEST, "Invalid mailbox change", errors.final())
    for name in sorted(set(data) - {"add", "remove"}):
        errors.add(f"/{name}", "unknown field; this call takes add or remove")
    given = [name for name in ("add", "remove") if name in data]
    if len(given) != 1:
        errors.add("", "give exactly one of add or remove (an array of mailbox addresses)")
    change = given[0] if given else "add"
    addresses = _addresses(data.get(change), f"/{change}", errors, MAX_MAILBOXES)
    if errors.total:
        raise RequestRejected(HTTPStatus.BAD_REQUEST, "Invalid mailbox change", errors.final())
    return change, tuple(addresses)


def parse_rotation(data: Any) -> CredentialType | None:
    """The optional body of POST .../rotate, ``{"credentialType": "certificate"}``: the type the new
    credential is to be (switching an onboarding from a secret to a certificate, or back), or None to
    keep the current one; or ``RequestRejected`` naming what is wrong."""
    errors = _Errors()
    if data is None:
        return None
    if not isinstance(data, dict):
        errors.add("", f"must be a JSON object, not {_json_type(data)}")
        raise RequestRejected(HTTPStatus.BAD_REQUEST, "Invalid rotation", errors.final())
    for name in sorted(set(data) - {"credentialType"}):
        errors.add(f"/{name}", "unknown field; this call takes only credentialType")
    wanted = data.get("credentialType")
    credential_type = credential_type_of(wanted, "/credentialType", errors)
    if errors.total:
        raise RequestRejected(HTTPStatus.BAD_REQUEST, "Invalid rotation", errors.final())
    return credential_type if wanted is not None else None


def _consent_mode(value: Any, errors: _Errors) -> ConsentMode:
    if value is None:
        return ConsentMode.CONSENT
    allowed = [m.value for m in ConsentMode]
    if value not in allowed:
        errors.add("/consentMode", f"must be one of {allowed}")
        return ConsentMode.CONSENT
    return ConsentMode(value)


def credential_type_of(value: Any, pointer: str, errors: _Errors) -> CredentialType:
    """``secret`` (the default) or ``certificate``; anything else is named as the problem."""
    if value is None:
        return CredentialType.SECRET
    allowed = [t.value for t in CredentialType]
    if value not in allowed:
        errors.add(pointer, f"must be one of {allowed}")
        return CredentialType.SECRET
    return CredentialType(value)


def _lifetime(value: Any, errors: _Errors) -> int:
    if value is None:
        return DEFAULT_SECRET_LIFETIME_DAYS
    low, high = SECRET_LIFETIME_DAYS
    # JSON Schema's "integer" admits 180.0; a boolean is never a number here.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.add("/secretLifetimeDays", f"must be a whole number of days from {low} to {high}")
        return DEFAULT_SECRET_LIFETIME_DAYS
    return value


def callback_url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot receive the completion callback (syntax only), or None."""
    if len(url) > MAX_CALLBACK_URL:
        return f"must be at most {MAX_CALLBACK_URL} characters"
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        return "must be an ASCII URL without spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute https URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@)"
    if parts.fragment or "#" in url:
        return "must not have a fragment"
    if port == 0:
        return "has an invalid port"
    loopback = netcheck.is_loopback_host(host)
    if parts.scheme == "http" and not (allow_private and loopback):
        return "must use https"
    # Addresses written in the URL (in any notation) are checked here; names are resolved and checked
    # when the callback is sent (onboarding.adapters.webhook pins the checked address), keeping DNS
    # out of this request. The private-network switch admits loopback and nothing else.
    ip = netcheck.host_address(host)
    if loopback and not allow_private:
        return "must not point to a loopback address"
    if ip is not None and not netcheck.allowed(ip, allow_loopback=allow_private):
        return (
            "must not point to a private, loopback, link-local, site-local or reserved address "
            "(also when written as an IPv6 transition form or a numeric IPv4 host)"
        )
    return None


def _callback_url(value: Any, errors: _Errors, *, allow_private: bool) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors.add("/callbackUrl", f"must be a string, not {_json_type(value)}")
        return None
    problem = callback_url_problem(value, allow_private=allow_private)
    if problem:
        errors.add("/callbackUrl", problem)
        return None
    return value


def _idempotency_key(value: Any, errors: _Errors) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY
        or not _IDEMPOTENCY_KEY.fullmatch(value)
    ):
        errors.add(
            "/idempotencyKey",
            f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters of letters, digits and . _ : -",
        )
        return None
    return value


def _principal_id(value: Any, errors: _Errors) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _GUID.fullmatch(value):
        errors.add(
            "/mailProductPrincipalId",
            "must be the object id of the mail product's service principal or managed identity: a GUID like "
            "00000000-0000-0000-0000-000000000000 (Enterprise applications, Object ID; not the client id)",
        )
        return None
    return value.lower()


def _pointer(key: str) -> str:
    """A JSON pointer to a top-level member, escaped (RFC 6901) and clipped for display."""
    return "/" + _clip(key).replace("~", "~0").replace("/", "~1")


def _clip(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return "an unknown value"
