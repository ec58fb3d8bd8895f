"""GraphDirectory against the sandbox tenant: the real msgraph-sdk over real HTTPS, including the
tenant's refusals and injected faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from onboarding.adapters._retry import RetryPolicy
from onboarding.adapters.graph import GraphDirectory, verified_domains
from onboarding.adapters.identity import function_credential
from onboarding.domain import EXCHANGE_ONLINE_APP_ID, AppRegistration, ExchangeResource
from onboarding.errors import NotFoundError, PermissionDeniedError, TransientError
from onboarding.settings import Settings
from sandbox import Sandbox
from tests.adapters.conftest import RecordingSleep

ROLES = ("IMAP.AccessAsApp", "POP.AccessAsApp")


@pytest.fixture
async def graph(settings: Settings, credential: Any) -> AsyncIterator[GraphDirectory]:
    directory = GraphDirectory(settings, credential, sleep=RecordingSleep())
    yield directory
    await directory.close()


def graph_requests(sb: Sandbox, fragment: str) -> list[Any]:
    return [e for e in sb.state.request_log() if e.service == "graph" and fragment in e.path]


async def register(
    graph: GraphDirectory, unique_name: str = "mail-onboarding-t1"
) -> tuple[ExchangeResource, AppRegistration]:
    resource = await graph.get_resource(EXCHANGE_ONLINE_APP_ID, ROLES)
    app = await graph.upsert_application(
        unique_name=unique_name,
        display_name="Mail client",
        resource=resource,
        resource_app_id=EXCHANGE_ONLINE_APP_ID,
        role_values=ROLES,
        redirect_uris=["https://func.example/api/consent/callback"],
        notes="created by a test",
        tags=["mail-onboarding"],
    )
    return resource, app


async def test_app_registration_lifecycle_is_idempotent(sb: Sandbox, graph: GraphDirectory) -> None:
    resource, app = await register(graph)
    assert resource.app_role_ids == {
        "IMAP.AccessAsApp": "5e5addcd-3e8d-4e90-baf5-964efab2b20a",
        "POP.AccessAsApp": "cb842b43-da6e-4506-86fe-bb12199c656d",
    }
    _, again = await register(graph)  # a retried activity
    assert again == app
    assert await graph.find_application("mail-onboarding-t1") == app
    assert await graph.find_application("mail-onboarding-other") is None

    (stored,) = [
        a for a in sb.state.applications(include_deleted=False) if a.unique_name == "mail-onboarding-t1"
    ]
    assert stored.sign_in_audience == "AzureADMyOrg"
    assert stored.redirect_uris == ["https://func.example/api/consent/callback"]
    # Only the Exchange application permissions: no delegated Graph User.Read.
    assert [r["resourceAppId"] for r in stored.required_resource_access] == [EXCHANGE_ONLINE_APP_ID]
    access = stored.required_resource_access[0]["resourceAccess"]
    assert sorted((a["id"], a["type"]) for a in access) == sorted(
        (i, "Role") for i in resource.app_role_ids.values()
    )

    sp = await graph.ensure_service_principal(app.app_id)
    assert await graph.ensure_service_principal(app.app_id) == sp
    assert sp != app.object_id

    await graph.delete_application(app.object_id)
    await graph.delete_application(app.object_id)  # already gone: fine
    assert await graph.find_application("mail-onboarding-t1") is None


async def test_missing_app_role_is_named(graph: GraphDirectory) -> None:
    with pytest.raises(NotFoundError, match=r"SMTP\.SendAsApp"):
        await graph.get_resource(EXCHANGE_ONLINE_APP_ID, ["IMAP.AccessAsApp", "SMTP.SendAsApp"])


async def test_client_secret_add_list_remove(sb: Sandbox, graph: GraphDirectory) -> None:
    _, app = await register(graph)
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(days=90)
    new = await graph.add_password(app.object_id, "mail-onboarding t1", end)
    assert new.secret_text and new.secret_text not in repr(new)
    assert new.secret_text in sb.state.issued_secrets()
    (listed,) = await graph.list_passwords(app.object_id)
    assert (listed.key_id, listed.display_name, listed.end_date_time) == (
        new.key_id,
        "mail-onboarding t1",
        end,
    )
    await graph.remove_password(app.object_id, new.key_id)
    await graph.remove_password(app.object_id, new.key_id)  # already gone: fine
    assert await graph.list_passwords(app.object_id) == []


async def test_a_throttled_token_endpoint_is_waited_out_for_as_long_as_it_asked(
    sb: Sandbox, settings: Settings, credential: Any
) -> None:
    # The managed identity endpoint throttles longer than azure-core's own three retries: the wait our
    # retry then sleeps is the one the endpoint asked for, not a shorter backoff (CI once saw 0.08 s).
    sleep = RecordingSleep(on_sleep=sb.faults.identity.reset)
    graph = GraphDirectory(settings, credential, sleep=sleep)
    sb.faults.identity.configure(error_rate=1.0, errors=(503,), retry_after=0.6)  # > our first backoff (0.5)
    assert await graph.find_application("mail-onboarding-none") is None
    token_calls = [e.status for e in sb.state.request_log() if e.service == "identity"]
    assert token_calls == [503, 503, 503, 503, 200]  # azure-core's attempts, then ours after the wait
    assert len(sleep.waits) == 1 and sleep.waits[0] >= 0.6
    await graph.close()


@pytest.mark.parametrize("fault", [503, "drop"])
async def test_add_password_is_sent_exactly_once_whatever_happens(
    sb: Sandbox, graph: GraphDirectory, fault: int | str
) -> None:
    """A retried addPassword would mint a second secret whose value nobody ever sees."""
    _, app = await register(graph)
    sb.faults.graph.configure(error_rate=1.0, errors=(fault,), retry_after=0)
    with pytest.raises(TransientError) as caught:
        await graph.add_password(app.object_id, "mail-onboarding t1", datetime.now(UTC) + timedelta(days=30))
    assert len(graph_requests(sb, "/addPassword")) == 1
    assert graph._sleep.waits == []  # type: ignore[attr-defined]
    for secret in sb.state.issued_secrets():
        assert secret not in str(caught.value)

    sb.faults.graph.reset()
    await graph.add_password(app.object_id, "mail-onboarding t1", datetime.now(UTC) + timedelta(days=30))
    assert len(sb.state.password_credentials(app.object_id)) == 1


async def test_throttling_is_retried_after_the_retry_after_it_asked(
    sb: Sandbox, settings: Settings, credential: Any
) -> None:
    sleep = RecordingSleep(on_sleep=sb.faults.graph.reset)  # the service recovers while we wait
    graph = GraphDirectory(settings, credential, sleep=sleep)
    sb.faults.graph.configure(error_rate=1.0, errors=(429,), retry_after=3)
    assert await graph.find_application("mail-onboarding-none") is None
    assert len(sleep.waits) == 1 and sleep.waits[0] >= 3
    statuses = [e.status for e in graph_requests(sb, "/applications")]
    assert statuses[-2:] == [429, 404]
    await graph.close()


@pytest.mark.parametrize("fault", [503, "drop"])
async def test_unavailable_or_dropped_idempotent_calls_are_retried(
    sb: Sandbox, settings: Settings, credential: Any, fault: int | str
) -> None:
    sleep = RecordingSleep(on_sleep=sb.faults.graph.reset)
    graph = GraphDirectory(settings, credential, sleep=sleep)
    await register(graph)
    sb.faults.graph.configure(error_rate=1.0, errors=(fault,), retry_after=0)
    assert await graph.find_application("mail-onboarding-t1") is not None
    assert len(sleep.waits) == 1
    await graph.close()


async def test_persistent_outage_gives_up_after_the_policy_with_no_hidden_sdk_retries(
    sb: Sandbox, settings: Settings, credential: Any
) -> None:
    graph = GraphDirectory(settings, credential, policy=RetryPolicy(attempts=3), sleep=RecordingSleep())
    await graph.find_application("warm-up")  # token and first request outside the fault window
    before = len(graph_requests(sb, "/applications"))
    sb.faults.graph.configure(error_rate=1.0, errors=(503,), retry_after=1)
    with pytest.raises(TransientError) as caught:
        await graph.find_application("mail-onboarding-t1")
    assert caught.value.retry_after == 1
    assert len(graph_requests(sb, "/applications")) - before == 3  # msgraph-sdk's RetryHandler is off
    await graph.close()


async def test_service_principal_during_directory_replication(sb: Sandbox, graph: GraphDirectory) -> None:
    sb.faults.set_replication(application_s=3600)
    _, app = await register(graph)
    with pytest.raises(TransientError) as caught:
        await graph.ensure_service_principal(app.app_id)
    assert caught.value.code == "replication"
    sb.faults.set_replication(application_s=0)
    assert await graph.ensure_service_principal(app.app_id)


async def test_app_roles_are_assigned_once_and_listed(sb: Sandbox, graph: GraphDirectory) -> None:
    resource, app = await register(graph)
    sp = await graph.ensure_service_principal(app.app_id)
    for _ in range(2):  # the second time: "already exists", which is success
        for role in ROLES:
            await graph.assign_app_role(sp, resource.service_principal_id, resource.app_role_ids[role])
    assignments = await graph.list_app_role_assignments(sp)
    assert sorted(a.app_role_id for a in assignments) == sorted(resource.app_role_ids.values())
    assert {a.resource_id for a in assignments} == {resource.service_principal_id}


async def test_assigning_a_role_to_a_principal_still_replicating_is_a_wait(
    sb: Sandbox, graph: GraphDirectory
) -> None:
    # Found by the realistic profile: in grant mode an admin can approve before the new service
    # principal has reached the replica that serves appRoleAssignedTo.
    resource, app = await register(graph)
    sp = await graph.ensure_service_principal(app.app_id)
    sb.faults.set_replication(service_principal_s=3600)
    with pytest.raises(TransientError) as caught:
        await graph.assign_app_role(sp, resource.service_principal_id, resource.app_role_ids[ROLES[0]])
    assert caught.value.code == "replication"
    sb.faults.set_replication(service_principal_s=0)
    await graph.assign_app_role(sp, resource.service_principal_id, resource.app_role_ids[ROLES[0]])


async def test_missing_graph_permissions_name_the_fix(
    sb: Sandbox, settings: Settings, credential: Any
) -> None:
    sb.set_identity_roles(graph=["Application.Read.All"])
    graph = GraphDirectory(settings, credential, sleep=RecordingSleep())
    resource = await graph.get_resource(EXCHANGE_ONLINE_APP_ID, ROLES)
    with pytest.raises(PermissionDeniedError) as caught:
        await register(graph)
    assert "Application.ReadWrite.OwnedBy" in caught.value.fix
    with pytest.raises(PermissionDeniedError) as caught:
        await graph.assign_app_role(
            resource.service_principal_id, resource.service_principal_id, resource.app_role_ids[ROLES[0]]
        )
    assert "AppRoleAssignment.ReadWrite.All" in caught.value.fix
    with pytest.raises(PermissionDeniedError) as caught:
        await graph.send_mail(settings.mail_sender, ["support@sandbox.example"], "s", "<p>b</p>")
    assert "Mail.Send" in caught.value.fix
    await graph.close()


async def test_send_mail(sb: Sandbox, settings: Settings, graph: GraphDirectory) -> None:
    await graph.send_mail(
        settings.mail_sender,
        ["support@sandbox.example", "sales@sandbox.example"],
        "Consent – café",
        "<p>Hi</p>",
        "Hi",
    )
    (mail,) = sb.state.outbox()
    # Sent in Graph's MIME form: one multipart/alternative message with a plain-text part.
    assert (mail.sender, mail.to, mail.subject, mail.html.strip(), mail.text.strip()) == (
        settings.mail_sender,
        ["support@sandbox.example", "sales@sandbox.example"],
        "Consent – café",
        "<p>Hi</p>",
        "Hi",
    )
    assert mail.content_type == "multipart/alternative"
    # A subject too long for the "Subject:" line is folded onto the next one (Python puts the whole
    # value there): the admin reads it as written, with no leading space.
    long = "Admin consent needed: Helpdesk mail connector (IMAP/POP mailbox access)"
    await graph.send_mail(settings.mail_sender, ["support@sandbox.example"], long, "<p>Hi</p>")
    assert sb.state.outbox()[-1].subject == long
    with pytest.raises(NotFoundError) as caught:
        await graph.send_mail("nobody@sandbox.example", ["support@sandbox.example"], "s", "b")
    assert "MAIL_SENDER" in caught.value.fix


async def test_a_new_app_not_readable_yet_is_retried_later_and_gets_exactly_one_secret(
    sb: Sandbox, settings: Settings, credential: Any, graph: GraphDirectory
) -> None:
    # Right after creation, /applications/{id} answers 404 for a while (read-after-write). The
    # secret step must wait it out as replication, and a retry must not mint a second secret.
    from types import SimpleNamespace

    from onboarding import steps
    from onboarding.adapters.keyvault import CredentialVault

    _, app = await register(graph)
    sb.faults.set_replication(application_read_s=3600)
    with pytest.raises(TransientError) as listing:
        await graph.list_passwords(app.object_id)
    assert listing.value.code == "replication"
    with pytest.raises(TransientError) as adding:
        await graph.add_password(app.object_id, "label", datetime.now(UTC) + timedelta(days=30))
    assert adding.value.code == "replication"
    assert len(graph_requests(sb, "/addPassword")) == 1  # addPassword is never resent in-process
    vault = CredentialVault(settings, credential, polling_interval=0)
    svc = SimpleNamespace(settings=settings, graph=graph, vault=vault)
    try:
        with pytest.raises(TransientError):
            await steps.create_secret(
                svc, onboarding_id="o1", tenant_id=sb.tenant_id, app=app, lifetime_days=30, protocols=["IMAP"]
            )
        sb.faults.set_replication(application_read_s=0)
        ref = await steps.create_secret(
            svc, onboarding_id="o1", tenant_id=sb.tenant_id, app=app, lifetime_days=30, protocols=["IMAP"]
        )
    finally:
        await vault.close()
    (stored,) = next(a for a in sb.state.applications() if a.id == app.object_id).passwords
    assert stored.key_id == ref.key_id


@pytest.mark.parametrize(
    ("policy", "code"),
    [
        ({"block_passwords": True}, "CredentialTypeNotAllowedAsPerAppPolicy"),
        ({"password_max_lifetime": timedelta(days=90)}, "CredentialInvalidLifetimeAsPerAppPolicy"),
    ],
)
async def test_a_secret_the_app_management_policy_refuses_fails_once_with_the_fix(
    sb: Sandbox, graph: GraphDirectory, policy: dict[str, Any], code: str
) -> None:
    from onboarding.errors import InvalidRequestError

    _, app = await register(graph)
    for name, value in policy.items():
        setattr(sb.state.app_policy, name, value)
    with pytest.raises(InvalidRequestError) as caught:
        await graph.add_password(app.object_id, "label", datetime.now(UTC) + timedelta(days=180))
    assert caught.value.code == "secret_refused_by_policy" and not caught.value.retryable
    assert code in caught.value.message
    assert "secretLifetimeDays" in caught.value.fix and "certificate" in caught.value.fix
    assert len(graph_requests(sb, "/addPassword")) == 1
    assert next(a for a in sb.state.applications() if a.id == app.object_id).passwords == []


async def test_assigning_without_a_read_permission_names_both_documented_permissions(
    sb: Sandbox, settings: Settings, credential: Any
) -> None:
    # The deployment used to grant AppRoleAssignment.ReadWrite.All alone for grant mode.
    sb.set_identity_roles(graph=["Application.ReadWrite.OwnedBy", "AppRoleAssignment.ReadWrite.All"])
    graph = GraphDirectory(settings, credential, sleep=RecordingSleep())
    try:
        resource, app = await register(graph)
        sp = await graph.ensure_service_principal(app.app_id)
        with pytest.raises(PermissionDeniedError) as caught:
            await graph.assign_app_role(sp, resource.service_principal_id, resource.app_role_ids[ROLES[0]])
    finally:
        await graph.close()
    assert (
        "AppRoleAssignment.ReadWrite.All" in caught.value.fix and "Application.Read.All" in caught.value.fix
    )


async def test_verified_domains_leave_out_unverified_ones_and_need_domain_read_all(
    sb: Sandbox, settings: Settings, credential: Any
) -> None:
    domains = await verified_domains(settings, credential)
    assert "sandbox.example" in domains and "unverified.sandbox.example" not in domains
    sb.set_identity_roles(graph=["Application.ReadWrite.OwnedBy"])  # no Domain.Read.All
    fresh = function_credential(settings)  # a new token, with the new roles
    with pytest.raises(PermissionDeniedError) as caught:
        await verified_domains(settings, fresh)
    await fresh.close()
    assert "Domain.Read.All" in caught.value.fix
    assert caught.value.upstream == "" and "Insufficient" not in str(caught.value)
