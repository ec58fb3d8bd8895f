"""Key Vault certificates stand-in: the data-plane REST API azure-keyvault-certificates speaks, on the
vault's own host (docs/sandbox-facts.md, "Key Vault certificates").

Modelled: create from a policy with the self-signed issuer (RSA 2048/3072/4096, validity in months,
PKCS#12 or PEM), the pending operation (``inProgress`` when created, ``completed`` when next polled;
a create while one is in progress is a 409), get (current or a version), versions, soft delete,
recover and purge. Each version's private key lives, as Key Vault keeps it, in the secret of the
same name and version (``managed``), read through the secrets API. Not modelled: other issuers,
import, merge, contacts, lifetime actions (auto-renewal) and the keys API.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from sandbox import catalog
from sandbox.state import (
    CertificateOperation,
    CertificateVersion,
    SecretVersion,
    TenantState,
    VaultCertificate,
)
from sandbox.tokens import TokenError
from sandbox.web import CALLER_KEY

NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
KEY_SIZES = (2048, 3072, 4096)
CONTENT_TYPES = ("application/x-pkcs12", "application/x-pem-file")
RETENTION = timedelta(days=90)


class CertificateError(Exception):
    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner


def _error(status: int, code: str, message: str, inner: str | None = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return web.json_response({"error": error}, status=status)


def _epoch(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _not_found(name: str) -> CertificateError:
    return CertificateError(
        404,
        "CertificateNotFound",
        f"A certificate with (name/id) {name} was not found in this key vault. If you recently deleted this "
        "certificate you may be able to recover it using the correct recovery command.",
    )


def _bad(message: str) -> CertificateError:
    return CertificateError(400, "BadParameter", message)


class VaultCertificates:
    def __init__(self, state: TenantState, *, vault_uri: str, authority: str) -> None:
        self.state = state
        self.uri = vault_uri.rstrip("/")
        self.authority = authority

    def register(self, app: web.Application) -> None:
        routes = [
            ("GET", "/certificates", self.list_certificates, "list"),
            ("POST", "/certificates/{name}/create", self.create, "create"),
            ("GET", "/certificates/{name}/pending", self.get_operation, "get"),
            ("GET", "/certificates/{name}/versions", self.list_versions, "list"),
            ("GET", "/certificates/{name}/policy", self.get_policy, "get"),
            ("GET", "/certificates/{name}/", self.get_certificate, "get"),
            ("GET", "/certificates/{name}/{version}", self.get_certificate, "get"),
            ("DELETE", "/certificates/{name}", self.delete, "delete"),
            ("GET", "/deletedcertificates/{name}", self.get_deleted, "get"),
            ("DELETE", "/deletedcertificates/{name}", self.purge, "purge"),
            ("POST", "/deletedcertificates/{name}/recover", self.recover, "recover"),
        ]
        for method, path, handler, action in routes:
            app.router.add_route(method, path, self._guard(handler, action))

    # ------------------------------------------------------------ authentication and RBAC
    def _guard(self, handler: Any, action: str) -> Any:
        async def guarded(request: web.Request) -> web.Response:
            header = request.headers.get("Authorization", "")
            challenge = {
                "WWW-Authenticate": f'Bearer authorization="{self.authority}/{self.state.tenant_id}", '
                f'resource="{self.state.vault_resource}"'
            }
            if not header.lower().startswith("bearer "):
                response = _error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
                response.headers.update(challenge)
                return response
            try:
                claims = self.state.issuer.verify(header[7:].strip(), audience=self.state.vault_resource)
            except TokenError as exc:
                response = _error(401, "Unauthorized", f"AKV10032: Token validation failed: {exc}.")
                response.headers.update(challenge)
                return response
            request[CALLER_KEY] = str(claims.get("appid", ""))
            role = self.state.vault_certificate_role(str(claims.get("oid", "")))
            if role is None or action not in catalog.VAULT_CERTIFICATE_ROLE_ACTIONS.get(role, frozenset()):
                return _error(
                    403,
                    "Forbidden",
                    "Caller is not authorized to perform action on resource.\r\n"
                    f"Caller: appid={claims.get('appid')};oid={claims.get('oid')}\r\n"
                    f"Action: 'Microsoft.KeyVault/vaults/certificates/{action}'\r\nAssignment: (not found)\r\n",
                    "ForbiddenByRbac",
                )
            name = request.match_info.get("name")
            if name is not None and not NAME.match(name):
                return _error(400, "BadParameter", "The request URI contains an invalid name: " + name[:127])
            try:
                body = json.loads(await request.read() or b"{}") if request.method == "POST" else {}
            except ValueError:
                return _error(400, "BadParameter", "The request body is not valid JSON.")
            try:
                with self.state.lock:
                    answer: web.Response = handler(request, body if isinstance(body, dict) else {})
                    return answer
            except CertificateError as exc:
                return _error(exc.status, exc.code, exc.message, exc.inner)

        return guarded

    # ------------------------------------------------------------ serialisation
    def _attributes(self, v: CertificateVersion) -> dict[str, Any]:
        return {
            "enabled": v.enabled,
            "nbf": _epoch(v.not_before),
            "exp": _epoch(v.expires),
            "created": _epoch(v.created),
            "updated": _epoch(v.created),
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        }

    def _policy(self, c: VaultCertificate) -> dict[str, Any]:
        return {"id": f"{self.uri}/certificates/{c.name}/policy", **c.policy}

    def _bundle(self, c: VaultCertificate, v: CertificateVersion) -> dict[str, Any]:
        return {
            "id": f"{self.uri}/certificates/{c.name}/{v.version}",
            "kid": f"{self.uri}/keys/{c.name}/{v.version}",
            "sid": f"{self.uri}/secrets/{c.name}/{v.version}",
            "x5t": _b64url(hashlib.sha1(v.der).digest()),  # noqa: S324 - X.509 thumbprint, not security
            "cer": base64.b64encode(v.der).decode("ascii"),
            "attributes": self._attributes(v),
            "policy": self._policy(c),
            "tags": dict(v.tags),
        }

    def _operation(self, c: VaultCertificate) -> dict[str, Any]:
        op = c.operation
        assert op is not None
        body: dict[str, Any] = {
            "id": f"{self.uri}/certificates/{c.name}/pending",
            "issuer": {"name": "Self"},
            "cancellation_requested": False,
            "status": op.status,
            "request_id": op.request_id,
        }
        if op.status == "completed":
            body["target"] = f"{self.uri}/certificates/{c.name}"
        else:
            body["status_details"] = (
                "Pending certificate created. Certificate request is in progress. This may take some time "
                "based on the issuer provider. Please check again later."
            )
        return body

    def _live(self, name: str) -> VaultCertificate:
        c = self.state.get_certificate(name)
        if c is None or c.deleted_at is not None or not c.versions:
            raise _not_found(name)
        return c

    # ------------------------------------------------------------ create and the pending operation
    def create(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        name = request.match_info["name"]
        existing = self.state.get_certificate(name)
        if existing is not None and existing.deleted_at is not None:
            raise CertificateError(
                409,
                "Conflict",
                f"Certificate {name} is currently in a deleted but recoverable state, and its name cannot be "
                "reused; in this state, the certificate can only be recovered or purged.",
                "ObjectIsDeletedButRecoverable",
            )
        if (
            existing is not None
            and existing.operation is not None
            and existing.operation.status == "inProgress"
        ):
            raise CertificateError(409, "Conflict", f"There is a pending request for certificate {name}.")
        policy = self._checked_policy(body.get("policy"))
        tags = {str(k): str(v) for k, v in (body.get("tags") or {}).items()}
        made, secret = self._issue(policy, tags)
        certificate = existing or VaultCertificate(name=name, policy=policy)
        certificate.policy = policy
        certificate.operation = CertificateOperation(uuid.uuid4().hex, made, secret)
        self.state.put_certificate(certificate)
        return web.json_response(self._operation(certificate), status=202)

    def _checked_policy(self, policy: Any) -> dict[str, Any]:
        """The policy as Key Vault keeps it; refused when this stand-in cannot issue it."""
        if not isinstance(policy, dict):
            raise _bad("Property policy is required.")
        issuer = str((policy.get("issuer") or {}).get("name") or "")
        if issuer.lower() != "self":
            raise _bad("Only the issuer Self is modelled by the sandbox.")
        key = policy.get("key_props") or {}
        if key.get("kty", "RSA") not in ("RSA", "RSA-HSM") or key.get("key_size", 2048) not in KEY_SIZES:
            raise _bad(f"Key size must be one of {list(KEY_SIZES)} for an RSA key.")
        x509_props = policy.get("x509_props") or {}
        if not x509_props.get("subject"):
            raise _bad("Property x509_props.subject is required.")
        months = x509_props.get("validity_months", 12)
        if not isinstance(months, int) or months < 1:
            raise _bad("Property x509_props.validity_months must be a positive integer.")
        content_type = (policy.get("secret_props") or {}).get("contentType", CONTENT_TYPES[0])
        if content_type not in CONTENT_TYPES:
            raise _bad(f"Property secret_props.contentType must be one of {list(CONTENT_TYPES)}.")
        return {
            "key_props": {
                "exportable": key.get("exportable", True),
                "kty": "RSA",
                "key_size": key.get("key_size", 2048),
                "reuse_key": key.get("reuse_key", False),
            },
            "secret_props": {"contentType": content_type},
            "x509_props": {**x509_props, "validity_months": months},
            "issuer": {"name": "Self"},
            "attributes": {"enabled": True},
        }

    def _issue(
        self, policy: dict[str, Any], tags: dict[str, str]
    ) -> tuple[CertificateVersion, SecretVersion]:
        """A key pair and a self-signed certificate; the private key goes into the managed secret."""
        now = self.state.now()
        months = int(policy["x509_props"]["validity_months"])
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(policy["key_props"]["key_size"]))
        subject = _subject(str(policy["x509_props"]["subject"]))
        # Real certificates are valid from a little before issuance (clock skew): five minutes here.
        not_before, expires = now - timedelta(minutes=5), now + timedelta(days=30 * months)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(expires)
            .sign(key, hashes.SHA256())
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        version = uuid.uuid4().hex
        made = CertificateVersion(version, der, now, not_before, expires, tags)
        content_type = policy["secret_props"]["contentType"]
        value = _secret_value(key, cert, content_type)
        self.state.record_issued_secret(_key_body(value) if content_type.endswith("pem-file") else value)
        secret = SecretVersion(
            version=version,
            value=value,
            created=now,
            updated=now,
            content_type=content_type,
            tags=dict(tags),
            expires=expires,
            not_before=not_before,
            managed=True,
        )
        return made, secret

    def get_operation(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        name = request.match_info["name"]
        c = self.state.get_certificate(name)
        if c is None or c.operation is None or c.deleted_at is not None:
            raise CertificateError(
                404, "PendingCertificateNotFound", f"Pending certificate not found: {name}"
            )
        if c.operation.status == "inProgress":
            self._complete(c)
        return web.json_response(self._operation(c))

    def _complete(self, c: VaultCertificate) -> None:
        """A self-signed issuance finishes at once: the version and its secret become visible."""
        op = c.operation
        assert op is not None
        op.status = "completed"
        c.versions.append(op.made)
        self.state.put_secret(c.name, op.secret)

    # ------------------------------------------------------------ reads
    def get_certificate(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        c = self._live(request.match_info["name"])
        wanted = request.match_info.get("version")
        version = next((v for v in c.versions if v.version == wanted), None) if wanted else c.versions[-1]
        if version is None:
            raise _not_found(f"{c.name}/{wanted}")
        return web.json_response(self._bundle(c, version))

    def get_policy(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return web.json_response(self._policy(self._live(request.match_info["name"])))

    def list_versions(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        c = self._live(request.match_info["name"])
        items = [self._item(c, v, versioned=True) for v in c.versions]
        return web.json_response({"value": items, "nextLink": None})

    def list_certificates(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        live = [c for c in self.state.vault_certificates() if c.deleted_at is None and c.versions]
        items = [self._item(c, c.versions[-1], versioned=False) for c in live]
        return web.json_response({"value": items, "nextLink": None})

    def _item(self, c: VaultCertificate, v: CertificateVersion, *, versioned: bool) -> dict[str, Any]:
        bundle = self._bundle(c, v)
        return {
            "id": bundle["id"] if versioned else f"{self.uri}/certificates/{c.name}",
            "x5t": bundle["x5t"],
            "attributes": bundle["attributes"],
            "tags": bundle["tags"],
        }

    # ------------------------------------------------------------ soft delete, recover, purge
    def delete(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        c = self._live(request.match_info["name"])
        c.deleted_at = self.state.now()
        secret = self.state.get_secret(c.name)
        if secret is not None:
            secret.deleted_at = c.deleted_at  # the certificate's key and secret go with it
        return web.json_response(self._deleted_bundle(c))

    def _deleted(self, name: str) -> VaultCertificate:
        c = self.state.get_certificate(name)
        if c is None or c.deleted_at is None:
            raise CertificateError(404, "CertificateNotFound", f"Deleted Certificate not found: {name}")
        return c

    def _deleted_bundle(self, c: VaultCertificate) -> dict[str, Any]:
        assert c.deleted_at is not None
        return {
            **self._bundle(c, c.versions[-1]),
            "recoveryId": f"{self.uri}/deletedcertificates/{c.name}",
            "deletedDate": _epoch(c.deleted_at),
            "scheduledPurgeDate": _epoch(c.deleted_at + RETENTION),
        }

    def get_deleted(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return web.json_response(self._deleted_bundle(self._deleted(request.match_info["name"])))

    def recover(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        c = self._deleted(request.match_info["name"])
        c.deleted_at = None
        secret = self.state.get_secret(c.name)
        if secret is not None:
            secret.deleted_at = None
        return web.json_response(self._bundle(c, c.versions[-1]))

    def purge(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        self.state.purge_certificate(self._deleted(request.match_info["name"]).name)
        return web.Response(status=204)


def _subject(text: str) -> x509.Name:
    """``CN=...`` (the only attribute this stand-in reads from a policy's subject)."""
    common = text.split("=", 1)[1] if text.upper().startswith("CN=") else text
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common.split(",")[0].strip() or "certificate")])


