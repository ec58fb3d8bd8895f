"""The onboarding record: what the expiry watch and the day-2 operations need, kept after the
onboarding's Durable history is purged.

A Durable history holds the request (admin addresses, mailboxes) and the result (app ids, secret
reference), and retention purges it (``onboarding.retention``). A credential the onboarding left in
Key Vault lives on, and someone must still be told before it expires and be able to rotate, add
mailboxes or offboard. So each onboarding that leaves a credential behind gets a small record of
its own:

- **Where**: a Key Vault secret ``onboarding-record-<id>`` beside the credential secret
  ``mail-app-<id>``, content type ``application/vnd.mail-onboarding.record+json``, no expiry. The
  vault already holds the credential it describes, the function app's identity already has the role
  to write it (Key Vault Secrets Officer), and it shares the credential's protection: soft delete,
  purge protection, recovery, the same audit log. Its versions are its history: every update is a
  new version. Table storage was the other candidate (docs/operations.md, "Retention", says why not).
- **What**: identifiers, addresses and counts only. Never a secret, token or key: the record is not
  the credential, and the mail product's principal gets no role on it. Mailboxes: the count and the
  first few (what the emails show); per-mailbox state is Exchange's (Get-MailboxPermission).
- **When**: written when an onboarding finishes with its credential still in the vault (activity
  ``record_onboarding``), idempotently (an identical record is not written again); written from the
  history by the purge itself if it is missing, before the history goes; updated by day-2 operations
  with ``update``; removed by ``forget`` (offboarding), or by retention once its credential has been
  gone for the retention period.

Size: at most 20 admin addresses, 5 mailboxes and short texts, well under Key Vault's 25 KB value.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

from onboarding.domain import (
    ConsentMode,
    OnboardingInput,
    OnboardingRequest,
    Protocol,
    vault_secret_name,
)

if TYPE_CHECKING:
    from onboarding.ports import VaultPort

RECORD_CONTENT_TYPE = "application/vnd.mail-onboarding.record+json"
RECORD_PREFIX = "onboarding-record-"
SCHEMA = 1
SHOWN_MAILBOXES = 5  # as many as an email names (onboarding.emails.SHOWN_MAILBOXES)
log = logging.getLogger("onboarding.records")


class Operation(StrEnum):
    """What happened to an onboarding, in its record's ``operations``."""

    ONBOARDED = "onboarded"
    RECORDED_FROM_HISTORY = "recorded_from_history"  # written by retention before a purge
    MAILBOXES_ADDED = "mailboxes_added"
    MAILBOXES_REMOVED = "mailboxes_removed"
    MAILBOXES_RETRIED = "mailboxes_retried"
    ROTATED = "rotated"
    OFFBOARDED = "offboarded"


def record_name(onboarding_id: str) -> str:
    return f"{RECORD_PREFIX}{onboarding_id}"


@dataclass(frozen=True)
class RecordedOperation:
    kind: Operation
    at: str  # ISO 8601, UTC
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "at": self.at, "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(kind=Operation(data["kind"]), at=str(data["at"]), detail=str(data.get("detail", "")))


