"""Domain types of an onboarding: the request, what crosses function boundaries, and the outcome.

Everything here is plain data with an explicit JSON form, because Durable Functions persists every
input, output, event and custom status. None of these types ever holds a secret or a token: the
client secret goes from Graph straight into Key Vault and only a ``SecretRef`` comes back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, Self

# Office 365 Exchange Online's appId is the same in every tenant (and cloud).
EXCHANGE_ONLINE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"

# A request's secret lifetime when it names none (onboarding.validation bounds what it may set).
DEFAULT_SECRET_LIFETIME_DAYS = 180

# Names shared by triggers, orchestrators and activities.
ORCHESTRATOR = "onboarding_orchestrator"
MAILBOX_BATCH_ORCHESTRATOR = "mailbox_batch_orchestrator"
MAILBOX_GROUP_ORCHESTRATOR = "mailbox_group_orchestrator"
EVENT_DECISION = "AdminDecision"
EVENT_CANCEL = "CancelRequested"


class Protocol(StrEnum):
    IMAP = "IMAP"
    POP = "POP"

    @property
    def app_role(self) -> str:
        """The Exchange Online application permission this protocol needs."""
        return f"{self.value}.AccessAsApp"


class CredentialType(StrEnum):
    """How the onboarded app proves itself to Entra ID. Microsoft recommends certificates over
    client secrets (docs/handoff.md, "Which credential to choose")."""

    SECRET = "secret"  # noqa: S105 - a credential type, not a password (Graph addPassword)
    CERTIFICATE = "certificate"  # a Key Vault certificate whose public part is a keyCredential


class ConsentMode(StrEnum):
    CONSENT = "consent"  # the admin grants admin consent in Entra
    GRANT = "grant"  # the admin approves here and the workflow assigns the app roles itself


class Decision(StrEnum):
    CONSENTED = "consented"  # Entra redirected back without error
    DECLINED = "declined"  # Entra redirected back with an error (admin pressed Cancel)
    APPROVED = "approved"  # grant mode: admin approved
    REJECTED = "rejected"  # grant mode: admin rejected


class _Json:
    """Explicit JSON form for frozen dataclasses: enums become strings, tuples lists."""

    def to_json(self) -> dict[str, Any]:
        return _plain(asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})


def _plain(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class OnboardingRequest(_Json):
    """A validated onboarding request (see ``onboarding.validation`` for parsing)."""

    tenant_id: str
    display_name: str
    protocols: tuple[Protocol, ...]
    mailboxes: tuple[str, ...]
    admin_emails: tuple[str, ...]
    consent_mode: ConsentMode = ConsentMode.CONSENT
    secret_lifetime_days: int = DEFAULT_SECRET_LIFETIME_DAYS  # the credential's, whatever its type
    callback_url: str | None = None
    external_reference: str | None = None
    idempotency_key: str | None = None
    # Who asked (onboarding.admission.requester_id), set by the API, never by the body: the emails
    # name it so the admin knows where the request came from.
    requested_by: str | None = None
    # The mail product's service principal or managed identity (object id): it gets Key Vault Secrets
    # User on this onboarding's secret only (onboarding/secret_reader.py).
    mail_product_principal_id: str | None = None
    credential_type: CredentialType = CredentialType.SECRET

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            tenant_id=data["tenant_id"],
            display_name=data["display_name"],
            protocols=tuple(Protocol(p) for p in data["protocols"]),
            mailboxes=tuple(data["mailboxes"]),
            admin_emails=tuple(data["admin_emails"]),
            consent_mode=ConsentMode(data.get("consent_mode", ConsentMode.CONSENT)),
            secret_lifetime_days=int(data.get("secret_lifetime_days", DEFAULT_SECRET_LIFETIME_DAYS)),
            callback_url=data.get("callback_url"),
            external_reference=data.get("external_reference"),
            idempotency_key=data.get("idempotency_key"),
            requested_by=data.get("requested_by"),
            mail_product_principal_id=data.get("mail_product_principal_id"),
            credential_type=CredentialType(data.get("credential_type") or CredentialType.SECRET),
        )

    @property
    def app_roles(self) -> tuple[str, ...]:
        return tuple(p.app_role for p in self.protocols)


def reference_prefix(external_reference: str | None) -> str:
    """The id prefix shared by every onboarding with this ``externalReference``: listing filters by it
    with the Durable instance query's ``instanceIdPrefix`` (the query has no filter on input or custom
    status). 32 bits; the listing confirms the exact reference, so a collision only costs a row."""
    digest = hashlib.sha256(f"ref\n{external_reference or ''}".encode()).hexdigest()
    return f"onb-{digest[:8]}"


def onboarding_id_for(tenant_id: str, idempotency_key: str, external_reference: str | None = None) -> str:
    """Deterministic instance id: the same key (per tenant and reference) always names the same
    onboarding. ``onb-``, 8 hex digits of the reference, 24 of the key."""
    digest = hashlib.sha256(f"{tenant_id.lower()}\n{idempotency_key}".encode()).hexdigest()
    return f"{reference_prefix(external_reference)}{digest[:24]}"


def new_onboarding_id(external_reference: str | None, random_hex: str) -> str:
    """A fresh instance id (no idempotency key), under its reference's prefix."""
    return f"{reference_prefix(external_reference)}{random_hex[:24]}"


