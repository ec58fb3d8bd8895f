"""Hand-written fakes of the adapters, so step tests read like the behaviour they check."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from onboarding.errors import NotFoundError, TransientError
from onboarding.settings import Settings

_ids = itertools.count(1)


@dataclass
class Password:
    key_id: str
    display_name: str
    end_date_time: datetime
    secret_text: str = field(default="", repr=False)


@dataclass
class Stored:
    value: str = field(repr=False)
    version: str
    tags: dict[str, str]
    expires_on: datetime | None


@dataclass
class Assignment:
    id: str
    resource_id: str
    app_role_id: str


class Crash(Exception):
    """Stands for the process dying at a chosen point."""


class FakeGraph:
    def __init__(self) -> None:
        self.passwords: dict[str, list[Password]] = {}
        self.assignments: dict[str, list[Assignment]] = {}
        self.mail: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.service_principals: dict[str, str] = {}  # app id -> service principal object id

    async def find_service_principal(self, app_id: str) -> str | None:
        return self.service_principals.get(app_id)

    async def list_passwords(self, object_id: str) -> list[Password]:
        return list(self.passwords.get(object_id, []))

    async def add_password(self, object_id: str, display_name: str, end: datetime) -> Password:
        n = next(_ids)
        password = Password(f"key-{n}", display_name, end, secret_text=f"secret-value-{n}")
        self.passwords.setdefault(object_id, []).append(password)
        return password

    async def remove_password(self, object_id: str, key_id: str) -> None:
        self.passwords[object_id] = [p for p in self.passwords.get(object_id, []) if p.key_id != key_id]

    async def list_app_role_assignments(self, sp_id: str) -> list[Assignment]:
        return list(self.assignments.get(sp_id, []))

    async def assign_app_role(self, sp_id: str, resource_id: str, role_id: str) -> None:
        held = self.assignments.setdefault(sp_id, [])
        if not any(a.resource_id == resource_id and a.app_role_id == role_id for a in held):
            held.append(Assignment(f"as-{next(_ids)}", resource_id, role_id))

    async def send_mail(self, sender: str, to: Any, subject: str, html: str, text: str = "") -> None:
        self.mail.append({"from": sender, "to": list(to), "subject": subject, "html": html, "text": text})

    async def delete_application(self, object_id: str) -> None:
        if object_id not in self.deleted:
            self.deleted.append(object_id)


class FakeVault:
    def __init__(self) -> None:
        self.versions: dict[str, list[Stored]] = {}
        self.fail_next_put = False

    async def get(self, name: str, version: str | None = None) -> Stored | None:
        versions = self.versions.get(name)
        if not versions:
            return None
        if version is None:
            return versions[-1]
        return next((v for v in versions if v.version == version), None)

    async def put(
        self, name: str, value: str, *, content_type: str, expires_on: datetime, tags: dict[str, str]
    ) -> str:
        if self.fail_next_put:
            self.fail_next_put = False
            raise Crash("vault unreachable")
        versions = self.versions.setdefault(name, [])
        version = f"v{len(versions) + 1}"
        versions.append(Stored(value, version, dict(tags), expires_on))
        return version

    async def delete(self, name: str) -> None:
        self.versions.pop(name, None)


class FakeExchange:
    def __init__(self, mailboxes: dict[str, dict[str, bool]]) -> None:
        self.mailboxes = mailboxes
        self.permissions: set[tuple[str, str]] = set()
        self.principals: set[str] = set()
        self.refusals: dict[str, Exception] = {}  # mailbox -> what Add-MailboxPermission raises
        self.directory: dict[str, str] = {}  # what Exchange's copy of Entra ID has: app id -> sp id

    async def grant_full_access(self, mailbox: str, principal: str) -> None:
        if mailbox in self.refusals:
            raise self.refusals[mailbox]
        if mailbox not in self.mailboxes:
            raise NotFoundError(f"Mailbox {mailbox} not found.")
        self.permissions.add((mailbox, principal))

    async def protocols_enabled(self, mailbox: str) -> dict[str, bool]:
        if mailbox not in self.mailboxes:
            raise NotFoundError(f"Mailbox {mailbox} not found.")
        return dict(self.mailboxes[mailbox])

    async def ensure_service_principal(
        self, app_id: str, sp_id: str, name: str, *, app_object_id: str | None = None
    ) -> None:
        # Exchange's copy of the directory knows only the ids in `directory` (app id -> sp object id).
        if self.directory.get(app_id, "").lower() != sp_id.lower():
            raise TransientError(
                "Exchange Online cannot find the service principal in Entra ID.", code="replication"
            )
        self.principals.add(app_id)

    async def remove_service_principal(self, app_id: str) -> None:
        self.principals.discard(app_id)


class FakeServices:
    def __init__(self, settings: Settings, *, mailboxes: dict[str, dict[str, bool]] | None = None) -> None:
        self.settings = settings
        self.graph = FakeGraph()
        self.vault = FakeVault()
        self.exchange = FakeExchange(mailboxes or {})


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
