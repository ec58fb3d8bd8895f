"""The HTTP API through the local Functions host: the real triggers, a stand-in orchestration (app/).

Admins sign in on the sandbox's Entra ID (no mail server: only its sign-in matters here), so the
host gets the sandbox's authority and sign-in app, and a fixed port for the redirect URI.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.admin import parse
from funchost import LocalHost, ReservedPort
from funchost.pytest_plugin import local_host_factory
from onboarding.links import LinkPurpose, LinkSigner
from onboarding.settings import load_settings
from sandbox import Sandbox, SandboxConfig
from sandbox.tenant import ADMIN_USER

__all__ = ["local_host_factory"]

APP = Path(__file__).parent / "app"
TENANT = "11111111-2222-3333-4444-555555555555"
SIGNING_KEY = "test-link-signing-key-0123456789abcdef"


# The hosts' port, held for the whole session (funchost/ports.py): PUBLIC_BASE_URL, hence the sign-in
# redirect URI, names it, and each test's host binds it beside the reservation.
_RESERVED = ReservedPort()  # a module global: collected, it would close and free the port
PORT = _RESERVED.port
PUBLIC = f"http://127.0.0.1:{PORT}"  # PUBLIC_BASE_URL: every URL the API returns starts with it
# The deployment creates one key both as the host's function key and as the API_FUNCTION_KEY setting
# (docs/deploy.md); the API's triggers are anonymous at the host and the app checks the setting.
FUNCTION_KEY = "test-api-function-key-0123456789abcdef"
ENV = {
    "TENANT_ID": TENANT,
    "KEY_VAULT_URI": "https://vault.example",
    "MAIL_SENDER": "noreply@contoso.com",
    "PUBLIC_BASE_URL": PUBLIC,
    "LINK_SIGNING_KEY": SIGNING_KEY,
    "CALLBACK_ALLOW_PRIVATE_NETWORKS": "false",
    "ENABLE_GRANT_MODE": "true",
    "ADMIN_EMAIL_DOMAINS": "contoso.com",  # no Graph here: the explicit allow-list stands in for it
    "ONBOARDINGS_PER_REQUESTER_PER_HOUR": "100000",
    "ONBOARDINGS_PER_HOUR": "100000",
    "API_FUNCTION_KEY": FUNCTION_KEY,
}
ENTRA_SETTINGS = (
    "ENTRA_AUTHORITY_HOST",
    "ENTRA_DISABLE_INSTANCE_DISCOVERY",
    "SIGNIN_CLIENT_ID",
    "SIGNIN_CLIENT_SECRET",
    "REQUESTS_CA_BUNDLE",
)


@pytest.fixture(scope="module")
def entra() -> Iterator[Sandbox]:
    """The sandbox tenant, for its Entra ID sign-in only; its tenant id is the deployment's."""
    with Sandbox(SandboxConfig(start_mail=False, tenant_id=TENANT)) as sandbox:
        sandbox.allow_signin_redirect(ENV["PUBLIC_BASE_URL"])
        yield sandbox


