"""Per-mailbox cmdlets through the Exchange admin API's ``$batch`` (EXCHANGE_CALLS=batch) against the
sandbox: how grants are packed, anchored, isolated per mailbox and retried (docs/sandbox-facts.md EX-11)."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from onboarding import steps
from onboarding.adapters._retry import RetryPolicy
from onboarding.adapters.exchange import SYSTEM_MAILBOX, ExchangeAdmin
from onboarding.domain import MailboxState
from onboarding.settings import ExchangeCalls, Settings
from sandbox import Sandbox

BATCH_PATH_END = "/$batch"


class Recording(httpx.AsyncHTTPTransport):
    """The real transport (the sandbox's CA), keeping every request body and every answer's body."""

    def __init__(self) -> None:
        super().__init__(verify=ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"]))
        self.sent: list[tuple[httpx.Request, Any]] = []
        self.answers: list[tuple[int, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request, json.loads(request.content or b"null")))
        response = await super().handle_async_request(request)
        await response.aread()
        self.answers.append((response.status_code, response.json()))
        return response

    def batches(self) -> list[tuple[httpx.Request, Any]]:
        return [(r, b) for r, b in self.sent if r.url.path.endswith(BATCH_PATH_END)]


@pytest.fixture
def client_app(sb: Sandbox) -> tuple[str, str, str]:
    app_id, sp_id, secret = sb.create_client_app("Mail client", roles=("IMAP.AccessAsApp",))
    sb.state.add_exchange_sp(app_id, sp_id, "Mail client")
    return app_id, sp_id, secret


@pytest.fixture
def wire() -> Recording:
    return Recording()


@pytest.fixture
async def exchange(settings: Settings, credential: Any, wire: Recording) -> AsyncIterator[ExchangeAdmin]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # really waits, and remembers how long
        waits.append(seconds)
        await asyncio.sleep(seconds)

    admin = ExchangeAdmin(
        replace(settings, exchange_calls=ExchangeCalls.BATCH),
        credential,
        max_concurrency=10,
        policy=RetryPolicy(attempts=6),
        transport=wire,
        sleep=sleep,
    )
    admin.waits = waits  # type: ignore[attr-defined]
    yield admin
    await admin.close()


def mailboxes(sb: Sandbox, count: int) -> list[str]:
    names = [f"user{i:02d}@sandbox.example" for i in range(count)]
    for name in names:
        sb.add_mailbox(name)
    return names


async def grant(exchange: ExchangeAdmin, settings: Settings, sp_id: str, boxes: list[str]) -> list[Any]:
    """The product's grant step (its per-mailbox classification) over this adapter."""
    svc = SimpleNamespace(exchange=exchange, settings=settings)
    return await steps.grant_mailboxes(
        svc,  # type: ignore[arg-type]
        service_principal_id=sp_id,
        mailboxes=boxes,
        protocols=["IMAP"],
    )


async def test_25_grants_go_out_in_batches_two_of_which_fit_the_concurrency_with_every_cmdlet_anchored(
    sb: Sandbox,
    settings: Settings,
    exchange: ExchangeAdmin,
    wire: Recording,
    client_app: tuple[str, str, str],
) -> None:
    _, sp_id, _ = client_app
    boxes = mailboxes(sb, 25)
    results = await grant(exchange, settings, sp_id, boxes)

    assert {r.mailbox: r.state for r in results} == dict.fromkeys(boxes, MailboxState.GRANTED)
    assert sorted(p.mailbox.lower() for p in sb.state.mailbox_permissions()) == boxes
    batches = wire.batches()
    # Exchange's 10 concurrent calls (the limiter's, a cmdlet of a $batch counting as one) hold two
    # batches of 5, so one request's round trip hides behind the other's.
    assert [len(body["requests"]) for _, body in batches] == [5, 5, 5, 5, 5]
    assert not [r for r, _ in wire.sent if r.url.path.endswith("/InvokeCommand")]  # no single calls
    anchor = f"APP:{SYSTEM_MAILBOX}@{settings.tenant_id}"
    sent_to: list[str] = []
    for request, body in batches:
        assert "odata.continue-on-error" in request.headers["Prefer"]
        for inner in body["requests"]:
            assert inner["method"] == "POST" and inner["url"].endswith("/InvokeCommand")
            assert inner["headers"]["X-AnchorMailbox"] == anchor  # each cmdlet carries its anchor
            cmdlet = inner["body"]["CmdletInput"]
            assert cmdlet["CmdletName"] == "Add-MailboxPermission"
            sent_to.append(cmdlet["Parameters"]["Identity"])
        assert len({inner["id"] for inner in body["requests"]}) == len(body["requests"])
    assert sorted(sent_to) == boxes  # each mailbox exactly once


async def test_an_unknown_error_on_one_mailbox_in_a_batch_fails_only_that_mailbox(
    sb: Sandbox,
    settings: Settings,
    exchange: ExchangeAdmin,
    wire: Recording,
    client_app: tuple[str, str, str],
) -> None:
    _, sp_id, _ = client_app
    boxes = mailboxes(sb, 10)
    odd, gone = boxes[3], "nobody@sandbox.example"
    sb.faults.fail_cmdlet(
        "Add-MailboxPermission",
        odd,
        exception_type="Microsoft.Exchange.Configuration.Tasks.SomethingNewException",
        message="A state of this mailbox the onboarding has never seen.",
    )
    results = {r.mailbox: r for r in await grant(exchange, settings, sp_id, [*boxes, gone])}

    assert [len(b["requests"]) for _, b in wire.batches()] == [5, 5, 1]  # 11 cmdlets, all answered
    assert results[odd].state is MailboxState.FAILED
    assert "Add-MailboxPermission -Identity " + odd in results[odd].detail
    assert "never seen" not in results[odd].detail  # Exchange's unclassified text is not repeated
    assert results[gone].state is MailboxState.NOT_FOUND
    others = [b for b in boxes if b != odd]
    assert all(results[b].state is MailboxState.GRANTED for b in others)
    assert sorted(p.mailbox.lower() for p in sb.state.mailbox_permissions()) == others


async def test_a_throttled_batch_is_retried_after_retry_after_and_nothing_is_lost_or_duplicated(
    sb: Sandbox,
    settings: Settings,
    exchange: ExchangeAdmin,
    wire: Recording,
    client_app: tuple[str, str, str],
) -> None:
    _, sp_id, _ = client_app
    boxes = mailboxes(sb, 25)
    # 10 cmdlets a second: the second batch of 10 exceeds the budget and is refused whole.
    sb.faults.throttle_exchange(requests_per_second=10, retry_after=1)
    results = await grant(exchange, settings, sp_id, boxes)

    assert {r.mailbox: r.state for r in results} == dict.fromkeys(boxes, MailboxState.GRANTED)
    throttled = [i for i, (status, _) in enumerate(wire.answers) if status == 429]
    assert throttled, "the sandbox should have refused a batch"
    assert min(exchange.waits) >= 1.0  # type: ignore[attr-defined]  # Retry-After honoured
    # Every mailbox granted by exactly one cmdlet that ran: a refused batch ran nothing.
    ran = [
        item
        for status, body in wire.answers
        if status == 200 and "responses" in body
        for item in body["responses"]
        if item["status"] == 200
    ]
    assert len(ran) == 25
    assert all(item["body"]["value"] and not item["body"]["@adminapi.warnings"] for item in ran)
    assert sorted(p.mailbox.lower() for p in sb.state.mailbox_permissions()) == boxes


async def test_the_single_setting_sends_one_invokecommand_per_grant(
    sb: Sandbox, settings: Settings, credential: Any, wire: Recording, client_app: tuple[str, str, str]
) -> None:
    _, sp_id, _ = client_app
    boxes = mailboxes(sb, 12)
    single = ExchangeAdmin(replace(settings, exchange_calls=ExchangeCalls.SINGLE), credential, transport=wire)
    try:
        results = await grant(single, settings, sp_id, boxes)
    finally:
        await single.close()

    assert all(r.state is MailboxState.GRANTED for r in results)
    assert not wire.batches()
    assert len([r for r, _ in wire.sent if r.url.path.endswith("/InvokeCommand")]) == 12


async def test_a_whole_app_refusal_inside_a_batch_stops_the_grant_step(
    sb: Sandbox, settings: Settings, exchange: ExchangeAdmin, client_app: tuple[str, str, str]
) -> None:
    """Exchange hides the cmdlets the app's roles do not grant ("not recognized", EX-5): that is about
    the app, not the mailbox, so the step fails (Durable retries it) instead of failing mailboxes."""
    from onboarding.errors import PermissionDeniedError

    _, sp_id, _ = client_app
    boxes = mailboxes(sb, 3)
    sb.faults.fail_cmdlet(
        "Add-MailboxPermission",
        boxes[1],
        exception_type="System.Management.Automation.CommandNotFoundException",
        message="The term 'Add-MailboxPermission' is not recognized as the name of a cmdlet, function, "
        "script file, or operable program.",
    )
    with pytest.raises(PermissionDeniedError):
        await grant(exchange, settings, sp_id, boxes)
