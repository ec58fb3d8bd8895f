"""Tokens: the function app's managed identity, an onboarded app's client secret, and what a token says.

``acquire_token`` decodes the token's claims without verifying its signature on purpose: the resource
(Graph, Exchange, IMAP) verifies it; we only read ``aud`` and ``roles`` to explain failures early
(the DOMAIN.md "token has no roles" and "aud is Graph" rows).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onboarding.errors import InvalidRequestError, OnboardingError, PermissionDeniedError, TransientError
from onboarding.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken
    from azure.core.credentials_async import AsyncTokenCredential


def function_credential(settings: Settings) -> AsyncTokenCredential:
    """The function app's own identity, a new credential with an empty token cache. With
    ``AZURE_CLIENT_ID`` unset, the system-assigned one. Activities use ``worker_credential``."""
    from azure.identity.aio import ManagedIdentityCredential

    from onboarding.adapters._tls import azure_transport_options

    if settings.managed_identity_client_id:
        return ManagedIdentityCredential(
            client_id=settings.managed_identity_client_id, **azure_transport_options()
        )
    return ManagedIdentityCredential(**azure_transport_options())


# Tokens of the function app's managed identity kept for this worker process: renewed this long
# before they expire, as azure-identity's own cache does (its refresh window is five minutes).
_REFRESH_MARGIN_S = 300


class WorkerCredential:
    """The function app's managed identity, one per worker process, with one token cache for all its
    activities (``get_token`` and ``close`` of azure-core's ``AsyncTokenCredential``).

    A credential per activity started each one with an empty cache: one token request per resource
    per activity (11 of the 33 calls on a 10-mailbox onboarding's critical path, issue 12), and a
    busy worker could be throttled by the identity endpoint. An azure-identity credential cannot
    simply be shared: its HTTP session is bound to the event loop it first ran on, and activities may
    run on other loops or threads. So this holds only tokens (thread-safe, no loop state); on a miss
    one fetch is made with a short-lived ``function_credential`` that is closed at once, and callers
    arriving meanwhile, on any loop, await that same fetch. Only the worker's own identity lives
    here: an onboarded app's credential (``app_secret_credential``) is built per activity.
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], AccessToken] = {}
        self._fetching: dict[tuple[str, ...], concurrent.futures.Future[AccessToken]] = {}

    async def get_token(self, *scopes: str, claims: str | None = None, **kwargs: Any) -> AccessToken:
        key = tuple(sorted(scopes))
        with self._lock:
            cached = self._tokens.get(key)
            if (
                claims is None
                and cached is not None
                and cached.expires_on - self._clock() > _REFRESH_MARGIN_S
            ):
                return cached
            pending = self._fetching.get(key)
            owner = pending is None
            if pending is None:
                pending = self._fetching[key] = concurrent.futures.Future()
        if not owner:
            return await asyncio.wrap_future(pending)
        try:
            token = await self._fetch(scopes, claims, kwargs)
        except BaseException as exc:
            with self._lock:
                del self._fetching[key]
            pending.set_exception(exc)
            pending.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        with self._lock:
            self._tokens[key] = token
            del self._fetching[key]
        pending.set_result(token)
        return token

    async def _fetch(
        self, scopes: tuple[str, ...], claims: str | None, kwargs: dict[str, Any]
    ) -> AccessToken:
        credential = function_credential(self._settings)
        try:
            return await credential.get_token(*scopes, claims=claims, **kwargs)
        finally:
            await credential.close()

    async def close(self) -> None:
        """Nothing to release: the credential outlives every activity that uses it."""

    async def __aenter__(self) -> WorkerCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_workers: dict[tuple[str | None, ...], WorkerCredential] = {}
_workers_lock = threading.Lock()


def worker_credential(settings: Settings) -> WorkerCredential:
    """This worker's managed-identity credential: one per identity, i.e. per client id and per
    identity endpoint the platform gives the process (``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``,
    which azure-identity reads from the environment)."""
    import os

    key = (
        settings.managed_identity_client_id,
        os.environ.get("IDENTITY_ENDPOINT"),
        os.environ.get("IDENTITY_HEADER"),
        os.environ.get("MSI_ENDPOINT"),
    )
    with _workers_lock:
        credential = _workers.get(key)
        if credential is None:
            credential = _workers[key] = WorkerCredential(settings)
        return credential


def app_secret_credential(
    settings: Settings, tenant_id: str, client_id: str, secret: str
) -> AsyncTokenCredential:
    """An onboarded app's client-credentials identity, against the configured authority."""
    from azure.identity.aio import ClientSecretCredential

    from onboarding.adapters._tls import azure_transport_options

    return ClientSecretCredential(
        tenant_id,
        client_id,
        secret,
        authority=settings.authority_host,
        disable_instance_discovery=settings.disable_instance_discovery,
        **azure_transport_options(),
    )


def app_certificate_credential(
    settings: Settings, tenant_id: str, client_id: str, pem: str
) -> AsyncTokenCredential:
    """An onboarded app's certificate identity: a client assertion JWT signed with the private key,
    naming the certificate by its thumbprint (docs/sandbox-facts.md, "Client assertions")."""
    from azure.identity.aio import CertificateCredential

    from onboarding.adapters._tls import azure_transport_options

    return CertificateCredential(
        tenant_id,
        client_id,
        certificate_data=pem.encode("ascii"),
        authority=settings.authority_host,
        disable_instance_discovery=settings.disable_instance_discovery,
        **azure_transport_options(),
    )