def app_unique_name(onboarding_id: str) -> str:
    """The app's ``uniqueName``: ties the app registration to its onboarding and makes create idempotent."""
    return f"mail-onboarding-{onboarding_id}"


def vault_secret_name(onboarding_id: str) -> str:
    """Key Vault secret names allow only letters, digits and dashes."""
    return f"mail-app-{onboarding_id}"


def vault_certificate_name(onboarding_id: str) -> str:
    """The onboarding's Key Vault certificate. Not the hand-off secret's name: a certificate owns the
    secret of its own name (its private key), which may not be written as a plain secret."""
    return f"mail-cert-{onboarding_id}"


PROCEDURE_VERSION = 2  # what a new onboarding records (WorkflowOptions.procedure_version)


@dataclass(frozen=True)
class WorkflowOptions(_Json):
    """Settings the orchestrator needs, passed in its input because it may not read the environment.
    Their defaults are the settings' (``onboarding.settings.default_workflow_options``)."""

    consent_deadline_hours: int
    consent_reminder_hours: int
    verify_window_minutes: int
    mailbox_batch_size: int
    # Most sub-orchestrations one orchestration starts; more batches are spread over a tree of
    # groups, so that no history (replayed whole at every step) grows with the number of mailboxes.
    mailbox_fanout: int
    # Backoff for polling steps (replication, role assignments, propagation), in seconds.
    poll_initial_seconds: int
    poll_max_seconds: int
    # First wait before Durable retries an activity that failed transiently (fixed interval).
    retry_interval_seconds: int
    # Grant activities an orchestration of batches keeps running at once (MAILBOX_GRANTS_AT_ONCE),
    # each batch verifying as soon as its grants are done. 0 only in the input of an onboarding started
    # before the setting existed, which replays as it ran: every batch at once, granting then verifying.
    mailbox_grants_at_once: int
    # How the orchestrator runs the procedure, kept in the input so that a history replays with the
    # code path it was recorded with. 1 (an input that has none): each webhook event is handed over
    # before the next step starts. 2: the hand-over runs alongside the next step's activity.
    # Not a setting: the settings' options always carry PROCEDURE_VERSION.
    procedure_version: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return super().from_json({"mailbox_grants_at_once": 0, "procedure_version": 1, **data})


def _default_options() -> WorkflowOptions:
    from onboarding.settings import default_workflow_options  # settings imports this module

    return default_workflow_options()


@dataclass(frozen=True)
class OnboardingInput(_Json):
    onboarding_id: str
    request: OnboardingRequest
    options: WorkflowOptions = field(default_factory=_default_options)
    submitted_at: str = ""  # ISO 8601, set by the HTTP trigger
    # Who asked (endpoints.http.Requester.to_json: the Entra caller's ids, or "function-key"); never a
    # credential.
    requested_by: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            request=OnboardingRequest.from_json(data["request"]),
            options=WorkflowOptions.from_json(data["options"]) if "options" in data else _default_options(),
            submitted_at=data.get("submitted_at", ""),
            requested_by=dict(data.get("requested_by", {})),
        )


@dataclass(frozen=True)
class ExchangeResource(_Json):
    """The Office 365 Exchange Online service principal and the ids of the app roles requested."""

    service_principal_id: str
    app_role_ids: dict[str, str]  # role value -> id, e.g. {"IMAP.AccessAsApp": "5e5a..."}


