"""The diagnosis walks the links in the mail client's order and names the first broken one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from onboarding.adapters.identity import TokenInfo
from onboarding.diagnosis import (
    LINKS,
    Diagnosis,
    Link,
    LinkResult,
    LinkState,
    Target,
    assemble,
    broken,
    diagnose,
    ok,
    target_of,
)
from onboarding.domain import AppRegistration, app_unique_name, vault_secret_name
from onboarding.errors import InvalidRequestError, TransientError
from onboarding.expiry import CREDENTIALS_CONTENT_TYPE
from tests.unit.fakes import FakeServices, settings

NOW = datetime(2026, 6, 1, 6, tzinfo=UTC)
ONB = "onb-" + "a" * 32
BOX = "support@contoso.test"
SECRET_VALUE = "the-secret-value"


class Tokens:
    """Entra ID issuing app-only tokens: ``roles`` granted, or an error raised."""

    def __init__(self) -> None:
        self.roles: tuple[str, ...] = ("IMAP.AccessAsApp", "POP.AccessAsApp")
        self.error: Exception | None = None
        self.asked: list[tuple[str, str, str]] = []

    async def __call__(self, tenant_id: str, client_id: str, secret: str) -> TokenInfo:
        self.asked.append((tenant_id, client_id, secret))
        if self.error:
            raise self.error
        audience = settings().exchange_endpoint  # the configured cloud's Exchange resource
        return TokenInfo("token-xyz", audience, self.roles, client_id, "sp-1", 0)


def healthy() -> tuple[FakeServices, Target, Tokens]:
    svc = FakeServices(settings(), mailboxes={BOX: {"IMAP": True, "POP": True}})
    app = AppRegistration(object_id="obj-1", app_id="app-1", unique_name=app_unique_name(ONB))
    svc.graph.applications[app.unique_name] = app
    svc.graph.service_principals["app-1"] = "sp-1"
    password = asyncio.run(svc.graph.add_password("obj-1", "label", NOW + timedelta(days=90)))
    document = {
        "clientId": "app-1",
        "clientSecret": SECRET_VALUE,
        "imap": {"host": "h"},
        "pop": {"host": "h"},
    }
    asyncio.run(
        svc.vault.put(
            vault_secret_name(ONB),
            json.dumps(document),
            content_type=CREDENTIALS_CONTENT_TYPE,
            expires_on=NOW + timedelta(days=90),
            tags={"keyId": password.key_id, "appId": "app-1", "onboardingId": ONB},
        )
    )
    svc.exchange.directory["app-1"] = "sp-1"
    svc.exchange.principals.add("app-1")
    svc.exchange.permissions.add((BOX, "sp-1"))
    svc.mail_probe.open = {(BOX, "IMAP"), (BOX, "POP")}
    target = Target.of_onboarding(ONB, "tenant-1", "app-1", [BOX], ["IMAP", "POP"])
    return svc, target, Tokens()


def run(svc: FakeServices, target: Target, tokens: Tokens) -> Diagnosis:
    return asyncio.run(diagnose(svc, target, now=NOW, token_source=tokens))


def states(diagnosis: Diagnosis) -> list[str]:
    return [link.state.value for link in diagnosis.links]


def test_a_healthy_chain_reports_every_link_ok_in_the_mail_clients_order():
    svc, target, tokens = healthy()
    diagnosis = run(svc, target, tokens)
    assert [link.name for link in diagnosis.links] == list(LINKS)
    assert states(diagnosis) == ["ok"] * 7
    assert diagnosis.to_json()["firstBroken"] is None
    # The token was asked for with the secret from Key Vault, and nothing secret is in the report.
    assert tokens.asked == [("tenant-1", "app-1", SECRET_VALUE)]
    assert SECRET_VALUE not in json.dumps(diagnosis.to_json()) and "token-xyz" not in json.dumps(
        diagnosis.to_json()
    )


def _delete_app(svc: FakeServices, tokens: Tokens) -> None:
    svc.graph.deleted.append("obj-1")


def _remove_sp(svc: FakeServices, tokens: Tokens) -> None:
    del svc.graph.service_principals["app-1"]


def _remove_credential(svc: FakeServices, tokens: Tokens) -> None:
    svc.graph.passwords["obj-1"] = []


def _expire_credential(svc: FakeServices, tokens: Tokens) -> None:
    svc.graph.passwords["obj-1"][0].end_date_time = NOW - timedelta(days=1)


def _delete_vault_secret(svc: FakeServices, tokens: Tokens) -> None:
    svc.vault.versions.clear()


def _expire_vault_secret(svc: FakeServices, tokens: Tokens) -> None:
    svc.vault.versions[vault_secret_name(ONB)][-1].expires_on = NOW - timedelta(hours=1)


def _revoke_consent(svc: FakeServices, tokens: Tokens) -> None:
    tokens.roles = ("POP.AccessAsApp",)


def _secret_refused(svc: FakeServices, tokens: Tokens) -> None:
    tokens.error = InvalidRequestError(
        "Entra ID refused the client secret (AADSTS7000215).", fix="Use the value."
    )


def _remove_exchange_sp(svc: FakeServices, tokens: Tokens) -> None:
    svc.exchange.principals.discard("app-1")


def _wrong_object_id(svc: FakeServices, tokens: Tokens) -> None:
    svc.exchange.directory["app-1"] = "obj-1"


def _remove_full_access(svc: FakeServices, tokens: Tokens) -> None:
    svc.exchange.permissions.clear()


def _disable_imap(svc: FakeServices, tokens: Tokens) -> None:
    svc.exchange.mailboxes[BOX]["IMAP"] = False


def _refuse_login(svc: FakeServices, tokens: Tokens) -> None:
    svc.mail_probe.open.discard((BOX, "POP"))


@pytest.mark.parametrize(
    ("breakage", "link", "fix_names"),
    [
        (_delete_app, Link.APP, "Restore the app registration"),
        (_remove_sp, Link.SERVICE_PRINCIPAL, "New-MgServicePrincipal -AppId app-1"),
        (_remove_credential, Link.CREDENTIAL, "Add a new client secret"),
        (_expire_credential, Link.CREDENTIAL, "Add a new client secret"),
        (_delete_vault_secret, Link.CREDENTIAL, "Recover the deleted secret"),
        (_expire_vault_secret, Link.CREDENTIAL, "store it in Key Vault as a new version"),
        (_revoke_consent, Link.TOKEN_ROLES, "Grant admin consent for IMAP.AccessAsApp"),
        (_secret_refused, Link.TOKEN_ROLES, "Use the value."),
        (
            _remove_exchange_sp,
            Link.EXCHANGE_SERVICE_PRINCIPAL,
            "New-ServicePrincipal -AppId app-1 -ObjectId sp-1",
        ),
        (_wrong_object_id, Link.EXCHANGE_SERVICE_PRINCIPAL, "Remove-ServicePrincipal -Identity app-1"),
        (_remove_full_access, Link.MAILBOX_ACCESS, f"Add-MailboxPermission -Identity {BOX} -User sp-1"),
        (_disable_imap, Link.MAILBOX_ACCESS, f"Set-CASMailbox -Identity {BOX} -ImapEnabled $true"),
        (_refuse_login, Link.MAILBOX_LOGIN, "Diagnose again later"),
    ],
)
def test_each_breakage_is_named_as_the_first_broken_link_with_its_fix_and_later_links_are_skipped(
    breakage: Callable[[FakeServices, Tokens], None], link: Link, fix_names: str
):
    svc, target, tokens = healthy()
    breakage(svc, tokens)
    diagnosis = run(svc, target, tokens)
    first = diagnosis.first_broken
    assert first is not None and first.name is link, diagnosis
    assert fix_names in first.fix
    position = LINKS.index(link)
    assert states(diagnosis) == ["ok"] * position + ["broken"] + ["skipped"] * (len(LINKS) - position - 1)
    assert diagnosis.to_json()["firstBroken"] == link.value


def test_a_deleted_app_stops_the_chain_before_any_token_or_exchange_call():
    svc, target, tokens = healthy()
    _delete_app(svc, tokens)
    _remove_exchange_sp(svc, tokens)  # broken too, but behind the first break
    diagnosis = run(svc, target, tokens)
    assert diagnosis.to_json()["firstBroken"] == Link.APP.value
    assert tokens.asked == [] and svc.mail_probe.logins == []


def test_a_transient_failure_is_raised_not_reported_as_a_broken_link():
    svc, target, tokens = healthy()
    tokens.error = TransientError("Entra ID's token endpoint answered HTTP 503.")
    with pytest.raises(TransientError):
        run(svc, target, tokens)


def test_an_app_id_target_finds_its_secret_by_the_vaults_app_id_tag_and_its_protocols_in_the_hand_off():
    svc, _, tokens = healthy()
    target = Target(tenant_id="tenant-1", app_id="app-1", mailboxes=(BOX,))
    diagnosis = run(svc, target, tokens)
    assert diagnosis.first_broken is None
    assert {protocol for _, protocol, _ in svc.mail_probe.logins} == {"IMAP", "POP"}


def test_the_report_round_trips_through_json():
    svc, target, tokens = healthy()
    _disable_imap(svc, tokens)
    diagnosis = run(svc, target, tokens)
    assert Diagnosis.from_json(json.loads(json.dumps(diagnosis.to_json()))) == diagnosis
    assert Target.from_json(target.to_json()) == target


def test_assemble_refuses_links_out_of_order_or_a_chain_that_stops_while_healthy():
    with pytest.raises(ValueError, match="out of order"):
        assemble([ok(Link.SERVICE_PRINCIPAL, "")])
    with pytest.raises(ValueError, match="only the last"):
        assemble([broken(Link.APP, "", ""), ok(Link.SERVICE_PRINCIPAL, "")])
    with pytest.raises(ValueError, match="without a broken link"):
        assemble([ok(Link.APP, "")])
    report = assemble([ok(Link.APP, ""), broken(Link.SERVICE_PRINCIPAL, "gone", "fix it")])
    assert report.links[2:] == tuple(
        LinkResult(name, LinkState.SKIPPED, "Not checked: service_principal is broken.") for name in LINKS[2:]
    )


def _status(outcome: str, attention: list[dict] | None = None) -> dict:
    request = {
        "tenant_id": "tenant-1",
        "display_name": "Helpdesk",
        "protocols": ["IMAP"],
        "mailboxes": [BOX, "sales@contoso.test"],
        "admin_emails": ["it@contoso.test"],
    }
    output = {
        "onboarding_id": ONB,
        "outcome": outcome,
        "app": {"object_id": "obj-1", "app_id": "app-1", "unique_name": "u"},
        "mailbox_counts": {"verified": 1, "protocol_disabled": 1},
        "attention": attention or [],
    }
    return {"input": {"onboarding_id": ONB, "request": request}, "output": output}


def test_an_onboarding_is_diagnosed_on_its_verified_mailboxes_and_only_if_it_left_an_app():
    disabled = {"mailbox": "sales@contoso.test", "state": "protocol_disabled", "detail": "IMAP off"}
    target = target_of(_status("partial", [disabled]))
    assert isinstance(target, Target)
    assert target.mailboxes == (BOX,) and target.secret_name == vault_secret_name(ONB)
    assert [p.value for p in target.protocols] == ["IMAP"]
    assert target_of(_status("rejected")) == "The onboarding ended rejected: it left no app to diagnose."
    assert "nothing to diagnose" in str(target_of({"input": None, "output": None}))
