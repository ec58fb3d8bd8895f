"""Offboarding: undo a whole onboarding (issue 11 item 5). Its contract and its steps.

``DELETE /api/v1/onboardings/{id}`` starts the durable orchestration ``<id>:offboarding``
(``orchestrations/offboarding.py``); one instance per onboarding, so a second DELETE finds the first.
It stops the onboarding first (a cancellation, never a termination: see ``docs/operations.md``), then
removes, each step idempotent and each failure isolated so the others still run:

1. FullAccess on every requested mailbox (``Remove-MailboxPermission``; absent counts as removed);
2. the app's service principal in Exchange Online (``Remove-ServicePrincipal``; absent counts);
3. the app registration (soft delete, restorable for 30 days; ``purge`` also deletes it from
   ``/directory/deletedItems``); Entra deletes its service principal with it;
4. the mail product's Key Vault Secrets User role on the secret, when the request named its principal
   (deleting an assignment already gone counts);
5. the Key Vault secret (soft delete; already deleted counts);

then emails the admins. What could not be removed is listed with the manual fix.

The steps find the app by its ``uniqueName`` (``app_unique_name``), not only from the onboarding's
output: an onboarding that failed, was terminated or never finished has no output with the app.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

from onboarding import activity_names as A
from onboarding import contracts as C
from onboarding.domain import (
    AppRegistration,
    OnboardingRequest,
    WorkflowOptions,
    _default_options,
    app_unique_name,
    vault_certificate_name,
    vault_secret_name,
)
from onboarding.durable_status import RUNNING_STATES, json_object
from onboarding.errors import InvalidRequestError, NotFoundError
from onboarding.lazy import lazy
from onboarding.webhooks import CHANNEL_EVENTS_REPORTED, StreamPosition, reported_count

if TYPE_CHECKING:
    from onboarding import emails, records
    from onboarding.ports import ServicesPort
else:  # used by the steps only: loaded on first use (onboarding/lazy.py)
    emails = lazy("onboarding.emails")
    records = lazy("onboarding.records")

OFFBOARDING_ORCHESTRATOR = "offboarding_orchestrator"


def offboarding_instance_id(onboarding_id: str) -> str:
    """The one offboarding of an onboarding: a second DELETE names the same instance."""
    return f"{onboarding_id}:offboarding"


class OffboardStep(StrEnum):
    STOP_ONBOARDING = "stop_onboarding"
    FIND_APP = "find_app"
    MAILBOX_PERMISSIONS = "remove_mailbox_permissions"
    EXCHANGE_SERVICE_PRINCIPAL = "remove_exchange_service_principal"
    APP_REGISTRATION = "delete_app_registration"
    SECRET_READER = "remove_secret_reader"  # noqa: S105 - a step name, not a password
    KEY_VAULT_SECRET = "delete_key_vault_secret"  # noqa: S105 - a step name, not a password
    NOTIFY = "notify_admins"


STEP_TITLES: dict[OffboardStep, str] = {
    OffboardStep.STOP_ONBOARDING: "Cancel the onboarding if it is still running, and wait for it and any "
    "running mailbox operation or rotation to end",
    OffboardStep.FIND_APP: "Find the app registration and its service principal",
    OffboardStep.MAILBOX_PERMISSIONS: "Remove FullAccess on each mailbox",
    OffboardStep.EXCHANGE_SERVICE_PRINCIPAL: "Remove the service principal from Exchange Online",
    OffboardStep.APP_REGISTRATION: "Delete the app registration",
    OffboardStep.SECRET_READER: "Remove the mail product's read access to the secret",
    OffboardStep.KEY_VAULT_SECRET: "Delete the Key Vault secret",
    OffboardStep.NOTIFY: "Email the admins",
}


class OffboardingStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # everything removed
    FAILED = "failed"  # something is left in place: see ``left``


@dataclass(frozen=True)
class OffboardingInput:
    """The orchestration's input (no secret; the mailboxes are read from the onboarding itself)."""

    onboarding_id: str
    purge: bool = False
    requested_at: str = ""
    requested_by: dict[str, str] = field(default_factory=dict)
    options: WorkflowOptions = field(default_factory=_default_options)
    # The events an earlier run of this offboarding reported on its channel, read by the DELETE that
    # starts it again: the instance (one id per onboarding) then shows only the new run, and the
    # delivery may not have taken the earlier run's last event yet (``webhook_hub.writer_position``).
    events_reported: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "onboarding_id": self.onboarding_id,
            "purge": self.purge,
            "requested_at": self.requested_at,
            "requested_by": dict(self.requested_by),
            "options": self.options.to_json(),
            # Only when there is one: a first run's input reads as it always did.
            **({"events_reported": self.events_reported} if self.events_reported else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            purge=bool(data.get("purge", False)),
            requested_at=str(data.get("requested_at", "")),
            requested_by=dict(data.get("requested_by") or {}),
            options=WorkflowOptions.from_json(data["options"]) if data.get("options") else _default_options(),
            events_reported=int(data.get("events_reported") or 0),
        )


