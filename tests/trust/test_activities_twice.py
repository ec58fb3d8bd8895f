"""At least once: Durable may run an activity again after a crash, with the same input. Each activity
of the onboarding, run twice in a row in the orchestrator's order, must leave the tenant exactly as
running it once does; so must the undo steps."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import activities
import activities.records as record_activities
import activities.webhooks as webhook_activities
from onboarding import activity_names as A
from onboarding import plan, records
from onboarding.domain import (
    AppRegistration,
    ConsentMode,
    OnboardingRequest,
    OnboardingResult,
    Outcome,
    Protocol,
    SecretRef,
    vault_secret_name,
)
from onboarding.links import callback_key, verify_callback
from onboarding.services import Services
from onboarding.settings import load_settings
from onboarding.steps import password_label
from onboarding.webhooks import EventType, envelope
from sandbox import Sandbox, SandboxConfig
from tests.trust.receiver import CallbackReceiver
from tests.trust.snapshot import snapshot

MAILBOXES = ("support@sandbox.example", "sales@sandbox.example", "billing@sandbox.example")
ONBOARDING_ID = "onb-twice-0001"
Activity = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def activity_functions() -> dict[str, Activity]:
    """The user functions behind the blueprint's activity triggers, by activity name."""
    found: dict[str, Activity] = {}
    for blueprint in (activities.blueprint, webhook_activities.blueprint, record_activities.blueprint):
        for builder in blueprint._function_builders:
            function = builder._function
            found[function.get_function_name()] = function.get_user_function()
    # Handing an event to the delivery orchestration needs a Durable client (tests/e2e run it).
    found.pop(A.EMIT_WEBHOOK_EVENT)
    return found


@pytest.fixture
def sandbox_config(tmp_path: Path) -> SandboxConfig:
    return SandboxConfig(base_dir=tmp_path / "sandbox", mailboxes=MAILBOXES)


