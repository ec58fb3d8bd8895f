"""The sandbox tenant's directory, Exchange and Key Vault contents, shared by every stand-in service.

All services run in one event-loop thread while tests read from theirs, so every access goes through
one re-entrant lock, and the readers hand out deep copies. Secret values live only in this module's
objects and are kept out of their ``repr`` so that an assertion message never prints one.
"""

from __future__ import annotations

import copy
import hmac
import secrets
import string
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sandbox import catalog
from sandbox.faults import Faults
from sandbox.mail_auth import MailboxClosed
from sandbox.tokens import TokenError, TokenIssuer

Clock = Callable[[], datetime]


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class AppRole:
    id: str
    value: str
    display_name: str
    description: str = ""
    allowed_member_types: tuple[str, ...] = ("Application",)
    is_enabled: bool = True


@dataclass
class PasswordCredential:
    key_id: str
    display_name: str | None
    start: datetime
    end: datetime
    hint: str
    secret_text: str = field(repr=False)


@dataclass
class KeyCredential:
    """A certificate on an app: its public part (DER) and the thumbprint that names it."""

    key_id: str
    display_name: str | None
    start: datetime
    end: datetime
    der: bytes = field(repr=False)
    custom_key_identifier: bytes = b""  # the SHA-1 thumbprint unless the writer set another
    type: str = "AsymmetricX509Cert"
    usage: str = "Verify"


@dataclass
class Application:
    id: str
    app_id: str
    display_name: str
    created_at: datetime
    unique_name: str | None = None
    sign_in_audience: str = "AzureADMyOrg"
    required_resource_access: list[dict[str, Any]] = field(default_factory=list)
    redirect_uris: list[str] = field(default_factory=list)
    notes: str | None = None
    tags: list[str] = field(default_factory=list)
    passwords: list[PasswordCredential] = field(default_factory=list)
    keys: list[KeyCredential] = field(default_factory=list)
    owners: set[str] = field(default_factory=set)  # service principal object ids
    deleted_at: datetime | None = None


@dataclass
class ServicePrincipal:
    id: str
    app_id: str
    display_name: str
    created_at: datetime
    app_roles: list[AppRole] = field(default_factory=list)
    scopes: list[AppRole] = field(default_factory=list)  # delegated permissions
    service_principal_type: str = "Application"
    app_owner_organization_id: str | None = None
    owners: set[str] = field(default_factory=set)
    directory_roles: set[str] = field(default_factory=set)  # role template ids, become ``wids``
    tags: list[str] = field(default_factory=list)


@dataclass
class AppRoleAssignment:
    id: str
    principal_id: str
    resource_id: str
    app_role_id: str
    created_at: datetime
    principal_display_name: str = ""
    principal_type: str = "ServicePrincipal"
    resource_display_name: str = ""


@dataclass
class ExchangeServicePrincipal:
    object_id: str  # the Entra service principal object id (New-ServicePrincipal -ObjectId)
    app_id: str
    display_name: str
    identity: str  # Exchange's own object
    created_at: datetime


@dataclass
class MailboxPermission:
    mailbox: str
    user: str  # Exchange service principal object id
    access_rights: tuple[str, ...]
    created_at: datetime
    auto_mapping: bool = False


@dataclass
class Mailbox:
    address: str
    display_name: str
    id: str
    imap_enabled: bool = True
    pop_enabled: bool = True


@dataclass
class SecretVersion:
    version: str
    value: str = field(repr=False)
    created: datetime
    updated: datetime
    content_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    expires: datetime | None = None
    not_before: datetime | None = None
    managed: bool = False  # the secret of a certificate (its private key): Key Vault writes it, not us


@dataclass
class CertificateVersion:
    version: str
    der: bytes = field(repr=False)
    created: datetime
    not_before: datetime
    expires: datetime
    tags: dict[str, str] = field(default_factory=dict)
    enabled: bool = True


@dataclass
class CertificateOperation:
    """A creation in progress: the version it will make, complete once polled (self-signed)."""

    request_id: str
    made: CertificateVersion
    secret: SecretVersion = field(repr=False)
    status: str = "inProgress"


@dataclass
class VaultCertificate:
    name: str
    policy: dict[str, Any]
    versions: list[CertificateVersion] = field(default_factory=list)  # oldest first
    operation: CertificateOperation | None = None
    deleted_at: datetime | None = None


