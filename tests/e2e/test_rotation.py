"""Rotation end to end (issue 11 item 2): POST .../rotate replaces the app's client secret without a
gap for the mail client. On the local host with the manual clock, so the overlap window passes when
the test moves time: during it the old and the new secret both get tokens and log in (IMAP SELECT,
POP STAT); after it only the new one does, and the vault's current version holds it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from onboarding import expiry
from onboarding.adapters.identity import acquire_token, document_credential
from onboarding.adapters.mailprobe import probe_login
from onboarding.domain import Protocol
from onboarding.errors import OnboardingError
from onboarding.settings import load_settings
from sandbox.profiles import REALISTIC, profile_from_env
from tests.e2e.conftest import MAILBOXES, Tenant
from tests.e2e.test_webhooks import events
from tests.trust.receiver import CallbackReceiver

OVERLAP_HOURS = 24
WATCH = "secret_expiry_watch"
DOCUMENT = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "openapi" / "openapi.yaml").read_text("utf-8")
)


def conforms(rotation: dict[str, Any]) -> dict[str, Any]:
    """The ``rotation`` part as the OpenAPI document describes it."""
    schema = {**DOCUMENT["components"]["schemas"]["Rotation"], "components": DOCUMENT["components"]}
    jsonschema.validate(rotation, schema, cls=jsonschema.Draft202012Validator)
    return rotation


def onboard(tenant: Tenant, lifetime_days: int, name: str, **request: Any) -> dict[str, Any]:
    """An onboarding of three mailboxes, consented, driven to success on the manual clock."""
    location = tenant.submit(
        secretLifetimeDays=lifetime_days, idempotencyKey=name, displayName=name, **request
    )
    tenant.wait_for_decision(location)
    tenant.consent_from([m for m in tenant.mails_to_admin() if "Admin consent needed" in m.subject][-1])
    view = tenant.drive(lambda: tenant.status(location), lambda v: v["status"] == "succeeded")
    assert view is not None, f"onboarding {name} did not finish: {tenant.status(location)}"
    return view


def v1(view: dict[str, Any]) -> str:
    return f"/api/v1/onboardings/{view['id']}"


def client_logs_in(tenant: Tenant, document: dict[str, Any], mailbox: str = MAILBOXES[0]) -> bool:
    return mail_product_logs_in(tenant.sandbox.env, document, mailbox)


def mail_product_logs_in(env: dict[str, str], document: dict[str, Any], mailbox: str) -> bool:
    """What the mail product does with a Key Vault document (docs/client.md): a token with its
    credential, secret or certificate, then IMAP SELECT and POP STAT against the tenant of ``env``.
    False when the token is refused or a login fails."""

    async def run() -> bool:
        credential = document_credential(load_settings(), document)
        try:
            token = await acquire_token(credential, document["scope"])
        except OnboardingError:
            return False
        finally:
            await credential.close()
        imap = await probe_login(env["IMAP_HOST"], int(env["IMAP_PORT"]), Protocol.IMAP, mailbox, token.token)
        pop = await probe_login(env["POP_HOST"], int(env["POP_PORT"]), Protocol.POP, mailbox, token.token)
        return imap.ok and pop.ok

    return asyncio.run(run())


def vault_documents(tenant: Tenant, name: str) -> list[dict[str, Any]]:
    """Every version of the onboarding's secret, oldest first."""
    secret = tenant.sandbox.state.get_secret(name)
    assert secret is not None
    return [json.loads(v.value) for v in secret.versions]


def rotation_of(tenant: Tenant, view: dict[str, Any], done: Any, rounds: int = 200) -> dict[str, Any]:
    """Let the host work (see ``Tenant.drive``) until ``done(rotation view)``."""

    def rotation() -> dict[str, Any]:
        return dict(tenant.http.get(v1(view), params={"view": "current"}).json().get("rotation") or {})

    final = tenant.drive(rotation, lambda r: bool(r) and done(r), rounds)
    assert final is not None, f"the rotation did not get there: {rotation()}"
    return conforms(final)


