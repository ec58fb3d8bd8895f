"""Plumbing shared by the stand-in services: fault injection and request logging around every request,
strictness (a request the sandbox does not model is answered 501 and recorded, so the test that made it
fails), a small path router (Graph's ``applications(uniqueName='x')`` paths are not aiohttp route
templates), and the background event-loop thread the servers run in."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any, Generic, TypeVar

from aiohttp import web
from aiohttp.web_urldispatcher import MatchInfoError

from sandbox.faults import DROP, ServiceFaults
from sandbox.state import RequestLogEntry, TenantState

Handler = Callable[..., Awaitable[web.StreamResponse]]
ErrorBody = Callable[[int], web.Response]
T = TypeVar("T")
H = TypeVar("H")

CALLER_KEY = web.RequestKey("caller_app_id", str)
OWN_LATENCY_KEY = web.AppKey("handles_latency", bool)
UNMODELLED = "unmodelled"  # the request log's ``fault`` of a request the sandbox does not model
UNMODELLED_CODE = "NotModelledBySandbox"
# What a browser asks for on its own (the consent page is opened in Chromium): not the product's doing.
BROWSER_REQUESTS = {("GET", "/favicon.ico")}


class Unmodelled(Exception):
    """Raised by a service for a request it does not model: a path, method, query option, header or
    $filter form. The middleware answers 501 naming it and records it; the test fixtures fail the test."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def unmodelled_response(request: web.Request, what: str) -> web.Response:
    """501 with a JSON body naming what was asked (never the query's values: they may hold credentials)."""
    body = {
        "error": {
            "code": UNMODELLED_CODE,
            "message": f"The sandbox does not model {what}. Model it (with its public source) or change the caller.",
            "request": {"method": request.method, "path": request.path, "query": sorted(request.query)},
        }
    }
    return web.Response(status=501, text=json.dumps(body), content_type="application/json")


def check_modelled(
    request: web.Request, query_options: Collection[str], semantic_headers: Collection[str]
) -> None:
    """Raise ``Unmodelled`` for an unknown route or method, an OData system query option ($...) outside
    ``query_options``, or a header in ``semantic_headers`` (headers that change what a request means)."""
    if (
        isinstance(request.match_info, MatchInfoError)
        and (request.method, request.path) not in BROWSER_REQUESTS
    ):
        raise Unmodelled(f"{request.method} {request.path}")
    unknown = sorted(k for k in request.query if k.startswith("$") and k not in query_options)
    if unknown:
        raise Unmodelled(f"the query option(s) {', '.join(unknown)} on {request.method} {request.path}")
    present = sorted(h for h in semantic_headers if h in request.headers)
    if present:
        raise Unmodelled(f"the header(s) {', '.join(present)} on {request.method} {request.path}")


def make_app(
    service: str,
    state: TenantState,
    faults: ServiceFaults,
    error_body: ErrorBody,
    *,
    handles_latency: bool = False,
    query_options: Collection[str] = (),
    semantic_headers: Collection[str] = (),
) -> web.Application:
    """An aiohttp application whose every request is logged and may be delayed or failed on demand.

    With ``handles_latency`` the service sleeps the configured latency itself (Exchange does, inside
    its throttling window, so that concurrent calls really overlap). ``query_options`` lists the OData
    system query options ($...) the service models; ``semantic_headers`` the request headers that would
    change the answer and are not modelled.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        fault = faults.draw()
        status = 500
        retry_after: str | None = None
        unmodelled: str | None = None
        try:
            if not handles_latency and faults.latency_ms > 0:
                await asyncio.sleep(faults.latency_ms / 1000)
            if fault == DROP:
                status = 0
                if request.transport is not None:
                    request.transport.abort()
                raise web.HTTPServiceUnavailable()
            response: web.StreamResponse
            if fault is not None:
                response = error_body(int(fault))
                if int(fault) in (429, 503):
                    response.headers["Retry-After"] = _seconds(faults.retry_after)
            else:
                try:
                    check_modelled(request, query_options, semantic_headers)
                    response = await handler(request)
                except Unmodelled as exc:
                    unmodelled = exc.what
                    response = unmodelled_response(request, exc.what)
                except web.HTTPException as exc:
                    response = exc
            status = response.status
            retry_after = response.headers.get("Retry-After")
            if isinstance(response, web.HTTPException):
                raise response
            return response
        finally:
            state.log_request(
                RequestLogEntry(
                    time=state.now(),
                    service=service,
                    method=request.method,
                    path=request.path,  # never the query: it may carry credentials
                    raw_path=request.raw_path.split("?", 1)[0],
                    status=status,
                    caller_app_id=request.get(CALLER_KEY),
                    retry_after=retry_after,
                    latency_ms=round((time.monotonic() - started) * 1000, 2),
                    fault=f"{UNMODELLED}: {unmodelled}"
                    if unmodelled
                    else (None if fault is None else str(fault)),
                )
            )

    app = web.Application(middlewares=[middleware])
    app[OWN_LATENCY_KEY] = handles_latency
    return app


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class Router(Generic[H]):
    """Regex routes over the decoded path; the first pattern that matches and allows the method wins."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._routes: list[tuple[str, re.Pattern[str], H]] = []

    def add(self, method: str, pattern: str, handler: H) -> None:
        self._routes.append((method, re.compile("^" + re.escape(self.prefix) + pattern + "$"), handler))

    def match(self, method: str, path: str) -> tuple[H, dict[str, str]] | bool | None:
        """The handler and path parameters; False when the path exists for other methods; None if unknown."""
        known_path = False
        for route_method, pattern, handler in self._routes:
            m = pattern.match(path)
            if m is None:
                continue
            known_path = True
            if route_method == method:
                return handler, {k: v for k, v in m.groupdict().items() if v is not None}
        return False if known_path else None

    def resolve(self, method: str, path: str) -> tuple[H, dict[str, str]]:
        """The handler and path parameters; ``Unmodelled`` for a path or method the routes lack."""
        found = self.match(method, path)
        if found is None or found is False:
            raise Unmodelled(f"{method} {path}")
        assert not isinstance(found, bool)
        return found


class LoopThread:
    """An asyncio loop in a daemon thread, so tests in another thread (or loop) can call the servers."""

    def __init__(self, name: str = "sandbox") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


def bind(port: int) -> socket.socket:
    """A listening socket on loopback, bound now so the port is known before the servers start."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(
    app: web.Application, sock: socket.socket, ssl_context: ssl.SSLContext | None
) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    return runner