@dataclass(frozen=True)
class OnboardingRecord:
    onboarding_id: str
    tenant_id: str
    display_name: str
    protocols: tuple[Protocol, ...]
    admin_emails: tuple[str, ...]
    mailbox_count: int
    mailboxes_shown: tuple[str, ...]
    app_id: str
    secret_name: str
    app_object_id: str = ""
    service_principal_id: str = ""
    consent_mode: ConsentMode = ConsentMode.CONSENT
    secret_lifetime_days: int = 180
    requested_by: str | None = None
    external_reference: str | None = None
    outcome: str = ""
    operations: tuple[RecordedOperation, ...] = field(default=())
    schema: int = SCHEMA

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "onboardingId": self.onboarding_id,
            "tenantId": self.tenant_id,
            "displayName": self.display_name,
            "protocols": [p.value for p in self.protocols],
            "adminEmails": list(self.admin_emails),
            "mailboxCount": self.mailbox_count,
            "mailboxesShown": list(self.mailboxes_shown),
            "appId": self.app_id,
            "appObjectId": self.app_object_id,
            "servicePrincipalId": self.service_principal_id,
            "secretName": self.secret_name,
            "consentMode": self.consent_mode.value,
            "secretLifetimeDays": self.secret_lifetime_days,
            "requestedBy": self.requested_by,
            "externalReference": self.external_reference,
            "outcome": self.outcome,
            "operations": [o.to_json() for o in self.operations],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            schema=int(data.get("schema", SCHEMA)),
            onboarding_id=str(data["onboardingId"]),
            tenant_id=str(data["tenantId"]),
            display_name=str(data["displayName"]),
            protocols=tuple(Protocol(p) for p in data["protocols"]),
            admin_emails=tuple(data["adminEmails"]),
            mailbox_count=int(data["mailboxCount"]),
            mailboxes_shown=tuple(data["mailboxesShown"]),
            app_id=str(data["appId"]),
            app_object_id=str(data.get("appObjectId", "")),
            service_principal_id=str(data.get("servicePrincipalId", "")),
            secret_name=str(data["secretName"]),
            consent_mode=ConsentMode(data.get("consentMode", ConsentMode.CONSENT)),
            secret_lifetime_days=int(data.get("secretLifetimeDays", 180)),
            requested_by=data.get("requestedBy"),
            external_reference=data.get("externalReference"),
            outcome=str(data.get("outcome", "")),
            operations=tuple(RecordedOperation.from_json(o) for o in data.get("operations", [])),
        )

    def as_request(self) -> OnboardingRequest:
        """The request as the emails need it (the mailboxes they name; ``mailbox_count`` says how many)."""
        return OnboardingRequest(
            tenant_id=self.tenant_id,
            display_name=self.display_name,
            protocols=self.protocols,
            mailboxes=self.mailboxes_shown,
            admin_emails=self.admin_emails,
            consent_mode=self.consent_mode,
            secret_lifetime_days=self.secret_lifetime_days,
            external_reference=self.external_reference,
            requested_by=self.requested_by,
        )

    def with_operation(
        self,
        kind: Operation,
        at: datetime,
        detail: str = "",
        *,
        added: Sequence[str] = (),
        removed: Sequence[str] = (),
        **changes: Any,
    ) -> Self:
        """This record after a day-2 operation: ``changes`` applied, the mailboxes ``added`` and
        ``removed`` counted (and shown, up to ``SHOWN_MAILBOXES``), and the operation appended. Once:
        the same operation at the same time again, as a retried activity does, changes nothing."""
        done = RecordedOperation(kind, at.isoformat(), detail)
        if done in self.operations:
            return self
        gone = {m.lower() for m in removed}
        shown = [m for m in self.mailboxes_shown if m.lower() not in gone]
        shown += [m for m in added if m not in shown]
        counted: dict[str, Any] = {
            "mailbox_count": max(0, self.mailbox_count + len(added) - len(removed)),
            "mailboxes_shown": tuple(shown[:SHOWN_MAILBOXES]),
        }
        return replace(self, **(counted | changes), operations=(*self.operations, done))


def record_of(
    onboarding_id: str,
    request: OnboardingRequest,
    *,
    mailbox_count: int,
    app: dict[str, Any],
    secret_name: str,
    outcome: str,
    operation: RecordedOperation,
) -> OnboardingRecord:
    """The record of a finished onboarding, from its request and what it made (``AppRegistration``
    JSON); ``request.mailboxes`` may be only the first few."""
    return OnboardingRecord(
        onboarding_id=onboarding_id,
        tenant_id=request.tenant_id,
        display_name=request.display_name,
        protocols=request.protocols,
        admin_emails=request.admin_emails,
        mailbox_count=mailbox_count,
        mailboxes_shown=request.mailboxes[:SHOWN_MAILBOXES],
        app_id=str(app.get("app_id", "")),
        app_object_id=str(app.get("object_id", "")),
        service_principal_id=str(app.get("service_principal_id") or ""),
        secret_name=secret_name,
        consent_mode=request.consent_mode,
        secret_lifetime_days=request.secret_lifetime_days,
        requested_by=request.requested_by,
        external_reference=request.external_reference,
        outcome=outcome,
        operations=(operation,),
    )


