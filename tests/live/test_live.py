"""The scenarios that need no sandbox, against a real deployment (docs/deploy.md, "Live end-to-end
tests"). Collected only when the LIVE_* settings are set; the test header says so otherwise.

Without a human the suite proves what can be proven: the API refuses what it must, an onboarding
reaches the admin's decision (the app and its secret exist, the email went out), and cancelling it
removes what it made. With ``LIVE_WAIT_FOR_ADMIN_MINUTES`` set, a human admin can consent from the
email while the suite waits, and the onboarding must then succeed.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.live

FINAL = {"succeeded", "partial", "rejected", "expired", "cancelled", "failed"}


@pytest.fixture(scope="module")
def api() -> httpx.Client:
    return httpx.Client(
        base_url=os.environ["LIVE_FUNCTION_BASE_URL"],
        headers={"x-functions-key": os.environ["LIVE_FUNCTION_KEY"]},
        timeout=60,
    )


def request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenantId": os.environ["LIVE_TENANT_ID"],
        "displayName": "Live test mail connector",
        "protocols": ["IMAP", "POP"],
        "mailboxes": os.environ["LIVE_MAILBOXES"].split(","),
        "adminEmails": [os.environ["LIVE_ADMIN_EMAIL"]],
        "externalReference": "live-test",
    }
    body.update(overrides)
    return body


def wait(api: httpx.Client, location: str, done: Any, minutes: float) -> dict[str, Any]:
    give_up = time.monotonic() + minutes * 60
    while True:
        view = api.get(location).json()
        if done(view) or time.monotonic() > give_up:
            return dict(view)
        time.sleep(10)


def test_start_status_and_cancel_need_a_function_key():
    anonymous = httpx.Client(base_url=os.environ["LIVE_FUNCTION_BASE_URL"], timeout=60)
    assert anonymous.post("/api/onboardings", json=request()).status_code == 401
    assert anonymous.get("/api/onboardings/onb-0").status_code == 401


def test_invalid_requests_are_refused_naming_each_field(api: httpx.Client):
    response = api.post("/api/onboardings", json=request(protocols=["SMTP"], mailboxes=["not-an-address"]))
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert any("protocols" in f for f in fields) and any("mailboxes" in f for f in fields)


def test_an_onboarding_reaches_the_admin_and_cancelling_it_cleans_up(api: httpx.Client):
    response = api.post("/api/onboardings", json=request())
    assert response.status_code == 202
    location = response.headers["location"]
    view = wait(api, location, lambda v: v.get("waitingFor") or v["status"] in FINAL, 10)
    assert view["waitingFor"]["kind"] == "admin_consent", view
    assert view["app"]["appId"]
    assert api.post(f"{location}/cancel").status_code == 202
    view = wait(api, location, lambda v: v["status"] in FINAL, 10)
    assert view["status"] == "cancelled"
    assert any("Deleted app registration" in line for line in view["compensation"])


@pytest.mark.skipif(
    not os.environ.get("LIVE_WAIT_FOR_ADMIN_MINUTES"),
    reason="needs a human admin to consent from the email; set LIVE_WAIT_FOR_ADMIN_MINUTES to wait for one",
)
def test_a_human_admin_consents_and_every_mailbox_is_verified(api: httpx.Client):
    response = api.post("/api/onboardings", json=request())
    location = response.headers["location"]
    minutes = float(os.environ["LIVE_WAIT_FOR_ADMIN_MINUTES"])
    view = wait(api, location, lambda v: v["status"] in FINAL, minutes + 150)
    assert view["status"] == "succeeded", view
    assert all(r["state"] == "verified" for r in view["mailboxes"]["results"])
