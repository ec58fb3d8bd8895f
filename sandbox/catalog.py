"""Well-known identifiers of the first-party Microsoft resources the sandbox tenant is seeded with.

The ids are the public ones (see shared/DOMAIN.md), so code that resolves roles by value and code that
hard-codes an id both meet the same answer here as in a real tenant.
"""

from __future__ import annotations

from dataclasses import dataclass

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
KEY_VAULT_APP_ID = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"
# Azure Resource Manager ("Windows Azure Service Management API"): the audience of ARM tokens.
ARM_APP_ID = "797f4846-ba00-4fd7-ba43-dac1f8f63013"


@dataclass(frozen=True)
class RoleDef:
    id: str
    value: str
    description: str


GRAPH_APP_ROLES: tuple[RoleDef, ...] = (
    RoleDef(
        "18a4783c-866b-4cc7-a460-3d5e5662c884",
        "Application.ReadWrite.OwnedBy",
        "Manage apps that this app creates or owns",
    ),
    RoleDef(
        "1bfefb4e-e0b5-418b-a88f-73c6d2cf5f1d", "Application.ReadWrite.All", "Read and write all applications"
    ),
    RoleDef("9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30", "Application.Read.All", "Read all applications"),
    RoleDef(
        "06b708a9-e830-4db3-a914-8e69da51d44f",
        "AppRoleAssignment.ReadWrite.All",
        "Manage app permission grants and app role assignments",
    ),
    RoleDef("b633e1c5-b582-4048-a93e-9f11b44c7e96", "Mail.Send", "Send mail as any user"),
    RoleDef("df021288-bdef-4463-88db-98f22de89214", "User.Read.All", "Read all users' full profiles"),
    RoleDef("7ab1d382-f21e-4acd-a863-ba3e13f7da61", "Directory.Read.All", "Read directory data"),
    RoleDef("dbb9058a-0e50-45d7-ae91-66909b5d4664", "Domain.Read.All", "Read domains"),
)
GRAPH_DELEGATED_SCOPES: tuple[RoleDef, ...] = (
    RoleDef("e1fe6dd8-ba31-4d61-89e7-88639da4683d", "User.Read", "Sign in and read user profile"),
)

EXCHANGE_APP_ROLES: tuple[RoleDef, ...] = (
    RoleDef("5e5addcd-3e8d-4e90-baf5-964efab2b20a", "IMAP.AccessAsApp", "IMAP.AccessAsApp"),
    RoleDef("cb842b43-da6e-4506-86fe-bb12199c656d", "POP.AccessAsApp", "POP.AccessAsApp"),
    RoleDef("dc50a0fb-09a3-484d-be87-e023b12c6440", "Exchange.ManageAsApp", "Manage Exchange As Application"),
    RoleDef(
        "dc890d15-9560-4a4c-9b7f-a736ec74ec40",
        "full_access_as_app",
        "Use Exchange Web Services with full access to all mailboxes",
    ),
)

# Entra directory role template ids, carried in app tokens as ``wids``.
EXCHANGE_ADMINISTRATOR = "29232cdf-9323-42fd-ade2-1d097af3e4de"
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
EXCHANGE_RECIPIENT_ADMINISTRATOR = "31392ffb-586c-42d1-9346-e59415a2cc4e"
CLOUD_APPLICATION_ADMINISTRATOR = "158c047a-c907-4556-b7ef-446551a6b5f7"
APPLICATION_ADMINISTRATOR = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
DIRECTORY_ROLES = {
    "Cloud Application Administrator": CLOUD_APPLICATION_ADMINISTRATOR,
    "Application Administrator": APPLICATION_ADMINISTRATOR,
    "Privileged Role Administrator": PRIVILEGED_ROLE_ADMINISTRATOR,
    "Exchange Administrator": EXCHANGE_ADMINISTRATOR,
    "Global Administrator": GLOBAL_ADMINISTRATOR,
    "Exchange Recipient Administrator": EXCHANGE_RECIPIENT_ADMINISTRATOR,
}

# Key Vault data-plane RBAC roles and what they allow on secrets.
VAULT_SECRETS_OFFICER = "Key Vault Secrets Officer"
VAULT_SECRETS_USER = "Key Vault Secrets User"
VAULT_ROLE_ACTIONS = {
    VAULT_SECRETS_OFFICER: frozenset({"get", "list", "set", "update", "delete", "recover", "purge"}),
    VAULT_SECRETS_USER: frozenset({"get", "list"}),
}
KEY_VAULT_SECRETS_USER_ROLE = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER_ROLE = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
# The same roles as Azure RBAC role definitions (Learn, "Azure built-in roles", Security): what an ARM
# role assignment names in ``roleDefinitionId`` (docs/sandbox-facts.md, RA-1).
VAULT_ROLE_DEFINITION_IDS = {
    KEY_VAULT_SECRETS_OFFICER_ROLE: VAULT_SECRETS_OFFICER,
    KEY_VAULT_SECRETS_USER_ROLE: VAULT_SECRETS_USER,
}

# The certificates API's data-plane role (Key Vault Certificates Officer: Microsoft.KeyVault/vaults/
# certificates/*); reading a certificate's private key is a secrets action (docs/sandbox-facts.md).
VAULT_CERTIFICATES_OFFICER = "Key Vault Certificates Officer"
VAULT_CERTIFICATE_ROLE_ACTIONS = {
    VAULT_CERTIFICATES_OFFICER: frozenset({"get", "list", "create", "update", "delete", "recover", "purge"}),
}

DEFAULT_IDENTITY_GRAPH_ROLES = (
    "Application.ReadWrite.OwnedBy",
    "AppRoleAssignment.ReadWrite.All",
    "Application.Read.All",
    "Mail.Send",
    "Domain.Read.All",
)
DEFAULT_IDENTITY_EXCHANGE_ROLES = ("Exchange.ManageAsApp",)
DEFAULT_IDENTITY_DIRECTORY_ROLES = ("Exchange Administrator",)
