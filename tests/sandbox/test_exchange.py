"""Exchange Online admin API stand-in (REST InvokeCommand), driven with httpx as the adapter does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sandbox import Sandbox

MAILBOX = "support@sandbox.example"


@pytest.fixture
def client_app(sandbox: Sandbox) -> tuple[str, str, str]:
    """An app registration with its service principal: (appId, service principal id, app object id)."""
    app_id, sp_id, _ = sandbox.create_client_app("Mail reader", roles=["IMAP.AccessAsApp"])
    app = next(a for a in sandbox.state.applications() if a.app_id == app_id)
    return app_id, sp_id, app.id


class Exo:
    def __init__(self, sandbox: Sandbox, https: httpx.AsyncClient, token: str) -> None:
        self.url = f"{sandbox.env['EXCHANGE_ENDPOINT']}/adminapi/beta/{sandbox.tenant_id}/InvokeCommand"
        self.https = https
        self.headers = {
            "X-AnchorMailbox": f"APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{sandbox.tenant_id}"
        }
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    async def raw(self, cmdlet: str, **parameters: Any) -> httpx.Response:
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters}}
        return await self.https.post(self.url, json=body, headers=self.headers)

    async def ok(self, cmdlet: str, **parameters: Any) -> dict[str, Any]:
        response = await self.raw(cmdlet, **parameters)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def error(self, cmdlet: str, **parameters: Any) -> str:
        response = await self.raw(cmdlet, **parameters)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        message: str = error["details"][0]["message"]
        if message.startswith("{"):  # the JSON form: {"Message": text, "TypeName": type, ...}
            detail = json.loads(message)
            assert set(detail) >= {"Message", "TypeName"} and error["message"] == "Error executing cmdlet"
            return f"{detail['TypeName']}|{detail['Message']}"
        assert error["innererror"]["internalexception"]["message"] in message
        return message


@pytest.fixture
def exo(sandbox: Sandbox, https: httpx.AsyncClient, mi_token: Callable[[str], str]) -> Exo:
    return Exo(sandbox, https, mi_token("exchange"))


async def test_new_service_principal_needs_the_enterprise_app_object_id(
    exo: Exo, sandbox: Sandbox, client_app: tuple[str, str, str]
) -> None:
    app_id, sp_id, app_object_id = client_app
    wrong = await exo.error(
        "New-ServicePrincipal", AppId=app_id, ObjectId=app_object_id, DisplayName="Mail reader"
    )
    assert f"AADServicePrincipalNotFound. No ServicePrincipal with Object Id '{app_object_id}'" in wrong
    created = await exo.ok("New-ServicePrincipal", AppId=app_id, ObjectId=sp_id, DisplayName="Mail reader")
    assert [(v["AppId"], v["Identity"]) for v in created["value"]] == [(app_id, sp_id)]
    assert "already exists" in await exo.error("New-ServicePrincipal", AppId=app_id, ObjectId=sp_id)
    listed = await exo.ok("Get-ServicePrincipal", Identity=app_id)
    assert listed["value"][0]["DisplayName"] == "Mail reader"
    assert [e.object_id for e in sandbox.state.exchange_service_principals()] == [sp_id]
    await exo.ok("Remove-ServicePrincipal", Identity=sp_id)
    assert "couldn't be found" in await exo.error("Get-ServicePrincipal", Identity=sp_id)


async def test_new_service_principal_waits_for_exchanges_own_copy_of_the_directory(
    exo: Exo, sandbox: Sandbox
) -> None:
    state = sandbox.state
    app = state.create_application({"displayName": "Fresh app"}, owner=None)
    sp = state.create_service_principal(app, owner=None)
    sandbox.faults.set_replication(exchange_service_principal_s=600)
    assert state.get_service_principal(sp.id) is not None  # Graph already has it
    early = await exo.error("New-ServicePrincipal", AppId=app.app_id, ObjectId=sp.id)
    assert f"AADServicePrincipalNotFound. No ServicePrincipal with Object Id '{sp.id}'" in early
    assert state.exchange_service_principals() == []
    sandbox.faults.set_replication(exchange_service_principal_s=0)  # Exchange caught up
    created = await exo.ok("New-ServicePrincipal", AppId=app.app_id, ObjectId=sp.id)
    assert created["value"][0]["Identity"] == sp.id


async def test_mailbox_permission_add_is_idempotent_get_and_remove(
    exo: Exo, sandbox: Sandbox, client_app: tuple[str, str, str]
) -> None:
    app_id, sp_id, _ = client_app
    await exo.ok("New-ServicePrincipal", AppId=app_id, ObjectId=sp_id, DisplayName="Mail reader")
    added = await exo.ok(
        "Add-MailboxPermission", Identity=MAILBOX, User=sp_id, AccessRights=["FullAccess"], AutoMapping=False
    )
    assert added["value"][0]["AccessRights"] == ["FullAccess"]
    again = await exo.ok(
        "Add-MailboxPermission", Identity=MAILBOX, User=sp_id, AccessRights="FullAccess", AutoMapping=False
    )
    assert again["value"] == [] and "existing permission" in again["@adminapi.warnings"][0]
    [perm] = sandbox.state.mailbox_permissions()
    assert (perm.mailbox, perm.user, perm.access_rights, perm.auto_mapping) == (
        MAILBOX,
        sp_id,
        ("FullAccess",),
        False,
    )
    got = await exo.ok("Get-MailboxPermission", Identity=MAILBOX, User=sp_id)
    assert [(v["User"], v["AccessRights"]) for v in got["value"]] == [("Mail reader", ["FullAccess"])]
    everyone = await exo.ok("Get-MailboxPermission", Identity=MAILBOX)
    assert len(everyone["value"]) == 2  # NT AUTHORITY\SELF and the app
    await exo.ok(
        "Remove-MailboxPermission", Identity=MAILBOX, User=sp_id, AccessRights="FullAccess", Confirm=False
    )
    assert sandbox.state.mailbox_permissions() == []
    missing = await exo.error(
        "Add-MailboxPermission", Identity="nobody@sandbox.example", User=sp_id, AccessRights="FullAccess"
    )
    assert "couldn't be found" in missing
    unknown_user = await exo.error(
        "Add-MailboxPermission", Identity=MAILBOX, User="not-registered", AccessRights="FullAccess"
    )
    assert "couldn't be found" in unknown_user
    assert "mandatory parameters: User" in await exo.error("Add-MailboxPermission", Identity=MAILBOX)


async def test_cas_mailbox_and_mailbox(exo: Exo, sandbox: Sandbox) -> None:
    sandbox.add_mailbox("legacy@sandbox.example", imap_enabled=False, pop_enabled=True)
    cas = (await exo.ok("Get-CASMailbox", Identity="legacy@sandbox.example"))["value"][0]
    assert (cas["PrimarySmtpAddress"], cas["ImapEnabled"], cas["PopEnabled"]) == (
        "legacy@sandbox.example",
        False,
        True,
    )
    box = (await exo.ok("Get-Mailbox", Identity=MAILBOX))["value"][0]
    assert box["PrimarySmtpAddress"] == MAILBOX
    assert "couldn't be found" in await exo.error("Get-CASMailbox", Identity="nobody@sandbox.example")
    assert "is not recognized" in await exo.error("Get-Nothing")


async def test_the_admin_api_needs_an_exchange_token_with_manage_as_app_and_an_admin_role(
    sandbox: Sandbox, https: httpx.AsyncClient, mi_token: Callable[[str], str]
) -> None:
    assert (await Exo(sandbox, https, "").raw("Get-Mailbox")).status_code == 401
    assert (await Exo(sandbox, https, mi_token("graph")).raw("Get-Mailbox")).status_code == 401
    sandbox.set_identity_roles(exchange=[])
    no_role = await Exo(sandbox, https, mi_token("exchange")).raw("Get-Mailbox")
    assert no_role.status_code == 403
    sandbox.set_identity_roles(exchange=["Exchange.ManageAsApp"], directory_roles=[])
    no_admin = await Exo(sandbox, https, mi_token("exchange")).raw(
        "New-ServicePrincipal", AppId="x", ObjectId="y"
    )
    assert no_admin.status_code == 400 and "is not recognized" in no_admin.text


async def test_throttling_per_caller_answers_429_with_retry_after(exo: Exo, sandbox: Sandbox) -> None:
    sandbox.faults.throttle_exchange(requests_per_second=2, retry_after=3)
    statuses = [(await exo.raw("Get-Mailbox")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    throttled = await exo.raw("Get-Mailbox")
    assert throttled.headers["Retry-After"] == "3" and throttled.json()["error"]["code"] == "TooManyRequests"
    assert [e.retry_after for e in sandbox.state.request_log() if e.status == 429] == ["3", "3"]


async def test_concurrency_limit_per_caller(exo: Exo, sandbox: Sandbox) -> None:
    sandbox.faults.throttle_exchange(max_concurrency=2, retry_after=1)
    sandbox.faults.exchange.configure(latency_ms=300)
    responses = await asyncio.gather(*(exo.raw("Get-Mailbox") for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 200, 429, 429]


async def test_get_service_principal_names_the_object_id_identity_and_service_id_never_object_id(
    exo: Exo, client_app: tuple[str, str, str]
) -> None:
    app_id, sp_id, _ = client_app
    await exo.ok("New-ServicePrincipal", AppId=app_id, ObjectId=sp_id, DisplayName="Mail reader")
    for identity in (app_id, sp_id):
        [registration] = (await exo.ok("Get-ServicePrincipal", Identity=identity))["value"]
        assert (registration["Identity"], registration["ServiceId"], registration["AppId"]) == (
            sp_id,
            sp_id,
            app_id,
        )
        assert "ObjectId" not in registration


async def test_not_found_and_already_exists_details_come_as_a_json_string(
    exo: Exo, client_app: tuple[str, str, str]
) -> None:
    app_id, sp_id, _ = client_app
    missing = await exo.raw("Get-ServicePrincipal", Identity=sp_id)
    error = missing.json()["error"]
    detail = json.loads(error["details"][0]["message"])
    assert detail["TypeName"] == "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException"
    assert "couldn't be found" in detail["Message"] and "internalException" not in error["innererror"]
    await exo.ok("New-ServicePrincipal", AppId=app_id, ObjectId=sp_id, DisplayName="Mail reader")
    again = await exo.raw("New-ServicePrincipal", AppId=app_id, ObjectId=sp_id)
    detail = json.loads(again.json()["error"]["details"][0]["message"])
    assert detail["TypeName"] == "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException"
    # Other refusals keep the ExNNNN|Type|text form.
    wrong = await exo.raw("Add-MailboxPermission", Identity=MAILBOX, User=sp_id, AccessRights="SendAs")
    assert wrong.json()["error"]["details"][0]["message"].startswith("Ex")


def batch_body(exo: Exo, *cmdlets: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests": [
            {
                "id": str(n),
                "method": "POST",
                "url": exo.url,
                "headers": dict(exo.headers, **{"Content-Type": "application/json"}),
                "body": {"CmdletInput": {"CmdletName": name, "Parameters": parameters}},
            }
            for n, (name, parameters) in enumerate(cmdlets, 1)
        ]
    }


async def post_batch(
    exo: Exo, body: dict[str, Any], prefer: str | None = "odata.continue-on-error"
) -> httpx.Response:
    headers = dict(exo.headers, **({"Prefer": prefer} if prefer else {}))
    return await exo.https.post(exo.url.replace("/InvokeCommand", "/$batch"), json=body, headers=headers)


async def test_a_batch_answers_each_cmdlet_as_it_would_alone(exo: Exo, sandbox: Sandbox) -> None:
    """EX-11: responses[] of {id, status, headers, body}; one cmdlet's refusal does not stop the others."""
    body = batch_body(
        exo, ("Get-Mailbox", {"Identity": MAILBOX}), ("Get-Mailbox", {"Identity": "no@x.example"})
    )
    response = await post_batch(exo, body)
    assert response.status_code == 200
    answers = {a["id"]: a for a in response.json()["responses"]}
    assert answers["1"]["status"] == 200 and answers["1"]["body"]["value"][0]["PrimarySmtpAddress"] == MAILBOX
    assert "@adminapi.warnings" in answers["1"]["body"]
    assert answers["2"]["status"] == 400
    assert "couldn't be found" in answers["2"]["body"]["error"]["details"][0]["message"]


