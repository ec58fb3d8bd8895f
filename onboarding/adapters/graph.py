"""Microsoft Graph: the app registration, its secret, its service principal, app roles and mail.

msgraph-sdk's own RetryHandler is switched off for every request of this client: it retries POSTs
too (a retried ``addPassword`` mints a second secret whose value is lost) and sleeps whatever
``Retry-After`` says. Idempotent calls are retried here instead (``_retry``); ``add_password`` is
sent exactly once and also carries a per-request ``RetryHandlerOption(max_retries=0)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit
from uuid import UUID

from onboarding.adapters._retry import DEFAULT_POLICY, RetryPolicy, Sleep, parse_retry_after, retrying
from onboarding.domain import AppRegistration, ExchangeResource
from onboarding.errors import (
    InvalidRequestError,
    NotFoundError,
    OnboardingError,
    PermissionDeniedError,
    TransientError,
    service_code,
)
from onboarding.redaction import redact
from onboarding.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from kiota_abstractions.request_information import RequestInformation

T = TypeVar("T")

APP_PERMISSION = "Application.ReadWrite.OwnedBy"
# POST /servicePrincipals/{id}/appRoleAssignedTo is documented with both (docs/sandbox-facts.md).
ASSIGN_PERMISSION = "AppRoleAssignment.ReadWrite.All and Application.Read.All"
MAIL_PERMISSION = "Mail.Send"
DOMAIN_PERMISSION = "Domain.Read.All"
REPLICATION = "replication"
# Graph's answer to POST /servicePrincipals while the new app has not replicated to the replica that
# serves it (400 Request_BadRequest, details[].code NoBackingApplicationObject): the code is the
# classifier; the text is the fallback for a body without details. See docs/sandbox-facts.md.
NO_BACKING_APPLICATION = "NoBackingApplicationObject"
# Graph's code for a second POST /servicePrincipals of the same appId (409; docs/sandbox-facts.md GR-7).
ALREADY_IN_USE = "Request_MultipleObjectsWithSameKeyValue"
_NO_BACKING_TEXT = "does not reference a valid application object"

# Codes Graph answers addPassword with when the tenant's app management policy refuses the secret.
APP_POLICY_CODES = ("CredentialTypeNotAllowedAsPerAppPolicy", "CredentialInvalidLifetimeAsPerAppPolicy")
APP_POLICY_FIX = (
    "Submit the onboarding again with a secretLifetimeDays within the policy's maximum password "
    "lifetime, or have an admin exempt this app from the tenant's app management policy (an "
    "appManagementPolicy assigned to the app); where the policy blocks secrets altogether, only a "
    "policy exception or a certificate credential can work."
)


@dataclass(frozen=True)
class PasswordInfo:
    key_id: str
    display_name: str
    end_date_time: datetime


@dataclass(frozen=True)
class NewPassword:
    key_id: str
    secret_text: str = field(repr=False)
    end_date_time: datetime


@dataclass(frozen=True)
class KeyCredentialInfo:
    key_id: str
    display_name: str
    end_date_time: datetime


@dataclass(frozen=True)
class CredentialInfo:
    """A password (client secret) or key (certificate) credential on an app, without its value."""

    key_id: str
    end_date_time: datetime
    kind: str  # "password" or "certificate"


@dataclass(frozen=True)
class AppCredentials:
    object_id: str
    app_id: str
    credentials: tuple[CredentialInfo, ...]


@dataclass(frozen=True)
class RoleAssignment:
    id: str
    resource_id: str
    app_role_id: str


def graph_error(exc: BaseException, action: str, *, permission: str = APP_PERMISSION) -> OnboardingError:
    """Map an msgraph-sdk/httpx failure to a project error. ``action`` says what was being done, in
    words ("create the app registration"). Only the project's own text goes into the message; Graph's
    message (redacted, shortened) stays on ``upstream`` for the callers' classification, and Graph's
    error code goes into ``code`` (issue 14: "Insufficient privileges..." reached status and emails)."""
    import httpx
    from azure.core.exceptions import AzureError
    from kiota_abstractions.api_error import APIError

    if isinstance(exc, AzureError):
        # The token for Graph failed (the identity endpoint throttled, failed or was unreachable):
        # kiota's auth provider lets azure-identity's error through.
        from onboarding.adapters.identity import map_identity_error

        return map_identity_error(exc)
    if isinstance(exc, httpx.TimeoutException | httpx.TransportError):
        return TransientError(
            f"Microsoft Graph did not answer while trying to {action} (connection dropped or timed out).",
            fix="Try again later.",
            code="network",
        )
    if not isinstance(exc, APIError):
        return OnboardingError(f"Failed to {action} ({type(exc).__name__}).")
    status = exc.response_status_code or 0
    headers = exc.response_headers or {}
    odata = getattr(exc, "error", None)
    code = service_code(getattr(odata, "code", ""))
    detail = str(getattr(odata, "message", "") or "")
    detail_codes = {str(getattr(d, "code", "") or "") for d in getattr(odata, "details", None) or ()}
    if status == 400 and (NO_BACKING_APPLICATION in detail_codes or _NO_BACKING_TEXT in detail):
        # Not transient here: replication takes minutes, so the caller turns it into a poll rather
        # than an in-process retry. Classified by the documented details code; the text is the
        # fallback for a body without details.
        code = NO_BACKING_APPLICATION
    error = _graph_error(status, headers, code, action, permission)
    error.upstream = redact(detail)[:300]
    return error


def _graph_error(status: int, headers: Any, code: str, action: str, permission: str) -> OnboardingError:
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(_header(headers, "Retry-After"))
        what = "throttled" if status == 429 else f"answered HTTP {status}"
        return TransientError(
            f"Microsoft Graph {what} while trying to {action}.",
            retry_after=retry_after,
            fix="Try again later.",
            code="throttled" if status == 429 else "unavailable",
        )
    if status == 404:
        return NotFoundError(f"Microsoft Graph found nothing to {action}.", code=code or "not_found")
    if status == 401:
        return PermissionDeniedError(
            f"Microsoft Graph rejected the function app's token while trying to {action}.",
            fix="Check that the managed identity's token is issued for the Graph endpoint configured in "
            "GRAPH_ENDPOINT.",
            code="unauthorized",
        )
    if status == 403:
        return PermissionDeniedError(
            f"The function app's identity may not {action}.",
            fix=f"Grant the managed identity the Microsoft Graph application permission {permission} "
            "and admin-consent it.",
            code=code or "forbidden",
        )
    return InvalidRequestError(f"Microsoft Graph refused to {action} (HTTP {status}).", code=code)


def _not_readable_yet(object_id: str) -> TransientError:
    """Graph answers 404 on /applications/{id} for a while after the app was created (replicas
    catching up; docs/sandbox-facts.md): retry later rather than fail."""
    return TransientError(
        f"Microsoft Graph does not find app registration {object_id} yet (directory replication).",
        fix="Usually resolves within minutes; if it persists, check that the app registration still exists.",
        code=REPLICATION,
    )


def _header(headers: Any, name: str) -> str | None:
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    value = getter(name) or getter(name.lower())
    return str(value) if value is not None else None


def _graph_time(text: str) -> datetime:
    """A Graph DateTimeOffset (ISO 8601, UTC as ``Z``, up to 7 fractional digits) as an aware datetime;
    one without an offset is taken as UTC, as Graph means it."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _uuid(value: str, what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise InvalidRequestError(f"{what} {value!r} is not a GUID.") from None


