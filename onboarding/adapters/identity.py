"""Tokens: the function app's managed identity, an onboarded app's client secret, and what a token says.

``acquire_token`` decodes the token's claims without verifying its signature on purpose: the resource
(Graph, Exchange, IMAP) verifies it; we only read ``aud`` and ``roles`` to explain failures early
(the DOMAIN.md "token has no roles" and "aud is Graph" rows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onboarding.errors import InvalidRequestError, OnboardingError, PermissionDeniedError, TransientError
from onboarding.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential


def function_credential(settings: Settings) -> AsyncTokenCredential:
    """The function app's own identity. With ``AZURE_CLIENT_ID`` unset, the system-assigned one."""
    from azure.identity.aio import ManagedIdentityCredential

    from onboarding.adapters._tls import azure_transport_options

    if settings.managed_identity_client_id:
        return ManagedIdentityCredential(
            client_id=settings.managed_identity_client_id, **azure_transport_options()
        )
    return ManagedIdentityCredential(**azure_transport_options())


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
        "Entra ID refused the client assertion (AADSTS700027).",
        "Check the app's certificate or secret.",
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