@dataclass(frozen=True)
class AppRegistration(_Json):
    """The app registration (application object) and, once it exists, its service principal."""

    object_id: str  # application object id: for Graph /applications calls only
    app_id: str  # client id
    unique_name: str
    service_principal_id: str | None = None  # enterprise app object id: what Exchange needs


@dataclass(frozen=True)
class SecretRef(_Json):
    """Where the client secret lives. Never the value."""

    vault_uri: str
    name: str
    version: str
    expires_on: str  # ISO 8601
    key_id: str  # the password or key credential's keyId on the app (not secret)
    credential_type: str = "secret"  # a CredentialType value: which hand-off document version it is


@dataclass(frozen=True)
class DecisionEvent(_Json):
    """Payload of ``EVENT_DECISION``, raised by the consent callback or the approval page."""

    decision: Decision
    nonce: str  # the wait this decision answers; stale decisions are ignored
    error: str | None = None  # Entra's error code on decline, e.g. access_denied
    error_description: str | None = None
    # The exact mailbox list the signed-in admin saw (onboarding.signin.mailbox_digest) and who they
    # are (object id, name): a decision binds both, and the orchestration refuses another list.
    mailbox_digest: str | None = None
    approver: str | None = None
    approver_name: str | None = None

    @classmethod
    def from_event(cls, payload: Any) -> Self | None:
        """Decode an external event's payload; None when it is not a decision.

        The Durable extension hands ``raise_event`` data to the orchestrator as the JSON text the
        client posted (azure-functions-durable-python#295), so the payload may be a string of JSON.
        """
        try:
            if isinstance(payload, str):
                payload = json.loads(payload)
            return cls.from_json(payload) if isinstance(payload, dict) else None
        except (KeyError, ValueError, TypeError):
            return None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            decision=Decision(data["decision"]),
            nonce=data["nonce"],
            error=data.get("error"),
            error_description=data.get("error_description"),
            mailbox_digest=data.get("mailbox_digest"),
            approver=data.get("approver"),
            approver_name=data.get("approver_name"),
        )


class MailboxState(StrEnum):
    PENDING = "pending"
    GRANTED = "granted"  # FullAccess in place, login not yet verified
    VERIFIED = "verified"  # logged in over every requested protocol
    PROTOCOL_DISABLED = "protocol_disabled"
    NOT_FOUND = "not_found"
    FAILED = "failed"
    REMOVED = "removed"  # FullAccess removed after the onboarding, and a login confirmed refused


VERIFIED_DETAIL = "Login verified."
GRANTED_DETAIL = "FullAccess granted."


@dataclass(frozen=True)
class MailboxResult(_Json):
    mailbox: str
    state: MailboxState
    detail: str = ""  # what failed and the fix, in an admin's words
    protocols: dict[str, bool] = field(default_factory=dict)  # per protocol: login verified

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            mailbox=data["mailbox"],
            state=MailboxState(data["state"]),
            detail=data.get("detail", ""),
            protocols=dict(data.get("protocols", {})),
        )


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    COMPENSATED = "compensated"


class Step(StrEnum):
    """The procedure's steps: stable identifiers, shown in the status and named in errors and logs."""

    RESOLVE_EXCHANGE = "resolve_exchange"
    REGISTER_APP = "register_app"
    SERVICE_PRINCIPAL = "service_principal"
    CLIENT_SECRET = "client_secret"  # noqa: S105 - a step name, not a password
    ADMIN_CONSENT = "admin_consent"
    CONFIRM_PERMISSIONS = "confirm_permissions"
    EXCHANGE_REGISTRATION = "exchange_registration"
    MAILBOX_PERMISSIONS = "mailbox_permissions"
    VERIFY_LOGIN = "verify_login"
    FINISH = "finish"
    COMPENSATE = "compensate"  # not a step of the status: the log lines of the undo


# The procedure, in order. Titles are for people.
STEPS: tuple[tuple[Step, str], ...] = (
    (Step.RESOLVE_EXCHANGE, "Resolve the Office 365 Exchange Online permissions"),
    (Step.REGISTER_APP, "Register the single-tenant app"),
    (Step.SERVICE_PRINCIPAL, "Create the enterprise application (service principal)"),
    (Step.CLIENT_SECRET, "Create the client secret and store it in Key Vault"),
    (Step.ADMIN_CONSENT, "Admin consent"),
    (Step.CONFIRM_PERMISSIONS, "Confirm the app role assignments"),
    (Step.EXCHANGE_REGISTRATION, "Register the service principal in Exchange Online"),
    (Step.MAILBOX_PERMISSIONS, "Grant FullAccess on each mailbox"),
    (Step.VERIFY_LOGIN, "Verify IMAP/POP login on each mailbox"),
    (Step.FINISH, "Report the result"),
)