async def verified_domains(
    settings: Settings, credential: AsyncTokenCredential, *, timeout: float = 15.0
) -> frozenset[str]:
    """The tenant's verified domain names, lower-case: ``GET /domains`` with Domain.Read.All, the
    least privileged permission that reads them (learn.microsoft.com/graph/api/domain-list).

    Plain httpx rather than msgraph-sdk: the API's request path calls this, and importing the SDK
    there would cost every cold start seconds. Errors map as every Graph call's do."""
    import httpx

    from onboarding.adapters.identity import map_identity_error

    action = "read the tenant's domains"
    try:
        token = (await credential.get_token(settings.graph_scope)).token
    except Exception as exc:
        raise map_identity_error(exc) from None
    url: str | None = f"{settings.graph_endpoint}/v1.0/domains?$select=id,isVerified"
    names: set[str] = set()
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
        while url:
            try:
                response = await http.get(url, headers={"Authorization": f"Bearer {token}"})
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise graph_error(exc, action) from None
            body = (
                response.json()
                if response.headers.get("content-type", "").startswith("application/json")
                else {}
            )
            if response.status_code != 200:
                error = body.get("error") if isinstance(body, dict) else None
                code = service_code(error.get("code") if isinstance(error, dict) else "")
                raise _graph_error(response.status_code, response.headers, code, action, DOMAIN_PERMISSION)
            names.update(
                str(d["id"]).lower() for d in body.get("value") or () if d.get("id") and d.get("isVerified")
            )
            url = body.get("@odata.nextLink")
    return frozenset(names)