def document_credential(
    settings: Settings, document: Mapping[str, Any], tenant_id: str | None = None
) -> AsyncTokenCredential:
    """The credential a hand-off document (docs/handoff.md) holds: its certificate, or its secret;
    in the document's tenant unless ``tenant_id`` names it."""
    tenant_id, client_id = tenant_id or str(document["tenantId"]), str(document["clientId"])
    if document.get("credentialType") == "certificate":
        return app_certificate_credential(settings, tenant_id, client_id, str(document["clientCertificate"]))
    return app_secret_credential(settings, tenant_id, client_id, str(document["clientSecret"]))


@dataclass(frozen=True)
class TokenInfo:
    token: str = field(repr=False)
    audience: str
    roles: tuple[str, ...]
    app_id: str
    object_id: str
    expires_on: int


# AADSTS code -> (error class, message, fix). Entra's own descriptions are not passed on: they can
# quote the request (client id, scope) at length and we want one stable sentence per cause.
_AADSTS: dict[str, tuple[type[OnboardingError], str, str]] = {
    "7000215": (
        InvalidRequestError,
        "Entra ID refused the client secret (AADSTS7000215: invalid client secret).",
        "Use the secret's value, not its secret id, and check it has not expired; or create a new secret.",
    ),
    "7000222": (
        InvalidRequestError,
        "The app's client secret has expired (AADSTS7000222).",
        "Create a new client secret for the app and store it in Key Vault.",
    ),
    "700016": (
        TransientError,
        "Entra ID does not know the app yet (AADSTS700016: application not found in the directory).",
        "A new app can take minutes to replicate; if this lasts, check the client id and tenant id.",
    ),
    "90002": (
        InvalidRequestError,
        "Entra ID does not know the tenant (AADSTS90002).",
        "Check the tenant id.",
    ),
    "500011": (
        InvalidRequestError,
        "The resource of the requested scope is not present in the tenant (AADSTS500011).",
        "Check the scope; for IMAP/POP it is the Exchange Online resource's /.default scope.",
    ),
    "1002012": (
        InvalidRequestError,
        "The requested scope is invalid (AADSTS1002012).",
        "Request the resource's /.default scope for a client-credentials token.",
    ),
    "700027": (
        InvalidRequestError,
        "Entra ID refused the client assertion (AADSTS700027): the certificate that signed it is not "
        "on the app, has expired, or the signature does not verify.",
        "Check that the certificate in Key Vault is among the app's certificates (keyCredentials) and "
        "has not expired; or rotate to a new certificate.",
    ),
    "700024": (
        InvalidRequestError,
        "Entra ID refused the client assertion (AADSTS700024): it is not within its valid time range.",
        "Check the clock of the machine that signs the assertion.",
    ),
    "700021": (
        InvalidRequestError,
        "Entra ID refused the client assertion (AADSTS700021): its issuer or subject is not the client id.",
        "Sign the assertion with iss and sub set to the app's client id.",
    ),
    "700023": (
        InvalidRequestError,
        "Entra ID refused the client assertion (AADSTS700023): its audience is not the token endpoint.",
        "Set the assertion's aud to the tenant's token endpoint.",
    ),
}

_AADSTS_RE = re.compile(r"AADSTS(\d+)")


def map_identity_error(exc: BaseException) -> OnboardingError:
    """Turn an azure-identity/azure-core failure into a project error with a fix, no response text."""
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
    from azure.identity import CredentialUnavailableError

    if isinstance(exc, CredentialUnavailableError):
        return OnboardingError(
            "The function app's managed identity is not available.",
            fix="Assign the user-assigned managed identity to the function app and set AZURE_CLIENT_ID "
            "to its client id (or enable the system-assigned identity).",
            code="identity_unavailable",
        )
    text = str(exc)
    match = _AADSTS_RE.search(text)
    if match and match.group(1) in _AADSTS:
        cls, message, fix = _AADSTS[match.group(1)]
        code = "replication" if cls is TransientError else f"AADSTS{match.group(1)}"
        return cls(message, fix=fix, code=code)
    if isinstance(exc, ServiceRequestError | ServiceResponseError | TimeoutError | OSError):
        return TransientError("Could not reach Entra ID's token endpoint.", fix="Try again later.")
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        from onboarding.adapters._retry import retry_after_of

        # azure-core has already waited out up to three Retry-After answers by now; the last one's
        # wait is passed on, or our own retry would come back sooner than the endpoint asked.
        return TransientError(
            f"Entra ID's token endpoint answered HTTP {status}.",
            retry_after=retry_after_of(response),
            fix="Try again later.",
        )
    if isinstance(exc, ClientAuthenticationError):
        code = f"AADSTS{match.group(1)}" if match else "token_refused"
        return PermissionDeniedError(
            f"Entra ID refused to issue a token ({code}).",
            fix="Check the client id, secret and tenant, and that the app exists in the tenant.",
            code=code,
        )
    return OnboardingError(f"Getting a token failed ({type(exc).__name__}).", code="token_failed")


def decode_claims(token: str) -> dict[str, Any]:
    """The token's claims, unverified (see the module docstring)."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise InvalidRequestError("The token is not a JWT.", code="not_a_jwt") from None
    return dict(claims)


async def acquire_token(credential: AsyncTokenCredential, scope: str) -> TokenInfo:
    try:
        access = await credential.get_token(scope)
    except Exception as exc:
        raise map_identity_error(exc) from None
    claims = decode_claims(access.token)
    roles = claims.get("roles") or ()
    return TokenInfo(
        token=access.token,
        audience=str(claims.get("aud", "")),
        roles=tuple(str(r) for r in roles),
        app_id=str(claims.get("appid") or claims.get("azp") or ""),
        object_id=str(claims.get("oid", "")),
        expires_on=int(access.expires_on),
    )
