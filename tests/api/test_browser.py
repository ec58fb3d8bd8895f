"""A real browser (Chromium) on the admin pages: the admin signs in on the sandbox's Entra page, and
the buttons work under the pages' own CSP. Chromium trusts the sandbox CA through its NSS database,
as in tests/e2e/test_browser.py; certificate checking stays on."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from onboarding.links import LinkPurpose
from sandbox import Sandbox
from tests.e2e.test_browser import sign_in, trusting_home

from .conftest import Api


@pytest.fixture(scope="module")
def browser(entra: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Chromium is a declared system package (scripts/bootstrap.sh)"
    home = trusting_home(Path(tmp_path_factory.mktemp("chromium")), str(entra.ca_file))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"], env={**os.environ, "HOME": str(home)}
        )
        yield browser
        browser.close()


def watch_csp(page: Page) -> list[str]:
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return blocked


def test_admin_signs_in_and_confirms_the_mailboxes_after_consent(api: Api, browser: Browser) -> None:
    onboarding_id = api.start()
    state = api.token(onboarding_id, LinkPurpose.CONSENT)
    page = browser.new_page()
    blocked = watch_csp(page)
    page.goto(f"{api.host.base_url}/api/consent/callback?admin_consent=True&tenant=x&state={state}")
    assert page.locator("h1").inner_text() == "Sign in to review this request"
    sign_in(page, api.entra)
    assert page.locator("h1").inner_text() == "Confirm the mailboxes"
    assert page.locator("#mailboxes li").all_inner_texts() == ["invoices@contoso.com", "orders@contoso.com"]
    assert api.events(onboarding_id) == []  # loading the pages did nothing
    page.click("#confirm")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Thank you"
    assert blocked == []
    assert api.view(onboarding_id)["status"] == "succeeded"
    page.close()


def test_admin_signs_in_on_entra_and_approves(api: Api, browser: Browser) -> None:
    onboarding_id = api.start(consentMode="grant", mailboxes=[f"box{n}@contoso.com" for n in range(50)])
    url = f"{api.host.base_url}/api/approvals/{api.token(onboarding_id, LinkPurpose.APPROVE)}"
    page = browser.new_page()
    blocked = watch_csp(page)
    page.goto(url)
    sign_in(page, api.entra)
    assert page.locator("h1").inner_text() == "Approve mailbox access for an app"
    assert "IT Admin (it-admin@sandbox.example)" in page.locator("main").inner_text()
    assert page.locator("#mailboxes li").count() == 50
    page.click("#approve")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Approved"
    assert blocked == []
    assert api.view(onboarding_id)["status"] == "succeeded"
    page.close()


def test_admin_rejects_on_the_approval_page_and_the_link_is_then_dead(api: Api, browser: Browser) -> None:
    onboarding_id = api.start(consentMode="grant", displayName="Scanner <b>bold</b>")
    url = f"{api.host.base_url}/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"
    page = browser.new_page()
    page.goto(url)
    sign_in(page, api.entra)
    assert page.locator("h1").inner_text() == "Approve mailbox access for an app"
    assert "Scanner <b>bold</b>" in page.locator("main").inner_text()  # shown as text, not markup
    assert page.locator("#approve").is_visible() and page.locator("#reject").is_visible()
    page.click("#reject")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Rejected"
    assert api.view(onboarding_id)["status"] == "rejected"
    page.goto(url)
    assert page.locator("h1").inner_text() == "This link cannot be used"
    assert page.locator("#approve").count() == 0
    page.close()


def test_a_signed_in_user_without_an_admin_role_sees_no_decision(api: Api, browser: Browser) -> None:
    onboarding_id = api.start(consentMode="grant")
    url = f"{api.host.base_url}/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    sign_in(page, api.entra, "helpdesk@sandbox.example")
    assert page.locator("h1").inner_text() == "You cannot make this decision"
    assert page.locator("#approve").count() == 0 and page.locator("#signin").count() == 1
    assert api.events(onboarding_id) == []
    context.close()
