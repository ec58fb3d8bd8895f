"""Exchange Online admin API: the cmdlets the procedure needs, over REST (``InvokeCommand``).

Microsoft does not document this API (the ExchangeOnlineManagement v3 module and CIPP use it), so its
wire details stay in this module. Every call goes through one ``AdaptiveLimiter``: Exchange throttles
per tenant with limits it does not publish, and mailbox grants should run as fast as it allows and
no faster. All cmdlets used here are safe to repeat, so every call is retried in-process.

Per-mailbox cmdlets (``Add-``/``Remove-MailboxPermission``) go out through the API's ``$batch``
endpoint when ``EXCHANGE_CALLS`` is ``batch``: the cmdlets that concurrent callers start together are
sent up to ten to a request (docs/sandbox-facts.md EX-11), two requests at once, and each caller gets its own cmdlet's result or
error, classified exactly as a single call's would be.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onboarding import opsevents
from onboarding.adapters._retry import (
    DEFAULT_POLICY,
    RetryPolicy,
    Sleep,
    parse_retry_after,
    retry_delay,
    retrying,
)
from onboarding.adapters._throttle import Ticket, shared_limiter
from onboarding.errors import (
    InvalidRequestError,
    NotFoundError,
    OnboardingError,
    PermissionDeniedError,
    TransientError,
)
from onboarding.redaction import redact
from onboarding.settings import ExchangeCalls, Settings

if TYPE_CHECKING:
    import httpx
    from azure.core.credentials_async import AsyncTokenCredential

log = logging.getLogger(__name__)

# The routing hint the ExchangeOnlineManagement module sends for app-only calls.
SYSTEM_MAILBOX = "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}"
PERMISSION_FIX = (
    "Grant the function app's managed identity the Office 365 Exchange Online application permission "
    "Exchange.ManageAsApp and the Entra role Exchange Administrator."
)
OBJECT_ID_FIX = (
    "Use the object id of the app's service principal (Entra ID > Enterprise applications, or "
    "GET /servicePrincipals(appId='<appId>')), not the object id of the app registration."
)
# Only the sourced forms (docs/sandbox-facts.md EX-6, EX-7, EX-8): an answer in other words is not
# guessed at; it fails its mailbox (or step) with the project's own text.
_NOT_FOUND = ("couldn't be found", "managementobjectnotfound")
# "The operation couldn't be performed because object '<identity>' couldn't be found on '<server>'."
_MISSING_OBJECT = re.compile(r"object '([^']+)' couldn't be found", re.IGNORECASE)
# New-ServicePrincipal's answer when Exchange's copy of the directory has no such service principal:
# for minutes after it was created, and for good when the id is wrong (docs/sandbox-facts.md).
SP_NOT_IN_EXCHANGE_DIRECTORY = "AADServicePrincipalNotFound"
_DETAIL_PREFIX = re.compile(r"^(?:[\w]*\|)?[\w.]+\|")
_ALREADY = ("already exist", "an existing permission entry was found")
_ABSENT_PERMISSION = ("isn't present", "doesn't exist on the object")
# CIPP-API New-ExoBulkRequest: "The maximum batch size is 10" (docs/sandbox-facts.md EX-11).
BATCH_LIMIT = 10
# Batches out at once: with one, the whole concurrency waits on one request's round trip (latency and
# both sides' overhead), so the grant rate fell whenever the worker was busy (verification running
# beside the grants); with two, one request's round trip hides behind the other's.
BATCHES_IN_FLIGHT = 2
# Answer the other requests of a batch when one fails (OData's preference, as CIPP sends it).
CONTINUE_ON_ERROR = "odata.continue-on-error"


class CmdletError(InvalidRequestError):
    """A cmdlet failed; ``text`` is Exchange's error text (redacted) for classification."""

    def __init__(self, cmdlet: str, text: str, status: int) -> None:
        # Exchange's text classifies the failure (``text``); the stored message is the project's own.
        super().__init__(f"Exchange Online refused {cmdlet} (HTTP {status}).", code="cmdlet_failed")
        self.upstream = text[:300]
        self.cmdlet = cmdlet
        self.text = text
        self.status = status

    @property
    def not_found(self) -> bool:
        low = self.text.lower()
        return any(t in low for t in _NOT_FOUND)

    @property
    def already(self) -> bool:
        low = self.text.lower()
        return any(t in low for t in _ALREADY)


