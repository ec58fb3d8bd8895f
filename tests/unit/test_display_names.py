"""Issue 14, item 3: display names that mix scripts or imitate Microsoft product names are refused.

The consent email comes from the tenant's own mailbox and Entra's prompt shows the display name; a
Cyrillic "Microsoft Exchange Online" was accepted before."""

from __future__ import annotations

from typing import Any

import pytest

from onboarding.validation import RequestRejected, parse_request

TENANT = "11111111-2222-3333-4444-555555555555"


def submit(display_name: str) -> Any:
    body = {
        "tenantId": TENANT,
        "displayName": display_name,
        "protocols": ["IMAP"],
        "mailboxes": ["invoices@contoso.com"],
        "adminEmails": ["admin@contoso.com"],
    }
    return parse_request(body, tenant_id=TENANT)


LOOK_ALIKES = {
    "Cyrillic letters in Latin words": "\u041c\u0456\u0441rosoft Exchange Online",
    "all-Cyrillic look-alike of a product": "\u041c\u0456\u0441r\u043es\u043eft",
    "Greek omicron": "\u039fffice 365",
    "digit zero for O": "Micr0soft Exchange Online",
    "fullwidth letters": "\uff2d\uff49\uff43\uff52\uff4f\uff53\uff4f\uff46\uff54",
    "plain product name": "Microsoft Exchange Online",
    "product name without its space": "Office365 Sync",
    "Entra": "Entra ID connector",
    "Azure": "Azure mail relay",
    "Outlook": "Outlook add-in",
}


@pytest.mark.parametrize("name", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
def test_look_alike_display_names_are_refused_naming_the_field(name: str) -> None:
    with pytest.raises(RequestRejected) as info:
        submit(name)
    (error,) = info.value.errors
    assert error.field == "/displayName"
    assert "mix scripts" in error.message or "Microsoft product name" in error.message


@pytest.mark.parametrize(
    "name",
    [
        "Invoice scanner",
        "Helpdesk <connector>",
        "Entrance badge scanner",  # "Entra" only as a whole word
        "\u0421\u0447\u0435\u0442\u0430-\u0444\u0430\u043a\u0442\u0443\u0440\u044b",  # Cyrillic, one script
        "Invoice \u8acb\u6c42\u66f8 scanner",  # Latin with Han: a mix TR39 admits
        "Caf\u00e9 orders 2",
    ],
)
def test_ordinary_names_in_one_script_are_accepted(name: str) -> None:
    assert submit(name).display_name == name
