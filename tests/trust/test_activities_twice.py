"""At least once: Durable may run an activity again after a crash, with the same input. Each activity
of the onboarding, run twice in a row in the orchestrator's order, must leave the tenant exactly as
running it once does; so must the undo steps."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import activities
import activities.records as record_activities
import activities.webhooks as webhook_activities
from onboarding import activity_names as A
from onboarding import contracts as C
from onboarding import plan, records
from onboarding.domain import (
    AppRegistration,
    ConsentMode,
    MailboxState,
    OnboardingRequest,
    OnboardingResult,
    Outcome,
    Protocol,
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
PROTOCOLS = ("IMAP", "POP")
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


async def once(functions: dict[str, Activity], contract: C.Contract[Any, Any], payload: C.Payload) -> Any:
    reply = await functions[contract.name](json.loads(json.dumps(payload.to_json())))
    return contract.result(reply["ok"])


async def made_app(
    functions: dict[str, Activity], name: str, tenant_id: str, *, registered_in_exchange: bool = False
) -> AppRegistration:
    """An app made by the activities, with its service principal (and a secret, and its Exchange
    registration, when ``registered_in_exchange``): what an undo or a run again starts from."""
    roles = ("IMAP.AccessAsApp",)
    resource = await once(functions, C.RESOLVE_EXCHANGE, C.ResolveExchange(roles=roles))
    app = await once(
        functions,
        C.REGISTER_APP,
        C.RegisterApp(onboarding_id=ONBOARDING_ID, display_name=name, roles=roles, resource=resource),
    )
    if not registered_in_exchange:
        return app
    sp = await once(functions, C.ENSURE_SERVICE_PRINCIPAL, C.EnsureServicePrincipal(app_id=app.app_id))
    app = replace(app, service_principal_id=sp.service_principal_id)
    secret = C.CreateSecret(
        onboarding_id=ONBOARDING_ID, tenant_id=tenant_id, app=app, lifetime_days=30, protocols=("IMAP",)
    )
    await once(functions, C.CREATE_SECRET, secret)
    registration = C.RegisterInExchange(
        app_id=app.app_id,
        service_principal_id=sp.service_principal_id,
        app_object_id=app.object_id,
        display_name="x",
    )
    await once(functions, C.REGISTER_IN_EXCHANGE, registration)
    return app


@pytest.fixture
def sandbox_config(tmp_path: Path) -> SandboxConfig:
    return SandboxConfig(base_dir=tmp_path / "sandbox", mailboxes=MAILBOXES)


class Twice:
    """Runs each activity twice and checks the second run changed nothing the first did not."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.functions = activity_functions()
        self.ran: list[str] = []

    async def __call__(self, contract: C.Contract[Any, Any], payload: C.Payload) -> Any:
        """Run the activity of ``contract`` twice on ``payload``, as Durable hands it over (JSON)."""
        return contract.result(await self.raw(contract.name, payload.to_json()))

    async def raw(self, name: str, payload: dict[str, Any]) -> Any:
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
    roles = req.app_roles

    resource = await twice(C.RESOLVE_EXCHANGE, C.ResolveExchange(roles=roles))
    app = await twice(
        C.REGISTER_APP,
        C.RegisterApp(
            onboarding_id=ONBOARDING_ID,
            display_name=req.display_name,
            roles=roles,
            resource=resource,
            external_reference=req.external_reference,
        ),
    )
    sp = await twice(C.ENSURE_SERVICE_PRINCIPAL, C.EnsureServicePrincipal(app_id=app.app_id))
    app = replace(app, service_principal_id=sp.service_principal_id)
    secret = await twice(
        C.CREATE_SECRET,
        C.CreateSecret(
            onboarding_id=ONBOARDING_ID,
            tenant_id=req.tenant_id,
            app=app,
            lifetime_days=30,
            protocols=PROTOCOLS,
        ),
    )
    # The mail product's principal gets Key Vault Secrets User on that one secret, once.
    _, reader, _ = sandbox.create_client_app("Mail product")
    await twice(C.GRANT_SECRET_READER, C.SecretReaderRef(onboarding_id=ONBOARDING_ID, principal_id=reader))
    [assignment] = [r for r in sandbox.state.rbac_assignments() if r.principal_id == reader]
    assert assignment.scope.endswith(f"/secrets/{secret.name}")
    email = C.SendDecisionEmail(
        onboarding_id=ONBOARDING_ID,
        request=req,
        app_id=app.app_id,
        nonce="nonce-1",
        deadline="2099-01-01T00:00:00+00:00",
        reminder=0,
    )
    await twice(C.SEND_DECISION_EMAIL, email)
    grant = C.AppRoles(service_principal_id=sp.service_principal_id, resource=resource, roles=roles)
    await twice(C.GRANT_APP_ROLES, grant)
    assert await twice(C.CHECK_APP_ROLES, grant) == C.RolesConfirmed(roles)
    await twice(
        C.REGISTER_IN_EXCHANGE,
        C.RegisterInExchange(
            app_id=app.app_id,
            service_principal_id=sp.service_principal_id,
            app_object_id=app.object_id,
            display_name=req.display_name,
        ),
    )
    granted = await twice(
        C.GRANT_MAILBOXES,
        C.GrantMailboxes(
            service_principal_id=sp.service_principal_id, mailboxes=MAILBOXES, protocols=PROTOCOLS
        ),
    )
    assert [g.state for g in granted.results] == [MailboxState.GRANTED] * 3
    verified = await twice(
        C.VERIFY_MAILBOXES,
        C.VerifyMailboxes(
            tenant_id=req.tenant_id, app=app, secret=secret, protocols=PROTOCOLS, mailboxes=MAILBOXES
        ),
    )
    assert [v.state for v in verified.results] == [MailboxState.VERIFIED] * 3
    outcome = OnboardingResult(
        onboarding_id=ONBOARDING_ID,
        outcome=Outcome.SUCCEEDED,
        app=app,
        secret=secret,
        mailbox_counts=plan.count_states(v.state.value for v in verified.results),
    )
    await twice(C.NOTIFY_OUTCOME, C.NotifyOutcome(request=req, result=outcome))
    result = outcome.to_json()
    recorded = C.RecordOnboarding(
        onboarding_id=ONBOARDING_ID,
        request=req,
        mailbox_count=len(MAILBOXES),
        app=app,
        outcome=Outcome.SUCCEEDED.value,
        at="2026-01-01T00:00:00+00:00",
    )
    assert await twice(C.RECORD_ONBOARDING, recorded) == C.Recorded(True)
    completed = EventType.COMPLETED.value
    data = webhook_activities.event_data(
        C.EmitWebhookEvent(
            ONBOARDING_ID, 7, completed, "2026-01-01T00:00:00+00:00", result, request=req.to_json()
        )
    )
    event = envelope(ONBOARDING_ID, 7, completed, "2026-01-01T00:00:00+00:00", data)
    assert req.callback_url is not None
    assert await twice(C.DELIVER_WEBHOOK, C.DeliverWebhook(url=req.callback_url, event=event)) < 300

    # Every activity of the procedure ran twice (compensation is the next test).
    assert set(twice.ran) == set(twice.functions) - {A.COMPENSATE}
    state = sandbox.state
    [application] = [a for a in state.applications() if "mail-onboarding" in a.tags]
    assert application.app_id == app.app_id and application.deleted_at is None
    [password] = application.passwords  # one credential in use, no orphan
    assert password.key_id == secret.key_id and password.display_name == password_label(ONBOARDING_ID)
    assert [s.id for s in state.service_principals() if s.app_id == app.app_id] == [sp.service_principal_id]
    exo = state.exchange_sp
    mine = [a for a in state.app_role_assignments() if a.principal_id == sp.service_principal_id]
    assert sorted(state.role_by_value(exo, r).id for r in roles) == sorted(a.app_role_id for a in mine)
    [registration] = state.exchange_service_principals()
    assert registration.object_id == sp.service_principal_id
    assert sorted((p.mailbox, p.user) for p in state.mailbox_permissions()) == sorted(
        (m, registration.object_id) for m in MAILBOXES
    )
    [vault_secret, record] = sorted(state.secrets(), key=lambda s: s.name)
    assert vault_secret.name == vault_secret_name(ONBOARDING_ID) == secret.name
    assert record.name == records.record_name(ONBOARDING_ID) and len(record.versions) == 1
    assert [v.version for v in vault_secret.versions] == [secret.version]
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
    app = await made_app(twice.functions, "To be undone", sandbox.tenant_id, registered_in_exchange=True)
    done = await twice(
        C.COMPENSATE, C.Compensate(onboarding_id=ONBOARDING_ID, app=app, exchange_registered=True)
    )
    assert len(done.done) == 3
    state = sandbox.state
    assert [a.deleted_at is not None for a in state.applications() if "mail-onboarding" in a.tags] == [True]
    assert [s.deleted_at is not None for s in state.secrets()] == [True]
    assert state.exchange_service_principals() == []
    assert state.find_service_principal(app.app_id, visible_only=False) is None


async def test_a_secret_step_cut_off_after_add_password_leaves_no_orphan_when_run_again(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    """A crash between ``addPassword`` and the vault write loses the secret's only copy: the run
    again must remove that credential (found by its label) and make one it can store."""
    app = await made_app(activity_functions(), "Interrupted", sandbox.tenant_id)
    async with Services(load_settings()) as services:  # what the killed first attempt got done
        from datetime import UTC, datetime, timedelta

        lost = await services.graph.add_password(
            app.object_id, password_label(ONBOARDING_ID), datetime.now(UTC) + timedelta(days=1)
        )
    payload = C.CreateSecret(
        onboarding_id=ONBOARDING_ID,
        tenant_id=sandbox.tenant_id,
        app=app,
        lifetime_days=30,
        protocols=("IMAP",),
    )
    secret = await Twice(sandbox)(C.CREATE_SECRET, payload)
    [password] = sandbox.state.password_credentials(app.object_id)
    assert password.key_id == secret.key_id != lost.key_id
    [stored] = sandbox.state.secrets()
    assert [v.version for v in stored.versions] == [secret.version]
    assert json.loads(stored.current.value)["clientSecret"] == password.secret_text
