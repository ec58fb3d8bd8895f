"""SecretAccess (azure-mgmt-authorization) against the sandbox's Azure Resource Manager: the mail
product's Key Vault Secrets User on one secret, made and removed idempotently, and the refusals the
steps classify."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from onboarding.adapters.rbac import KEY_VAULT_SECRETS_USER, SecretAccess, assignment_name, secret_scope
from onboarding.errors import InvalidRequestError, PermissionDeniedError, TransientError
from onboarding.settings import Settings
from sandbox import Sandbox

NAME = "mail-app-onb-1"


@pytest.fixture
async def access(settings: Settings, credential: Any) -> AsyncIterator[SecretAccess]:
    a = SecretAccess(settings, credential, retry_total=0)
    yield a
    await a.close()


async def test_a_grant_names_one_assignment_on_the_secret_and_a_rerun_finds_it(
    sb: Sandbox, settings: Settings, access: SecretAccess
) -> None:
    _, principal_id, _ = sb.create_client_app("mail product")
    name = await access.grant_secret_reader(NAME, principal_id)
    assert await access.grant_secret_reader(NAME, principal_id) == name  # 409 RoleAssignmentExists: done
    [made] = sb.state.rbac_assignments()
    scope = secret_scope(settings.key_vault_resource_id, NAME)
    assert (made.name, made.scope, made.principal_id, made.principal_type) == (
        assignment_name(scope, principal_id),
        scope,
        principal_id,
        "ServicePrincipal",
    )
    assert made.role_guid == KEY_VAULT_SECRETS_USER
    # Only the request's principal and secret: another secret or principal is another assignment.
    assert (
        assignment_name(secret_scope(settings.key_vault_resource_id, "mail-app-other"), principal_id) != name
    )

    assert await access.remove_secret_reader(NAME, principal_id) is True
    assert await access.remove_secret_reader(NAME, principal_id) is False  # already gone: done
    assert sb.state.rbac_assignments() == []


async def test_an_identity_without_the_delegation_is_told_which_role_it_needs(
    sb: Sandbox, access: SecretAccess
) -> None:
    sb.state.allow_role_assignments(sb.identity.id, None)
    _, principal_id, _ = sb.create_client_app("mail product")
    with pytest.raises(PermissionDeniedError) as refused:
        await access.grant_secret_reader(NAME, principal_id)
    assert refused.value.code == "AuthorizationFailed"
    assert "Role Based Access Control Administrator" in refused.value.fix
    assert "does not have authorization" not in str(refused.value)  # ARM's own text stays out


async def test_throttling_is_transient(sb: Sandbox, access: SecretAccess) -> None:
    sb.faults.arm.configure(error_rate=1.0, errors=(429,))
    with pytest.raises(TransientError):
        await access.grant_secret_reader(NAME, "5b1c6f0e-0000-4000-8000-000000000001")


async def test_without_the_vault_resource_id_nothing_is_asked(
    settings: Settings, credential: Any, sb: Sandbox
) -> None:
    access = SecretAccess(replace(settings, key_vault_resource_id=""), credential)
    try:
        with pytest.raises(InvalidRequestError) as missing:
            await access.grant_secret_reader(NAME, "5b1c6f0e-0000-4000-8000-000000000001")
    finally:
        await access.close()
    assert "KEY_VAULT_RESOURCE_ID" in missing.value.fix
    assert [e for e in sb.state.request_log() if e.service == "arm"] == []
