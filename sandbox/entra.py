"""Entra ID stand-in: OpenID metadata, JWKS, the client-credentials token endpoint, the admin consent
page, and the App Service managed identity endpoint (plain http, as on App Service)."""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from sandbox.client_assertion import AssertionRefused, ClientAssertions
from sandbox.signin import People, SigninFlow, SigninRefused
from sandbox.state import Application, AppRole, ServicePrincipal, TenantState, same_secret
from sandbox.web import CALLER_KEY, make_app

RESERVED_SCOPES = {"openid", "profile", "offline_access"}
# The tenant-independent authorities, whose metadata Entra ID also serves.
MULTI_TENANT = {"common", "organizations"}
# "claims_supported" of the published documents, in their order.
V2_CLAIMS = [
    *("sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name"),
    *("msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name"),
    *("tid", "ver", "at_hash", "c_hash", "email"),
]
V1_CLAIMS = [
    *("sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name"),
    *("msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "amr", "nonce", "email", "given_name"),
    *("family_name", "nickname"),
]


class EntraError(Exception):
    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"AADSTS{code}")
        self.status, self.error, self.code, self.description = status, error, code, description


def oauth_error(status: int, error: str, code: int, description: str) -> web.Response:
    """The token endpoint's error envelope (docs/sandbox-facts.md, "Token endpoint error envelope"):
    the description's trailer lines are CRLF-separated. ``error_uri`` is optional there and left out."""
    now = datetime.now(UTC)
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    return web.json_response(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}"
            f"\r\nTimestamp: {now:%Y-%m-%d %H:%M:%SZ}",
            "error_codes": [code],
            "timestamp": f"{now:%Y-%m-%d %H:%M:%SZ}",
            "trace_id": trace,
            "correlation_id": correlation,
        },
        status=status,
    )


def _fault_body(status: int) -> web.Response:
    if status == 429:
        return oauth_error(
            429, "temporarily_unavailable", 50196, "The server temporarily throttled this request."
        )
    return oauth_error(
        status, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again."
    )