def from_history(status: dict[str, Any], *, app_id: str, at: datetime) -> OnboardingRecord | None:
    """The record an onboarding's Durable status (with input) implies, for one that finished before
    records existed or whose record write failed: None when the input cannot be read."""
    raw = status.get("input")
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw  # the status API gives the JSON text
        if not isinstance(data, dict):
            return None
        job = OnboardingInput.from_json(data)
    except (TypeError, ValueError, KeyError):
        return None
    output = status.get("output")
    output = output if isinstance(output, dict) else {}
    app = output.get("app") or {"app_id": app_id}
    return record_of(
        job.onboarding_id,
        job.request,
        mailbox_count=len(job.request.mailboxes),
        app=app,
        secret_name=vault_secret_name(job.onboarding_id),
        outcome=str(output.get("outcome") or status.get("runtimeStatus", "")).lower(),
        operation=RecordedOperation(Operation.RECORDED_FROM_HISTORY, at.isoformat()),
    )


async def load(vault: VaultPort, onboarding_id: str) -> OnboardingRecord | None:
    stored = await vault.get(record_name(onboarding_id))
    if stored is None:
        return None
    try:
        return OnboardingRecord.from_json(json.loads(stored.value))
    except (TypeError, ValueError, KeyError):
        log.warning("onboarding record %s cannot be read; it is written again", record_name(onboarding_id))
        return None


async def save(vault: VaultPort, record: OnboardingRecord) -> bool:
    """Write ``record`` as the current version unless it already is; True when written."""
    if await load(vault, record.onboarding_id) == record:
        return False
    await _write(vault, record)
    return True


async def _write(vault: VaultPort, record: OnboardingRecord) -> None:
    await vault.put(
        record_name(record.onboarding_id),
        json.dumps(record.to_json(), separators=(",", ":")),
        content_type=RECORD_CONTENT_TYPE,
        expires_on=None,
        tags={"onboardingId": record.onboarding_id, "appId": record.app_id},
    )


async def update(
    vault: VaultPort,
    onboarding_id: str,
    kind: Operation,
    at: datetime,
    detail: str = "",
    *,
    added: Sequence[str] = (),
    removed: Sequence[str] = (),
    **changes: Any,
) -> OnboardingRecord | None:
    """For day-2 operations: apply ``changes`` (field names of ``OnboardingRecord``), count the
    mailboxes ``added`` and ``removed``, and log the operation. Idempotent; None when the onboarding
    has no record (nothing to update)."""
    record = await load(vault, onboarding_id)
    if record is None:
        return None
    updated = record.with_operation(kind, at, detail, added=added, removed=removed, **changes)
    await save(vault, updated)
    return updated


async def forget(vault: VaultPort, onboarding_id: str) -> None:
    """Offboarding: the record goes with the credential (soft deleted, recoverable like it)."""
    await vault.delete(record_name(onboarding_id))


async def credential_exists(vault: VaultPort, onboarding_id: str) -> bool:
    """Whether the onboarding's credential secret is live in the vault (not deleted). One read of
    the current version; its value is not kept."""
    return await vault.get(vault_secret_name(onboarding_id)) is not None


async def record_finished(
    vault: VaultPort,
    *,
    onboarding_id: str,
    request: OnboardingRequest,
    mailbox_count: int,
    app: dict[str, Any],
    outcome: str,
    at: datetime,
) -> bool:
    """The activity's work: record a finished onboarding if it left a credential in the vault (a
    compensated one did not, and its addresses are then kept nowhere past the retention). True when
    the credential is recorded, whether by this call or an earlier one (the same answer on a rerun)."""
    if not await credential_exists(vault, onboarding_id):
        return False
    existing = await load(vault, onboarding_id)
    record = record_of(
        onboarding_id,
        request,
        mailbox_count=mailbox_count,
        app=app,
        secret_name=vault_secret_name(onboarding_id),
        outcome=outcome,
        operation=RecordedOperation(Operation.ONBOARDED, at.isoformat()),
    )
    if existing is None or existing.operations[:1] != record.operations:
        # Read just above, so not read again (``save`` would): one Key Vault round trip less at the
        # end of every onboarding. Else a rerun: this very completion is recorded (maybe updated since).
        await _write(vault, record)
    return True
