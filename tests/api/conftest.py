"""The HTTP API through the local Functions host: the real triggers, a stand-in orchestration (app/)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from funchost import LocalHost
from funchost.pytest_plugin import local_host_factory
from onboarding.links import LinkPurpose, LinkSigner
from onboarding.settings import load_settings

__all__ = ["local_host_factory"]

APP = Path(__file__).parent / "app"
TENANT = "11111111-2222-3333-4444-555555555555"
SIGNING_KEY = "test-link-signing-key-0123456789abcdef"
# The deployment creates one key both as the host's function key and as the API_FUNCTION_KEY setting
# (docs/deploy.md); the API's triggers are anonymous at the host and the app checks the setting.
FUNCTION_KEY = "test-api-function-key-0123456789abcdef"
PUBLIC = "https://onboarding.example"  # PUBLIC_BASE_URL: every URL the API returns starts with it
ENV = {
    "TENANT_ID": TENANT,
    "KEY_VAULT_URI": "https://vault.example",
    "MAIL_SENDER": "noreply@contoso.com",
    "PUBLIC_BASE_URL": PUBLIC,
    "LINK_SIGNING_KEY": SIGNING_KEY,
    "CALLBACK_ALLOW_PRIVATE_NETWORKS": "false",
    "API_FUNCTION_KEY": FUNCTION_KEY,
}


@pytest.fixture(scope="module", autouse=True)
def api_settings() -> Iterator[None]:
    """The deployment's settings, as app settings (environment) read once by ``load_settings``; module
    scope so that they are gone (and the cached settings forgotten) before other folders' tests run."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENV.items():
            patch.setenv(name, value)
        load_settings.cache_clear()
        yield
    load_settings.cache_clear()


class Api:
    """The running host with a keyed client (requester) and an anonymous one (admin's browser)."""

    def __init__(self, host: LocalHost) -> None:
        self.host = host
        self.client = httpx.Client(base_url=host.base_url, headers={"x-functions-key": host.function_key})
        self.anonymous = httpx.Client(base_url=host.base_url)
        self.signer = LinkSigner(SIGNING_KEY.encode())

    def close(self) -> None:
        self.client.close()
        self.anonymous.close()

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
def api(local_host_factory: Callable[..., LocalHost]) -> Iterator[Api]:
    client = Api(local_host_factory(APP, function_key=FUNCTION_KEY))
    yield client
    client.close()
