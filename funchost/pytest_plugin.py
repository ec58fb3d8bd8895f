"""Pytest fixtures: `local_host_factory` (in-process) and `host_process_factory` (subprocess).

Use with `pytest_plugins = ["funchost.pytest_plugin"]` in a conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from .host import LocalHost
from .process import HostProcess


@pytest.fixture
def local_host_factory(tmp_path: Path) -> Iterator[Callable[..., LocalHost]]:
    """Start hosts on app directories; each gets its own SQLite hub under tmp_path; all stop at teardown."""
    hosts: list[LocalHost] = []

    def make(app_dir: Path, **kwargs: Any) -> LocalHost:
        kwargs.setdefault("db_path", tmp_path / f"hub{len(hosts)}.db")
        host = LocalHost(app_dir, **kwargs).start()
        hosts.append(host)
        return host

    yield make
    for host in reversed(hosts):
        host.stop()


@pytest.fixture
def host_process_factory(tmp_path: Path) -> Iterator[Callable[..., HostProcess]]:
    """Start hosts as child processes (env given explicitly); all are stopped at teardown."""
    procs: list[HostProcess] = []

    def make(app_dir: Path, env: Mapping[str, str] | None = None, **kwargs: Any) -> HostProcess:
        kwargs.setdefault("db_path", tmp_path / f"hub{len(procs)}.db")
        proc = HostProcess(app_dir, env=env, **kwargs).start()
        procs.append(proc)
        return proc

    yield make
    for proc in reversed(procs):
        proc.stop()
