"""Subprocess mode: `python -m funchost` with an explicit environment for the app's settings."""

from __future__ import annotations

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
