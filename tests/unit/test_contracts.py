"""The typed activity contracts: every payload and answer survives Durable's JSON, every activity is
registered once with its types, and the procedure's steps run through them against the fakes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

import activities
import function_app  # noqa: F401 - registers every activity with its contract
from onboarding import activity_names as A
from onboarding import contracts as C
from onboarding.domain import (
    AppRegistration,
    ConsentMode,
    ExchangeResource,
    MailboxResult,
    MailboxState,
    OnboardingRequest,
    OnboardingResult,
    Outcome,
    Protocol,
    SecretRef,
    StepError,
)
from onboarding.settings import default_workflow_options
from tests.unit.fakes import FakeServices, settings

RESOURCE = ExchangeResource("exo-sp", {"IMAP.AccessAsApp": "role-imap", "POP.AccessAsApp": "role-pop"})
APP = AppRegistration(object_id="obj-1", app_id="app-1", unique_name="u", service_principal_id="sp-1")
SECRET = SecretRef("https://vault.example.test", "mail-app-onb-1", "v1", "2030-01-01T00:00:00+00:00", "key-1")
ROLES = ("IMAP.AccessAsApp",)
MAILBOXES = ("a@contoso.test", "b@contoso.test")
REQUEST = OnboardingRequest(
    tenant_id="22222222-2222-2222-2222-222222222222",
    display_name="Helpdesk mail",
    protocols=(Protocol.IMAP,),
    mailboxes=MAILBOXES,
    admin_emails=("admin@contoso.test",),
    consent_mode=ConsentMode.GRANT,
    external_reference="TICKET-1",
)
RESULT = OnboardingResult(
    onboarding_id="onb-1",
    outcome=Outcome.PARTIAL,
    app=APP,
    secret=SECRET,
    mailbox_counts={"verified": 1, "failed": 1},
    attention=(MailboxResult("b@contoso.test", MailboxState.FAILED, "Refused.", {"IMAP": False}),),
)

# One payload per activity, as the orchestrator builds them.
PAYLOADS: dict[str, C.Payload] = {
    A.RESOLVE_EXCHANGE: C.ResolveExchange(roles=ROLES),
    A.REGISTER_APP: C.RegisterApp("onb-1", "Helpdesk mail", ROLES, RESOURCE, "TICKET-1"),
    A.ENSURE_SERVICE_PRINCIPAL: C.EnsureServicePrincipal(app_id="app-1"),
    A.CREATE_SECRET: C.CreateSecret("onb-1", "t", APP, 180, ("IMAP", "POP")),
    A.GRANT_SECRET_READER: C.SecretReaderRef("onb-1", "5b1c6f0e-0000-4000-8000-000000000001"),
    A.SEND_DECISION_EMAIL: C.SendDecisionEmail(
        "onb-1", REQUEST, "app-1", "n-1", "2030-01-01T00:00:00+00:00", 2, 9
    ),
    A.GRANT_APP_ROLES: C.AppRoles("sp-1", RESOURCE, ROLES),
    A.CHECK_APP_ROLES: C.AppRoles("sp-1", RESOURCE, ROLES),
    A.REGISTER_IN_EXCHANGE: C.RegisterInExchange("app-1", "sp-1", "obj-1", "Helpdesk mail"),
    A.GRANT_MAILBOXES: C.GrantMailboxes("sp-1", MAILBOXES, ("IMAP",), only_not_granted=True),
    A.VERIFY_MAILBOXES: C.VerifyMailboxes("t", APP, SECRET, ("IMAP",), MAILBOXES),
    A.COMPENSATE: C.Compensate(
        "onb-1", None, exchange_registered=False, secret_reader="5b1c6f0e-0000-4000-8000-000000000001"
    ),
    A.NOTIFY_OUTCOME: C.NotifyOutcome(REQUEST, RESULT, 2),
    A.DIAGNOSE: C.Diagnose(onboarding_id="onb-1", compact=True),
    A.NEXT_WEBHOOK_SEQUENCE: C.OnboardingRef("onb-1"),
    A.SEND_DRIFT_EMAIL: C.DriftEmail("onb-1", "app-1", {"name": "credential", "detail": "", "fix": ""}),
    A.LIST_ACTIVE_ONBOARDINGS: C.NoPayload(),
    A.RECORD_ONBOARDING: C.RecordOnboarding(
        "onb-1", REQUEST, 2, APP, Outcome.PARTIAL.value, "2030-01-01T00:00:00+00:00"
    ),
    A.EMIT_WEBHOOK_EVENT: C.EmitWebhookEvent(
        "onb-1",
        1,
        "onboarding.accepted",
        "2030-01-01T00:00:00+00:00",
        {"mailboxCount": 2},
        "https://r.test/h",
    ),
    A.DELIVER_WEBHOOK: C.DeliverWebhook("https://r.test/h", {"id": "onb-1:1", "type": "onboarding.accepted"}),
}
ANSWERS: list[Any] = [
    C.Pending("Not yet.", fix="Wait."),
    C.ServicePrincipal("sp-1"),
    C.SecretReader("5b1c6f0e-0000-4000-8000-000000000001", "mail-app-onb-1", "6a0c7c1e-0000-5000-8000-1"),
    C.RolesConfirmed(ROLES),
    C.ExchangeRegistered("sp-1"),
    C.MailboxResults((MailboxResult("a@contoso.test", MailboxState.GRANTED, "FullAccess granted."),)),
    C.Compensation(("Deleted app registration app-1.",)),
    C.EventHandedOver("WebhookEvent-1"),
    C.NextWebhookEvent(3, "drift"),
    # Not an answer, but it crosses Durable too: a mailbox batch's (or group's) input.
    C.MailboxJob("onb-1", "t", APP, SECRET, ("IMAP",), default_workflow_options(), MAILBOXES, first_batch=3),
    # A pipelined batch's: its parent granted, and says which mailboxes were not granted, or why none was.
    C.MailboxJob(
        "onb-1",
        "t",
        APP,
        SECRET,
        ("IMAP",),
        default_workflow_options(),
        MAILBOXES,
        first_batch=3,
        grant=C.BatchGrant(
            not_granted=(MailboxResult("b@contoso.test", MailboxState.NOT_FOUND, "No mailbox."),)
        ),
    ),
    C.BatchGrant(error=StepError(step="mailbox_permissions", message="Refused.", code="permission_denied")),
    RESOURCE,
    APP,
    SECRET,
]


def contracts() -> list[C.Contract[Any, Any]]:
    return [value for value in vars(C).values() if isinstance(value, C.Contract)]


def over_the_wire(data: Any) -> Any:
    """What Durable hands over: the JSON text of the value, parsed (plain JSON only, or this fails)."""
    return json.loads(json.dumps(data))


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_every_payload_reads_back_as_it_was_built_after_crossing_durable(name: str) -> None:
    payload = PAYLOADS[name]
    assert type(payload).from_json(over_the_wire(payload.to_json())) == payload


def test_a_payload_with_extra_fields_still_decodes_as_the_orchestrator_adds_log_fields() -> None:
    payload = C.EnsureServicePrincipal(app_id="app-1")
    tagged = {**payload.to_json(), "log_fields": {"onboarding_id": "onb-" + "0" * 32, "step": "x"}}
    assert C.EnsureServicePrincipal.from_json(tagged) == payload


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: type(a).__name__)
def test_every_answer_reads_back_as_it_was_given_after_crossing_durable(answer: Any) -> None:
    assert type(answer).from_json(over_the_wire(answer.to_json())) == answer


def test_a_pending_answer_is_told_apart_from_the_answer_it_stands_for() -> None:
    read = C.REGISTER_IN_EXCHANGE.result
    assert read(C.Pending("Not yet.").to_json()) == C.Pending("Not yet.")
    assert read(C.ExchangeRegistered("sp-1").to_json()) == C.ExchangeRegistered("sp-1")


def test_every_contract_has_an_example_payload_here() -> None:
    assert {c.name for c in contracts()} == set(PAYLOADS)
    for contract in contracts():
        assert isinstance(PAYLOADS[contract.name], contract.payload), contract.name


def activity_triggers() -> Counter[str]:
    """The function app's activity triggers, as the worker indexes them: in a process of their own,
    since ``get_functions()`` may run once per app object (a second call reports every function as a
    duplicate) and the local host of other tests may have indexed this process's app already."""
    code = (
        "import json, function_app; print(json.dumps([f.get_function_name() for f in "
        "function_app.app.get_functions() if f.get_trigger().type == 'activityTrigger']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return Counter(json.loads(done.stdout.strip().splitlines()[-1]))


def test_every_activity_name_has_exactly_one_trigger_and_is_registered_with_its_types() -> None:
    triggers = activity_triggers()
    names = {value for key, value in vars(A).items() if key.isupper() and isinstance(value, str)}
    assert {name: triggers[name] for name in names} == dict.fromkeys(names, 1)
    assert set(triggers) == names
    # An activity without a Contract (activities.typed_activity or activities.register) fails here.
    assert set(activities.REGISTERED) == names
    assert all(activities.REGISTERED[c.name] is c for c in contracts())


def test_the_emitted_event_names_its_first_subscription_and_nothing_it_does_not_have() -> None:
    event = C.EmitWebhookEvent("onb-1", 2, "onboarding.mailbox_progress", "2030-01-01T00:00:00+00:00", {})
    assert set(event.to_json()) == {"onboarding_id", "sequence", "type", "occurred_at", "data"}


def test_registering_an_activity_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        activities.typed_activity(C.COMPENSATE, activities._compensate)


# --- the procedure through its contracts, against the fakes ----------------------------------------


class Activities:
    """Calls the registered activity functions as Durable does (JSON in, JSON out), over the fakes."""

    def __init__(self, services: FakeServices, monkeypatch: pytest.MonkeyPatch) -> None:
        @asynccontextmanager
        async def fake_services(_settings: object) -> AsyncIterator[FakeServices]:
            yield services

        monkeypatch.setattr(activities, "Services", fake_services)
        monkeypatch.setattr(activities, "load_settings", lambda: services.settings)
        self.functions = {
            b._function.get_function_name(): b._function.get_user_function()
            for b in activities.blueprint._function_builders
        }

    async def __call__(self, contract: C.Contract[Any, Any], payload: C.Payload) -> Any:
        reply = over_the_wire(await self.functions[contract.name](over_the_wire(payload.to_json())))
        assert "ok" in reply, reply
        return contract.result(reply["ok"])


async def test_the_procedure_runs_through_its_typed_contracts_on_the_fakes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from onboarding.adapters import identity

    svc = FakeServices(settings(), mailboxes={m: {"IMAP": True, "POP": True} for m in MAILBOXES})
    run = Activities(svc, monkeypatch)
    resource = await run(C.RESOLVE_EXCHANGE, C.ResolveExchange(roles=ROLES))
    assert resource == svc.graph.resource
    app = await run(C.REGISTER_APP, C.RegisterApp("onb-1", "Helpdesk mail", ROLES, resource))
    sp = await run(C.ENSURE_SERVICE_PRINCIPAL, C.EnsureServicePrincipal(app.app_id))
    app = replace(app, service_principal_id=sp.service_principal_id)
    secret = await run(C.CREATE_SECRET, C.CreateSecret("onb-1", REQUEST.tenant_id, app, 180, ("IMAP",)))
    assert isinstance(secret, SecretRef) and secret.name in svc.vault.versions
    deadline = "2030-01-01T00:00:00+00:00"
    await run(C.SEND_DECISION_EMAIL, C.SendDecisionEmail("onb-1", REQUEST, app.app_id, "n-1", deadline))
    assert [m["to"] for m in svc.graph.mail] == [list(REQUEST.admin_emails)]
    roles = C.AppRoles(sp.service_principal_id, resource, ROLES)
    assert isinstance(await run(C.CHECK_APP_ROLES, roles), C.Pending)  # no consent yet
    await run(C.GRANT_APP_ROLES, roles)
    assert await run(C.CHECK_APP_ROLES, roles) == C.RolesConfirmed(ROLES)
    register = C.RegisterInExchange(app.app_id, sp.service_principal_id, app.object_id, "Helpdesk mail")
    assert isinstance(await run(C.REGISTER_IN_EXCHANGE, register), C.Pending)  # Exchange has not caught up
    svc.exchange.directory[app.app_id] = sp.service_principal_id
    assert await run(C.REGISTER_IN_EXCHANGE, register) == C.ExchangeRegistered(sp.service_principal_id)
    granted = await run(C.GRANT_MAILBOXES, C.GrantMailboxes(sp.service_principal_id, MAILBOXES, ("IMAP",)))
    assert [r.state for r in granted.results] == [MailboxState.GRANTED] * 2
    # A pipelined level of batches asks only for the mailboxes not granted: here, the unknown one.
    asked = C.GrantMailboxes(sp.service_principal_id, (*MAILBOXES, "nobody@contoso.test"), ("IMAP",), True)
    not_granted = await run(C.GRANT_MAILBOXES, asked)
    assert [(r.mailbox, r.state) for r in not_granted.results] == [
        ("nobody@contoso.test", MailboxState.NOT_FOUND)
    ]

    async def token(credential: object, scope: str) -> identity.TokenInfo:
        return identity.TokenInfo(
            "token-1", scope.removesuffix("/.default"), ("IMAP.AccessAsApp",), app.app_id, "o", 0
        )

    monkeypatch.setattr(identity, "acquire_token", token)
    svc.mail_probe.open.add((MAILBOXES[0], "IMAP"))
    verify = C.VerifyMailboxes(REQUEST.tenant_id, app, secret, ("IMAP",), MAILBOXES)
    verified = await run(C.VERIFY_MAILBOXES, verify)
    assert [r.state for r in verified.results] == [MailboxState.VERIFIED, MailboxState.GRANTED]
    result = replace(RESULT, app=app, secret=secret)
    await run(C.NOTIFY_OUTCOME, C.NotifyOutcome(REQUEST, result, 2))
    assert len(svc.graph.mail) == 2
    undone = await run(C.COMPENSATE, C.Compensate("onb-1", app, exchange_registered=True))
    assert len(undone.done) == 3 and svc.exchange.principals == set() and svc.graph.deleted == [app.object_id]


async def test_a_payload_that_does_not_decode_is_reported_without_its_content(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = Activities(FakeServices(settings()), monkeypatch)
    with pytest.raises(activities.ActivityFailed) as failed:
        await run.functions[A.CREATE_SECRET]({"onboarding_id": "onb-1", "tenant_id": "hunter2-tenant"})
    assert str(failed.value) == "create_secret failed unexpectedly (KeyError)."
