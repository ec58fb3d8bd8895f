"""The admins' emails: what they say about the mailboxes, whatever the orchestrator passed them."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from html import unescape

from onboarding import emails
from onboarding.domain import ConsentMode, OnboardingRequest, OnboardingResult, Outcome, Protocol

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


def visible(html: str) -> str:
    """The text a reader sees: tags dropped, entities decoded, whitespace collapsed."""
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
    return re.sub(r" ([,:.;])", r"\1", text)


def test_the_email_names_five_mailboxes_and_counts_them_all() -> None:
    mail = consent_email(REQUEST)
    for body in (visible(mail.html), " ".join(mail.text.split())):
        assert "12 mailboxes, the first 5: desk0@contoso.com desk1@contoso.com" in body.replace("- ", "")
        assert "desk4@contoso.com" in body and "desk5@contoso.com" not in body
        assert "See all 12 mailboxes" in body
    assert 'id="full-list-link" href="https://login.example/consent?x=1&amp;y=2"' in mail.html
    assert "Helpdesk &lt;connector&gt;" in mail.html and "x=1&amp;y=2" in mail.html


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
    html = consent_email(short).html
    assert "2 mailboxes: desk0@contoso.com desk1@contoso.com" in visible(html)
    assert "full-list-link" not in html  # nothing more to see


def test_every_decision_email_discloses_full_access_plainly_in_both_parts() -> None:
    grant = replace(REQUEST, consent_mode=ConsentMode.GRANT)
    approval = emails.decision_request(
        grant,
        app_id="app-1",
        actions={"approve": "https://f.example/a", "reject": "https://f.example/r"},
        deadline=DEADLINE,
        reminder=2,
    )
    for mail in (consent_email(REQUEST), approval):
        for body in (visible(mail.html), mail.text):
            assert "FullAccess to 12 mailboxes" in body
            assert "read, change and delete every message" in body
    assert approval.subject.startswith("Reminder 2: Approval needed")
    assert 'id="approve-link"' in approval.html and 'id="reject-link"' in approval.html


def test_emails_say_who_asked_what_and_why_under_the_configured_brand() -> None:
    asked = replace(REQUEST, requested_by="key:0123abcd", external_reference="TICKET-42")
    brand = emails.Brand("Contoso IT", "https://cdn.contoso.example/logo.png", "it-help@contoso.com")
    mail = emails.decision_request(
        asked,
        app_id="app-1",
        actions={"consent": "https://f.example/c"},
        deadline=DEADLINE,
        reminder=0,
        brand=brand,
    )
    for body in (visible(mail.html), mail.text):
        assert "Contoso IT" in body and "Questions: it-help@contoso.com" in body
        assert "key:0123abcd" in body and "TICKET-42" in body
        assert "IMAP.AccessAsApp" in body and "180 days" in body
    assert 'src="https://cdn.contoso.example/logo.png"' in mail.html


def test_one_template_serves_every_message_with_inline_styles_and_tables_only() -> None:
    result = OnboardingResult(
        onboarding_id="onb-1", outcome=Outcome.SUCCEEDED, mailbox_counts={"verified": 12}
    )
    every = [
        consent_email(REQUEST),
        emails.outcome(REQUEST, result),
        emails.secret_expiring(REQUEST, app_id="app-1", name="onb-1", expires_on=DEADLINE, days_left=3),
    ]
    for mail in every:
        assert mail.html.count('role="presentation"') >= 3  # table layout
        assert "<style" not in mail.html and "<div" not in mail.html  # Outlook ignores both
        assert mail.text and "<" not in mail.text.replace("<connector>", "")  # a real plain-text part
