"""HTTP surface: the app's HTTP triggers (with function keys) and the Durable Functions HTTP API."""

from __future__ import annotations

import base64
import hmac
import inspect
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import azure.functions as func
from aiohttp import web
from dateutil.parser import isoparse

from .app_loader import HttpFunction
from .engine import DEFAULT_PAGE_SIZE

if TYPE_CHECKING:
    from .host import LocalHost

log = logging.getLogger("funchost")
CONTINUATION_HEADER = "x-ms-continuation-token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InvocationContext:
    """The `context` argument a function may declare (azure.functions.Context's useful part)."""

    def __init__(self, function_name: str) -> None:
        self.invocation_id = str(uuid.uuid4())
        self.function_name = function_name
        self.function_directory = ""
        self.trace_context = None
        self.retry_context = None


def _key_matches(given: str | None, *keys: str) -> bool:
    return given is not None and any(hmac.compare_digest(given, k) for k in keys)


def _aiohttp_route(route: str) -> list[str]:
    """ASP.NET route template -> aiohttp paths: constraints dropped, optional segments expanded."""
    route = re.sub(
        r"\{(\*?)(\w+)(:[^}]*)?(=[^}]*)?(\?)?\}",
        lambda m: "{" + m.group(2) + (":.*" if m.group(1) else m.group(5) or "") + "}",
        route.strip("/"),
    )
    optional = re.search(r"/?\{(\w+)\?\}", route)
    if optional:
        without = route[: optional.start()] + route[optional.end() :]
        with_param = route.replace("{" + optional.group(1) + "?}", "{" + optional.group(1) + "}")
        return [*_aiohttp_route(without), *_aiohttp_route(with_param)]
    return [route]


def _wants_context(fn: Callable[..., Any]) -> bool:
    try:
        return "context" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


async def invoke(host: LocalHost, fn: Callable[..., Any], name: str, kwargs: dict[str, Any]) -> Any:
    """Call a trigger function the way the worker does: coroutines on the loop, sync ones on a thread."""
    if _wants_context(fn):
        kwargs["context"] = InvocationContext(name)
    if inspect.iscoroutinefunction(fn):
        return await fn(**kwargs)
    loop = host.loop
    return await loop.run_in_executor(host.activity_pool, lambda: fn(**kwargs))


def trigger_handler(host: LocalHost, function: HttpFunction) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if function.methods and request.method not in function.methods:
            return web.Response(status=405)
        if not host.authorized(request, function.auth_level):
            return web.Response(status=401)
        body = await request.read()
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=dict(request.match_info),
            body=body,
        )
        kwargs: dict[str, Any] = {function.trigger_param: http_request}
        if function.client_param:
            kwargs[function.client_param] = host.client_binding_json()
        log.info("Executing 'Functions.%s'", function.name)
        try:
            result = await invoke(host, function.fn, function.name, kwargs)
        except Exception as exc:
            log.error("Executed 'Functions.%s' (Failed: %s)", function.name, type(exc).__name__)
            return web.Response(status=500)
        log.info("Executed 'Functions.%s' (Succeeded)", function.name)
        if result is None:
            return web.Response(status=204)
        if isinstance(result, func.HttpResponse):
            headers = {k: v for k, v in result.headers.items() if k.lower() != "content-length"}
            response = web.Response(status=result.status_code, body=result.get_body(), headers=headers)
            if result.mimetype and "Content-Type" not in response.headers:
                response.content_type = result.mimetype
            return response
        return web.Response(status=200, text=str(result))

    return handle


def method_dispatch(host: LocalHost, functions: list[HttpFunction]) -> Handler:
    """The handler of one path: the function whose methods include the request's (405 if none)."""
    handlers = [(function, trigger_handler(host, function)) for function in functions]

    async def handle(request: web.Request) -> web.StreamResponse:
        for function, handler in handlers:
            if not function.methods or request.method in function.methods:
                return await handler(request)
        return web.Response(status=405)

    return handle


def _json(status: int, payload: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json")


def _time_arg(request: web.Request, name: str) -> datetime | None:
    value = request.query.get(name)
    return isoparse(value) if value else None


def _encode_token(position: tuple[str, str]) -> str:
    """Opaque to clients, like the extension's (base64 of the position after the page's last row)."""
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode()


def _decode_token(token: str | None) -> tuple[str, str] | None:
    if not token:
        return None
    try:
        created, instance_id = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid continuation token") from exc
    return str(created), str(instance_id)


def _statuses(request: web.Request) -> list[str]:
    value = request.query.get("runtimeStatus", "")
    return [s for s in value.split(",") if s]


async def _body_text(request: web.Request) -> str | None:
    """The SDK posts `json=<JSON text>`: a JSON string whose value is the payload's JSON text."""
    raw = await request.text()
    if not raw:
        return None
    value = json.loads(raw)
    return value if isinstance(value, str) else json.dumps(value)


async def _event_text(request: web.Request) -> str | None:
    """Event data exactly as the extension stores it: the request's JSON, re-serialised compactly.

    The Python client posts `json=json.dumps(data)`, a JSON string, so the orchestrator receives the
    JSON *text* of the data (a str), not the data itself; a string payload arrives with its quotes.
    That is how Azure behaves too (azure-functions-durable-python#295), so it is kept here.
    """
    raw = await request.text()
    if not raw:
        return None
    return json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False)


