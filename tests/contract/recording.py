"""Recordings of the real services' traffic, as JSON fixtures: capture, redaction, file format.

One fixture per exchange (``NNN-<service>-<method>-<path>.json``) or per IMAP/POP session::

    {"origin": "recorded" | "documented example: <source>",
     "service": "entra" | "graph" | "exchange" | "keyvault" | "imap" | "pop",
     "request": {"method", "path", "query", "headers", "body"},
     "response": {"status", "headers", "body"},
     "accepted_differences": [{"difference": "...", "reason": "..."}]}   # after review, optional

or, for IMAP/POP, ``"transcript": [{"client": line} | {"server": line}, ...]``.

The capture is transport-level and set up in one place (``Recorder.install``): httpx (msgraph-sdk and
the Exchange admin API adapter), azure-core's aiohttp and requests transports (Key Vault, azure-identity),
requests (MSAL), and the mail probe's IMAP/POP lines. Paths are stored relative to the service's endpoint, the
ids of the scenario's own objects as placeholders (``{tenant}``, ``{app_id}``...), and every secret,
token and credential-bearing field as ``<redacted>``, before anything reaches the disk.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

REDACTED = "<redacted>"
RECORDED = "recorded"
HTTP_SERVICES = ("entra", "graph", "exchange", "keyvault")
# Headers worth keeping: what a client's behaviour depends on. Everything else is dropped.
KEPT_HEADERS = {
    "content-type",
    "retry-after",
    "location",
    "www-authenticate",
    "x-ms-ags-diagnostic",
    "odata-version",
    "consistencylevel",
    "prefer",
    "x-anchormailbox",
    "x-responsesource",
}
SECRET_HEADERS = {"authorization", "x-identity-header", "cookie", "set-cookie", "www-authenticate-token"}
SECRET_FIELDS = {
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "assertion",
    "secrettext",
    "password",
    "code_verifier",
}
# Key Vault's secret bundle carries the secret as "value" (a Graph list's "value" is a list: kept).
VAULT_SECRET_FIELD = "value"
JWT = re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*")
# The XOAUTH2 response goes on the IMAP AUTHENTICATE line (SASL-IR) or alone (POP's second step).
SASL_LINE = re.compile(r"^((?:\S+ )?(?:AUTHENTICATE|AUTH) XOAUTH2 )\S+$", re.IGNORECASE)
BASE64_LINE = re.compile(r"^[A-Za-z0-9+/=]{40,}$")


class Redactor:
    """Replaces secrets with ``<redacted>`` and the scenario's own ids with placeholders."""

    def __init__(self, aliases: Mapping[str, str] | None = None, secrets: list[str] | None = None) -> None:
        self.aliases: dict[str, str] = dict(aliases or {})  # real value -> "{placeholder}"
        self.secrets: list[str] = list(secrets or [])

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret:
                value = value.replace(secret, REDACTED)
        value = JWT.sub(REDACTED, value)
        for real, placeholder in sorted(self.aliases.items(), key=lambda kv: -len(kv[0])):
            if real:
                value = re.sub(re.escape(real), placeholder, value, flags=re.IGNORECASE)
        return value

    def data(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (REDACTED if k.lower() in SECRET_FIELDS and v else self.data(v)) for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.data(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        kept: dict[str, str] = {}
        for name, value in headers.items():
            low = name.lower()
            if low in SECRET_HEADERS:
                kept[name] = REDACTED
            elif low in KEPT_HEADERS:
                kept[name] = self.text(value)
        return kept

    def body(self, raw: bytes, content_type: str) -> Any:
        """JSON as data, a form as a dict of fields, other text as text; all redacted."""
        if not raw:
            return None
        text = raw.decode("utf-8", "replace")
        if "json" in content_type:
            try:
                return self.data(json.loads(text))
            except ValueError:
                pass
        if "x-www-form-urlencoded" in content_type:
            return {"form": self.data(dict(parse_qsl(text, keep_blank_values=True)))}
        return self.text(text)

    def line(self, line: str) -> str:
        line = line.rstrip("\r\n")
        if m := SASL_LINE.match(line):
            return m.group(1) + REDACTED
        if BASE64_LINE.match(line):
            try:
                if b"auth=Bearer" in base64.b64decode(line, validate=True):
                    return REDACTED
            except ValueError:
                pass
        return self.text(line)


class Recorder:
    """Saves every exchange with the configured endpoints as a redacted fixture under ``directory``."""

    def __init__(self, directory: Path, endpoints: Mapping[str, str], redactor: Redactor) -> None:
        self.directory = directory
        self.endpoints = {name: url.rstrip("/") for name, url in endpoints.items() if url}
        self.redactor = redactor
        for name, base in self.endpoints.items():  # scopes and links name the endpoints: keep them portable
            redactor.aliases.setdefault(base, "{" + name + "}")
        self._lock = threading.Lock()
        self._count = 0
        self._sessions: dict[object, tuple[str, list[dict[str, str]]]] = {}
        self._exchanges: list[tuple[Any, ...]] = []
        self._partial: dict[object, str] = {}  # client bytes sent without their CRLF yet

    # -- what is saved ---------------------------------------------------------------------------
    def service_of(self, url: str) -> tuple[str, str] | None:
        """(service, path relative to its endpoint) for a URL of a recorded service."""
        for name, base in sorted(self.endpoints.items(), key=lambda kv: -len(kv[1])):
            if url == base or url.startswith(base + "/") or url.startswith(base + "?"):
                return name, urlsplit(url).path[len(urlsplit(base).path) :] or "/"
        return None

    def record_http(
        self,
        method: str,
        url: str,
        request_headers: Mapping[str, str],
        request_body: bytes,
        status: int,
        response_headers: Mapping[str, str],
        response_body: bytes,
    ) -> None:
        """Keep an exchange with a recorded service; it is redacted when written (``flush``), once the
        scenario knows every id and secret it made."""
        if self.service_of(url) is None:
            return
        raw = (
            method,
            url,
            dict(request_headers),
            request_body,
            status,
            dict(response_headers),
            response_body,
        )
        with self._lock:
            self._exchanges.append(raw)

    def _http_fixture(self, raw: tuple[Any, ...]) -> tuple[str, str, dict[str, Any]]:
        method, url, request_headers, request_body, status, response_headers, response_body = raw
        found = self.service_of(url)
        assert found is not None
        service, path = found
        r = self.redactor
        if service == "keyvault":
            request_body, response_body = _vault_redacted(request_body), _vault_redacted(response_body)
        query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        fixture = {
            "origin": RECORDED,
            "service": service,
            "request": {
                "method": method.upper(),
                "path": r.text(path),
                "query": r.data(
                    {k: (REDACTED if k.lower() in SECRET_FIELDS else v) for k, v in query.items()}
                ),
                "headers": r.headers(request_headers),
                "body": r.body(request_body, _content_type(request_headers)),
            },
            "response": {
                "status": status,
                "headers": r.headers(response_headers),
                "body": r.body(response_body, _content_type(response_headers)),
            },
        }
        return service, f"{method.lower()}{r.text(path)}", fixture

    def record_line(self, session: object, service: str, direction: str, line: bytes | str) -> None:
        """A server line as read, or client bytes as sent (one or more lines, each with its CRLF)."""
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        with self._lock:
            # Keyed by the session itself, which this keeps alive until ``flush``: an id() is reused as soon
            # as a short-lived session is collected, and the next session's lines joined the last one's.
            _, lines = self._sessions.setdefault(session, (service, []))
            if direction == "server":
                lines.append({direction: text.rstrip("\r\n")})
                return
            pending = self._partial.pop(session, "") + text
            *complete, rest = pending.split("\r\n")
            lines.extend({direction: part} for part in complete)
            if rest:
                self._partial[session] = rest

    def flush(self) -> list[Path]:
        """Redact and write everything recorded so far, in the order it happened."""
        with self._lock:
            exchanges, self._exchanges = self._exchanges, []
            sessions, self._sessions = self._sessions, {}
        written = [self._write(*self._http_fixture(raw)) for raw in exchanges]
        for service, lines in sessions.values():
            transcript = [{d: self.redactor.line(text) for d, text in line.items()} for line in lines]
            fixture = {"origin": RECORDED, "service": service, "transcript": transcript}
            written.append(self._write(service, "session", fixture))
        return written

    def _write(self, service: str, name: str, fixture: dict[str, Any]) -> Path:
        with self._lock:
            self._count += 1
            count = self._count
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:60]
        path = self.directory / f"{count:03d}-{service}-{slug}.json"
        self.directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(fixture, indent=2, sort_keys=True) + "\n")
        return path

    # -- where it is captured ----------------------------------------------------------------------
    @contextmanager
    def install(self) -> Iterator[Recorder]:
        """Hook every transport the product's adapters use; undo on exit and write what was recorded."""
        patches: list[tuple[Any, str, Any]] = []

        def patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
            original = getattr(owner, name)
            patches.append((owner, name, original))
            setattr(owner, name, make(original))

        for owner, name, make in self._hooks():
            patch(owner, name, make)
        try:
            yield self
        finally:
            for owner, name, original in reversed(patches):
                setattr(owner, name, original)
            self.flush()

    def _hooks(self) -> list[tuple[Any, str, Callable[[Any], Any]]]:
        import httpx
        import requests
        from azure.core.pipeline.transport import AioHttpTransport, RequestsTransport

        from onboarding.adapters import mailprobe

        rec = self

        def httpx_async(original: Any) -> Any:
            async def send(client: Any, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
                response = await original(client, request, *args, **kwargs)
                await response.aread()
                rec.record_http(
                    request.method,
                    str(request.url),
                    request.headers,
                    request.content,
                    response.status_code,
                    response.headers,
                    response.content,
                )
                return response

            return send

        def httpx_sync(original: Any) -> Any:
            def send(client: Any, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
                response = original(client, request, *args, **kwargs)
                response.read()
                rec.record_http(
                    request.method,
                    str(request.url),
                    request.headers,
                    request.content,
                    response.status_code,
                    response.headers,
                    response.content,
                )
                return response

            return send

        def azure_async(original: Any) -> Any:
            async def send(transport: Any, request: Any, **kwargs: Any) -> Any:
                response = await original(transport, request, **kwargs)
                await response.load_body()
                rec.record_http(
                    request.method,
                    request.url,
                    dict(request.headers),
                    _azure_body(request),
                    response.status_code,
                    dict(response.headers),
                    response.body(),
                )
                return response

            return send

        def azure_sync(original: Any) -> Any:
            def send(transport: Any, request: Any, **kwargs: Any) -> Any:
                response = original(transport, request, **kwargs)
                rec.record_http(
                    request.method,
                    request.url,
                    dict(request.headers),
                    _azure_body(request),
                    response.status_code,
                    dict(response.headers),
                    response.body(),
                )
                return response

            return send

        def requests_send(original: Any) -> Any:
            def send(session: Any, request: Any, **kwargs: Any) -> Any:
                response = original(session, request, **kwargs)
                body = request.body or b""
                rec.record_http(
                    request.method,
                    request.url,
                    dict(request.headers),
                    body.encode() if isinstance(body, str) else body,
                    response.status_code,
                    dict(response.headers),
                    response.content,
                )
                return response

            return send

        def line_out(original: Any) -> Any:
            async def send(session: Any, data: bytes) -> None:
                rec.record_line(session, session.protocol.value.lower(), "client", data)
                await original(session, data)

            return send

        def line_in(original: Any) -> Any:
            async def line(session: Any) -> bytes:
                got = await original(session)
                rec.record_line(session, session.protocol.value.lower(), "server", got)
                return got

            return line

        return [
            (httpx.AsyncClient, "send", httpx_async),
            (httpx.Client, "send", httpx_sync),
            (AioHttpTransport, "send", azure_async),
            (RequestsTransport, "send", azure_sync),
            (requests.Session, "send", requests_send),
            (mailprobe._Session, "send", line_out),
            (mailprobe._Session, "line", line_in),
        ]


def _content_type(headers: Mapping[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value.lower()
    return ""


def _azure_body(request: Any) -> bytes:
    data = getattr(request, "data", None) or getattr(request, "content", None) or b""
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, dict):  # a form azure-identity posts
        from urllib.parse import urlencode

        return urlencode(data).encode()
    return b""


def _vault_redacted(raw: bytes) -> bytes:
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return raw
    if isinstance(data, dict) and isinstance(data.get(VAULT_SECRET_FIELD), str):
        data[VAULT_SECRET_FIELD] = REDACTED
        return json.dumps(data).encode()
    return raw


def load_fixtures(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    return [(path, json.loads(path.read_text())) for path in sorted(directory.rglob("*.json"))]
