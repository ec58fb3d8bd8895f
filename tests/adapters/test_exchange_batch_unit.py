"""The ``$batch`` envelope (docs/sandbox-facts.md EX-11) and the answers the sandbox does not model
(a cmdlet throttled inside an accepted batch, a missing answer), against an httpx MockTransport."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import httpx
import pytest

from onboarding.adapters._retry import RetryPolicy
from onboarding.adapters.exchange import ExchangeAdmin, parse_batch
from onboarding.errors import OnboardingError, PermissionDeniedError
from onboarding.settings import ExchangeCalls
from tests.adapters.conftest import RecordingSleep
from tests.adapters.test_exchange_unit import FakeCredential, make_settings

SP = "9f3c1a52-0000-4000-8000-000000000001"
OK_BODY = {"adminapi.warnings@odata.type": "#Collection(String)", "@adminapi.warnings": [], "value": []}


def item(rid: str, status: int | None, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"id": rid, "body": body}
    if status is not None:
        answer["status"] = status
    if headers is not None:
        answer["headers"] = headers
    return answer


def test_batch_answers_are_matched_by_id_in_any_order_and_case() -> None:
    payload = {
        "responses": [
            item("2", 400, {"error": {"message": "Invalid Operation"}}),
            item("1", 200, OK_BODY, {"Content-Type": "application/json"}),
            item("99", 200, OK_BODY),  # not asked: ignored
        ]
    }
    answers = parse_batch(payload, ["1", "2", "3"])
    assert answers["1"].status == 200 and answers["1"].body == OK_BODY
    assert answers["2"].status == 400
    assert "3" not in answers  # left out: the caller retries that cmdlet
    assert set(answers) == {"1", "2"}
    assert parse_batch({"responses": [item("ABC", 200, OK_BODY)]}, ["abc"])["abc"].status == 200


def test_an_answer_without_a_status_is_read_from_its_body_as_cipp_does() -> None:
    payload = {"responses": [item("1", None, {"error": {"message": "x"}}), item("2", None, OK_BODY)]}
    answers = parse_batch(payload, ["1", "2"])
    assert (answers["1"].status, answers["2"].status) == (400, 200)


def test_retry_after_is_read_from_an_answers_headers_in_any_case() -> None:
    (answer,) = parse_batch({"responses": [item("1", 429, {}, {"retry-after": "3"})]}, ["1"]).values()
    assert answer.retry_after == "3"


def test_a_body_that_is_not_a_batch_answers_nothing() -> None:
    assert parse_batch({"value": []}, ["1"]) == {}
    assert parse_batch({"responses": "nonsense"}, ["1"]) == {}


def admin(handler: Any, sleep: RecordingSleep) -> ExchangeAdmin:
    return ExchangeAdmin(
        replace(make_settings(), exchange_calls=ExchangeCalls.BATCH),
        FakeCredential(),  # type: ignore[arg-type]
        transport=httpx.MockTransport(handler),
        policy=RetryPolicy(attempts=3),
        sleep=sleep,
    )


def identities(request: httpx.Request) -> dict[str, str]:
    body = json.loads(request.content)
    return {r["id"]: r["body"]["CmdletInput"]["Parameters"]["Identity"] for r in body["requests"]}


async def test_a_cmdlet_throttled_inside_a_batch_is_sent_again_alone_after_its_retry_after() -> None:
    sent: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = identities(request)
        sent.append(sorted(ids.values()))
        answers = []
        for rid, mailbox in ids.items():
            if mailbox == "b@x.test" and len(sent) == 1:
                answers.append(item(rid, 429, {"error": {"message": "Too many"}}, {"Retry-After": "2"}))
            else:
                answers.append(item(rid, 200, OK_BODY))
        return httpx.Response(200, json={"responses": answers})

    sleep = RecordingSleep()
    exchange = admin(handler, sleep)
    await asyncio.gather(*(exchange.grant_full_access(m, SP) for m in ("a@x.test", "b@x.test", "c@x.test")))
    await exchange.close()
    assert sent == [["a@x.test", "b@x.test", "c@x.test"], ["b@x.test"]]
    assert len(sleep.waits) == 1 and sleep.waits[0] >= 2
    assert exchange.limiter.throttled == 1  # the limiter learnt it as from a 429


async def test_a_cmdlet_left_out_of_the_answer_is_sent_again() -> None:
    sent: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = identities(request)
        sent.append(sorted(ids.values()))
        answers = [item(rid, 200, OK_BODY) for rid, m in ids.items() if m != "b@x.test" or len(sent) > 1]
        return httpx.Response(200, json={"responses": answers})

    exchange = admin(handler, RecordingSleep())
    await asyncio.gather(*(exchange.grant_full_access(m, SP) for m in ("a@x.test", "b@x.test")))
    await exchange.close()
    assert sent == [["a@x.test", "b@x.test"], ["b@x.test"]]


async def test_a_refused_token_fails_every_cmdlet_of_the_batch_as_the_apps_problem() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"code": "Unauthorized", "message": "no"}})

    exchange = admin(handler, RecordingSleep())
    outcomes = await asyncio.gather(
        *(exchange.grant_full_access(m, SP) for m in ("a@x.test", "b@x.test")), return_exceptions=True
    )
    await exchange.close()
    assert all(isinstance(o, PermissionDeniedError) for o in outcomes)


async def test_a_refused_batch_request_is_not_blamed_on_any_mailbox() -> None:
    from onboarding.errors import InvalidRequestError

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"code": "BadRequest", "message": "Invalid batch."}})

    exchange = admin(handler, RecordingSleep())
    outcomes = await asyncio.gather(
        *(exchange.grant_full_access(m, SP) for m in ("a@x.test", "b@x.test")), return_exceptions=True
    )
    await exchange.close()
    for outcome in outcomes:
        # Not an InvalidRequestError: the grant step would fail the mailbox instead of the step.
        assert isinstance(outcome, OnboardingError) and not isinstance(outcome, InvalidRequestError)
        assert outcome.code == "batch_refused" and "EXCHANGE_CALLS" in outcome.fix


async def test_each_cmdlet_gets_its_own_answer_in_a_batch() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        ids = identities(request)
        answers = []
        for rid, mailbox in reversed(ids.items()):  # answered out of order
            if mailbox == "gone@x.test":
                text = "The operation couldn't be performed because object 'gone@x.test' couldn't be found on 'S1'."
                error = {"error": {"message": "Invalid Operation", "details": [{"message": f"Ex1|T|{text}"}]}}
                answers.append(item(rid, 400, error))
            elif mailbox == "again@x.test":
                repeated = dict(
                    OK_BODY, **{"@adminapi.warnings": ["An existing permission entry was found for user: X."]}
                )
                answers.append(item(rid, 200, repeated))
            else:
                answers.append(item(rid, 200, OK_BODY))
        return httpx.Response(200, json={"responses": answers})

    from onboarding.errors import NotFoundError

    exchange = admin(handler, RecordingSleep())
    outcomes = await asyncio.gather(
        *(exchange.grant_full_access(m, SP) for m in ("a@x.test", "gone@x.test", "again@x.test")),
        return_exceptions=True,
    )
    await exchange.close()
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], NotFoundError) and outcomes[1].code == "mailbox_not_found"


@pytest.mark.parametrize("value", ["batch", "single", " Single "])
def test_exchange_calls_setting_reads_both_values(value: str) -> None:
    from onboarding.settings import Settings

    settings = Settings.from_env({**_env_of(make_settings()), "EXCHANGE_CALLS": value})
    assert settings.exchange_calls == ExchangeCalls(value.strip().lower())


def test_an_unknown_exchange_calls_value_is_refused_by_name() -> None:
    from onboarding.errors import ConfigurationError
    from onboarding.settings import Settings

    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({**_env_of(make_settings()), "EXCHANGE_CALLS": "parallel"})
    assert "EXCHANGE_CALLS" in str(caught.value) and "batch or single" in str(caught.value)


def _env_of(settings: Any) -> dict[str, str]:
    return {
        "TENANT_ID": settings.tenant_id,
        "EXCHANGE_ENDPOINT": settings.exchange_endpoint,
        "KEY_VAULT_URI": "https://vault.test/",
        "MAIL_SENDER": "sender@contoso.test",
        "PUBLIC_BASE_URL": "https://func.test",
        "LINK_SIGNING_KEY": "k" * 40,
    }


async def test_a_caller_cancelled_while_its_batch_is_out_does_not_break_the_others() -> None:
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json={"responses": [item(r, 200, OK_BODY) for r in identities(request)]})

    exchange = admin(handler, RecordingSleep())
    calls = [asyncio.create_task(exchange.grant_full_access(m, SP)) for m in ("a@x.test", "b@x.test")]
    await asyncio.sleep(0.05)
    calls[0].cancel()
    release.set()
    assert await calls[1] is None
    assert calls[0].cancelled()
    await exchange.close()
