"""Mailbox operations on a finished onboarding (issue 11 item 1). Their contract and their steps.

``POST /api/v1/onboardings/{id}/retry`` starts the durable orchestration ``<id>:mailboxes``
(``orchestrations/mailbox_ops.py``); one instance per onboarding at a time, so a second POST while it
runs finds the first. It grants FullAccess again and logs in again (the onboarding's own
``grant_mailboxes`` / ``verify_mailboxes`` activities, through ``MailboxBatch``) on the mailboxes that
need attention only: the onboarding's ``attention`` list, less those a previous retry verified. The
app's secret is read from Key Vault inside the verify activity; the orchestration only holds where
it is. Then it records the retry in the onboarding's record and sends the webhook events.

Its results overlay the onboarding's ``mailboxes.results`` in the status view (``overlay``), so the
view shows each mailbox's latest state; the onboarding's own outcome is left as it ended.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

from onboarding import activity_names as A
from onboarding import contracts as C
from onboarding import plan
from onboarding.domain import (
    AppRegistration,
    MailboxResult,
    MailboxState,
    OnboardingRequest,
    SecretRef,
    WorkflowOptions,
    _default_options,
)
from onboarding.durable_status import is_running, json_object
from onboarding.lazy import lazy
from onboarding.webhooks import StreamPosition

if TYPE_CHECKING:
    from onboarding import emails, records
    from onboarding.ports import ServicesPort
else:  # used by the steps only: loaded on first use (onboarding/lazy.py)
    emails = lazy("onboarding.emails")
    records = lazy("onboarding.records")

MAILBOX_OPERATION_ORCHESTRATOR = "mailbox_operation_orchestrator"


def mailbox_operation_instance_id(onboarding_id: str) -> str:
    """The onboarding's mailbox operation: a second POST while it runs names the same instance."""
    return f"{onboarding_id}:mailboxes"


class OperationKind(StrEnum):
    RETRY = "retry"
    ADD = "add"
    REMOVE = "remove"


class OperationStep(StrEnum):
    NOTIFY = "notify_admins"
    REMOVE = "remove_full_access"
    CONFIRM_REMOVED = "confirm_login_refused"
    RECORD = "record_operation"


class OperationStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every mailbox of the operation verified
    PARTIAL = "partial"  # some still need attention: see each result's detail


@dataclass(frozen=True)
class MailboxOperationInput:
    """The orchestration's input, taken from the finished onboarding by the HTTP trigger (no secret)."""

    onboarding_id: str
    kind: OperationKind
    tenant_id: str
    app: AppRegistration
    secret: SecretRef  # where the current secret is: the verify activity reads it from Key Vault
    protocols: tuple[str, ...]
    mailboxes: tuple[str, ...]
    requested_at: str
    # Where the operation stands in the onboarding's webhook stream (``StreamPosition``): its channel's
    # events so far over its earlier runs, or without a channel the stream's last sequence.
    events_sent: int = 0
    requested_by: dict[str, str] = field(default_factory=dict)
    options: WorkflowOptions = field(default_factory=_default_options)
    request: dict[str, Any] = field(default_factory=dict)  # the onboarding's (admins, name) for the email
    # The latest result of each mailbox earlier operations worked on: this one's output carries them on,
    # so the view shows every mailbox's latest state although only the last operation is kept.
    earlier: tuple[MailboxResult, ...] = ()
    webhook_channel: str | None = None  # with ``events_sent``: see above

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "earlier": [r.to_json() for r in self.earlier],
            "onboarding_id": self.onboarding_id,
            "kind": self.kind.value,
            "tenant_id": self.tenant_id,
            "app": self.app.to_json(),
            "secret": self.secret.to_json(),
            "protocols": list(self.protocols),
            "mailboxes": list(self.mailboxes),
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
            kind=OperationKind(data["kind"]),
            tenant_id=data["tenant_id"],
            app=AppRegistration.from_json(data["app"]),
            secret=SecretRef.from_json(data["secret"]),
            protocols=tuple(data["protocols"]),
            mailboxes=tuple(data["mailboxes"]),
            requested_at=str(data["requested_at"]),
            events_sent=int(data.get("events_sent") or 0),
            webhook_channel=data.get("webhook_channel"),
            requested_by=dict(data.get("requested_by") or {}),
            options=WorkflowOptions.from_json(data["options"]) if data.get("options") else _default_options(),
            request=dict(data.get("request") or {}),
            earlier=tuple(MailboxResult.from_json(dict(r)) for r in data.get("earlier") or ()),
        )

    def job(self, mailboxes: Sequence[str]) -> C.MailboxJob:
        """A ``MailboxBatch`` job over some of the operation's mailboxes."""
        return C.MailboxJob(
            onboarding_id=self.onboarding_id,
            tenant_id=self.tenant_id,
            app=self.app,
            secret=self.secret,
            protocols=self.protocols,
            options=self.options,
            mailboxes=tuple(mailboxes),
        )


