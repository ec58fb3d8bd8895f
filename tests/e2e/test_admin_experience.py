"""What admins see, rendered by Chromium: every email and every decision page (issue 14, item 6).

Each screenshot is written to SCREENSHOT_DIR (docs/admin-experience/ when refreshing the docs:
``SCREENSHOT_DIR=docs/admin-experience pytest tests/e2e/test_admin_experience.py``), else to a temp dir.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

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
from sandbox.tenant import PLAIN_USER
from tests.e2e.conftest import MAILBOXES, Tenant
from tests.e2e.test_browser import (  # noqa: F401 - browser_env is a fixture
    CHROMIUM,
    FLAGS,
    browser_env,
    fill_sign_in,
    sign_in,
)

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


def shoot(page: Page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def heading(page: Page) -> str:
    return page.locator("h1").inner_text()


def test_consent_mode_pages_from_the_email_to_the_thank_you_are_captured(
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
            shoot(page, shots, "email-consent-as-sent")
            page.click("#consent-link")
            page.wait_for_selector("#accept")
            shoot(page, shots, "page-consent")
            page.click("#accept")
            page.wait_for_selector("#signin")
            # Before sign-in the page says what is asked, but offers no decision.
            assert heading(page) == "Sign in to review this request"
            assert "FullAccess to 3 mailboxes" in page.inner_text("main")
            assert page.locator("#confirm").count() == 0
            shoot(page, shots, "page-signin-prompt")
            fill_sign_in(page, tenant.sandbox)
            assert page.locator("#passwd").is_visible()
            shoot(page, shots, "page-entra-signin")
            page.click("#signin")
            page.wait_for_selector("#confirm")
            assert heading(page) == "Confirm the mailboxes"
            assert page.locator("#mailboxes li").all_inner_texts() == list(MAILBOXES)
            assert "grants FullAccess on exactly these mailboxes" in page.inner_text("main")
            assert tenant.status(location)["waitingFor"] is not None  # nothing decided by looking
            shoot(page, shots, "page-consent-confirm")
            page.click("#confirm")
            page.wait_for_load_state()
            assert heading(page) == "Thank you"
            assert "grants FullAccess on the mailboxes you confirmed" in page.inner_text("main")
            shoot(page, shots, "page-consent-done")
        finally:
            browser.close()
    assert tenant.finished(location)["status"] == "succeeded"


def test_grant_mode_pages_refusal_approval_and_approved_are_captured(
    tenant: Tenant,
    shots: Path,
    browser_env: dict[str, str],  # noqa: F811 - the imported fixture
) -> None:
    location = tenant.submit(consentMode="grant", externalReference="TICKET-4711")
    tenant.wait_for_decision(location)
    [mail] = tenant.mails_to_admin()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, env=browser_env)
        try:
            outsider = browser.new_page(viewport={"width": 680, "height": 400})
            outsider.set_content(mail.html)
            outsider.click("#approve-link")
            outsider.wait_for_selector("#signin")
            sign_in(outsider, tenant.sandbox, PLAIN_USER)
            assert heading(outsider) == "You cannot make this decision"
            assert f"signed in as Helpdesk ({PLAIN_USER})" in outsider.inner_text("main")
            assert outsider.locator("#approve").count() == 0 and outsider.locator("#reject").count() == 0
            assert tenant.status(location)["waitingFor"] is not None  # the refusal changed nothing
            shoot(outsider, shots, "page-refused-non-admin")

            admin = browser.new_context(viewport={"width": 680, "height": 400}).new_page()
            admin.set_content(mail.html)
            admin.click("#approve-link")
            admin.wait_for_selector("#signin")
            sign_in(admin, tenant.sandbox)
            assert heading(admin) == "Approve mailbox access for an app"
            assert admin.locator("#mailboxes li").all_inner_texts() == list(MAILBOXES)
            assert "FullAccess to 3 mailboxes" in admin.inner_text("main")
            assert "TICKET-4711" in admin.inner_text("main")
            assert admin.locator("#approve").is_visible()  # the email's approve link: approving only
            shoot(admin, shots, "page-approval")
            admin.click("#approve")
            admin.wait_for_load_state()
            assert heading(admin) == "Approved"
            shoot(admin, shots, "page-approved")
        finally:
            browser.close()
    assert tenant.finished(location)["status"] == "succeeded"