@pytest.fixture(scope="module", autouse=True)
def api_settings(entra: Sandbox) -> Iterator[None]:
    """The deployment's settings, as app settings (environment) read once by ``load_settings``; module
    scope so that they are gone (and the cached settings forgotten) before other folders' tests run."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**ENV, **{k: entra.env[k] for k in ENTRA_SETTINGS}}.items():
            patch.setenv(name, value)
        load_settings.cache_clear()
        yield
    load_settings.cache_clear()


class Api:
    """The running host with a keyed client (requester) and an anonymous one (admin's browser)."""

    def __init__(self, host: LocalHost, entra: Sandbox) -> None:
        self.host = host
        self.entra = entra
        self.client = httpx.Client(base_url=host.base_url, headers={"x-functions-key": host.function_key})
        self.anonymous = httpx.Client(base_url=host.base_url)
        self.signer = LinkSigner(SIGNING_KEY.encode())
        self.browsers: list[httpx.Client] = []

    def close(self) -> None:
        self.client.close()
        self.anonymous.close()
        for browser in self.browsers:
            browser.close()

    def signed_in(self, login: str = ADMIN_USER) -> httpx.Client:
        """A browser that signed in as ``login`` on the sandbox's Entra page (its cookie holds who)."""
        browser = httpx.Client(
            base_url=self.host.base_url, verify=ssl.create_default_context(cafile=str(self.entra.ca_file))
        )
        self.browsers.append(browser)
        self.sign_in(browser, login)
        return browser

    def decide(self, path: str, params: dict[str, str] | None = None, **choice: str) -> httpx.Response:
        """What a signed-in admin does: open the decision page, submit its form (plus ``choice``)."""
        admin = self.signed_in()
        page = admin.get(path, params=params)
        [form] = [f for f in parse(page.text).forms if f.method == "post"]
        return admin.post(path, data={**form.fields, **choice})

    def sign_in(self, browser: httpx.Client, login: str) -> httpx.Response:
        """Start at ``/api/signin``, fill in Entra's page, and follow the redirects back to the app."""
        response = browser.get("/api/signin", params={"next": "/api/consent/callback"})
        assert response.status_code == 302, response.text
        page = browser.get(response.headers["location"])
        [form] = parse(page.text).forms
        password = self.entra.people.users[login].password
        response = browser.post(
            str(page.url.join(form.action)), data={**form.fields, "login": login, "passwd": password}
        )
        if response.status_code != 302:
            return response  # Entra refused (wrong tenant, say)
        return browser.get(response.headers["location"])  # the app's callback

    def start(self, **changes: Any) -> str:
        response = self.client.post("/api/onboardings", json=request_body(**changes))
        assert response.status_code == 202, response.text
        self.host.idle()
        return str(response.json()["id"])

    def durable(self, onboarding_id: str) -> dict[str, Any]:
        status = self.host.get_status(onboarding_id)
        assert status is not None
        return status

    def nonce(self, onboarding_id: str) -> str:
        custom = self.durable(onboarding_id)["customStatus"]
        custom = json.loads(custom) if isinstance(custom, str) else custom
        return str(custom["waiting"]["nonce"])

    def events(self, onboarding_id: str) -> list[tuple[str, Any]]:
        """Events the instance received: the only way a page can change an onboarding."""
        self.host.idle()  # a raised event is a queued message until an episode takes it
        status = self.host.get_status(onboarding_id, show_history=True)
        assert status is not None
        return [
            (e.get("FunctionName"), e.get("Input"))
            for e in status["history"]
            if e["EventType"] == "EventRaised"
        ]

    def token(
        self,
        onboarding_id: str,
        purpose: LinkPurpose,
        *,
        nonce: str | None = None,
        expires_in: timedelta = timedelta(hours=1),
    ) -> str:
        return self.signer.issue(
            onboarding_id,
            purpose,
            nonce if nonce is not None else self.nonce(onboarding_id),
            datetime.now(UTC) + expires_in,
        )

    def local(self, url: str) -> str:
        """A URL the API returned (absolute, on PUBLIC_BASE_URL), as a path on the local host."""
        assert url.startswith(PUBLIC + "/"), url
        return url[len(PUBLIC) :]

    def view(self, onboarding_id: str) -> dict[str, Any]:
        self.host.idle()
        response = self.client.get(f"/api/onboardings/{onboarding_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())


def request_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenantId": TENANT,
        "displayName": "Invoice scanner",
        "protocols": ["IMAP", "POP"],
        "mailboxes": ["invoices@contoso.com", "orders@contoso.com"],
        "adminEmails": ["admin@contoso.com"],
        "externalReference": "CHG-1001",
    }
    body.update(changes)
    return body


@pytest.fixture
def api(local_host_factory: Callable[..., LocalHost], entra: Sandbox) -> Iterator[Api]:
    client = Api(local_host_factory(APP, port=PORT, reuse_port=True, function_key=FUNCTION_KEY), entra)
    yield client
    client.close()
