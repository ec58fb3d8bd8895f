"""Nothing lost: a failure no retry can fix ends with a recorded outcome (``failed``, the step, a cause
an admin understands and a fix), what was made undone or listed for an admin, and the requester's
callback told - signed so that the receiver can trust it, and only with the right key."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from onboarding import records
from onboarding.links import callback_key, verify_callback
from sandbox import Sandbox
from tests.e2e.conftest import Tenant
from tests.trust.receiver import CallbackReceiver

FAST = {"ACTIVITY_RETRY_SECONDS": "1", "POLL_INITIAL_SECONDS": "1", "POLL_MAX_SECONDS": "2"}


def no_exchange_role(sb: Sandbox) -> None:
    sb.set_identity_roles(exchange=[])  # the identity lacks Exchange.ManageAsApp


def no_vault_role(sb: Sandbox) -> None:
    sb.set_identity_roles(vault_role="")  # the identity's Key Vault role was removed


CASES = {
    "exchange_role_missing": (no_exchange_role, "exchange_registration", ("Exchange.ManageAsApp",)),
    "vault_role_missing": (no_vault_role, "client_secret", ("Key Vault",)),
}


def completion_deliveries(receiver: CallbackReceiver, timeout: float = 30) -> list[Any]:
    """The deliveries of the outcome event (progress events come before it)."""

    def completed() -> list[Any]:
        return [d for d in receiver.received() if json.loads(d.body)["type"] == "onboarding.completed"]

    give_up = time.monotonic() + timeout
    while not completed() and time.monotonic() < give_up:
        time.sleep(0.05)
    return completed()


def fail(
    case: str, tenant_factory: Callable[..., Tenant], receiver: CallbackReceiver
) -> tuple[Tenant, dict[str, Any]]:
    configure, step, _ = CASES[case]
    tenant = tenant_factory(configure=configure, extra_env=FAST)
    location = tenant.submit(callbackUrl=receiver.url, externalReference="TICKET-9")
    if step == "exchange_registration":  # fails after consent
        tenant.wait_for_decision(location)
        tenant.consent()
    return tenant, tenant.finished(location)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_failure_no_retry_fixes_is_recorded_undone_or_listed_and_called_back(
    case: str, tenant_factory: Callable[..., Tenant], receiver: CallbackReceiver
) -> None:
    _, step, words = CASES[case]
    tenant, view = fail(case, tenant_factory, receiver)

    # The outcome, recorded: failed, at the step, with a cause and a fix an admin can act on.
    assert view["status"] == "failed", view
    [error] = view["errors"]
    assert error["step"] == step
    assert any(w in error["message"] + error["fix"] for w in words), error
    assert error["fix"], error
    assert {s["name"]: s["state"] for s in view["steps"]}[step] == "failed"

    # Each object made is undone, or listed for an admin to remove.
    state = tenant.sandbox.state
    compensation = " ".join(view["compensation"])
    [app] = [a for a in state.applications() if "mail-onboarding" in a.tags]
    assert app.deleted_at is not None or app.app_id in compensation, view["compensation"]
    for secret in state.secrets():
        # A record (onboarding/records.py) is kept exactly when its credential is: listed above.
        name = secret.name.replace(records.RECORD_PREFIX, "mail-app-", 1)
        assert secret.deleted_at is not None or name in compensation, view["compensation"]
    for registration in state.exchange_service_principals():
        assert registration.app_id in compensation, view["compensation"]

    # The requester is told, with a signature that holds with the callback key and no other.
    [delivery] = completion_deliveries(receiver)
    body = json.loads(delivery.body)
    assert body["type"] == "onboarding.completed"
    assert body["data"]["onboarding_id"] == view["id"]
    assert body["data"]["outcome"] == "failed"
    assert body["data"]["error"]["step"] == step
    assert body["data"]["compensation"] == view["compensation"]
    signature = delivery.headers["X-Onboarding-Signature"]
    key = callback_key(tenant.sandbox.env["LINK_SIGNING_KEY"].encode())
    now = int(time.time())
    assert verify_callback(key, delivery.body, signature, now=now)
    assert not verify_callback(
        callback_key(b"some other deployment's key"), delivery.body, signature, now=now
    )
    assert not verify_callback(key, delivery.body.replace(b"failed", b"succeeded"), signature, now=now)
    for secret_text in state.issued_secrets():
        assert secret_text not in delivery.body.decode()


@pytest.mark.parametrize("case", sorted(CASES))
def test_compensation_undoes_what_it_still_can_past_a_part_it_cannot(
    case: str, tenant_factory: Callable[..., Tenant], receiver: CallbackReceiver
) -> None:
    """The missing permission that failed the onboarding also stops one part of the undo (removing
    the Exchange registration, or deleting the vault secret). Graph still works, so the app must
    still be deleted, and the vault secret too where the vault still works; only what truly could
    not be undone is left to an admin, and the list says exactly that."""
    tenant, view = fail(case, tenant_factory, receiver)
    state = tenant.sandbox.state
    [app] = [a for a in state.applications() if "mail-onboarding" in a.tags]
    assert app.deleted_at is not None, f"the app could have been deleted: {view['compensation']}"
    if case != "vault_role_missing":
        assert all(s.deleted_at is not None for s in state.secrets()), view["compensation"]
    assert not any("App registration" in line and "could not" in line for line in view["compensation"])
