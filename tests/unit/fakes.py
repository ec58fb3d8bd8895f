"""Hand-written fakes of the adapters, so step tests read like the behaviour they check.

Each fake implements its Protocol of ``onboarding.ports``, as the real adapter does; the assignments
at the end of this module make mypy (``make lint``) fail when a fake drifts from its Protocol."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from onboarding.adapters.mailprobe import LoginResult
from onboarding.domain import AppRegistration, ExchangeResource
from onboarding.domain import Protocol as MailProtocol
from onboarding.errors import NotFoundError, TransientError
from onboarding.ports import (
    CertificatePort,
    ExchangePort,
    GraphPort,
    MailProbePort,
    SecretAccessPort,
    ServicesPort,
    VaultPort,
)
from onboarding.settings import Settings

_ids = itertools.count(1)


@dataclass
class Password:
    key_id: str
    display_name: str
    end_date_time: datetime
    secret_text: str = field(default="", repr=False)


@dataclass
class Key:
    key_id: str
    display_name: str
    end_date_time: datetime
    certificate: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Certificate:
    version: str
    cer: bytes
    thumbprint: str
    not_before: datetime
    expires_on: datetime
    tags: dict[str, str]


@dataclass
class Stored:
    value: str = field(repr=False)
    version: str
    tags: dict[str, str]
    expires_on: datetime | None
    content_type: str | None = None


@dataclass
class Assignment:
    id: str
    resource_id: str
    app_role_id: str


@dataclass
class Info:
    name: str
    expires_on: datetime | None
    tags: dict[str, str]
    content_type: str | None


@dataclass(frozen=True)
class AppCredentials:
    object_id: str
    credentials: tuple[Password, ...]


class Crash(Exception):
    """Stands for the process dying at a chosen point."""


class FakeGraph:
    def __init__(self) -> None:
        self.passwords: dict[str, list[Password]] = {}
        self.keys: dict[str, list[Key]] = {}  # app object id -> its certificates
        self.assignments: dict[str, list[Assignment]] = {}
        self.mail: list[dict[str, object]] = []
        self.deleted: list[str] = []
        self.purged: list[str] = []
        self.service_principals: dict[str, str] = {}  # app id -> service principal object id
        self.applications: dict[str, AppRegistration] = {}  # unique name -> app
        self.resource = ExchangeResource(
            "exo-sp", {"IMAP.AccessAsApp": "role-imap", "POP.AccessAsApp": "role-pop"}
        )

    async def find_application(self, unique_name: str) -> AppRegistration | None:
        return self.applications.get(unique_name)

    async def get_resource(self, app_id: str, role_values: Sequence[str]) -> ExchangeResource:
        missing = [r for r in role_values if r not in self.resource.app_role_ids]
        if missing:
            raise NotFoundError(f"The resource has no app role {', '.join(missing)}.")
        return self.resource

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
    ) -> AppRegistration:
        if unique_name not in self.applications:
            n = next(_ids)
            self.applications[unique_name] = AppRegistration(
                object_id=f"obj-{n}", app_id=f"app-{n}", unique_name=unique_name
            )
        return self.applications[unique_name]

    async def ensure_service_principal(self, app_id: str) -> str:
        return self.service_principals.setdefault(app_id, f"sp-{next(_ids)}")

    async def find_service_principal(self, app_id: str) -> str | None:
        return self.service_principals.get(app_id)

    async def list_passwords(self, object_id: str) -> list[Password]:
        return list(self.passwords.get(object_id, []))

    async def add_password(self, object_id: str, display_name: str, end_date_time: datetime) -> Password:
        n = next(_ids)
        password = Password(f"key-{n}", display_name, end_date_time, secret_text=f"secret-value-{n}")
        self.passwords.setdefault(object_id, []).append(password)
        return password

    async def remove_password(self, object_id: str, key_id: str) -> None:
        self.passwords[object_id] = [p for p in self.passwords.get(object_id, []) if p.key_id != key_id]

    async def list_key_credentials(self, object_id: str) -> list[Key]:
        return list(self.keys.get(object_id, []))

    async def add_key_credential(
        self,
        object_id: str,
        *,
        key_id: str,
        display_name: str,
        certificate: bytes,
        start: datetime,
        end: datetime,
    ) -> None:
        held = self.keys.setdefault(object_id, [])
        if not any(k.key_id == key_id for k in held):
            held.append(Key(key_id, display_name, end, certificate))

    async def remove_key_credential(self, object_id: str, key_id: str) -> None:
        self.keys[object_id] = [k for k in self.keys.get(object_id, []) if k.key_id != key_id]

    async def list_app_role_assignments(self, service_principal_id: str) -> list[Assignment]:
        return list(self.assignments.get(service_principal_id, []))

    async def assign_app_role(self, service_principal_id: str, resource_id: str, app_role_id: str) -> None:
        held = self.assignments.setdefault(service_principal_id, [])
        if not any(a.resource_id == resource_id and a.app_role_id == app_role_id for a in held):
            held.append(Assignment(f"as-{next(_ids)}", resource_id, app_role_id))

    async def send_mail(
        self, sender: str, to: Sequence[str], subject: str, html_body: str, text_body: str = ""
    ) -> None:
        self.mail.append(
            {"from": sender, "to": list(to), "subject": subject, "html": html_body, "text": text_body}
        )

    async def application_credentials(self, app_id: str) -> AppCredentials | None:
        app = next((a for a in self.applications.values() if a.app_id == app_id), None)
        if app is None or app.object_id in self.deleted:
            return None
        return AppCredentials(app.object_id, tuple(self.passwords.get(app.object_id, [])))

    async def delete_application(self, object_id: str) -> None:
        if object_id not in self.deleted:
            self.deleted.append(object_id)

    async def purge_deleted_item(self, object_id: str) -> None:
        if object_id not in self.purged:
            self.purged.append(object_id)

    async def close(self) -> None:
        pass


class FakeVault:
    def __init__(self) -> None:
        self.versions: dict[str, list[Stored]] = {}
        self.fail_next_put = False
        self.reads: list[str] = []  # the names read, in order

    async def get(self, name: str, version: str | None = None) -> Stored | None:
        self.reads.append(name)
        versions = self.versions.get(name)
        if not versions:
            return None
        if version is None:
            return versions[-1]
        return next((v for v in versions if v.version == version), None)

    async def put(
        self, name: str, value: str, *, content_type: str, expires_on: datetime | None, tags: dict[str, str]
    ) -> str:
        if self.fail_next_put:
            self.fail_next_put = False
            raise Crash("vault unreachable")
        versions = self.versions.setdefault(name, [])
        version = f"v{len(versions) + 1}"
        versions.append(Stored(value, version, dict(tags), expires_on, content_type))
        return version

    async def list_secrets(self) -> list[Info]:
        return [
            Info(name, v[-1].expires_on, dict(v[-1].tags), v[-1].content_type)
            for name, v in self.versions.items()
            if v
        ]

    async def tag_current(self, name: str, *, expires_on: datetime, tags: dict[str, str]) -> bool:
        versions = self.versions.get(name)
        if not versions or versions[-1].expires_on != expires_on:
            return False
        versions[-1].tags.update(tags)
        return True

    async def delete(self, name: str) -> None:
        self.versions.pop(name, None)

    async def close(self) -> None:
        pass


class FakeExchange:
    def __init__(self, mailboxes: dict[str, dict[str, bool]]) -> None:
        self.mailboxes = mailboxes
        self.permissions: set[tuple[str, str]] = set()
        self.principals: set[str] = set()
        self.refusals: dict[str, Exception] = {}  # mailbox -> what Add-MailboxPermission raises
        self.directory: dict[str, str] = {}  # what Exchange's copy of Entra ID has: app id -> sp id

    async def grant_full_access(self, mailbox: str, service_principal_id: str) -> None:
        if mailbox in self.refusals:
            raise self.refusals[mailbox]
        if mailbox not in self.mailboxes:
            raise NotFoundError(f"Mailbox {mailbox} not found.")
        self.permissions.add((mailbox, service_principal_id))

    async def protocols_enabled(self, mailbox: str) -> dict[str, bool]:
        if mailbox not in self.mailboxes:
            raise NotFoundError(f"Mailbox {mailbox} not found.")
        return dict(self.mailboxes[mailbox])

    async def ensure_service_principal(
        self, app_id: str, service_principal_id: str, display_name: str, *, app_object_id: str | None = None
    ) -> None:
        # Exchange's copy of the directory knows only the ids in `directory` (app id -> sp object id).
        if self.directory.get(app_id, "").lower() != service_principal_id.lower():
            raise TransientError(
                "Exchange Online cannot find the service principal in Entra ID.", code="replication"
            )
        self.principals.add(app_id)

    async def remove_service_principal(self, app_id: str) -> None:
        self.principals.discard(app_id)

    async def registered_service_principal(self, app_id: str) -> set[str] | None:
        return {self.directory[app_id].lower()} if app_id in self.principals else None

    async def has_full_access(self, mailbox: str, service_principal_id: str) -> bool:
        if mailbox not in self.mailboxes:
            raise NotFoundError(f"Mailbox {mailbox} not found.")
        return (mailbox, service_principal_id) in self.permissions

    async def remove_full_access(self, mailbox: str, service_principal_id: str) -> None:
        if mailbox in self.refusals:
            raise self.refusals[mailbox]
        self.permissions.discard((mailbox, service_principal_id))

    async def close(self) -> None:
        pass


class FakeMailProbe:
    """IMAP/POP logins: succeed for the (mailbox, protocol) pairs in ``open``, are refused otherwise."""

    def __init__(self) -> None:
        self.open: set[tuple[str, str]] = set()
        self.logins: list[tuple[str, str, str]] = []  # (mailbox, protocol, token)

    async def __call__(
        self, host: str, port: int, protocol: MailProtocol, mailbox: str, token: str, *, timeout: float = 30
    ) -> LoginResult:
        self.logins.append((mailbox, MailProtocol(protocol).value, token))
        if (mailbox, MailProtocol(protocol).value) in self.open:
            return LoginResult(True, f"{protocol} login as {mailbox} succeeded.")
        return LoginResult(False, f"{protocol} login as {mailbox} was refused.")


class FakeSecretAccess:
    """Role assignments on the vault's secrets: (secret name, principal id) pairs holding Secrets User.
    ``refuse`` makes the next calls fail as ARM would (an ``OnboardingError``)."""

    def __init__(self) -> None:
        self.readers: set[tuple[str, str]] = set()
        self.calls: list[tuple[str, str, str]] = []  # (grant|remove, secret, principal)
        self.refuse: Exception | None = None

    async def grant_secret_reader(self, secret_name: str, principal_id: str) -> str:
        self.calls.append(("grant", secret_name, principal_id))
        if self.refuse is not None:
            raise self.refuse
        self.readers.add((secret_name, principal_id))
        return f"assignment-{secret_name}-{principal_id}"

    async def remove_secret_reader(self, secret_name: str, principal_id: str) -> bool:
        self.calls.append(("remove", secret_name, principal_id))
        if self.refuse is not None:
            raise self.refuse
        if (secret_name, principal_id) in self.readers:
            self.readers.discard((secret_name, principal_id))
            return True
        return False

    async def close(self) -> None:
        pass


class FakeCertificates:
    """Key Vault certificates: versions per name, each with a stand-in private key (PEM-shaped text)."""

    def __init__(self) -> None:
        self.versions: dict[str, list[Certificate]] = {}
        self.keys: dict[tuple[str, str], str] = {}  # (name, version) -> PEM
        self.created: list[tuple[str, str, int]] = []  # (name, subject, validity months)
        self.crash_after_create = False
        self.pem: str | None = None  # what every private key reads as, when a test needs a real shape

    async def create(
        self, name: str, *, subject: str, validity_months: int, tags: dict[str, str]
    ) -> Certificate:
        from datetime import UTC, timedelta

        n = next(_ids)
        now = datetime.now(UTC)
        made = Certificate(
            f"v{n}", f"der-{n}".encode(), f"{n:040X}", now, now + timedelta(days=30 * validity_months), tags
        )
        self.versions.setdefault(name, []).append(made)
        self.keys[(name, made.version)] = (
            self.pem or f"-----BEGIN PRIVATE KEY-----\nkey-{n}\n-----END PRIVATE KEY-----\n"
        )
        self.created.append((name, subject, validity_months))
        if self.crash_after_create:
            self.crash_after_create = False
            raise Crash("after the certificate was created")
        return made

    async def latest(self, name: str) -> Certificate | None:
        versions = self.versions.get(name)
        return versions[-1] if versions else None

    async def private_pem(self, name: str, version: str) -> str:
        return self.keys[(name, version)]

    async def delete(self, name: str) -> None:
        self.versions.pop(name, None)

    async def close(self) -> None:
        pass


class FakeServices:
    def __init__(self, settings: Settings, *, mailboxes: dict[str, dict[str, bool]] | None = None) -> None:
        self.settings = settings
        self.graph = FakeGraph()
        self.vault = FakeVault()
        self.certificates = FakeCertificates()
        self.exchange = FakeExchange(mailboxes or {})
        self.mail_probe = FakeMailProbe()
        self.secret_access = FakeSecretAccess()


def settings() -> Settings:
    return Settings.from_env(
        {
            "TENANT_ID": "11111111-1111-1111-1111-111111111111",
            "KEY_VAULT_URI": "https://vault.example.test",
            "MAIL_SENDER": "onboarding@contoso.test",
            "PUBLIC_BASE_URL": "https://func.example.test",
            "LINK_SIGNING_KEY": "k" * 40,
        }
    )


# Checked by mypy, not at run time: each fake is an implementation of its adapter's Protocol.
_graph: GraphPort = FakeGraph()
_vault: VaultPort = FakeVault()
_certificates: CertificatePort = FakeCertificates()
_exchange: ExchangePort = FakeExchange({})
_probe: MailProbePort = FakeMailProbe()
_access: SecretAccessPort = FakeSecretAccess()
_services: ServicesPort = FakeServices(settings())
