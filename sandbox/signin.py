"""Users signing in to the sandbox's Entra ID: the OpenID Connect authorization code flow with PKCE.

``/{tenant}/oauth2/v2.0/authorize`` shows a sign-in page (user name and password); a right password
redirects to the app's registered redirect URI with a one-time ``code`` and the ``state``. The token
endpoint redeems the code (``grant_type=authorization_code``) after checking the client's secret,
the redirect URI and the PKCE verifier (S256), and returns a v2.0 ID token carrying ``tid``,
``oid``, ``nonce`` and, per the app's ``groupMembershipClaims``, the user's directory roles
(``wids``) and groups (``groups``). A user of another tenant is refused at sign-in (AADSTS50020), as
Entra does for a single-tenant app.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from sandbox.state import Application, TenantState, same_secret

CODE_LIFETIME = timedelta(minutes=10)
ID_TOKEN_LIFETIME = timedelta(hours=1)
# groupMembershipClaims values that put directory roles (wids) / groups in tokens.
ROLE_CLAIMS = {"All", "SecurityGroup", "DirectoryRole"}
GROUP_CLAIMS = {"All", "SecurityGroup"}


class SigninRefused(Exception):
    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"AADSTS{code}")
        self.status, self.error, self.code, self.description = status, error, code, description


@dataclass
class User:
    user_principal_name: str
    display_name: str
    password: str = field(repr=False)
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    tenant_id: str | None = None  # None: this tenant; else a user of another organisation
    directory_roles: set[str] = field(default_factory=set)  # role template ids
    groups: set[str] = field(default_factory=set)  # group object ids


@dataclass
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    user: User
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    scope: str
    expires_at: datetime
    redeemed: bool = False


class People:
    """The tenant's users, and the codes issued to them, for the sandbox's sign-in pages."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.group_membership_claims: dict[str, str] = {}  # app id -> groupMembershipClaims

    def add_user(
        self,
        user_principal_name: str,
        *,
        display_name: str = "",
        directory_roles: set[str] | frozenset[str] = frozenset(),
        groups: set[str] | frozenset[str] = frozenset(),
        tenant_id: str | None = None,
    ) -> User:
        user = User(
            user_principal_name=user_principal_name.lower(),
            display_name=display_name or user_principal_name.split("@")[0],
            password=secrets.token_urlsafe(12),
            tenant_id=tenant_id,
            directory_roles=set(directory_roles),
            groups=set(groups),
        )
        self.users[user.user_principal_name] = user
        return user


def pkce_matches(verifier: str, challenge: str | None, method: str | None) -> bool:
    """RFC 7636 section 4.6: S256 is BASE64URL(SHA256(verifier)) without padding; plain is the verifier."""
    if challenge is None:
        return True
    if (method or "plain") == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return secrets.compare_digest(computed, challenge)
    return secrets.compare_digest(verifier, challenge)