@dataclass(frozen=True)
class OnboardingSnapshot:
    """What the offboarding needs of the onboarding, read through the Durable client.

    ``events_sent`` is how many webhook events the offboarding has handed over on its channel in
    earlier runs (``webhook_channel``); without a channel (a snapshot from before channels, or a
    delivery still running from then), the number of the stream's last event, which the offboarding's
    events follow (``onboarding.webhooks.StreamPosition``)."""

    final: bool
    request: dict[str, Any] | None = None  # the onboarding's request as submitted (mailboxes, admins)
    app: dict[str, Any] | None = None  # AppRegistration JSON, from the onboarding's output if any
    events_sent: int = 0
    webhook_channel: str | None = None
    # The mailboxes holding FullAccess now (``mailbox_ops.holding_access``): the request's, with those
    # added and less those removed since. None: the request's (a snapshot read before this field).
    mailboxes: tuple[str, ...] | None = None
    # Not final because a day-2 operation still runs: which one ("" while the onboarding runs).
    waiting_for: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "waiting_for": self.waiting_for,
            "final": self.final,
            "request": self.request,
            "app": self.app,
            "events_sent": self.events_sent,
            "webhook_channel": self.webhook_channel,
            "mailboxes": None if self.mailboxes is None else list(self.mailboxes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            final=bool(data["final"]),
            request=data.get("request"),
            app=data.get("app"),
            events_sent=int(data.get("events_sent") or 0),
            webhook_channel=data.get("webhook_channel"),
            mailboxes=None if data.get("mailboxes") is None else tuple(data["mailboxes"]),
            waiting_for=str(data.get("waiting_for") or ""),
        )

    @property
    def stream(self) -> StreamPosition:
        return StreamPosition.of(self.webhook_channel, self.events_sent)

    def mailboxes_with_access(self) -> list[str]:
        if self.mailboxes is not None:
            return list(self.mailboxes)
        return list((self.request or {}).get("mailboxes") or [])


@dataclass(frozen=True)
class FoundApp:
    """The app registration and its service principal, as far as they still exist."""

    object_id: str | None = None
    app_id: str | None = None
    service_principal_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "object_id": self.object_id,
            "app_id": self.app_id,
            "service_principal_id": self.service_principal_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(data.get("object_id"), data.get("app_id"), data.get("service_principal_id"))


@dataclass(frozen=True)
class MailboxRemoval:
    """One batch's answer: how many mailboxes lost FullAccess (or never had it), and the others."""

    removed: int
    failed: tuple[tuple[str, str], ...] = ()  # (mailbox, what to do)

    def to_json(self) -> dict[str, Any]:
        return {"removed": self.removed, "failed": [{"mailbox": m, "detail": d} for m, d in self.failed]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(int(data["removed"]), tuple((f["mailbox"], f["detail"]) for f in data.get("failed", ())))


@dataclass(frozen=True)
class AppDeletion:
    deleted: bool  # False: there was nothing to delete
    purged: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "purged": self.purged}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(bool(data["deleted"]), bool(data.get("purged", False)))


