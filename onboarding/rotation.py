"""Rotation of an onboarding's client secret (issue 11 item 2). Its contract and its steps.

``POST /api/v1/onboardings/{id}/rotate`` starts the durable orchestration ``<id>:rotation``
(``orchestrations/rotation.py``); one instance per onboarding at a time, so a second POST while it
runs finds the first. It:

1. adds a new password credential to the app, labelled for this rotation (a rerun finds it by its
   label), and puts its JSON document straight into Key Vault as a new version of the same secret:
   the value never passes through the orchestration;
2. verifies the new secret as the mail client will (token, then IMAP SELECT / POP STAT) on the
   onboarding's verified mailboxes, at most ``VERIFY_SAMPLE`` of them;
3. waits ``ROTATION_OVERLAP_HOURS``, during which both secrets work, so a client that still holds the
   old one keeps logging in until it reads the vault again;
4. removes the old credentials from the app (``removePassword`` by keyId; already gone counts);
5. records the rotation, emails the admins, and sends the webhook events.

If the new secret does not verify, it is discarded: removed from the app, and the old document put
back as the vault's current version. The old credential is never touched, and the rotation fails
with the cause.

A certificate onboarding rotates the same way with a new Key Vault certificate version and a new
keyCredential (``onboarding.certificates``). The POST may name ``credentialType``: a rotation to
another type switches the onboarding, e.g. from its client secret to a certificate, and the overlap
then keeps the old password until it is removed with the other old credentials. Without it, the
rotation keeps the type of the vault's current document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

from onboarding import activity_names as A
from onboarding import contracts as C
from onboarding.domain import (
    AppRegistration,
    CredentialType,
    OnboardingRequest,
    SecretRef,
    StepState,
    WorkflowOptions,
    _default_options,
    app_unique_name,
    vault_secret_name,
)
from onboarding.durable_status import RUNNING_STATES, json_object
from onboarding.errors import NotFoundError
from onboarding.lazy import lazy
from onboarding.webhooks import StreamPosition

if TYPE_CHECKING:
    from onboarding import emails, expiry, records
    from onboarding.ports import ServicesPort
else:  # used by the rotation's steps only: loaded on first use (onboarding/lazy.py)
    emails = lazy("onboarding.emails")
    expiry = lazy("onboarding.expiry")
    records = lazy("onboarding.records")

ROTATION_ORCHESTRATOR = "rotation_orchestrator"
VERIFY_SAMPLE = 10  # mailboxes a rotation logs in to: the credential is app-wide, a sample proves it
PREVIOUS_VERSION_TAG = "previousVersion"


def rotation_instance_id(onboarding_id: str) -> str:
    """The onboarding's rotation: a second POST while it runs names the same instance."""
    return f"{onboarding_id}:rotation"


# The termination reason of a rotation an offboarding stopped in its overlap window (its view shows it).
STOPPED_BY_OFFBOARDING = "The onboarding is being offboarded: its app is deleted with both credentials."


def waits_out_overlap(custom_status: Mapping[str, Any]) -> bool:
    """A running rotation (its custom status) waiting out its overlap window: no activity of it is in
    flight, so stopping it there leaves nothing half done."""
    steps = custom_status.get("steps")
    step = steps.get(RotateStep.OVERLAP.value) if isinstance(steps, Mapping) else None
    return isinstance(step, Mapping) and step.get("state") == StepState.WAITING.value


def rotation_label(onboarding_id: str, requested_at: str) -> str:
    """The new credential's display name: the onboarding's label plus when this rotation was asked
    for, so a rerun of the step finds its own credential and a later rotation makes its own."""
    from onboarding.steps import password_label

    # The full timestamp (microseconds): two rotations asked for within one second must not share it.
    return f"{password_label(onboarding_id)} rotated {requested_at}"


class RotateStep(StrEnum):
    NEW_CREDENTIAL = "add_new_credential"
    VERIFY = "verify_new_credential"
    OVERLAP = "overlap_window"
    REMOVE_OLD = "remove_old_credential"
    NOTIFY = "notify_admins"


STEP_TITLES: dict[RotateStep, str] = {
    RotateStep.NEW_CREDENTIAL: "Add a new credential (client secret or certificate) to the app and store it "
    "as a new Key Vault version",
    RotateStep.VERIFY: "Log in with the new credential (token, IMAP SELECT, POP STAT)",
    RotateStep.OVERLAP: "Keep the old credential valid during the overlap window",
    RotateStep.REMOVE_OLD: "Remove the old credential from the app",
    RotateStep.NOTIFY: "Email the admins",
}


class RotationStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the old credential is kept: see ``error``


@dataclass(frozen=True)
class RotationInput:
    """The orchestration's input, taken from the finished onboarding by the HTTP trigger (no secret)."""

    onboarding_id: str
    tenant_id: str
    app: AppRegistration
    protocols: tuple[str, ...]
    mailboxes: tuple[str, ...]  # verified mailboxes to log in to, at most VERIFY_SAMPLE
    request: dict[str, Any]  # the onboarding's request (admins, display name) for the email
    mailbox_count: int
    lifetime_days: int
    overlap_hours: int
    requested_at: str
    # Where the rotation stands in the onboarding's webhook stream (``StreamPosition``): its channel's
    # events so far over its earlier runs, or without a channel the stream's last sequence.
    events_sent: int = 0
    requested_by: dict[str, str] = field(default_factory=dict)
    options: WorkflowOptions = field(default_factory=_default_options)
    credential_type: CredentialType | None = None  # None: the type of the vault's current document
    webhook_channel: str | None = None  # with ``events_sent``: see above

    def to_json(self) -> dict[str, Any]:
        return {
            "onboarding_id": self.onboarding_id,
            "tenant_id": self.tenant_id,
            "app": self.app.to_json(),
            "protocols": list(self.protocols),
            "mailboxes": list(self.mailboxes),
            "credential_type": self.credential_type.value if self.credential_type else None,
            "request": self.request,
            "mailbox_count": self.mailbox_count,
            "lifetime_days": self.lifetime_days,
            "overlap_hours": self.overlap_hours,
            "requested_at": self.requested_at,
            "events_sent": self.events_sent,
            "webhook_channel": self.webhook_channel,
            "requested_by": dict(self.requested_by),
            "options": self.options.to_json(),
        }

    @property
    def stream(self) -> StreamPosition:
        return StreamPosition.of(self.webhook_channel, self.events_sent)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            tenant_id=data["tenant_id"],
            app=AppRegistration.from_json(data["app"]),
            protocols=tuple(data["protocols"]),
            mailboxes=tuple(data["mailboxes"]),
            request=dict(data["request"]),
            mailbox_count=int(data["mailbox_count"]),
            lifetime_days=int(data["lifetime_days"]),
            overlap_hours=int(data["overlap_hours"]),
            requested_at=str(data["requested_at"]),
            events_sent=int(data.get("events_sent") or 0),
            webhook_channel=data.get("webhook_channel"),
            requested_by=dict(data.get("requested_by") or {}),
            options=WorkflowOptions.from_json(data["options"]) if data.get("options") else _default_options(),
            credential_type=_credential_type(data.get("credential_type")),
        )


def _credential_type(value: Any) -> CredentialType | None:
    return CredentialType(value) if value else None


# --- the activities' payloads, each with its contract -----------------------------------------------


@dataclass(frozen=True)
class AddCredential:
    onboarding_id: str
    tenant_id: str
    app: AppRegistration
    protocols: tuple[str, ...]
    lifetime_days: int
    requested_at: str  # names the credential (``rotation_label``) and dates it
    credential_type: CredentialType | None = None  # None: keep the vault's current document's type

    def to_json(self) -> dict[str, Any]:
        return {
            "onboarding_id": self.onboarding_id,
            "tenant_id": self.tenant_id,
            "app": self.app.to_json(),
            "protocols": list(self.protocols),
            "lifetime_days": self.lifetime_days,
            "requested_at": self.requested_at,
            "credential_type": self.credential_type.value if self.credential_type else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            data["onboarding_id"],
            data["tenant_id"],
            AppRegistration.from_json(data["app"]),
            tuple(data["protocols"]),
            int(data["lifetime_days"]),
            str(data["requested_at"]),
            _credential_type(data.get("credential_type")),
        )


@dataclass(frozen=True)
class NewCredential:
    """Where the new secret is (never its value), and the vault version it replaced."""

    secret: SecretRef
    previous_version: str | None
    credential_type: CredentialType = CredentialType.SECRET

    def to_json(self) -> dict[str, Any]:
        return {
            "secret": self.secret.to_json(),
            "previous_version": self.previous_version,
            "credential_type": self.credential_type.value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        kind = _credential_type(data.get("credential_type")) or CredentialType.SECRET
        return cls(SecretRef.from_json(data["secret"]), data.get("previous_version"), kind)


@dataclass(frozen=True)
class CredentialChange:
    """Discard the new credential (``key_id``), or remove every other one of this onboarding's."""

    onboarding_id: str
    app_object_id: str
    key_id: str
    previous_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "onboarding_id": self.onboarding_id,
            "app_object_id": self.app_object_id,
            "key_id": self.key_id,
            "previous_version": self.previous_version,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["onboarding_id"], data["app_object_id"], data["key_id"], data.get("previous_version"))


