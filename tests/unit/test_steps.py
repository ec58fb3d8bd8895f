"""The idempotency of each step, with fakes: Durable may run any activity twice."""

import json

import pytest

from onboarding import steps
from onboarding.contracts import ExchangeRegistered, Pending, RolesConfirmed
from onboarding.domain import AppRegistration, ExchangeResource, MailboxState
from onboarding.errors import InvalidRequestError, NotFoundError, PermissionDeniedError, TransientError
from tests.unit.fakes import Crash, FakeServices, settings

APP = AppRegistration(object_id="obj-1", app_id="app-1", unique_name="u", service_principal_id="sp-1")
RESOURCE = ExchangeResource("exo-sp", {"IMAP.AccessAsApp": "role-imap", "POP.AccessAsApp": "role-pop"})


async def make_secret(svc):
    return await steps.create_secret(
        svc, onboarding_id="onb-1", tenant_id="t", app=APP, lifetime_days=180, protocols=["IMAP"]
    )


async def test_creating_the_secret_twice_leaves_one_credential_and_one_vault_version():
    svc = FakeServices(settings())
    first = await make_secret(svc)
    second = await make_secret(svc)
    assert first == second
    assert len(svc.graph.passwords["obj-1"]) == 1
    assert len(svc.vault.versions[first.name]) == 1


async def test_the_secret_value_reaches_the_vault_and_nothing_else():
    svc = FakeServices(settings())
    ref = await make_secret(svc)
    value = svc.graph.passwords["obj-1"][0].secret_text
    stored = json.loads(svc.vault.versions[ref.name][0].value)
    assert stored["clientSecret"] == value and stored["clientId"] == "app-1"
    assert stored["imap"] is not None and stored["pop"] is None
    assert value not in json.dumps(ref.to_json())


async def test_a_vault_failure_removes_the_credential_whose_value_would_be_lost():
    svc = FakeServices(settings())
    svc.vault.fail_next_put = True
    with pytest.raises(Crash):
        await make_secret(svc)
    assert svc.graph.passwords["obj-1"] == []


async def test_an_orphan_from_an_interrupted_attempt_is_replaced_not_kept():
    svc = FakeServices(settings())
    # A crash between addPassword and the vault write leaves a labelled credential nobody knows.
    await svc.graph.add_password("obj-1", steps.password_label("onb-1"), steps.utcnow())
    ref = await make_secret(svc)
    keys = [p.key_id for p in svc.graph.passwords["obj-1"]]
    assert keys == [ref.key_id]


async def test_a_throttled_add_password_is_retried_in_the_step_after_reading_the_credentials_again(
    monkeypatch: pytest.MonkeyPatch,
):
    svc = FakeServices(settings())
    real_add, real_list = svc.graph.add_password, svc.graph.list_passwords
    calls: list[str] = []
    failures = iter([True, True])  # Graph mints the credential, then the answer is lost: twice

    async def listing(object_id):
        calls.append("list")
        return await real_list(object_id)

    async def adding(object_id, display_name, end_date_time):
        calls.append("add")
        new = await real_add(object_id, display_name, end_date_time)
        if next(failures, False):
            raise TransientError("Microsoft Graph throttled.", retry_after=0)
        return new

    monkeypatch.setattr(svc.graph, "list_passwords", listing)
    monkeypatch.setattr(svc.graph, "add_password", adding)
    ref = await make_secret(svc)
    # Never two adds without a read between them; the orphans of the lost answers are gone.
    assert calls == ["list", "add", "list", "add", "list", "add"]
    assert [p.key_id for p in svc.graph.passwords["obj-1"]] == [ref.key_id]


async def test_an_add_password_failing_every_time_leaves_the_step_to_the_orchestrator(
    monkeypatch: pytest.MonkeyPatch,
):
    svc = FakeServices(settings())

    async def adding(object_id, display_name, end_date_time):
        raise TransientError("Microsoft Graph throttled.", retry_after=0)

    monkeypatch.setattr(svc.graph, "add_password", adding)
    with pytest.raises(TransientError):
        await make_secret(svc)
    assert svc.vault.versions == {}


async def test_granting_app_roles_twice_assigns_each_once():
    svc = FakeServices(settings())
    for _ in range(2):
        await steps.grant_app_roles(
            svc, service_principal_id="sp-1", resource=RESOURCE, roles=["IMAP.AccessAsApp"]
        )
    assert len(svc.graph.assignments["sp-1"]) == 1
    confirmed = await steps.check_app_roles(
        svc, service_principal_id="sp-1", resource=RESOURCE, roles=["IMAP.AccessAsApp"]
    )
    assert confirmed == RolesConfirmed(("IMAP.AccessAsApp",))
    pending = await steps.check_app_roles(
        svc, service_principal_id="sp-1", resource=RESOURCE, roles=["IMAP.AccessAsApp", "POP.AccessAsApp"]
    )
    assert isinstance(pending, Pending) and "POP.AccessAsApp" in pending.reason


