"""A reserved port: chosen before the host starts, taken by nothing else, served by each host in turn."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from funchost import LocalHost, ReservedPort
from funchost.process import HostProcess

from .conftest import KILLABLE, SAMPLES


def _answers(port: int, master_key: str) -> int:
    url = f"http://127.0.0.1:{port}/runtime/webhooks/durabletask/instances/none"
    return httpx.get(url, params={"code": master_key}, timeout=5).status_code


def test_a_reserved_port_is_refused_to_any_other_bind(tmp_path: Path) -> None:
    with ReservedPort() as reserved, socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", reserved.port))


def test_hosts_in_turn_serve_the_reserved_port_and_between_them_it_refuses_connections(
    tmp_path: Path,
) -> None:
    with ReservedPort() as reserved:
        for turn in range(2):
            with LocalHost(
                SAMPLES, db_path=tmp_path / f"hub{turn}.db", port=reserved.port, reuse_port=True
            ) as host:
                assert host.base_url == f"http://127.0.0.1:{reserved.port}"
                assert _answers(reserved.port, host.master_key) == 404  # served: no such instance
            with pytest.raises(httpx.ConnectError):
                _answers(reserved.port, host.master_key)


def test_a_host_process_killed_and_started_again_gets_its_reserved_port_back(
    host_process_factory: Callable[..., HostProcess], tmp_path: Path
) -> None:
    env = {**os.environ, "KILL_LOG": str(tmp_path / "activities.log")}
    with ReservedPort() as reserved:
        proc = host_process_factory(KILLABLE, env=env, port=reserved.port, reuse_port=True)
        assert proc.port == reserved.port
        proc.kill()
        proc.start()
        assert proc.port == reserved.port
        assert _answers(reserved.port, proc.master_key) == 404
