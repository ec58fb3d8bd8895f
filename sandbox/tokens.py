"""Access tokens as Entra ID issues them: RS256 JWTs signed by the tenant's key, published as JWKS."""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

TOKEN_LIFETIME = timedelta(seconds=3599)
# Entra accepts a few minutes of clock skew; so do resource servers.
CLOCK_SKEW = timedelta(minutes=5)


class TokenError(Exception):
    """A token was refused. The message says why and never contains the token."""


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class TokenIssuer:
    def __init__(self, *, tenant_id: str, issuer: str, clock: Callable[[], datetime]) -> None:
        self.tenant_id = tenant_id
        self.issuer = issuer
        self.clock = clock
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self._key.public_key().public_numbers()
        self._jwk = {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }
        self.kid = (
            base64.urlsafe_b64encode(hashlib.sha256(self._jwk["n"].encode()).digest()).rstrip(b"=").decode()
        )
        self._jwk["kid"] = self.kid
        self._lock = threading.Lock()
        self._issued: list[str] = []

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._jwk, x5t=self.kid)]}

    def mint(
        self,
        *,
        audience: str,
        app_id: str,
        object_id: str,
        roles: Iterable[str] = (),
        wids: Iterable[str] = (),
    ) -> tuple[str, datetime]:
        """An app-only (client credentials) v1.0 access token, and when it expires.

        Exactly the claims Microsoft documents for a v1.0 app-only token (docs/sandbox-facts.md,
        "Access token claims"): ``appid``/``appidacr`` rather than the v2.0 ``azp``/``azpacr``, and no
        optional claim (``idtyp``, ``app_displayname``) the resource did not ask for, so nothing can
        come to depend on a claim a real token may lack."""
        now = self.clock()
        exp = now + TOKEN_LIFETIME
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(exp.timestamp()),
            "aio": uuid.uuid4().hex,
            "appid": app_id,
            "appidacr": "1",  # 1: client id and secret
            "idp": self.issuer,
            "oid": object_id,
            "rh": uuid.uuid4().hex,  # opaque to resources, like aio
            "sub": object_id,
            "tid": self.tenant_id,
            "uti": uuid.uuid4().hex[:22],
            "ver": "1.0",
        }
        role_list = sorted(set(roles))
        if role_list:
            claims["roles"] = role_list
        wid_list = sorted(set(wids))
        if wid_list:
            claims["wids"] = wid_list
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})
        with self._lock:
            self._issued.append(token)
        return token, exp

    def sign(self, claims: dict[str, Any]) -> str:
        """Any token (an ID token, say) with the given claims, signed by the tenant's key."""
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})
        with self._lock:
            self._issued.append(token)
        return token

    def verify(self, token: str, audience: str | None = None) -> dict[str, Any]:
        """The claims of a token this tenant signed, current by the tenant's clock."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                # Time is checked below against the tenant clock, which tests may move.
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token ({type(exc).__name__})") from None
        if claims.get("iss") != self.issuer or claims.get("tid") != self.tenant_id:
            raise TokenError("token issued by another tenant")
        now = self.clock()
        if now > datetime.fromtimestamp(claims["exp"], now.tzinfo) + CLOCK_SKEW:
            raise TokenError("token expired")
        if now + CLOCK_SKEW < datetime.fromtimestamp(claims["nbf"], now.tzinfo):
            raise TokenError("token not yet valid")
        if audience is not None and str(claims.get("aud", "")).rstrip("/") != audience.rstrip("/"):
            raise TokenError("token audience is another resource")
        return claims

    def issued(self) -> list[str]:
        with self._lock:
            return list(self._issued)