def stream_until(tenant: Tenant, receiver: CallbackReceiver, last: str) -> list[dict[str, Any]]:
    """The webhook bodies received, once one of type ``last`` is among them (30 s at most)."""
    give_up = time.monotonic() + 30
    while not any(b["type"] == last for b in events(tenant, receiver.received())):
        assert time.monotonic() < give_up, [d.body for d in receiver.received()]
        tenant.host.idle(5)
        time.sleep(0.1)
    return events(tenant, receiver.received())


def step_of(rotation: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(next(s for s in rotation["steps"] if s["name"] == name))


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as server:
        yield server


@pytest.fixture
def tenant(tenant_factory: Any) -> Tenant:
    return tenant_factory(manual_clock=True, extra_env={"ROTATION_OVERLAP_HOURS": str(OVERLAP_HOURS)})


def test_rotation_keeps_both_secrets_working_through_the_overlap_then_only_the_new_one(
    tenant: Tenant, receiver: CallbackReceiver
):
    view = onboard(tenant, 180, "Rotated", callbackUrl=receiver.url)
    name = view["secret"]["name"]
    [old] = vault_documents(tenant, name)
    assert client_logs_in(tenant, old)

    response = tenant.http.post(f"{v1(view)}/rotate")
    assert response.status_code == 202, response.text
    assert response.json()["existing"] is False and response.headers["Location"].endswith(v1(view))
    waiting = rotation_of(tenant, view, lambda r: step_of(r, "overlap_window")["state"] == "waiting")

    # During the overlap: the vault's current version is the new secret, and both secrets work.
    documents = vault_documents(tenant, name)
    assert len(documents) == 2 and documents[0] == old
    new = documents[-1]
    assert new["clientSecret"] != old["clientSecret"] and new["clientId"] == old["clientId"]
    assert client_logs_in(tenant, old) and client_logs_in(tenant, new)
    assert step_of(waiting, "verify_new_credential")["state"] == "done"
    assert waiting["secretVersion"] == tenant.sandbox.state.get_secret(name).current.version

    # A second POST while it runs answers the same rotation and changes nothing.
    again = tenant.http.post(f"{v1(view)}/rotate")
    assert again.status_code == 202 and again.json()["existing"] is True
    tenant.host.idle(10)
    [app] = tenant.live_apps()
    assert len(app.passwords) == 2 and len(vault_documents(tenant, name)) == 2

    # After the window: the old secret is removed from the app; only the new one logs in.
    assert tenant.clock is not None
    tenant.clock.advance(timedelta(hours=OVERLAP_HOURS, minutes=1))
    final = rotation_of(tenant, view, lambda r: r["status"] != "running")
    assert final["status"] == "succeeded", final
    assert [s["state"] for s in final["steps"]] == ["done"] * 5
    assert not client_logs_in(tenant, old)
    assert client_logs_in(tenant, new)
    [app] = tenant.live_apps()
    assert [p.secret_text for p in app.passwords] == [new["clientSecret"]]
    current = tenant.sandbox.state.get_secret(name).current
    assert json.loads(current.value) == new and current.tags["keyId"] == app.passwords[0].key_id
    mail = tenant.mails_to_admin()[-1]
    assert mail.subject == "Client secret rotated: Rotated" and current.version in mail.html
    # The onboarding's record says it was rotated (what outlives the history's purge).
    [record] = [r for r in tenant.live_records() if view["id"] in r.name]
    assert "rotated" in [o["kind"] for o in json.loads(record.current.value)["operations"]]
    # The webhook stream goes on from the onboarding's events, without a secret (the leak scan reads them).
    bodies = stream_until(tenant, receiver, "credential.rotated")
    assert [b["sequence"] for b in bodies] == list(range(1, len(bodies) + 1))
    assert [b["type"] for b in bodies][-2:] == ["credential.rotation_started", "credential.rotated"]
    assert bodies[-1]["data"]["secret"]["version"] == current.version


def test_a_new_secret_that_does_not_verify_is_discarded_and_the_old_one_kept(tenant_factory: Any):
    # No verification window, so the refused new secret fails at once; the realistic profile's FullAccess
    # propagation needs the default window for the onboarding itself (the clock jumps through it).
    window = {} if profile_from_env() == REALISTIC else {"VERIFY_WINDOW_MINUTES": "0"}
    tenant = tenant_factory(manual_clock=True, extra_env=window)
    view = onboard(tenant, 180, "Refused")
    name = view["secret"]["name"]
    [old] = vault_documents(tenant, name)
    [app] = tenant.live_apps()
    old_key = app.passwords[0].key_id
    # The mailbox's IMAP is switched off behind the app's back: no new secret can verify on it.
    tenant.sandbox.state.set_protocols(MAILBOXES[0], imap=False)

    response = tenant.http.post(f"{v1(view)}/rotate")
    assert response.status_code == 202, response.text
    final = rotation_of(tenant, view, lambda r: r["status"] != "running")

    assert final["status"] == "failed" and "IMAP is disabled" in final["error"], final
    assert step_of(final, "verify_new_credential")["state"] == "failed"
    assert step_of(final, "remove_old_credential")["state"] == "pending"
    [app] = tenant.live_apps()
    assert [p.key_id for p in app.passwords] == [old_key]  # the new credential is gone, the old kept
    current = tenant.sandbox.state.get_secret(name).current
    assert json.loads(current.value) == old and current.tags["keyId"] == old_key
    tenant.sandbox.state.set_protocols(MAILBOXES[0], imap=True)
    assert client_logs_in(tenant, old)
    assert tenant.mails_to_admin()[-1].subject == "Client secret rotation failed: Refused"


def test_rotate_answers_404_for_an_unknown_onboarding_and_409_for_an_offboarded_one(tenant: Tenant):
    assert tenant.http.post("/api/v1/onboardings/nope-unknown/rotate").status_code == 404
    view = onboard(tenant, 180, "Gone")
    assert tenant.http.delete(v1(view)).status_code == 202
    response = tenant.http.post(f"{v1(view)}/rotate")
    assert response.status_code == 409 and "offboarded" in response.json()["detail"]


def test_a_later_rotation_replaces_the_rotated_secret_in_the_same_way(tenant: Tenant):
    view = onboard(tenant, 180, "Twice")
    name = view["secret"]["name"]
    assert tenant.clock is not None
    for rotation in (1, 2):
        response = tenant.http.post(f"{v1(view)}/rotate")
        assert response.status_code == 202 and response.json()["existing"] is False, response.text
        rotation_of(tenant, view, lambda r: step_of(r, "overlap_window")["state"] == "waiting")
        tenant.clock.advance(timedelta(hours=OVERLAP_HOURS, minutes=1))
        final = rotation_of(tenant, view, lambda r: r["status"] != "running")
        assert final["status"] == "succeeded", final
        documents = vault_documents(tenant, name)
        assert len(documents) == rotation + 1
        [app] = tenant.live_apps()
        assert [p.secret_text for p in app.passwords] == [documents[-1]["clientSecret"]]
    assert client_logs_in(tenant, documents[-1]) and not client_logs_in(tenant, documents[-2])


def added_in_the_overlap(
    tenant_factory: Any, receiver: CallbackReceiver, name: str
) -> tuple[Tenant, dict[str, Any], Callable[[], dict[str, Any]]]:
    """An onboarding subscribed to ``receiver`` whose rotation waits out its overlap window, and a
    mailbox added (and verified) meanwhile; with a reader of the onboarding's current view."""
    extra = "extra@sandbox.example"
    tenant = tenant_factory(
        manual_clock=True,
        mailboxes=(*MAILBOXES, extra),
        extra_env={"ROTATION_OVERLAP_HOURS": str(OVERLAP_HOURS)},
    )
    view = onboard(tenant, 180, name, callbackUrl=receiver.url, mailboxes=list(MAILBOXES))
    assert tenant.http.post(f"{v1(view)}/rotate").status_code == 202
    rotation_of(tenant, view, lambda r: step_of(r, "overlap_window")["state"] == "waiting")
    assert tenant.http.post(f"{v1(view)}/mailboxes", json={"add": [extra]}).status_code == 202

    def current() -> dict[str, Any]:
        return dict(tenant.http.get(v1(view), params={"view": "current"}).json())

    added = tenant.drive(current, lambda v: (v.get("mailboxOperation") or {}).get("status") == "succeeded")
    assert added is not None, current()
    return tenant, view, current


def events_after_the_outcome(bodies: list[dict[str, Any]]) -> list[str]:
    """The stream's types after ``onboarding.completed``, once its numbers are 1..n without a gap."""
    assert [b["sequence"] for b in bodies] == list(range(1, len(bodies) + 1))
    assert len({b["id"] for b in bodies}) == len(bodies)
    types = [b["type"] for b in bodies]
    return types[types.index("onboarding.completed") + 1 :]


def test_an_offboarding_in_the_overlap_stops_the_rotation_and_the_stream_stays_one_numbered_sequence(
    tenant_factory: Any, receiver: CallbackReceiver
):
    tenant, view, current = added_in_the_overlap(tenant_factory, receiver, "Stopped")
    assert tenant.http.delete(v1(view)).status_code == 202
    gone = tenant.drive(
        current, lambda v: (v.get("offboarding") or {}).get("status") not in (None, "running")
    )

    assert gone is not None and gone["offboarding"]["status"] == "succeeded", current()
    stop = next(s for s in gone["offboarding"]["steps"] if s["name"] == "stop_onboarding")
    assert stop["detail"] == "Waited for the rotation to end.", stop
    rotation = conforms(gone["rotation"])
    assert rotation["status"] == "failed" and "stopped in its overlap window" in rotation["error"], rotation
    assert tenant.live_apps() == [] and tenant.permissions() == set()  # the added mailbox's access too
    assert events_after_the_outcome(stream_until(tenant, receiver, "offboarding.completed")) == [
        "credential.rotation_started",
        "mailboxes.add_started",
        "mailboxes.added",
        "offboarding.started",
        "offboarding.completed",
    ]


def test_a_rotation_ending_after_a_mailbox_operation_in_its_overlap_still_reports_its_end(
    tenant_factory: Any, receiver: CallbackReceiver
):
    # Before each writer numbered its own channel, the rotation numbered its last event on from its
    # first one, a number the mailbox operation had taken meanwhile: "credential.rotated" was dropped.
    tenant, view, _ = added_in_the_overlap(tenant_factory, receiver, "Both")
    assert tenant.clock is not None
    tenant.clock.advance(timedelta(hours=OVERLAP_HOURS + 1))
    final = rotation_of(tenant, view, lambda r: r["status"] != "running")
    assert final["status"] == "succeeded", final
    assert events_after_the_outcome(stream_until(tenant, receiver, "credential.rotated")) == [
        "credential.rotation_started",
        "mailboxes.add_started",
        "mailboxes.added",
        "credential.rotated",
    ]


def test_the_expiry_watch_rotates_a_secret_its_lead_time_before_expiry_and_only_once(
    tenant_factory: Any, monkeypatch: pytest.MonkeyPatch
):
    tenant = tenant_factory(
        manual_clock=True, extra_env={"ROTATE_DAYS_BEFORE_EXPIRY": "14", "ROTATION_OVERLAP_HOURS": "1"}
    )
    clock = tenant.clock
    assert clock is not None
    monkeypatch.setattr(expiry, "utcnow", clock.now)  # the watch reads the host's clock
    view = onboard(tenant, 30, "Auto")
    name = view["secret"]["name"]
    tenant.host.run_timer(WATCH)
    tenant.host.idle(10)
    assert tenant.http.get(v1(view)).json()["rotation"] is None  # 30 days left: not yet

    clock.advance(timedelta(days=17))  # 13 days left, within the 14-day lead time
    tenant.host.run_timer(WATCH)
    rotation_of(tenant, view, lambda r: step_of(r, "overlap_window")["state"] == "waiting")
    clock.advance(timedelta(hours=2))
    final = rotation_of(tenant, view, lambda r: r["status"] != "running")
    assert final["status"] == "succeeded", final

    old, new = vault_documents(tenant, name)
    assert client_logs_in(tenant, new) and not client_logs_in(tenant, old)
    expires = tenant.sandbox.state.get_secret(name).current.expires
    assert expires is not None and expires - clock.now() > timedelta(days=29)
    tenant.host.run_timer(WATCH)  # the new secret is 30 days from expiry: nothing more to rotate
    tenant.host.idle(10)
    assert len(vault_documents(tenant, name)) == 2
