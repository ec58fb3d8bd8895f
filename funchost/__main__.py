"""`python -m funchost --app . --port 7071 --db .funchost/hub.db`: run an app until interrupted.

Keys: FUNCHOST_FUNCTION_KEY / FUNCHOST_MASTER_KEY, else `keys.json` (0600) beside the hub database
(`{"functionKey": ..., "masterKey": ...}`), created on first start.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from .clock import OffsetClock
from .engine import EpisodeStats
from .host import LocalHost


def host_keys(db_path: Path) -> tuple[str, str]:
    """Keys from FUNCHOST_FUNCTION_KEY / FUNCHOST_MASTER_KEY, else from `keys.json` beside the hub.

    Like the real host's secrets store, the file keeps keys stable across restarts; it is created
    owner-readable only, and the keys are never printed or logged.
    """
    env_function, env_master = os.environ.get("FUNCHOST_FUNCTION_KEY"), os.environ.get("FUNCHOST_MASTER_KEY")
    if env_function and env_master:
        return env_function, env_master
    path = db_path.parent / "keys.json"
    if path.exists():
        stored = json.loads(path.read_text())
    else:
        stored = {"functionKey": secrets.token_urlsafe(24), "masterKey": secrets.token_urlsafe(24)}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(stored, handle)
    return env_function or stored["functionKey"], env_master or stored["masterKey"]


def episode_writer(path: Path) -> Callable[[EpisodeStats], None]:
    """One JSON line per episode, flushed at once so a reader sees every finished episode."""
    handle = open(path, "a", buffering=1)  # noqa: SIM115 - open for the host's lifetime
    lock = threading.Lock()

    def write(stats: EpisodeStats) -> None:
        line = json.dumps(dataclasses.asdict(stats))
        with lock:
            handle.write(line + "\n")

    return write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m funchost", description=__doc__)
    parser.add_argument("--app", type=Path, default=Path("."), help="directory holding function_app.py")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind the port beside the caller's reservation of it (funchost/ports.py)",
    )
    parser.add_argument("--db", type=Path, default=Path(".funchost/hub.db"))
    parser.add_argument("--max-activity-workers", type=int, default=None)
    parser.add_argument(
        "--episode-log",
        type=Path,
        default=None,
        help="append each orchestrator episode's statistics (JSON lines)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    function_key, master_key = host_keys(args.db)
    host = LocalHost(
        args.app,
        db_path=args.db,
        port=args.port,
        reuse_port=args.reuse_port,
        max_activity_workers=args.max_activity_workers,
        function_key=function_key,
        master_key=master_key,
        # Tests restart a killed host hours ahead (durable timers due at once); never set in a deployment.
        clock=OffsetClock(timedelta(seconds=float(os.environ.get("FUNCHOST_CLOCK_OFFSET_SECONDS") or 0))),
    )
    if args.episode_log is not None:
        host.engine.on_episode = episode_writer(args.episode_log)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    host.start()
    print(f"funchost ready {host.base_url}", flush=True)
    stop.wait()
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
