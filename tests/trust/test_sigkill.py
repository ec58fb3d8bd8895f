"""Crashes: whole onboardings on a subprocess host that is SIGKILLed at seeded random moments and
restarted on the same SQLite hub, while the sandbox tenant stays up. Each onboarding must end as an
uninterrupted one does: succeeded, with exactly one app, one credential, one vault version, each
grant and permission once (``assert_fully_onboarded``), and nothing left over in the tenant.

Repeat a run with ``TRUST_SEED=<seed printed below> pytest tests/trust/test_sigkill.py -s``.
"""

from __future__ import annotations

import os
import random
import secrets
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.trust.lanes import Lane, close_all

KILLS_PER_LANE = 26  # two lanes: at least 52 kill points
KILLS_PER_ONBOARDING = 7
MAILBOXES = ("support@sandbox.example", "sales@sandbox.example")


def seed_from_env(name: str = "TRUST_SEED") -> int:
    return int(os.environ.get(name) or secrets.randbelow(2**31))


def run_lane(lane: Lane, rng: random.Random, report: dict[str, Any]) -> None:
    views = []
    n = 0
    while lane.kills < KILLS_PER_LANE:
        budget = min(KILLS_PER_ONBOARDING, KILLS_PER_LANE - lane.kills)
        views.append(lane.onboard(lane.request(n), rng=rng, kill_budget=budget))
        n += 1
    for view in views:
        lane.assert_fully_onboarded(view)
    lane.assert_nothing_else(succeeded=len(views))
    log = lane.sandbox.state.request_log()
    report[lane.name] = {
        "onboardings": len(views),
        "kills": lane.kills,
        "orphan credentials removed": sum(
            1 for e in log if e.path.endswith("/removePassword") and e.status < 300
        ),
        "addPassword calls": sum(1 for e in log if e.path.endswith("/addPassword")),
    }


@pytest.mark.timeout(600)  # about 100 s alone; a loaded CI machine may take longer
def test_onboardings_survive_sigkill_at_random_moments(tmp_path: Path) -> None:
    seed = seed_from_env()
    print(f"\ntrust SIGKILL seed: TRUST_SEED={seed}")
    lanes = [Lane(f"k{i}", tmp_path / f"lane{i}", MAILBOXES) for i in range(2)]
    report: dict[str, Any] = {}
    errors: list[BaseException] = []

    def work(lane: Lane, index: int) -> None:
        try:
            run_lane(lane, random.Random(f"{seed}:{index}"), report)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(lane, i)) for i, lane in enumerate(lanes)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        close_all(lanes)
    if errors:
        raise AssertionError(f"seed {seed}: {errors[0]!r}") from errors[0]
    print(f"trust SIGKILL figures (seed {seed}): {report}")
    assert sum(r["kills"] for r in report.values()) >= 50
