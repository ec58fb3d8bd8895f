"""What each activity of the onboarding takes and answers, as typed, frozen dataclasses.

Durable persists every activity input and output as JSON, so each type has an explicit JSON form:
``to_json()`` gives plain JSON (the same shape the activities always exchanged), ``from_json()``
reads it back. The orchestrator builds the payloads, ``activities`` decodes them through the
activity's ``Contract`` before calling its step, and encodes the step's answer; the orchestrator
decodes that answer with the same contract. None of these types ever holds a secret or a token.

Domain types (``onboarding.domain``) are used as they are where they fit (``ExchangeResource``,
``AppRegistration``, ``SecretRef``, ``MailboxResult``, ``OnboardingRequest``, ``OnboardingResult``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypeVar

from onboarding import activity_names as A
from onboarding.domain import (
    AppRegistration,
    CredentialType,
    ExchangeResource,
    MailboxResult,
    OnboardingRequest,
    OnboardingResult,
    SecretRef,
    StepError,
    WorkflowOptions,
)

Json = dict[str, Any]


# --- answers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """Not yet: the thing the step waits for (replication, propagation) has not happened. The
    orchestrator polls again with backoff, and gives up with ``reason`` and ``fix`` at its limit."""

    reason: str
    fix: str = ""

    def to_json(self) -> Json:
        return {"pending": self.reason, "fix": self.fix}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(reason=data["pending"], fix=data.get("fix", ""))

    @staticmethod
    def is_pending(data: object) -> bool:
        return isinstance(data, Mapping) and "pending" in data


R = TypeVar("R")


def or_pending(decode: Callable[[Any], R]) -> Callable[[Any], R | Pending]:
    """Decode an answer that is either ``Pending`` or what ``decode`` reads."""

    def read(data: Any) -> R | Pending:
        return Pending.from_json(data) if Pending.is_pending(data) else decode(data)

    return read


@dataclass(frozen=True)
class ServicePrincipal:
    """The enterprise application (service principal) of the new app exists in Graph."""

    service_principal_id: str

    def to_json(self) -> Json:
        return {"service_principal_id": self.service_principal_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(service_principal_id=data["service_principal_id"])


@dataclass(frozen=True)
class RolesConfirmed:
    """Graph shows every requested app role as assigned."""

    roles: tuple[str, ...]

    def to_json(self) -> Json:
        return {"confirmed": list(self.roles)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(roles=tuple(data["confirmed"]))


@dataclass(frozen=True)
class ExchangeRegistered:
    """Exchange Online knows the app's service principal."""

    service_principal_id: str

    def to_json(self) -> Json:
        return {"registered": self.service_principal_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(service_principal_id=data["registered"])


@dataclass(frozen=True)
class MailboxResults:
    """One result per mailbox, in the order asked; a JSON list on the wire."""

    results: tuple[MailboxResult, ...]

    def to_json(self) -> list[Json]:
        return [r.to_json() for r in self.results]

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]]) -> Self:
        return cls(results=tuple(MailboxResult.from_json(dict(r)) for r in data))


