"""Key Vault secrets stand-in: the data-plane REST API azure-keyvault-secrets speaks, with challenge
authentication, RBAC (Secrets Officer / Secrets User, on the vault or on one secret), versions, tags, soft delete, recover and purge."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from sandbox.kv_certificates import VaultCertificates
from sandbox.state import SecretVersion, TenantState, VaultSecret
from sandbox.tokens import TokenError
from sandbox.web import CALLER_KEY, make_app

NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
RETENTION = timedelta(days=90)


class VaultError(Exception):
    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner


def vault_error(status: int, code: str, message: str, inner: str | None = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return web.json_response({"error": error}, status=status)


def _fault_body(status: int) -> web.Response:
    if status == 429:
        return vault_error(
            429, "Throttled", "Request was not processed because too many requests were received."
        )
    return vault_error(status, "ServiceUnavailable", "Injected fault.")


def _epoch(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def _not_found(name: str) -> VaultError:
    return VaultError(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you "
        "may be able to recover it using the correct recovery command.",
    )


def _being_deleted(name: str) -> VaultError:
    return VaultError(409, "Conflict", "Secret is currently being deleted.", "ObjectIsBeingDeleted")


def _being_recovered(name: str) -> VaultError:
    # The code is sourced; the message text is not (docs/sandbox-facts.md): match the code only.
    return VaultError(409, "Conflict", "Secret is currently being recovered.", "ObjectIsBeingRecovered")


class KeyVault:
    def __init__(self, state: TenantState, *, vault_uri: str, authority: str) -> None:
        self.state = state
        self.uri = vault_uri.rstrip("/")
        self.authority = authority
        self._recovered_at: dict[str, datetime] = {}  # name -> when its recovery began

    def _transitions(self, name: str, action: str) -> None:
        """Soft delete and recovery take a while (docs/sandbox-facts.md). Meanwhile writes to the name
        answer 409 ObjectIsBeingDeleted / ObjectIsBeingRecovered, and reads 404 as the object is in
        neither state yet (what the SDK's delete and recover pollers wait on)."""
        secret = self.state.get_secret(name)
        if secret is None:
            return
        now, lag = self.state.clock(), self.state.faults.replication
        deleting = secret.deleted_at is not None and now < secret.deleted_at + timedelta(
            seconds=lag.vault_delete_s
        )
        began = self._recovered_at.get(secret.name)
        recovering = began is not None and now < began + timedelta(seconds=lag.vault_recover_s)
        if not (deleting or recovering):
            return
        if action == "get":
            raise _not_found(name)
        raise _being_deleted(name) if deleting else _being_recovered(name)

    def app(self) -> web.Application:
        app = make_app("keyvault", self.state, self.state.faults.keyvault, _fault_body)
        routes = [
            ("GET", "/secrets", self.list_secrets, "list"),
            ("PUT", "/secrets/{name}", self.set_secret, "set"),
            ("GET", "/secrets/{name}/versions", self.list_versions, "list"),
            ("GET", "/secrets/{name}", self.get_secret, "get"),
            ("GET", "/secrets/{name}/", self.get_secret, "get"),
            ("GET", "/secrets/{name}/{version}", self.get_secret, "get"),
            ("PATCH", "/secrets/{name}/", self.update_secret, "update"),
            ("PATCH", "/secrets/{name}/{version}", self.update_secret, "update"),
            ("DELETE", "/secrets/{name}", self.delete_secret, "delete"),
            ("GET", "/deletedsecrets", self.list_deleted, "list"),
            ("GET", "/deletedsecrets/{name}", self.get_deleted, "get"),
            ("DELETE", "/deletedsecrets/{name}", self.purge, "purge"),
            ("POST", "/deletedsecrets/{name}/recover", self.recover, "recover"),
        ]
        for method, path, handler, action in routes:
            app.router.add_route(method, path, self._guard(handler, action))
        # Certificates live on the same vault host, with their own RBAC role (sandbox/kv_certificates.py).
        VaultCertificates(self.state, vault_uri=self.uri, authority=self.authority).register(app)
        return app

    def _guard(self, handler: Any, action: str) -> Any:
        async def guarded(request: web.Request) -> web.Response:
            challenge = {
                "WWW-Authenticate": f'Bearer authorization="{self.authority}/{self.state.tenant_id}", '
                f'resource="{self.state.vault_resource}"'
            }
            header = request.headers.get("Authorization", "")
            if not header.lower().startswith("bearer "):
                response = vault_error(
                    401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."
                )
                response.headers.update(challenge)
                return response
            try:
                claims = self.state.issuer.verify(header[7:].strip(), audience=self.state.vault_resource)
            except TokenError as exc:
                response = vault_error(401, "Unauthorized", f"AKV10032: Token validation failed: {exc}.")
                response.headers.update(challenge)
                return response
            request[CALLER_KEY] = str(claims.get("appid", ""))
            # A role on one secret (an ARM assignment scoped to it) counts for that secret's paths only.
            secret = request.match_info.get("name") if request.path.startswith("/secrets/") else None
            if not self.state.vault_allows(str(claims.get("oid", "")), action, secret):
                return vault_error(
                    403,
                    "Forbidden",
                    "Caller is not authorized to perform action on resource.\r\n"
                    f"Caller: appid={claims.get('appid')};oid={claims.get('oid')}\r\n"
                    f"Action: 'Microsoft.KeyVault/vaults/secrets/{action}'\r\nAssignment: (not found)\r\n",
                    "ForbiddenByRbac",
                )
            name = request.match_info.get("name")
            if name is not None and not NAME.match(name):
                return vault_error(
                    400, "BadParameter", "The request URI contains an invalid name: " + name[:127]
                )
            try:
                body = await self._body(request)
                with self.state.lock:
                    if name is not None and action != "list":
                        self._transitions(name, action)
                    return self._call(handler, request, body)
            except VaultError as exc:
                return vault_error(exc.status, exc.code, exc.message, exc.inner)

        return guarded

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        if request.method not in {"PUT", "PATCH"}:
            return {}
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            raise VaultError(400, "BadParameter", "The request body is not valid JSON.") from None
        return body if isinstance(body, dict) else {}

    @staticmethod
    def _call(handler: Any, request: web.Request, body: dict[str, Any]) -> web.Response:
        response: web.Response = handler(request, body)
        return response

    # ------------------------------------------------------------ serialisation
    def _attributes(self, v: SecretVersion) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "enabled": v.enabled,
            "created": _epoch(v.created),
            "updated": _epoch(v.updated),
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        }
        if v.expires is not None:
            attrs["exp"] = _epoch(v.expires)
        if v.not_before is not None:
            attrs["nbf"] = _epoch(v.not_before)
        return attrs

    def _bundle(self, s: VaultSecret, v: SecretVersion, *, value: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"{self.uri}/secrets/{s.name}/{v.version}",
            "attributes": self._attributes(v),
            "tags": dict(v.tags),
        }
        if value:
            out["value"] = v.value
        if v.content_type is not None:
            out["contentType"] = v.content_type
        if v.managed:  # a certificate's secret names its key, as Key Vault's does
            out["kid"] = f"{self.uri}/keys/{s.name}/{v.version}"
            out["managed"] = True
        return out

    def _deleted_bundle(self, s: VaultSecret) -> dict[str, Any]:
        assert s.deleted_at is not None
        return {
            **self._bundle(s, s.current, value=False),
            "recoveryId": f"{self.uri}/deletedsecrets/{s.name}",
            "deletedDate": _epoch(s.deleted_at),
            "scheduledPurgeDate": _epoch(s.deleted_at + RETENTION),
        }

    def _live(self, name: str) -> VaultSecret:
        s = self.state.get_secret(name)
        if s is None or s.deleted_at is not None:
            raise _not_found(name)
        return s

    def _version(self, s: VaultSecret, version: str | None) -> SecretVersion:
        if not version:
            return s.current
        for v in s.versions:
            if v.version == version:
                return v
        raise _not_found(f"{s.name}/{version}")

    @staticmethod
    def _apply_attributes(v: SecretVersion, attrs: dict[str, Any]) -> None:
        if "enabled" in attrs and attrs["enabled"] is not None:
            v.enabled = bool(attrs["enabled"])
        if "exp" in attrs:
            v.expires = None if attrs["exp"] is None else datetime.fromtimestamp(attrs["exp"], UTC)
        if "nbf" in attrs:
            v.not_before = None if attrs["nbf"] is None else datetime.fromtimestamp(attrs["nbf"], UTC)

    # ------------------------------------------------------------ handlers
    def set_secret(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        name = request.match_info["name"]
        existing = self.state.get_secret(name)
        if existing is not None and existing.deleted_at is not None:
            raise VaultError(
                409,
                "Conflict",
                f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in "
                "this state, the secret can only be recovered or purged.",
                "ObjectIsDeletedButRecoverable",
            )
        if not isinstance(body.get("value"), str):
            raise VaultError(400, "BadParameter", "Property value is required.")
        now = self.state.now()
        version = SecretVersion(
            version=uuid.uuid4().hex,
            value=body["value"],
            created=now,
            updated=now,
            content_type=body.get("contentType"),
            tags={str(k): str(v) for k, v in (body.get("tags") or {}).items()},
        )
        self._apply_attributes(version, body.get("attributes") or {})
        secret = self.state.put_secret(existing.name if existing else name, version)
        return web.json_response(self._bundle(secret, version, value=True))

    def get_secret(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        secret = self._live(request.match_info["name"])
        version = self._version(secret, request.match_info.get("version"))
        if not version.enabled:
            raise VaultError(
                403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled"
            )
        return web.json_response(self._bundle(secret, version, value=True))

    def update_secret(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        secret = self._live(request.match_info["name"])
        version = self._version(secret, request.match_info.get("version"))
        self._apply_attributes(version, body.get("attributes") or {})
        if "contentType" in body:
            version.content_type = body["contentType"]
        if "tags" in body and body["tags"] is not None:
            version.tags = {str(k): str(v) for k, v in body["tags"].items()}
        version.updated = self.state.now()
        return web.json_response(self._bundle(secret, version, value=False))

    def list_secrets(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        items = []
        for s in self.state.vault_secrets():
            if s.deleted_at is None:
                item = self._bundle(s, s.current, value=False)
                item["id"] = f"{self.uri}/secrets/{s.name}"
                items.append(item)
        return web.json_response({"value": items, "nextLink": None})

    def list_versions(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        secret = self._live(request.match_info["name"])
        return web.json_response(
            {"value": [self._bundle(secret, v, value=False) for v in secret.versions], "nextLink": None}
        )

    def delete_secret(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        secret = self._live(request.match_info["name"])
        secret.deleted_at = self.state.now()
        return web.json_response(self._deleted_bundle(secret))

    def _deleted(self, name: str) -> VaultSecret:
        s = self.state.get_secret(name)
        if s is None or s.deleted_at is None:
            raise VaultError(404, "SecretNotFound", f"Deleted Secret not found: {name}")
        return s

    def list_deleted(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        items = [self._deleted_bundle(s) for s in self.state.vault_secrets() if s.deleted_at is not None]
        return web.json_response({"value": items, "nextLink": None})

    def get_deleted(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return web.json_response(self._deleted_bundle(self._deleted(request.match_info["name"])))

    def purge(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        self.state.purge_secret(self._deleted(request.match_info["name"]).name)
        return web.Response(status=204)

    def recover(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        secret = self._deleted(request.match_info["name"])
        secret.deleted_at = None
        self._recovered_at[secret.name] = self.state.clock()
        return web.json_response(self._bundle(secret, secret.current, value=False))
