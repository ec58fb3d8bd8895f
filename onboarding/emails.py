"""The emails tenant admins receive: one template (``templates/email.html`` and its plain-text twin)
for every message, rendered by Jinja2 with autoescaping, sent as ``multipart/alternative``.

Each email says plainly who asked, what (the app, the permissions, FullAccess on how many mailboxes,
the first of them) and why (the requester's reference), with a link to the full list where a decision
is asked for. Only the project's own texts and the request's values appear: no service's error text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onboarding.domain import ConsentMode, OnboardingRequest, OnboardingResult, Outcome

if TYPE_CHECKING:
    from onboarding.offboarding import OffboardingResult
    from onboarding.rotation import RotationResult
    from onboarding.settings import Settings

# Mailboxes an email names; the others are counted. The orchestrator passes the email activities
# only these (and the count): the whole list would be re-encoded on every replay.
SHOWN_MAILBOXES = 5
_TEMPLATES = Path(__file__).with_name("templates")
_BLUE, _GREEN, _RED, _GREY = "#0f6cbd", "#107c10", "#c50f1f", "#605e5c"


@dataclass(frozen=True)
class Email:
    subject: str
    html: str
    text: str = ""


@dataclass(frozen=True)
class Brand:
    """Who the emails come from (``BRAND_*`` settings)."""

    organization: str = "Mail onboarding"
    logo_url: str = ""
    support: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Brand:
        return cls(settings.brand_organization_name, settings.brand_logo_url, settings.brand_support_contact)


@dataclass(frozen=True)
class Action:
    id: str  # stable element id the tests and the admin helper find links by
    label: str
    url: str
    color: str = _BLUE


@dataclass(frozen=True)
class Message:
    """What one email says; the template lays it out."""

    subject: str
    heading: str
    intro: Sequence[str]
    why: str
    accent: str = _BLUE
    warning: str = ""
    facts: Sequence[tuple[str, str]] = ()
    mailboxes: Sequence[str] = ()
    mailbox_count: int = 0
    full_list_url: str = ""
    lists: Sequence[tuple[str, Sequence[str]]] = ()
    actions: Sequence[Action] = ()
    notes: Sequence[str] = field(default_factory=tuple)


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(message: Message, brand: Brand | None = None) -> Email:
    env = _environment()
    context = {"m": message, "brand": brand or Brand()}
    return Email(
        message.subject,
        env.get_template("email.html").render(context),
        env.get_template("email.txt").render(context),
    )


# -- what every email says about the request -----------------------------------------------------


def _who_and_why(request: OnboardingRequest) -> str:
    who = request.requested_by or "a caller of the onboarding API"
    why = f" with the reference {request.external_reference!r}" if request.external_reference else ""
    return (
        f"You receive this because your address is listed as an approving admin in a request made "
        f"through this tenant's mail onboarding API by {who}{why}."
    )


def _facts(request: OnboardingRequest, app_id: str | None, count: int) -> list[tuple[str, str]]:
    rows = [
        ("App", request.display_name),
        ("Permissions", ", ".join(p.app_role for p in request.protocols) + " (Office 365 Exchange Online)"),
        ("Mailbox access", f"FullAccess on {count} mailbox{'' if count == 1 else 'es'}"),
        ("Client secret lifetime", f"{request.secret_lifetime_days} days"),
        ("Requested by", request.requested_by or "a caller of the onboarding API"),
    ]
    if request.external_reference:
        rows.append(("Reason (requester's reference)", request.external_reference))
    if app_id:
        rows.append(("Application (client) id", app_id))
    return rows


def _full_access_warning(count: int) -> str:
    return (
        f"Approving gives this app FullAccess to {count} mailbox{'' if count == 1 else 'es'}: it can read, "
        "change and delete every message in them over IMAP/POP, without anyone signing in. "
        "Check the whole list before you decide."
    )


def decision_request(
    request: OnboardingRequest,
    *,
    app_id: str,
    actions: dict[str, str],
    deadline: datetime,
    reminder: int,
    mailbox_count: int | None = None,
    brand: Brand | None = None,
) -> Email:
    """The consent request (or, in grant mode, the approval request), and its reminders."""
    count = len(request.mailboxes) if mailbox_count is None else mailbox_count
    prefix = f"Reminder {reminder}: " if reminder else ""
    when = deadline.strftime("%Y-%m-%d %H:%M UTC")
    consent = request.consent_mode is ConsentMode.CONSENT
    if consent:
        subject = f"{prefix}Admin consent needed: {request.display_name} (IMAP/POP mailbox access)"
        intro = [
            "An app registration was created for app-only IMAP/POP access to mailboxes in your tenant. "
            "It needs a tenant admin's consent for the Exchange Online permissions it requests, and your "
            "confirmation of the mailboxes it then gets FullAccess to.",
        ]
        buttons = [Action("consent-link", "Review and grant admin consent", actions["consent"])]
        full_list = actions["consent"]
        after = f"If nobody decides by {when}, the app is deleted and nothing is granted."
    else:
        subject = f"{prefix}Approval needed: {request.display_name} (IMAP/POP mailbox access)"
        intro = [
            "Approving grants the app the Exchange Online permissions below and FullAccess on the listed "
            "mailboxes. Each link opens a page where you sign in and confirm; nothing happens on opening it.",
        ]
        buttons = [
            Action("approve-link", "Approve", actions["approve"], _GREEN),
            Action("reject-link", "Reject", actions["reject"], _RED),
        ]
        full_list = actions["approve"]
        after = f"If nobody decides by {when}, the request expires and the app is deleted."
    return render(
        Message(
            subject=subject,
            heading=subject,
            intro=intro,
            why=_who_and_why(request),
            warning=_full_access_warning(count),
            facts=_facts(request, app_id, count),
            mailboxes=request.mailboxes[:SHOWN_MAILBOXES],
            mailbox_count=count,
            full_list_url=full_list,
            actions=buttons,
            notes=[after],
        ),
        brand,
    )


_OUTCOME_TEXT = {
    Outcome.SUCCEEDED: "is complete: every mailbox was verified over IMAP/POP",
    Outcome.PARTIAL: "is complete, but some mailboxes need an admin's attention",
    Outcome.REJECTED: "was rejected; everything it created was removed",
    Outcome.EXPIRED: "expired without a decision; everything it created was removed",
    Outcome.CANCELLED: "was cancelled; everything it created was removed",
    Outcome.FAILED: "failed",
}
_OUTCOME_ACCENT = {Outcome.SUCCEEDED: _GREEN, Outcome.PARTIAL: _BLUE, Outcome.FAILED: _RED}


def outcome(
    request: OnboardingRequest,
    result: OnboardingResult,
    mailbox_count: int | None = None,
    brand: Brand | None = None,
) -> Email:
    count = len(request.mailboxes) if mailbox_count is None else mailbox_count
    subject = f"Mailbox onboarding {result.outcome.value}: {request.display_name}"
    notes = []
    if result.error:
        notes.append(f"What happened: {result.error.message}")
        if result.error.fix:
            notes.append(f"Fix: {result.error.fix}")
    if result.secret:
        notes.append(
            f"The client secret is in Key Vault as {result.secret.name}, valid until {result.secret.expires_on}."
        )
    lists: list[tuple[str, Sequence[str]]] = []
    problems = list(result.attention)
    if problems:
        items = [f"{m.mailbox}: {m.detail}" for m in problems[:50]]
        if len(problems) > 50:
            items.append(f"... and {len(problems) - 50} more.")
        lists.append(("Mailboxes needing attention", items))
    if result.compensation:
        lists.append(("Clean-up", list(result.compensation)))
    return render(
        Message(
            subject=subject,
            heading=subject,
            intro=[f"The onboarding of {request.display_name} {_OUTCOME_TEXT[result.outcome]}."],
            why=_who_and_why(request),
            accent=_OUTCOME_ACCENT.get(result.outcome, _GREY),
            facts=_facts(request, result.app.app_id if result.app else None, count),
            mailboxes=request.mailboxes[:SHOWN_MAILBOXES],
            mailbox_count=count,
            lists=lists,
            notes=notes,
        ),
        brand,
    )


def _expiry_phrase(when: str, days_left: int, expired: bool) -> str:
    if expired:
        return f"expired on {when}"
    if days_left == 0:
        return "expires today"
    return f"expires in {days_left} day{'' if days_left == 1 else 's'}"


def secret_expiring(
    request: OnboardingRequest,
    *,
    app_id: str,
    name: str,
    expires_on: datetime,
    days_left: int,
    expired: bool = False,
    brand: Brand | None = None,
    mailbox_count: int | None = None,
) -> Email:
    """``mailbox_count``: how many mailboxes, when ``request.mailboxes`` holds only the first few."""
    count = len(request.mailboxes) if mailbox_count is None else mailbox_count
    when = expires_on.strftime("%Y-%m-%d")
    subject = f"Client secret of {request.display_name} {_expiry_phrase(when, days_left, expired)}"
    return render(
        Message(
            subject=subject,
            heading=subject,
            intro=[
                f"The client secret of {request.display_name} (application id {app_id}) "
                + (
                    f"expired on {when}. The mail product can no longer get tokens (AADSTS7000222) and "
                    "has stopped reading the mailboxes. This is the last reminder about this secret."
                    if expired
                    else f"expires on {when}. After that the mail product can no longer get tokens "
                    "(AADSTS7000222) and stops reading the mailboxes."
                ),
                f"The secret is in Key Vault as {name}. To rotate it, submit the onboarding again with a "
                "new idempotency key, or add a new client secret to the app and update the vault.",
            ],
            why=_who_and_why(request),
            accent=_RED if expired or days_left <= 7 else _BLUE,
            facts=_facts(request, app_id, count),
            mailboxes=request.mailboxes[:SHOWN_MAILBOXES],
            mailbox_count=count,
        ),
        brand,
    )


_LINK_WORDS = {
    "app_registration": "the app registration",
    "service_principal": "the app's service principal (enterprise application)",
    "credential": "the app's client secret",
    "token_roles": "the app's permissions (IMAP.AccessAsApp / POP.AccessAsApp)",
    "exchange_service_principal": "the app's registration in Exchange Online",
    "mailbox_access": "FullAccess or IMAP/POP on a mailbox",
    "mailbox_login": "the IMAP/POP login",
}


def drift_detected(
    request: OnboardingRequest,
    *,
    app_id: str,
    link: str,
    detail: str,
    fix: str,
    brand: Brand | None = None,
) -> Email:
    """The daily drift check found a link of the chain broken that held before: sent once per breakage."""
    what = _LINK_WORDS.get(link, link)
    subject = f"{request.display_name} stopped working: {what}"
    return render(
        Message(
            subject=subject,
            heading=subject,
            intro=[
                f"The daily check of {request.display_name} (application id {app_id}) found {what} broken. "
                "Until it is fixed, the mail product cannot read the mailboxes that depend on it.",
                f"What is wrong: {detail}",
                f"How to fix it: {fix}",
                "You will not be told again about this breakage; after a fix, the next daily check "
                "confirms it, and a later breakage is reported anew.",
            ],
            why=_who_and_why(request),
            accent=_RED,
            facts=_facts(request, app_id, len(request.mailboxes)),
            mailboxes=request.mailboxes[:SHOWN_MAILBOXES],
            mailbox_count=len(request.mailboxes),
        ),
        brand,
    )


def offboarded(
    request: OnboardingRequest,
    result: OffboardingResult,
    mailbox_count: int | None = None,
    brand: Brand | None = None,
) -> Email:
    """The offboarding's summary: what was removed, and what an admin must still remove by hand."""
    count = len(request.mailboxes) if mailbox_count is None else mailbox_count
    complete = not result.left
    subject = (
        f"Mailbox access removed: {request.display_name}"
        if complete
        else f"Mailbox access removal incomplete: {request.display_name}"
    )
    restore = (
        "The app registration was deleted permanently (purged): it cannot be restored."
        if result.purge
        else "The app registration can be restored from Entra ID > App registrations > Deleted applications "
        "for 30 days; the Key Vault secret can be recovered while the vault's soft-delete retention lasts."
    )
    lists: list[tuple[str, Sequence[str]]] = [("Removed", list(result.removed))]
    if result.left:
        lists.append(("Left in place: remove by hand", list(result.left)))
    if result.mailboxes_failed:
        items = [f"{m}: {d}" for m, d in result.mailboxes_failed[:50]]
        if len(result.mailboxes_failed) > 50:
            items.append(f"... and {len(result.mailboxes_failed) - 50} more.")
        lists.append(("Mailboxes whose FullAccess could not be removed", items))
    return render(
        Message(
            subject=subject,
            heading=subject,
            intro=[
                f"The onboarding of {request.display_name} was offboarded: the app no longer has access "
                f"to the {count} mailbox{'' if count == 1 else 'es'} it was given"
                + ("." if complete else ", except as listed below.")
            ],
            why=_who_and_why(request),
            accent=_GREY if complete else _RED,
            facts=_facts(request, result.app_id, count),
            mailboxes=request.mailboxes[:SHOWN_MAILBOXES],
            mailbox_count=count,
            lists=lists,
            notes=[restore],
        ),
        brand,
    )


