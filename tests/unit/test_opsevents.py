"""Operational event lines: parseable by the alert queries, and unable to carry an address or secret."""

from __future__ import annotations

import logging

import pytest

from onboarding.opsevents import REPLACED, OpsEvent, emit

LOG = logging.getLogger("test.opsevents")


def test_an_event_is_one_line_with_its_fields_as_text_and_as_structured_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    emit(LOG, OpsEvent.CALLBACK_GIVEN_UP, onboarding_id="onb-0f3a", reason="undelivered")
    [record] = caplog.records
    assert record.getMessage() == "callback.given_up onboarding_id=onb-0f3a reason=undelivered"
    assert (record.event, record.onboarding_id, record.reason) == (  # type: ignore[attr-defined]
        "callback.given_up",
        "onb-0f3a",
        "undelivered",
    )
    assert record.levelno == logging.INFO


@pytest.mark.parametrize(
    "value",
    [
        "admin@contoso.example",  # an address
        "https://receiver.example/hook?sig=abc",  # a URL (may carry a token)
        "Bearer eyJhbGciOi.x.y",  # free text with a space
        "a" * 101,  # longer than any identifier we log
        "",
    ],
)
def test_a_value_that_could_be_an_address_url_or_free_text_is_withheld(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    logged = emit(LOG, OpsEvent.ONBOARDING_FINISHED, onboarding_id="onb-1", outcome=value)
    assert logged["outcome"] == REPLACED
    [record] = caplog.records
    if value:
        assert value not in record.getMessage()
    assert record.outcome == REPLACED  # type: ignore[attr-defined]


def test_counts_and_times_pass_as_compact_values(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    logged = emit(
        LOG,
        OpsEvent.CREDENTIAL_EXPIRING,
        expires_on="2027-01-02T03:04:05+00:00",
        days_left=12,
        admins_known=False,
        counts={"verified": 2, "not_found": 1, "x@y": 3},
    )
    assert logged["expires_on"] == "2027-01-02T03:04:05+00:00"
    assert logged["days_left"] == 12
    assert logged["admins_known"] == "false"
    # A dict is written as compact JSON (no spaces, so the text stays one field); keys are checked too.
    assert logged["counts"] == f'{{"{REPLACED}":3,"not_found":1,"verified":2}}'
    assert " " not in str(logged["counts"])