@dataclass(frozen=True)
class RemovedCredentials:
    key_ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"key_ids": list(self.key_ids)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(tuple(data["key_ids"]))


@dataclass(frozen=True)
class RotationResult:
    """The orchestration's output, what the status view, the email and the last event show."""

    onboarding_id: str
    status: RotationStatus
    app_id: str
    secret: SecretRef | None = None  # the new one, once stored
    removed_key_ids: tuple[str, ...] = ()
    error: str = ""
    credential_type: CredentialType | None = None  # the new credential's, once made

    def to_json(self) -> dict[str, Any]:
        return {
            "onboarding_id": self.onboarding_id,
            "status": self.status.value,
            "app_id": self.app_id,
            "secret": self.secret.to_json() if self.secret else None,
            "removed_key_ids": list(self.removed_key_ids),
            "error": self.error,
            "credential_type": self.credential_type.value if self.credential_type else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            status=RotationStatus(data["status"]),
            app_id=data["app_id"],
            secret=SecretRef.from_json(data["secret"]) if data.get("secret") else None,
            removed_key_ids=tuple(data.get("removed_key_ids", ())),
            error=str(data.get("error", "")),
            credential_type=_credential_type(data.get("credential_type")),
        )


@dataclass(frozen=True)
class NotifyRotated:
    """Record a succeeded rotation in the onboarding's record, and email the admins either way."""

    onboarding_id: str
    request: dict[str, Any]
    result: RotationResult
    mailbox_count: int
    at: str  # when the rotation ended (ISO 8601), from the orchestration's clock

    def to_json(self) -> dict[str, Any]:
        return {
            "onboarding_id": self.onboarding_id,
            "request": self.request,
            "result": self.result.to_json(),
            "mailbox_count": self.mailbox_count,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            data["onboarding_id"],
            dict(data["request"]),
            RotationResult.from_json(data["result"]),
            int(data["mailbox_count"]),
            str(data["at"]),
        )


ADD_CREDENTIAL = C.Contract(A.ROTATE_ADD_CREDENTIAL, AddCredential, NewCredential.from_json)
DISCARD_NEW = C.Contract(A.ROTATE_DISCARD_NEW, CredentialChange, C.nothing)
REMOVE_OLD = C.Contract(A.ROTATE_REMOVE_OLD, CredentialChange, RemovedCredentials.from_json)
NOTIFY = C.Contract(A.ROTATE_NOTIFY, NotifyRotated, C.nothing)


# --- the steps (each idempotent: an activity runs at least once) -----------------------------------


def _owned(onboarding_id: str, display_name: str | None) -> bool:
    """This onboarding's credentials: the onboarding's own and every rotation's (same label prefix)."""
    from onboarding.steps import password_label

    label = password_label(onboarding_id)
    return display_name == label or (display_name or "").startswith(f"{label} rotated ")


async def add_credential(svc: ServicesPort, p: AddCredential) -> NewCredential:
    """Add this rotation's credential and store it as the vault's new current version.

    A rerun finds the credential by its label: if the vault's current version holds it, that stands;
    if the vault never got it (the value is lost), it is removed and made again."""
    from onboarding.steps import build_document, mint_password

    name = vault_secret_name(p.onboarding_id)
    label = rotation_label(p.onboarding_id, p.requested_at)
    current = await svc.vault.get(name)
    if target_type(p.credential_type, current) is CredentialType.CERTIFICATE:
        return await _add_certificate(svc, p, label, current.version if current is not None else "")
    held = await svc.graph.list_passwords(p.app.object_id)
    mine = [c for c in held if c.display_name == label]
    if current is not None and current.tags.get("keyId") in {c.key_id for c in mine}:
        return NewCredential(
            _ref(svc, name, current.version, current.tags["keyId"], current.expires_on),
            current.tags.get(PREVIOUS_VERSION_TAG) or None,
        )
    end = datetime.fromisoformat(p.requested_at) + timedelta(days=p.lifetime_days)
    new = await mint_password(svc, p.app.object_id, label, end, held)
    document = build_document(
        svc.settings, p.tenant_id, p.app.app_id, new.secret_text, p.protocols, new.end_date_time
    )
    previous = current.version if current is not None else ""
    try:
        version = await svc.vault.put(
            name,
            json.dumps(document),
            content_type=expiry.CREDENTIALS_CONTENT_TYPE,
            expires_on=new.end_date_time,
            tags={
                "keyId": new.key_id,
                "appId": p.app.app_id,
                "onboardingId": p.onboarding_id,
                PREVIOUS_VERSION_TAG: previous,
            },
        )
    except BaseException:
        # The value exists nowhere else: a credential nobody can use must not stay on the app.
        await svc.graph.remove_password(p.app.object_id, new.key_id)
        raise
    return NewCredential(_ref(svc, name, version, new.key_id, new.end_date_time), previous or None)


