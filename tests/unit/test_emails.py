"""The admins' emails: what they say about the mailboxes, whatever the orchestrator passed them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from onboarding import emails
from onboarding.domain import OnboardingRequest, OnboardingResult, Outcome, Protocol

BOXES = tuple(f"desk{i}@contoso.com" for i in range(12))
REQUEST = OnboardingRequest(
    tenant_id="11111111-1111-1111-1111-111111111111",
    display_name="Helpdesk <connector>",
    protocols=(Protocol.IMAP,),
    mailboxes=BOXES,
    admin_emails=("admin@contoso.com",),
)
DEADLINE = datetime(2026, 12, 8, 9, 30, tzinfo=UTC)


def consent_email(request: OnboardingRequest, mailbox_count: int | None = None) -> emails.Email:
    return emails.decision_request(
        request,
        app_id="app-1",
        actions={"consent": "https://login.example/consent?x=1&y=2"},
        deadline=DEADLINE,
        reminder=0,
        mailbox_count=mailbox_count,
    )


def test_the_email_names_five_mailboxes_and_counts_them_all() -> None:
    html = consent_email(REQUEST).html
    assert (
        "12: desk0@contoso.com, desk1@contoso.com, desk2@contoso.com, desk3@contoso.com, desk4@contoso.com ..."
        in html
    )
    assert "desk5@contoso.com" not in html
    assert "Helpdesk &lt;connector&gt;" in html and "x=1&amp;y=2" in html


def test_given_only_the_named_mailboxes_and_the_count_it_reads_the_same() -> None:
    # The orchestrator passes the first five and the count: the whole list would cost every replay.
    slim = replace(REQUEST, mailboxes=BOXES[: emails.SHOWN_MAILBOXES])
    assert consent_email(slim, mailbox_count=len(BOXES)).html == consent_email(REQUEST).html
    result = OnboardingResult(
        onboarding_id="onb-1", outcome=Outcome.SUCCEEDED, mailbox_counts={"verified": 12}
    )
    assert emails.outcome(slim, result, len(BOXES)).html == emails.outcome(REQUEST, result).html


def test_a_short_list_is_shown_whole() -> None:
    short = replace(REQUEST, mailboxes=BOXES[:2])
    assert "2: desk0@contoso.com, desk1@contoso.com</td>" in consent_email(short).html
