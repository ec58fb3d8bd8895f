"""Who may decide: tenant admins signed in with Microsoft Entra ID (OpenID Connect code flow + PKCE).

MSAL (``ConfidentialClientApplication``) runs the flow: it makes ``state``, ``nonce`` and the PKCE
verifier, checks ``state`` and the nonce, and redeems the code. Since MSAL 1.38 it no longer
validates the ID token itself (AzureAD/microsoft-authentication-library-for-python#911), so
``approver_from_claims`` checks what the application must: issuer, audience, tenant, expiry. The
token comes straight from the token endpoint over TLS, which OpenID Connect Core 3.1.3.7 (6) accepts
in place of checking its signature.

An approver must be a user of this deployment's tenant (``tid``) holding a directory role that
could grant the consent itself (``wids``; the sign-in app needs ``groupMembershipClaims``
``DirectoryRole`` or ``All`` for Entra to send it), optionally also a member of
``APPROVER_GROUP_ID`` (``groups``), and not the requester.

Between the pages, the browser holds one cookie, encrypted and authenticated (Fernet) with a key
derived from ``LINK_SIGNING_KEY``: first the pending flow (PKCE verifier, nonce, state, where to go
back), then the signed-in approver for ``SESSION_MINUTES``. It never holds an Entra token.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import http.cookiejar
import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from onboarding.links import derive_key
from onboarding.settings import Settings

# Microsoft Entra built-in roles that can grant tenant-wide admin consent to an app's application
# permissions on a resource other than Microsoft Graph (Office 365 Exchange Online here). Template
# ids from Microsoft Learn, "Microsoft Entra built-in roles" (permissions-reference, All roles).
APPROVER_ROLES: Mapping[str, str] = {
    "62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
    "e8611ab8-c189-46e8-94e1-60213ab1f814": "Privileged Role Administrator",
    "158c047a-c907-4556-b7ef-446551a6b5f7": "Cloud Application Administrator",
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3": "Application Administrator",
}
SESSION_MINUTES = 30
FLOW_MINUTES = 15
CLOCK_SKEW = timedelta(minutes=5)
COOKIE = "onboarding-approver"
SECURE_COOKIE = "__Host-onboarding-approver"  # https deployments: Secure, host-only, Path=/
# Pages a sign-in may return to: the decision pages only (no open redirect).
_RETURN_PATH = re.compile(
    r"/api/(approvals/[A-Za-z0-9_.-]{1,1024}|consent/callback)(\?[A-Za-z0-9_.~%&=+-]*)?"
)


class SigninError(Exception):
    """Sign-in did not produce an approver. ``reason`` is a sentence for the page; never a token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Approver:
    object_id: str
    tenant_id: str
    name: str
    username: str
    roles: tuple[str, ...]  # the approver-role template ids the token carried
    groups: tuple[str, ...] | None  # None: the token had no groups claim (or an overage marker)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.username})" if self.username and self.name else self.username or self.name

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Approver:
        groups = data.get("groups")
        return cls(
            object_id=str(data["object_id"]),
            tenant_id=str(data["tenant_id"]),
            name=str(data.get("name", "")),
            username=str(data.get("username", "")),
            roles=tuple(str(r) for r in data.get("roles", ())),
            groups=None if groups is None else tuple(str(g) for g in groups),
        )


def is_configured(settings: Settings) -> bool:
    return bool(settings.signin_client_id and settings.signin_client_secret)


def redirect_uri(settings: Settings) -> str:
    """Registered as the sign-in app's web redirect URI."""
    return f"{settings.public_base_url}/api/signin/callback"


def expected_issuer(settings: Settings) -> str:
    """The v2.0 issuer of this tenant (the ``issuer`` of its OpenID configuration)."""
    return f"{settings.authority_host}/{settings.tenant_id}/v2.0"


def safe_return_path(path: str) -> str | None:
    return path if _RETURN_PATH.fullmatch(path or "") else None


# -- the OpenID Connect flow (MSAL) ----------------------------------------------------------------


# One MSAL application per worker process and sign-in app. Built per sign-in, each fetched the
# tenant's OpenID configuration again (twice per approval: once to start, once to redeem the code, a
# round trip to Entra each on the admin's critical path) and built a new HTTP session and TLS context.
# Shared, MSAL keeps the discovery documents (its http_cache, 24 h; it never holds tokens) and its
# connection. Nothing of one admin reaches another's sign-in: the application's token cache keeps no
# token (the sign-in reads the claims from the token response itself) and its HTTP session keeps no
# cookie; each flow's state, nonce and PKCE verifier travel in the admin's own sealed cookie.
def _msal_app(settings: Settings) -> Any:
    return _shared_msal_app(
        settings.signin_client_id,
        settings.signin_client_secret,
        f"{settings.authority_host}/{settings.tenant_id}",
        not settings.disable_instance_discovery,
    )


