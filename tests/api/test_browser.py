"""A real browser (Chromium) on the admin pages: the buttons work under the pages' own CSP."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from onboarding.links import LinkPurpose

from .conftest import Api


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Chromium is a declared system package (scripts/bootstrap.sh)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


def test_admin_consents_through_the_callback_page(api: Api, browser: Browser) -> None:
    onboarding_id = api.start()
    state = api.token(onboarding_id, LinkPurpose.CONSENT)
    page = browser.new_page()
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None,
    )
    page.goto(f"{api.host.base_url}/api/consent/callback?admin_consent=True&tenant=x&state={state}")
    assert page.locator("h1").inner_text() == "Admin consent granted"
    assert api.events(onboarding_id) == []  # loading the page did nothing
    page.click("#confirm")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Thank you"
    assert blocked == []
    assert api.view(onboarding_id)["status"] == "succeeded"
    page.close()


def test_admin_rejects_on_the_approval_page_and_the_link_is_then_dead(api: Api, browser: Browser) -> None:
    onboarding_id = api.start(consentMode="grant", displayName="Scanner <b>bold</b>")
    url = f"{api.host.base_url}/api/approvals/{api.token(onboarding_id, LinkPurpose.DECIDE)}"
    page = browser.new_page()
    page.goto(url)
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
