"""Azure Resource Manager stand-in (role assignments) driven by azure-mgmt-authorization, and Key Vault
honouring a role assignment scoped to one secret (docs/sandbox-facts.md, RA-1 to RA-5)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

from sandbox import Sandbox
from sandbox.catalog import KEY_VAULT_SECRETS_OFFICER_ROLE, KEY_VAULT_SECRETS_USER_ROLE
from sandbox.tenant import SUBSCRIPTION_ID, VAULT_RESOURCE_ID

SECRETS_USER = f"/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/{KEY_VAULT_SECRETS_USER_ROLE}"


@pytest.fixture
def arm(sandbox: Sandbox, sandbox_env: dict[str, str]) -> AuthorizationManagementClient:
    credential = ManagedIdentityCredential(client_id=sandbox_env["AZURE_CLIENT_ID"])
    endpoint = sandbox_env["RESOURCE_MANAGER_ENDPOINT"]
    return AuthorizationManagementClient(
        credential,
        SUBSCRIPTION_ID,
        api_version="2022-04-01",
        base_url=endpoint,
        credential_scopes=[f"{endpoint}/.default"],
        retry_total=0,
    )


@pytest.fixture
def officer(sandbox: Sandbox, sandbox_env: dict[str, str]) -> SecretClient:
    credential = ManagedIdentityCredential(client_id=sandbox_env["AZURE_CLIENT_ID"])
    return SecretClient(sandbox_env["KEY_VAULT_URI"], credential, verify_challenge_resource=False)


def reader_client(sandbox: Sandbox, client_id: str, secret: str) -> SecretClient:
    """The mail product: an app of the tenant with its own client secret, reading the vault."""
    credential = ClientSecretCredential(
        sandbox.tenant_id,
        client_id,
        secret,
        authority=sandbox.env["ENTRA_AUTHORITY_HOST"],
        disable_instance_discovery=True,
    )
    return SecretClient(sandbox.env["KEY_VAULT_URI"], credential, verify_challenge_resource=False)


def secrets_user(
    principal_id: str, principal_type: str | None = "ServicePrincipal"
) -> RoleAssignmentCreateParameters:
    return RoleAssignmentCreateParameters(
        role_definition_id=SECRETS_USER, principal_id=principal_id, principal_type=principal_type
    )


def test_a_principal_with_secrets_user_on_one_secret_reads_every_version_of_it_and_nothing_else(
    sandbox: Sandbox, arm: AuthorizationManagementClient, officer: SecretClient
) -> None:
    """RA-1, RA-4: Secrets User scoped to one secret lets its principal read that secret (any version)
    and is refused (403 ForbiddenByRbac) on another secret and on listing the vault."""
    first = officer.set_secret("mail-app-a", "doc v1")
    officer.set_secret("mail-app-a", "doc v2")
    officer.set_secret("mail-app-b", "other")
    client_id, principal_id, secret = sandbox.create_client_app("mail product")
    reader = reader_client(sandbox, client_id, secret)

    with pytest.raises(HttpResponseError) as before:
        reader.get_secret("mail-app-a")
    assert before.value.status_code == 403

    scope = f"{VAULT_RESOURCE_ID}/secrets/mail-app-a"
    name = str(uuid.uuid4())
    made = arm.role_assignments.create(scope, name, secrets_user(principal_id))
    assert (made.name, made.scope, made.principal_id) == (name, scope, principal_id)
    assert made.role_definition_id == SECRETS_USER
    assert (
        arm.role_assignments.get(scope, name).id
        == f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
    )

    assert reader.get_secret("mail-app-a").value == "doc v2"
    assert reader.get_secret("mail-app-a", first.properties.version).value == "doc v1"
    for refused in (
        lambda: reader.get_secret("mail-app-b"),
        lambda: list(reader.list_properties_of_secrets()),
    ):
        with pytest.raises(HttpResponseError) as denied:
            refused()
        assert denied.value.status_code == 403
        assert denied.value.error is not None and denied.value.error.innererror == {"code": "ForbiddenByRbac"}
    with pytest.raises(HttpResponseError) as write:
        reader.set_secret("mail-app-a", "overwritten")
    assert write.value.status_code == 403

    # Removed: refused again; deleting it twice is fine (204).
    assert arm.role_assignments.delete(scope, name) is not None
    assert arm.role_assignments.delete(scope, name) is None
    with pytest.raises(HttpResponseError) as after:
        reader.get_secret("mail-app-a")
    assert after.value.status_code == 403


def test_the_same_assignment_again_is_409_role_assignment_exists_whatever_its_name(
    sandbox: Sandbox, arm: AuthorizationManagementClient
) -> None:
    """RA-2: PUT of an assignment that exists (same scope, principal, role) answers 409, also under its
    own name; the same name with other properties is refused."""
    _, principal_id, _ = sandbox.create_client_app("mail product")
    scope = f"{VAULT_RESOURCE_ID}/secrets/mail-app-x"
    name = str(uuid.uuid4())
    arm.role_assignments.create(scope, name, secrets_user(principal_id))
    for again in (name, str(uuid.uuid4())):
        with pytest.raises(ResourceExistsError) as exists:
            arm.role_assignments.create(scope, again, secrets_user(principal_id))
        assert exists.value.error is not None and exists.value.error.code == "RoleAssignmentExists"
    _, other_id, _ = sandbox.create_client_app("another product")
    with pytest.raises(HttpResponseError) as changed:
        arm.role_assignments.create(scope, name, secrets_user(other_id))
    assert changed.value.status_code == 400
    assert changed.value.error is not None and changed.value.error.code == "RoleAssignmentUpdateNotPermitted"
    assert len(sandbox.state.rbac_assignments()) == 1


def test_an_unreplicated_principal_is_principal_not_found_unless_principal_type_is_set(
    sandbox: Sandbox, arm: AuthorizationManagementClient
) -> None:
    """RA-3: without principalType ARM looks the principal up and a new one is not found yet
    (400 PrincipalNotFound); with principalType it skips the lookup."""
    sandbox.faults.set_replication(service_principal_s=600)
    with sandbox.state.lock:
        app = sandbox.state.create_application({"displayName": "brand new"}, owner=None)
        sp = sandbox.state.create_service_principal(app, owner=None)
    scope = f"{VAULT_RESOURCE_ID}/secrets/mail-app-y"
    with pytest.raises(HttpResponseError) as missing:
        arm.role_assignments.create(scope, str(uuid.uuid4()), secrets_user(sp.id, principal_type=None))
    assert missing.value.status_code == 400
    assert missing.value.error is not None and missing.value.error.code == "PrincipalNotFound"
    made = arm.role_assignments.create(scope, str(uuid.uuid4()), secrets_user(sp.id))
    assert made.principal_type == "ServicePrincipal"


def test_the_identity_may_assign_only_what_its_condition_allows(
    sandbox: Sandbox, arm: AuthorizationManagementClient
) -> None:
    """RA-5: a role outside the condition, or an identity without the delegation, is 403
    AuthorizationFailed, and nothing is made."""
    _, principal_id, _ = sandbox.create_client_app("mail product")
    scope = f"{VAULT_RESOURCE_ID}/secrets/mail-app-z"
    officer_role = SECRETS_USER.replace(KEY_VAULT_SECRETS_USER_ROLE, KEY_VAULT_SECRETS_OFFICER_ROLE)
    with pytest.raises(HttpResponseError) as wrong_role:
        arm.role_assignments.create(
            scope,
            str(uuid.uuid4()),
            RoleAssignmentCreateParameters(
                role_definition_id=officer_role, principal_id=principal_id, principal_type="ServicePrincipal"
            ),
        )
    assert wrong_role.value.status_code == 403
    assert wrong_role.value.error is not None and wrong_role.value.error.code == "AuthorizationFailed"
    sandbox.state.allow_role_assignments(sandbox.identity.id, None)
    with pytest.raises(HttpResponseError) as no_delegation:
        arm.role_assignments.create(scope, str(uuid.uuid4()), secrets_user(principal_id))
    assert no_delegation.value.status_code == 403
    assert sandbox.state.rbac_assignments() == []


def test_a_secret_scoped_assignment_takes_effect_after_the_rbac_delay(
    sandbox: Sandbox, arm: AuthorizationManagementClient, officer: SecretClient
) -> None:
    """RA-4 with the Key Vault RBAC delay (vault_role_s): refused until it has passed."""
    officer.set_secret("mail-app-d", "doc")
    client_id, principal_id, secret = sandbox.create_client_app("mail product")
    reader = reader_client(sandbox, client_id, secret)
    sandbox.faults.set_replication(vault_role_s=600)
    arm.role_assignments.create(
        f"{VAULT_RESOURCE_ID}/secrets/mail-app-d", str(uuid.uuid4()), secrets_user(principal_id)
    )
    with pytest.raises(HttpResponseError) as early:
        reader.get_secret("mail-app-d")
    assert early.value.status_code == 403
    sandbox.faults.set_replication(vault_role_s=0)
    assert reader.get_secret("mail-app-d").value == "doc"


def test_arm_error_envelope_and_authentication(sandbox: Sandbox) -> None:
    """RA-5: ARM's envelope is {"error": {"code", "message"}}; no token is 401 AuthenticationFailed."""
    url = (
        f"{sandbox.env['RESOURCE_MANAGER_ENDPOINT']}{VAULT_RESOURCE_ID}/secrets/s/providers/"
        f"Microsoft.Authorization/roleAssignments/{uuid.uuid4()}?api-version=2022-04-01"
    )
    answer = httpx.get(url, verify=sandbox.client_ssl_context())
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "AuthenticationFailed"
    token = sandbox.mint_token_for_tests(resource="arm")
    missing = httpx.get(
        url, headers={"Authorization": f"Bearer {token}"}, verify=sandbox.client_ssl_context()
    )
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"code", "message"}
    assert missing.json()["error"]["code"] == "RoleAssignmentNotFound"