# One in a deployment; a few in a test run that starts several sandbox tenants.
@functools.lru_cache(maxsize=8)
def _shared_msal_app(
    client_id: str | None, secret: str | None, authority: str, instance_discovery: bool
) -> Any:
    import msal  # imported on use: cold start stays cheap for the requester's API

    class KeepNoToken(msal.TokenCache):
        def add(self, event: Any, now: Any = None) -> None:
            """Keep nothing: no admin's token outlives the request that redeemed it."""

    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=secret,
        authority=authority,
        instance_discovery=instance_discovery,
        token_cache=KeepNoToken(),
        http_client=msal_session(),
        http_cache={},
    )


def msal_session() -> Any:
    """MSAL's own session, as it builds one (verify and proxies from the environment, one retry),
    with no cookie jar: Entra's token endpoint sets cookies that would otherwise go with the next
    admin's code. And with no login from .netrc: requests adds the one .netrc names for the host (or
    its default entry) as Basic credentials to any request without its own, which would send a
    developer's login to Entra beside the app's client secret."""
    import requests

    class RequestAsBuilt(requests.auth.AuthBase):
        def __call__(self, request: Any) -> Any:
            return request

    session = requests.Session()
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.auth = RequestAsBuilt()  # a session's own auth is what keeps requests from .netrc's
    adapter = requests.adapters.HTTPAdapter(max_retries=1)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def start(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The authorize URL to send the browser to, and the flow to keep until it comes back."""
    with warnings.catch_warnings():
        # MSAL suggests response_mode=form_post. Entra's form post back is a cross-site POST, which
        # carries no SameSite=Lax cookie, so the flow (PKCE verifier) could not be found; the code
        # comes back in the query instead, useless without the verifier and the client secret.
        warnings.filterwarnings("ignore", message="response_mode='form_post'")
        flow = _msal_app(settings).initiate_auth_code_flow(
            scopes=[], redirect_uri=redirect_uri(settings), prompt="select_account"
        )
    auth_uri = flow.pop("auth_uri")  # not needed to finish; keeps the cookie small
    return str(auth_uri), dict(flow)


def finish(settings: Settings, flow: dict[str, Any], response: Mapping[str, str], now: datetime) -> Approver:
    """Redeem the code (PKCE, state and nonce checked by MSAL) and validate the ID token's claims."""
    if response.get("error"):
        raise SigninError("Microsoft Entra ID did not sign you in. Nothing was changed; try again.")
    try:
        result = _msal_app(settings).acquire_token_by_auth_code_flow(flow, dict(response))
    except ValueError:  # state mismatch, or a flow that was already used
        raise SigninError(
            "This sign-in does not match the one this browser started. Sign in again."
        ) from None
    if "error" in result or "id_token_claims" not in result:
        raise SigninError("Microsoft Entra ID did not confirm the sign-in. Nothing was changed; try again.")
    return approver_from_claims(result["id_token_claims"], settings, now)


def approver_from_claims(claims: Mapping[str, Any], settings: Settings, now: datetime) -> Approver:
    """The approver an ID token names, after the checks MSAL leaves to the application."""
    if claims.get("iss") != expected_issuer(settings):
        raise SigninError("The sign-in came from another issuer than this organisation's Entra ID.")
    audience = claims.get("aud")
    if audience != settings.signin_client_id and not (
        isinstance(audience, list) and settings.signin_client_id in audience
    ):
        raise SigninError("The sign-in was meant for another application.")
    if str(claims.get("tid", "")).lower() != settings.tenant_id.lower():
        raise SigninError("You signed in with an account of another organisation.")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or not isinstance(iat, int):
        raise SigninError("The sign-in could not be read.")
    stamp = now.timestamp()
    if exp < stamp - CLOCK_SKEW.total_seconds() or iat > stamp + CLOCK_SKEW.total_seconds():
        raise SigninError("The sign-in has expired. Sign in again.")
    oid = claims.get("oid")
    if not isinstance(oid, str) or not oid:
        raise SigninError("The sign-in named no user.")
    raw_wids = claims.get("wids")
    wids = raw_wids if isinstance(raw_wids, list) else []
    groups = claims.get("groups")
    return Approver(
        object_id=oid,
        tenant_id=str(claims["tid"]).lower(),
        name=str(claims.get("name", "")),
        username=str(claims.get("preferred_username", "")),
        roles=tuple(sorted({str(w) for w in wids} & set(APPROVER_ROLES))),
        groups=tuple(str(g) for g in groups) if isinstance(groups, list) else None,
    )


def refusal(approver: Approver, settings: Settings, *, requested_by: str | None) -> str | None:
    """Why this signed-in user may not decide, or None when they may."""
    if approver.tenant_id != settings.tenant_id.lower():
        return "Only a user of this organisation's directory can decide."
    if not approver.roles:
        names = ", ".join(APPROVER_ROLES.values())
        return f"Only a tenant admin who could grant the consent can decide: one of {names}."
    if settings.approver_group_id:
        if approver.groups is None:
            return "Your group memberships could not be read from the sign-in, so the approver group cannot be checked."
        if settings.approver_group_id.lower() not in {g.lower() for g in approver.groups}:
            return "Only members of this organisation's approver group can decide."
    if requested_by and requested_by.lower() == approver.object_id.lower():
        return "You asked for this access yourself; another admin must decide."
    return None


# -- the cookie ------------------------------------------------------------------------------------


class CookieBox:
    """Encrypts and authenticates the cookie's content (Fernet from ``cryptography``) with its age."""

    def __init__(self, link_signing_key: bytes, *, previous: Iterable[bytes] = ()) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        keys = (link_signing_key, *previous)
        # MultiFernet seals with the first key and opens with any: a sign-in begun just before a
        # rotation of the link-signing key still completes.
        self._fernet = MultiFernet(
            [Fernet(base64.urlsafe_b64encode(derive_key(k, "approver-cookie"))) for k in keys]
        )
        self._form_keys = tuple(derive_key(k, "approver-form") for k in keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> CookieBox:
        current, *previous = settings.link_verification_keys
        return cls(current, previous=previous)

    def seal(self, content: dict[str, Any], now: datetime) -> str:
        data = json.dumps(content, separators=(",", ":")).encode()
        return self._fernet.encrypt_at_time(data, int(now.timestamp())).decode()

    def open(self, value: str | None, *, kind: str, minutes: int, now: datetime) -> dict[str, Any] | None:
        """The content of a cookie of ``kind`` no older than ``minutes``, or None."""
        from cryptography.fernet import InvalidToken

        if not value or len(value) > 4096:
            return None
        try:
            data = self._fernet.decrypt_at_time(value.encode(), minutes * 60, int(now.timestamp()))
            content = json.loads(data)
        except (InvalidToken, ValueError):
            return None
        return content if isinstance(content, dict) and content.get("kind") == kind else None

    def form_token(self, approver: Approver, onboarding_id: str, nonce: str, digest: str) -> str:
        """Binds a page's form to the signed-in approver, the wait and the mailbox list it showed."""
        return self._form_token(self._form_keys[0], approver, onboarding_id, nonce, digest)

    def form_token_matches(
        self, token: str, approver: Approver, onboarding_id: str, nonce: str, digest: str
    ) -> bool:
        return any(
            hmac.compare_digest(token, self._form_token(key, approver, onboarding_id, nonce, digest))
            for key in self._form_keys
        )

    @staticmethod
    def _form_token(key: bytes, approver: Approver, onboarding_id: str, nonce: str, digest: str) -> str:
        message = "\n".join((approver.object_id, onboarding_id, nonce, digest)).encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()


def cookie_name(settings: Settings) -> str:
    return SECURE_COOKIE if settings.public_base_url.startswith("https://") else COOKIE


def set_cookie(settings: Settings, value: str, max_age: int) -> str:
    """A ``Set-Cookie`` value: HttpOnly, SameSite=Lax (Entra's redirect back is a top-level GET)."""
    secure = "; Secure" if settings.public_base_url.startswith("https://") else ""
    return f"{cookie_name(settings)}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"


def read_cookie(settings: Settings, header: str | None) -> str | None:
    wanted = cookie_name(settings)
    for part in (header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == wanted:
            return value
    return None


def mailbox_digest(mailboxes: Iterable[str]) -> str:
    """SHA-256 over the exact mailbox list (order and all): what a decision binds."""
    digest = hashlib.sha256()
    for mailbox in mailboxes:
        digest.update(mailbox.encode())
        digest.update(b"\n")
    return digest.hexdigest()
