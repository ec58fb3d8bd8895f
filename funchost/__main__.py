"""`python -m funchost --app . --port 7071 --db .funchost/hub.db`: run an app until interrupted."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .host import LocalHost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m funchost", description=__doc__)
    parser.add_argument("--app", type=Path, default=Path("."), help="directory holding function_app.py")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--db", type=Path, default=Path(".funchost/hub.db"))
    parser.add_argument("--max-activity-workers", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Keys come from the environment so they never show in a process listing.
    host = LocalHost(
        args.app,
        db_path=args.db,
        port=args.port,
        max_activity_workers=args.max_activity_workers,
        function_key=os.environ.get("FUNCHOST_FUNCTION_KEY"),
        master_key=os.environ.get("FUNCHOST_MASTER_KEY"),
    )
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