class Twice:
    """Runs each activity twice and checks the second run changed nothing the first did not."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.functions = activity_functions()
        self.ran: list[str] = []

    async def __call__(self, name: str, payload: dict[str, Any]) -> Any:
        first = await self.functions[name](json.loads(json.dumps(payload)))
        after_first = snapshot(self.sandbox)
        second = await self.functions[name](json.loads(json.dumps(payload)))
        after_second = snapshot(self.sandbox)
        assert "ok" in first, (name, first)
        assert after_second == after_first, f"running {name} again changed the tenant"
        assert second == first, f"{name} answered differently the second time"
        self.ran.append(name)
        return first["ok"]


def request(receiver_url: str, tenant_id: str) -> OnboardingRequest:
    return OnboardingRequest(
        tenant_id=tenant_id,
        display_name="Helpdesk mail connector",
        protocols=(Protocol.IMAP, Protocol.POP),
        mailboxes=MAILBOXES,
        admin_emails=("it-admin@sandbox.example",),
        consent_mode=ConsentMode.GRANT,
        callback_url=receiver_url,
        external_reference="TICKET-2",
    )


async def test_every_activity_twice_leaves_the_tenant_as_once(
    sandbox: Sandbox, sandbox_env: dict[str, str], receiver: CallbackReceiver
) -> None:
    twice = Twice(sandbox)
    req = request(receiver.url, sandbox.tenant_id)
    roles = list(req.app_roles)

    resource = await twice(A.RESOLVE_EXCHANGE, {"roles": roles})
    app = await twice(
        A.REGISTER_APP,
        {
            "onboarding_id": ONBOARDING_ID,
            "display_name": req.display_name,
            "roles": roles,
            "resource": resource,
            "external_reference": req.external_reference,
        },
    )
    sp = await twice(A.ENSURE_SERVICE_PRINCIPAL, {"app_id": app["app_id"]})
    app = {**app, "service_principal_id": sp["service_principal_id"]}
    secret = await twice(
        A.CREATE_SECRET,
        {
            "onboarding_id": ONBOARDING_ID,
            "tenant_id": req.tenant_id,
            "app": app,
            "lifetime_days": 30,
            "protocols": ["IMAP", "POP"],
        },
    )
    email = {
        "onboarding_id": ONBOARDING_ID,
        "request": req.to_json(),
        "app_id": app["app_id"],
        "nonce": "nonce-1",
        "deadline": "2099-01-01T00:00:00+00:00",
        "reminder": 0,
    }
    await twice(A.SEND_DECISION_EMAIL, email)
    grant = {"service_principal_id": app["service_principal_id"], "resource": resource, "roles": roles}
    await twice(A.GRANT_APP_ROLES, grant)
    assert await twice(A.CHECK_APP_ROLES, grant) == {"confirmed": roles}
    await twice(
        A.REGISTER_IN_EXCHANGE,
        {
            "app_id": app["app_id"],
            "service_principal_id": app["service_principal_id"],
            "app_object_id": app["object_id"],
            "display_name": req.display_name,
        },
    )
    granted = await twice(
        A.GRANT_MAILBOXES,
        {
            "service_principal_id": app["service_principal_id"],
            "mailboxes": list(MAILBOXES),
            "protocols": ["IMAP", "POP"],
        },
    )
    assert [g["state"] for g in granted] == ["granted"] * 3
    verified = await twice(
        A.VERIFY_MAILBOXES,
        {
            "tenant_id": req.tenant_id,
            "app": app,
            "secret": secret,
            "protocols": ["IMAP", "POP"],
            "mailboxes": list(MAILBOXES),
        },
    )
    assert [v["state"] for v in verified] == ["verified"] * 3
    result = OnboardingResult(
        onboarding_id=ONBOARDING_ID,
        outcome=Outcome.SUCCEEDED,
        app=AppRegistration.from_json(app),
        secret=SecretRef.from_json(secret),
        mailbox_counts=plan.count_states(v["state"] for v in verified),
    ).to_json()
    await twice(A.NOTIFY_OUTCOME, {"request": req.to_json(), "result": result})
    recorded = {
        "onboarding_id": ONBOARDING_ID,
        "request": req.to_json(),
        "mailbox_count": len(MAILBOXES),
        "app": app,
        "outcome": "succeeded",
        "at": "2026-01-01T00:00:00+00:00",
    }
    assert await twice(A.RECORD_ONBOARDING, recorded) == {"recorded": True}
    completed = EventType.COMPLETED.value
    data = webhook_activities.event_data({"type": completed, "data": result, "request": req.to_json()})
    event = envelope(ONBOARDING_ID, 7, completed, "2026-01-01T00:00:00+00:00", data)
    await twice(A.DELIVER_WEBHOOK, {"url": req.callback_url, "event": event})

    # Every activity of the procedure ran twice (compensation is the next test).
    assert set(twice.ran) == set(twice.functions) - {A.COMPENSATE}
    state = sandbox.state
    [application] = [a for a in state.applications() if "mail-onboarding" in a.tags]
    assert application.app_id == app["app_id"] and application.deleted_at is None
    [password] = application.passwords  # one credential in use, no orphan
    assert password.key_id == secret["key_id"] and password.display_name == password_label(ONBOARDING_ID)
    assert [s.id for s in state.service_principals() if s.app_id == app["app_id"]] == [
        sp["service_principal_id"]
    ]
    exo = state.exchange_sp
    mine = [a for a in state.app_role_assignments() if a.principal_id == sp["service_principal_id"]]
    assert sorted(state.role_by_value(exo, r).id for r in roles) == sorted(a.app_role_id for a in mine)
    [registration] = state.exchange_service_principals()
    assert registration.object_id == sp["service_principal_id"]
    assert sorted((p.mailbox, p.user) for p in state.mailbox_permissions()) == sorted(
        (m, registration.object_id) for m in MAILBOXES
    )
    [vault_secret, record] = sorted(state.secrets(), key=lambda s: s.name)
    assert vault_secret.name == vault_secret_name(ONBOARDING_ID) == secret["name"]
    assert record.name == records.record_name(ONBOARDING_ID) and len(record.versions) == 1
    assert [v.version for v in vault_secret.versions] == [secret["version"]]
    assert json.loads(vault_secret.current.value)["clientSecret"] == password.secret_text
    # Emails and callbacks are deliveries, at least once: the second run sends again, the receiver
    # recognises the same event by its id (docs/api.md asks receivers to de-duplicate on it).
    deliveries = receiver.received()
    assert len(deliveries) == 2
    key = callback_key(load_settings().link_signing_key)
    for delivery in deliveries:
        signature = delivery.headers["X-Onboarding-Signature"]
        assert verify_callback(key, delivery.body, signature, now=int(signature.split(",")[0][2:]))
        body = json.loads(delivery.body)
        assert body["id"] == f"{ONBOARDING_ID}:7" == delivery.headers["X-Onboarding-Event-Id"]
        data = body["data"]
        assert data["onboarding_id"] == ONBOARDING_ID
        # The receiver gets every mailbox's result, though the orchestration keeps only counts.
        assert [(m["mailbox"], m["state"]) for m in data["mailboxes"]] == [(m, "verified") for m in MAILBOXES]


async def test_compensation_twice_removes_everything_once(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    twice = Twice(sandbox)
    functions = twice.functions
    resource = (await functions[A.RESOLVE_EXCHANGE]({"roles": ["IMAP.AccessAsApp"]}))["ok"]
    app = (
        await functions[A.REGISTER_APP](
            {
                "onboarding_id": ONBOARDING_ID,
                "display_name": "To be undone",
                "roles": ["IMAP.AccessAsApp"],
                "resource": resource,
                "external_reference": None,
            }
        )
    )["ok"]
    sp = (await functions[A.ENSURE_SERVICE_PRINCIPAL]({"app_id": app["app_id"]}))["ok"]
    app = {**app, "service_principal_id": sp["service_principal_id"]}
    await functions[A.CREATE_SECRET](
        {
            "onboarding_id": ONBOARDING_ID,
            "tenant_id": sandbox.tenant_id,
            "app": app,
            "lifetime_days": 30,
            "protocols": ["IMAP"],
        }
    )
    await functions[A.REGISTER_IN_EXCHANGE](
        {
            "app_id": app["app_id"],
            "service_principal_id": app["service_principal_id"],
            "app_object_id": app["object_id"],
            "display_name": "x",
        }
    )
    done = await twice(
        A.COMPENSATE, {"onboarding_id": ONBOARDING_ID, "app": app, "exchange_registered": True}
    )
    assert len(done["done"]) == 3
    state = sandbox.state
    assert [a.deleted_at is not None for a in state.applications() if "mail-onboarding" in a.tags] == [True]
    assert [s.deleted_at is not None for s in state.secrets()] == [True]
    assert state.exchange_service_principals() == []
    assert state.find_service_principal(app["app_id"], visible_only=False) is None


async def test_a_secret_step_cut_off_after_add_password_leaves_no_orphan_when_run_again(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    """A crash between ``addPassword`` and the vault write loses the secret's only copy: the run
    again must remove that credential (found by its label) and make one it can store."""
    functions = activity_functions()
    resource = (await functions[A.RESOLVE_EXCHANGE]({"roles": ["IMAP.AccessAsApp"]}))["ok"]
    app = (
        await functions[A.REGISTER_APP](
            {
                "onboarding_id": ONBOARDING_ID,
                "display_name": "Interrupted",
                "roles": ["IMAP.AccessAsApp"],
                "resource": resource,
                "external_reference": None,
            }
        )
    )["ok"]
    async with Services(load_settings()) as services:  # what the killed first attempt got done
        from datetime import UTC, datetime, timedelta

        lost = await services.graph.add_password(
            app["object_id"], password_label(ONBOARDING_ID), datetime.now(UTC) + timedelta(days=1)
        )
    payload = {
        "onboarding_id": ONBOARDING_ID,
        "tenant_id": sandbox.tenant_id,
        "app": app,
        "lifetime_days": 30,
        "protocols": ["IMAP"],
    }
    secret = await Twice(sandbox)(A.CREATE_SECRET, payload)
    [password] = sandbox.state.password_credentials(app["object_id"])
    assert password.key_id == secret["key_id"] != lost.key_id
    [stored] = sandbox.state.secrets()
    assert [v.version for v in stored.versions] == [secret["version"]]
    assert json.loads(stored.current.value)["clientSecret"] == password.secret_text
