"""Key Vault: where each onboarded app's client secret lives. The only adapter that handles a
secret value on purpose; it hands the value to nobody but its caller.

azure-core's retry policy retries throttling (honouring ``Retry-After``), 5xx and dropped
connections for these calls; they are all safe to repeat (a repeated ``put`` adds an identical
version, which is harmless)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from onboarding.errors import (
    InvalidRequestError,
    NotFoundError,
    OnboardingError,
    PermissionDeniedError,
    TransientError,
    service_code,
)
from onboarding.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

ROLE_FIX = "Give the function app's managed identity the role Key Vault Secrets Officer on the vault."


@dataclass(frozen=True)
class StoredSecret:
    value: str = field(repr=False)
    version: str
    tags: dict[str, str]
    expires_on: datetime | None


@dataclass(frozen=True)
class SecretInfo:
    name: str
    expires_on: datetime | None
    tags: dict[str, str]
    content_type: str | None


def _is_private_host(host: str) -> bool:
    """A loopback or IP-literal vault (the sandbox) cannot match the challenge's resource domain."""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def vault_error(exc: BaseException, action: str) -> OnboardingError:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    from onboarding.adapters._retry import retry_after_of
    from onboarding.adapters.identity import map_identity_error

    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(f"Key Vault did not answer while trying to {action}.", fix="Try again later.")
    if isinstance(exc, ResourceNotFoundError):
        return NotFoundError(f"Key Vault found nothing to {action}.")
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        return map_identity_error(exc)  # the token itself could not be obtained
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        code = service_code(getattr(exc.error, "code", ""))
        # Key Vault's own text stays out of the message (issue 14); its error code is kept.
        said = f" (error code {code})" if code else ""
        if status == 429 or status >= 500:
            return TransientError(
                f"Key Vault is throttling or unavailable (HTTP {status}) while trying to {action}.",
                retry_after=retry_after_of(exc.response),
            )
        if status in (401, 403):
            return PermissionDeniedError(
                f"The function app's identity may not {action} in Key Vault.{said}",
                fix=ROLE_FIX,
                code=code or "forbidden",
            )
        return InvalidRequestError(f"Key Vault refused to {action} (HTTP {status}).{said}", code=code)
    return OnboardingError(f"Failed to {action} in Key Vault ({type(exc).__name__}).")


class CredentialVault:
    def __init__(
        self,
        settings: Settings,
        credential: AsyncTokenCredential,
        *,
        retry_total: int = 3,
        polling_interval: float = 2.0,
    ) -> None:
        from azure.keyvault.secrets.aio import SecretClient

        from onboarding.adapters._tls import azure_transport_options

        self._uri = settings.key_vault_uri
        self._polling = polling_interval
        host = urlsplit(settings.key_vault_uri).hostname or ""
        self._client = SecretClient(
            vault_url=settings.key_vault_uri,
            credential=credential,
            verify_challenge_resource=not _is_private_host(host),
            retry_total=retry_total,
            retry_backoff_factor=0.5,
            retry_backoff_max=20,
            **azure_transport_options(),
        )

    async def put(
        self, name: str, value: str, *, content_type: str, expires_on: datetime, tags: dict[str, str]
    ) -> str:
        """Store a new version; returns its version id. A name in the vault's recycle bin (soft
        deleted, 409) is recovered first, then written."""
        from azure.core.exceptions import ResourceExistsError

        async def set_it() -> Any:
            return await self._client.set_secret(
                name, value, content_type=content_type, expires_on=expires_on, tags=tags
            )

        try:
            try:
                secret = await set_it()
            except ResourceExistsError:
                await self._recover(name)
                secret = await set_it()
        except OnboardingError:
            raise
        except Exception as exc:
            raise vault_error(exc, f"store secret {name}") from None
        return str(secret.properties.version)

    async def _recover(self, name: str) -> None:
        try:
            await self._client.recover_deleted_secret(name, _polling_interval=self._polling)
        except Exception as exc:
            error = vault_error(exc, f"recover the deleted secret {name}")
            if isinstance(error, PermissionDeniedError):
                raise PermissionDeniedError(
                    f"Secret {name} is deleted but recoverable, and the function app may not recover it.",
                    fix=f"{ROLE_FIX} Or recover or purge the deleted secret {name} in the vault.",
                    code="secret_deleted",
                ) from None
            raise error from None

    async def get(self, name: str, version: str | None = None) -> StoredSecret | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            secret = await self._client.get_secret(name, version)
        except ResourceNotFoundError:
            return None
        except Exception as exc:
            raise vault_error(exc, f"read secret {name}") from None
        return StoredSecret(
            value=secret.value or "",
            version=str(secret.properties.version),
            tags=dict(secret.properties.tags or {}),
            expires_on=secret.properties.expires_on,
        )

    async def list_secrets(self) -> list[SecretInfo]:
        """Every current secret's properties (never a value): name, expiry, tags, content type."""
        try:
            return [
                SecretInfo(
                    name=str(p.name),
                    expires_on=p.expires_on,
                    tags=dict(p.tags or {}),
                    content_type=p.content_type,
                )
                async for p in self._client.list_properties_of_secrets()
            ]
        except Exception as exc:
            raise vault_error(exc, "list secrets") from None

    async def delete(self, name: str) -> None:
        """Soft delete (recoverable while the vault's retention lasts); already gone counts as done."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            await self._client.delete_secret(name, _polling_interval=self._polling)
        except ResourceNotFoundError:
            return
        except Exception as exc:
            raise vault_error(exc, f"delete secret {name}") from None

    async def close(self) -> None:
        await self._client.close()