@dataclass
class VaultSecret:
    name: str
    versions: list[SecretVersion] = field(default_factory=list)  # oldest first
    deleted_at: datetime | None = None

    @property
    def current(self) -> SecretVersion:
        return self.versions[-1]


@dataclass
class RbacAssignment:
    """An Azure RBAC role assignment made through Azure Resource Manager (``sandbox/arm.py``)."""

    name: str  # a GUID, the last segment of its id
    scope: str  # as given: the vault's resource id, or one secret's (``{vault id}/secrets/{name}``)
    role_definition_id: (
        str  # ``/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}``
    )
    principal_id: str
    principal_type: str | None
    created_at: datetime
    updated_by: str = ""

    @property
    def id(self) -> str:
        return f"{self.scope}/providers/Microsoft.Authorization/roleAssignments/{self.name}"

    @property
    def role_guid(self) -> str:
        return self.role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()


@dataclass
class SentMail:
    sender: str
    to: list[str]
    cc: list[str]
    subject: str
    html: str
    content_type: str
    sent_at: datetime
    sent_by_app_id: str | None
    text: str = ""  # the text/plain part of a multipart/alternative (MIME) message


@dataclass
class RequestLogEntry:
    time: datetime
    service: str
    method: str
    path: str  # percent-decoded
    raw_path: str  # as sent, without the query
    status: int
    caller_app_id: str | None
    retry_after: str | None
    latency_ms: float
    fault: str | None = None


@dataclass
class AppManagementPolicy:
    """The tenant's default app management policy, as far as client secrets go: ``block_passwords``
    (restriction ``passwordAddition``) or ``password_max_lifetime`` (``passwordLifetime``). Off by default."""

    block_passwords: bool = False
    password_max_lifetime: timedelta | None = None
    policy_id: str = "00000000-0000-0000-0000-00000000a9b1"


