"""The diagnosis's read-only Exchange questions, against an httpx MockTransport (docs/sandbox-facts.md DG-2)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from onboarding.errors import NotFoundError
from tests.adapters.test_exchange_unit import admin, exchange_error

SP = "aaaaaaaa-1111-2222-3333-444444444444"
BOX = "support@contoso.test"


def answering(value: list[dict[str, Any]] | httpx.Response, seen: list[dict[str, Any]]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content)["CmdletInput"])
        return value if isinstance(value, httpx.Response) else httpx.Response(200, json={"value": value})

    return handler


@pytest.mark.parametrize(
    ("entries", "granted"),
    [
        ([{"User": "app", "AccessRights": ["FullAccess"], "Deny": False, "IsInherited": False}], True),
        ([{"User": "app", "AccessRights": "FullAccess, ReadPermission", "Deny": "False"}], True),
        ([{"User": "app", "AccessRights": ["ReadPermission"], "Deny": False}], False),
        # "Typically, deny permissions override allow permissions" (Get-MailboxPermission.md)
        (
            [
                {"User": "app", "AccessRights": ["FullAccess"], "Deny": False},
                {"User": "app", "AccessRights": ["FullAccess"], "Deny": True, "IsInherited": True},
            ],
            False,
        ),
        ([], False),
    ],
)
async def test_full_access_is_an_allow_entry_for_the_principal_that_no_deny_entry_overrides(
    entries: list[dict[str, Any]], granted: bool
) -> None:
    seen: list[dict[str, Any]] = []
    exchange = admin(answering(entries, seen))
    try:
        assert await exchange.has_full_access(BOX, SP) is granted
    finally:
        await exchange.close()
    assert seen == [{"CmdletName": "Get-MailboxPermission", "Parameters": {"Identity": BOX, "User": SP}}]


async def test_a_principal_exchange_does_not_know_holds_nothing_and_an_unknown_mailbox_is_not_found() -> None:
    missing_principal = exchange_error(
        f"The operation couldn't be performed because object '{SP}' couldn't be found on 'server.test'."
    )
    exchange = admin(answering(missing_principal, []))
    try:
        assert await exchange.has_full_access(BOX, SP) is False
    finally:
        await exchange.close()
    missing_box = exchange_error(
        f"The operation couldn't be performed because object '{BOX}' couldn't be found on 'server.test'."
    )
    exchange = admin(answering(missing_box, []))
    try:
        with pytest.raises(NotFoundError):
            await exchange.has_full_access(BOX, SP)
    finally:
        await exchange.close()


async def test_the_registration_names_its_object_ids_or_is_absent() -> None:
    registration = [{"AppId": "app-1", "Identity": SP.upper(), "ServiceId": SP, "DisplayName": "x"}]
    exchange = admin(answering(registration, []))
    try:
        assert await exchange.registered_service_principal("app-1") == {SP}
    finally:
        await exchange.close()
    exchange = admin(
        answering(
            exchange_error(
                "The operation couldn't be performed because object 'app-1' couldn't be found on 's'."
            ),
            [],
        )
    )
    try:
        assert await exchange.registered_service_principal("app-1") is None
    finally:
        await exchange.close()
