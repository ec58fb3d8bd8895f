"""Subprocess mode: `python -m funchost` with an explicit environment for the app's settings."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from funchost.process import HostProcess

from .conftest import KILLABLE


def test_subprocess_host_gives_the_app_the_env_mapping(
    host_process_factory: Callable[..., HostProcess], tmp_path: Path
) -> None:
    log = tmp_path / "from-env.log"
    env = {k: v for k, v in os.environ.items() if k != "KILL_LOG"} | {"KILL_LOG": str(log)}
    proc = host_process_factory(KILLABLE, env=env)
    api = f"{proc.base_url}/runtime/webhooks/durabletask"
    started = httpx.post(f"{api}/orchestrators/timed/t1", json=4, params={"code": proc.master_key})
    assert started.status_code == 202
    assert httpx.post(f"{api}/orchestrators/timed/t2", json=4).status_code == 401  # needs a key
    for _ in range(200):
        status = httpx.get(f"{api}/instances/t1", params={"code": proc.master_key}).json()
        if status["runtimeStatus"] == "Completed":
            break
        time.sleep(0.05)
    assert status["output"] == 16
    assert log.read_text() == "square:4\n"  # the activity found KILL_LOG in the env it was given


def test_the_episode_log_has_one_line_per_episode_with_its_orchestrator(
    host_process_factory: Callable[..., HostProcess], tmp_path: Path
) -> None:
    episodes = tmp_path / "episodes.jsonl"
    env = {**os.environ, "KILL_LOG": str(tmp_path / "activities.log")}
    proc = host_process_factory(KILLABLE, env=env, episode_log=episodes)
    api = f"{proc.base_url}/runtime/webhooks/durabletask"
    assert (
        httpx.post(f"{api}/orchestrators/nested/n1", json=3, params={"code": proc.master_key}).status_code
        == 202
    )
    for _ in range(200):
        status = httpx.get(f"{api}/instances/n1", params={"code": proc.master_key}).json()
        if status["runtimeStatus"] == "Completed":
            break
        time.sleep(0.05)
    assert status["runtimeStatus"] == "Completed"
    records = [json.loads(line) for line in episodes.read_text().splitlines()]
    names = {r["instance_id"]: r["name"] for r in records}
    assert names["n1"] == "nested"
    assert sorted(set(names.values())) == ["fan", "nested", "sequence"]
    parent = [r for r in records if r["instance_id"] == "n1"]
    assert len(parent) >= 3  # started, then woken by each sub-orchestration's completion
    assert parent[-1]["status"] == "Completed" and parent[-1]["history_len"] > parent[0]["history_len"]
    assert all(r["total_seconds"] >= r["sdk_seconds"] >= 0 for r in records)
