"""Microsoft Graph stand-in driven by the real msgraph-sdk (and raw HTTP for what the SDK hides)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.identity.aio import ManagedIdentityCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
    RemovePasswordPostRequestBody,
)
from msgraph.generated.models.app_role_assignment import AppRoleAssignment
from msgraph.generated.models.application import Application
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.models.required_resource_access import RequiredResourceAccess
from msgraph.generated.models.resource_access import ResourceAccess
from msgraph.generated.models.service_principal import ServicePrincipal
from msgraph.generated.models.web_application import WebApplication
from msgraph.generated.service_principals.service_principals_request_builder import (
    ServicePrincipalsRequestBuilder,
)
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody

from sandbox import Sandbox, SandboxConfig
from sandbox.catalog import EXCHANGE_APP_ID
from tests.sandbox.clients import graph_client

IMAP_ROLE = "5e5addcd-3e8d-4e90-baf5-964efab2b20a"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox_config(tmp_path: Path, clock: Clock) -> SandboxConfig:
    return SandboxConfig(base_dir=tmp_path / "sandbox", clock=clock, start_mail=False)


@pytest.fixture
async def graph(sandbox: Sandbox, sandbox_env: dict[str, str]) -> AsyncIterator[Any]:
    """Graph as the function app's managed identity sees it."""
    credential = ManagedIdentityCredential(client_id=sandbox_env["AZURE_CLIENT_ID"])
    yield graph_client(sandbox, credential)
    await credential.close()


def upsert_config() -> RequestConfiguration[Any]:
    config: RequestConfiguration[Any] = RequestConfiguration()
    config.headers.add("Prefer", "create-if-missing")
    return config


def exchange_app(name: str) -> Application:
    return Application(
        display_name=name,
        sign_in_audience="AzureADMyOrg",
        required_resource_access=[
            RequiredResourceAccess(
                resource_app_id=EXCHANGE_APP_ID, resource_access=[ResourceAccess(id=IMAP_ROLE, type="Role")]
            )
        ],
        web=WebApplication(redirect_uris=["http://127.0.0.1:7071/api/consent/callback"]),
        notes="created by a test",
        tags=["mail-onboarding"],
    )


async def odata_error(call: Callable[[], Any]) -> ODataError:
    with pytest.raises(ODataError) as err:
        await call()
    return err.value


async def test_upsert_by_unique_name_creates_once_then_updates(graph: Any, sandbox: Sandbox) -> None:
    created = await graph.applications_with_unique_name("onb-1").patch(
        exchange_app("One"), request_configuration=upsert_config()
    )
    assert (
        created.unique_name == "onb-1"
        and created.required_resource_access[0].resource_app_id == EXCHANGE_APP_ID
    )
    again = await graph.applications_with_unique_name("onb-1").patch(
        Application(display_name="One, renamed"), request_configuration=upsert_config()
    )
    assert again is None  # 204 on update
    apps = [a for a in sandbox.state.applications() if a.id != sandbox.signin_app.id]  # seeded: sign-in
    assert [(a.display_name, a.owners) for a in apps] == [("One, renamed", {sandbox.identity.id})]
    log = [(e.method, e.raw_path, e.status) for e in sandbox.state.request_log() if e.service == "graph"]
    assert log == [
        ("PATCH", "/v1.0/applications(uniqueName='onb-1')", 201),
        ("PATCH", "/v1.0/applications(uniqueName='onb-1')", 204),
    ]
    by_app_id = await graph.applications_with_app_id(created.app_id).get()
    by_id = await graph.applications.by_application_id(created.id).get()
    assert by_app_id.id == by_id.id == created.id and by_id.web.redirect_uris == [
        "http://127.0.0.1:7071/api/consent/callback"
    ]
    missing = await odata_error(
        lambda: graph.applications_with_unique_name("nope").patch(Application(display_name="x"))
    )
    assert missing.response_status_code == 404 and missing.error.code == "Request_ResourceNotFound"