def durable_routes(host: LocalHost, prefix: str, guard: Callable[[web.Request], bool]) -> list[web.RouteDef]:
    """The Durable Functions HTTP API the SDK's DurableOrchestrationClient calls."""
    engine = host.engine

    def guarded(handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            if not guard(request):
                return web.Response(status=401)
            return await handler(request)

        return wrapper

    async def start(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        instance_id = request.match_info.get("instance_id")
        input_text = await _body_text(request)
        loop = host.loop
        try:
            started = await loop.run_in_executor(
                host.io_pool, engine.start_new, name, instance_id, input_text
            )
        except LookupError as exc:
            return _json(400, {"Message": "Bad request", "ExceptionMessage": str(exc)})
        except FileExistsError as exc:
            return _json(409, {"Message": str(exc)})
        payload = host.management_payload(started)
        response = _json(202, payload)
        response.headers["Location"] = payload["statusQueryGetUri"]
        return response

    async def status(request: web.Request) -> web.StreamResponse:
        instance_id = request.match_info["instance_id"]
        show_history = request.query.get("showHistory", "").lower() == "true"
        show_input = request.query.get("showInput", "true").lower() != "false"
        result = engine.get_status(instance_id, show_history=show_history, show_input=show_input)
        if result is None:
            return web.Response(status=404)
        code = 202 if result["runtimeStatus"] in ("Pending", "Running") else 200
        return _json(code, result)

    async def query(request: web.Request) -> web.StreamResponse:
        """Get all instances status: pages of ``top`` (default 100) with ``x-ms-continuation-token``
        in the response while more may follow, sent back as a request header for the next page."""
        try:
            top = int(request.query.get("top") or DEFAULT_PAGE_SIZE)
            after = _decode_token(request.headers.get(CONTINUATION_HEADER))
        except ValueError:
            return _json(400, {"Message": "Invalid top or continuation token"})
        if top < 1:
            return _json(400, {"Message": "top must be positive"})
        page, more = engine.query_page(
            _time_arg(request, "createdTimeFrom"),
            _time_arg(request, "createdTimeTo"),
            _statuses(request),
            request.query.get("instanceIdPrefix"),
            top=top,
            after=after,
            show_input=request.query.get("showInput", "true").lower() != "false",
        )
        response = _json(200, page)
        if more:
            response.headers[CONTINUATION_HEADER] = _encode_token(more)
        return response

    async def raise_event(request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/json":
            return _json(400, {"Message": "Only application/json request content is supported"})
        try:
            data = await _event_text(request)
        except ValueError:
            return _json(400, {"Message": "Invalid JSON content"})
        outcome = engine.raise_event(request.match_info["instance_id"], request.match_info["event"], data)
        return web.Response(status={"ok": 202, "gone": 410, "missing": 404}[outcome])

    async def terminate(request: web.Request) -> web.StreamResponse:
        outcome = engine.terminate(request.match_info["instance_id"], request.query.get("reason", ""))
        return web.Response(status={"ok": 202, "gone": 410, "missing": 404}[outcome])

    async def purge(request: web.Request) -> web.StreamResponse:
        deleted = engine.purge(request.match_info["instance_id"])
        return _json(200, {"instancesDeleted": deleted}) if deleted else web.Response(status=404)

    async def purge_by(request: web.Request) -> web.StreamResponse:
        deleted = engine.purge_by(
            _time_arg(request, "createdTimeFrom"), _time_arg(request, "createdTimeTo"), _statuses(request)
        )
        return _json(200, {"instancesDeleted": deleted}) if deleted else web.Response(status=404)

    return [
        web.post(f"{prefix}/orchestrators/{{name}}", guarded(start)),
        web.post(f"{prefix}/orchestrators/{{name}}/{{instance_id}}", guarded(start)),
        web.get(f"{prefix}/instances/", guarded(query)),
        web.get(f"{prefix}/instances", guarded(query)),
        web.delete(f"{prefix}/instances/", guarded(purge_by)),
        web.delete(f"{prefix}/instances", guarded(purge_by)),
        web.get(f"{prefix}/instances/{{instance_id}}", guarded(status)),
        web.delete(f"{prefix}/instances/{{instance_id}}", guarded(purge)),
        web.post(f"{prefix}/instances/{{instance_id}}/raiseEvent/{{event}}", guarded(raise_event)),
        web.post(f"{prefix}/instances/{{instance_id}}/terminate", guarded(terminate)),
    ]


def request_key(request: web.Request) -> str | None:
    return request.headers.get("x-functions-key") or request.query.get("code")


__all__ = [
    "_aiohttp_route",
    "_key_matches",
    "durable_routes",
    "invoke",
    "method_dispatch",
    "request_key",
    "trigger_handler",
]