class TenantState:
    """One tenant: directory objects, Exchange registrations and permissions, vault, outbox, log."""

    def __init__(
        self, *, tenant_id: str, domain: str, clock: Clock, issuer: TokenIssuer, faults: Faults
    ) -> None:
        self.lock = threading.RLock()
        self.tenant_id = tenant_id
        self.domain = domain
        self.unverified_domains: list[str] = [f"unverified.{domain}"]
        self.clock = clock
        self.issuer = issuer
        self.faults = faults
        self.app_policy = AppManagementPolicy()
        # Set by the composition once the ports are known.
        self.graph_resource = ""
        self.exchange_resource = ""
        self.vault_resource = ""
        self.arm_resource = ""
        # The vault as an Azure resource: ``/subscriptions/{sub}/resourceGroups/{rg}/providers/
        # Microsoft.KeyVault/vaults/{name}``, the scope of its role assignments.
        self.vault_resource_id = ""
        self._apps: dict[str, Application] = {}
        self._sps: dict[str, ServicePrincipal] = {}
        self._assignments: dict[str, AppRoleAssignment] = {}
        self._exchange_sps: dict[str, ExchangeServicePrincipal] = {}
        self._mailbox_permissions: list[MailboxPermission] = []
        # The same permissions by mailbox: every login and grant looks one mailbox up, and a scan of
        # the list made a 10,000-mailbox benchmark quadratic in the stand-in (its CPU, not Exchange's).
        self._permissions_by_mailbox: dict[str, list[MailboxPermission]] = {}
        self._mailboxes: dict[str, Mailbox] = {}
        self._vault_roles: dict[str, str] = {}  # principal object id -> RBAC role name
        self._vault_role_since: dict[str, datetime] = {}  # when each principal's role was assigned
        self._vault_certificate_roles: dict[str, str] = {}  # principal object id -> certificates role
        self._certificates: dict[str, VaultCertificate] = {}
        self._secrets: dict[str, VaultSecret] = {}
        self._rbac: dict[str, RbacAssignment] = {}  # lower-cased name -> assignment
        # Principals that may write role assignments on the vault and below, and the role definition
        # GUIDs their assignment's condition lets them assign (docs/security.md).
        self._role_writers: dict[str, frozenset[str]] = {}
        self._outbox: list[SentMail] = []
        self._log: list[RequestLogEntry] = []
        self._issued_secrets: list[str] = []
        self.graph_sp = self._seed_resource(catalog.GRAPH_APP_ID, "Microsoft Graph", catalog.GRAPH_APP_ROLES)
        self.graph_sp.scopes = [AppRole(r.id, r.value, r.description) for r in catalog.GRAPH_DELEGATED_SCOPES]
        self.exchange_sp = self._seed_resource(
            catalog.EXCHANGE_APP_ID, "Office 365 Exchange Online", catalog.EXCHANGE_APP_ROLES
        )
        self.vault_sp = self._seed_resource(catalog.KEY_VAULT_APP_ID, "Azure Key Vault", ())
        self.arm_sp = self._seed_resource(catalog.ARM_APP_ID, "Windows Azure Service Management API", ())

    # ---------------------------------------------------------------- seeding
    def _seed_resource(self, app_id: str, name: str, roles: Iterable[catalog.RoleDef]) -> ServicePrincipal:
        sp = ServicePrincipal(
            id=new_id(),
            app_id=app_id,
            display_name=name,
            # Seeded first-party objects exist "since forever": no replication delay applies.
            created_at=datetime(2020, 1, 1, tzinfo=self.clock().tzinfo),
            app_roles=[AppRole(r.id, r.value, r.description, r.description) for r in roles],
            app_owner_organization_id="f8cdef31-a31e-4b4a-93e4-5f571e91255a",
        )
        self._sps[sp.id] = sp
        return sp

    def seed_managed_identity(self, display_name: str) -> ServicePrincipal:
        with self.lock:
            sp = ServicePrincipal(
                id=new_id(),
                app_id=new_id(),
                display_name=display_name,
                created_at=datetime(2020, 1, 1, tzinfo=self.clock().tzinfo),
                service_principal_type="ManagedIdentity",
            )
            self._sps[sp.id] = sp
            return sp

    def set_principal_roles(
        self,
        principal_id: str,
        *,
        graph: Iterable[str] | None = None,
        exchange: Iterable[str] | None = None,
        directory_roles: Iterable[str] | None = None,
        vault_role: str | None = None,
    ) -> None:
        """Replace what a principal holds on each resource given (role values / role names).

        Assignments made this way are backdated: they stand for grants made long before the test.
        """
        with self.lock:
            old = datetime(2020, 1, 1, tzinfo=self.clock().tzinfo)
            for resource, values in ((self.graph_sp, graph), (self.exchange_sp, exchange)):
                if values is None:
                    continue
                for aid in [
                    a.id
                    for a in self._assignments.values()
                    if a.principal_id == principal_id and a.resource_id == resource.id
                ]:
                    del self._assignments[aid]
                for value in values:
                    role = self.role_by_value(resource, value)
                    self._add_assignment(principal_id, resource, role.id, created_at=old)
            if directory_roles is not None:
                self._sps[principal_id].directory_roles = {
                    catalog.DIRECTORY_ROLES[n] for n in directory_roles
                }
            if vault_role is not None:
                if vault_role:
                    self._vault_roles[principal_id] = vault_role
                else:
                    self._vault_roles.pop(principal_id, None)

    def set_vault_role(self, principal_id: str, role: str | None) -> None:
        with self.lock:
            if role:
                if self._vault_roles.get(principal_id) != role:
                    self._vault_role_since[principal_id] = self.clock()
                self._vault_roles[principal_id] = role
            else:
                self._vault_roles.pop(principal_id, None)

    def vault_role_in_effect(self, principal_id: str) -> str | None:
        """The principal's vault role once Azure RBAC has propagated it (``replication.vault_role_s``)."""
        with self.lock:
            since = self._vault_role_since.get(principal_id)
            if since is not None and not self._visible(since, self.faults.replication.vault_role_s):
                return None
            return self._vault_roles.get(principal_id)

    def set_vault_certificate_role(self, principal_id: str, role: str | None) -> None:
        """Key Vault Certificates Officer (or none): the certificates API's own RBAC role."""
        with self.lock:
            if role:
                self._vault_certificate_roles[principal_id] = role
            else:
                self._vault_certificate_roles.pop(principal_id, None)

    def vault_certificate_role(self, principal_id: str) -> str | None:
        with self.lock:
            return self._vault_certificate_roles.get(principal_id)

    def vault_role(self, principal_id: str) -> str | None:
        with self.lock:
            return self._vault_roles.get(principal_id)

    def vault_allows(self, principal_id: str, action: str, secret_name: str | None = None) -> bool:
        """Key Vault's data-plane decision: a vault-wide role (``set_vault_role``, or an ARM assignment
        on the vault) or an ARM assignment on the one secret ``secret_name`` whose role allows
        ``action``, once Azure RBAC has applied it (``replication.vault_role_s`` after it was made).
        A secret-scoped assignment never allows what is asked of the vault itself (listing secrets)."""
        with self.lock:
            role = self.vault_role_in_effect(principal_id)
            if role is not None and action in catalog.VAULT_ROLE_ACTIONS.get(role, frozenset()):
                return True
            vault = self.vault_resource_id.lower()
            scopes = {vault}
            if secret_name is not None:
                scopes.add(f"{vault}/secrets/{secret_name.lower()}")
            for a in self._rbac.values():
                if a.principal_id.lower() != principal_id.lower() or a.scope.lower() not in scopes:
                    continue
                if not self._visible(a.created_at, self.faults.replication.vault_role_s):
                    continue
                granted = catalog.VAULT_ROLE_DEFINITION_IDS.get(a.role_guid)
                if granted and action in catalog.VAULT_ROLE_ACTIONS[granted]:
                    return True
            return False

    # ---------------------------------------------------------------- Azure RBAC (ARM)
    def allow_role_assignments(self, principal_id: str, role_guids: Iterable[str] | None) -> None:
        """Let a principal write and delete role assignments of these roles on the vault and below
        (Role Based Access Control Administrator, with a condition); None takes it away."""
        with self.lock:
            if role_guids is None:
                self._role_writers.pop(principal_id, None)
            else:
                self._role_writers[principal_id] = frozenset(g.lower() for g in role_guids)

    def may_assign(self, principal_id: str, role_guid: str) -> bool:
        with self.lock:
            return role_guid.lower() in self._role_writers.get(principal_id, frozenset())

    def may_read_assignments(self, principal_id: str) -> bool:
        with self.lock:
            return principal_id in self._role_writers

    def rbac_assignment(self, name: str) -> RbacAssignment | None:
        return self._rbac.get(name.lower())

    def put_rbac_assignment(self, assignment: RbacAssignment) -> None:
        with self.lock:
            self._rbac[assignment.name.lower()] = assignment

    def delete_rbac_assignment(self, name: str) -> RbacAssignment | None:
        with self.lock:
            return self._rbac.pop(name.lower(), None)

    def rbac_assignments_matching(
        self, scope: str, principal_id: str, role_guid: str
    ) -> list[RbacAssignment]:
        """Assignments of this role to this principal at exactly this scope (whatever their names)."""
        with self.lock:
            return [
                a
                for a in self._rbac.values()
                if a.scope.lower() == scope.lower()
                and a.principal_id.lower() == principal_id.lower()
                and a.role_guid == role_guid.lower()
            ]

    def rbac_assignments(self) -> list[RbacAssignment]:
        return self._copy(self._rbac.values())

    # ---------------------------------------------------------------- readers for tests
    def _copy(self, items: Iterable[Any]) -> list[Any]:
        with self.lock:
            return copy.deepcopy(list(items))

    def applications(self, *, include_deleted: bool = True) -> list[Application]:
        return self._copy(a for a in self._apps.values() if include_deleted or a.deleted_at is None)

    def service_principals(self) -> list[ServicePrincipal]:
        return self._copy(self._sps.values())

    def app_role_assignments(self) -> list[AppRoleAssignment]:
        return self._copy(self._assignments.values())

    def password_credentials(self, app_object_id: str) -> list[PasswordCredential]:
        return self._copy(self._apps[app_object_id].passwords)

    def exchange_service_principals(self) -> list[ExchangeServicePrincipal]:
        return self._copy(self._exchange_sps.values())

    def mailbox_permissions(self) -> list[MailboxPermission]:
        return self._copy(self._mailbox_permissions)

    def mailboxes(self) -> list[Mailbox]:
        return self._copy(self._mailboxes.values())

    def secrets(self, *, include_deleted: bool = True) -> list[VaultSecret]:
        return self._copy(s for s in self._secrets.values() if include_deleted or s.deleted_at is None)

    def outbox(self) -> list[SentMail]:
        return self._copy(self._outbox)

    def request_log(self) -> list[RequestLogEntry]:
        return self._copy(self._log)

    def issued_secrets(self) -> list[str]:
        with self.lock:
            return list(self._issued_secrets)

    def issued_tokens(self) -> list[str]:
        return self.issuer.issued()

    def log_request(self, entry: RequestLogEntry) -> None:
        with self.lock:
            self._log.append(entry)

    # ---------------------------------------------------------------- directory
    def now(self) -> datetime:
        return self.clock()

    def _visible(self, created_at: datetime, delay_s: float) -> bool:
        return self.clock() >= created_at + timedelta(seconds=delay_s)

    def role_by_value(self, resource: ServicePrincipal, value: str) -> AppRole:
        for role in resource.app_roles:
            if role.value == value:
                return role
        raise KeyError(value)

    def resource_for_audience(self, resource: str) -> ServicePrincipal | None:
        resource = resource.rstrip("/")
        for url, sp in (
            (self.graph_resource, self.graph_sp),
            (self.exchange_resource, self.exchange_sp),
            (self.vault_resource, self.vault_sp),
            (self.arm_resource, self.arm_sp),
        ):
            if url and resource == url.rstrip("/"):
                return sp
        # Resources may also be named by their appId, as Entra allows.
        for sp in self._sps.values():
            if sp.app_id == resource:
                return sp
        return None

    def get_application(self, object_id: str, *, include_deleted: bool = False) -> Application | None:
        app = self._apps.get(object_id)
        if app is None or (app.deleted_at is not None and not include_deleted):
            return None
        return app

    def find_application(
        self, *, app_id: str | None = None, unique_name: str | None = None
    ) -> Application | None:
        for app in self._apps.values():
            if app.deleted_at is not None:
                continue
            if app_id is not None and app.app_id == app_id:
                return app
            if unique_name is not None and app.unique_name is not None and app.unique_name == unique_name:
                return app
        return None

    def applications_live(self) -> list[Application]:
        return [a for a in self._apps.values() if a.deleted_at is None]

    def applications_deleted(self) -> list[Application]:
        return [a for a in self._apps.values() if a.deleted_at is not None]

    def application_visible(self, app: Application) -> bool:
        return self._visible(app.created_at, self.faults.replication.application_s)

    def create_application(self, fields: dict[str, Any], owner: str | None) -> Application:
        with self.lock:
            app = Application(
                id=new_id(),
                app_id=new_id(),
                display_name=fields.get("displayName") or fields.get("uniqueName") or "app",
                created_at=self.clock(),
            )
            self.update_application(app, fields)
            if owner:
                app.owners.add(owner)
            self._apps[app.id] = app
            return app

    def update_application(self, app: Application, fields: dict[str, Any]) -> None:
        with self.lock:
            if fields.get("displayName"):
                app.display_name = fields["displayName"]
            if fields.get("uniqueName"):
                app.unique_name = fields["uniqueName"]
            if fields.get("signInAudience"):
                app.sign_in_audience = fields["signInAudience"]
            if "requiredResourceAccess" in fields:
                app.required_resource_access = [
                    {
                        "resourceAppId": r.get("resourceAppId"),
                        "resourceAccess": [
                            {"id": a.get("id"), "type": a.get("type")} for a in r.get("resourceAccess") or []
                        ],
                    }
                    for r in fields["requiredResourceAccess"] or []
                ]
            if "web" in fields and fields["web"] is not None and "redirectUris" in fields["web"]:
                app.redirect_uris = list(fields["web"]["redirectUris"] or [])
            if "notes" in fields:
                app.notes = fields["notes"]
            if "tags" in fields:
                app.tags = list(fields["tags"] or [])

    def delete_application(self, app: Application) -> None:
        """Soft delete: restorable from deletedItems; the app's service principal goes for good."""
        with self.lock:
            app.deleted_at = self.clock()
            for sp in [s for s in self._sps.values() if s.app_id == app.app_id]:
                self._delete_service_principal(sp)

    def restore_application(self, app: Application) -> None:
        with self.lock:
            app.deleted_at = None

    def purge_application(self, app: Application) -> None:
        with self.lock:
            self._apps.pop(app.id, None)

    def add_password(
        self, app: Application, display_name: str | None, start: datetime | None, end: datetime | None
    ) -> PasswordCredential:
        with self.lock:
            now = self.clock()
            start = start or now
            text = _client_secret()
            cred = PasswordCredential(
                key_id=new_id(),
                display_name=display_name,
                start=start,
                end=end or start + timedelta(days=730),
                hint=text[:3],
                secret_text=text,
            )
            app.passwords.append(cred)
            self._issued_secrets.append(text)
            return cred

    def remove_password(self, app: Application, key_id: str) -> bool:
        with self.lock:
            before = len(app.passwords)
            app.passwords = [p for p in app.passwords if p.key_id != key_id]
            return len(app.passwords) != before

    def get_service_principal(self, object_id: str, *, visible_only: bool = True) -> ServicePrincipal | None:
        sp = self._sps.get(object_id)
        if sp is None or (visible_only and not self.service_principal_visible(sp)):
            return None
        return sp

    def find_service_principal(self, app_id: str, *, visible_only: bool = True) -> ServicePrincipal | None:
        for sp in self._sps.values():
            if sp.app_id == app_id and (not visible_only or self.service_principal_visible(sp)):
                return sp
        return None

    def service_principal_visible(self, sp: ServicePrincipal) -> bool:
        return self._visible(sp.created_at, self.faults.replication.service_principal_s)

    def service_principal_visible_to_exchange(self, sp: ServicePrincipal) -> bool:
        """Exchange's copy of the directory has it: Entra has replicated it and Exchange caught up."""
        replication = self.faults.replication
        lag = max(replication.service_principal_s, replication.exchange_service_principal_s)
        return self._visible(sp.created_at, lag)

    def list_service_principals(self) -> list[ServicePrincipal]:
        return [sp for sp in self._sps.values() if self.service_principal_visible(sp)]

    def create_service_principal(self, app: Application, owner: str | None) -> ServicePrincipal:
        with self.lock:
            sp = ServicePrincipal(
                id=new_id(),
                app_id=app.app_id,
                display_name=app.display_name,
                created_at=self.clock(),
                app_owner_organization_id=self.tenant_id,
                tags=list(app.tags),
            )
            if owner:
                sp.owners.add(owner)
            self._sps[sp.id] = sp
            return sp

    def _delete_service_principal(self, sp: ServicePrincipal) -> None:
        self._sps.pop(sp.id, None)
        for aid in [a.id for a in self._assignments.values() if sp.id in {a.principal_id, a.resource_id}]:
            del self._assignments[aid]

    def delete_service_principal(self, sp: ServicePrincipal) -> None:
        with self.lock:
            self._delete_service_principal(sp)

    def _add_assignment(
        self, principal_id: str, resource: ServicePrincipal, app_role_id: str, created_at: datetime
    ) -> AppRoleAssignment:
        principal = self._sps[principal_id]
        assignment = AppRoleAssignment(
            id=secrets.token_urlsafe(32)[:43],
            principal_id=principal_id,
            resource_id=resource.id,
            app_role_id=app_role_id,
            created_at=created_at,
            principal_display_name=principal.display_name,
            resource_display_name=resource.display_name,
        )
        self._assignments[assignment.id] = assignment
        return assignment

    def find_assignment(
        self, principal_id: str, resource_id: str, app_role_id: str
    ) -> AppRoleAssignment | None:
        for a in self._assignments.values():
            if (a.principal_id, a.resource_id, a.app_role_id) == (principal_id, resource_id, app_role_id):
                return a
        return None

    def add_assignment(
        self, principal_id: str, resource: ServicePrincipal, app_role_id: str
    ) -> AppRoleAssignment:
        with self.lock:
            return self._add_assignment(principal_id, resource, app_role_id, self.clock())

    def remove_assignment(self, assignment_id: str) -> None:
        with self.lock:
            self._assignments.pop(assignment_id, None)

    def get_assignment(self, assignment_id: str) -> AppRoleAssignment | None:
        return self._assignments.get(assignment_id)

    def assignment_visible(self, a: AppRoleAssignment) -> bool:
        return self._visible(a.created_at, self.faults.replication.app_role_assignment_s)

    def assignments_of(self, principal_id: str) -> list[AppRoleAssignment]:
        return [
            a
            for a in self._assignments.values()
            if a.principal_id == principal_id and self.assignment_visible(a)
        ]

    def assignments_to(self, resource_id: str) -> list[AppRoleAssignment]:
        return [
            a
            for a in self._assignments.values()
            if a.resource_id == resource_id and self.assignment_visible(a)
        ]

    def role_values(self, principal_id: str, resource: ServicePrincipal) -> list[str]:
        """What a token for ``resource`` carries in ``roles``: visible assignments only."""
        by_id = {r.id: r.value for r in resource.app_roles}
        return sorted(
            {
                by_id[a.app_role_id]
                for a in self.assignments_of(principal_id)
                if a.resource_id == resource.id and a.app_role_id in by_id
            }
        )

    # ---------------------------------------------------------------- mailboxes and Exchange
    def add_mailbox(self, address: str, *, imap_enabled: bool = True, pop_enabled: bool = True) -> Mailbox:
        with self.lock:
            key = address.lower()
            box = Mailbox(
                address=address,
                display_name=address.split("@")[0].replace(".", " ").title(),
                id=new_id(),
                imap_enabled=imap_enabled,
                pop_enabled=pop_enabled,
            )
            self._mailboxes[key] = box
            return box

    def set_protocols(self, address: str, *, imap: bool | None = None, pop: bool | None = None) -> None:
        with self.lock:
            box = self._mailboxes[address.lower()]
            if imap is not None:
                box.imap_enabled = imap
            if pop is not None:
                box.pop_enabled = pop

    def find_mailbox(self, identity: str) -> Mailbox | None:
        ident = identity.strip().lower()
        with self.lock:
            if ident in self._mailboxes:
                return self._mailboxes[ident]
            for box in self._mailboxes.values():
                if ident in {box.id, box.display_name.lower(), box.address.split("@")[0].lower()}:
                    return box
        return None

    def all_mailboxes(self) -> list[Mailbox]:
        return list(self._mailboxes.values())

    def find_exchange_sp(self, identity: str) -> ExchangeServicePrincipal | None:
        ident = identity.strip().lower()
        for esp in self._exchange_sps.values():
            if ident in {
                esp.object_id.lower(),
                esp.app_id.lower(),
                esp.identity.lower(),
                esp.display_name.lower(),
            }:
                return esp
        return None

    def exchange_sps(self) -> list[ExchangeServicePrincipal]:
        return list(self._exchange_sps.values())

    def add_exchange_sp(self, app_id: str, object_id: str, display_name: str) -> ExchangeServicePrincipal:
        with self.lock:
            esp = ExchangeServicePrincipal(
                object_id=object_id,
                app_id=app_id,
                display_name=display_name,
                identity=new_id(),
                created_at=self.clock(),
            )
            self._exchange_sps[object_id] = esp
            return esp

    def remove_exchange_sp(self, esp: ExchangeServicePrincipal) -> None:
        with self.lock:
            self._exchange_sps.pop(esp.object_id, None)
            self._set_permissions([p for p in self._mailbox_permissions if p.user != esp.object_id])

    def _set_permissions(self, permissions: list[MailboxPermission]) -> None:
        self._mailbox_permissions = permissions
        self._permissions_by_mailbox = {}
        for perm in permissions:
            self._permissions_by_mailbox.setdefault(perm.mailbox, []).append(perm)

    def permissions_on(self, mailbox: Mailbox) -> list[MailboxPermission]:
        return list(self._permissions_by_mailbox.get(mailbox.address.lower(), ()))

    def add_mailbox_permission(
        self, mailbox: Mailbox, esp: ExchangeServicePrincipal, auto_mapping: bool
    ) -> MailboxPermission:
        with self.lock:
            for p in self.permissions_on(mailbox):
                if p.user == esp.object_id:
                    return p
            perm = MailboxPermission(
                mailbox=mailbox.address.lower(),
                user=esp.object_id,
                access_rights=("FullAccess",),
                created_at=self.clock(),
                auto_mapping=auto_mapping,
            )
            self._mailbox_permissions.append(perm)
            self._permissions_by_mailbox.setdefault(perm.mailbox, []).append(perm)
            return perm

    def remove_mailbox_permission(self, mailbox: Mailbox, esp: ExchangeServicePrincipal) -> bool:
        with self.lock:
            address = mailbox.address.lower()
            if not any(p.user == esp.object_id for p in self._permissions_by_mailbox.get(address, ())):
                return False
            self._set_permissions(
                [
                    p
                    for p in self._mailbox_permissions
                    if not (p.mailbox == address and p.user == esp.object_id)
                ]
            )
            return True

    def authorize_mail(self, mailbox: str, token: str, protocol: str) -> str | None:
        """Exchange Online's decision on an XOAUTH2 login: None allows it, else the reason (for logs).

        The chain: a token signed by this tenant and current, issued for Exchange, carrying the
        protocol's app role; the token's service principal registered in Exchange; the mailbox exists
        with the protocol enabled; FullAccess for that principal on that mailbox, propagated.
        """
        role = {"imap": "IMAP.AccessAsApp", "pop": "POP.AccessAsApp"}.get(protocol)
        if role is None:
            return f"unknown protocol {protocol!r}"
        try:
            claims = self.issuer.verify(token)
        except TokenError as exc:
            return f"token rejected: {exc}"
        with self.lock:
            if str(claims.get("aud", "")).rstrip("/") != self.exchange_resource.rstrip("/"):
                return "token audience is not Exchange Online"
            if role not in (claims.get("roles") or []):
                return f"token lacks the {role} role"
            oid = str(claims.get("oid", ""))
            esp = self._exchange_sps.get(oid)
            if esp is None:
                return "the app's service principal is not registered in Exchange (New-ServicePrincipal)"
            box = self._mailboxes.get(mailbox.lower())
            if box is None:
                return "no such mailbox"
            if not (box.imap_enabled if protocol == "imap" else box.pop_enabled):
                return f"{protocol.upper()} is disabled on this mailbox"
            # Without FullAccess Exchange still completes AUTHENTICATE; the first mailbox command
            # fails ("BAD User is authenticated but not connected.", docs/sandbox-facts.md).
            perm = next((p for p in self.permissions_on(box) if p.user == oid), None)
            if perm is None or "FullAccess" not in perm.access_rights:
                return MailboxClosed("the service principal has no FullAccess on this mailbox")
            if not self._visible(perm.created_at, self.faults.mailbox_permission_delay_s):
                return MailboxClosed("the FullAccess permission has not propagated yet")
        return None

    # ---------------------------------------------------------------- vault
    def get_secret(self, name: str) -> VaultSecret | None:
        return self._secrets.get(name.lower())

    def put_secret(self, name: str, version: SecretVersion) -> VaultSecret:
        with self.lock:
            secret = self._secrets.setdefault(name.lower(), VaultSecret(name=name))
            secret.versions.append(version)
            return secret

    def purge_secret(self, name: str) -> None:
        with self.lock:
            self._secrets.pop(name.lower(), None)

    def vault_secrets(self) -> list[VaultSecret]:
        return list(self._secrets.values())

    def get_certificate(self, name: str) -> VaultCertificate | None:
        return self._certificates.get(name.lower())

    def put_certificate(self, certificate: VaultCertificate) -> None:
        with self.lock:
            self._certificates[certificate.name.lower()] = certificate

    def purge_certificate(self, name: str) -> None:
        with self.lock:
            self._certificates.pop(name.lower(), None)
            self._secrets.pop(name.lower(), None)

    def vault_certificates(self) -> list[VaultCertificate]:
        return list(self._certificates.values())

    def record_issued_secret(self, value: str) -> None:
        """A secret value the tenant made (a certificate's private key): the leak scan looks for it."""
        with self.lock:
            self._issued_secrets.append(value)

    def set_key_credentials(self, app: Application, keys: list[KeyCredential]) -> None:
        with self.lock:
            app.keys = list(keys)

    # ---------------------------------------------------------------- outbox
    def domains(self) -> list[dict[str, Any]]:
        """The tenant's domains as Graph's domain resource shows them: the verified custom domain, the
        initial onmicrosoft-style domain, and one added but not verified (isVerified false)."""
        initial = f"{self.tenant_id.split('-')[0]}.onmicrosoft.example"
        rows = [(self.domain, True, True, False), (initial, True, False, True)]
        rows += [(name, False, False, False) for name in self.unverified_domains]
        return [
            {
                "id": name,
                "authenticationType": "Managed",
                "isVerified": verified,
                "isDefault": default,
                "isInitial": first,
                "isRoot": True,
                "supportedServices": ["Email"] if verified else [],
            }
            for name, verified, default, first in rows
        ]

    def send_mail(self, mail: SentMail) -> None:
        with self.lock:
            self._outbox.append(mail)


_SECRET_ALPHABET = string.ascii_letters + string.digits + "~._-"


def _client_secret() -> str:
    """Shaped like Entra's: three characters, a version marker, then random ones (40 in all)."""
    head = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(3))
    return head + "8Q~" + "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(34))


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
