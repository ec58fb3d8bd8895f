"""Microsoft Graph v1.0 stand-in: applications, service principals, app role assignments, deleted
items and sendMail, authorised as Graph does by the bearer token's audience and app roles."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from cryptography import x509

from sandbox.kv_certificates import thumbprint
from sandbox.state import (
    Application,
    AppRole,
    AppRoleAssignment,
    KeyCredential,
    SentMail,
    ServicePrincipal,
    TenantState,
)
from sandbox.tokens import TokenError
from sandbox.web import CALLER_KEY, Router, Unmodelled, make_app

READ_APPS = {
    "Application.Read.All",
    "Application.ReadWrite.All",
    "Application.ReadWrite.OwnedBy",
    "Directory.Read.All",
}
# What POST /servicePrincipals/{id}/appRoleAssignedTo needs beside AppRoleAssignment.ReadWrite.All.
ASSIGN_READ = {
    "Application.Read.All",
    "Directory.Read.All",
    "Application.ReadWrite.All",
    "Directory.ReadWrite.All",
}
INSUFFICIENT = "Insufficient privileges to complete the operation."
APP_KEY = r"(?:/(?P<id>[^/()']+)|\(appId='(?P<appId>[^']*)'\)|\(uniqueName='(?P<uniqueName>[^']*)'\))"
SP_KEY = r"(?:/(?P<id>[^/()']+)|\(appId='(?P<appId>[^']*)'\))"


class GraphError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or []


def odata_error(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, str]] | None = None,
    client_request_id: str | None = None,
) -> web.Response:
    """Graph's error envelope (docs/sandbox-facts.md, "Graph error envelope"). ``client-request-id``
    echoes the one the client sent (msgraph-sdk sends one with every request), else repeats ours."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    request_id = str(uuid.uuid4())
    client_id = client_request_id or request_id
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    error["innerError"] = {"date": now, "request-id": request_id, "client-request-id": client_id}
    return web.json_response(
        {"error": error},
        status=status,
        headers={"request-id": request_id, "client-request-id": client_id},
    )


def no_backing_application(app_id: str) -> GraphError:
    """POST /servicePrincipals for an appId Graph has no application for - unknown, or created moments
    ago and not replicated yet (docs/sandbox-facts.md, "Breaking behaviours (issue 15)")."""
    message = f"The appId '{app_id}' of the service principal does not reference a valid application object."
    return GraphError(
        400,
        "Request_BadRequest",
        message,
        details=[{"code": "NoBackingApplicationObject", "message": message, "target": "appId"}],
    )


def _fault_body(status: int) -> web.Response:
    codes = {429: "TooManyRequests", 503: "serviceNotAvailable", 500: "generalException"}
    return odata_error(
        status, codes.get(status, "UnknownError"), "Injected fault: the service is unavailable."
    )


def not_found(ident: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{ident}' does not exist or one of its queried reference-property objects are not present.",
    )


def denied() -> GraphError:
    return GraphError(403, "Authorization_RequestDenied", INSUFFICIENT)


