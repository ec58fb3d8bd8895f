"""What admins see, rendered by Chromium: every email and the decision page (issue 14, item 6).

Each screenshot is written to SCREENSHOT_DIR (docs/admin-experience/ when refreshing the docs:
``SCREENSHOT_DIR=docs/admin-experience pytest tests/e2e/test_admin_experience.py``), else to a temp dir.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from onboarding import emails
from onboarding.domain import (
    ConsentMode,
    MailboxResult,
    MailboxState,
    OnboardingRequest,
    OnboardingResult,
    Outcome,
    Protocol,
    SecretRef,
    StepError,
)
from tests.e2e.conftest import Tenant
from tests.e2e.test_browser import CHROMIUM, FLAGS, browser_env  # noqa: F401 - fixture

BRAND = emails.Brand("Contoso IT", "", "it-help@contoso.com")
REQUEST = OnboardingRequest(
    tenant_id="11111111-2222-3333-4444-555555555555",
    display_name="Helpdesk mail connector",
    protocols=(Protocol.IMAP, Protocol.POP),
    mailboxes=tuple(f"desk{i}@contoso.com" for i in range(5)),
    admin_emails=("it-admin@contoso.com",),
    external_reference="TICKET-4711",
    requested_by="key:4f1c9a0b2d7e6a13",
)
DEADLINE = datetime(2026, 12, 8, 9, 30, tzinfo=UTC)
ACTIONS = {
    "consent": "https://f.example/c",
    "approve": "https://f.example/a",
    "reject": "https://f.example/r",
}


def every_email() -> dict[str, emails.Email]:
    grant = OnboardingRequest(**{**REQUEST.__dict__, "consent_mode": ConsentMode.GRANT})
    decide: dict[str, Any] = {"app_id": "6c1e4c3e-0000-4000-8000-000000000001", "actions": ACTIONS}
    secret = SecretRef("https://kv.example", "onb-1", "v1", "2027-06-06T09:30:00+00:00", "k1")
    return {
        "email-consent": emails.decision_request(
            REQUEST, **decide, deadline=DEADLINE, reminder=0, mailbox_count=50, brand=BRAND
        ),
        "email-approval": emails.decision_request(
            grant, **decide, deadline=DEADLINE, reminder=0, mailbox_count=50, brand=BRAND
        ),
        "email-reminder": emails.decision_request(
            REQUEST, **decide, deadline=DEADLINE, reminder=1, mailbox_count=50, brand=BRAND
        ),
        "email-outcome-partial": emails.outcome(
            REQUEST,
            OnboardingResult(
                "onb-1",
                Outcome.PARTIAL,
                secret=secret,
                mailbox_counts={"verified": 49, "failed": 1},
                attention=(
                    MailboxResult(
                        "desk3@contoso.com",
                        MailboxState.FAILED,
                        "IMAP is disabled on this mailbox. Fix: Set-CASMailbox -Identity desk3@contoso.com "
                        "-ImapEnabled $true",
                    ),
                ),
            ),
            50,
            BRAND,
        ),
        "email-outcome-failed": emails.outcome(
            REQUEST,
            OnboardingResult(
                "onb-1",
                Outcome.FAILED,
                error=StepError(
                    "admin_consent",
                    "The function app's identity may not assign the app role.",
                    "Grant the managed identity the Microsoft Graph application permission "
                    "AppRoleAssignment.ReadWrite.All and admin-consent it.",
                    "Authorization_RequestDenied",
                ),
                compensation=(
                    "Deleted app registration 6c1e4c3e-...-0001.",
                    "Deleted Key Vault secret onb-1.",
                ),
            ),
            50,
            BRAND,
        ),
        "email-expiry": emails.secret_expiring(
            REQUEST,
            app_id="6c1e4c3e-0000-4000-8000-000000000001",
            name="onb-1",
            expires_on=DEADLINE,
            days_left=6,
            brand=BRAND,
        ),
    }


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)


def test_every_email_renders_as_a_600px_table_layout_with_full_access_in_view(shots: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 680, "height": 400})
            for name, mail in every_email().items():
                page.set_content(mail.html)
                card = page.locator("table table").first
                assert card.bounding_box()["width"] == 600, name  # type: ignore[index]
                font = page.evaluate("getComputedStyle(document.querySelector('h1')).fontFamily")
                assert "Segoe UI" in font, name  # one font everywhere, not the serif default
                if "consent" in name or "approval" in name or "reminder" in name:
                    assert page.locator("#full-access-warning").is_visible()
                    assert "FullAccess to 50 mailboxes" in page.inner_text("#full-access-warning")
                    assert page.locator("#full-list-link").is_visible()
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        finally:
            browser.close()


def test_the_decision_page_an_email_leads_to_is_captured(
    tenant: Tenant,
    shots: Path,
    browser_env: dict[str, str],  # noqa: F811 - the imported fixture
) -> None:
    location = tenant.submit(externalReference="TICKET-4711")
    tenant.wait_for_decision(location)
    [mail] = tenant.mails_to_admin()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, env=browser_env)
        try:
            page = browser.new_page(viewport={"width": 680, "height": 400})
            page.set_content(mail.html)
            page.screenshot(path=str(shots / "email-consent-as-sent.png"), full_page=True)
            page.click("#consent-link")
            page.wait_for_selector("#accept")
            page.screenshot(path=str(shots / "page-consent.png"), full_page=True)
        finally:
            browser.close()