async def test_list_with_filter_and_select(graph: Any) -> None:
    a = await graph.applications_with_unique_name("a").patch(
        exchange_app("A"), request_configuration=upsert_config()
    )
    await graph.applications_with_unique_name("b").patch(
        exchange_app("B"), request_configuration=upsert_config()
    )
    from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder

    query = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
        filter=f"appId eq '{a.app_id}'", select=["id", "appId"]
    )
    found = await graph.applications.get(request_configuration=RequestConfiguration(query_parameters=query))
    assert [(x.id, x.display_name) for x in found.value] == [(a.id, None)]


async def test_add_password_returns_the_secret_once_and_remove_password_deletes_it(
    graph: Any, sandbox: Sandbox
) -> None:
    app = await graph.applications_with_unique_name("p").patch(
        exchange_app("P"), request_configuration=upsert_config()
    )
    end = datetime(2026, 9, 1, tzinfo=UTC)
    body = AddPasswordPostRequestBody(
        password_credential=PasswordCredential(display_name="label", end_date_time=end)
    )
    cred = await graph.applications.by_application_id(app.id).add_password.post(body)
    assert cred.secret_text in sandbox.state.issued_secrets() and cred.end_date_time == end
    listed = (await graph.applications.by_application_id(app.id).get()).password_credentials
    assert [(p.key_id, p.display_name, p.secret_text) for p in listed] == [(cred.key_id, "label", None)]
    await graph.applications.by_application_id(app.id).remove_password.post(
        RemovePasswordPostRequestBody(key_id=cred.key_id)
    )
    assert sandbox.state.password_credentials(app.id) == []


async def test_delete_is_soft_restorable_and_purgeable(graph: Any, sandbox: Sandbox, clock: Clock) -> None:
    app = await graph.applications_with_unique_name("d").patch(
        exchange_app("D"), request_configuration=upsert_config()
    )
    sp = await graph.service_principals.post(ServicePrincipal(app_id=app.app_id))
    await graph.applications.by_application_id(app.id).delete()
    gone = await odata_error(lambda: graph.applications.by_application_id(app.id).get())
    assert gone.response_status_code == 404
    assert sp.id not in {s.id for s in sandbox.state.service_principals()}  # the SP went with it
    deleted = await graph.directory.deleted_items.graph_application.get()
    assert [d.id for d in deleted.value] == [app.id]
    item = await graph.directory.deleted_items.by_directory_object_id(app.id).get()
    assert item.id == app.id
    await graph.directory.deleted_items.by_directory_object_id(app.id).restore.post()
    assert (await graph.applications.by_application_id(app.id).get()).app_id == app.app_id
    await graph.applications.by_application_id(app.id).delete()
    await graph.directory.deleted_items.by_directory_object_id(app.id).delete()
    assert [a for a in sandbox.state.applications() if a.id != sandbox.signin_app.id] == []


async def test_service_principal_creation_waits_for_replication(
    graph: Any, sandbox: Sandbox, clock: Clock
) -> None:
    sandbox.faults.set_replication(application_s=30, service_principal_s=10)
    app = await graph.applications_with_unique_name("r").patch(
        exchange_app("R"), request_configuration=upsert_config()
    )
    early = await odata_error(lambda: graph.service_principals.post(ServicePrincipal(app_id=app.app_id)))
    # Graph's answer while the new app replicates (msgraph-sdk-powershell#846, Microsoft365DSC#3390).
    assert early.response_status_code == 400 and early.error.code == "Request_BadRequest"
    assert early.error.message == (
        f"The appId '{app.app_id}' of the service principal does not reference a valid application object."
    )
    assert [(d.code, d.target) for d in early.error.details] == [("NoBackingApplicationObject", "appId")]
    clock.advance(31)
    sp = await graph.service_principals.post(ServicePrincipal(app_id=app.app_id))
    invisible = await odata_error(lambda: graph.service_principals_with_app_id(app.app_id).get())
    assert invisible.response_status_code == 404
    clock.advance(11)
    assert (await graph.service_principals_with_app_id(app.app_id).get()).id == sp.id
    query = ServicePrincipalsRequestBuilder.ServicePrincipalsRequestBuilderGetQueryParameters(
        filter=f"appId eq '{app.app_id}'"
    )
    listed = await graph.service_principals.get(
        request_configuration=RequestConfiguration(query_parameters=query)
    )
    assert [s.id for s in listed.value] == [sp.id]
    duplicate = await odata_error(lambda: graph.service_principals.post(ServicePrincipal(app_id=app.app_id)))
    assert duplicate.response_status_code == 409