def rotated(
    request: OnboardingRequest, result: RotationResult, mailbox_count: int, brand: Brand | None = None
) -> Email:
    """The rotation's summary: the new secret's version and expiry, or why the old one is kept."""
    done = result.status.value == "succeeded"
    certificate = result.credential_type is not None and result.credential_type.value == "certificate"
    noun = "Certificate" if certificate else "Client secret"
    subject = (
        f"{noun} rotated: {request.display_name}"
        if done
        else f"{noun} rotation failed: {request.display_name}"
    )
    new = "certificate" if certificate else "secret"
    if done and result.secret:
        intro = [
            f"The app's credential was replaced. The new {new} is in Key Vault version {result.secret.version} "
            f"of {result.secret.name}, valid until {result.secret.expires_on}; the old credential was removed "
            "after the overlap window."
        ]
    else:
        intro = [
            f"The new {new} could not be verified, so it was discarded and the old credential kept. {result.error}"
        ]
    return render(
        Message(
            subject=subject,
            heading=subject,
            intro=intro,
            why=_who_and_why(request),
            accent=_GREEN if done else _RED,
            facts=_facts(request, result.app_id, mailbox_count),
        ),
        brand,
    )


def mailboxes_added(
    request: OnboardingRequest, mailboxes: Sequence[str], brand: Brand | None = None
) -> Email:
    """Before FullAccess is granted on mailboxes added to an onboarding: which ones (no new consent is
    asked, since the app's roles are tenant-wide, so this email is how the admins learn of it)."""
    subject = f"Mailboxes added: {request.display_name}"
    listed = ", ".join(mailboxes)
    return render(
        Message(
            subject=subject,
            heading=subject,
            intro=[
                f"The app gains FullAccess on {len(mailboxes)} more mailbox(es): {listed}. No new consent "
                "is needed: the app's IMAP/POP roles are tenant-wide, and FullAccess is what limits it to "
                "these mailboxes.",
            ],
            why=_who_and_why(request),
            accent=_GREEN,
            facts=_facts(request, None, len(mailboxes)),
        ),
        brand,
    )
