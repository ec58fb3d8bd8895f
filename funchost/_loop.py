"""One event loop thread shared by every in-process host.

The Durable SDK keeps a process-wide aiohttp session bound to the loop that created it; running every
host's HTTP triggers on the same long-lived loop keeps that session usable across hosts and tests.
"""

from __future__ import annotations

import asyncio
import threading

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def shared_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="funchost-loop", daemon=True)
            thread.start()
            _loop = loop
        return _loop