@dataclass(frozen=True)
class OffboardingResult:
    """The orchestration's output, and what the status view, the email and the last event show."""

    onboarding_id: str
    status: OffboardingStatus
    purge: bool = False
    app_id: str | None = None
    removed: tuple[str, ...] = ()
    left: tuple[str, ...] = ()
    mailboxes_removed: int = 0
    mailboxes_failed: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "onboarding_id": self.onboarding_id,
            "status": self.status.value,
            "purge": self.purge,
            "app_id": self.app_id,
            "removed": list(self.removed),
            "left": list(self.left),
            "mailboxes_removed": self.mailboxes_removed,
            "mailboxes_failed": [{"mailbox": m, "detail": d} for m, d in self.mailboxes_failed],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            status=OffboardingStatus(data["status"]),
            purge=bool(data.get("purge", False)),
            app_id=data.get("app_id"),
            removed=tuple(data.get("removed", ())),
            left=tuple(data.get("left", ())),
            mailboxes_removed=int(data.get("mailboxes_removed", 0)),
            mailboxes_failed=tuple((f["mailbox"], f["detail"]) for f in data.get("mailboxes_failed", ())),
        )


# --- the steps (each idempotent: an activity runs at least once) -----------------------------------


async def find_app(svc: ServicesPort, *, onboarding_id: str, known: AppRegistration | None) -> FoundApp:
    """The live app by its ``uniqueName`` (the onboarding's output may be missing or stale), else what
    the onboarding reported; its service principal by app id. Nothing found: nothing to remove."""
    app = await svc.graph.find_application(app_unique_name(onboarding_id))
    if app is None and known is not None:
        app = known
    if app is None:
        return FoundApp()
    sp = await svc.graph.find_service_principal(app.app_id) or app.service_principal_id
    return FoundApp(app.object_id, app.app_id, sp)


async def remove_mailbox_access(
    svc: ServicesPort, *, service_principal_id: str, mailboxes: Sequence[str]
) -> MailboxRemoval:
    """``Remove-MailboxPermission`` on each mailbox, bounded as the grants are. A mailbox Exchange
    refuses for a reason of its own fails alone, with the manual command; a refusal about the app or
    the function app's rights (permission, throttling) stops the batch as the grant step does."""
    from onboarding.steps import bounded

    async def remove(mailbox: str) -> str | None:
        try:
            await svc.exchange.remove_full_access(mailbox, service_principal_id)
        except (InvalidRequestError, NotFoundError):
            return (
                "Exchange Online refused to remove FullAccess with an error the offboarding does not "
                f"recognise. Fix: run Remove-MailboxPermission -Identity {mailbox} -User "
                f"{service_principal_id} -AccessRights FullAccess in Exchange Online PowerShell."
            )
        return None

    outcomes = await bounded(svc.settings.mailbox_concurrency, mailboxes, remove)
    failed = tuple((m, why) for m, why in zip(mailboxes, outcomes, strict=True) if why)
    return MailboxRemoval(removed=len(mailboxes) - len(failed), failed=failed)


async def remove_exchange_service_principal(svc: ServicesPort, *, app_id: str) -> None:
    await svc.exchange.remove_service_principal(app_id)


async def delete_app(
    svc: ServicesPort, *, object_id: str, service_principal_id: str | None, purge: bool
) -> AppDeletion:
    """Soft delete (restorable from deleted items for 30 days; Entra deletes the app's service
    principal with it); with ``purge``, delete both from deleted items too. Each counts an object
    already gone as done, so a re-run changes nothing."""
    await svc.graph.delete_application(object_id)
    if purge:
        await svc.graph.purge_deleted_item(object_id)
        if service_principal_id:
            await svc.graph.purge_deleted_item(service_principal_id)
    return AppDeletion(deleted=True, purged=purge)


async def remove_secret_reader(svc: ServicesPort, *, onboarding_id: str, principal_id: str) -> bool:
    """Delete the mail product's Key Vault Secrets User assignment on the secret; True if there was one.
    Already gone counts as done (ARM answers 204, or 404)."""
    return await svc.secret_access.remove_secret_reader(vault_secret_name(onboarding_id), principal_id)