@dataclass
class Caller:
    app_id: str
    oid: str
    roles: frozenset[str]

    def can(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_FILTER_EQ = re.compile(r"^\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*$")
_FILTER_ANY = re.compile(r"^\s*(\w+)/any\(\s*(\w+)\s*:\s*\2\s+eq\s+'((?:[^']|'')*)'\s*\)\s*$")
_FILTER_STARTS = re.compile(r"^\s*startswith\(\s*(\w+)\s*,\s*'((?:[^']|'')*)'\s*\)\s*$")


def _param(body: Any, name: str) -> Any:
    """An action parameter: Graph matches their names case-insensitively, and msgraph-sdk sends
    some capitalised (``{"Message": ..., "SaveToSentItems": ...}``)."""
    if not isinstance(body, dict):
        return None
    for key, value in body.items():
        if key.lower() == name.lower():
            return value
    return None


def _eq(field: str, value: str) -> Callable[[dict[str, Any]], bool]:
    return lambda o: str(o.get(field) or "").lower() == value.lower()


def _any(field: str, value: str) -> Callable[[dict[str, Any]], bool]:
    return lambda o: value in (o.get(field) or [])


def _starts(field: str, value: str) -> Callable[[dict[str, Any]], bool]:
    return lambda o: str(o.get(field) or "").lower().startswith(value.lower())


def compile_filter(text: str | None) -> Callable[[dict[str, Any]], bool]:
    """Graph's simple $filter forms: ``a eq 'x'``, ``tags/any(t:t eq 'x')``, ``startswith(a,'x')``, joined by ``and``."""
    if not text:
        return lambda _: True
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for clause in re.split(r"\s+and\s+", text):
        if m := _FILTER_EQ.match(clause):
            field, value = m.group(1), m.group(2).replace("''", "'")
            tests.append(_eq(field, value))
        elif m := _FILTER_ANY.match(clause):
            field, value = m.group(1), m.group(3).replace("''", "'")
            tests.append(_any(field, value))
        elif m := _FILTER_STARTS.match(clause):
            field, value = m.group(1), m.group(2).replace("''", "'")
            tests.append(_starts(field, value))
        else:  # Graph may well support it; the sandbox does not know how it answers
            raise Unmodelled(f"the $filter clause {clause!r}")
    return lambda o: all(t(o) for t in tests)


GraphHandler = Callable[[web.Request, Caller, dict[str, str], Any], web.Response]


@dataclass(frozen=True)
class _MimeBody:
    raw: bytes


class Graph:
    def __init__(self, state: TenantState, *, base_url: str) -> None:
        self.state = state
        self.base = base_url.rstrip("/") + "/v1.0"
        self.router: Router[GraphHandler] = Router("/v1.0")
        r = self.router
        r.add("GET", "/applications", self.list_applications)
        r.add("POST", "/applications", self.create_application)
        r.add("GET", "/applications" + APP_KEY, self.get_application)
        r.add("PATCH", "/applications" + APP_KEY, self.patch_application)
        r.add("DELETE", "/applications" + APP_KEY, self.delete_application)
        r.add("POST", "/applications" + APP_KEY + "/addPassword", self.add_password)
        r.add("POST", "/applications" + APP_KEY + "/removePassword", self.remove_password)
        r.add("GET", "/applications" + APP_KEY + "/owners", self.list_owners)
        r.add("GET", r"/directory/deletedItems/(?:microsoft\.)?graph\.application", self.list_deleted)
        r.add("GET", "/directory/deletedItems/(?P<id>[^/]+)", self.get_deleted)
        r.add("DELETE", "/directory/deletedItems/(?P<id>[^/]+)", self.purge_deleted)
        r.add("POST", "/directory/deletedItems/(?P<id>[^/]+)/restore", self.restore_deleted)
        r.add("GET", "/servicePrincipals", self.list_service_principals)
        r.add("POST", "/servicePrincipals", self.create_service_principal)
        r.add("GET", "/servicePrincipals" + SP_KEY, self.get_service_principal)
        r.add("DELETE", "/servicePrincipals" + SP_KEY, self.delete_service_principal)
        for relation in ("appRoleAssignments", "appRoleAssignedTo"):
            r.add("GET", "/servicePrincipals" + SP_KEY + "/" + relation, self.list_assignments)
            r.add("POST", "/servicePrincipals" + SP_KEY + "/" + relation, self.create_assignment)
            r.add(
                "GET", "/servicePrincipals" + SP_KEY + "/" + relation + "/(?P<aid>[^/]+)", self.get_assignment
            )
            r.add(
                "DELETE",
                "/servicePrincipals" + SP_KEY + "/" + relation + "/(?P<aid>[^/]+)",
                self.delete_assignment,
            )
        r.add("GET", "/domains", self.list_domains)
        r.add("POST", "/users/(?P<user>[^/]+)/sendMail", self.send_mail)
        r.add("GET", "/users/(?P<user>[^/]+)", self.get_user)

    def app(self) -> web.Application:
        app = make_app(
            "graph",
            self.state,
            self.state.faults.graph,
            _fault_body,
            query_options=("$select", "$filter", "$top"),
            semantic_headers=("ConsistencyLevel",),  # advanced queries: not modelled
        )
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    async def dispatch(self, request: web.Request) -> web.Response:
        handler, params = self.router.resolve(request.method, request.path)
        try:
            caller = self._authenticate(request)
            body: Any = None
            if request.method in {"POST", "PATCH"} and request.can_read_body:
                raw = await request.read()
                if request.content_type == "text/plain":
                    body = _MimeBody(raw)  # sendMail's MIME form: base64 text, not JSON
                else:
                    try:
                        body = json.loads(raw) if raw else {}
                    except ValueError:
                        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
            with self.state.lock:
                response: web.Response = handler(request, caller, params, body)
            return response
        except GraphError as exc:
            return odata_error(
                exc.status, exc.code, exc.message, exc.details, request.headers.get("client-request-id")
            )

    def _authenticate(self, request: web.Request) -> Caller:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = self.state.issuer.verify(header[7:].strip())
        except TokenError as exc:
            message = (
                "Lifetime validation failed, the token is expired."
                if "expired" in str(exc)
                else "Access token validation failure."
            )
            raise GraphError(401, "InvalidAuthenticationToken", message) from None
        if str(claims.get("aud", "")).rstrip("/") != self.state.graph_resource.rstrip("/"):
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            )
        request[CALLER_KEY] = str(claims.get("appid", ""))
        return Caller(
            str(claims.get("appid", "")), str(claims.get("oid", "")), frozenset(claims.get("roles") or [])
        )

    # ------------------------------------------------------------ serialisation
    def _select(self, request: web.Request, obj: dict[str, Any]) -> dict[str, Any]:
        select = request.query.get("$select")
        if not select:
            return obj
        keep = {s.strip() for s in select.split(",")}
        return {k: v for k, v in obj.items() if k in keep or k.startswith("@odata")}

    def _entity(
        self, request: web.Request, kind: str, obj: dict[str, Any], status: int = 200
    ) -> web.Response:
        body = {"@odata.context": f"{self.base}/$metadata#{kind}/$entity", **self._select(request, obj)}
        return web.json_response(body, status=status)

    def _collection(self, request: web.Request, kind: str, objects: Iterable[dict[str, Any]]) -> web.Response:
        matches = compile_filter(request.query.get("$filter"))
        items = [o for o in objects if matches(o)]
        if "$top" in request.query:
            items = items[: int(request.query["$top"])]
        return web.json_response(
            {
                "@odata.context": f"{self.base}/$metadata#{kind}",
                "value": [self._select(request, o) for o in items],
            }
        )

    def app_json(self, app: Application, *, with_keys: bool = False) -> dict[str, Any]:
        """``with_keys``: each keyCredential's key, returned only when one app is read with
        $select=keyCredentials (docs/sandbox-facts.md, "keyCredentials"); null otherwise."""
        return {
            "id": app.id,
            "deletedDateTime": _iso(app.deleted_at),
            "appId": app.app_id,
            "createdDateTime": _iso(app.created_at),
            "displayName": app.display_name,
            "description": None,
            "identifierUris": [],
            "notes": app.notes,
            "publisherDomain": self.state.domain,
            "signInAudience": app.sign_in_audience,
            "tags": list(app.tags),
            "uniqueName": app.unique_name,
            "keyCredentials": [
                {
                    "customKeyIdentifier": base64.b64encode(k.custom_key_identifier).decode("ascii"),
                    "displayName": k.display_name,
                    "endDateTime": _iso(k.end),
                    "key": base64.b64encode(k.der).decode("ascii") if with_keys else None,
                    "keyId": k.key_id,
                    "startDateTime": _iso(k.start),
                    "type": k.type,
                    "usage": k.usage,
                }
                for k in app.keys
            ],
            "passwordCredentials": [
                {
                    "customKeyIdentifier": None,
                    "displayName": p.display_name,
                    "endDateTime": _iso(p.end),
                    "hint": p.hint,
                    "keyId": p.key_id,
                    "secretText": None,
                    "startDateTime": _iso(p.start),
                }
                for p in app.passwords
            ],
            "requiredResourceAccess": app.required_resource_access,
            "web": {
                "homePageUrl": None,
                "logoutUrl": None,
                "redirectUris": list(app.redirect_uris),
                "implicitGrantSettings": {"enableAccessTokenIssuance": False, "enableIdTokenIssuance": False},
            },
            "appRoles": [],
        }

    def sp_json(self, sp: ServicePrincipal) -> dict[str, Any]:
        def role(r: AppRole) -> dict[str, Any]:
            return {
                "allowedMemberTypes": list(r.allowed_member_types),
                "description": r.description,
                "displayName": r.display_name,
                "id": r.id,
                "isEnabled": r.is_enabled,
                "origin": "Application",
                "value": r.value,
            }

        return {
            "id": sp.id,
            "deletedDateTime": None,
            "accountEnabled": True,
            "appId": sp.app_id,
            "appDisplayName": sp.display_name,
            "appOwnerOrganizationId": sp.app_owner_organization_id,
            "appRoleAssignmentRequired": False,
            "displayName": sp.display_name,
            "servicePrincipalNames": [sp.app_id],
            "servicePrincipalType": sp.service_principal_type,
            "signInAudience": "AzureADMyOrg",
            "tags": list(sp.tags),
            "appRoles": [role(r) for r in sp.app_roles],
            "oauth2PermissionScopes": [
                {
                    "adminConsentDescription": s.description,
                    "adminConsentDisplayName": s.display_name,
                    "id": s.id,
                    "isEnabled": True,
                    "type": "User",
                    "value": s.value,
                }
                for s in sp.scopes
            ],
        }

    def assignment_json(self, a: AppRoleAssignment) -> dict[str, Any]:
        return {
            "id": a.id,
            "deletedDateTime": None,
            "appRoleId": a.app_role_id,
            "createdDateTime": _iso(a.created_at),
            "principalDisplayName": a.principal_display_name,
            "principalId": a.principal_id,
            "principalType": a.principal_type,
            "resourceDisplayName": a.resource_display_name,
            "resourceId": a.resource_id,
        }

    # ------------------------------------------------------------ applications
    def _find_app(self, params: dict[str, str]) -> Application | None:
        if "id" in params:
            return self.state.get_application(params["id"])
        if "appId" in params:
            return self.state.find_application(app_id=params["appId"])
        return self.state.find_application(unique_name=params["uniqueName"])

    def _app(self, params: dict[str, str]) -> Application:
        app = self._find_app(params)
        if app is None or ("id" in params and not self._readable(app)):
            raise not_found(next(iter(params.values())))
        return app

    def _readable(self, app: Application) -> bool:
        """Read-after-write: right after creation, requests addressing the new app by its object id
        (GET, addPassword) reach replicas that do not have it yet and answer 404 (docs/sandbox-facts.md)."""
        lag = timedelta(seconds=self.state.faults.replication.application_read_s)
        return self.state.clock() >= app.created_at + lag

    def _require_read(self, caller: Caller) -> None:
        if not caller.can(*READ_APPS, "AppRoleAssignment.ReadWrite.All"):
            raise denied()

    def _require_write(self, caller: Caller, owners: set[str]) -> None:
        if caller.can("Application.ReadWrite.All"):
            return
        if caller.can("Application.ReadWrite.OwnedBy") and caller.oid in owners:
            return
        raise denied()

    def _require_create(self, caller: Caller) -> None:
        if not caller.can("Application.ReadWrite.All", "Application.ReadWrite.OwnedBy"):
            raise denied()

    def list_applications(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        self._require_read(caller)
        apps = [self.app_json(a) for a in self.state.applications_live()]
        return self._collection(request, "applications", apps)

    def create_application(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        self._require_create(caller)
        app = self.state.create_application(body or {}, owner=caller.oid)
        return self._entity(request, "applications", self.app_json(app), status=201)

    def get_application(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        self._require_read(caller)
        select = {f.strip() for f in request.query.get("$select", "").split(",")}
        app = self.app_json(self._app(params), with_keys="keyCredentials" in select)
        return self._entity(request, "applications", app)

    def patch_application(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        body = body or {}
        app = self._find_app(params)
        if app is None:
            upsert = (
                "uniqueName" in params and "create-if-missing" in request.headers.get("Prefer", "").lower()
            )
            if not upsert:
                raise not_found(next(iter(params.values())))
            self._require_create(caller)
            app = self.state.create_application(
                {**body, "uniqueName": params["uniqueName"]}, owner=caller.oid
            )
            response = self._entity(request, "applications", self.app_json(app), status=201)
            response.headers["Preference-Applied"] = "create-if-missing"
            return response
        self._require_write(caller, app.owners)
        keys = self._key_credentials(app, body["keyCredentials"]) if "keyCredentials" in body else None
        self.state.update_application(app, body)
        if keys is not None:
            self.state.set_key_credentials(app, keys)
        return web.Response(status=204)

    def _key_credentials(self, app: Application, entries: Any) -> list[KeyCredential]:
        """The whole collection replaces the app's (PATCH semantics). A new entry carries the
        certificate (``key``, base64 DER); one already on the app may omit it (as read without
        $select it is null) and keeps its own."""
        if not isinstance(entries, list):
            raise GraphError(400, "BadRequest", "Invalid value for property keyCredentials.")
        held = {k.key_id: k for k in app.keys}
        return [self._key_credential(entry, held) for entry in entries]

    def _key_credential(self, entry: Any, held: dict[str, KeyCredential]) -> KeyCredential:
        if not isinstance(entry, dict):
            raise GraphError(400, "BadRequest", "Invalid value for property keyCredentials.")
        key_id = str(entry.get("keyId") or uuid.uuid4())
        if not entry.get("key") and key_id in held:
            return held[key_id]
        try:
            der = base64.b64decode(str(entry.get("key") or ""), validate=True)
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise GraphError(
                400, "BadRequest", "Key credential key is not a valid X.509 certificate."
            ) from None
        try:
            start = _parse_time(entry.get("startDateTime")) or cert.not_valid_before_utc
            end = _parse_time(entry.get("endDateTime")) or cert.not_valid_after_utc
        except ValueError:
            raise GraphError(400, "BadRequest", "Invalid date format in keyCredentials.") from None
        custom = entry.get("customKeyIdentifier")
        return KeyCredential(
            key_id=key_id,
            display_name=entry.get("displayName"),
            start=start,
            end=end,
            der=der,
            # Learn: "When not provided in the payload, defaults to the thumbprint of the certificate."
            custom_key_identifier=base64.b64decode(custom) if custom else thumbprint(der),
            type=str(entry.get("type") or "AsymmetricX509Cert"),
            usage=str(entry.get("usage") or "Verify"),
        )

    def delete_application(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        app = self._app(params)
        self._require_write(caller, app.owners)
        self.state.delete_application(app)
        return web.Response(status=204)

    def add_password(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        app = self._app(params)
        self._require_write(caller, app.owners)
        spec = _param(body, "passwordCredential") or {}
        try:
            start, end = _parse_time(spec.get("startDateTime")), _parse_time(spec.get("endDateTime"))
        except ValueError:
            raise GraphError(400, "BadRequest", "Invalid date format in passwordCredential.") from None
        self._enforce_app_policy(start, end)
        cred = self.state.add_password(app, spec.get("displayName"), start, end)
        return web.json_response(
            {
                "@odata.context": f"{self.base}/$metadata#microsoft.graph.passwordCredential",
                "customKeyIdentifier": None,
                "displayName": cred.display_name,
                "endDateTime": _iso(cred.end),
                "hint": cred.hint,
                "keyId": cred.key_id,
                "secretText": cred.secret_text,  # returned once, as Graph does
                "startDateTime": _iso(cred.start),
            }
        )

    def _enforce_app_policy(self, start: datetime | None, end: datetime | None) -> None:
        """The tenant's app management policy refuses the secret as Graph does (docs/sandbox-facts.md)."""
        policy = self.state.app_policy
        if policy.block_passwords:
            raise GraphError(
                400,
                "CredentialTypeNotAllowedAsPerAppPolicy",
                f"Credential type not allowed as per assigned policy '{policy.policy_id}'.",
            )
        if policy.password_max_lifetime is None:
            return
        # Graph's default lifetime for a secret without endDateTime is two years.
        lifetime = (end or (start or self.state.clock()) + timedelta(days=730)) - (
            start or self.state.clock()
        )
        if lifetime > policy.password_max_lifetime:
            raise GraphError(
                400,
                "CredentialInvalidLifetimeAsPerAppPolicy",
                f"Credential lifetime exceeds the max value allowed as per assigned policy '{policy.policy_id}'.",
            )

    def remove_password(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        app = self._app(params)
        self._require_write(caller, app.owners)
        key_id = str(_param(body, "keyId") or "")
        if not self.state.remove_password(app, key_id):
            raise GraphError(400, "Request_BadRequest", f"No password credential found with keyId {key_id}.")
        return web.Response(status=204)

    def list_owners(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        self._require_read(caller)
        app = self._app(params)
        owners = [self.state.get_service_principal(o, visible_only=False) for o in sorted(app.owners)]
        items = [{"@odata.type": "#microsoft.graph.servicePrincipal", **self.sp_json(o)} for o in owners if o]
        return self._collection(request, "directoryObjects", items)

    # ------------------------------------------------------------ deleted items
    def _deleted(self, ident: str) -> Application:
        app = self.state.get_application(ident, include_deleted=True)
        if app is None or app.deleted_at is None:
            raise not_found(ident)
        return app

    def list_deleted(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        self._require_read(caller)
        apps = [self.app_json(a) for a in self.state.applications_deleted()]
        return self._collection(request, "directory/deletedItems/microsoft.graph.application", apps)

    def get_deleted(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        self._require_read(caller)
        obj = {"@odata.type": "#microsoft.graph.application", **self.app_json(self._deleted(params["id"]))}
        return self._entity(request, "directory/deletedItems", obj)

    def purge_deleted(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        app = self._deleted(params["id"])
        self._require_write(caller, app.owners)
        self.state.purge_application(app)
        return web.Response(status=204)

    def restore_deleted(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        app = self._deleted(params["id"])
        self._require_write(caller, app.owners)
        self.state.restore_application(app)
        obj = {"@odata.type": "#microsoft.graph.application", **self.app_json(app)}
        return self._entity(request, "directoryObjects", obj)

    # ------------------------------------------------------------ service principals
    def _sp(self, params: dict[str, str]) -> ServicePrincipal:
        if "id" in params:
            sp = self.state.get_service_principal(params["id"])
        else:
            sp = self.state.find_service_principal(params["appId"])
        if sp is None:
            raise not_found(next(iter(params.values())))
        return sp

    def list_service_principals(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        self._require_read(caller)
        sps = [self.sp_json(sp) for sp in self.state.list_service_principals()]
        return self._collection(request, "servicePrincipals", sps)

    def get_service_principal(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        self._require_read(caller)
        return self._entity(request, "servicePrincipals", self.sp_json(self._sp(params)))

    def create_service_principal(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        app_id = str((body or {}).get("appId", ""))
        app = self.state.find_application(app_id=app_id)
        if app is None or not self.state.application_visible(app):
            # What Graph answers while a new app has not replicated yet, and for unknown ids.
            raise no_backing_application(app_id)
        if not caller.can("Application.ReadWrite.All"):
            self._require_write(caller, app.owners)
        if self.state.find_service_principal(app_id, visible_only=False) is not None:
            raise GraphError(
                409,
                "Request_MultipleObjectsWithSameKeyValue",
                "The service principal cannot be created, updated, or restored because the service principal "
                f"name {app_id} is already in use.",
            )
        sp = self.state.create_service_principal(app, owner=caller.oid)
        return self._entity(request, "servicePrincipals", self.sp_json(sp), status=201)

    def delete_service_principal(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        sp = self._sp(params)
        self._require_write(caller, sp.owners)
        self.state.delete_service_principal(sp)
        return web.Response(status=204)

    # ------------------------------------------------------------ app role assignments
    @staticmethod
    def _relation(request: web.Request) -> str:
        return "appRoleAssignedTo" if "/appRoleAssignedTo" in request.path else "appRoleAssignments"

    def list_assignments(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        self._require_read(caller)
        sp = self._sp(params)
        relation = self._relation(request)
        items = (
            self.state.assignments_to(sp.id)
            if relation == "appRoleAssignedTo"
            else self.state.assignments_of(sp.id)
        )
        return self._collection(
            request, f"servicePrincipals('{sp.id}')/{relation}", [self.assignment_json(a) for a in items]
        )

    def _assignment(self, sp: ServicePrincipal, request: web.Request, aid: str) -> AppRoleAssignment:
        a = self.state.get_assignment(aid)
        relation = self._relation(request)
        owner_id = (
            None if a is None else (a.resource_id if relation == "appRoleAssignedTo" else a.principal_id)
        )
        if a is None or owner_id != sp.id or not self.state.assignment_visible(a):
            raise not_found(aid)
        return a

    def get_assignment(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        self._require_read(caller)
        sp = self._sp({k: v for k, v in params.items() if k != "aid"})
        a = self._assignment(sp, request, params["aid"])
        return self._entity(
            request, f"servicePrincipals('{sp.id}')/{self._relation(request)}", self.assignment_json(a)
        )

    def create_assignment(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        # Documented as "AppRoleAssignment.ReadWrite.All and Application.Read.All" (or Directory.Read.All):
        # the assigning permission alone cannot read the service principals it links.
        if not (caller.can("AppRoleAssignment.ReadWrite.All") and caller.can(*ASSIGN_READ)):
            raise denied()
        body = body or {}
        sp = self._sp(params)
        principal_id, resource_id, role_id = (
            str(body.get(k, "")) for k in ("principalId", "resourceId", "appRoleId")
        )
        relation = self._relation(request)
        expected = resource_id if relation == "appRoleAssignedTo" else principal_id
        if expected != sp.id:
            raise GraphError(
                400, "Request_BadRequest", "The object in the URL and in the request body do not match."
            )
        principal = self.state.get_service_principal(principal_id)
        resource = self.state.get_service_principal(resource_id)
        for ident, obj in ((principal_id, principal), (resource_id, resource)):
            if obj is None:
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    f"Resource '{ident}' does not exist or one of its queried reference-property objects are not present.",
                )
        assert resource is not None
        if not any(r.id == role_id for r in resource.app_roles):
            raise GraphError(
                400,
                "Request_BadRequest",
                f"Permission being assigned was not found on application '{resource.app_id}'.",
            )
        if self.state.find_assignment(principal_id, resource_id, role_id) is not None:
            raise GraphError(
                400, "Request_BadRequest", "Permission being assigned already exists on the object"
            )
        a = self.state.add_assignment(principal_id, resource, role_id)
        return self._entity(
            request, f"servicePrincipals('{sp.id}')/{relation}", self.assignment_json(a), status=201
        )

    def delete_assignment(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        if not caller.can("AppRoleAssignment.ReadWrite.All"):
            raise denied()
        sp = self._sp({k: v for k, v in params.items() if k != "aid"})
        a = self._assignment(sp, request, params["aid"])
        self.state.remove_assignment(a.id)
        return web.Response(status=204)

    def _send_mime(self, sender: str, caller: Caller, body: _MimeBody) -> web.Response:
        """sendMail with ``Content-Type: text/plain``: the body is a whole MIME message, base64-encoded;
        malformed base64 is 400 ErrorMimeContentInvalidBase64String, success 202 with no body
        (learn.microsoft.com/graph/api/user-sendmail, example 4)."""
        import base64
        import binascii
        from email import message_from_bytes, policy
        from email.message import EmailMessage

        try:
            mime = base64.b64decode(body.raw, validate=False)
            if not mime.strip():
                raise ValueError("empty")
        except (binascii.Error, ValueError):
            raise GraphError(
                400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
            ) from None
        parsed = message_from_bytes(mime, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        to = [a.addr_spec for h in parsed.get_all("To") or [] for a in h.addresses]
        if not to:
            raise GraphError(
                400, "ErrorInvalidRecipients", "At least one recipient is not valid., Recipient is missing."
            )
        html = parsed.get_body(("html",))
        text = parsed.get_body(("plain",))
        self.state.send_mail(
            SentMail(
                sender=sender,
                to=to,
                cc=[a.addr_spec for h in parsed.get_all("Cc") or [] for a in h.addresses],
                # Unfolded (RFC 5322 2.2.3), a field body folded right after "Subject:" is the one
                # written on that line; Python's parser keeps the folding space, a reader does not.
                subject=str(parsed.get("Subject", "")).lstrip(" \t"),
                html=html.get_content() if html is not None else "",
                content_type=parsed.get_content_type(),
                sent_at=self.state.now(),
                sent_by_app_id=caller.app_id,
                text=text.get_content() if text is not None else "",
            )
        )
        return web.Response(status=202)

    # ------------------------------------------------------------ domains
    def list_domains(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        """GET /domains: least privileged application permission Domain.Read.All, also allowed by
        Domain.ReadWrite.All and Directory.Read.All (learn.microsoft.com/graph/api/domain-list)."""
        if not caller.can("Domain.Read.All", "Domain.ReadWrite.All", "Directory.Read.All"):
            raise denied()
        return self._collection(request, "domains", self.state.domains())

    # ------------------------------------------------------------ users and mail
    def get_user(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        if not caller.can("User.Read.All", "Directory.Read.All"):
            raise denied()
        box = self.state.find_mailbox(params["user"])
        if box is None:
            raise not_found(params["user"])
        return self._entity(
            request,
            "users",
            {
                "id": box.id,
                "displayName": box.display_name,
                "mail": box.address,
                "userPrincipalName": box.address,
            },
        )

    def send_mail(
        self, request: web.Request, caller: Caller, params: dict[str, str], body: Any
    ) -> web.Response:
        if not caller.can("Mail.Send"):
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        box = self.state.find_mailbox(params["user"])
        if box is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{params['user']}' is invalid.")
        if isinstance(body, _MimeBody):
            return self._send_mime(box.address, caller, body)
        message = _param(body, "message") or {}

        def addresses(key: str) -> list[str]:
            return [r.get("emailAddress", {}).get("address", "") for r in message.get(key) or []]

        to = addresses("toRecipients")
        if not to:
            raise GraphError(
                400, "ErrorInvalidRecipients", "At least one recipient is not valid., Recipient is missing."
            )
        content = message.get("body") or {}
        self.state.send_mail(
            SentMail(
                sender=box.address,
                to=to,
                cc=addresses("ccRecipients"),
                subject=str(message.get("subject", "")),
                html=str(content.get("content", "")),
                content_type=str(content.get("contentType", "text")).lower(),
                sent_at=self.state.now(),
                sent_by_app_id=caller.app_id,
            )
        )
        return web.Response(status=202)
