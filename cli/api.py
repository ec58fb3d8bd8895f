"""The onboarding HTTP API as the CLI calls it: one httpx client, one credential, one error type.

Credentials are only ever sent to the configured base URL: the ``Location`` and ``nextLink`` URLs the
API returns are absolute (built from ``PUBLIC_BASE_URL``), so the CLI follows their path and query on
the base URL instead of trusting their host with a function key or a token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from http import HTTPStatus
from typing import Any, Protocol

import httpx

V1 = "/api/v1/onboardings"
USER_AGENT = "mailonboard/0.1"
DEFAULT_RETRY_AFTER = 10  # seconds; what the API itself sends with its 202s (docs/api.md)


class ExitCode(IntEnum):
    """The command's exit status (docs/cli.md, "Exit codes")."""

    OK = 0
    FAILED = 1  # any other refusal (400, 409 aside, 422, 5xx) or a bad input file
    USAGE = 2  # a wrong option or argument (click's own code)
    AUTH = 3  # 401/403 from the API, or Key Vault refusing the operator's identity
    NOT_FOUND = 4
    THROTTLED = 5  # 429
    CONFLICT = 6  # 409, e.g. cancelling a finished onboarding
    TIMED_OUT = 7  # wait/offboard gave up before the end
    UNREACHABLE = 8  # no answer from the API (connection refused, DNS, TLS)
    PARTIAL = 10  # wait ended in "partial": the app works, some mailboxes need an admin
    UNSUCCESSFUL = 11  # wait ended in rejected, expired, cancelled or failed


_EXIT_FOR_STATUS = {
    HTTPStatus.UNAUTHORIZED: ExitCode.AUTH,
    HTTPStatus.FORBIDDEN: ExitCode.AUTH,
    HTTPStatus.NOT_FOUND: ExitCode.NOT_FOUND,
    HTTPStatus.CONFLICT: ExitCode.CONFLICT,
    HTTPStatus.TOO_MANY_REQUESTS: ExitCode.THROTTLED,
}


class CliError(Exception):
    """A failure told to the operator as one line; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, exit_code: ExitCode, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "status": self.status, "exitCode": int(self.exit_code)}}


class AuthMode(StrEnum):
    AUTO = "auto"  # the function key when one is given, else Entra
    KEY = "key"
    ENTRA = "entra"


class TokenSource(Protocol):
    """What azure-identity credentials offer (``DefaultAzureCredential``, ``AzureCliCredential``...)."""

    def get_token(self, *scopes: str) -> Any: ...


class FunctionKeyAuth(httpx.Auth):
    def __init__(self, key: str) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-functions-key"] = self._key
        yield request


class EntraAuth(httpx.Auth):
    """A bearer token for the API's app registration, from the operator's azure-identity credential."""

    def __init__(self, credential: TokenSource, scope: str) -> None:
        self._credential = credential
        self._scope = scope

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            token = self._credential.get_token(self._scope).token
        except ClientAuthenticationError:
            # The exception's text lists every credential DefaultAzureCredential tried; the fix is one.
            raise CliError(
                f"could not get an Entra token for {self._scope}: sign in with `az login` "
                "(or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET), or use a function key",
                ExitCode.AUTH,
            ) from None
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


def entra_scope(app_id_uri: str) -> str:
    """The client-credentials style scope of the API's app registration (docs/integrations.md)."""
    return app_id_uri.rstrip("/") + "/.default"


def _problem_text(response: httpx.Response) -> str:
    """``title: detail`` of a problem+json answer, on one line; the reason phrase otherwise."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and (body.get("title") or body.get("detail")):
        title, detail = str(body.get("title") or ""), str(body.get("detail") or "")
        text = title if not detail or detail == title else f"{title}: {detail}"
    else:
        text = response.reason_phrase or "error"
    return " ".join(text.split())


def retry_after(response: httpx.Response, default: float = DEFAULT_RETRY_AFTER) -> float:
    """Seconds from ``Retry-After`` (delta-seconds form, the one this API sends), else ``default``."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def error_for(response: httpx.Response, what: str) -> CliError:
    status = response.status_code
    text = _problem_text(response)
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        hint = (
            "check the function key (MAILONBOARD_FUNCTION_KEY)"
            if "x-functions-key" in response.request.headers
            else "check that your identity holds the API's app role (Onboardings.Read / Onboardings.ReadWrite)"
        )
        message = f"{what}: {status} {text}; {hint}"
    elif status == HTTPStatus.TOO_MANY_REQUESTS:
        message = f"{what}: 429 throttled, retry after {retry_after(response):g} s ({text})"
    else:
        message = f"{what}: {status} {text}"
    return CliError(message, _EXIT_FOR_STATUS.get(HTTPStatus(status), ExitCode.FAILED), status)