async def test_app_role_assignment_grant_list_duplicate_and_revoke(
    graph: Any, sandbox: Sandbox, clock: Clock
) -> None:
    app = await graph.applications_with_unique_name("g").patch(
        exchange_app("G"), request_configuration=upsert_config()
    )
    sp = await graph.service_principals.post(ServicePrincipal(app_id=app.app_id))
    exo = await graph.service_principals_with_app_id(EXCHANGE_APP_ID).get()
    imap = next(r.id for r in exo.app_roles if r.value == "IMAP.AccessAsApp")
    assert str(imap) == IMAP_ROLE
    sandbox.faults.set_replication(app_role_assignment_s=20)
    body = AppRoleAssignment(principal_id=sp.id, resource_id=exo.id, app_role_id=imap)
    granted = await graph.service_principals.by_service_principal_id(exo.id).app_role_assigned_to.post(body)
    assert (str(granted.principal_id), str(granted.app_role_id)) == (sp.id, IMAP_ROLE)
    duplicate = await odata_error(
        lambda: graph.service_principals.by_service_principal_id(exo.id).app_role_assigned_to.post(body)
    )
    assert duplicate.response_status_code == 400
    assert duplicate.error.message == "Permission being assigned already exists on the object"
    assert (
        await graph.service_principals.by_service_principal_id(sp.id).app_role_assignments.get()
    ).value == []
    clock.advance(21)
    mine = (await graph.service_principals.by_service_principal_id(sp.id).app_role_assignments.get()).value
    assert [(str(a.resource_id), str(a.app_role_id)) for a in mine] == [(exo.id, IMAP_ROLE)]
    to_exo = (await graph.service_principals.by_service_principal_id(exo.id).app_role_assigned_to.get()).value
    assert granted.id in [a.id for a in to_exo]
    await (
        graph.service_principals.by_service_principal_id(exo.id)
        .app_role_assigned_to.by_app_role_assignment_id(granted.id)
        .delete()
    )
    assert [a for a in sandbox.state.app_role_assignments() if a.principal_id == sp.id] == []


async def test_owned_by_cannot_touch_other_apps_and_grants_need_their_role(
    graph: Any, sandbox: Sandbox
) -> None:
    foreign = sandbox.state.create_application({"displayName": "Someone else's"}, owner=None)
    denied = await odata_error(
        lambda: graph.applications.by_application_id(foreign.id).patch(Application(notes="x"))
    )
    assert (denied.response_status_code, denied.error.code) == (403, "Authorization_RequestDenied")
    assert denied.error.message == "Insufficient privileges to complete the operation."
    assert (
        await odata_error(lambda: graph.applications.by_application_id(foreign.id).delete())
    ).response_status_code == 403
    sandbox.set_identity_roles(graph=["Application.ReadWrite.OwnedBy"])
    exo = await graph.service_principals_with_app_id(EXCHANGE_APP_ID).get()
    body = AppRoleAssignment(principal_id=sandbox.identity.id, resource_id=exo.id, app_role_id=IMAP_ROLE)
    no_grant = await odata_error(
        lambda: graph.service_principals.by_service_principal_id(exo.id).app_role_assigned_to.post(body)
    )
    assert no_grant.response_status_code == 403


