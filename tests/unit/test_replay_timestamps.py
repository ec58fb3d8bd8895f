"""The Durable SDK's history timestamps, read by the standard library: the same instants as dateutil
read them, for every form the Functions host writes, and anything else still read by dateutil."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.durable_functions.models.history.HistoryEvent import HistoryEvent
from dateutil.parser import parse as dateutil_parse

import function_app  # noqa: F401 - the app installs the parser at import, as in the worker
from onboarding import replay_timestamps

HOST_FORMS = [
    "2026-12-02T23:03:25.6705231Z",  # the extension's .NET form: 7 fractional digits
    "2026-12-02T23:03:25.670523Z",  # funchost's form (engine.fmt_time)
    "2026-12-02T23:03:25.670Z",
    "2020-11-10T08:30:00Z",  # no fraction (azure-functions-durable-python issue #220)
    "2026-12-02T23:03:25.670523+00:00",
    "2026-12-02T23:03:25",  # no zone: naive, as dateutil reads it
]


def test_the_app_makes_the_sdk_read_history_timestamps_with_the_fast_parser() -> None:
    assert replay_timestamps.installed()


@pytest.mark.parametrize("text", HOST_FORMS)
def test_every_host_form_is_the_instant_dateutil_reads(text: str) -> None:
    fast, slow = replay_timestamps.parse_timestamp(text), dateutil_parse(text)
    assert fast == slow
    assert (fast.tzinfo is None) == (slow.tzinfo is None)
    assert fast.isoformat() == slow.isoformat()
    assert str(fast) == str(slow)  # the SDK's new_guid names a GUID after str(current_utc_datetime)


def test_a_form_the_standard_library_cannot_read_still_goes_to_dateutil() -> None:
    text = "Wed, 02 Dec 2026 23:03:25 GMT"
    assert replay_timestamps.parse_timestamp(text) == datetime(2026, 12, 2, 23, 3, 25, tzinfo=UTC)
    with pytest.raises(ValueError):
        replay_timestamps.parse_timestamp("not a time")


def test_a_history_event_built_by_the_sdk_carries_the_same_timestamp() -> None:
    event = HistoryEvent(EventType=12, EventId=-1, IsPlayed=False, Timestamp="2026-12-02T23:03:25.6705231Z")
    assert event.timestamp == dateutil_parse("2026-12-02T23:03:25.6705231Z")
    assert event.timestamp.tzinfo is UTC  # read by the standard library, not dateutil