class SigninFlow:
    """The authorize endpoint and the authorization-code grant of the sandbox's Entra ID."""

    def __init__(self, state: TenantState, people: People, *, authority: str) -> None:
        self.state = state
        self.people = people
        self.authority = authority

    def routes(self, app: web.Application) -> None:
        for path in ("/{tenant}/oauth2/v2.0/authorize",):
            app.router.add_get(path, self.authorize_page)
            app.router.add_post(path, self.authorize_submit)

    # ------------------------------------------------------------ the sign-in page
    def _client(self, params: dict[str, str]) -> Application | web.Response:
        client_id = params.get("client_id", "")
        app = self.state.find_application(app_id=client_id)
        if app is None:
            return _page_error(
                "AADSTS700016",
                f"Application with identifier '{client_id}' was not found in the directory '{self.state.domain}'.",
            )
        if params.get("redirect_uri", "") not in app.redirect_uris:
            return _page_error(
                "AADSTS50011",
                f"The redirect URI '{params.get('redirect_uri', '')}' specified in the request does not match the "
                f"redirect URIs configured for the application '{app.app_id}'.",
            )
        if params.get("response_type") != "code":
            return _page_error("AADSTS700054", "response_type 'id_token' is not enabled for the application.")
        return app

    async def authorize_page(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.match_info["tenant"].lower() not in {self.state.tenant_id, self.state.domain}:
            return _page_error("AADSTS90002", f"Tenant '{request.match_info['tenant']}' not found.")
        with self.state.lock:
            client = self._client(params)
        if isinstance(client, web.Response):
            return client
        return _signin_page(request.path, params, client.display_name, error=None)

    async def authorize_submit(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        with self.state.lock:
            client = self._client(form)
            if isinstance(client, web.Response):
                return client
            user = self.people.users.get(form.get("login", "").strip().lower())
            if user is None or not same_secret(user.password, form.get("passwd", "")):
                # AADSTS50126 "Error validating credentials due to invalid username or password."
                return _signin_page(
                    request.path, form, client.display_name, error="Your account or password is incorrect."
                )
            if user.tenant_id not in (None, self.state.tenant_id):
                return _page_error(
                    "AADSTS50020",
                    f"User account '{user.user_principal_name}' from identity provider "
                    f"'https://sts.windows.net/{user.tenant_id}/' does not exist in tenant '{self.state.domain}' "
                    f"and cannot access the application '{client.app_id}'({client.display_name}) in that tenant.",
                )
            code = secrets.token_urlsafe(48)
            self.people.codes[code] = AuthorizationCode(
                client_id=client.app_id,
                redirect_uri=form["redirect_uri"],
                user=user,
                nonce=form.get("nonce"),
                code_challenge=form.get("code_challenge"),
                code_challenge_method=form.get("code_challenge_method"),
                scope=form.get("scope", ""),
                expires_at=self.state.now() + CODE_LIFETIME,
            )
        query = {"code": code, "session_state": str(uuid.uuid4())}
        if "state" in form:
            query["state"] = form["state"]
        separator = "&" if "?" in form["redirect_uri"] else "?"
        return web.Response(
            status=302, headers={"Location": form["redirect_uri"] + separator + urlencode(query)}
        )

    # ------------------------------------------------------------ the token endpoint
    def redeem(self, form: dict[str, str]) -> dict[str, Any]:
        """``grant_type=authorization_code``: an ID token (and an access token) for the code's user."""
        state = self.state
        client_id = form.get("client_id", "")
        with state.lock:
            app = state.find_application(app_id=client_id)
            if app is None or not any(
                same_secret(p.secret_text, form.get("client_secret", "")) for p in app.passwords
            ):
                raise SigninRefused(401, "invalid_client", 7000215, "Invalid client secret provided.")
            grant = self.people.codes.get(form.get("code", ""))
            if grant is None or grant.client_id != client_id:
                raise SigninRefused(
                    400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
                )
            if grant.redeemed:
                raise SigninRefused(
                    400,
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                )
            if grant.expires_at <= state.now():
                raise SigninRefused(
                    400,
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
                )
            if form.get("redirect_uri") != grant.redirect_uri:
                raise SigninRefused(
                    400,
                    "invalid_grant",
                    50148,
                    "The redirect_uri specified in the token request does not match the one used in the authorization request.",
                )
            if not pkce_matches(
                form.get("code_verifier", ""), grant.code_challenge, grant.code_challenge_method
            ):
                raise SigninRefused(
                    400,
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                )
            grant.redeemed = True
            return self._tokens(app, grant)

    def _tokens(self, app: Application, grant: AuthorizationCode) -> dict[str, Any]:
        state, user = self.state, grant.user
        now = state.now()
        claims_setting = self.people.group_membership_claims.get(app.app_id)
        claims: dict[str, Any] = {
            "aud": app.app_id,
            "iss": f"{self.authority}/{state.tenant_id}/v2.0",
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + ID_TOKEN_LIFETIME).timestamp()),
            "name": user.display_name,
            "oid": user.object_id,
            "preferred_username": user.user_principal_name,
            "sub": hashlib.sha256(f"{user.object_id}:{app.app_id}".encode()).hexdigest()[:43],
            "tid": state.tenant_id,
            "uti": uuid.uuid4().hex[:22],
            "ver": "2.0",
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        if claims_setting in ROLE_CLAIMS and user.directory_roles:
            claims["wids"] = sorted(user.directory_roles)
        if claims_setting in GROUP_CLAIMS and user.groups:
            claims["groups"] = sorted(user.groups)
        id_token = state.issuer.sign(claims)
        access_token, exp = state.issuer.mint(
            audience=state.graph_resource, app_id=app.app_id, object_id=user.object_id
        )
        client_info = (
            base64.urlsafe_b64encode(f'{{"uid":"{user.object_id}","utid":"{state.tenant_id}"}}'.encode())
            .rstrip(b"=")
            .decode()
        )
        lifetime = int((exp - now).total_seconds())
        return {
            "token_type": "Bearer",
            "scope": "openid profile email",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
            "id_token": id_token,
            "client_info": client_info,
        }


def _signin_page(action: str, params: dict[str, str], app_name: str, *, error: str | None) -> web.Response:
    keep = (
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "prompt",
        "response_mode",
        "client_info",
    )
    hidden = "\n".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(params[k])}">'
        for k in keep
        if k in params
    )
    message = f'<p id="error">{html.escape(error)}</p>' if error else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to your account</title></head>
<body>
<h1>Sign in</h1>
<p>to continue to <b id="app">{html.escape(app_name)}</b></p>
{message}
<form method="post" action="{html.escape(action)}">
{hidden}
<input type="email" id="login" name="login" autocomplete="username" placeholder="Email, phone, or Skype">
<input type="password" id="passwd" name="passwd" autocomplete="current-password" placeholder="Password">
<button type="submit" id="signin">Sign in</button>
</form>
</body></html>"""
    return web.Response(text=page, content_type="text/html", status=200)


def _page_error(code: str, message: str) -> web.Response:
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to your account</title></head>
<body><h1>Sorry, but we're having trouble signing you in.</h1>
<p id="error">{html.escape(code)}: {html.escape(message)}</p></body></html>"""
    return web.Response(text=page, content_type="text/html", status=400)
