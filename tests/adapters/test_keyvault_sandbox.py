"""CredentialVault against the sandbox vault (challenge auth, RBAC, versions, soft delete)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from onboarding.adapters.keyvault import CredentialVault
from onboarding.errors import PermissionDeniedError, TransientError
from onboarding.settings import Settings
from sandbox import Sandbox, catalog

NAME = "mail-app-onb-1"
EXPIRES = datetime(2027, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def vault(settings: Settings, credential: Any) -> AsyncIterator[CredentialVault]:
    v = CredentialVault(settings, credential, polling_interval=0.05)
    yield v
    await v.close()


async def put(vault: CredentialVault, value: str, **tags: str) -> str:
    return await vault.put(
        NAME, value, content_type="application/json", expires_on=EXPIRES, tags={"keyId": "k1", **tags}
    )


async def test_put_get_versions(vault: CredentialVault) -> None:
    assert await vault.get(NAME) is None
    first = await put(vault, '{"clientSecret":"one"}')
    second = await put(vault, '{"clientSecret":"two"}', appId="a1")
    assert first != second
    latest = await vault.get(NAME)
    assert latest is not None
    assert (latest.value, latest.version, latest.tags, latest.expires_on) == (
        '{"clientSecret":"two"}',
        second,
        {"keyId": "k1", "appId": "a1"},
        EXPIRES,
    )
    assert "two" not in repr(latest)
    older = await vault.get(NAME, first)
    assert older is not None and older.value == '{"clientSecret":"one"}'


async def test_delete_is_idempotent_and_a_deleted_name_is_recovered_on_put(
    sb: Sandbox, vault: CredentialVault
) -> None:
    await put(vault, "v1")
    await vault.delete(NAME)
    await vault.delete(NAME)  # already deleted
    await vault.delete("never-existed")
    assert await vault.get(NAME) is None
    version = await put(vault, "v2")  # 409 "deleted but recoverable": recover, then write
    stored = await vault.get(NAME)
    assert stored is not None and (stored.value, stored.version) == ("v2", version)


async def test_without_the_role_the_fix_names_it(sb: Sandbox, settings: Settings, credential: Any) -> None:
    sb.set_identity_roles(vault_role=catalog.VAULT_SECRETS_USER)  # may read, not write
    vault = CredentialVault(settings, credential)
    with pytest.raises(PermissionDeniedError) as caught:
        await put(vault, "value-that-must-not-leak")
    assert "Key Vault Secrets Officer" in caught.value.fix
    assert "value-that-must-not-leak" not in str(caught.value)
    await vault.close()


async def test_a_deleted_name_without_recover_permission_is_explained(
    sb: Sandbox, settings: Settings, credential: Any, vault: CredentialVault
) -> None:
    await put(vault, "v1")
    await vault.delete(NAME)
    sb.set_identity_roles(vault_role=catalog.VAULT_SECRETS_USER)
    other = CredentialVault(settings, credential)
    with pytest.raises(PermissionDeniedError) as caught:
        await put(other, "v2")
    assert NAME in str(caught.value)
    await other.close()


async def test_an_unavailable_vault_is_transient(sb: Sandbox, settings: Settings, credential: Any) -> None:
    vault = CredentialVault(settings, credential, retry_total=1)
    await vault.get(NAME)  # authenticated before the outage
    sb.faults.keyvault.configure(error_rate=1.0, errors=(503,), retry_after=0)
    with pytest.raises(TransientError):
        await put(vault, "v1")
    sb.faults.keyvault.configure(errors=("drop",))
    with pytest.raises(TransientError):
        await vault.get(NAME)
    await vault.close()
