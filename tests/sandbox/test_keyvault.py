"""Key Vault stand-in driven by azure-keyvault-secrets, sync and async, with the managed identity."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets.aio import SecretClient as AsyncSecretClient

from sandbox import Sandbox
from sandbox.catalog import VAULT_SECRETS_USER


@pytest.fixture
def secrets(sandbox: Sandbox, sandbox_env: dict[str, str]) -> SecretClient:
    credential = ManagedIdentityCredential(client_id=sandbox_env["AZURE_CLIENT_ID"])
    return SecretClient(sandbox_env["KEY_VAULT_URI"], credential, verify_challenge_resource=False)


def test_set_get_versions_list_and_update(secrets: SecretClient, sandbox: Sandbox) -> None:
    expires = datetime(2027, 1, 1, tzinfo=UTC)
    first = secrets.set_secret(
        "onb-1", "v1", content_type="application/json", tags={"keyId": "k1"}, expires_on=expires
    )
    second = secrets.set_secret("onb-1", "v2")
    assert (first.properties.content_type, first.properties.tags, first.properties.expires_on) == (
        "application/json",
        {"keyId": "k1"},
        expires,
    )
    assert secrets.get_secret("onb-1").value == "v2"
    assert secrets.get_secret("onb-1", first.properties.version).value == "v1"
    versions = {p.version for p in secrets.list_properties_of_secret_versions("onb-1")}
    assert versions == {first.properties.version, second.properties.version}
    assert [p.name for p in secrets.list_properties_of_secrets()] == ["onb-1"]
    updated = secrets.update_secret_properties(
        "onb-1", second.properties.version, tags={"a": "b"}, enabled=False
    )
    assert updated.tags == {"a": "b"} and updated.enabled is False
    with pytest.raises(HttpResponseError) as disabled:
        secrets.get_secret("onb-1")
    assert disabled.value.status_code == 403
    [stored] = sandbox.state.secrets()
    assert [v.value for v in stored.versions] == ["v1", "v2"]


def test_the_list_shows_each_live_secrets_current_version_and_a_versioned_tag_update_touches_only_that_version(
    secrets: SecretClient,
) -> None:
    """What the expiry watch relies on: the vault-wide list carries the current version's expiry, tags
    and content type without the value; an update names its version and replaces that version's tags;
    a soft-deleted secret is not listed."""
    old_expiry, new_expiry = datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 6, 1, tzinfo=UTC)
    old = secrets.set_secret("onb-w", "v1", tags={"keyId": "k1"}, expires_on=old_expiry, content_type="c")
    secrets.set_secret("onb-w", "v2", tags={"keyId": "k2"}, expires_on=new_expiry, content_type="c")
    secrets.set_secret("onb-gone", "v", expires_on=old_expiry)
    secrets.begin_delete_secret("onb-gone").result()
    secrets.update_secret_properties(
        "onb-w", old.properties.version, tags={"keyId": "k1", "expiryWarned": "7"}
    )
    [listed] = list(secrets.list_properties_of_secrets())
    assert (listed.name, listed.expires_on, listed.tags, listed.content_type) == (
        "onb-w",
        new_expiry,
        {"keyId": "k2"},
        "c",
    )
    assert not hasattr(listed, "value")
    by_version = {p.version: p.tags for p in secrets.list_properties_of_secret_versions("onb-w")}
    assert by_version[old.properties.version] == {"keyId": "k1", "expiryWarned": "7"}


def test_soft_delete_blocks_the_name_until_recovered_or_purged(
    secrets: SecretClient, sandbox: Sandbox
) -> None:
    secrets.set_secret("onb-2", "value")
    deleted = secrets.begin_delete_secret("onb-2").result()
    assert deleted.recovery_id and deleted.deleted_date is not None
    with pytest.raises(ResourceNotFoundError):
        secrets.get_secret("onb-2")
    with pytest.raises(ResourceExistsError) as conflict:
        secrets.set_secret("onb-2", "again")
    assert conflict.value.status_code == 409 and "deleted but recoverable" in str(conflict.value)
    assert [d.name for d in secrets.list_deleted_secrets()] == ["onb-2"]
    secrets.begin_recover_deleted_secret("onb-2").result()
    assert secrets.get_secret("onb-2").value == "value"
    secrets.begin_delete_secret("onb-2").result()
    secrets.purge_deleted_secret("onb-2")
    assert sandbox.state.secrets() == []
    secrets.set_secret("onb-2", "fresh")
    with pytest.raises(ResourceNotFoundError) as missing:
        secrets.get_secret("never-there")
    assert missing.value.error is not None and missing.value.error.code == "SecretNotFound"


def test_callers_without_a_vault_role_are_forbidden(secrets: SecretClient, sandbox: Sandbox) -> None:
    sandbox.set_identity_roles(vault_role=VAULT_SECRETS_USER)
    with pytest.raises(HttpResponseError) as refused:
        secrets.set_secret("onb-3", "value")
    assert refused.value.status_code == 403 and "ForbiddenByRbac" in str(refused.value)
    sandbox.set_identity_roles(vault_role="")
    with pytest.raises(HttpResponseError) as no_role:
        secrets.get_secret("onb-3")
    assert no_role.value.status_code == 403


def test_the_challenge_names_the_sandbox_authority_and_vault(sandbox: Sandbox) -> None:
    import httpx

    response = httpx.get(
        f"{sandbox.env['KEY_VAULT_URI']}secrets/x?api-version=7.5", verify=sandbox.client_ssl_context()
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{sandbox.env["ENTRA_AUTHORITY_HOST"]}/{sandbox.tenant_id}", '
        f'resource="{sandbox.env["KEY_VAULT_URI"].rstrip("/")}"'
    )


async def test_async_client_round_trip(sandbox: Sandbox, sandbox_env: dict[str, str]) -> None:
    credential = AsyncManagedIdentityCredential(client_id=sandbox_env["AZURE_CLIENT_ID"])
    # Trusts the sandbox CA through sandbox_env (Sandbox.trust_in_process), as an app would through SSL_CERT_FILE.
    client = AsyncSecretClient(sandbox_env["KEY_VAULT_URI"], credential, verify_challenge_resource=False)
    async with client, credential:
        await client.set_secret("onb-async", "value", tags={"t": "1"})
        assert (await client.get_secret("onb-async")).value == "value"
        assert [p.name async for p in client.list_properties_of_secrets()] == ["onb-async"]
        await client.delete_secret("onb-async")
        with pytest.raises(ResourceExistsError):
            await client.set_secret("onb-async", "again")
        await client.recover_deleted_secret("onb-async")
        await client.update_secret_properties("onb-async", content_type="text/plain")
        assert (await client.get_secret("onb-async")).properties.content_type == "text/plain"
        await client.delete_secret("onb-async")
        await client.purge_deleted_secret("onb-async")
        with pytest.raises(ResourceNotFoundError):
            await client.get_secret("onb-async")


def test_a_soft_delete_or_recovery_under_way_answers_409_with_its_inner_code(
    secrets: SecretClient, sandbox: Sandbox
) -> None:
    secrets.set_secret("onb-4", "value")
    secrets.begin_delete_secret("onb-4").result()
    sandbox.faults.set_replication(vault_delete_s=3600)
    with pytest.raises(ResourceExistsError) as deleting:
        secrets.set_secret("onb-4", "again")
    error = deleting.value.error
    assert error is not None and (error.code, error.message) == (
        "Conflict",
        "Secret is currently being deleted.",
    )
    assert error.innererror == {"code": "ObjectIsBeingDeleted"}
    sandbox.faults.set_replication(vault_delete_s=0, vault_recover_s=3600)
    secrets.begin_recover_deleted_secret("onb-4")  # started; not waited for
    with pytest.raises(ResourceExistsError) as recovering:
        secrets.set_secret("onb-4", "again")
    assert recovering.value.error is not None
    assert recovering.value.error.innererror == {"code": "ObjectIsBeingRecovered"}
    with pytest.raises(ResourceNotFoundError):  # not readable until the recovery completes
        secrets.get_secret("onb-4")
    sandbox.faults.set_replication(vault_recover_s=0)
    assert secrets.set_secret("onb-4", "again").value == "again"


def test_a_new_vault_role_assignment_is_refused_until_it_propagates(
    secrets: SecretClient, sandbox: Sandbox
) -> None:
    sandbox.faults.set_replication(vault_role_s=600)
    sandbox.set_identity_roles(vault_role="")
    sandbox.state.set_vault_role(sandbox.identity.id, "Key Vault Secrets Officer")
    with pytest.raises(HttpResponseError) as refused:
        secrets.set_secret("onb-5", "value")
    assert refused.value.status_code == 403 and refused.value.error is not None
    assert refused.value.error.innererror == {"code": "ForbiddenByRbac"}
    sandbox.faults.set_replication(vault_role_s=0)
    assert secrets.set_secret("onb-5", "value").value == "value"