class GraphDirectory:
    def __init__(
        self,
        settings: Settings,
        credential: AsyncTokenCredential,
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        timeout: float = 30.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        import httpx
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from kiota_http.middleware.options import RetryHandlerOption
        from msgraph import GraphRequestAdapter, GraphServiceClient
        from msgraph_core import GraphClientFactory

        self._settings = settings
        self._credential = credential
        self._policy = policy
        self._sleep = sleep
        from onboarding.adapters._tls import http_client

        # For the one request msgraph-sdk cannot send: sendMail's MIME form (a text/plain body).
        self._raw, self._owns_raw = http_client(timeout=timeout)
        base_url = f"{settings.graph_endpoint}/v1.0"
        host = urlsplit(settings.graph_endpoint).hostname or ""
        # Without the host in allowed_hosts the provider silently sends no Authorization header.
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[settings.graph_scope], allowed_hosts=[host]
        )

        def with_middleware(client: httpx.AsyncClient) -> httpx.AsyncClient:
            return GraphClientFactory.create_with_default_middleware(
                client=client,
                # The SDK's retries off for every request (see the module docstring); ours are in _call.
                options={
                    RetryHandlerOption.get_key(): RetryHandlerOption(
                        delay=0, max_retries=0, should_retry=False
                    )
                },
            )

        # Shared by the worker's activities (onboarding.adapters._tls); the base URL is the adapter's.
        http, self._owns_http = http_client(timeout=timeout, setup=with_middleware, use="graph")
        self._http = http
        adapter = GraphRequestAdapter(auth, client=http)
        adapter.base_url = base_url
        self._client = GraphServiceClient(request_adapter=adapter)

    async def _call(
        self,
        action: str,
        call: Callable[[], Awaitable[T]],
        *,
        permission: str = APP_PERMISSION,
        retry: bool = True,
    ) -> T:
        async def once() -> T:
            try:
                return await call()
            except OnboardingError:
                raise
            except Exception as exc:
                raise graph_error(exc, action, permission=permission) from None

        if not retry:
            return await once()
        return await retrying(once, self._policy, sleep=self._sleep)

    async def _json(
        self,
        action: str,
        request: Callable[[], RequestInformation],
        *,
        permission: str = APP_PERMISSION,
        retry: bool = True,
    ) -> Any:
        """Send a request msgraph-sdk built (URL, query, body, auth, middleware, error mapping) and
        read its answer as JSON rather than as the SDK's models; None when it has no body.

        Why: the SDK's model parsing cost the benchmark machine 7 ms for one small application and
        12 ms for three app role assignments (``Entity.get_field_deserializers`` runs some 1,200 import
        statements per object; msgraph-sdk-python issue #584, open). These reads are on every
        onboarding's critical path; what they read is a few documented properties."""
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        adapter: Any = self._client.request_adapter  # its stub types this call's answer as None

        async def send() -> Any:
            raw = await adapter.send_primitive_async(request(), "bytes", {"XXX": ODataError})
            return json.loads(raw) if raw else None

        return await self._call(action, send, permission=permission, retry=retry)

    # --- the Exchange Online resource -------------------------------------------------------------

    async def get_resource(self, app_id: str, role_values: Sequence[str]) -> ExchangeResource:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.service_principals_with_app_id.service_principals_with_app_id_request_builder import (
            ServicePrincipalsWithAppIdRequestBuilder as B,
        )

        config = RequestConfiguration(
            query_parameters=B.ServicePrincipalsWithAppIdRequestBuilderGetQueryParameters(
                select=["id", "appRoles"]
            )
        )
        builder = self._client.service_principals_with_app_id(app_id)
        sp = await self._json(
            f"read the service principal of app {app_id}",
            lambda: builder.to_get_request_information(request_configuration=config),
        )
        if not sp or not sp.get("id"):
            raise NotFoundError(f"The tenant has no service principal for app {app_id}.")
        roles = {r["value"]: str(r["id"]) for r in sp.get("appRoles") or () if r.get("value") and r.get("id")}
        missing = [v for v in role_values if v not in roles]
        if missing:
            raise NotFoundError(
                f"The service principal of app {app_id} has no app role {', '.join(missing)}.",
                fix="Check the permission names (IMAP.AccessAsApp, POP.AccessAsApp) and that Exchange Online "
                "is licensed in the tenant.",
                code="app_role_missing",
            )
        return ExchangeResource(
            service_principal_id=str(sp["id"]), app_role_ids={v: roles[v] for v in role_values}
        )

    # --- the app registration ---------------------------------------------------------------------

    async def upsert_application(
        self,
        *,
        unique_name: str,
        display_name: str,
        resource: ExchangeResource,
        resource_app_id: str,
        role_values: Sequence[str],
        redirect_uris: Sequence[str],
        notes: str,
        tags: Sequence[str],
    ) -> AppRegistration:
        """Create-or-update by ``uniqueName``: a retry updates the same app instead of adding one."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.models.application import Application
        from msgraph.generated.models.required_resource_access import RequiredResourceAccess
        from msgraph.generated.models.resource_access import ResourceAccess
        from msgraph.generated.models.web_application import WebApplication

        body = Application(
            display_name=display_name,
            sign_in_audience="AzureADMyOrg",
            notes=notes,
            tags=list(tags),
            web=WebApplication(redirect_uris=list(redirect_uris)),
            # Only the Exchange application permissions: no delegated Graph User.Read.
            required_resource_access=[
                RequiredResourceAccess(
                    resource_app_id=resource_app_id,
                    resource_access=[
                        ResourceAccess(id=_uuid(resource.app_role_ids[v], "app role id"), type="Role")
                        for v in role_values
                    ],
                )
            ],
        )
        config: RequestConfiguration[Any] = RequestConfiguration()
        config.headers.add("Prefer", "create-if-missing")
        builder = self._client.applications_with_unique_name(unique_name)
        created = await self._json(
            "create or update the app registration",
            lambda: builder.to_patch_request_information(body, request_configuration=config),
        )
        if created and created.get("id") and created.get("appId"):
            return AppRegistration(
                object_id=str(created["id"]), app_id=str(created["appId"]), unique_name=unique_name
            )
        # 204: it existed and was updated; read back its ids.
        found = await self.find_application(unique_name)
        if found is None:
            raise TransientError(
                "The app registration was written but cannot be read back yet (directory replication).",
                code=REPLICATION,
            )
        return found

    async def find_application(self, unique_name: str) -> AppRegistration | None:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.applications_with_unique_name.applications_with_unique_name_request_builder import (
            ApplicationsWithUniqueNameRequestBuilder as B,
        )

        config = RequestConfiguration(
            query_parameters=B.ApplicationsWithUniqueNameRequestBuilderGetQueryParameters(
                select=["id", "appId", "uniqueName"]
            )
        )
        builder = self._client.applications_with_unique_name(unique_name)
        try:
            app = await self._json(
                "read the app registration",
                lambda: builder.to_get_request_information(request_configuration=config),
            )
        except NotFoundError:
            return None
        if not app or not app.get("id"):
            return None
        return AppRegistration(
            object_id=str(app["id"]), app_id=str(app.get("appId")), unique_name=unique_name
        )

    async def application_credentials(self, app_id: str) -> AppCredentials | None:
        """The app registration with this application id and its credentials (password and key), or
        None when Entra ID has none: ``GET /applications(appId='...')`` (Graph "Get application")."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.applications_with_app_id.applications_with_app_id_request_builder import (
            ApplicationsWithAppIdRequestBuilder as B,
        )

        config = RequestConfiguration(
            query_parameters=B.ApplicationsWithAppIdRequestBuilderGetQueryParameters(
                select=["id", "appId", "passwordCredentials", "keyCredentials"]
            )
        )
        builder = self._client.applications_with_app_id(app_id)
        try:
            app = await self._call(
                "read the app registration", lambda: builder.get(request_configuration=config)
            )
        except NotFoundError:
            return None
        if app is None or not app.id:
            return None
        passwords = [
            CredentialInfo(str(p.key_id), p.end_date_time, "password")
            for p in app.password_credentials or ()
            if p.key_id and p.end_date_time
        ]
        keys = [
            CredentialInfo(str(k.key_id), k.end_date_time, "certificate")
            for k in app.key_credentials or ()
            if k.key_id and k.end_date_time
        ]
        return AppCredentials(str(app.id), str(app.app_id or app_id), (*passwords, *keys))

    async def delete_application(self, object_id: str) -> None:
        """Soft delete (restorable for 30 days); already gone counts as done."""
        builder = self._client.applications.by_application_id(object_id)
        with contextlib.suppress(NotFoundError):
            await self._call("delete the app registration", lambda: builder.delete())

    async def purge_deleted_item(self, object_id: str) -> None:
        """Permanently delete a soft-deleted object (an app, or its service principal) from
        ``/directory/deletedItems``: no restore after this. Not found counts as done: already purged,
        or never soft-deleted (docs/sandbox-facts.md, "Offboarding")."""
        builder = self._client.directory.deleted_items.by_directory_object_id(object_id)
        with contextlib.suppress(NotFoundError):
            await self._call(
                "permanently delete a deleted app or service principal", lambda: builder.delete()
            )

    # --- client secrets ---------------------------------------------------------------------------

    async def _read_app(self, object_id: str, field: str, what: str, *, as_json: bool = False) -> Any:
        """The app with ``id`` and one credential collection (``$select``), as the SDK's model or as
        JSON. A 404 right after the app was created is read-after-write lag, retried
        (docs/sandbox-facts.md); NotFoundError after that."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.applications.item.application_item_request_builder import (
            ApplicationItemRequestBuilder as B,
        )

        config = RequestConfiguration(
            query_parameters=B.ApplicationItemRequestBuilderGetQueryParameters(select=["id", field])
        )
        builder = self._client.applications.by_application_id(object_id)

        async def read() -> Any:
            try:
                if as_json:
                    return await self._json(
                        what,
                        lambda: builder.to_get_request_information(request_configuration=config),
                        retry=False,
                    )
                return await self._call(what, lambda: builder.get(request_configuration=config), retry=False)
            except NotFoundError:
                raise _not_readable_yet(object_id) from None

        app = await retrying(read, self._policy, sleep=self._sleep)
        if app is None:
            raise NotFoundError(f"App registration {object_id} not found.")
        return app

    async def list_passwords(self, object_id: str) -> list[PasswordInfo]:
        app = await self._read_app(
            object_id, "passwordCredentials", "read the app's client secrets", as_json=True
        )
        return [
            PasswordInfo(str(p["keyId"]), p.get("displayName") or "", _graph_time(p["endDateTime"]))
            for p in app.get("passwordCredentials") or ()
            if p.get("keyId") and p.get("endDateTime")
        ]

    async def add_password(self, object_id: str, display_name: str, end_date_time: datetime) -> NewPassword:
        """Not idempotent: sent exactly once. A failure leaves at most one credential labelled
        ``display_name`` whose value nobody has; the caller finds it by label and removes it."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from kiota_http.middleware.options import RetryHandlerOption
        from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
            AddPasswordPostRequestBody,
        )
        from msgraph.generated.models.password_credential import PasswordCredential

        body = AddPasswordPostRequestBody(
            password_credential=PasswordCredential(display_name=display_name, end_date_time=end_date_time)
        )
        config: RequestConfiguration[Any] = RequestConfiguration(
            options=[RetryHandlerOption(delay=0, max_retries=0, should_retry=False)]
        )
        builder = self._client.applications.by_application_id(object_id).add_password
        try:
            new = await self._call(
                "add a client secret to the app",
                lambda: builder.post(body, request_configuration=config),
                retry=False,
            )
        except NotFoundError:
            # Nothing was minted; the next attempt (a new activity run) reads the credentials first.
            raise _not_readable_yet(object_id) from None
        except OnboardingError as exc:
            # Classified by Graph's code, whatever the status (captures show 400).
            if exc.retryable or exc.code not in APP_POLICY_CODES:
                raise
            raise InvalidRequestError(
                f"Microsoft Graph refused the client secret for app {object_id}: the tenant's app management "
                f"policy does not allow it ({exc.code}).",
                fix=APP_POLICY_FIX,
                code="secret_refused_by_policy",
            ) from None
        if new is None or not new.secret_text or not new.key_id:
            raise OnboardingError("Microsoft Graph returned no secret for the new client secret.")
        return NewPassword(
            key_id=str(new.key_id),
            secret_text=new.secret_text,
            end_date_time=new.end_date_time or end_date_time,
        )

    async def remove_password(self, object_id: str, key_id: str) -> None:
        """Idempotent: a key that is already gone counts as removed."""
        from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
            RemovePasswordPostRequestBody,
        )

        body = RemovePasswordPostRequestBody(key_id=_uuid(key_id, "key id"))
        builder = self._client.applications.by_application_id(object_id).remove_password
        try:
            await self._call("remove a client secret from the app", lambda: builder.post(body))
        except NotFoundError:
            pass
        except InvalidRequestError:
            # Graph refuses an unknown key with a 400 whose words are not a contract (only real
            # clients quote them: docs/sandbox-facts.md GR-8), so the app's own list decides.
            if await self._has_password(object_id, key_id):
                raise

    async def _has_password(self, object_id: str, key_id: str) -> bool:
        try:
            held = await self.list_passwords(object_id)
        except NotFoundError:
            return False
        return any(p.key_id.lower() == key_id.lower() for p in held)

    # --- certificates (key credentials) ----------------------------------------------------------
    # Written with PATCH /applications/{id} {"keyCredentials": [...]}, the whole collection, not with
    # addKey/removeKey: those need a proof-of-possession JWT signed by a certificate already valid on
    # the app, which a first certificate (or a switch from a secret) does not have (Graph "application:
    # addKey"). The collection is read with $select=keyCredentials on the one app, the only read that
    # returns each credential's key, so that the PATCH keeps the others (Graph "keyCredential").

    async def _key_credentials(self, object_id: str) -> list[Any]:
        app = await self._read_app(object_id, "keyCredentials", "read the app's certificates")
        return list(app.key_credentials or ())

    async def list_key_credentials(self, object_id: str) -> list[KeyCredentialInfo]:
        return [
            KeyCredentialInfo(str(k.key_id), k.display_name or "", k.end_date_time)
            for k in await self._key_credentials(object_id)
            if k.key_id and k.end_date_time
        ]

    async def _write_key_credentials(self, object_id: str, keys: list[Any]) -> None:
        from msgraph.generated.models.application import Application

        builder = self._client.applications.by_application_id(object_id)
        body = Application(key_credentials=keys)
        await self._call("update the app's certificates", lambda: builder.patch(body))

    async def add_key_credential(
        self,
        object_id: str,
        *,
        key_id: str,
        display_name: str,
        certificate: bytes,
        start: datetime,
        end: datetime,
    ) -> None:
        """Put the certificate (public part, DER) on the app under ``key_id``. Idempotent: a key id
        already on the app counts as done. Sent as a whole-collection PATCH, so a concurrent change to
        the app's certificates could be lost; one rotation per onboarding runs at a time."""
        from msgraph.generated.models.key_credential import KeyCredential

        keys = await self._key_credentials(object_id)
        if any(str(k.key_id).lower() == key_id.lower() for k in keys):
            return
        new = KeyCredential(
            key_id=_uuid(key_id, "key id"),
            display_name=display_name,
            type="AsymmetricX509Cert",
            usage="Verify",
            key=certificate,
            start_date_time=start,
            end_date_time=end,
        )
        await self._write_key_credentials(object_id, [*keys, new])

    async def remove_key_credential(self, object_id: str, key_id: str) -> None:
        """Idempotent: a key that is already gone counts as removed."""
        keys = await self._key_credentials(object_id)
        kept = [k for k in keys if str(k.key_id).lower() != key_id.lower()]
        if len(kept) != len(keys):
            await self._write_key_credentials(object_id, kept)

    # --- the service principal and its app roles --------------------------------------------------

    async def ensure_service_principal(self, app_id: str) -> str:
        """Get or create the app's service principal (enterprise application); returns its object id."""
        from msgraph.generated.models.service_principal import ServicePrincipal

        existing = await self._find_service_principal(app_id)
        if existing:
            return existing
        body = ServicePrincipal(app_id=app_id)
        try:
            # POST, but safe to retry: a second create of the same appId fails "already exists".
            sp = await self._json(
                "create the app's service principal",
                lambda: self._client.service_principals.to_post_request_information(body),
            )
        except (NotFoundError, InvalidRequestError) as exc:
            if isinstance(exc, NotFoundError) or exc.code == NO_BACKING_APPLICATION:
                # Right after the app is created Graph may not see it yet (NoBackingApplicationObject).
                raise TransientError(
                    "Microsoft Graph does not see the new app yet (directory replication).",
                    fix="Usually resolves within minutes; if it does not, check that the app still exists.",
                    code=REPLICATION,
                ) from None
            if exc.code != ALREADY_IN_USE:
                raise
            # Created by an earlier attempt (or concurrently): read it back.
            found = await self._find_service_principal(app_id)
            if not found:
                raise TransientError(
                    "The app's service principal exists but cannot be read yet (directory replication).",
                    code=REPLICATION,
                ) from None
            return found
        if not sp or not sp.get("id"):
            raise OnboardingError("Microsoft Graph created the service principal but returned no id.")
        return str(sp["id"])

    async def find_service_principal(self, app_id: str) -> str | None:
        """The object id of the app's service principal as Graph sees it, or None."""
        return await self._find_service_principal(app_id)

    async def _find_service_principal(self, app_id: str) -> str | None:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.service_principals_with_app_id.service_principals_with_app_id_request_builder import (
            ServicePrincipalsWithAppIdRequestBuilder as B,
        )

        config = RequestConfiguration(
            query_parameters=B.ServicePrincipalsWithAppIdRequestBuilderGetQueryParameters(select=["id"])
        )
        builder = self._client.service_principals_with_app_id(app_id)
        try:
            sp = await self._json(
                "read the app's service principal",
                lambda: builder.to_get_request_information(request_configuration=config),
            )
        except NotFoundError:
            return None
        return str(sp["id"]) if sp and sp.get("id") else None

    async def list_app_role_assignments(self, service_principal_id: str) -> list[RoleAssignment]:
        builder = self._client.service_principals.by_service_principal_id(
            service_principal_id
        ).app_role_assignments
        action = "read the app's role assignments"
        page = await self._json(action, lambda: builder.to_get_request_information())
        result: list[RoleAssignment] = []
        while page:
            result.extend(
                RoleAssignment(str(a.get("id")), str(a["resourceId"]), str(a["appRoleId"]))
                for a in page.get("value") or ()
                if a.get("resourceId") and a.get("appRoleId")
            )
            next_link = page.get("@odata.nextLink")
            if not next_link:
                break
            following = builder.with_url(next_link)
            page = await self._json(action, lambda b=following: b.to_get_request_information())  # type: ignore[misc]
        return result

    async def assign_app_role(self, service_principal_id: str, resource_id: str, app_role_id: str) -> None:
        """Grant an application permission directly (what admin consent produces). Idempotent."""
        from msgraph.generated.models.app_role_assignment import AppRoleAssignment

        body = AppRoleAssignment(
            principal_id=_uuid(service_principal_id, "service principal id"),
            resource_id=_uuid(resource_id, "resource id"),
            app_role_id=_uuid(app_role_id, "app role id"),
        )
        builder = self._client.service_principals.by_service_principal_id(resource_id).app_role_assigned_to
        try:
            await self._call("assign the app role", lambda: builder.post(body), permission=ASSIGN_PERMISSION)
        except InvalidRequestError:
            # A repeated grant is refused with a 400 whose words no public source documents
            # (docs/sandbox-facts.md GR-9): it counts as done only if the assignment can be read back.
            try:
                held = await self.list_app_role_assignments(service_principal_id)
            except NotFoundError:  # the principal itself has not replicated to this replica yet
                held = []
            if any(a.resource_id == resource_id and a.app_role_id == app_role_id for a in held):
                return
            raise TransientError(
                "Microsoft Graph refused the app role assignment, and the app holds no such assignment "
                "(yet).",
                fix="If this lasts, check that the app role exists on the resource and that the function "
                f"app's identity has {ASSIGN_PERMISSION} and Application.Read.All.",
                code=REPLICATION,
            ) from None

    # --- mail -------------------------------------------------------------------------------------

    async def send_mail(
        self, sender: str, to: Sequence[str], subject: str, html_body: str, text_body: str = ""
    ) -> None:
        """Send as ``sender`` a ``multipart/alternative`` message (plain text and HTML). Graph's JSON
        message has one body of one contentType, so the message goes in Graph's MIME form: the whole
        MIME message base64-encoded, ``Content-Type: text/plain`` (learn.microsoft.com/graph/api/
        user-sendmail, example 4). Retried on throttling: a duplicate email is better than none."""
        import base64
        from email import policy
        from email.message import EmailMessage

        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(to)
        message["Subject"] = subject
        message.set_content(text_body or "This message is in HTML.")
        message.add_alternative(html_body, subtype="html")
        payload = base64.b64encode(message.as_bytes(policy=policy.SMTP))  # CRLF lines (RFC 5322 2.1)
        url = f"{self._settings.graph_endpoint}/v1.0/users/{quote(sender, safe='@')}/sendMail"

        async def post() -> None:
            await self._post_raw(url, payload, "text/plain", f"send mail as {sender}", MAIL_PERMISSION)

        try:
            await self._call(f"send mail as {sender}", post, permission=MAIL_PERMISSION)
        except NotFoundError:
            raise NotFoundError(
                f"The sender mailbox {sender} does not exist.",
                fix="Set MAIL_SENDER to an existing mailbox the function app may send as.",
                code="sender_not_found",
            ) from None

    async def _post_raw(
        self, url: str, content: bytes, content_type: str, action: str, permission: str
    ) -> None:
        """One POST of a non-JSON body with the identity's Graph token; errors mapped as every call's."""
        import httpx

        try:
            token = (await self._credential.get_token(self._settings.graph_scope)).token
        except Exception as exc:
            from onboarding.adapters.identity import map_identity_error

            raise map_identity_error(exc) from None
        try:
            response = await self._raw.post(
                url,
                content=content,
                headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
            )
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise graph_error(exc, action, permission=permission) from None
        if response.status_code in (200, 202, 204):
            return
        try:
            error = response.json().get("error") or {}
        except ValueError:
            error = {}
        raise _graph_error(
            response.status_code, response.headers, service_code(error.get("code")), action, permission
        )

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()
        if self._owns_raw:
            await self._raw.aclose()