def _detail_message(message: str) -> str:
    """The text of one ``error.details[].message``. Exchange sends it in two forms: ``ExNNNN|Type|text``
    and a JSON string ``{"Message": text, "TypeName": type, ...}`` (docs/sandbox-facts.md)."""
    stripped = message.strip()
    if stripped.startswith("{"):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping) and parsed.get("Message"):
            return str(parsed["Message"])
    return _DETAIL_PREFIX.sub("", message)


def error_text(payload: Any) -> str:
    """Exchange's error message: the inner exception's message, else ``error.details[].message``
    (either form), else ``error.message``. Redacted; the rest of the body is never kept."""
    if not isinstance(payload, Mapping):
        return ""
    error = payload.get("error")
    if not isinstance(error, Mapping):
        return ""
    messages: list[str] = []
    inner = error.get("innererror")
    # Captured bodies spell it "internalexception" (docs/sandbox-facts.md EX-3); read it either way.
    internal = None
    if isinstance(inner, Mapping):
        internal = next((v for k, v in inner.items() if str(k).lower() == "internalexception"), None)
    if isinstance(internal, Mapping) and internal.get("message"):
        messages.append(str(internal["message"]))
    if not messages:
        for detail in error.get("details") or ():
            if isinstance(detail, Mapping) and detail.get("message"):
                messages.append(_detail_message(str(detail["message"])))
    if not messages and error.get("message"):
        messages.append(_DETAIL_PREFIX.sub("", str(error["message"])))
    return redact(" ".join(messages))


def map_response(cmdlet: str, status: int, payload: Any, retry_after: str | None) -> OnboardingError:
    """The project error for a failed InvokeCommand response."""
    if status == 429 or status in (502, 503, 504):
        return TransientError(
            f"Exchange Online is throttling or unavailable (HTTP {status}) while running {cmdlet}.",
            retry_after=parse_retry_after(retry_after),
            fix="Try again later.",
            code="throttled" if status == 429 else "unavailable",
        )
    if status == 401:
        return PermissionDeniedError(
            f"Exchange Online rejected the function app's token for {cmdlet}.",
            fix=PERMISSION_FIX,
            code="unauthorized",
        )
    if status == 403:
        return PermissionDeniedError(
            f"The function app's identity may not run {cmdlet} in Exchange Online.",
            fix=PERMISSION_FIX,
            code="forbidden",
        )
    text = error_text(payload)
    if "is not recognized as the name of a cmdlet" in text:
        # Exchange hides the cmdlets a caller's RBAC roles do not grant.
        return PermissionDeniedError(
            f"Exchange Online does not let the function app's identity run {cmdlet}.",
            fix=PERMISSION_FIX,
            code="cmdlet_not_granted",
        )
    if status >= 500:
        # Exchange sends an error body with a 500 too: the status, not the text, says it is transient
        # (cmdlet refusals come back as 400).
        return TransientError(
            f"Exchange Online failed (HTTP {status}) while running {cmdlet}.", fix="Try again later."
        )
    if text:
        return CmdletError(cmdlet, text, status)
    return InvalidRequestError(f"Exchange Online refused {cmdlet} (HTTP {status}).", code="cmdlet_failed")


@dataclass(frozen=True)
class BatchItemResponse:
    """One answer inside a ``$batch`` response: the HTTP status, headers and body a single
    InvokeCommand request would have had."""

    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def retry_after(self) -> str | None:
        return next((str(v) for k, v in self.headers.items() if k.lower() == "retry-after"), None)