async def delete_secret(svc: ServicesPort, *, onboarding_id: str) -> str:
    """Soft delete: recoverable while the vault's retention lasts. Already deleted counts as done."""
    name = vault_secret_name(onboarding_id)
    await svc.vault.delete(name)
    # A certificate onboarding's certificate (and its private key) goes the same way; a client-secret
    # onboarding has none, which counts as done.
    await svc.certificates.delete(vault_certificate_name(onboarding_id))
    # The onboarding's record (onboarding/records.py) goes with its credential: nothing is left to watch.
    await records.forget(svc.vault, onboarding_id)
    return name


async def notify_admins(
    svc: ServicesPort, *, request: OnboardingRequest, result: OffboardingResult, mailbox_count: int
) -> None:
    from onboarding.steps import send_email

    message = emails.offboarded(request, result, mailbox_count, emails.Brand.from_settings(svc.settings))
    await send_email(svc, request.admin_emails, message)


# --- the status view (pure: from the Durable status document, ``endpoints.http.status_json``) -----


def requested_purge(status: dict[str, Any]) -> bool:
    return bool(json_object(status.get("input")).get("purge", False))


def must_restart(status: dict[str, Any]) -> bool:
    """An offboarding that failed unexpectedly or was terminated is started again by the next DELETE."""
    return status.get("runtimeStatus") in ("Failed", "Terminated", "Canceled")


def events_reported(status: dict[str, Any]) -> int:
    """The webhook events an offboarding's run reported on its channel (its custom status; a failed or
    terminated run has no output of its own): what the run started again after it numbers on from."""
    return reported_count(CHANNEL_EVENTS_REPORTED, status.get("output"), status.get("customStatus"))


def is_running(view: dict[str, Any] | None) -> bool:
    return bool(view) and (view or {}).get("status") == OffboardingStatus.RUNNING.value


def offboarding_view(status: dict[str, Any]) -> dict[str, Any]:
    """The ``offboarding`` part of an onboarding's status view: its state, its steps in order, what it
    removed and what is left for an admin."""
    runtime = status.get("runtimeStatus")
    custom = json_object(status.get("customStatus"))
    output = json_object(status.get("output")) if runtime == "Completed" else {}
    steps = output.get("steps") or custom.get("steps") or {}
    view: dict[str, Any] = {
        "status": OffboardingStatus.RUNNING.value,
        "purge": requested_purge(status) or bool(custom.get("purge")),
        "startedAt": status.get("createdTime"),
        "updatedAt": status.get("lastUpdatedTime"),
        "steps": [
            {"name": step.value, "title": STEP_TITLES[step], **_step_state(steps.get(step.value))}
            for step in OffboardStep
        ],
        "removed": list(output.get("removed", [])),
        "left": list(output.get("left", [])),
        "mailboxesRemoved": int(output.get("mailboxes_removed", 0)),
        "mailboxesFailed": list(output.get("mailboxes_failed", [])),
    }
    if runtime in RUNNING_STATES:
        return view
    if output:
        view["status"] = OffboardingStatus(output["status"]).value
        return view
    view["status"] = OffboardingStatus.FAILED.value
    view["left"] = [
        f"The offboarding stopped unexpectedly ({runtime}). Fix: send DELETE again: it runs the "
        "offboarding again, and every step skips what is already removed."
    ]
    return view


def _step_state(raw: Any) -> dict[str, str | None]:
    raw = raw if isinstance(raw, dict) else {}
    return {"state": str(raw.get("state", "pending")), "at": raw.get("at"), "detail": raw.get("detail", "")}


# --- the activities' payloads (activities/offboarding.py), each with its contract -------------------


@dataclass(frozen=True)
class ReadOnboarding:
    """Read the onboarding; with ``cancel``, first ask a running one to cancel."""

    onboarding_id: str
    cancel: bool = False
    events_reported: int = 0  # OffboardingInput.events_reported

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"onboarding_id": self.onboarding_id, "cancel": self.cancel}
        if self.events_reported:  # absent otherwise: the payload of a first run is unchanged
            data["events_reported"] = self.events_reported
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["onboarding_id"], bool(data.get("cancel")), int(data.get("events_reported") or 0))


