"""A host killed with SIGKILL at random moments resumes every instance to the uninterrupted result."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from funchost import LocalHost
from funchost.process import HostProcess

from .conftest import KILLABLE

KILLS = 22
WORKLOAD = [("sequence", 1), ("fan", 3), ("timed", 7), ("nested", 2), ("give_up", 0), ("generations", 1)]


def expected(name: str, value: int) -> Any:
    sequence = sum(i * i for i in range(value, value + 8))
    fan = sum((value + i) ** 2 for i in range(25))
    if name == "generations":
        while value < 1000:
            value += value * value
        return value
    return {
        "sequence": sequence,
        "fan": fan,
        "timed": value * value,
        "nested": sequence + fan,
        "give_up": "gave up",
    }[name]


def plan(count: int) -> list[tuple[str, str, int]]:
    """Instance id, orchestrator, input: the workload repeated with growing inputs."""
    return [
        (f"i{n:03d}", WORKLOAD[n % len(WORKLOAD)][0], WORKLOAD[n % len(WORKLOAD)][1] + n // len(WORKLOAD))
        for n in range(count)
    ]


def api(base_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"{base_url}/runtime/webhooks/durabletask", params={"code": key}, timeout=10)


def start(proc: HostProcess, instance_id: str, name: str, value: int) -> None:
    with api(proc.base_url, proc.master_key) as client:
        assert client.post(f"/orchestrators/{name}/{instance_id}", json=value).status_code == 202


def outputs(proc: HostProcess, ids: list[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with api(proc.base_url, proc.master_key) as client:
        while True:
            statuses = {i: client.get(f"/instances/{i}").json() for i in ids}
            if all(s["runtimeStatus"] in ("Completed", "Failed", "Terminated") for s in statuses.values()):
                return {i: (s["runtimeStatus"], s["output"]) for i, s in statuses.items()}
            if time.monotonic() > deadline:
                raise AssertionError({i: s["runtimeStatus"] for i, s in statuses.items()})
            time.sleep(0.1)


@pytest.fixture
def uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The same workload on an in-process host that is never interrupted."""
    monkeypatch.setenv("KILL_LOG", str(tmp_path / "uninterrupted.log"))
    with LocalHost(KILLABLE, db_path=tmp_path / "calm.db") as host:
        ids = []
        for instance_id, name, value in plan(KILLS + 2):
            ids.append(host.engine.start_new(name, instance_id, str(value)))
        return {i: (s["runtimeStatus"], s["output"]) for i in ids if (s := host.wait_for(i, timeout=60))}


def test_sigkill_at_random_points_resumes_every_instance(
    tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    rng = random.Random(20300107)
    log = tmp_path / "activities.log"
    env = {**os.environ, "KILL_LOG": str(log)}
    db = tmp_path / "hub.db"
    work = plan(KILLS + 2)
    host_log = tmp_path / "host.log"
    proc = HostProcess(KILLABLE, db, env, log_path=host_log).start()
    start(proc, *work[0])
    for kill in range(KILLS):
        start(proc, *work[kill + 1])
        time.sleep(rng.uniform(0.02, 0.6))
        proc.kill()
        proc = HostProcess(
            KILLABLE, db, env, function_key=proc.function_key, master_key=proc.master_key
        ).start()
    start(proc, *work[-1])
    try:
        results = outputs(proc, [w[0] for w in work], timeout=90)
    finally:
        proc.stop()

    assert results == uninterrupted
    assert results == {i: ("Completed", expected(name, value)) for i, name, value in work}
    # At least once: every activity input the workload needs was started at least once.
    started = Counter(log.read_text().splitlines())
    needed = {
        f"square:{value + i}" for _, name, value in work if name in ("fan", "nested") for i in range(25)
    }
    assert needed <= set(started)
    assert started["always_fails:0"] >= 3


def test_an_activity_interrupted_by_a_crash_runs_again(tmp_path: Path) -> None:
    log = tmp_path / "activities.log"
    env = {**os.environ, "KILL_LOG": str(log)}
    db = tmp_path / "hub.db"
    proc = HostProcess(KILLABLE, db, env).start()
    start(proc, "slow-1", "slow", 6)
    deadline = time.monotonic() + 30
    while not (log.exists() and "slow_square:6" in log.read_text()):
        assert time.monotonic() < deadline, "activity never started"
        time.sleep(0.02)
    proc.kill()  # mid-activity: its result was never recorded
    proc = HostProcess(KILLABLE, db, env, function_key=proc.function_key, master_key=proc.master_key).start()
    try:
        assert outputs(proc, ["slow-1"], timeout=30) == {"slow-1": ("Completed", 36)}
    finally:
        proc.stop()
    assert log.read_text().splitlines().count("slow_square:6") == 2
