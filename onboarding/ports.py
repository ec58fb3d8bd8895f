"""The adapters as the steps see them: one Protocol per external system.

The steps (``onboarding.steps``, ``onboarding.expiry``) are typed against these, not against the
adapter classes, so the real adapters (``onboarding.adapters.*``) and the unit tests' fakes
(``tests.unit.fakes``) are two implementations of one contract, and mypy checks both: a fake that
drifts from its adapter (a missing method, a keyword the steps pass) fails ``make lint`` instead of
a step test at run time. Records the adapters hand back are Protocols too, with read-only fields,
so the steps depend on the fields they read and not on a class.

Nothing here imports an SDK at run time (cold start: see ``onboarding.services``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from onboarding.domain import AppRegistration, ExchangeResource
from onboarding.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from onboarding.adapters.mailprobe import LoginResult
    from onboarding.domain import Protocol as MailProtocol

    # Identity: the function app's managed identity is any azure-core async token credential (itself a
    # Protocol: ``get_token(*scopes)`` and ``close()``); every adapter takes one.
    IdentityPort = AsyncTokenCredential


# --- records ----------------------------------------------------------------------------------------


class PasswordRecord(Protocol):
    """A password credential on an app registration, as listed (no value)."""

    @property
    def key_id(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def end_date_time(self) -> datetime: ...


class NewPasswordRecord(Protocol):
    """A password credential just added: the only time its value is seen."""

    @property
    def key_id(self) -> str: ...
    @property
    def secret_text(self) -> str: ...
    @property
    def end_date_time(self) -> datetime: ...


class KeyCredentialRecord(Protocol):
    """A certificate (key credential) on an app registration, as listed: its public part only."""

    @property
    def key_id(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def end_date_time(self) -> datetime: ...


class IssuedCertificateRecord(Protocol):
    """A Key Vault certificate version: its public part and when it is valid (never the private key)."""

    @property
    def version(self) -> str: ...
    @property
    def cer(self) -> bytes: ...  # the X.509 certificate, DER
    @property
    def thumbprint(self) -> str: ...  # SHA-1 of ``cer``, hex: what Entra's x5t names
    @property
    def not_before(self) -> datetime: ...
    @property
    def expires_on(self) -> datetime: ...
    @property
    def tags(self) -> Mapping[str, str]: ...


class RoleAssignmentRecord(Protocol):
    @property
    def resource_id(self) -> str: ...
    @property
    def app_role_id(self) -> str: ...


class CredentialRecord(Protocol):
    """A password or certificate credential on an app registration, as listed (no value)."""

    @property
    def key_id(self) -> str: ...
    @property
    def end_date_time(self) -> datetime: ...


class AppCredentialsRecord(Protocol):
    """An app registration found by its application id, with its credentials (diagnosis)."""

    @property
    def object_id(self) -> str: ...
    @property
    def credentials(self) -> Sequence[CredentialRecord]: ...


class StoredSecretRecord(Protocol):
    @property
    def value(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def expires_on(self) -> datetime | None: ...


class SecretInfoRecord(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def expires_on(self) -> datetime | None: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def content_type(self) -> str | None: ...


# --- adapters ---------------------------------------------------------------------------------------


class GraphPort(Protocol):
    """Microsoft Graph (``onboarding.adapters.graph.GraphDirectory``)."""

    async def get_resource(self, app_id: str, role_values: Sequence[str]) -> ExchangeResource: ...

    async def upsert_application(
        self,
        *,
        unique_name: str,
        display_name: str,
        resource: ExchangeResource,
        resource_app_id: str,
        role_values: Sequence[str],
        redirect_uris: Sequence[str],
        notes: str,
        tags: Sequence[str],
    ) -> AppRegistration: ...

    async def find_application(self, unique_name: str) -> AppRegistration | None: ...

    async def delete_application(self, object_id: str) -> None: ...
    async def purge_deleted_item(self, object_id: str) -> None: ...
    async def list_passwords(self, object_id: str) -> Sequence[PasswordRecord]: ...
    async def add_password(
        self, object_id: str, display_name: str, end_date_time: datetime
    ) -> NewPasswordRecord: ...
    async def remove_password(self, object_id: str, key_id: str) -> None: ...
    async def list_key_credentials(self, object_id: str) -> Sequence[KeyCredentialRecord]: ...
    async def add_key_credential(
        self,
        object_id: str,
        *,
        key_id: str,
        display_name: str,
        certificate: bytes,
        start: datetime,
        end: datetime,
    ) -> None: ...
    async def remove_key_credential(self, object_id: str, key_id: str) -> None: ...
    async def ensure_service_principal(self, app_id: str) -> str: ...
    async def find_service_principal(self, app_id: str) -> str | None: ...
    async def application_credentials(self, app_id: str) -> AppCredentialsRecord | None: ...
    async def list_app_role_assignments(
        self, service_principal_id: str
    ) -> Sequence[RoleAssignmentRecord]: ...
    async def assign_app_role(
        self, service_principal_id: str, resource_id: str, app_role_id: str
    ) -> None: ...
    async def send_mail(
        self, sender: str, to: Sequence[str], subject: str, html_body: str, text_body: str = ""
    ) -> None: ...
    async def close(self) -> None: ...


class ExchangePort(Protocol):
    """The Exchange Online admin API (``onboarding.adapters.exchange.ExchangeAdmin``)."""

    async def ensure_service_principal(
        self,
        app_id: str,
        service_principal_id: str,
        display_name: str,
        *,
        app_object_id: str | None = None,
    ) -> None: ...
    async def remove_service_principal(self, app_id: str) -> None: ...
    async def grant_full_access(self, mailbox: str, service_principal_id: str) -> None: ...
    async def remove_full_access(self, mailbox: str, service_principal_id: str) -> None: ...
    async def protocols_enabled(self, mailbox: str) -> dict[str, bool]: ...
    async def registered_service_principal(self, app_id: str) -> set[str] | None: ...
    async def has_full_access(self, mailbox: str, service_principal_id: str) -> bool: ...
    async def close(self) -> None: ...


class VaultPort(Protocol):
    """Key Vault secrets (``onboarding.adapters.keyvault.CredentialVault``)."""

    async def get(self, name: str, version: str | None = None) -> StoredSecretRecord | None: ...
    async def put(
        self, name: str, value: str, *, content_type: str, expires_on: datetime | None, tags: dict[str, str]
    ) -> str: ...
    async def list_secrets(self) -> Sequence[SecretInfoRecord]: ...

    async def tag_current(self, name: str, *, expires_on: datetime, tags: dict[str, str]) -> bool: ...
    async def delete(self, name: str) -> None: ...
    async def close(self) -> None: ...


class SecretAccessPort(Protocol):
    """Azure RBAC on the vault's secrets, through Azure Resource Manager
    (``onboarding.adapters.rbac.SecretAccess``)."""

    async def grant_secret_reader(self, secret_name: str, principal_id: str) -> str: ...
    async def remove_secret_reader(self, secret_name: str, principal_id: str) -> bool: ...
    async def close(self) -> None: ...


class CertificatePort(Protocol):
    """Key Vault certificates (``onboarding.adapters.kvcertificates.CertificateVault``)."""

    async def create(
        self, name: str, *, subject: str, validity_months: int, tags: dict[str, str]
    ) -> IssuedCertificateRecord: ...
    async def latest(self, name: str) -> IssuedCertificateRecord | None: ...
    async def private_pem(self, name: str, version: str) -> str: ...
    async def delete(self, name: str) -> None: ...
    async def close(self) -> None: ...


class MailProbePort(Protocol):
    """One IMAP or POP login with XOAUTH2 (``onboarding.adapters.mailprobe.probe_login``)."""

    async def __call__(
        self, host: str, port: int, protocol: MailProtocol, mailbox: str, token: str, *, timeout: float = 30
    ) -> LoginResult: ...


class ServicesPort(Protocol):
    """What a step is given: the settings and one adapter per external system."""

    @property
    def settings(self) -> Settings: ...
    @property
    def graph(self) -> GraphPort: ...
    @property
    def exchange(self) -> ExchangePort: ...
    @property
    def vault(self) -> VaultPort: ...
    @property
    def certificates(self) -> CertificatePort: ...
    @property
    def mail_probe(self) -> MailProbePort: ...
    @property
    def secret_access(self) -> SecretAccessPort: ...
