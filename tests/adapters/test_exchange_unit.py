"""The Exchange admin API's wire shape and error mapping, against an httpx MockTransport."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
import pytest

from onboarding.adapters._retry import RetryPolicy
from onboarding.adapters.exchange import ExchangeAdmin, error_text
from onboarding.errors import InvalidRequestError, NotFoundError, PermissionDeniedError, TransientError
from onboarding.settings import Settings
from tests.adapters.conftest import RecordingSleep

TENANT = "11111111-2222-3333-4444-555555555555"
TOKEN = "eyJhbGciOiJub25lIn0.eyJhdWQiOiJ4In0.sig-not-checked"


class FakeCredential:
    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        assert scopes == ("https://exchange.test/.default",)
        return AccessToken(TOKEN, 2_000_000_000)

    async def close(self) -> None:
        pass


def make_settings() -> Settings:
    env = {
        "TENANT_ID": TENANT,
        "EXCHANGE_ENDPOINT": "https://exchange.test",
        "KEY_VAULT_URI": "https://vault.test/",
        "MAIL_SENDER": "sender@contoso.test",
        "PUBLIC_BASE_URL": "https://func.test",
        "LINK_SIGNING_KEY": "k" * 40,
        # These tests pin the single-call wire shape; test_exchange_batch_unit.py pins $batch's.
        "EXCHANGE_CALLS": "single",
    }
    return Settings.from_env(env)


def exchange_error(message: str, status: int = 400) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "error": {
                "code": "BadRequest",
                "message": f"|Some.Exception|{message}",
                "details": [{"code": "Context", "message": f"Ex6B1E2|Some.Exception|{message}"}],
                "innererror": {"internalException": {"message": message}},
            }
        },
    )


def admin(handler: Any, **kwargs: Any) -> ExchangeAdmin:
    return ExchangeAdmin(
        make_settings(),
        FakeCredential(),  # type: ignore[arg-type]
        transport=httpx.MockTransport(handler),
        policy=RetryPolicy(attempts=3),
        sleep=RecordingSleep(),
        **kwargs,
    )


async def test_invoke_command_wire_shape_and_paging() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(
                200,
                json={
                    "value": [{"ImapEnabled": True, "PopEnabled": False}],
                    "@odata.nextLink": "https://exchange.test/adminapi/beta/x/InvokeCommand?$skiptoken=2",
                },
            )
        return httpx.Response(200, json={"value": [{"ImapEnabled": False}]})

    ex = admin(handler)
    assert await ex.invoke("Get-CASMailbox", {"Identity": "a@contoso.test"}) == [
        {"ImapEnabled": True, "PopEnabled": False},
        {"ImapEnabled": False},
    ]
    first = seen[0]
    assert str(first.url) == f"https://exchange.test/adminapi/beta/{TENANT}/InvokeCommand"
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert (
        first.headers["X-AnchorMailbox"]
        == f"APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{TENANT}"
    )
    assert json.loads(first.content) == {
        "CmdletInput": {"CmdletName": "Get-CASMailbox", "Parameters": {"Identity": "a@contoso.test"}}
    }
    assert "skiptoken=2" in str(seen[1].url)
    assert json.loads(seen[1].content) == json.loads(first.content)
    await ex.close()


async def test_full_access_is_granted_without_automapping_and_idempotently() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:
            return httpx.Response(200, json={"value": [{}]})
        return exchange_error("The permission for user 'x' already exists.")

    ex = admin(handler)
    await ex.grant_full_access("a@contoso.test", "sp-1")
    await ex.grant_full_access("a@contoso.test", "sp-1")  # already there: fine
    assert bodies[0]["CmdletInput"]["Parameters"] == {
        "Identity": "a@contoso.test",
        "User": "sp-1",
        "AccessRights": ["FullAccess"],
        "AutoMapping": False,
    }
    await ex.close()


async def test_unknown_mailbox_is_not_found_and_unknown_principal_is_replication() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        user = json.loads(request.content)["CmdletInput"]["Parameters"]["User"]
        who = "nobody@contoso.test" if user == "sp-1" else user
        return exchange_error(
            f"The operation couldn't be performed because object '{who}' couldn't be found on 'X'."
        )

    ex = admin(handler)
    with pytest.raises(NotFoundError, match=r"nobody@contoso\.test"):
        await ex.grant_full_access("nobody@contoso.test", "sp-1")
    with pytest.raises(TransientError) as caught:
        await ex.grant_full_access("a@contoso.test", "sp-unregistered")
    assert caught.value.code == "replication"
    await ex.close()


async def test_wrong_object_id_names_the_fix() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        name = json.loads(request.content)["CmdletInput"]["CmdletName"]
        sent.append(name)
        if name == "Get-ServicePrincipal":
            return exchange_error(
                "The operation couldn't be performed because object 'x' couldn't be found on 'X'."
            )
        # The sourced prefix of Exchange's answer; the rest of its words are not published.
        return exchange_error("AADServicePrincipalNotFound. No ServicePrincipal with Object Id 'o' ...")

    ex = admin(handler)
    # Exchange says the same for a wrong id and for one still replicating: retryable, both causes named.
    with pytest.raises(TransientError) as caught:
        await ex.ensure_service_principal("app-1", "some-object-id", "Mail app")
    assert caught.value.code == "replication"
    assert "not the object id of the app registration" in caught.value.fix
    # Knowing the app's object id, the mistake is certain and nothing is sent.
    sent.clear()
    with pytest.raises(InvalidRequestError) as wrong:
        await ex.ensure_service_principal("app-1", "app-object-id", "Mail app", app_object_id="app-object-id")
    assert wrong.value.code == "wrong_object_id" and sent == []
    await ex.close()


async def test_forbidden_names_the_missing_permission_and_role_without_leaking() -> None:
    ex = admin(lambda request: httpx.Response(403, text=f"echo {request.headers['Authorization']}"))
    with pytest.raises(PermissionDeniedError) as caught:
        await ex.protocols_enabled("a@contoso.test")
    assert "Exchange.ManageAsApp" in caught.value.fix and "Exchange Administrator" in caught.value.fix
    assert TOKEN not in str(caught.value) and "echo" not in str(caught.value)
    await ex.close()


async def test_throttling_is_retried_after_retry_after_and_lowers_the_limit() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(
                429, headers={"Retry-After": "0.2"}, json={"error": {"code": "TooManyRequests"}}
            )
        return httpx.Response(200, json={"value": [{"ImapEnabled": True, "PopEnabled": True}]})

    ex = admin(handler, max_concurrency=8)
    sleep: RecordingSleep = ex._sleep  # type: ignore[assignment]
    assert await ex.protocols_enabled("a@contoso.test") == {"IMAP": True, "POP": True}
    assert calls == 2 and sleep.waits and sleep.waits[0] >= 0.2
    assert ex.limiter.throttled == 1 and ex.limiter.limit < 8
    await ex.close()


async def test_dropped_connections_become_transient_after_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    ex = admin(handler)
    with pytest.raises(TransientError, match="connection dropped"):
        await ex.remove_service_principal("app-1")
    await ex.close()


def test_error_text_prefers_the_inner_message_and_redacts() -> None:
    body = {"error": {"details": [{"message": f"Ex1|T|bad token {TOKEN}"}]}}
    assert TOKEN not in error_text(body) and "bad token" in error_text(body)
    assert error_text({"error": {"innererror": {"internalException": {"message": "inner"}}}}) == "inner"
    assert error_text({"error": {"message": "|X.Y|outer"}}) == "outer"
    assert error_text("not json") == ""


async def test_the_settings_endpoint_is_used_not_a_cloud_literal() -> None:
    urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, json={"value": []})

    settings = replace(make_settings(), exchange_endpoint="https://exchange.test")
    ex = ExchangeAdmin(settings, FakeCredential(), tenant_id="t", transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    await ex.remove_service_principal("app-1")
    assert urls == ["https://exchange.test/adminapi/beta/t/InvokeCommand"]
    await ex.close()


def test_error_text_reads_both_forms_of_a_cmdlet_error_detail() -> None:
    import json

    detail = {
        "Message": "The object 'CN=x' already exists.",
        "TypeName": "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException",
        "StackTrace": None,
        "InnerError": None,
    }
    as_json = {"error": {"message": "Error executing cmdlet", "details": [{"message": json.dumps(detail)}]}}
    assert error_text(as_json) == "The object 'CN=x' already exists."
    piped = {
        "error": {"details": [{"message": "Ex6F9304|Microsoft.Exchange.X|The object 'CN=x' already exists."}]}
    }
    assert error_text(piped) == "The object 'CN=x' already exists."
    # Not JSON after all, or JSON without a Message: the text stays as it came.
    assert error_text({"error": {"details": [{"message": "{not json"}]}}) == "{not json"