async def test_mailbox_grants_report_missing_mailboxes_with_the_fix():
    svc = FakeServices(
        settings(),
        mailboxes={"a@x.test": {"IMAP": True, "POP": True}, "b@x.test": {"IMAP": False, "POP": True}},
    )
    results = await steps.grant_mailboxes(
        svc, service_principal_id="sp-1", mailboxes=["a@x.test", "b@x.test", "c@x.test"], protocols=["IMAP"]
    )
    states = {r.mailbox: r.state for r in results}
    assert states == {
        "a@x.test": MailboxState.GRANTED,
        "b@x.test": MailboxState.GRANTED,
        "c@x.test": MailboxState.NOT_FOUND,
    }
    assert "check the address" in results[2].detail
    assert svc.exchange.permissions == {("a@x.test", "sp-1"), ("b@x.test", "sp-1")}


async def test_an_unrecognised_refusal_on_one_mailbox_fails_that_mailbox_and_the_batch_goes_on():
    from onboarding.adapters.exchange import CmdletError

    boxes = {m: {"IMAP": True, "POP": True} for m in ("a@x.test", "b@x.test", "c@x.test")}
    svc = FakeServices(settings(), mailboxes=boxes)
    upstream = "Something odd about b@x.test happened in database DB-7 on server EXCH01"
    svc.exchange.refusals["b@x.test"] = CmdletError("Add-MailboxPermission", upstream, 400)
    results = await steps.grant_mailboxes(
        svc, service_principal_id="sp-1", mailboxes=list(boxes), protocols=["IMAP"]
    )
    states = {r.mailbox: r.state for r in results}
    assert states == {
        "a@x.test": MailboxState.GRANTED,
        "b@x.test": MailboxState.FAILED,
        "c@x.test": MailboxState.GRANTED,
    }
    failed = results[1].detail
    assert "Add-MailboxPermission -Identity b@x.test -User sp-1" in failed
    assert "DB-7" not in failed and "EXCH01" not in failed  # Exchange's own words are not repeated


@pytest.mark.parametrize(
    "app_wide",
    [
        PermissionDeniedError("The function app's identity may not run Add-MailboxPermission."),
        TransientError("Exchange Online is throttling.", code="throttled"),
    ],
)
async def test_an_error_about_the_app_itself_still_stops_the_batch(app_wide):
    svc = FakeServices(settings(), mailboxes={"a@x.test": {"IMAP": True, "POP": True}})
    svc.exchange.refusals["a@x.test"] = app_wide
    with pytest.raises(type(app_wide)):
        await steps.grant_mailboxes(
            svc, service_principal_id="sp-1", mailboxes=["a@x.test"], protocols=["IMAP"]
        )


async def register_in_exchange(svc, service_principal_id="sp-1"):
    return await steps.register_in_exchange(
        svc,
        app_id="app-1",
        service_principal_id=service_principal_id,
        app_object_id="obj-1",
        display_name="Mail app",
    )


async def test_registering_in_exchange_waits_while_exchange_has_not_caught_up_with_entra():
    svc = FakeServices(settings())
    svc.graph.service_principals["app-1"] = "sp-1"
    reply = await register_in_exchange(svc)
    assert isinstance(reply, Pending) and "Exchange Online does not see" in reply.reason
    svc.exchange.directory["app-1"] = "sp-1"  # Exchange's copy caught up
    assert await register_in_exchange(svc) == ExchangeRegistered("sp-1")
    assert svc.exchange.principals == {"app-1"}


async def test_registering_in_exchange_with_an_id_graph_does_not_know_for_the_app_fails_at_once():
    svc = FakeServices(settings())
    svc.graph.service_principals["app-1"] = "sp-1"
    with pytest.raises(InvalidRequestError) as wrong:
        await register_in_exchange(svc, service_principal_id="sp-from-another-app")
    assert wrong.value.code == "wrong_object_id"
    assert "Enterprise applications" in wrong.value.fix
    assert svc.exchange.principals == set()


async def test_a_refused_login_on_a_disabled_protocol_is_explained_with_the_fix():
    svc = FakeServices(settings(), mailboxes={"b@x.test": {"IMAP": False, "POP": True}})
    explained = await steps.explain_refusal(svc, "b@x.test", ["IMAP"])
    assert explained is not None and explained.state is MailboxState.PROTOCOL_DISABLED
    assert "Set-CASMailbox -Identity b@x.test -ImapEnabled $true" in explained.detail
    assert await steps.explain_refusal(svc, "b@x.test", ["POP"]) is None


