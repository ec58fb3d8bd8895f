"""Azure RBAC through Azure Resource Manager: the mail product's read access to its one secret.

One role assignment per onboarding that names a mail product principal: the built-in role **Key Vault
Secrets User** (read secret contents) scoped to ``{vault resource id}/secrets/{name}``, so the principal
reads that secret, every version of it, and nothing else in the vault (docs/sandbox-facts.md, RA-1).

azure-mgmt-authorization (api-version 2022-04-01) sends the requests; azure-core's retry policy
retries throttling and 5xx. The assignment's name is a GUID derived from scope, principal and role
(as Bicep's ``guid()``), so a rerun of the activity names the same assignment: ARM answers a second
identical PUT with 409 ``RoleAssignmentExists`` (RA-2), which counts as done, and so does deleting one
that is already gone (204).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from onboarding.errors import (
    InvalidRequestError,
    OnboardingError,
    PermissionDeniedError,
    TransientError,
    service_code,
)
from onboarding.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

# Learn, "Azure built-in roles" (Security): Key Vault Secrets User, "Read secret contents".
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_USER_NAME = "Key Vault Secrets User"
PRINCIPAL_TYPE = "ServicePrincipal"  # managed identities are service principals too (RA-3)
# Fixed, so that every deployment derives the same assignment name from the same scope and principal.
_NAMESPACE = uuid.UUID("6f1f1d0e-4c1b-4f8e-9a56-8f0c2b7e3a41")
ROLE_FIX = (
    "Give the function app's managed identity the role Role Based Access Control Administrator on the "
    "vault, with the condition that it may only assign Key Vault Secrets User (docs/deploy.md)."
)


def secret_scope(vault_resource_id: str, secret_name: str) -> str:
    """The ARM scope of one secret of the vault."""
    return f"{vault_resource_id.rstrip('/')}/secrets/{secret_name}"


def assignment_name(scope: str, principal_id: str, role_id: str = KEY_VAULT_SECRETS_USER) -> str:
    """The role assignment's name: the same scope, principal and role always give the same GUID."""
    return str(uuid.uuid5(_NAMESPACE, f"{scope.lower()}\n{principal_id.lower()}\n{role_id.lower()}"))


def _subscription_of(resource_id: str) -> str:
    parts = resource_id.strip("/").split("/")
    return parts[1] if len(parts) > 1 and parts[0].lower() == "subscriptions" else ""


def rbac_error(exc: BaseException, action: str) -> OnboardingError:
    """ARM's answer in the project's words: its error code kept, its text not (errors.py)."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    from onboarding.adapters._retry import retry_after_of
    from onboarding.adapters.identity import map_identity_error

    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(f"Azure Resource Manager did not answer while trying to {action}.")
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        return map_identity_error(exc)
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        code = service_code(getattr(getattr(exc, "error", None), "code", ""))
        said = f" (error code {code})" if code else ""
        if status == 429 or status >= 500:
            return TransientError(
                f"Azure Resource Manager is throttling or unavailable (HTTP {status}) while trying to {action}.",
                retry_after=retry_after_of(exc.response),
            )
        if code == "PrincipalNotFound":
            # Entra has not replicated a new principal to ARM yet (RA-3), or the id names no principal.
            return TransientError(
                f"Azure Resource Manager does not find the mail product's principal while trying to {action}.",
                fix="If the principal was just created, this passes within minutes. Otherwise check "
                "mailProductPrincipalId: the object id of the mail product's enterprise application or "
                "managed identity, not its application (client) id.",
                code=code,
            )
        if status in (401, 403):
            return PermissionDeniedError(
                f"The function app's identity may not {action}.{said}", fix=ROLE_FIX, code=code or "forbidden"
            )
        return InvalidRequestError(
            f"Azure Resource Manager refused to {action} (HTTP {status}).{said}", code=code
        )
    return OnboardingError(f"Failed to {action} through Azure Resource Manager ({type(exc).__name__}).")


class SecretAccess:
    """Role assignments on the vault's secrets (``onboarding.ports.SecretAccessPort``)."""

    def __init__(self, settings: Settings, credential: AsyncTokenCredential, *, retry_total: int = 3) -> None:
        from azure.mgmt.authorization.aio import AuthorizationManagementClient

        from onboarding.adapters._tls import azure_transport_options

        self._vault = settings.key_vault_resource_id
        self._client = AuthorizationManagementClient(
            credential,
            _subscription_of(self._vault) or "00000000-0000-0000-0000-000000000000",
            api_version="2022-04-01",
            base_url=settings.resource_manager_endpoint,
            credential_scopes=[settings.resource_manager_scope],
            retry_total=retry_total,
            retry_backoff_factor=0.5,
            retry_backoff_max=20,
            **azure_transport_options(),
        )

    def _require_vault(self) -> str:
        if not self._vault:
            raise InvalidRequestError(
                "This deployment does not know its vault's resource id, so it cannot give the mail product "
                "access to its secret.",
                fix="Set KEY_VAULT_RESOURCE_ID (docs/settings.md), or assign the role by hand.",
                code="vault_resource_id_missing",
            )
        return self._vault

    async def grant_secret_reader(self, secret_name: str, principal_id: str) -> str:
        """Key Vault Secrets User on the one secret for the principal; answers the assignment's name.
        An identical assignment already there (this activity's earlier run) counts as done."""
        from azure.core.exceptions import ResourceExistsError
        from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

        vault = self._require_vault()
        scope = secret_scope(vault, secret_name)
        name = assignment_name(scope, principal_id)
        subscription = _subscription_of(vault)
        parameters = RoleAssignmentCreateParameters(
            role_definition_id=(
                f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/"
                f"{KEY_VAULT_SECRETS_USER}"
            ),
            principal_id=principal_id,
            principal_type=PRINCIPAL_TYPE,
            description="Mail product reads its onboarding's hand-off secret (mail-onboarding).",
        )
        action = f"give the mail product {KEY_VAULT_SECRETS_USER_NAME} on secret {secret_name}"
        try:
            await self._client.role_assignments.create(scope, name, parameters)
        except ResourceExistsError as exc:
            code = service_code(getattr(getattr(exc, "error", None), "code", ""))
            if code != "RoleAssignmentExists":
                raise rbac_error(exc, action) from None
        except Exception as exc:
            raise rbac_error(exc, action) from None
        return name

    async def remove_secret_reader(self, secret_name: str, principal_id: str) -> bool:
        """Delete that assignment; True if there was one. Already gone (204 or 404) counts as done."""
        from azure.core.exceptions import ResourceNotFoundError

        vault = self._require_vault()
        scope = secret_scope(vault, secret_name)
        action = f"remove the mail product's {KEY_VAULT_SECRETS_USER_NAME} role on secret {secret_name}"
        try:
            deleted: Any = await self._client.role_assignments.delete(
                scope, assignment_name(scope, principal_id)
            )
        except ResourceNotFoundError:
            return False
        except Exception as exc:
            raise rbac_error(exc, action) from None
        return deleted is not None

    async def close(self) -> None:
        await self._client.close()
