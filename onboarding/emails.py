"""The emails tenant admins receive. Plain, short HTML; every value escaped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

from onboarding.domain import ConsentMode, OnboardingRequest, OnboardingResult, Outcome


@dataclass(frozen=True)
class Email:
    subject: str
    html: str


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head>"
        '<body style="font-family:Segoe UI,Arial,sans-serif;max-width:40em">'
        f"<h1>{escape(title)}</h1>{body}</body></html>"
    )


# Mailboxes an email names; the others are counted. The orchestrator passes the email activities
# only these (and the count): the whole list would be re-encoded on every replay.
SHOWN_MAILBOXES = 5


def _summary(request: OnboardingRequest, app_id: str | None = None, mailbox_count: int | None = None) -> str:
    count = len(request.mailboxes) if mailbox_count is None else mailbox_count
    shown = request.mailboxes[:SHOWN_MAILBOXES]
    rows = [
        ("App", request.display_name),
        ("Protocols", ", ".join(p.app_role for p in request.protocols)),
        ("Mailboxes", f"{count}: " + ", ".join(shown) + (" ..." if count > len(shown) else "")),
    ]
    if app_id:
        rows.append(("Application (client) id", app_id))
    if request.external_reference:
        rows.append(("Reference", request.external_reference))
    cells = "".join(f"<tr><th align='left'>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def decision_request(
    request: OnboardingRequest,
    *,
    app_id: str,
    actions: dict[str, str],
    deadline: datetime,
    reminder: int,
    mailbox_count: int | None = None,
) -> Email:
    """The consent request (or, in grant mode, the approval request), and its reminders."""
    prefix = f"Reminder {reminder}: " if reminder else ""
    when = escape(deadline.strftime("%Y-%m-%d %H:%M UTC"))
    if request.consent_mode is ConsentMode.CONSENT:
        subject = f"{prefix}Admin consent needed: {request.display_name} (IMAP/POP mailbox access)"
        body = (
            "<p>An app registration was created for app-only IMAP/POP access to the mailboxes below. "
            "It needs a tenant admin's consent for the Exchange Online permissions it requests.</p>"
            f"{_summary(request, app_id, mailbox_count)}"
            f'<p><a id="consent-link" href="{escape(actions["consent"])}">Review and grant admin consent</a></p>'
            f"<p>If nobody decides by {when}, the app is deleted and nothing is granted.</p>"
        )
    else:
        subject = f"{prefix}Approval needed: {request.display_name} (IMAP/POP mailbox access)"
        body = (
            "<p>Approving grants the app the Exchange Online permissions below and FullAccess on the "
            "listed mailboxes. Each link opens a page where you confirm; nothing happens on opening it.</p>"
            f"{_summary(request, app_id, mailbox_count)}"
            f'<p><a id="approve-link" href="{escape(actions["approve"])}">Approve</a> &middot; '
            f'<a id="reject-link" href="{escape(actions["reject"])}">Reject</a></p>'
            f"<p>If nobody decides by {when}, the request expires and the app is deleted.</p>"
        )
    return Email(subject, _page(subject, body))


_OUTCOME_TEXT = {
    Outcome.SUCCEEDED: "is complete: every mailbox was verified over IMAP/POP",
    Outcome.PARTIAL: "is complete, but some mailboxes need an admin's attention",
    Outcome.REJECTED: "was rejected; everything it created was removed",
    Outcome.EXPIRED: "expired without a decision; everything it created was removed",
    Outcome.CANCELLED: "was cancelled; everything it created was removed",
    Outcome.FAILED: "failed",
}


def outcome(request: OnboardingRequest, result: OnboardingResult, mailbox_count: int | None = None) -> Email:
    subject = f"Mailbox onboarding {result.outcome.value}: {request.display_name}"
    parts = [
        f"<p>The onboarding of <b>{escape(request.display_name)}</b> {_OUTCOME_TEXT[result.outcome]}.</p>"
    ]
    parts.append(_summary(request, result.app.app_id if result.app else None, mailbox_count))
    if result.error:
        parts.append(f"<p><b>What happened:</b> {escape(result.error.message)}</p>")
        if result.error.fix:
            parts.append(f"<p><b>Fix:</b> {escape(result.error.fix)}</p>")
    problems = list(result.attention)
    if problems:
        items = "".join(f"<li>{escape(m.mailbox)}: {escape(m.detail)}</li>" for m in problems[:50])
        more = f"<p>... and {len(problems) - 50} more.</p>" if len(problems) > 50 else ""
        parts.append(f"<p>Mailboxes needing attention:</p><ul>{items}</ul>{more}")
    if result.secret:
        parts.append(
            f"<p>The client secret is in Key Vault as <code>{escape(result.secret.name)}</code>, "
            f"valid until {escape(result.secret.expires_on)}.</p>"
        )
    if result.compensation:
        items = "".join(f"<li>{escape(line)}</li>" for line in result.compensation)
        parts.append(f"<ul>{items}</ul>")
    return Email(subject, _page(subject, "".join(parts)))


def secret_expiring(
    request: OnboardingRequest, *, app_id: str, name: str, expires_on: datetime, days_left: int
) -> Email:
    when = expires_on.strftime("%Y-%m-%d")
    subject = f"Client secret of {request.display_name} expires {'today' if days_left == 0 else f'in {days_left} days'}"
    body = (
        f"<p>The client secret of <b>{escape(request.display_name)}</b> (application id "
        f"{escape(app_id)}) expires on {escape(when)}. After that the mail product can no longer get "
        "tokens (AADSTS7000222) and stops reading the mailboxes.</p>"
        f"<p>The secret is in Key Vault as <code>{escape(name)}</code>. To rotate it, submit the onboarding "
        "again with a new idempotency key, or add a new client secret to the app and update the vault.</p>"
        f"{_summary(request, app_id)}"
    )
    return Email(subject, _page(subject, body))