@dataclass(frozen=True)
class FindApp:
    """Find the app by its uniqueName; ``known_app`` is what the onboarding reported (AppRegistration JSON)."""

    onboarding_id: str
    known_app: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"onboarding_id": self.onboarding_id, "known_app": self.known_app}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["onboarding_id"], data.get("known_app"))


@dataclass(frozen=True)
class RemoveMailboxAccess:
    onboarding_id: str
    service_principal_id: str
    mailboxes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "onboarding_id": self.onboarding_id,
            "service_principal_id": self.service_principal_id,
            "mailboxes": list(self.mailboxes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["onboarding_id"], data["service_principal_id"], tuple(data["mailboxes"]))


@dataclass(frozen=True)
class RemoveExchangeServicePrincipal:
    onboarding_id: str
    app_id: str

    def to_json(self) -> dict[str, Any]:
        return {"onboarding_id": self.onboarding_id, "app_id": self.app_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["onboarding_id"], data["app_id"])


@dataclass(frozen=True)
class DeleteApp:
    onboarding_id: str
    object_id: str
    service_principal_id: str | None = None
    purge: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "onboarding_id": self.onboarding_id,
            "object_id": self.object_id,
            "service_principal_id": self.service_principal_id,
            "purge": self.purge,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            data["onboarding_id"], data["object_id"], data.get("service_principal_id"), bool(data["purge"])
        )


@dataclass(frozen=True)
class DeletedSecret:
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["name"])


@dataclass(frozen=True)
class NotifyOffboarded:
    """``request`` is the onboarding's request as submitted (JSON); ``mailbox_count`` how many it named."""

    onboarding_id: str
    request: dict[str, Any]
    result: OffboardingResult
    mailbox_count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "onboarding_id": self.onboarding_id,
            "request": self.request,
            "result": self.result.to_json(),
            "mailbox_count": self.mailbox_count,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            data["onboarding_id"],
            dict(data["request"]),
            OffboardingResult.from_json(dict(data["result"])),
            int(data["mailbox_count"]),
        )


def _snapshot(data: Any) -> OnboardingSnapshot:
    return OnboardingSnapshot.from_json(data)


def _found(data: Any) -> FoundApp:
    return FoundApp.from_json(data)


def _removal(data: Any) -> MailboxRemoval:
    return MailboxRemoval.from_json(data)


def _deletion(data: Any) -> AppDeletion:
    return AppDeletion.from_json(data)


def _removed(data: Any) -> bool:
    return bool(data["removed"])


def _reader_removed(data: Any) -> bool:
    return bool(data["removed"])


def _deleted_secret(data: Any) -> DeletedSecret:
    return DeletedSecret.from_json(data)


READ_ONBOARDING = C.Contract(A.OFFBOARD_READ_ONBOARDING, ReadOnboarding, _snapshot)
FIND_APP = C.Contract(A.OFFBOARD_FIND_APP, FindApp, _found)
REMOVE_MAILBOX_ACCESS = C.Contract(A.OFFBOARD_REMOVE_MAILBOX_ACCESS, RemoveMailboxAccess, _removal)
REMOVE_EXCHANGE_SP = C.Contract(A.OFFBOARD_REMOVE_EXCHANGE_SP, RemoveExchangeServicePrincipal, _removed)
DELETE_APP = C.Contract(A.OFFBOARD_DELETE_APP, DeleteApp, _deletion)
REMOVE_SECRET_READER = C.Contract(A.OFFBOARD_REMOVE_SECRET_READER, C.SecretReaderRef, _reader_removed)
DELETE_SECRET = C.Contract(A.OFFBOARD_DELETE_SECRET, C.OnboardingRef, _deleted_secret)
NOTIFY = C.Contract(A.OFFBOARD_NOTIFY, NotifyOffboarded, C.nothing)
