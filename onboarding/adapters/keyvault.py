"""Key Vault: where each onboarded app's client secret lives. The only adapter that handles a
secret value on purpose; it hands the value to nobody but its caller.

azure-core's retry policy retries throttling (honouring ``Retry-After``), 5xx and dropped
connections for these calls; they are all safe to repeat (a repeated ``put`` adds an identical
version, which is harmless). Two answers it does not retry are transient too (docs/sandbox-facts.md):
409 while a secret is being deleted or recovered (seconds; ``put`` waits them out), and 403
``ForbiddenByRbac`` while a new role assignment propagates (up to 10 minutes; Durable retries the step).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from onboarding.adapters._retry import DEFAULT_POLICY, RetryPolicy, Sleep, retrying
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
RBAC_PROPAGATION = (
    " Azure RBAC takes up to 10 minutes to apply a new role assignment: if the role was just assigned, "
    "submit the request again after that."
)
# Inner error codes of a 409 that clears by itself once the vault finishes a soft delete or a recovery.
IN_TRANSITION = ("ObjectIsBeingDeleted", "ObjectIsBeingRecovered")
# How many polls the SDK's delete and recover pollers get before the activity stops waiting. The SDK
# polls until the vault finishes, without bound; an activity must not: the soft delete it started
# finishes without it, and a recovery still under way is transient (Durable retries the step).
SETTLE_POLLS = 5


def _inner_code(exc: Any) -> str:
    """Key Vault's ``error.innererror.code`` (e.g. ObjectIsDeletedButRecoverable), if any."""
    inner = getattr(getattr(exc, "error", None), "innererror", None)
    return str(inner.get("code", "")) if isinstance(inner, dict) else ""


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
        inner = service_code(_inner_code(exc))
        # Key Vault's own text stays out of the message (issue 14); its error codes are kept.
        said = f" (error code {inner or code})" if inner or code else ""
        if status == 429 or status >= 500:
            return TransientError(
                f"Key Vault is throttling or unavailable (HTTP {status}) while trying to {action}.",
                retry_after=retry_after_of(exc.response),
            )
        if status == 409 and inner in IN_TRANSITION:
            return TransientError(
                f"Key Vault is still finishing a soft delete or recovery while trying to {action}.{said}",
                fix="Try again shortly.",
                code=inner,
            )
        if status == 403 and inner == "ForbiddenByRbac":
            return TransientError(
                f"The function app's identity may not {action} in Key Vault (yet).{said}",
                fix=ROLE_FIX + RBAC_PROPAGATION,
                code="ForbiddenByRbac",
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
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        from azure.keyvault.secrets.aio import SecretClient

        from onboarding.adapters._tls import azure_transport_options

        self._uri = settings.key_vault_uri
        self._polling = polling_interval
        self._settle = polling_interval * SETTLE_POLLS
        self._policy = policy
        self._sleep = sleep
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
        self, name: str, value: str, *, content_type: str, expires_on: datetime | None, tags: dict[str, str]
    ) -> str:
        """Store a new version; returns its version id. A name in the vault's recycle bin (soft
        deleted, 409) is recovered first, then written; a name still being deleted or recovered is
        waited for (retried with backoff)."""
        from azure.core.exceptions import ResourceExistsError

        async def set_it() -> Any:
            return await self._client.set_secret(
                name, value, content_type=content_type, expires_on=expires_on, tags=tags
            )

        async def attempt() -> Any:
            try:
                try:
                    return await set_it()
                except ResourceExistsError as exc:
                    if _inner_code(exc) in IN_TRANSITION:
                        raise
                    await self._recover(name)
                    return await set_it()
            except OnboardingError:
                raise
            except Exception as exc:
                raise vault_error(exc, f"store secret {name}") from None

        secret = await retrying(attempt, self._policy, sleep=self._sleep)
        return str(secret.properties.version)

    async def _recover(self, name: str) -> None:
        try:
            await asyncio.wait_for(
                self._client.recover_deleted_secret(name, _polling_interval=self._polling), self._settle
            )
        except TimeoutError:
            raise TransientError(
                f"Key Vault is still recovering the deleted secret {name}.",
                fix="Wait a minute; the step is retried.",
                code="ObjectIsBeingRecovered",
            ) from None
        except Exception as exc:
            error = vault_error(exc, f"recover the deleted secret {name}")
            fix = f"{ROLE_FIX} Or recover or purge the deleted secret {name} in the vault."
            message = f"Secret {name} is deleted but recoverable, and the function app may not recover it"
            if isinstance(error, PermissionDeniedError):
                raise PermissionDeniedError(f"{message}.", fix=fix, code="secret_deleted") from None
            if error.code == "ForbiddenByRbac":
                raise TransientError(
                    f"{message} (yet).", fix=fix + RBAC_PROPAGATION, code=error.code
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

    async def tag_current(self, name: str, *, expires_on: datetime, tags: dict[str, str]) -> bool:
        """Add ``tags`` to the secret's current version if it still expires at ``expires_on``; False when
        a newer version (a rotation) or a changed expiry makes the mark stale. The version is named
        explicitly: a versionless update would land on whatever version became current meanwhile, and
        an update replaces the whole tag set."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            versions = [p async for p in self._client.list_properties_of_secret_versions(name)]
            current = max(
                versions, key=lambda p: p.created_on or datetime.min.replace(tzinfo=expires_on.tzinfo)
            )
            if current.expires_on != expires_on or not current.version:
                return False
            await self._client.update_secret_properties(
                name, current.version, tags={**(current.tags or {}), **tags}
            )
        except (ResourceNotFoundError, ValueError):
            return False  # deleted meanwhile (offboarded), or no version left
        except Exception as exc:
            raise vault_error(exc, f"tag secret {name}") from None
        return True

    async def delete(self, name: str) -> None:
        """Soft delete (recoverable while the vault's retention lasts); already gone counts as done."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            await asyncio.wait_for(
                self._client.delete_secret(name, _polling_interval=self._polling), self._settle
            )
        except ResourceNotFoundError:
            return
        except TimeoutError:
            # Accepted (or lost in flight): the name no longer reads as a secret once the vault took
            # the DELETE, whether or not it has finished; if it still does, Durable retries the step.
            if await self.get(name) is not None:
                raise TransientError(
                    f"Key Vault has not yet deleted secret {name}.", fix="The step is retried."
                ) from None
        except Exception as exc:
            error = vault_error(exc, f"delete secret {name}")
            if error.code == "ObjectIsBeingDeleted":
                return  # a soft delete of this name is already under way: what was asked for
            if error.code == "ForbiddenByRbac":
                # Deleting undoes an onboarding that already failed (compensation): a refusal here
                # is reported for an admin at once rather than waited on, so the other undo steps
                # (deleting the app and its live credential) are not held up.
                raise PermissionDeniedError(error.message, fix=ROLE_FIX, code=error.code) from None
            raise error from None

    async def close(self) -> None:
        await self._client.close()