@dataclass(frozen=True)
class MailboxOperationResult:
    """The orchestration's output: one result per mailbox, in the order asked."""

    onboarding_id: str
    kind: OperationKind
    status: OperationStatus
    results: tuple[MailboxResult, ...]
    latest: tuple[MailboxResult, ...] = ()  # every mailbox any operation worked on, its latest result

    def to_json(self) -> dict[str, Any]:
        return {
            "onboarding_id": self.onboarding_id,
            "kind": self.kind.value,
            "status": self.status.value,
            "results": [r.to_json() for r in self.results],
            "latest": [r.to_json() for r in self.latest],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            kind=OperationKind(data["kind"]),
            status=OperationStatus(data["status"]),
            results=tuple(MailboxResult.from_json(dict(r)) for r in data["results"]),
            latest=tuple(MailboxResult.from_json(dict(r)) for r in data.get("latest") or data["results"]),
        )

    @classmethod
    def of(
        cls,
        onboarding_id: str,
        kind: OperationKind,
        results: Sequence[MailboxResult],
        earlier: Sequence[MailboxResult] = (),
    ) -> Self:
        wanted = MailboxState.REMOVED if kind is OperationKind.REMOVE else MailboxState.VERIFIED
        done = all(r.state is wanted for r in results)
        status = OperationStatus.SUCCEEDED if done else OperationStatus.PARTIAL
        latest = {r.mailbox: r for r in earlier} | {r.mailbox: r for r in results}
        return cls(onboarding_id, kind, status, tuple(results), tuple(latest.values()))


@dataclass(frozen=True)
class RecordMailboxOperation:
    """Log the operation in the onboarding's record (``records.update``)."""

    result: MailboxOperationResult
    at: str  # when the operation ended (ISO 8601), from the orchestration's clock

    def to_json(self) -> dict[str, Any]:
        return {"result": self.result.to_json(), "at": self.at}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(MailboxOperationResult.from_json(data["result"]), str(data["at"]))


@dataclass(frozen=True)
class NotifyAdded:
    """Tell the onboarding's admins which mailboxes gain FullAccess, before it is granted."""

    onboarding_id: str
    request: dict[str, Any]
    mailboxes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "onboarding_id": self.onboarding_id,
            "request": self.request,
            "mailboxes": list(self.mailboxes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["onboarding_id"], dict(data["request"]), tuple(data["mailboxes"]))


RECORD = C.Contract(A.MAILBOXES_RECORD, RecordMailboxOperation, C.nothing)
NOTIFY_ADDED = C.Contract(A.MAILBOXES_NOTIFY_ADDED, NotifyAdded, C.nothing)


def _recorded(kind: OperationKind) -> records.Operation:
    """The record's entry for an operation (a function, not a table: records loads on first use)."""
    return {
        OperationKind.RETRY: records.Operation.MAILBOXES_RETRIED,
        OperationKind.ADD: records.Operation.MAILBOXES_ADDED,
        OperationKind.REMOVE: records.Operation.MAILBOXES_REMOVED,
    }[kind]


async def notify_added(svc: ServicesPort, p: NotifyAdded) -> None:
    from onboarding.steps import send_email

    request = OnboardingRequest.from_json(p.request)
    if request.admin_emails:
        message = emails.mailboxes_added(request, p.mailboxes, emails.Brand.from_settings(svc.settings))
        await send_email(svc, request.admin_emails, message)


