"""NCRONTAB schedules of timer triggers."""

from datetime import UTC, datetime

import pytest

from funchost.cron import CronSchedule

T0 = datetime(2030, 1, 7, 8, 0, 0, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 */5 * * * *", datetime(2030, 1, 7, 8, 5, 0, tzinfo=UTC)),
        ("0 0 9 * * *", datetime(2030, 1, 7, 9, 0, 0, tzinfo=UTC)),
        ("30 15 7 * * *", datetime(2030, 1, 8, 7, 15, 30, tzinfo=UTC)),
        ("0 0 9 * * Sat", datetime(2030, 1, 12, 9, 0, 0, tzinfo=UTC)),
        ("0 0 0 1 Feb *", datetime(2030, 2, 1, 0, 0, 0, tzinfo=UTC)),
        ("0 0 9-17 * * 1-5", datetime(2030, 1, 7, 9, 0, 0, tzinfo=UTC)),
    ],
)
def test_next_occurrence(expression: str, expected: datetime) -> None:
    assert CronSchedule.parse(expression).next_after(T0) == expected


def test_five_field_cron_is_refused() -> None:
    with pytest.raises(ValueError, match="6 fields"):
        CronSchedule.parse("*/5 * * * *")
