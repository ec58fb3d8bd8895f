"""The callback signing key, read from Key Vault with the operator's own credential.

The function app holds ``LINK_SIGNING_KEY`` as a Key Vault reference to the secret ``link-signing-key``
(infra/main.bicep). Receivers get the key derived from it (``onboarding.links.callback_key``), never
the signing key itself; ``python -m onboarding.links callback-key`` derives it from the app settings,
which only the managed identity can resolve, so the CLI reads the vault as the signed-in operator.
"""

from __future__ import annotations

from http import HTTPStatus

import httpx

from cli.api import CliError, ExitCode, TokenSource
from onboarding.links import callback_key

# A secret's name, not a secret: infra/main.bicep, linkSigningKeySecretName.
LINK_SIGNING_KEY_SECRET = "link-signing-key"  # noqa: S105
# The built-in role that may read secret values (Microsoft Learn, "Azure built-in roles for Security",
# Key Vault Secrets User: Microsoft.KeyVault/vaults/secrets/getSecret/action).
READER_ROLE = "Key Vault Secrets User"


def read_callback_key(
    vault_url: str, credential: TokenSource, secret_name: str = LINK_SIGNING_KEY_SECRET
) -> str:
    """The hex callback key, or a ``CliError`` naming what the operator lacks."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
    from azure.keyvault.secrets import SecretClient

    # The same rule as the app's vault adapter (imported here: it is slow to import for every command).
    from onboarding.adapters.keyvault import _is_private_host as is_private_host

    where = f"secret '{secret_name}' in {vault_url}"
    host = httpx.URL(vault_url).host
    client = SecretClient(
        vault_url,
        credential,  # type: ignore[arg-type]
        verify_challenge_resource=not is_private_host(host),
    )
    try:
        value = client.get_secret(secret_name).value
    except ClientAuthenticationError as exc:
        if getattr(exc, "status_code", None) is None:  # no token at all (azure-identity found none)
            raise CliError(
                f"callback-key: could not get an Entra token for Key Vault: sign in with `az login` "
                f"(or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET) to read {where}",
                ExitCode.AUTH,
            ) from None
        raise _refused(exc.status_code, where) from None
    except ServiceRequestError:
        raise CliError(f"callback-key: cannot reach {vault_url}", ExitCode.UNREACHABLE) from None
    except HttpResponseError as exc:
        raise _refused(exc.status_code, where) from None
    finally:
        client.close()
    if not value:
        raise CliError(f"callback-key: {where} has no value", ExitCode.FAILED)
    return callback_key(value.encode()).hex()


def _refused(status: int | None, where: str) -> CliError:
    if status == HTTPStatus.FORBIDDEN:
        return CliError(
            f"callback-key: Key Vault denied reading {where} (403): your identity needs the "
            f"'{READER_ROLE}' role (or higher) on the vault",
            ExitCode.AUTH,
            status,
        )
    if status == HTTPStatus.UNAUTHORIZED:
        return CliError(
            f"callback-key: Key Vault did not accept your token (401) for {where}: sign in to the vault's tenant",
            ExitCode.AUTH,
            status,
        )
    if status == HTTPStatus.NOT_FOUND:
        return CliError(f"callback-key: {where} does not exist (404)", ExitCode.NOT_FOUND, status)
    return CliError(f"callback-key: Key Vault answered {status} for {where}", ExitCode.FAILED, status)
