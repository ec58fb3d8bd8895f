"""At least once, for the offboarding: each of its activities, run twice in a row in the
orchestrator's order, must leave the tenant exactly as running it once does."""

from __future__ import annotations

from typing import Any

import activities.offboarding as offboarding_activities
from onboarding import activity_names as A
from onboarding.domain import ConsentMode, OnboardingRequest, Protocol, vault_secret_name
from onboarding.offboarding import OffboardingResult, OffboardingStatus
from sandbox import Sandbox
from tests.trust.test_activities_twice import MAILBOXES, ONBOARDING_ID, Twice, sandbox_config

__all__ = ["sandbox_config"]  # the same tenant (its mailboxes) as the onboarding's twice test

ROLES = ["IMAP.AccessAsApp", "POP.AccessAsApp"]


async def onboard_once(functions: dict[str, Any], sandbox: Sandbox) -> dict[str, Any]:
    """An onboarded app, made by the onboarding's own activities (once each)."""

    async def run(name: str, payload: dict[str, Any]) -> Any:
        reply = await functions[name](payload)
        assert "ok" in reply, (name, reply)
        return reply["ok"]

    resource = await run(A.RESOLVE_EXCHANGE, {"roles": ROLES})
    app = await run(
        A.REGISTER_APP,
        {
            "onboarding_id": ONBOARDING_ID,
            "display_name": "To be offboarded",
            "roles": ROLES,
            "resource": resource,
            "external_reference": None,
        },
    )
    app = {**app, **await run(A.ENSURE_SERVICE_PRINCIPAL, {"app_id": app["app_id"]})}
    payload = {"onboarding_id": ONBOARDING_ID, "tenant_id": sandbox.tenant_id, "app": app}
    await run(A.CREATE_SECRET, {**payload, "lifetime_days": 30, "protocols": ["IMAP"]})
    grant = {"service_principal_id": app["service_principal_id"], "resource": resource, "roles": ROLES}
    await run(A.GRANT_APP_ROLES, grant)
    await run(
        A.REGISTER_IN_EXCHANGE,
        {
            "app_id": app["app_id"],
            "service_principal_id": app["service_principal_id"],
            "app_object_id": app["object_id"],
            "display_name": "To be offboarded",
        },
    )
    sp = {"service_principal_id": app["service_principal_id"]}
    await run(A.GRANT_MAILBOXES, {**sp, "mailboxes": list(MAILBOXES), "protocols": ["IMAP"]})
    _, reader, _ = sandbox.create_client_app("Mail product")
    await run(A.GRANT_SECRET_READER, {"onboarding_id": ONBOARDING_ID, "principal_id": reader})
    return {**app, "reader": reader}


async def test_every_offboarding_activity_twice_leaves_the_tenant_as_once(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    twice = Twice(sandbox)
    app = await onboard_once(twice.functions, sandbox)
    state = sandbox.state
    assert len(state.mailbox_permissions()) == 3 and len(state.exchange_service_principals()) == 1
    mine = {
        name: function
        for builder in offboarding_activities.blueprint._function_builders
        for name, function in [(builder._function.get_function_name(), builder._function.get_user_function())]
    }
    mine.pop(A.OFFBOARD_READ_ONBOARDING)  # needs a Durable client: tests/e2e/test_offboarding.py runs it
    twice.functions = mine
    twice.ran = []

    found = await twice.raw(A.OFFBOARD_FIND_APP, {"onboarding_id": ONBOARDING_ID, "known_app": None})
    assert found == {k: app[k] for k in ("object_id", "app_id", "service_principal_id")}
    sp = found["service_principal_id"]
    removal = {"onboarding_id": ONBOARDING_ID, "service_principal_id": sp, "mailboxes": list(MAILBOXES)}
    assert await twice.raw(A.OFFBOARD_REMOVE_MAILBOX_ACCESS, removal) == {"removed": 3, "failed": []}
    await twice.raw(A.OFFBOARD_REMOVE_EXCHANGE_SP, {"onboarding_id": ONBOARDING_ID, "app_id": app["app_id"]})
    deleted = await twice.raw(
        A.OFFBOARD_DELETE_APP,
        {
            "onboarding_id": ONBOARDING_ID,
            "object_id": app["object_id"],
            "service_principal_id": sp,
            "purge": False,
        },
    )
    assert deleted == {"deleted": True, "purged": False}
    reader = {"onboarding_id": ONBOARDING_ID, "principal_id": app["reader"]}
    assert len(state.rbac_assignments()) == 1
    assert await twice.raw(A.OFFBOARD_REMOVE_SECRET_READER, reader) == {"removed": True}
    assert state.rbac_assignments() == []
    assert await twice.raw(A.OFFBOARD_DELETE_SECRET, {"onboarding_id": ONBOARDING_ID}) == {
        "name": vault_secret_name(ONBOARDING_ID)
    }
    request = OnboardingRequest(
        tenant_id=sandbox.tenant_id,
        display_name="To be offboarded",
        protocols=(Protocol.IMAP,),
        mailboxes=MAILBOXES,
        admin_emails=("it-admin@sandbox.example",),
        consent_mode=ConsentMode.GRANT,
    )
    result = OffboardingResult(
        ONBOARDING_ID, OffboardingStatus.SUCCEEDED, app_id=app["app_id"], mailboxes_removed=3
    )
    notify = {
        "onboarding_id": ONBOARDING_ID,
        "request": request.to_json(),
        "result": result.to_json(),
        "mailbox_count": 3,
    }
    await twice.raw(A.OFFBOARD_NOTIFY, notify)

    assert set(twice.ran) == set(mine)  # every offboarding activity ran twice
    assert state.mailbox_permissions() == [] and state.exchange_service_principals() == []
    assert [a.deleted_at is not None for a in state.applications() if "mail-onboarding" in a.tags] == [True]
    assert [s.deleted_at is not None for s in state.secrets()] == [True]