@dataclass
class Api:
    """The API at ``base_url``; ``transport`` is for tests (httpx.MockTransport)."""

    base_url: str
    auth: httpx.Auth | None
    transport: httpx.BaseTransport | None = None
    timeout: float = 30.0
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.base_url.rstrip("/"),
                auth=self.auth,
                transport=self.transport,
                timeout=self.timeout,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                follow_redirects=False,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def on_base(self, url: str) -> str:
        """The path and query of an absolute URL the API returned, on the configured base URL."""
        parsed = httpx.URL(url)
        return parsed.raw_path.decode("ascii")

    def send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CliError(
                f"{what}: cannot reach {self.base_url} ({type(exc).__name__})", ExitCode.UNREACHABLE
            ) from None

    def expect(self, response: httpx.Response, what: str, *ok: int) -> httpx.Response:
        if response.status_code not in ok:
            raise error_for(response, what)
        return response

    # -- the routes ------------------------------------------------------------------------------
    def start(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.send("POST", V1, "start", json=body)
        return dict(self.expect(response, "start", HTTPStatus.ACCEPTED).json())

    def view(self, onboarding_id: str) -> dict[str, Any]:
        what = f"show {onboarding_id}"
        response = self.send("GET", f"{V1}/{onboarding_id}", what, params={"view": "current"})
        return dict(self.expect(response, what, HTTPStatus.OK).json())

    def poll(self, path: str, what: str) -> httpx.Response:
        """One poll of an asynchronous request-reply status URL: 202 (not yet), 200 (final), or a
        429/503 to wait out; anything else is an error."""
        response = self.send("GET", path, what)
        if response.status_code in (HTTPStatus.OK, HTTPStatus.ACCEPTED):
            return response
        transient = response.status_code in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE)
        if transient and "Retry-After" in response.headers:
            return response
        raise error_for(response, what)

    def cancel(self, onboarding_id: str) -> None:
        what = f"cancel {onboarding_id}"
        self.expect(self.send("POST", f"{V1}/{onboarding_id}/cancel", what), what, HTTPStatus.ACCEPTED)

    def offboard(self, onboarding_id: str, *, purge: bool) -> httpx.Response:
        what = f"offboard {onboarding_id}"
        params = {"purge": "true"} if purge else None
        response = self.send("DELETE", f"{V1}/{onboarding_id}", what, params=params)
        return self.expect(response, what, HTTPStatus.ACCEPTED, HTTPStatus.OK)

    def rotate(self, onboarding_id: str, credential_type: str | None = None) -> dict[str, Any]:
        """POST /api/v1/onboardings/{id}/rotate: 202 with the rotation (a running one's, if any).
        ``credential_type`` switches the onboarding to that type; None keeps the current one."""
        what = f"rotate {onboarding_id}"
        body = {"credentialType": credential_type} if credential_type else None
        response = self.send("POST", f"{V1}/{onboarding_id}/rotate", what, json=body)
        return dict(self.expect(response, what, HTTPStatus.ACCEPTED).json())

    def retry(self, onboarding_id: str) -> dict[str, Any]:
        """POST /api/v1/onboardings/{id}/retry: 202 with the mailbox operation (a running one's, if any)."""
        what = f"retry {onboarding_id}"
        response = self.send("POST", f"{V1}/{onboarding_id}/retry", what)
        return dict(self.expect(response, what, HTTPStatus.ACCEPTED).json())

    def change_mailboxes(self, onboarding_id: str, change: str, mailboxes: list[str]) -> dict[str, Any]:
        """POST /api/v1/onboardings/{id}/mailboxes {"add"|"remove": [...]}: 202 with the operation."""
        what = f"{change} mailboxes of {onboarding_id}"
        response = self.send("POST", f"{V1}/{onboarding_id}/mailboxes", what, json={change: mailboxes})
        return dict(self.expect(response, what, HTTPStatus.ACCEPTED).json())

    def diagnose(self, onboarding_id: str) -> httpx.Response:
        """GET /api/v1/onboardings/{id}/diagnosis: 202 with the report's Location."""
        what = f"diagnose {onboarding_id}"
        response = self.send("GET", f"{V1}/{onboarding_id}/diagnosis", what)
        return self.expect(response, what, HTTPStatus.ACCEPTED)

    def pages(self, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Every page of the listing, following ``nextLink`` until ``continuationToken`` is null."""
        path: str = V1
        query: dict[str, str] | None = params
        while True:
            response = self.expect(self.send("GET", path, "list", params=query), "list", HTTPStatus.OK)
            page = dict(response.json())
            yield page
            if not page.get("continuationToken") or not page.get("nextLink"):
                return
            path, query = self.on_base(str(page["nextLink"])), None


Sleep = Callable[[float], None]