def parse_batch(payload: Mapping[str, Any], ids: Sequence[str]) -> dict[str, BatchItemResponse]:
    """The answers of a ``$batch`` response by request id (``responses[]`` of ``{id, status, headers,
    body}``, in any order). An answer without a status is read from its body, as CIPP does: an
    ``error`` object means 400, else 200. Ids that were not asked are ignored; a missing answer is
    missing from the result (the caller retries that cmdlet)."""
    wanted = {i.lower(): i for i in ids}
    found: dict[str, BatchItemResponse] = {}
    responses = payload.get("responses")
    for item in responses if isinstance(responses, list) else ():
        if not isinstance(item, Mapping):
            continue
        key = wanted.get(str(item.get("id", "")).lower())  # ids are not case-sensitive
        if key is None or key in found:
            continue
        body = item.get("body")
        headers = item.get("headers")
        status = item.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            try:
                status = int(str(status))
            except ValueError:
                has_error = isinstance(body, Mapping) and isinstance(body.get("error"), Mapping)
                status = 400 if has_error else 200
        found[key] = BatchItemResponse(
            status, {str(k): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else {}, body
        )
    return found


def item_error(cmdlet: str, answer: BatchItemResponse) -> OnboardingError | None:
    """The project error for one cmdlet's answer in a batch (``map_response``, as for a single call),
    or None when it succeeded with a readable body."""
    if 200 <= answer.status < 300:
        if isinstance(answer.body, Mapping):
            return None
        return TransientError(f"Exchange Online answered {cmdlet} with an unreadable body.")
    return map_response(cmdlet, answer.status, answer.body, answer.retry_after)


def throttled_inside(payload: Mapping[str, Any]) -> tuple[bool, float | None]:
    """Whether Exchange throttled any cmdlet inside an accepted batch, and the longest Retry-After."""
    responses = payload.get("responses")
    waits: list[float] = []
    hit = False
    for item in responses if isinstance(responses, list) else ():
        if isinstance(item, Mapping) and item.get("status") in (429, 503):
            hit = True
            headers = item.get("headers")
            if isinstance(headers, Mapping):
                wait = parse_retry_after(
                    next((str(v) for k, v in headers.items() if k.lower() == "retry-after"), None)
                )
                if wait is not None:
                    waits.append(wait)
    return hit, (max(waits) if waits else None)


def batch_refused() -> OnboardingError:
    return OnboardingError(
        "Exchange Online refused a $batch request of per-mailbox cmdlets.",
        fix="Set the app setting EXCHANGE_CALLS to single, and report the refusal.",
        code="batch_refused",
    )


@dataclass
class _Queued:
    """A cmdlet waiting for a place in a ``$batch`` request, the caller waiting for its answer, and
    how many times it was sent."""

    cmdlet: str
    parameters: dict[str, Any]
    answer: asyncio.Future[list[dict[str, Any]]] = field(repr=False)
    attempt: int = 0


# Where Get-ServicePrincipal output carries the Entra service principal's object id: Identity (Microsoft's
# IMAP/POP OAuth guide passes it to Add-MailboxPermission -User), ServiceId (the cmdlets' older name for
# it), ObjectId (the New-ServicePrincipal parameter). docs/sandbox-facts.md.
_OBJECT_ID_PROPERTIES = ("ObjectId", "ServiceId", "Identity", "Id")


def registered_object_ids(registration: Mapping[str, Any]) -> set[str]:
    """The object ids an Exchange service principal registration names, lower-cased, whichever of its
    properties carry them."""
    return {str(registration[k]).strip().lower() for k in _OBJECT_ID_PROPERTIES if registration.get(k)}


class ExchangeAdmin:
    def __init__(
        self,
        settings: Settings,
        credential: AsyncTokenCredential,
        *,
        tenant_id: str | None = None,
        max_concurrency: int | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        import httpx

        tenant = tenant_id or settings.tenant_id
        self._settings = settings
        self._credential = credential
        self._policy = policy
        self._sleep = sleep
        self._url = f"{settings.exchange_endpoint}/adminapi/beta/{tenant}/InvokeCommand"
        self._anchor = f"APP:{SYSTEM_MAILBOX}@{tenant}"
        # Shared by every ExchangeAdmin of this worker's event loop: the limits are the app's, not ours.
        self.limiter = shared_limiter(
            settings.exchange_endpoint, tenant, max_concurrency or settings.mailbox_concurrency
        )
        # This adapter's turn at the shared limiter: an activity's calls go before those of the
        # activities that started after it (onboarding/adapters/_throttle.py).
        self._priority = time.monotonic()
        if transport is None:
            from onboarding.adapters._tls import http_client

            # Shared by the worker's activities (onboarding.adapters._tls).
            self._http, self._owns_http = http_client(timeout=timeout)
        else:
            self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=transport)
            self._owns_http = True
        self._batch_url = f"{settings.exchange_endpoint}/adminapi/beta/{tenant}/$batch"
        self._queue: list[_Queued] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()

    async def _token(self) -> str:
        from onboarding.adapters.identity import map_identity_error

        try:
            access = await self._credential.get_token(self._settings.exchange_scope)
        except Exception as exc:
            raise map_identity_error(exc) from None
        return access.token

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "X-AnchorMailbox": self._anchor,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    async def _post(
        self,
        url: str,
        cmdlet: str,
        body: dict[str, Any],
        *,
        calls: int = 1,
        prefer: str | None = None,
        ticket: Ticket | None = None,
    ) -> dict[str, Any]:
        """One HTTP exchange under the limiter, counted as ``calls`` cmdlets; throttling answers lower
        its limit."""
        import httpx

        try:
            headers = self._headers(await self._token())
        except BaseException:
            if ticket is not None:  # taken by the batch dispatcher: not to be lost with the request
                await self.limiter.release(ticket)
            raise
        if calls > 1:
            # Each inner request carries the token and its anchor, as CIPP's do (docs/sandbox-facts.md EX-11).
            for request in body["requests"]:
                request["headers"] = dict(headers)
        if prefer:
            headers["Prefer"] = prefer
        if ticket is None:
            ticket = await self.limiter.acquire(calls, self._priority)
        throttled, retry_after = False, None
        try:
            try:
                response = await self._http.post(url, json=body, headers=headers)
            except (httpx.TimeoutException, httpx.TransportError):
                throttled = True  # an overloaded server drops connections too
                raise TransientError(
                    f"Exchange Online did not answer {cmdlet} (connection dropped or timed out).",
                    fix="Try again later.",
                    code="network",
                ) from None
            if response.status_code in (429, 503):
                throttled = True
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                opsevents.emit(
                    log,
                    opsevents.OpsEvent.EXCHANGE_THROTTLED,
                    logging.WARNING,
                    cmdlet=cmdlet,
                    status=response.status_code,
                    retry_after_s=int(retry_after or 0),
                )
            try:
                payload = response.json()
            except ValueError:
                payload = None
            if response.is_success and isinstance(payload, dict):
                if calls > 1:
                    # Cmdlets throttled inside an accepted batch teach the limiter as a 429 does.
                    throttled, retry_after = throttled_inside(payload)
                return payload
            if response.is_success:
                raise TransientError(f"Exchange Online answered {cmdlet} with an unreadable body.")
            raise map_response(cmdlet, response.status_code, payload, response.headers.get("Retry-After"))
        finally:
            await self.limiter.release(ticket, throttled=throttled, retry_after=retry_after)

    async def invoke(self, cmdlet: str, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run a cmdlet; returns every result object across ``@odata.nextLink`` pages."""
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": dict(parameters)}}
        results: list[dict[str, Any]] = []
        url: str | None = self._url
        while url:
            page = await retrying(lambda u=url: self._post(u, cmdlet, body), self._policy, sleep=self._sleep)  # type: ignore[misc]
            for warning in page.get("@adminapi.warnings") or ():
                log.info("Exchange Online warning for %s: %s", cmdlet, redact(str(warning))[:300])
            value = page.get("value")
            if isinstance(value, list):
                results.extend(v for v in value if isinstance(v, dict))
            next_link = page.get("@odata.nextLink")
            url = str(next_link) if next_link else None
        return results

    async def _per_mailbox(self, cmdlet: str, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A cmdlet about one mailbox: in a ``$batch`` with the others queued meanwhile, or alone, as
        ``EXCHANGE_CALLS`` says. Returns or raises what ``invoke`` would for the same answer."""
        if self._settings.exchange_calls is ExchangeCalls.SINGLE:
            return await self.invoke(cmdlet, parameters)
        answer: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._enqueue([_Queued(cmdlet, dict(parameters), answer)])
        return await answer

    def _enqueue(self, items: list[_Queued], *, first: bool = False) -> None:
        """Queue cmdlets (retries ``first``, so they are not overtaken) and make sure a dispatcher runs."""
        if first:
            self._queue[:0] = items
        else:
            self._queue.extend(items)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())

    async def _dispatch(self) -> None:
        """Cut the queue into batches as the limiter has room for them, so a batch holds what is queued
        when it can go (up to 10, and no more than the limiter's current concurrency)."""
        while self._queue:
            await self.limiter.room(self._batch_size(), self._priority)
            size = self._batch_size()
            ticket = await self.limiter.acquire(size, self._priority)
            items = self._queue[:size]
            del self._queue[:size]
            if all(q.answer.done() for q in items):  # every caller was cancelled meanwhile
                await self.limiter.release(ticket)
                continue
            self._spawn(self._send_batch(items, ticket))

    def _batch_size(self) -> int:
        """What is queued, up to 10, no more than a share of the limiter's concurrency that lets
        ``BATCHES_IN_FLIGHT`` requests be out at once, and no more than the room left now. The share
        is rounded up and the last request takes what is left, so an odd limit is used whole: after
        a throttling answer halved it to 5, rounding down sent two batches of 2 (4 calls in flight)
        where single calls had 5, and each recovery ran slower with ``$batch``."""
        limit = self.limiter.limit
        share = -(-limit // BATCHES_IN_FLIGHT)
        room = limit - self.limiter.in_flight
        return max(1, min(len(self._queue), BATCH_LIMIT, share, room if room > 0 else share))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _send_batch(self, items: list[_Queued], ticket: Ticket) -> None:
        """One ``$batch`` request; then each caller gets its cmdlet's values or error, and cmdlets
        answered with a transient error (the whole request's or their own) are queued again."""
        ids = [str(n) for n in range(1, len(items) + 1)]
        body = {
            "requests": [
                {
                    "id": rid,
                    "method": "POST",
                    "url": self._url,
                    "body": {"CmdletInput": {"CmdletName": q.cmdlet, "Parameters": q.parameters}},
                }
                for rid, q in zip(ids, items, strict=True)
            ]
        }
        label = f"a batch of {len(items)} cmdlets"
        try:
            payload = await self._post(
                self._batch_url, label, body, calls=len(items), prefer=CONTINUE_ON_ERROR, ticket=ticket
            )
        except TransientError as exc:  # nothing of it ran: all of it again, after the wait
            await self._retry([(q, exc) for q in items])
            return
        except PermissionDeniedError as exc:  # about the app: every caller learns it
            self._fail_all(items, exc)
            return
        except OnboardingError:
            # A refusal of the batch request itself says nothing about any one mailbox.
            self._fail_all(items, batch_refused())
            return
        except Exception as exc:  # a bug or a library error: the callers see it, not an orphan task
            self._fail_all(items, exc)
            return
        answers = parse_batch(payload, ids)
        again = [
            (q, e) for rid, q in zip(ids, items, strict=True) if (e := self._deliver(q, answers.get(rid)))
        ]
        await self._retry(again)

    async def _retry(self, failed: list[tuple[_Queued, TransientError]]) -> None:
        """Queue each cmdlet again after its wait (Retry-After, else backoff), or fail it for good."""
        waits: list[tuple[float, _Queued]] = []
        for q, exc in failed:
            if q.answer.done():  # its caller was cancelled meanwhile
                continue
            delay = retry_delay(exc, q.attempt, self._policy)
            if delay is None:
                q.answer.set_exception(exc)
            else:
                q.attempt += 1
                waits.append((delay, q))
        if waits:
            await self._sleep(max(d for d, _ in waits))
            self._enqueue([q for _, q in waits], first=True)

    @staticmethod
    def _fail_all(items: list[_Queued], error: BaseException) -> None:
        for q in items:
            if not q.answer.done():
                q.answer.set_exception(error)

    def _deliver(self, q: _Queued, answer: BatchItemResponse | None) -> TransientError | None:
        """Answer one caller from its part of the batch; a transient error is returned, to retry."""
        if q.answer.done():  # its caller was cancelled meanwhile
            return None
        if answer is None:
            return TransientError(
                f"Exchange Online's batch answer left out {q.cmdlet}.", fix="Try again later."
            )
        error = item_error(q.cmdlet, answer)
        if isinstance(error, TransientError):
            return error
        if error is not None:
            q.answer.set_exception(error)
            return None
        for warning in answer.body.get("@adminapi.warnings") or ():
            log.info("Exchange Online warning for %s: %s", q.cmdlet, redact(str(warning))[:300])
        if answer.body.get("@odata.nextLink"):
            # Per-mailbox cmdlets answer in one page; should one not, its rest must not be lost.
            q.answer.set_exception(
                InvalidRequestError(f"Exchange Online paged {q.cmdlet} inside a batch.", code="batch_paged")
            )
            return None
        value = answer.body.get("value")
        q.answer.set_result([v for v in value if isinstance(v, dict)] if isinstance(value, list) else [])
        return None

    # --- the app's service principal in Exchange ---------------------------------------------------

    async def _get_service_principal(self, app_id: str) -> dict[str, Any] | None:
        try:
            found = await self.invoke("Get-ServicePrincipal", {"Identity": app_id})
        except CmdletError as exc:
            if exc.not_found:
                return None
            raise
        return found[0] if found else None

    async def ensure_service_principal(
        self,
        app_id: str,
        service_principal_id: str,
        display_name: str,
        *,
        app_object_id: str | None = None,
    ) -> None:
        """``New-ServicePrincipal`` unless Exchange already has it with the right object id. A stale
        registration under another object id (a manual attempt with the app's object id) is replaced.

        Exchange answers ``AADServicePrincipalNotFound`` both for a service principal its copy of the
        directory has not caught up with and for a wrong object id (the app registration's), so that
        answer is a ``TransientError(code="replication")`` whose fix names both causes; the caller
        tells them apart with Graph (``steps.register_in_exchange``). Pass ``app_object_id`` to catch
        the wrong-id mistake for certain before anything is sent.
        """
        if app_object_id and app_object_id.lower() == service_principal_id.lower():
            raise InvalidRequestError(
                f"Object id {service_principal_id} is the app registration's, not its service principal's.",
                fix=OBJECT_ID_FIX,
                code="wrong_object_id",
            )
        existing = await self._get_service_principal(app_id)
        if existing is not None:
            if service_principal_id.lower() in registered_object_ids(existing):
                return
            await self.remove_service_principal(app_id)
        try:
            await self.invoke(
                "New-ServicePrincipal",
                {"AppId": app_id, "ObjectId": service_principal_id, "DisplayName": display_name},
            )
        except CmdletError as exc:
            if exc.already:
                return
            if exc.not_found or SP_NOT_IN_EXCHANGE_DIRECTORY.lower() in exc.text.lower():
                raise TransientError(
                    f"Exchange Online cannot find service principal {service_principal_id} of app {app_id} "
                    "in Entra ID: it is still replicating, or the id is not the service principal's.",
                    fix=f"If it persists: {OBJECT_ID_FIX}",
                    code="replication",
                ) from None
            raise

    async def remove_service_principal(self, app_id: str) -> None:
        try:
            await self.invoke("Remove-ServicePrincipal", {"Identity": app_id, "Confirm": False})
        except CmdletError as exc:
            if not exc.not_found:
                raise

    # --- mailboxes ------------------------------------------------------------------------------

    def _mailbox_error(self, exc: CmdletError, mailbox: str, service_principal_id: str) -> OnboardingError:
        missing = _MISSING_OBJECT.search(exc.text)
        if missing and missing.group(1).lower() == service_principal_id.lower():
            # The object Exchange could not find is the principal, not the mailbox.
            return TransientError(
                "Exchange Online does not know the app's service principal yet.",
                fix="Register it with New-ServicePrincipal first; if done, wait for replication.",
                code="replication",
            )
        return NotFoundError(
            f"Exchange Online has no mailbox {mailbox}.",
            fix="Check the address, or create the mailbox and onboard it again.",
            code="mailbox_not_found",
        )

    async def grant_full_access(self, mailbox: str, service_principal_id: str) -> None:
        """FullAccess without AutoMapping (no Outlook auto-mapping for an app). Idempotent."""
        try:
            await self._per_mailbox(
                "Add-MailboxPermission",
                {
                    "Identity": mailbox,
                    "User": service_principal_id,
                    "AccessRights": ["FullAccess"],
                    "AutoMapping": False,
                },
            )
        except CmdletError as exc:
            if exc.already:
                return
            if exc.not_found:
                raise self._mailbox_error(exc, mailbox, service_principal_id) from None
            raise

    async def remove_full_access(self, mailbox: str, service_principal_id: str) -> None:
        """Idempotent: a permission or mailbox that is already gone counts as removed."""
        try:
            await self._per_mailbox(
                "Remove-MailboxPermission",
                {
                    "Identity": mailbox,
                    "User": service_principal_id,
                    "AccessRights": ["FullAccess"],
                    "Confirm": False,
                },
            )
        except CmdletError as exc:
            low = exc.text.lower()
            if not (exc.not_found or any(t in low for t in _ABSENT_PERMISSION)):
                raise

    async def protocols_enabled(self, mailbox: str) -> dict[str, bool]:
        try:
            found = await self.invoke("Get-CASMailbox", {"Identity": mailbox})
        except CmdletError as exc:
            if exc.not_found:
                raise NotFoundError(
                    f"Exchange Online has no mailbox {mailbox}.", code="mailbox_not_found"
                ) from None
            raise
        if not found:
            raise NotFoundError(f"Exchange Online has no mailbox {mailbox}.", code="mailbox_not_found")
        cas = found[0]
        return {"IMAP": bool(cas.get("ImapEnabled")), "POP": bool(cas.get("PopEnabled"))}

    # --- read-only questions of the diagnosis -----------------------------------------------------

    async def registered_service_principal(self, app_id: str) -> set[str] | None:
        """The object ids Exchange's registration of ``app_id`` names (lower-case), None when Exchange
        has none (Get-ServicePrincipal)."""
        found = await self._get_service_principal(app_id)
        return registered_object_ids(found) if found is not None else None

    async def has_full_access(self, mailbox: str, service_principal_id: str) -> bool:
        """Whether the mailbox grants the principal FullAccess (Get-MailboxPermission -User): an entry
        allowing FullAccess and none denying it ("Typically, deny permissions override allow
        permissions", Get-MailboxPermission's documentation). ``AccessRights`` is read as a list (what
        InvokeCommand clients read) or as comma-joined text. A principal Exchange does not know holds
        nothing; an unknown mailbox is ``NotFoundError``. docs/sandbox-facts.md DG-2."""
        try:
            entries = await self.invoke(
                "Get-MailboxPermission", {"Identity": mailbox, "User": service_principal_id}
            )
        except CmdletError as exc:
            if not exc.not_found:
                raise
            missing = _MISSING_OBJECT.search(exc.text)
            if missing and missing.group(1).lower() == service_principal_id.lower():
                return False
            raise NotFoundError(
                f"Exchange Online has no mailbox {mailbox}.", code="mailbox_not_found"
            ) from None
        full = [entry for entry in entries if _names_full_access(entry)]
        return bool(full) and not any(_denies(entry) for entry in full)

    async def close(self) -> None:
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        if self._owns_http:
            await self._http.aclose()


def _names_full_access(entry: Mapping[str, Any]) -> bool:
    rights = entry.get("AccessRights") or ()
    values = rights if isinstance(rights, list) else str(rights).split(",")
    return any(str(v).strip().lower() == "fullaccess" for v in values)


def _denies(entry: Mapping[str, Any]) -> bool:
    return str(entry.get("Deny", False)).lower() == "true"