async def test_send_mail_lands_in_the_outbox_and_needs_mail_send(graph: Any, sandbox: Sandbox) -> None:
    sender = sandbox.env["MAIL_SENDER"]
    message = Message(
        subject="Consent needed",
        body=ItemBody(content_type=BodyType.Html, content="<p>Please <a href='x'>consent</a></p>"),
        to_recipients=[Recipient(email_address=EmailAddress(address="admin@sandbox.example"))],
    )
    await graph.users.by_user_id(sender).send_mail.post(
        SendMailPostRequestBody(message=message, save_to_sent_items=False)
    )
    [mail] = sandbox.state.outbox()
    assert (mail.sender, mail.to, mail.subject, mail.content_type) == (
        sender,
        ["admin@sandbox.example"],
        "Consent needed",
        "html",
    )
    assert "consent</a>" in mail.html
    unknown = await odata_error(
        lambda: graph.users.by_user_id("nobody@sandbox.example").send_mail.post(
            SendMailPostRequestBody(message=message)
        )
    )
    assert unknown.response_status_code == 404
    sandbox.set_identity_roles(graph=["Application.ReadWrite.OwnedBy"])
    # The SDK's credential caches its token: ask for a fresh one by using a new client.
    credential = ManagedIdentityCredential(client_id=sandbox.env["AZURE_CLIENT_ID"])
    fresh = graph_client(sandbox, credential)
    refused = await odata_error(
        lambda: fresh.users.by_user_id(sender).send_mail.post(SendMailPostRequestBody(message=message))
    )
    await credential.close()
    assert refused.response_status_code == 403 and len(sandbox.state.outbox()) == 1


