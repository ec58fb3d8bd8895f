"""The benchmark page shows a ratio with the digit that decides its row."""

from __future__ import annotations

import pytest

from bench.__main__ import times


@pytest.mark.parametrize(
    ("ratio", "limit", "shown"),
    [
        (1.051, 1.05, "1.051x"),  # missed by a hair: "1.05x" next to "no" would read as a contradiction
        (1.0449, 1.05, "1.04x"),
        (1.1049, 1.10, "1.105x"),
        (1.13, 1.10, "1.13x"),
        (1.05, 1.05, "1.05x"),
    ],
)
def test_a_ratio_reads_as_met_only_when_it_is(ratio: float, limit: float, shown: str) -> None:
    assert times(ratio, limit) == shown