async def record_operation(svc: ServicesPort, p: RecordMailboxOperation) -> None:
    """Idempotent: the record keeps one entry per operation and time (``with_operation``), and its
    mailbox count follows the onboarding's mailboxes: every mailbox added is one of them from now on
    (one that failed stays, to be retried), a mailbox removed leaves only once its FullAccess is gone."""
    kind = p.result.kind
    results = p.result.results
    added = [r.mailbox for r in results] if kind is OperationKind.ADD else []
    removed = (
        [r.mailbox for r in results if r.state is MailboxState.REMOVED]
        if kind is OperationKind.REMOVE
        else []
    )
    if kind is OperationKind.REMOVE:
        detail = f"{len(removed)} of {len(results)} mailboxes removed: {', '.join(removed) or 'none'}."
    else:
        verified = [r.mailbox for r in results if r.state is MailboxState.VERIFIED]
        detail = f"{len(verified)} of {len(results)} mailboxes verified: {', '.join(verified) or 'none'}."
    await records.update(
        svc.vault,
        p.result.onboarding_id,
        _recorded(kind),
        datetime.fromisoformat(p.at),
        detail,
        added=added,
        removed=removed,
    )


# --- the status view (pure: from the Durable status documents) -------------------------------------


def finished_result(status: dict[str, Any] | None) -> MailboxOperationResult | None:
    output = (
        json_object((status or {}).get("output"))
        if (status or {}).get("runtimeStatus") == "Completed"
        else {}
    )
    return MailboxOperationResult.from_json(output) if output else None


def operation_view(status: dict[str, Any]) -> dict[str, Any]:
    """The ``mailboxOperation`` part of an onboarding's status view: what runs on which mailboxes,
    how far it is (``counts``), and each mailbox's result once it ended."""
    job = json_object(status.get("input"))
    custom = json_object(status.get("customStatus"))
    result = finished_result(status)
    view: dict[str, Any] = {
        "kind": job.get("kind") or custom.get("kind"),
        "status": OperationStatus.RUNNING.value,
        "startedAt": status.get("createdTime"),
        "updatedAt": status.get("lastUpdatedTime"),
        "mailboxes": list(job.get("mailboxes") or custom.get("mailboxes") or []),
        "counts": dict(custom.get("counts") or {}),
        "results": None,
        "error": None,
    }
    if is_running(status):
        return view
    if result is not None:
        view["status"] = result.status.value
        view["counts"] = _counts(result.results)
        view["results"] = [_result_view(r) for r in result.results]
        return view
    view["status"] = "failed"
    view["error"] = (
        f"The mailbox operation stopped unexpectedly ({status.get('runtimeStatus')}). Fix: POST it again."
    )
    return view


def overlay(view: dict[str, Any], status: dict[str, Any] | None) -> None:
    """Show the latest state of each mailbox in the onboarding's ``mailboxes.results``: a finished
    operation's results replace the onboarding's own for the mailboxes it worked on."""
    result = finished_result(status)
    shown = (view.get("mailboxes") or {}).get("results")
    if result is None or not shown:
        return
    latest = {r.mailbox: r for r in result.latest}
    merged = [_result_view(latest.pop(r["mailbox"])) if r["mailbox"] in latest else r for r in shown]
    merged += [_result_view(r) for r in latest.values()]  # mailboxes added after the onboarding
    merged = [r for r in merged if r["state"] != MailboxState.REMOVED.value]  # no longer the onboarding's
    view["mailboxes"]["results"] = merged
    view["mailboxes"]["total"] = len(merged)
    view["mailboxes"]["counts"] = plan.count_states(r["state"] for r in merged)


def holding_access(requested: Sequence[str], result: MailboxOperationResult | None) -> tuple[str, ...]:
    """The mailboxes an onboarding gave FullAccess on, as its mailbox operations left them: those it
    asked for and those added since, less those removed since (a removal that failed keeps its mailbox).
    What an offboarding must remove."""
    latest = result.latest if result else ()
    states = {r.mailbox.lower(): r.state for r in latest}
    spelled = {m.lower(): m for m in requested} | {r.mailbox.lower(): r.mailbox for r in latest}
    return tuple(m for key, m in spelled.items() if states.get(key) is not MailboxState.REMOVED)


def needing_attention(view: dict[str, Any]) -> list[str]:
    """The mailboxes of an (overlaid) onboarding view that still need an admin."""
    return [r["mailbox"] for r in (view.get("mailboxes") or {}).get("results") or [] if r.get("needsAction")]


def _result_view(result: MailboxResult) -> dict[str, Any]:
    return {
        "mailbox": result.mailbox,
        "state": result.state.value,
        "protocols": dict(result.protocols),
        "detail": result.detail,
        "needsAction": result.state not in (MailboxState.VERIFIED, MailboxState.REMOVED),
    }


def _counts(results: Sequence[MailboxResult]) -> dict[str, int]:
    return plan.count_states(r.state.value for r in results)