async def test_requests_without_a_valid_graph_token_are_401(
    sandbox: Sandbox, https: httpx.AsyncClient, mi_token: Callable[[str], str]
) -> None:
    url = f"{sandbox.env['GRAPH_ENDPOINT']}/v1.0/applications"
    anonymous = await https.get(url)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "InvalidAuthenticationToken"
    wrong_audience = await https.get(url, headers={"Authorization": f"Bearer {mi_token('exchange')}"})
    assert wrong_audience.status_code == 401
    forged = await https.get(url, headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."})
    assert forged.status_code == 401
    ok = await https.get(url, headers={"Authorization": f"Bearer {mi_token('graph')}"})
    assert ok.status_code == 200 and [a["id"] for a in ok.json()["value"]] == [sandbox.signin_app.id]


async def test_plain_create_owners_and_service_principal_removal(graph: Any, sandbox: Sandbox) -> None:
    app = await graph.applications.post(exchange_app("Plain"))
    assert app.unique_name is None and app.sign_in_audience == "AzureADMyOrg"
    owners = await graph.applications.by_application_id(app.id).owners.get()
    assert [o.id for o in owners.value] == [sandbox.identity.id]
    sp = await graph.service_principals.post(ServicePrincipal(app_id=app.app_id))
    exo = await graph.service_principals_with_app_id(EXCHANGE_APP_ID).get()
    body = AppRoleAssignment(principal_id=sp.id, resource_id=exo.id, app_role_id=IMAP_ROLE)
    granted = await graph.service_principals.by_service_principal_id(sp.id).app_role_assignments.post(body)
    read = (
        await graph.service_principals.by_service_principal_id(sp.id)
        .app_role_assignments.by_app_role_assignment_id(granted.id)
        .get()
    )
    assert str(read.resource_id) == exo.id
    # Deleting the service principal takes its grants with it; the app stays.
    await graph.service_principals.by_service_principal_id(sp.id).delete()
    assert all(a.principal_id != sp.id for a in sandbox.state.app_role_assignments())
    assert [a.id for a in sandbox.state.applications() if a.id != sandbox.signin_app.id] == [app.id]
    exchange_sp = await odata_error(lambda: graph.service_principals.by_service_principal_id(exo.id).delete())
    assert exchange_sp.response_status_code == 403  # not the caller's to delete


async def test_a_new_app_addressed_by_id_answers_404_until_replicas_catch_up(
    graph: Any, sandbox: Sandbox, clock: Clock
) -> None:
    sandbox.faults.set_replication(application_read_s=20)
    app = await graph.applications_with_unique_name("rw").patch(
        exchange_app("RW"), request_configuration=upsert_config()
    )
    body = AddPasswordPostRequestBody(
        password_credential=PasswordCredential(
            display_name="label", end_date_time=clock.now + timedelta(days=30)
        )
    )
    for call in (
        lambda: graph.applications.by_application_id(app.id).get(),
        lambda: graph.applications.by_application_id(app.id).add_password.post(body),
    ):
        early = await odata_error(call)
        assert (early.response_status_code, early.error.code) == (404, "Request_ResourceNotFound")
        assert early.error.message == (
            f"Resource '{app.id}' does not exist or one of its queried reference-property objects are not present."
        )
    assert sandbox.state.password_credentials(app.id) == []  # the refused addPassword minted nothing
    clock.advance(21)
    assert (await graph.applications.by_application_id(app.id).add_password.post(body)).secret_text


async def test_the_app_management_policy_refuses_secrets_with_graph_s_codes(
    graph: Any, sandbox: Sandbox, clock: Clock
) -> None:
    app = await graph.applications_with_unique_name("pol").patch(
        exchange_app("Pol"), request_configuration=upsert_config()
    )
    policy = sandbox.state.app_policy

    def secret(days: int) -> AddPasswordPostRequestBody:
        end = clock.now + timedelta(days=days)
        return AddPasswordPostRequestBody(password_credential=PasswordCredential(end_date_time=end))

    add = graph.applications.by_application_id(app.id).add_password
    policy.password_max_lifetime = timedelta(days=90)
    too_long = await odata_error(lambda: add.post(secret(180)))
    assert (too_long.response_status_code, too_long.error.code) == (
        400,
        "CredentialInvalidLifetimeAsPerAppPolicy",
    )
    assert too_long.error.message == (
        f"Credential lifetime exceeds the max value allowed as per assigned policy '{policy.policy_id}'."
    )
    assert (await add.post(secret(60))).secret_text
    policy.block_passwords = True
    blocked = await odata_error(lambda: add.post(secret(30)))
    assert (blocked.response_status_code, blocked.error.code) == (
        400,
        "CredentialTypeNotAllowedAsPerAppPolicy",
    )
    assert (
        blocked.error.message == f"Credential type not allowed as per assigned policy '{policy.policy_id}'."
    )
    assert len(sandbox.state.password_credentials(app.id)) == 1


async def test_assigning_an_app_role_needs_a_read_permission_beside_app_role_assignment(
    graph: Any, sandbox: Sandbox
) -> None:
    app = await graph.applications_with_unique_name("ga").patch(
        exchange_app("GA"), request_configuration=upsert_config()
    )
    sp = await graph.service_principals.post(ServicePrincipal(app_id=app.app_id))
    exo = await graph.service_principals_with_app_id(EXCHANGE_APP_ID).get()
    body = AppRoleAssignment(principal_id=sp.id, resource_id=exo.id, app_role_id=IMAP_ROLE)
    assign = graph.service_principals.by_service_principal_id(exo.id).app_role_assigned_to
    sandbox.set_identity_roles(graph=["Application.ReadWrite.OwnedBy", "AppRoleAssignment.ReadWrite.All"])
    refused = await odata_error(lambda: assign.post(body))
    assert (refused.response_status_code, refused.error.code) == (403, "Authorization_RequestDenied")
    sandbox.set_identity_roles(
        graph=["Application.ReadWrite.OwnedBy", "AppRoleAssignment.ReadWrite.All", "Application.Read.All"]
    )
    assert str((await assign.post(body)).app_role_id) == IMAP_ROLE