async def test_compensation_twice_is_harmless_and_says_what_it_undid():
    svc = FakeServices(settings())
    ref = await make_secret(svc)
    svc.exchange.principals.add("app-1")
    for _ in range(2):
        done = await steps.compensate(svc, onboarding_id="onb-1", app=APP, exchange_registered=True)
    assert svc.exchange.principals == set()
    assert ref.name not in svc.vault.versions
    assert svc.graph.deleted == ["obj-1"]
    assert any("app-1" in line for line in done)


async def test_an_unreplicated_service_principal_means_wait_not_fail(monkeypatch):
    svc = FakeServices(settings())

    async def not_yet(sp_id):
        raise NotFoundError("Resource does not exist.")

    monkeypatch.setattr(svc.graph, "list_app_role_assignments", not_yet)
    reply = await steps.check_app_roles(
        svc, service_principal_id="sp-1", resource=RESOURCE, roles=["IMAP.AccessAsApp"]
    )
    assert isinstance(reply, Pending) and "replication" in reply.reason


async def test_registering_in_exchange_waits_while_exchange_has_not_replicated_the_service_principal():
    svc = FakeServices(settings())
    svc.graph.service_principals["app-1"] = "sp-1"
    args = {"app_id": "app-1", "service_principal_id": "sp-1", "app_object_id": "obj-1", "display_name": "d"}
    assert isinstance(await steps.register_in_exchange(svc, **args), Pending)
    svc.exchange.directory["app-1"] = "sp-1"  # Exchange's copy of the directory caught up
    assert await steps.register_in_exchange(svc, **args) == ExchangeRegistered("sp-1")
    assert svc.exchange.principals == {"app-1"}


async def test_registering_in_exchange_with_an_id_graph_does_not_know_fails_now_with_the_fix():
    svc = FakeServices(settings())
    svc.graph.service_principals["app-1"] = "sp-1"
    with pytest.raises(InvalidRequestError) as caught:
        await steps.register_in_exchange(
            svc, app_id="app-1", service_principal_id="sp-9", app_object_id="obj-1", display_name="d"
        )
    assert caught.value.code == "wrong_object_id" and "sp-1" in caught.value.message


READER = "5b1c6f0e-aaaa-4000-8000-000000000001"


async def test_the_mail_product_gets_its_secret_only_and_a_rerun_changes_nothing():
    svc = FakeServices(settings())
    for _ in range(2):
        granted = await steps.grant_secret_reader(svc, onboarding_id="onb-1", principal_id=READER)
    assert not isinstance(granted, Pending)
    assert (granted.principal_id, granted.secret_name) == (READER, "mail-app-onb-1")
    assert svc.secret_access.readers == {("mail-app-onb-1", READER)}


async def test_a_principal_resource_manager_does_not_find_yet_means_wait_and_a_refusal_fails():
    svc = FakeServices(settings())
    svc.secret_access.refuse = TransientError("not found", fix="check the id", code="PrincipalNotFound")
    waiting = await steps.grant_secret_reader(svc, onboarding_id="onb-1", principal_id=READER)
    assert isinstance(waiting, Pending) and waiting.fix == "check the id"
    svc.secret_access.refuse = PermissionDeniedError(
        "no role", fix="give the role", code="AuthorizationFailed"
    )
    with pytest.raises(PermissionDeniedError):
        await steps.grant_secret_reader(svc, onboarding_id="onb-1", principal_id=READER)
    assert svc.secret_access.readers == set()


async def test_compensation_removes_the_mail_products_role_before_the_secret():
    svc = FakeServices(settings())
    await make_secret(svc)
    await steps.grant_secret_reader(svc, onboarding_id="onb-1", principal_id=READER)
    done = await steps.compensate(
        svc, onboarding_id="onb-1", app=APP, exchange_registered=False, secret_reader=READER
    )
    assert svc.secret_access.readers == set()
    assert [c[0] for c in svc.secret_access.calls] == ["grant", "remove"]
    assert any("Key Vault Secrets User" in line for line in done)
    # Refused (the identity lost its delegation): left for an admin, and the rest is still undone.
    await make_secret(svc)
    svc.secret_access.refuse = PermissionDeniedError("no role", fix="give the role")
    done = await steps.compensate(
        svc, onboarding_id="onb-1", app=APP, exchange_registered=False, secret_reader=READER
    )
    assert any(line.startswith("Left in place") and READER in line for line in done)
    assert "mail-app-onb-1" not in svc.vault.versions