def target_type(wanted: CredentialType | None, current: Any) -> CredentialType:
    """The new credential's type: the one asked for, else the one the vault's current document (the
    credential in use) has; documents from before certificates are secrets."""
    if wanted is not None:
        return wanted
    tags = getattr(current, "tags", None) or {}
    return CredentialType(tags.get("credentialType") or CredentialType.SECRET)


async def _add_certificate(svc: ServicesPort, p: AddCredential, label: str, previous: str) -> NewCredential:
    """A new certificate version and keyCredential; a rerun finds and finishes them (by ``label``)."""
    from onboarding import certificates

    secret = await certificates.issue(
        svc,
        onboarding_id=p.onboarding_id,
        tenant_id=p.tenant_id,
        app=p.app,
        lifetime_days=p.lifetime_days,
        protocols=p.protocols,
        label=label,
        tags={PREVIOUS_VERSION_TAG: previous},
    )
    stored = await svc.vault.get(secret.name, secret.version)
    # A rerun after the document was written: the version it replaced is on its tag, not ``current``.
    replaced = stored.tags.get(PREVIOUS_VERSION_TAG, previous) if stored is not None else previous
    return NewCredential(secret, replaced or None, CredentialType.CERTIFICATE)


def _ref(svc: ServicesPort, name: str, version: str, key_id: str, expires_on: datetime | None) -> SecretRef:
    return SecretRef(
        vault_uri=svc.settings.key_vault_uri,
        name=name,
        version=version,
        expires_on=expires_on.isoformat() if expires_on else "",
        key_id=key_id,
    )


async def discard_new(svc: ServicesPort, p: CredentialChange) -> None:
    """The new secret did not verify: put the old document back as the current version (only while
    the current one is the discarded secret), then remove the new credential from the app."""
    name = vault_secret_name(p.onboarding_id)
    current = await svc.vault.get(name)
    if current is not None and current.tags.get("keyId") == p.key_id and p.previous_version:
        old = await svc.vault.get(name, p.previous_version)
        if old is None:
            raise NotFoundError(
                f"Key Vault secret {name} version {p.previous_version} is missing.",
                fix="Restore the previous version from the vault, or rotate again.",
            )
        await svc.vault.put(
            name,
            old.value,
            content_type=expiry.CREDENTIALS_CONTENT_TYPE,
            expires_on=old.expires_on,
            tags=dict(old.tags),
        )
    keys = {k.key_id for k in await svc.graph.list_key_credentials(p.app_object_id)}
    if p.key_id in keys:
        await svc.graph.remove_key_credential(p.app_object_id, p.key_id)
    else:
        await svc.graph.remove_password(p.app_object_id, p.key_id)


async def remove_old(svc: ServicesPort, p: CredentialChange) -> RemovedCredentials:
    """After the overlap: every credential of this onboarding but the new one, passwords and
    certificates alike, so a switch of type removes the old type's (already gone: done)."""
    passwords = await svc.graph.list_passwords(p.app_object_id)
    old = [c.key_id for c in passwords if c.key_id != p.key_id and _owned(p.onboarding_id, c.display_name)]
    for key_id in old:
        await svc.graph.remove_password(p.app_object_id, key_id)
    keys = await svc.graph.list_key_credentials(p.app_object_id)
    old_keys = [k.key_id for k in keys if k.key_id != p.key_id and _owned(p.onboarding_id, k.display_name)]
    for key_id in old_keys:
        await svc.graph.remove_key_credential(p.app_object_id, key_id)
    return RemovedCredentials((*old, *old_keys))