@dataclass(frozen=True)
class Compensation:
    """What the undo did, or what is left for an admin, one sentence each."""

    done: tuple[str, ...]

    def to_json(self) -> Json:
        return {"done": list(self.done)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(done=tuple(data["done"]))


def nothing(data: Any) -> None:
    """The answer of an activity that answers nothing."""
    return None


# --- payloads ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolveExchange:
    roles: tuple[str, ...]

    def to_json(self) -> Json:
        return {"roles": list(self.roles)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(roles=tuple(data["roles"]))


@dataclass(frozen=True)
class RegisterApp:
    onboarding_id: str
    display_name: str
    roles: tuple[str, ...]
    resource: ExchangeResource
    external_reference: str | None = None

    def to_json(self) -> Json:
        return {
            "onboarding_id": self.onboarding_id,
            "display_name": self.display_name,
            "roles": list(self.roles),
            "resource": self.resource.to_json(),
            "external_reference": self.external_reference,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            display_name=data["display_name"],
            roles=tuple(data["roles"]),
            resource=ExchangeResource.from_json(data["resource"]),
            external_reference=data.get("external_reference"),
        )


@dataclass(frozen=True)
class EnsureServicePrincipal:
    app_id: str

    def to_json(self) -> Json:
        return {"app_id": self.app_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(app_id=data["app_id"])


@dataclass(frozen=True)
class CreateSecret:
    onboarding_id: str
    tenant_id: str
    app: AppRegistration
    lifetime_days: int
    protocols: tuple[str, ...]
    credential_type: CredentialType = CredentialType.SECRET

    def to_json(self) -> Json:
        return {
            "onboarding_id": self.onboarding_id,
            "tenant_id": self.tenant_id,
            "app": self.app.to_json(),
            "lifetime_days": self.lifetime_days,
            "protocols": list(self.protocols),
            "credential_type": self.credential_type.value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            tenant_id=data["tenant_id"],
            app=AppRegistration.from_json(data["app"]),
            lifetime_days=int(data["lifetime_days"]),
            protocols=tuple(data["protocols"]),
            # Histories from before certificates carry no type: they made secrets.
            credential_type=CredentialType(data.get("credential_type") or CredentialType.SECRET),
        )


@dataclass(frozen=True)
class SecretReaderRef:
    """The mail product's principal (object id) and the onboarding whose secret it is to read."""

    onboarding_id: str
    principal_id: str

    def to_json(self) -> Json:
        return {"onboarding_id": self.onboarding_id, "principal_id": self.principal_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(onboarding_id=data["onboarding_id"], principal_id=data["principal_id"])


@dataclass(frozen=True)
class SecretReader:
    """The principal holds Key Vault Secrets User on the one secret (the role assignment's name)."""

    principal_id: str
    secret_name: str
    assignment: str

    def to_json(self) -> Json:
        return {
            "principal_id": self.principal_id,
            "secret_name": self.secret_name,
            "assignment": self.assignment,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            principal_id=data["principal_id"], secret_name=data["secret_name"], assignment=data["assignment"]
        )


@dataclass(frozen=True)
class SendDecisionEmail:
    """``request`` may name only the mailboxes the email shows; ``mailbox_count`` says how many there are."""

    onboarding_id: str
    request: OnboardingRequest
    app_id: str
    nonce: str
    deadline: str  # ISO 8601
    reminder: int = 0
    mailbox_count: int | None = None

    def to_json(self) -> Json:
        return {
            "onboarding_id": self.onboarding_id,
            "request": self.request.to_json(),
            "app_id": self.app_id,
            "nonce": self.nonce,
            "deadline": self.deadline,
            "reminder": self.reminder,
            "mailbox_count": self.mailbox_count,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            request=OnboardingRequest.from_json(data["request"]),
            app_id=data["app_id"],
            nonce=data["nonce"],
            deadline=data["deadline"],
            reminder=int(data.get("reminder", 0)),
            mailbox_count=data.get("mailbox_count"),
        )


@dataclass(frozen=True)
class AppRoles:
    """The app roles of ``resource`` the app's service principal is to hold (grant, or check)."""

    service_principal_id: str
    resource: ExchangeResource
    roles: tuple[str, ...]

    def to_json(self) -> Json:
        return {
            "service_principal_id": self.service_principal_id,
            "resource": self.resource.to_json(),
            "roles": list(self.roles),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            service_principal_id=data["service_principal_id"],
            resource=ExchangeResource.from_json(data["resource"]),
            roles=tuple(data["roles"]),
        )


@dataclass(frozen=True)
class RegisterInExchange:
    app_id: str
    service_principal_id: str
    app_object_id: str
    display_name: str

    def to_json(self) -> Json:
        return {
            "app_id": self.app_id,
            "service_principal_id": self.service_principal_id,
            "app_object_id": self.app_object_id,
            "display_name": self.display_name,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            app_id=data["app_id"],
            service_principal_id=data["service_principal_id"],
            app_object_id=data["app_object_id"],
            display_name=data["display_name"],
        )


@dataclass(frozen=True)
class GrantMailboxes:
    service_principal_id: str
    mailboxes: tuple[str, ...]
    protocols: tuple[str, ...]
    # Answer only the mailboxes not granted (every other one was): a pipelined level of batches
    # (orchestrations/onboarding.py MailboxLevel) keeps the answers of ten batches in the history
    # it replays at every step.
    only_not_granted: bool = False

    def to_json(self) -> Json:
        flag = {"only_not_granted": True} if self.only_not_granted else {}
        return {
            "service_principal_id": self.service_principal_id,
            "mailboxes": list(self.mailboxes),
            "protocols": list(self.protocols),
            **flag,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            service_principal_id=data["service_principal_id"],
            mailboxes=tuple(data["mailboxes"]),
            protocols=tuple(data["protocols"]),
            only_not_granted=bool(data.get("only_not_granted", False)),
        )


@dataclass(frozen=True)
class VerifyMailboxes:
    tenant_id: str
    app: AppRegistration
    secret: SecretRef  # where the secret is: the activity reads it from Key Vault
    protocols: tuple[str, ...]
    mailboxes: tuple[str, ...]

    def to_json(self) -> Json:
        return {
            "tenant_id": self.tenant_id,
            "app": self.app.to_json(),
            "secret": self.secret.to_json(),
            "protocols": list(self.protocols),
            "mailboxes": list(self.mailboxes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            tenant_id=data["tenant_id"],
            app=AppRegistration.from_json(data["app"]),
            secret=SecretRef.from_json(data["secret"]),
            protocols=tuple(data["protocols"]),
            mailboxes=tuple(data["mailboxes"]),
        )


@dataclass(frozen=True)
class Compensate:
    onboarding_id: str
    app: AppRegistration | None
    exchange_registered: bool
    # The mail product's principal, once its role on the secret may have been assigned.
    secret_reader: str | None = None
    credential_type: CredentialType = CredentialType.SECRET  # a certificate's is deleted too

    def to_json(self) -> Json:
        data: Json = {
            "onboarding_id": self.onboarding_id,
            "app": self.app.to_json() if self.app else None,
            "exchange_registered": self.exchange_registered,
            "credential_type": self.credential_type.value,
        }
        if self.secret_reader:
            data["secret_reader"] = self.secret_reader
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            app=AppRegistration.from_json(data["app"]) if data.get("app") else None,
            exchange_registered=bool(data["exchange_registered"]),
            secret_reader=data.get("secret_reader"),
            credential_type=CredentialType(data.get("credential_type") or CredentialType.SECRET),
        )


@dataclass(frozen=True)
class NotifyOutcome:
    """``request`` may name only the mailboxes the email shows; ``mailbox_count`` says how many there are."""

    request: OnboardingRequest
    result: OnboardingResult
    mailbox_count: int | None = None

    def to_json(self) -> Json:
        return {
            "request": self.request.to_json(),
            "result": self.result.to_json(),
            "mailbox_count": self.mailbox_count,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            request=OnboardingRequest.from_json(data["request"]),
            result=OnboardingResult.from_json(data["result"]),
            mailbox_count=data.get("mailbox_count"),
        )


@dataclass(frozen=True)
class BatchGrant:
    """How a batch's grant step went, when the orchestration above it ran it (pipelined batches):
    the mailboxes not granted, with their results (every other mailbox of the batch was granted), or
    the step's error when it failed as a whole."""

    not_granted: tuple[MailboxResult, ...] = ()
    error: StepError | None = None

    def to_json(self) -> Json:
        return {
            "not_granted": [r.to_json() for r in self.not_granted],
            "error": self.error.to_json() if self.error else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            not_granted=tuple(MailboxResult.from_json(dict(r)) for r in data.get("not_granted", ())),
            error=StepError.from_json(data["error"]) if data.get("error") else None,
        )


@dataclass(frozen=True)
class MailboxJob:
    """The input of a mailbox batch or group sub-orchestration: ``mailboxes`` are batches numbered
    from ``first_batch`` (a batch's own number, for a batch). A batch given ``grant`` only verifies
    (its parent granted); without it, it grants first."""

    onboarding_id: str
    tenant_id: str
    app: AppRegistration
    secret: SecretRef
    protocols: tuple[str, ...]
    options: WorkflowOptions
    mailboxes: tuple[str, ...] = ()
    first_batch: int = 0
    grant: BatchGrant | None = None

    def to_json(self) -> Json:
        grant = {"grant": self.grant.to_json()} if self.grant is not None else {}
        return {
            "onboarding_id": self.onboarding_id,
            "tenant_id": self.tenant_id,
            "app": self.app.to_json(),
            "secret": self.secret.to_json(),
            "protocols": list(self.protocols),
            "options": self.options.to_json(),
            "mailboxes": list(self.mailboxes),
            "first_batch": self.first_batch,
            **grant,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            tenant_id=data["tenant_id"],
            app=AppRegistration.from_json(data["app"]),
            secret=SecretRef.from_json(data["secret"]),
            protocols=tuple(data["protocols"]),
            options=WorkflowOptions.from_json(data["options"]),
            mailboxes=tuple(data["mailboxes"]),
            first_batch=int(data.get("first_batch", 0)),
            grant=BatchGrant.from_json(data["grant"]) if data.get("grant") is not None else None,
        )


# --- the activities ---------------------------------------------------------------------------------


class Payload(Protocol):
    def to_json(self) -> Json: ...

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self: ...


P = TypeVar("P", bound=Payload)


@dataclass(frozen=True)
class Contract(Generic[P, R]):
    """One activity: its name, the type of its payload, and how its answer is read back."""

    name: str
    payload: type[P]
    result: Callable[[Any], R]


RESOLVE_EXCHANGE = Contract(A.RESOLVE_EXCHANGE, ResolveExchange, ExchangeResource.from_json)
REGISTER_APP = Contract(A.REGISTER_APP, RegisterApp, AppRegistration.from_json)
ENSURE_SERVICE_PRINCIPAL = Contract(
    A.ENSURE_SERVICE_PRINCIPAL, EnsureServicePrincipal, or_pending(ServicePrincipal.from_json)
)
CREATE_SECRET = Contract(A.CREATE_SECRET, CreateSecret, SecretRef.from_json)
GRANT_SECRET_READER = Contract(A.GRANT_SECRET_READER, SecretReaderRef, or_pending(SecretReader.from_json))
SEND_DECISION_EMAIL = Contract(A.SEND_DECISION_EMAIL, SendDecisionEmail, nothing)
GRANT_APP_ROLES = Contract(A.GRANT_APP_ROLES, AppRoles, nothing)
CHECK_APP_ROLES = Contract(A.CHECK_APP_ROLES, AppRoles, or_pending(RolesConfirmed.from_json))
REGISTER_IN_EXCHANGE = Contract(
    A.REGISTER_IN_EXCHANGE, RegisterInExchange, or_pending(ExchangeRegistered.from_json)
)
GRANT_MAILBOXES = Contract(A.GRANT_MAILBOXES, GrantMailboxes, MailboxResults.from_json)
VERIFY_MAILBOXES = Contract(A.VERIFY_MAILBOXES, VerifyMailboxes, MailboxResults.from_json)
COMPENSATE = Contract(A.COMPENSATE, Compensate, Compensation.from_json)
NOTIFY_OUTCOME = Contract(A.NOTIFY_OUTCOME, NotifyOutcome, nothing)


# --- the record of a finished onboarding (activities/records.py) -------------------------------------


@dataclass(frozen=True)
class RecordOnboarding:
    """What outlives the history's purge (onboarding/records.py). ``request`` may name only the
    mailboxes the emails show; ``mailbox_count`` says how many there are."""

    onboarding_id: str
    request: OnboardingRequest
    mailbox_count: int
    app: AppRegistration
    outcome: str  # an onboarding.domain.Outcome value
    at: str  # ISO 8601, the orchestration's time

    def to_json(self) -> Json:
        return {
            "onboarding_id": self.onboarding_id,
            "request": self.request.to_json(),
            "mailbox_count": self.mailbox_count,
            "app": self.app.to_json(),
            "outcome": self.outcome,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            request=OnboardingRequest.from_json(data["request"]),
            mailbox_count=int(data["mailbox_count"]),
            app=AppRegistration.from_json(data["app"]),
            outcome=data["outcome"],
            at=data["at"],
        )


@dataclass(frozen=True)
class Recorded:
    """Whether the credential is recorded (by this run or an earlier one: the same answer on a rerun)."""

    recorded: bool

    def to_json(self) -> Json:
        return {"recorded": self.recorded}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(recorded=bool(data["recorded"]))


RECORD_ONBOARDING = Contract(A.RECORD_ONBOARDING, RecordOnboarding, Recorded.from_json)


# --- diagnosis and the drift check (activities/diagnosis.py) ----------------------------------------


@dataclass(frozen=True)
class Diagnose:
    """Diagnose an onboarding (``onboarding_id``) or any app and mailbox (``target``, an
    ``onboarding.diagnosis.Target`` as JSON). ``compact``: answer only the first broken link, as the
    drift check keeps one small answer per onboarding in its history."""

    onboarding_id: str | None = None
    target: Json | None = None
    compact: bool = False

    def to_json(self) -> Json:
        data: Json = {"compact": self.compact} if self.compact else {}
        if self.onboarding_id is not None:
            data["onboarding_id"] = self.onboarding_id
        if self.target is not None:
            data["target"] = self.target
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            onboarding_id=data.get("onboarding_id"),
            target=data.get("target"),
            compact=bool(data.get("compact")),
        )


@dataclass(frozen=True)
class OnboardingRef:
    onboarding_id: str

    def to_json(self) -> Json:
        return {"onboarding_id": self.onboarding_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(onboarding_id=data["onboarding_id"])


@dataclass(frozen=True)
class DriftEmail:
    """Tell an onboarding's admins that ``link`` (``{"name", "detail", "fix"}``) broke."""

    onboarding_id: str
    app_id: str
    link: Json

    def to_json(self) -> Json:
        return {"onboarding_id": self.onboarding_id, "app_id": self.app_id, "link": dict(self.link)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(onboarding_id=data["onboarding_id"], app_id=data["app_id"], link=dict(data["link"]))


@dataclass(frozen=True)
class NoPayload:
    def to_json(self) -> Json:
        return {}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls()


def as_json(data: Any) -> Any:
    return data


@dataclass(frozen=True)
class NextWebhookEvent:
    """The number a drift report's event gets: the next on the drift check's channel (``channel``,
    an ``onboarding.webhooks.Channel`` value), or, without one, the next in the stream (a delivery
    still running from before channels, or an answer recorded then, which was that number alone)."""

    sequence: int
    channel: str | None = None

    def to_json(self) -> Json:
        return {"sequence": self.sequence, "channel": self.channel}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        if isinstance(data, int):
            return cls(data)
        return cls(int(data["sequence"]), data.get("channel"))


DIAGNOSE = Contract(A.DIAGNOSE, Diagnose, as_json)
NEXT_WEBHOOK_SEQUENCE = Contract(A.NEXT_WEBHOOK_SEQUENCE, OnboardingRef, NextWebhookEvent.from_json)
SEND_DRIFT_EMAIL = Contract(A.SEND_DRIFT_EMAIL, DriftEmail, nothing)
LIST_ACTIVE_ONBOARDINGS = Contract(A.LIST_ACTIVE_ONBOARDINGS, NoPayload, as_json)


# --- the webhook activities (activities/webhooks.py) ------------------------------------------------


@dataclass(frozen=True)
class EmitWebhookEvent:
    """Webhook event ``sequence`` of an onboarding, for its delivery orchestration: the onboarding's
    (numbered in the stream), or with ``channel`` the ``sequence``-th event of that day-2 writer
    (an ``onboarding.webhooks.Channel`` value), which the delivery places in the stream.

    ``data`` is the event's body as receivers get it (docs/api.md), JSON already. The first event
    carries the request's ``callback_url`` (its first subscription); the completion event carries
    the request's JSON, so the activity can name every mailbox's result."""

    onboarding_id: str
    sequence: int
    type: str  # an onboarding.webhooks.EventType value
    occurred_at: str  # ISO 8601
    data: Json
    callback_url: str | None = None
    request: Json | None = None
    channel: str | None = None

    def to_json(self) -> Json:
        payload: Json = {
            "onboarding_id": self.onboarding_id,
            "sequence": self.sequence,
            "type": self.type,
            "occurred_at": self.occurred_at,
            "data": self.data,
        }
        if self.callback_url:
            payload["callback_url"] = self.callback_url
        if self.request is not None:
            payload["request"] = self.request
        if self.channel:
            payload["channel"] = self.channel
        return payload

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            sequence=int(data["sequence"]),
            type=data["type"],
            occurred_at=data["occurred_at"],
            data=data["data"],
            callback_url=data.get("callback_url"),
            request=data.get("request"),
            channel=data.get("channel"),
        )


@dataclass(frozen=True)
class EventHandedOver:
    id: str  # the name it was raised under (``onboarding.webhooks.event_name``)

    def to_json(self) -> Json:
        return {"id": self.id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(id=data["id"])


@dataclass(frozen=True)
class DeliverWebhook:
    """POST one event (its envelope, ``onboarding.webhooks.envelope``) to one subscription's URL."""

    url: str
    event: Json

    def to_json(self) -> Json:
        return {"url": self.url, "event": self.event}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(url=data["url"], event=data["event"])


def http_status(data: Any) -> int:
    """The answer of a delivery: the receiver's HTTP status."""
    return int(data)


EMIT_WEBHOOK_EVENT = Contract(A.EMIT_WEBHOOK_EVENT, EmitWebhookEvent, EventHandedOver.from_json)
DELIVER_WEBHOOK = Contract(A.DELIVER_WEBHOOK, DeliverWebhook, http_status)
