"""Key Vault certificates: where a certificate onboarding's credential is made and kept.

Key Vault creates the key pair itself from a policy (RSA, self-signed issuer), so the private key is
born in the vault; a certificate's private key is readable only as the secret of the same name and
version (docs/sandbox-facts.md, "Key Vault certificates"). This adapter hands the public part to its
caller as data and the private key, as PEM text, only to the caller that asks for it by version.

Errors map as the secrets adapter's do (``keyvault.vault_error``); the function app's identity needs
Key Vault Certificates Officer on the vault as well as Secrets Officer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from onboarding.adapters.keyvault import _inner_code, _is_private_host, vault_error
from onboarding.errors import OnboardingError, PermissionDeniedError, TransientError
from onboarding.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

CERTIFICATES_ROLE_FIX = (
    "Give the function app's managed identity the role Key Vault Certificates Officer on the vault."
)
# PEM rather than PKCS#12: the mail product's libraries (azure-identity, msal) read it as it is, and
# it needs no password (Key Vault exports a PFX without one).
PEM_CONTENT_TYPE = "application/x-pem-file"
KEY_SIZE = 2048  # the least Microsoft accepts for an app's certificate; more costs every sign-in
# Polls of the create operation before the activity stops waiting: a self-signed certificate is
# issued in seconds, and a creation still pending is picked up by the step's next run.
CREATE_POLLS = 10
# On top of the polls, the requests' own time (a token, the create or delete call, the vault's key
# generation): a bound of polls alone cut a busy host's first request short, and a cut-off delete
# may never have been sent.
REQUEST_ALLOWANCE_SECONDS = 30.0


@dataclass(frozen=True)
class IssuedCertificate:
    version: str
    cer: bytes = field(repr=False)
    thumbprint: str
    not_before: datetime
    expires_on: datetime
    tags: dict[str, str]


def _issued(certificate: Any) -> IssuedCertificate:
    props = certificate.properties
    cer = bytes(certificate.cer or b"")
    return IssuedCertificate(
        version=str(props.version),
        cer=cer,
        thumbprint=bytes(props.x509_thumbprint or b"").hex().upper(),
        not_before=props.not_before or datetime.now(UTC),
        expires_on=props.expires_on or datetime.now(UTC),
        tags=dict(props.tags or {}),
    )


class CertificateVault:
    def __init__(
        self,
        settings: Settings,
        credential: AsyncTokenCredential,
        *,
        retry_total: int = 3,
        polling_interval: float = 1.0,
    ) -> None:
        from azure.keyvault.certificates.aio import CertificateClient
        from azure.keyvault.secrets.aio import SecretClient

        from onboarding.adapters._tls import azure_transport_options

        self._polling = polling_interval
        self._wait_bound = REQUEST_ALLOWANCE_SECONDS + polling_interval * CREATE_POLLS
        host = urlsplit(settings.key_vault_uri).hostname or ""
        options: dict[str, Any] = {
            "vault_url": settings.key_vault_uri,
            "credential": credential,
            "verify_challenge_resource": not _is_private_host(host),
            "retry_total": retry_total,
            "retry_backoff_factor": 0.5,
            "retry_backoff_max": 20,
            **azure_transport_options(),
        }
        self._certificates = CertificateClient(**options)
        self._secrets = SecretClient(**options)

    async def create(
        self, name: str, *, subject: str, validity_months: int, tags: dict[str, str]
    ) -> IssuedCertificate:
        """A new version of certificate ``name``, self-signed, waited for (a bounded number of polls).

        Not idempotent by itself: the caller tags the version and looks for it (``latest``) first. A
        creation already pending for the name (409) is transient: its version appears shortly."""
        from azure.keyvault.certificates import CertificatePolicy, KeyVaultCertificate, WellKnownIssuerNames

        policy = CertificatePolicy(
            issuer_name=WellKnownIssuerNames.self,
            subject=subject,
            key_type="RSA",
            key_size=KEY_SIZE,
            reuse_key=False,
            exportable=True,  # the mail product signs with the key outside the vault
            content_type=PEM_CONTENT_TYPE,
            validity_in_months=validity_months,
        )
        action = f"create certificate {name}"
        try:
            made = await asyncio.wait_for(
                self._certificates.create_certificate(
                    name, policy, tags=tags, _polling_interval=self._polling
                ),
                self._wait_bound,
            )
        except TimeoutError:
            raise self._still_pending(name) from None
        except Exception as exc:
            raise self._error(exc, action) from None
        if not isinstance(made, KeyVaultCertificate):  # the operation ended without a certificate
            raise OnboardingError(
                f"Key Vault did not issue certificate {name} (its creation ended {made.status}).",
                fix="See the certificate's pending operation in the vault, then try again.",
                code="certificate_not_issued",
            )
        return _issued(made)

    def _still_pending(self, name: str) -> TransientError:
        return TransientError(
            f"Key Vault is still creating certificate {name}.",
            fix="Wait a minute; the step is retried.",
            code="certificate_pending",
        )

    def _error(self, exc: BaseException, action: str) -> OnboardingError:
        from azure.core.exceptions import ResourceExistsError

        if isinstance(exc, ResourceExistsError) and not _inner_code(exc):
            # Key Vault refuses a create while another creation of the name is in progress.
            return TransientError(
                f"Key Vault is already creating a version of the certificate ({action}).",
                fix="Wait a minute; the step is retried.",
                code="certificate_pending",
            )
        error = vault_error(exc, action)
        if isinstance(error, PermissionDeniedError) or error.code == "ForbiddenByRbac":
            error.fix = CERTIFICATES_ROLE_FIX
        return error

    async def latest(self, name: str) -> IssuedCertificate | None:
        """The certificate's current version, or None when the vault has none by that name."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            certificate = await self._certificates.get_certificate(name)
        except ResourceNotFoundError:
            return None
        except Exception as exc:
            raise self._error(exc, f"read certificate {name}") from None
        return _issued(certificate)

    async def private_pem(self, name: str, version: str) -> str:
        """The version's private key and certificate as PEM text: the secret Key Vault keeps for it."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            secret = await self._secrets.get_secret(name, version)
        except ResourceNotFoundError:
            raise TransientError(
                f"Key Vault has no private key for certificate {name} version {version} yet.",
                fix="Wait a minute; the step is retried.",
                code="certificate_pending",
            ) from None
        except Exception as exc:
            raise vault_error(exc, f"read the private key of certificate {name}") from None
        if secret.properties.content_type != PEM_CONTENT_TYPE or not secret.value:
            raise OnboardingError(
                f"Certificate {name} version {version} is not kept as PEM in Key Vault.",
                fix="Rotate to a new certificate: the onboarding makes PEM certificates only.",
                code="certificate_format",
            )
        return secret.value

    async def delete(self, name: str) -> None:
        """Soft delete (recoverable while the vault's retention lasts), its private key with it; none
        by that name, or one already being deleted, counts as done. Not waited for: the vault
        finishes a soft delete it has accepted without us."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            await asyncio.wait_for(
                self._certificates.delete_certificate(name, _polling_interval=self._polling),
                self._wait_bound,
            )
        except (ResourceNotFoundError, TimeoutError):
            return
        except Exception as exc:
            error = self._error(exc, f"delete certificate {name}")
            if error.code != "ObjectIsBeingDeleted":
                raise error from None

    async def close(self) -> None:
        await self._certificates.close()
        await self._secrets.close()