async def notify_admins(svc: ServicesPort, p: NotifyRotated) -> None:
    from onboarding.steps import send_email

    request = OnboardingRequest.from_json(p.request)
    if p.result.status is RotationStatus.SUCCEEDED and p.result.secret:
        detail = f"New credential {p.result.secret.key_id}, expires {p.result.secret.expires_on}."
        await records.update(
            svc.vault, p.onboarding_id, records.Operation.ROTATED, datetime.fromisoformat(p.at), detail
        )
    if request.admin_emails:
        message = emails.rotated(request, p.result, p.mailbox_count, emails.Brand.from_settings(svc.settings))
        await send_email(svc, request.admin_emails, message)


# --- automatic rotation from the daily expiry watch (``ROTATE_DAYS_BEFORE_EXPIRY``) ----------------


def due_for_rotation(secrets: Iterable[Any], *, now: datetime, days: int) -> list[str]:
    """The onboardings whose current client secret expires within ``days`` (and has not yet)."""
    due = []
    for info in secrets:
        onboarding_id = (info.tags or {}).get("onboardingId")
        if (
            info.content_type != expiry.CREDENTIALS_CONTENT_TYPE
            or not onboarding_id
            or info.expires_on is None
        ):
            continue
        if now < info.expires_on <= now + timedelta(days=days):
            due.append(onboarding_id)
    return due


def input_from_record(
    record: records.OnboardingRecord,
    *,
    overlap_hours: int,
    requested_at: str,
    stream: StreamPosition,
    options: WorkflowOptions,
    days_before_expiry: int,
) -> RotationInput | None:
    """A rotation of what the onboarding's record names (it outlives the history), or None when it
    must be rotated by hand: only a succeeded onboarding's mailboxes are all verified, and a secret
    living no longer than the rotation's lead time would be rotated again the next day."""
    if record.outcome != "succeeded" or not record.app_object_id or not record.mailboxes_shown:
        return None
    if record.secret_lifetime_days <= days_before_expiry:
        return None
    request = record.as_request()
    return RotationInput(
        onboarding_id=record.onboarding_id,
        tenant_id=record.tenant_id,
        app=AppRegistration(
            record.app_object_id,
            record.app_id,
            app_unique_name(record.onboarding_id),
            record.service_principal_id or None,
        ),
        protocols=tuple(p.value for p in record.protocols),
        mailboxes=tuple(record.mailboxes_shown[:VERIFY_SAMPLE]),
        request=request.to_json(),
        mailbox_count=record.mailbox_count,
        lifetime_days=record.secret_lifetime_days,
        overlap_hours=overlap_hours,
        requested_at=requested_at,
        events_sent=stream.sent,
        webhook_channel=stream.channel_name,
        requested_by={"kind": "expiry-watch"},
        options=options,
    )


# --- the status view (pure: from the Durable status document, ``endpoints.http.status_json``) -----


def rotation_view(status: dict[str, Any]) -> dict[str, Any]:
    """The ``rotation`` part of an onboarding's status view: state, steps in order, the new secret's
    version (never its value), and the cause when it failed."""
    runtime = status.get("runtimeStatus")
    custom = json_object(status.get("customStatus"))
    output = json_object(status.get("output")) if runtime == "Completed" else {}
    steps = output.get("steps") or custom.get("steps") or {}
    secret = output.get("secret") or custom.get("secret")
    view: dict[str, Any] = {
        "status": RotationStatus.RUNNING.value,
        "startedAt": status.get("createdTime"),
        "updatedAt": status.get("lastUpdatedTime"),
        "oldCredentialRemovalAt": custom.get("removeOldAt") or output.get("removeOldAt"),
        "steps": [
            {"name": step.value, "title": STEP_TITLES[step], **_step_state(steps.get(step.value))}
            for step in RotateStep
        ],
        "secretVersion": secret.get("version") if isinstance(secret, dict) else None,
        "expiresOn": secret.get("expires_on") if isinstance(secret, dict) else None,
        "error": output.get("error") or None,
    }
    if runtime in RUNNING_STATES:
        return view
    if output:
        view["status"] = RotationStatus(output["status"]).value
        return view
    view["status"] = RotationStatus.FAILED.value
    view["error"] = f"The rotation stopped unexpectedly ({runtime}). Fix: send POST .../rotate again."
    if runtime == "Terminated" and status.get("output") == STOPPED_BY_OFFBOARDING:
        view["error"] = f"The rotation was stopped in its overlap window. {STOPPED_BY_OFFBOARDING}"
    return view


def _step_state(raw: Any) -> dict[str, str | None]:
    raw = raw if isinstance(raw, dict) else {}
    return {"state": str(raw.get("state", "pending")), "at": raw.get("at"), "detail": raw.get("detail", "")}
