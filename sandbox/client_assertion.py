"""Certificate credentials at the token endpoint: a client assertion (``private_key_jwt``) checked as
Entra ID documents it (docs/sandbox-facts.md, "Client assertions").

The header names the certificate by ``x5t`` (SHA-1 thumbprint, RS256) or ``x5t#S256`` (SHA-256,
PS256, what azure-identity sends); the certificate must be among the app's keyCredentials and not
expired; the signature must verify with its public key; ``iss`` and ``sub`` are the client id, ``aud``
the tenant's token endpoint, ``jti`` present, and the time between ``nbf`` and ``exp``.

The assertion's times are the client's: the wall clock, not the tenant clock tests move (a real
client and Entra ID share one time; here only the tenant's state is time-travelled). The key's
validity is the tenant's and is checked on the tenant clock.
"""

from __future__ import annotations

import base64
import hashlib
import time
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sandbox.state import Application, KeyCredential, TenantState

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DOCS = "Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials ."


class AssertionRefused(Exception):
    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"AADSTS{code}")
        self.status, self.error, self.code, self.description = status, error, code, description


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _invalid_jwt(reason: str) -> AssertionRefused:
    return AssertionRefused(401, "invalid_client", 50027, f"Invalid JWT token. {reason}")


class ClientAssertions:
    def __init__(self, state: TenantState, *, authority: str) -> None:
        self.state = state
        self.authority = authority.rstrip("/")

    def audiences(self, tenant: str) -> set[str]:
        """The tenant's token endpoints, v2.0 and v1.0, by id or domain, as the client was sent."""
        names = {tenant, self.state.tenant_id, self.state.domain}
        return {f"{self.authority}/{t}/oauth2/{v}token" for t in names for v in ("v2.0/", "")}

    def check(self, form: dict[str, str], app: Application, tenant: str) -> KeyCredential:
        """The app's certificate that signed the assertion, or ``AssertionRefused`` with Entra's code."""
        if form.get("client_assertion_type") != JWT_BEARER or not form.get("client_assertion"):
            raise AssertionRefused(
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
            )
        token = form["client_assertion"]
        header, claims = self._decoded(token)
        self._check_claims(claims, app.app_id, tenant)
        key, digest = self._key(header, app)
        self._check_signature(token, header, key, digest)
        return key

    @staticmethod
    def _decoded(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _invalid_jwt("The token is malformed.") from None
        if "x5t" not in header and "x5t#S256" not in header:
            raise _invalid_jwt("No certificate thumbprint specified in token header.")
        return header, claims

    def _check_claims(self, claims: dict[str, Any], client_id: str, tenant: str) -> None:
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise AssertionRefused(
                401,
                "invalid_client",
                700021,
                f"Client assertion application identifier doesn't match 'client_id' parameter. {DOCS}",
            )
        if claims.get("aud") not in self.audiences(tenant):
            raise AssertionRefused(
                401,
                "invalid_client",
                700023,
                f"Client assertion audience claim does not match Realm issuer. {DOCS}",
            )
        if not claims.get("jti"):
            raise _invalid_jwt("The token has no jti claim.")
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int | float) or not isinstance(nbf, int | float) or not nbf <= now < exp:
            raise AssertionRefused(
                401,
                "invalid_client",
                700024,
                f"Client assertion is not within its valid time range. Current time: {_iso(now)}, assertion "
                f"valid from {_iso(nbf)}, expiry time of assertion {_iso(exp)}. {DOCS}",
            )

    def _key(self, header: dict[str, Any], app: Application) -> tuple[KeyCredential, str]:
        named = header.get("x5t#S256") or header.get("x5t")
        algorithm = "sha256" if "x5t#S256" in header else "sha1"
        try:
            wanted = _b64url_decode(str(named))
        except ValueError:
            raise _invalid_jwt("The certificate thumbprint in the token header is not base64url.") from None
        shown = wanted.hex().upper()
        key = next((k for k in app.keys if hashlib.new(algorithm, k.der).digest() == wanted), None)
        if key is None:
            raise AssertionRefused(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is not registered on "
                f"application. [Reason - The key was not found., Thumbprint of key used by client: '{shown}', "
                "Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys "
                f"for app Id '{app.app_id}'.]",
            )
        now = self.state.now()
        if not key.start <= now < key.end:
            raise AssertionRefused(
                401,
                "invalid_client",
                700027,
                f"Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint "
                f"of key used by client: '{shown}', Found key 'Start={key.start:%m/%d/%Y %H:%M:%S}, "
                f"End={key.end:%m/%d/%Y %H:%M:%S}']",
            )
        return key, shown

    @staticmethod
    def _check_signature(token: str, header: dict[str, Any], key: KeyCredential, shown: str) -> None:
        signed, _, signature = token.rpartition(".")
        public = x509.load_der_x509_certificate(key.der).public_key()
        try:
            if not isinstance(public, rsa.RSAPublicKey):
                raise InvalidSignature
            data, sig = signed.encode("ascii"), _b64url_decode(signature)
            if header.get("alg") == "PS256":
                pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
                public.verify(sig, data, pss, hashes.SHA256())
            elif header.get("alg") == "RS256":
                public.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
            else:
                raise InvalidSignature
        except (InvalidSignature, ValueError):
            raise AssertionRefused(
                401,
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature. [Reason - Key was found, but use of the key "
                f"to verify the signature failed., Thumbprint of key used by client: '{shown}']",
            ) from None


def _iso(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "(none)"
    return datetime.fromtimestamp(float(epoch), UTC).strftime("%m/%d/%Y %H:%M:%S")