async def test_every_cmdlet_of_a_batch_counts_and_a_batch_that_does_not_fit_is_refused_whole(
    exo: Exo, sandbox: Sandbox
) -> None:
    """EX-13, conservative: 3 cmdlets against a budget of 2 a second is a 429 with Retry-After, and
    nothing of the batch ran; 2 fit."""
    sandbox.faults.throttle_exchange(requests_per_second=2, retry_after=3)
    refused = await post_batch(
        exo, batch_body(exo, *[("Set-CASMailbox", {"Identity": MAILBOX, "ImapEnabled": False})] * 3)
    )
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "3"
    assert sandbox.state.find_mailbox(MAILBOX).imap_enabled  # nothing ran
    fits = await post_batch(exo, batch_body(exo, *[("Get-Mailbox", {"Identity": MAILBOX})] * 2))
    assert fits.status_code == 200
    assert (await exo.raw("Get-Mailbox")).status_code == 429  # the batch used the whole second


@pytest.mark.parametrize(
    ("what", "prefer", "count", "named"),
    [
        ("stop on the first error", None, 1, "continue-on-error"),
        ("more than ten", "odata.continue-on-error", 11, "1 to 10"),
    ],
)
async def test_batch_forms_without_a_source_answer_501(
    exo: Exo, sandbox: Sandbox, what: str, prefer: str | None, count: int, named: str
) -> None:
    body = batch_body(exo, *[("Get-Mailbox", {"Identity": MAILBOX})] * count)
    response = await post_batch(exo, body, prefer)
    assert response.status_code == 501, what
    assert response.json()["error"]["code"] == "NotModelledBySandbox" and named in response.text
    [recorded] = sandbox.acknowledge_unmodelled()
    assert recorded.service == "exchange"