class WaitKind(StrEnum):
    """What a waiting onboarding waits for (``waitingFor.kind`` in its status)."""

    ADMIN_CONSENT = "admin_consent"  # a tenant admin's consent in Entra ID (consent mode)
    ADMIN_APPROVAL = "admin_approval"  # a tenant admin's approval here (grant mode)
    DIRECTORY_REPLICATION = "directory_replication"  # Graph or Exchange to see a new object


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"  # every mailbox verified
    PARTIAL = "partial"  # app works, some mailboxes need an admin's fix
    REJECTED = "rejected"  # admin rejected or declined consent; compensated
    EXPIRED = "expired"  # no decision before the deadline; compensated
    CANCELLED = "cancelled"  # requester cancelled; compensated
    FAILED = "failed"  # a step failed; see error


@dataclass(frozen=True)
class StepError(_Json):
    step: str
    message: str  # cause, in words an admin understands
    fix: str = ""
    code: str = ""


@dataclass(frozen=True)
class OnboardingResult(_Json):
    """The orchestration's output."""

    onboarding_id: str
    outcome: Outcome
    app: AppRegistration | None = None
    secret: SecretRef | None = None
    # Per-mailbox results in a form that stays small at 10,000 mailboxes: how many ended in each
    # state, and the results of the mailboxes that did not verify. Every other requested mailbox
    # verified (``mailbox_results`` spells them out), so the orchestration never carries, and
    # replays, one object per mailbox.
    mailbox_counts: dict[str, int] = field(default_factory=dict)  # MailboxState value -> count
    attention: tuple[MailboxResult, ...] = ()
    error: StepError | None = None
    compensation: tuple[str, ...] = ()  # what was undone, or what is left for an admin to remove

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            onboarding_id=data["onboarding_id"],
            outcome=Outcome(data["outcome"]),
            app=AppRegistration.from_json(data["app"]) if data.get("app") else None,
            secret=SecretRef.from_json(data["secret"]) if data.get("secret") else None,
            mailbox_counts={str(k): int(v) for k, v in data.get("mailbox_counts", {}).items()},
            attention=tuple(MailboxResult.from_json(m) for m in data.get("attention", ())),
            error=StepError.from_json(data["error"]) if data.get("error") else None,
            compensation=tuple(data.get("compensation", ())),
        )

    def mailbox_results(self, request: OnboardingRequest) -> list[MailboxResult]:
        """Every requested mailbox's result, in request order; empty before the mailbox work ran."""
        if not self.mailbox_counts:
            return []
        noted = {m.mailbox: m for m in self.attention}
        verified = {p.value: True for p in request.protocols}
        return [
            noted.get(m) or MailboxResult(m, MailboxState.VERIFIED, VERIFIED_DETAIL, verified)
            for m in request.mailboxes
        ]


@dataclass(frozen=True)
class Waiting(_Json):
    """What the orchestration waits for, published in its custom status."""

    kind: str  # a WaitKind value
    nonce: str | None = None  # the decision links are bound to this; a link for another nonce is stale
    deadline: str | None = None  # ISO 8601
    reminders_sent: int = 0


@dataclass(frozen=True)
class Progress(_Json):
    """The orchestration's custom status: small whatever the number of mailboxes."""

    steps: dict[str, dict[str, str]]  # step name -> {"state", "at", "detail"}
    waiting: Waiting | None = None
    mailbox_counts: dict[str, int] = field(default_factory=dict)  # MailboxState value -> count
    app_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        # Written out rather than asdict(): the orchestrator publishes progress at every step of
        # every replay, and asdict's deep copy was a tenth of a 10,000-mailbox episode.
        return {
            "steps": dict(self.steps),
            "waiting": self.waiting.to_json() if self.waiting else None,
            "mailbox_counts": self.mailbox_counts,
            "app_id": self.app_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            steps={k: dict(v) for k, v in data.get("steps", {}).items()},
            waiting=Waiting.from_json(data["waiting"]) if data.get("waiting") else None,
            mailbox_counts=dict(data.get("mailbox_counts", {})),
            app_id=data.get("app_id"),
        )
