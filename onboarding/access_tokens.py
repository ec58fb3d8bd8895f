"""Microsoft Entra access tokens for this app's own API: signature, issuer, audience, time, tenant, role.

What is checked, and why (Microsoft Learn, "Access tokens in the Microsoft identity platform",
section "Validate tokens"): the signature against the tenant's keys published at the ``jwks_uri`` of its
OpenID discovery document (RS256 only, so a token cannot choose ``none`` or an HMAC with the public key);
``iss`` equal to the tenant's issuer for the token version the API's app registration asks for
(``requestedAccessTokenVersion``: v1.0 ``{v1 issuer host}/{tid}/``, v2.0 ``{authority}/{tid}/v2.0``);
``aud`` equal to the API's application ID URI or client id; ``exp``/``nbf`` with a small leeway; ``tid``
equal to the tenant; and, for authorization, the app role in ``roles``.

Errors say what is wrong and never contain the token.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jwt

LEEWAY_SECONDS = 120
_DISCOVERY_TIMEOUT = 10


class Role(StrEnum):
    """The API's app roles (appRoles of its app registration, assigned to caller applications)."""

    READ = "Onboardings.Read"
    READ_WRITE = "Onboardings.ReadWrite"

    def satisfied_by(self, roles: object) -> bool:
        if not isinstance(roles, list):
            return False
        granted = {r for r in roles if isinstance(r, str)}
        # Read-write implies read: a caller allowed to start onboardings may poll them.
        return self in granted or (self is Role.READ and Role.READ_WRITE in granted)


class TokenVersion(StrEnum):
    """The API app registration's ``requestedAccessTokenVersion`` (null in the manifest means 1)."""

    V1 = "1"
    V2 = "2"


class InvalidToken(Exception):
    """The token is missing, malformed, badly signed, expired or not for this API (401)."""


class MissingRole(Exception):
    """A valid token without the app role the operation needs (403)."""


@dataclass(frozen=True)
class TokenConfig:
    tenant_id: str
    authority_host: str
    audiences: tuple[str, ...]
    token_version: TokenVersion
    v1_issuer_host: str

    @property
    def issuer(self) -> str:
        if self.token_version is TokenVersion.V1:
            return f"{self.v1_issuer_host}/{self.tenant_id}/"
        return f"{self.authority_host}/{self.tenant_id}/v2.0"

    @property
    def discovery_url(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}/v2.0/.well-known/openid-configuration"


@dataclass(frozen=True)
class TokenCaller:
    """Who a valid token names: the calling application's service principal (``oid``) and app id."""

    object_id: str
    app_id: str
    roles: tuple[str, ...]


class TokenValidator:
    """Validates tokens against the keys the tenant publishes; the keys are cached and refetched when a
    token names a key id that is not in the cache (PyJWKClient does both)."""

    def __init__(
        self,
        config: TokenConfig,
        *,
        refetch_cooldown_seconds: float = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        # exp/nbf are judged on this clock (epoch seconds). In Azure it is real time, like the tenant's;
        # the test harness moves the sandbox tenant's clock and hands it in here so both agree.
        self.clock = clock
        # An unknown kid refetches the keys at most this often, so forged kids cannot hammer the tenant.
        self.refetch_cooldown_seconds = refetch_cooldown_seconds
        self._lock = threading.Lock()
        self._jwks: jwt.PyJWKClient | None = None

    def _keys(self) -> jwt.PyJWKClient:
        import jwt  # on the first token, not at the worker's start (PyJWT and cryptography: ~60 ms)

        with self._lock:
            if self._jwks is None:
                self._jwks = jwt.PyJWKClient(
                    _jwks_uri(self.config.discovery_url),
                    cache_keys=True,
                    lifespan=24 * 3600,
                    timeout=_DISCOVERY_TIMEOUT,
                    ssl_context=ssl.create_default_context(),
                    cooldown_duration=self.refetch_cooldown_seconds,
                )
            return self._jwks

    def validate(self, token: str, role: Role) -> TokenCaller:
        """The caller a valid token names; ``InvalidToken`` or ``MissingRole`` otherwise (blocking I/O)."""
        claims = self._claims(token)
        caller = TokenCaller(
            object_id=str(claims.get("oid", "")),
            app_id=str(claims.get("appid") or claims.get("azp") or ""),
            roles=tuple(r for r in claims.get("roles", []) if isinstance(r, str)),
        )
        if not role.satisfied_by(claims.get("roles")):
            raise MissingRole(f"the token does not carry the app role {role.value}")
        return caller

    def _claims(self, token: str) -> dict[str, Any]:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the bearer token is not a JWT") from None
        if header.get("alg") != "RS256":
            raise InvalidToken("the token is not signed with RS256")
        try:
            key = self._keys().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise InvalidToken("the tenant's signing keys could not be fetched") from None
        except jwt.PyJWTError:
            raise InvalidToken("the token is not signed by a key of the tenant") from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=list(self.config.audiences),
                issuer=self.config.issuer,
                options={
                    "require": ["exp", "nbf", "iss", "aud", "tid"],
                    # PyJWT reads the system clock; exp and nbf are checked below on self.clock
                    # (iat bounds nothing that nbf does not).
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token's audience is not this API") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token's issuer is not this tenant's issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the token lacks the {exc.claim} claim") from None
        except jwt.PyJWTError:
            raise InvalidToken("the token's signature or claims are invalid") from None
        if claims.get("tid") != self.config.tenant_id:
            raise InvalidToken("the token was issued for another tenant")
        self._check_times(claims)
        return claims

    def _check_times(self, claims: dict[str, Any]) -> None:
        exp, nbf = _epoch(claims.get("exp")), _epoch(claims.get("nbf"))
        if exp is None or nbf is None:
            raise InvalidToken("the token's exp or nbf is not a number")
        now = self.clock()
        if now - LEEWAY_SECONDS >= exp:
            raise InvalidToken("the token has expired")
        if now + LEEWAY_SECONDS < nbf:
            raise InvalidToken("the token is not valid yet (nbf)")


def _epoch(value: object) -> float | None:
    """A NumericDate claim (RFC 7519 section 2) as seconds, or None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _jwks_uri(discovery_url: str) -> str:
    """The ``jwks_uri`` of the tenant's OpenID discovery document (fetched once per validator)."""
    try:
        with urllib.request.urlopen(  # noqa: S310 - the URL is built from the https authority setting
            discovery_url, timeout=_DISCOVERY_TIMEOUT, context=ssl.create_default_context()
        ) as response:
            document = json.load(response)
    except (OSError, ValueError):
        raise InvalidToken("the tenant's signing keys could not be fetched") from None
    uri = document.get("jwks_uri") if isinstance(document, dict) else None
    if not isinstance(uri, str) or not uri:
        raise InvalidToken("the tenant's signing keys could not be fetched")
    return uri