def _secret_value(key: rsa.RSAPrivateKey, cert: x509.Certificate, content_type: str) -> str:
    """What Key Vault's secret of a certificate holds: PEM text (key, then certificate), or a PFX
    without password, base64-encoded."""
    if content_type == "application/x-pem-file":
        pem_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return (pem_key + cert.public_bytes(serialization.Encoding.PEM)).decode("ascii")
    pfx = pkcs12.serialize_key_and_certificates(None, key, cert, None, serialization.NoEncryption())
    return base64.b64encode(pfx).decode("ascii")


def _key_body(pem: str) -> str:
    """One line from the middle of the PEM's private key: random, and the same text whether the PEM
    appears as it is or JSON-encoded (its line breaks escaped), so a leak scan finds it either way.
    (The first lines are the ASN.1 header every RSA key of a size shares.)"""
    start = pem.index("-----BEGIN PRIVATE KEY-----")
    lines = pem[start : pem.index("-----END PRIVATE KEY-----")].splitlines()
    return lines[len(lines) // 2]


def thumbprint(der: bytes) -> bytes:
    """The SHA-1 thumbprint Entra ID names a certificate by (x5t, customKeyIdentifier)."""
    return hashlib.sha1(der).digest()  # noqa: S324 - X.509 thumbprint, not security
