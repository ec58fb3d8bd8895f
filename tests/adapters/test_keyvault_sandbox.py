"""CredentialVault against the sandbox vault (challenge auth, RBAC, versions, soft delete)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from onboarding.adapters.keyvault import CredentialVault
from onboarding.errors import TransientError
from onboarding.settings import Settings
from sandbox import Sandbox, catalog
from tests.adapters.conftest import RecordingSleep

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
    vault = CredentialVault(settings, credential, sleep=RecordingSleep())
    # Key Vault answers ForbiddenByRbac alike for a missing role and one still propagating: retried
    # (Durable retries the step), and the fix names both causes.
    with pytest.raises(TransientError) as caught:
        await put(vault, "value-that-must-not-leak")
    assert caught.value.code == "ForbiddenByRbac"
    assert "Key Vault Secrets Officer" in caught.value.fix and "10 minutes" in caught.value.fix
    assert "value-that-must-not-leak" not in str(caught.value)
    await vault.close()


async def test_a_deleted_name_without_recover_permission_is_explained(
    sb: Sandbox, settings: Settings, credential: Any, vault: CredentialVault
) -> None:
    await put(vault, "v1")
    await vault.delete(NAME)
    sb.set_identity_roles(vault_role=catalog.VAULT_SECRETS_USER)
    other = CredentialVault(settings, credential, sleep=RecordingSleep())
    with pytest.raises(TransientError) as caught:
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


async def test_a_role_assignment_still_propagating_is_ridden_out_not_reported_as_missing(
    sb: Sandbox, settings: Settings, credential: Any
) -> None:
    # Azure RBAC applies a new role assignment within up to 10 minutes; meanwhile 403 ForbiddenByRbac.
    sb.faults.set_replication(vault_role_s=600)
    sb.set_identity_roles(vault_role="")
    sb.state.set_vault_role(sb.identity.id, catalog.VAULT_SECRETS_OFFICER)  # assigned just now
    vault = CredentialVault(settings, credential, sleep=RecordingSleep())
    try:
        with pytest.raises(TransientError) as caught:
            await put(vault, "v1")
        assert caught.value.code == "ForbiddenByRbac" and "10 minutes" in caught.value.fix
        sb.faults.set_replication(vault_role_s=0)  # propagated: the next run of the step succeeds
        assert await put(vault, "v1")
    finally:
        await vault.close()


async def test_a_name_still_being_deleted_is_waited_for_then_recovered_and_written(
    sb: Sandbox, settings: Settings, credential: Any, vault: CredentialVault
) -> None:
    await put(vault, "v1")
    await vault.delete(NAME)
    sb.faults.set_replication(vault_delete_s=3600)  # the soft delete is still under way
    sleep = RecordingSleep(on_sleep=lambda: sb.faults.set_replication(vault_delete_s=0))
    writer = CredentialVault(settings, credential, polling_interval=0.05, sleep=sleep)
    try:
        version = await put(writer, "v2")
    finally:
        await writer.close()
    assert len(sleep.waits) == 1  # one 409 ObjectIsBeingDeleted, waited out, then recovered and written
    stored = await vault.get(NAME)
    assert stored is not None and (stored.value, stored.version) == ("v2", version)


def test_a_409_while_a_secret_is_being_recovered_is_transient() -> None:
    from azure.core.exceptions import ResourceExistsError
    from azure.core.rest import HttpRequest

    from onboarding.adapters.keyvault import vault_error

    class Response:
        status_code, reason, headers = 409, "Conflict", {}
        request = HttpRequest("PUT", "https://vault.example/secrets/x")

        def text(self) -> str:
            return (
                '{"error":{"code":"Conflict","message":"Secret is currently being recovered.",'
                '"innererror":{"code":"ObjectIsBeingRecovered"}}}'
            )

    error = vault_error(ResourceExistsError(response=Response()), "store secret x")
    assert isinstance(error, TransientError) and error.code == "ObjectIsBeingRecovered"


async def test_a_soft_delete_the_vault_is_slow_to_finish_counts_as_done_without_waiting_it_out(
    sb: Sandbox, vault: CredentialVault
) -> None:
    # The vault accepted the DELETE; finishing the soft delete takes it a while (the SDK's poller
    # would poll until then). Undoing an onboarding needs only the acceptance, and an activity must
    # never poll without bound: the tenant's time may not be passing as fast as it waits.
    await put(vault, "v1")
    sb.faults.set_replication(vault_delete_s=3600)
    await vault.delete(NAME)
    assert await vault.get(NAME) is None
    await vault.delete(NAME)  # again, while the vault still finishes it: still done


async def test_a_recovery_the_vault_is_slow_to_finish_is_transient_not_an_endless_wait(
    sb: Sandbox, settings: Settings, credential: Any, vault: CredentialVault
) -> None:
    await put(vault, "v1")
    await vault.delete(NAME)
    sb.faults.set_replication(vault_recover_s=3600)
    writer = CredentialVault(settings, credential, polling_interval=0.05, sleep=RecordingSleep())
    try:
        with pytest.raises(TransientError) as caught:
            await put(writer, "v2")
    finally:
        await writer.close()
    assert caught.value.code == "ObjectIsBeingRecovered"
    sb.faults.set_replication(vault_recover_s=0)  # recovered: the step's next run writes it
    assert await put(vault, "v2")