class Entra:
    def __init__(
        self, state: TenantState, *, authority: str, identity_header: str, identity_sp: ServicePrincipal
    ) -> None:
        self.state = state
        self.authority = authority
        self.identity_header = identity_header
        self.identity_sp = identity_sp
        self.people = People()
        self.signin = SigninFlow(state, self.people, authority=authority)
        self.assertions = ClientAssertions(state, authority=authority)

    # ------------------------------------------------------------ apps
    def login_app(self) -> web.Application:
        app = make_app("entra", self.state, self.state.faults.entra, _fault_body)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration)
        app.router.add_get("/{tenant}/.well-known/openid-configuration", self.openid_configuration)
        app.router.add_get("/{tenant}/discovery/v2.0/keys", self.keys)
        app.router.add_get("/{tenant}/discovery/keys", self.keys)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.token)
        app.router.add_post("/{tenant}/oauth2/token", self.token)
        for path in ("/{tenant}/adminconsent", "/{tenant}/v2.0/adminconsent"):
            app.router.add_get(path, self.consent_page)
            app.router.add_post(path, self.consent_decision)
        self.signin.routes(app)
        return app

    def identity_app(self) -> web.Application:
        def fault(status: int) -> web.Response:
            return web.json_response({"statusCode": status, "message": "Transient failure"}, status=status)

        app = make_app("identity", self.state, self.state.faults.identity, fault)
        app.router.add_get("/msi/token", self.managed_identity_token)
        return app

    def _known_tenant(self, tenant: str) -> bool:
        return tenant.lower() in {self.state.tenant_id, self.state.domain.lower()}

    def _unknown_tenant(self, tenant: str) -> web.Response:
        return oauth_error(
            400,
            "invalid_request",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
            "into the correct cloud.",
        )

    # ------------------------------------------------------------ metadata
    async def openid_configuration(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if tenant.lower() in MULTI_TENANT:
            # Multi-tenant metadata names no tenant: its issuer carries the literal "{tenantid}".
            tid, issuer_tid = tenant, "{tenantid}"
        elif self._known_tenant(tenant):
            tid = issuer_tid = self.state.tenant_id
        else:
            return self._unknown_tenant(tenant)
        v2 = "/v2.0/" in request.path
        return web.json_response(self.discovery_document(tid, issuer_tid, v2=v2))

    def discovery_document(self, tid: str, issuer_tid: str, *, v2: bool) -> dict[str, Any]:
        """The OpenID metadata, key by key as Entra ID publishes it (docs/sandbox-facts.md, "OpenID
        discovery documents"). The v1.0 document's issuer is the v1.0 tokens' ``iss``: the tenant's
        STS URI with a trailing slash; this sandbox serves its STS from the authority's own host."""
        base = f"{self.authority}/{tid}"
        oauth = f"{base}/oauth2/v2.0" if v2 else f"{base}/oauth2"
        authority_host = urlsplit(self.authority).netloc
        graph_host = urlsplit(self.state.graph_resource).netloc
        document: dict[str, Any] = {
            "token_endpoint": f"{oauth}/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys" if v2 else f"{base}/discovery/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"]
            if v2
            else ["code", "id_token", "code id_token", "token id_token", "token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"] if v2 else ["openid"],
            "issuer": f"{self.authority}/{issuer_tid}/v2.0" if v2 else f"{self.authority}/{issuer_tid}/",
        }
        if v2:
            document["request_uri_parameter_supported"] = False
            document["userinfo_endpoint"] = f"{self.state.graph_resource}/oidc/userinfo"
        else:
            document["microsoft_multi_refresh_token"] = True
        document |= {
            "authorization_endpoint": f"{oauth}/authorize",
            "device_authorization_endpoint": f"{oauth}/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{oauth}/logout",
            "claims_supported": V2_CLAIMS if v2 else V1_CLAIMS,
        }
        if not v2:
            document["check_session_iframe"] = f"{oauth}/checksession"
            document["userinfo_endpoint"] = f"{base}/openid/userinfo"
        document |= {
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": None if issuer_tid == "{tenantid}" else "EU",
            "cloud_instance_name": authority_host,
            "cloud_graph_host_name": graph_host,
            "msgraph_host": graph_host,
            "rbac_url": self.authority,
        }
        return document

    async def keys(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.issuer.jwks())

    # ------------------------------------------------------------ tokens
    async def token(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if not self._known_tenant(tenant):
            return self._unknown_tenant(tenant)
        form = {k: str(v) for k, v in (await request.post()).items()}
        if form.get("grant_type") == "authorization_code":
            return self._authorization_code(form, request)
        try:
            return web.json_response(self._client_credentials(form, request))
        except EntraError as exc:
            return oauth_error(exc.status, exc.error, exc.code, exc.description)

    def _authorization_code(self, form: dict[str, str], request: web.Request) -> web.Response:
        """A user's sign-in (sandbox/signin.py) redeemed by a confidential client."""
        if form.get("client_id"):
            request[CALLER_KEY] = form["client_id"]
        try:
            return web.json_response(self.signin.redeem(form))
        except SigninRefused as exc:
            return oauth_error(exc.status, exc.error, exc.code, exc.description)

    def _client_credentials(self, form: dict[str, str], request: web.Request) -> dict[str, Any]:
        state = self.state
        if form.get("grant_type") != "client_credentials":
            raise EntraError(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        client_id = form.get("client_id", "")
        if client_id:
            request[CALLER_KEY] = client_id
        if "resource" in form:  # v1 endpoint
            resource = form["resource"]
        else:
            scopes = [s for s in form.get("scope", "").split() if s not in RESERVED_SCOPES]
            if not scopes:
                raise EntraError(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'scope'.",
                )
            if len(scopes) != 1 or not scopes[0].endswith("/.default"):
                raise EntraError(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {form.get('scope')} is not valid. Client credential flows must "
                    "have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                )
            resource = scopes[0][: -len("/.default")]
        with state.lock:
            app = state.find_application(app_id=client_id)
            if app is None:
                raise EntraError(
                    400,
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{client_id}' was not found in the directory '{state.domain}'. "
                    "This can happen if the application has not been installed by the administrator of the tenant "
                    "or consented to by any user in the tenant. You may have sent your authentication request to "
                    "the wrong tenant.",
                )
            if form.get("client_assertion") or form.get("client_assertion_type"):
                try:
                    self.assertions.check(form, app, request.match_info["tenant"])
                except AssertionRefused as exc:
                    raise EntraError(exc.status, exc.error, exc.code, exc.description) from None
                return self._after_client_authenticated(client_id, app, resource)
            secret = form.get("client_secret")
            if not secret:
                raise EntraError(
                    401,
                    "invalid_client",
                    7000216,
                    "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
                )
            match = next((p for p in app.passwords if same_secret(p.secret_text, secret)), None)
            if match is None:
                raise EntraError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                    f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
                )
            if match.end <= state.now():
                raise EntraError(
                    401,
                    "invalid_client",
                    7000222,
                    f"The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to "
                    "create new keys for your app, or consider using certificate credentials for added security.",
                )
            return self._after_client_authenticated(client_id, app, resource)

    def _after_client_authenticated(self, client_id: str, app: Application, resource: str) -> dict[str, Any]:
        """The token for ``resource``, once the client proved itself (secret or assertion)."""
        state = self.state
        with state.lock:
            target = state.resource_for_audience(resource)
            if target is None:
                raise EntraError(
                    400,
                    "invalid_resource",
                    500011,
                    f"The resource principal named {resource} was not found in the tenant named {state.domain}. "
                    "This can happen if the application has not been installed by the administrator of the tenant "
                    "or consented to by any user in the tenant. You might have sent your authentication request "
                    "to the wrong tenant.",
                )
            sp = state.find_service_principal(client_id, visible_only=False)
            if sp is None:
                raise EntraError(
                    400,
                    "invalid_client",
                    7000229,
                    f"The client application {client_id} is missing service principal in the tenant {state.tenant_id}.",
                )
            return self._issue(app.app_id, sp, target, resource)

    def _issue(
        self, app_id: str, sp: ServicePrincipal, target: ServicePrincipal, resource: str
    ) -> dict[str, Any]:
        state = self.state
        token, exp = state.issuer.mint(
            audience=resource.rstrip("/"),
            app_id=app_id,
            object_id=sp.id,
            roles=state.role_values(sp.id, target),
            wids=sp.directory_roles,
        )
        lifetime = int((exp - state.now()).total_seconds())
        return {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "expires_on": str(int(exp.timestamp())),
            "resource": resource,
            "access_token": token,
        }

    async def managed_identity_token(self, request: web.Request) -> web.Response:
        state = self.state
        if not same_secret(request.headers.get("X-IDENTITY-HEADER", ""), self.identity_header):
            return web.json_response(
                {"statusCode": 401, "message": "The X-IDENTITY-HEADER header is missing or wrong."},
                status=401,
            )
        query = request.query
        sp = self.identity_sp
        request[CALLER_KEY] = sp.app_id
        wanted = query.get("client_id") or query.get("principal_id") or query.get("object_id")
        if wanted and wanted not in {sp.app_id, sp.id}:
            return web.json_response(
                {
                    "statusCode": 400,
                    "message": "No managed identity with the requested id is assigned to this app.",
                },
                status=400,
            )
        resource = query.get("resource", "")
        if resource.endswith("/.default"):
            resource = resource[: -len("/.default")]
        with state.lock:
            target = state.resource_for_audience(resource) if resource else None
            if target is None:
                return web.json_response(
                    {
                        "statusCode": 500,
                        "message": "An unexpected error occured while fetching the AAD Token.",
                    },
                    status=500,
                )
            body = self._issue(sp.app_id, sp, target, resource)
        return web.json_response(
            {
                "access_token": body["access_token"],
                "expires_on": body["expires_on"],
                "resource": body["resource"],
                "token_type": "Bearer",
                "client_id": sp.app_id,
            }
        )

    # ------------------------------------------------------------ admin consent
    def _consent_target(self, request: web.Request, params: dict[str, str]) -> Application | web.Response:
        tenant = request.match_info["tenant"]
        if not self._known_tenant(tenant):
            return _error_page(
                "AADSTS90002",
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
            )
        client_id = params.get("client_id", "")
        app = self.state.find_application(app_id=client_id)
        if app is None:
            return _error_page(
                "AADSTS700016",
                f"Application with identifier '{client_id}' was not found in the directory '{self.state.domain}'.",
            )
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            return _error_page(
                "AADSTS50011",
                f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
                f"configured for the application '{app.app_id}'. Make sure the redirect URI sent in the request "
                "matches one added to your application in the Azure portal.",
            )
        return app

    def _requested(self, app: Application, scope: str | None) -> list[tuple[ServicePrincipal, str, str, str]]:
        """(resource, permission type, value, description) for every permission the app requires."""
        wanted_resources = None
        if scope:
            wanted = [s[: -len("/.default")] for s in scope.split() if s.endswith("/.default")]
            found = [self.state.resource_for_audience(r) for r in wanted]
            wanted_resources = {sp.app_id for sp in found if sp is not None} or None
        out = []
        for entry in app.required_resource_access:
            resource = self.state.find_service_principal(entry["resourceAppId"], visible_only=False)
            if resource is None or (wanted_resources is not None and resource.app_id not in wanted_resources):
                continue
            for access in entry["resourceAccess"]:
                pool = resource.app_roles if access["type"] == "Role" else resource.scopes
                role = next((r for r in pool if r.id == access["id"]), None)
                if role is not None:
                    out.append((resource, access["type"], role.value, role.description))
        return out

    async def consent_page(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        with self.state.lock:
            target = self._consent_target(request, params)
            if isinstance(target, web.Response):
                return target
            requested = self._requested(target, params.get("scope"))
        rows = "\n".join(
            f'<li class="permission" data-type="{"application" if kind == "Role" else "delegated"}">'
            f"<b>{html.escape(resource.display_name)}</b>: {html.escape(value)} "
            f"({'Application' if kind == 'Role' else 'Delegated'}) - {html.escape(description)}</li>"
            for resource, kind, value, description in requested
        )
        hidden = "\n".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(params[k])}">'
            for k in ("client_id", "redirect_uri", "state", "scope")
            if k in params
        )
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Permissions requested</title></head>
<body>
<h1>Permissions requested</h1>
<p id="app"><b>{html.escape(target.display_name)}</b> (application id {html.escape(target.app_id)})</p>
<p>Accept for your organization. This app would like to:</p>
<ul id="permissions">
{rows}
</ul>
<form method="post" action="{html.escape(request.path)}">
{hidden}
<button type="submit" id="accept" name="decision" value="accept">Accept</button>
<button type="submit" id="cancel" name="decision" value="cancel">Cancel</button>
</form>
</body></html>"""
        return web.Response(text=page, content_type="text/html")

    async def consent_decision(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        state = self.state
        with state.lock:
            target = self._consent_target(request, form)
            if isinstance(target, web.Response):
                return target
            query: dict[str, str] = {"admin_consent": "True", "tenant": state.tenant_id}
            if "state" in form:
                query["state"] = form["state"]
            if form.get("decision") == "accept":
                self._grant(target, form.get("scope"))
            else:
                query["error"] = "access_denied"
                query["error_description"] = "AADSTS65004: User declined to consent to access the app."
        redirect = form["redirect_uri"]
        separator = "&" if "?" in redirect else "?"
        # Set verbatim: HTTPFound would normalise the URL (decoding %2F in the state, for example).
        return web.Response(status=302, headers={"Location": redirect + separator + urlencode(query)})

    def _grant(self, app: Application, scope: str | None) -> None:
        state = self.state
        sp = state.find_service_principal(app.app_id, visible_only=False) or state.create_service_principal(
            app, None
        )
        for resource, kind, value, _ in self._requested(app, scope):
            if kind != "Role":
                continue  # delegated grants do not reach app-only tokens
            role = state.role_by_value(resource, value)
            if state.find_assignment(sp.id, resource.id, role.id) is None:
                state.add_assignment(sp.id, resource, role.id)


def _error_page(code: str, message: str) -> web.Response:
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to your account</title></head>
<body><h1>Sorry, but we're having trouble signing you in.</h1>
<p id="error">{html.escape(code)}: {html.escape(message)}</p></body></html>"""
    return web.Response(text=page, content_type="text/html", status=400)


# ---------------------------------------------------------------- the function app's own API
# The requester's API accepts access tokens for its own app registration (docs/deploy.md, "The API's
# app registration"): an application whose appRoles are the API's roles, its service principal as the
# token resource, and caller applications holding app role assignments on it.
API_ROLES = {
    "Onboardings.Read": "Read onboardings: their status and the listing.",
    "Onboardings.ReadWrite": "Start and cancel onboardings, and read them.",
}


@dataclass(frozen=True)
class ApiCaller:
    """An application that calls the API with client credentials (its secret is the sandbox's to give)."""

    client_id: str
    client_secret: str = field(repr=False)
    object_id: str


def register_function_api(
    state: TenantState, app_id: str, display_name: str = "mail-onboarding API"
) -> ServicePrincipal:
    """The function app's API application (client id ``app_id``) and service principal, with the API's
    app roles; registered once (later calls return the same service principal)."""
    existing = state.find_service_principal(app_id, visible_only=False)
    if existing is not None:
        return existing
    app = state.create_application({"displayName": display_name}, owner=None)
    with state.lock:
        app.app_id = app_id  # the client id the app's settings already name (sb.env API_CLIENT_ID)
    sp = state.create_service_principal(app, owner=None)
    with state.lock:
        sp.app_roles = [
            AppRole(
                id=str(uuid.uuid5(uuid.NAMESPACE_OID, value)),
                value=value,
                display_name=value,
                description=text,
            )
            for value, text in API_ROLES.items()
        ]
    return sp


def register_api_caller(
    state: TenantState, api: ServicePrincipal, roles: Iterable[str], display_name: str = "ticketing system"
) -> ApiCaller:
    """A caller application with a client secret and (already replicated) assignments of ``roles``."""
    app = state.create_application({"displayName": display_name}, owner=None)
    sp = state.create_service_principal(app, owner=None)
    secret = state.add_password(app, "api caller", None, None).secret_text
    by_value = {role.value: role.id for role in api.app_roles}
    with state.lock:
        for value in roles:
            # Backdated like the managed identity's grants: made long before the test.
            state._add_assignment(sp.id, api, by_value[value], datetime(2020, 1, 1, tzinfo=UTC))
    return ApiCaller(app.app_id, secret, sp.id)
