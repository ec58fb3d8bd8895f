"""The human part in a real browser: Debian's Chromium, driven by Playwright.

The admin opens the consent email, follows its link to the (sandbox) Entra consent page, clicks
Accept, lands on the project's callback page, signs in on Entra's sign-in page, sees every mailbox,
confirms, and the onboarding completes.
Chromium trusts the sandbox CA through its own NSS database, as a browser would trust a company CA;
certificate checking stays on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from sandbox import Sandbox
from sandbox.tenant import ADMIN_USER
from tests.e2e.conftest import Tenant

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def trusting_home(tmp_path: Path, ca_file: str) -> Path:
    """A HOME whose NSS database (what Chromium on Linux reads) trusts the sandbox CA."""
    home = tmp_path / "browser-home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True)
    subprocess.run(
        ["certutil", "-A", "-d", f"sql:{nssdb}", "-t", "C,,", "-n", "sandbox-ca", "-i", ca_file], check=True
    )
    return home


@pytest.fixture
def browser_env(tmp_path: Path, tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is required (make setup installs it)"
    home = trusting_home(tmp_path, tenant.sandbox.env["SSL_CERT_FILE"])
    return {**os.environ, "HOME": str(home)}


def fill_sign_in(page: Page, entra: Sandbox, login: str = ADMIN_USER) -> None:
    """From a decision page that asks for it: on to Entra's sign-in page, filled in, not yet sent."""
    page.click("#signin")
    page.wait_for_selector("#passwd")
    assert page.url.startswith(entra.env["ENTRA_AUTHORITY_HOST"])
    page.fill("#login", login)
    page.fill("#passwd", entra.people.users[login].password)


def sign_in(page: Page, entra: Sandbox, login: str = ADMIN_USER) -> None:
    """From a decision page that asks for it: Entra's sign-in page, then back to the decision."""
    fill_sign_in(page, entra, login)
    page.click("#signin")
    page.wait_for_load_state()


def test_an_admin_consents_in_a_real_browser_and_the_onboarding_completes(
    tenant: Tenant, browser_env: dict[str, str], tmp_path: Path
):
    shots = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)  # set it to look at the pages
    location = tenant.submit(mailboxes=["support@sandbox.example"])
    tenant.wait_for_decision(location)
    [mail] = tenant.mails_to_admin()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, env=browser_env)
        try:
            page = browser.new_page()
            page.set_content(mail.html)  # the email, as a mail client renders it
            page.click("#consent-link")
            page.wait_for_selector("#accept")
            assert "IMAP.AccessAsApp" in page.inner_text("#permissions")
            page.screenshot(path=str(shots / "consent.png"))
            page.click("#accept")
            page.wait_for_selector("#signin")
            assert page.url.startswith(f"{tenant.host.base_url}/api/consent/callback")
            fill_sign_in(page, tenant.sandbox)  # the project's page asks who decides
            page.screenshot(path=str(shots / "signin.png"))
            page.click("#signin")
            page.wait_for_selector("#confirm")
            assert page.locator("#mailboxes li").all_inner_texts() == ["support@sandbox.example"]
            # Landing here changed nothing yet: a mail scanner's GET would stop at this page.
            assert tenant.status(location)["waitingFor"] is not None
            page.screenshot(path=str(shots / "confirm.png"))
            page.click("#confirm")
            page.wait_for_load_state()
            body = page.inner_text("body")
            page.screenshot(path=str(shots / "callback.png"))
        finally:
            browser.close()

    assert "the onboarding continues" in body.lower()
    view = tenant.finished(location)
    assert view["status"] == "succeeded"
    assert view["mailboxes"]["results"][0]["state"] == "verified"
