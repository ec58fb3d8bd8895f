"""Composition of the sandbox tenant: a throwaway CA, one HTTPS server per service (plus the plain-http
managed identity endpoint) in a background event loop, the shared tenant state, and real Dovecot."""

from __future__ import annotations

import secrets
import shutil
import ssl
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import trustme
from aiohttp import web

from sandbox import catalog
from sandbox.arm import ResourceManager
from sandbox.entra import ApiCaller, Entra, register_api_caller, register_function_api
from sandbox.exchange import Exchange
from sandbox.faults import Faults
from sandbox.graph import Graph
from sandbox.keyvault import KeyVault
from sandbox.profiles import FAST, AppliedProfile, apply_profile
from sandbox.signin import People
from sandbox.state import Application, Mailbox, RequestLogEntry, ServicePrincipal, TenantState
from sandbox.tokens import TokenIssuer
from sandbox.web import UNMODELLED, LoopThread, bind, serve

PORT_NAMES = ("entra", "graph", "exchange", "keyvault", "identity", "arm", "imap", "pop")
DOMAIN = "sandbox.example"
DEFAULT_MAILBOXES = (f"support@{DOMAIN}", f"sales@{DOMAIN}")
MAIL_SENDER = f"onboarding@{DOMAIN}"
# Users who sign in on the sandbox's Entra page (sandbox/signin.py); passwords are made at start.
ADMIN_USER = f"it-admin@{DOMAIN}"  # Cloud Application Administrator: may approve
PLAIN_USER = f"helpdesk@{DOMAIN}"  # no directory role: may not
OUTSIDER = "admin@fabrikam.example"  # a Global Administrator of another organisation
SIGNIN_REDIRECT_PATH = "/api/signin/callback"
# The vault as an Azure resource (KEY_VAULT_RESOURCE_ID): the scope of its role assignments.
SUBSCRIPTION_ID = "00000000-0000-4000-8000-00000000a2b1"
VAULT_RESOURCE_ID = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-sandbox/providers/Microsoft.KeyVault/vaults/kv-sandbox"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class SandboxConfig:
    base_dir: Path | None = None  # None: a temporary directory removed by stop()
    seed: int = 0
    clock: Callable[[], datetime] | None = None  # UTC-aware; tests move it to expire tokens and secrets
    ports: Mapping[str, int] | None = None  # by PORT_NAMES; 0 or absent picks a free port
    mailboxes: Iterable[str] | None = None  # None: DEFAULT_MAILBOXES
    start_mail: bool = True
    tenant_id: str | None = None  # None: derived from the seed
    identity_graph_roles: Iterable[str] = catalog.DEFAULT_IDENTITY_GRAPH_ROLES
    identity_exchange_roles: Iterable[str] = catalog.DEFAULT_IDENTITY_EXCHANGE_ROLES
    identity_directory_roles: Iterable[str] = catalog.DEFAULT_IDENTITY_DIRECTORY_ROLES
    identity_vault_role: str | None = catalog.VAULT_SECRETS_OFFICER
    # Role definitions (GUIDs) the identity may assign on the vault and its secrets: Role Based Access
    # Control Administrator constrained by a condition, as infra/app/keyvault.bicep gives it.
    identity_assignable_roles: Iterable[str] | None = (catalog.KEY_VAULT_SECRETS_USER_ROLE,)
    # The certificates API's role (certificate onboardings): a separate RBAC role on the same vault.
    identity_vault_certificate_role: str | None = catalog.VAULT_CERTIFICATES_OFFICER
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # Replication and propagation delays (sandbox/profiles.py): "fast" has none; "realistic" draws them
    # from documented ranges, on the tenant clock, so give it a clock the test moves.
    profile: str = FAST


class Sandbox:
    """The stand-in Microsoft cloud. ``Sandbox(SandboxConfig(...)).start()`` or ``with Sandbox(...) as sb``."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.faults = Faults(self.config.seed)
        self.profile: AppliedProfile = apply_profile(self.faults, self.config.profile, seed=self.config.seed)
        self.env: dict[str, str] = {}
        self.ports: dict[str, int] = {}
        self._clock = self.config.clock or _utcnow
        self._loop: LoopThread | None = None
        self._runners: list[web.AppRunner] = []
        self._tmp: str | None = None
        self._unmodelled_seen = 0  # requests acknowledged by ``acknowledge_unmodelled``
        self.mail: Any = None
        self.state: TenantState
        self.identity: ServicePrincipal
        self.people: People
        self.signin_app: Application

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        cfg = self.config
        if cfg.base_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="sandbox-")
            self.base_dir = Path(self._tmp)
        else:
            self.base_dir = Path(cfg.base_dir)
            self.base_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        cfg = self.config
        ports = dict(cfg.ports or {})
        unknown = set(ports) - set(PORT_NAMES)
        if unknown:
            raise ValueError(f"unknown port names {sorted(unknown)}; expected some of {PORT_NAMES}")
        self.ca_file, self.cert_file, self.key_file = self._make_tls()
        sockets = {
            name: bind(ports.get(name, 0))
            for name in ("entra", "graph", "exchange", "keyvault", "identity", "arm")
        }
        self.ports = {name: s.getsockname()[1] for name, s in sockets.items()}
        url = {name: f"https://127.0.0.1:{port}" for name, port in self.ports.items()}
        authority, identity_url = url["entra"], f"http://127.0.0.1:{self.ports['identity']}/msi/token"

        tenant_id = cfg.tenant_id or str(
            uuid.UUID(int=uuid.uuid5(uuid.NAMESPACE_OID, f"sandbox-{cfg.seed}").int)
        )
        issuer = TokenIssuer(tenant_id=tenant_id, issuer=f"{authority}/{tenant_id}/", clock=self._clock)
        state = self.state = TenantState(
            tenant_id=tenant_id, domain=DOMAIN, clock=self._clock, issuer=issuer, faults=self.faults
        )
        state.graph_resource, state.exchange_resource, state.vault_resource = (
            url["graph"],
            url["exchange"],
            url["keyvault"],
        )
        state.arm_resource, state.vault_resource_id = url["arm"], VAULT_RESOURCE_ID
        self.identity = state.seed_managed_identity("func-mail-onboarding (managed identity)")
        # The API's app registration is made on first use (api_caller), so a tenant starts with an
        # empty directory; its client id is fixed now for the app's settings.
        self.function_api_client_id = str(uuid.uuid4())
        self.set_identity_roles(
            graph=cfg.identity_graph_roles,
            exchange=cfg.identity_exchange_roles,
            directory_roles=cfg.identity_directory_roles,
            vault_role=cfg.identity_vault_role,
        )
        state.allow_role_assignments(self.identity.id, cfg.identity_assignable_roles)
        state.set_vault_certificate_role(self.identity.id, cfg.identity_vault_certificate_role)
        identity_header = secrets.token_urlsafe(24)

        entra = Entra(state, authority=authority, identity_header=identity_header, identity_sp=self.identity)
        self.people = entra.people
        signin_client_id, signin_secret = self._seed_signin()
        apps = {
            "entra": entra.login_app(),
            "identity": entra.identity_app(),
            "graph": Graph(state, base_url=url["graph"]).app(),
            "exchange": Exchange(state, base_url=url["exchange"]).app(),
            "keyvault": KeyVault(state, vault_uri=url["keyvault"], authority=authority).app(),
            "arm": ResourceManager(state).app(),
        }
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(self.cert_file, self.key_file)
        self._loop = LoopThread()

        async def start_all() -> list[web.AppRunner]:
            return [
                await serve(apps[name], sock, None if name == "identity" else server_ssl)
                for name, sock in sockets.items()
            ]

        self._runners = self._loop.run(start_all())

        mailboxes = list(DEFAULT_MAILBOXES if cfg.mailboxes is None else cfg.mailboxes)
        if cfg.start_mail:
            from sandbox.mail import MailServer

            self.mail = MailServer(
                self.base_dir / "mail",
                cert_file=self.cert_file,
                key_file=self.key_file,
                authorize=state.authorize_mail,
                imap_port=ports.get("imap", 0),
                pop_port=ports.get("pop", 0),
            )
        for address in [MAIL_SENDER, *mailboxes]:
            self.add_mailbox(address, imap_enabled=address != MAIL_SENDER, pop_enabled=address != MAIL_SENDER)
        if self.mail is not None:
            self.mail.start()
            self.ports["imap"], self.ports["pop"] = self.mail.imap_port, self.mail.pop_port

        self.env = {
            "TENANT_ID": tenant_id,
            "AZURE_CLOUD": "AzurePublicCloud",
            "ENTRA_AUTHORITY_HOST": authority,
            "ENTRA_DISABLE_INSTANCE_DISCOVERY": "true",
            "GRAPH_ENDPOINT": url["graph"],
            "EXCHANGE_ENDPOINT": url["exchange"],
            "IMAP_HOST": "127.0.0.1",
            "IMAP_PORT": str(self.ports.get("imap", 993)),
            "POP_HOST": "127.0.0.1",
            "POP_PORT": str(self.ports.get("pop", 995)),
            "KEY_VAULT_URI": url["keyvault"] + "/",
            "KEY_VAULT_RESOURCE_ID": VAULT_RESOURCE_ID,
            "RESOURCE_MANAGER_ENDPOINT": url["arm"],
            "MAIL_SENDER": MAIL_SENDER,
            "PUBLIC_BASE_URL": "http://127.0.0.1:7071",
            "LINK_SIGNING_KEY": secrets.token_urlsafe(32),
            "CALLBACK_ALLOW_PRIVATE_NETWORKS": "true",
            # The identity holds AppRoleAssignment.ReadWrite.All (as Bicep gives it with grant mode on).
            "ENABLE_GRANT_MODE": "true",
            # Benches and test suites start many onboardings in an hour; a test sets its own limits.
            "ONBOARDINGS_PER_REQUESTER_PER_HOUR": "1000000",
            "ONBOARDINGS_PER_HOUR": "1000000",
            "EMAILS_PER_HOUR": "1000000",
            "IDENTITY_ENDPOINT": identity_url,
            "IDENTITY_HEADER": identity_header,
            "AZURE_CLIENT_ID": self.identity.app_id,
            "SIGNIN_CLIENT_ID": signin_client_id,
            "SIGNIN_CLIENT_SECRET": signin_secret,
            "REQUESTS_CA_BUNDLE": str(self.ca_file),
            "SSL_CERT_FILE": str(self.ca_file),
            # The requester's API: the key the deployment would create, and Entra tokens for the API's
            # app registration, which the sandbox issues in the v1.0 form with its own issuer host.
            "API_FUNCTION_KEY": secrets.token_urlsafe(32),
            "API_CLIENT_ID": self.function_api_client_id,
            "API_ACCESS_TOKEN_VERSION": "1",
            "ENTRA_TOKEN_ISSUER_V1_HOST": authority,
            **cfg.extra_env,
        }

    def _seed_signin(self) -> tuple[str, str]:
        """The app registration approvers sign in with, and three users: an app admin, a user with no
        directory role, and an admin of another organisation."""
        state = self.state
        app = state.create_application(
            {"displayName": "Mail onboarding approvals", "web": {"redirectUris": []}}, None
        )
        self.signin_app = app
        self.people.group_membership_claims[app.app_id] = "DirectoryRole"
        secret = state.add_password(app, "approver sign-in", None, None).secret_text
        self.people.add_user(
            ADMIN_USER, display_name="IT Admin", directory_roles={catalog.CLOUD_APPLICATION_ADMINISTRATOR}
        )
        self.people.add_user(PLAIN_USER, display_name="Helpdesk")
        self.people.add_user(
            OUTSIDER,
            display_name="Fabrikam Admin",
            directory_roles={catalog.GLOBAL_ADMINISTRATOR},
            tenant_id=str(uuid.uuid4()),
        )
        return app.app_id, secret

    def allow_signin_redirect(self, public_base_url: str) -> None:
        """Register ``<public_base_url>/api/signin/callback`` on the sign-in app (its web redirect URI)."""
        uri = public_base_url.rstrip("/") + SIGNIN_REDIRECT_PATH
        with self.state.lock:
            if uri not in self.signin_app.redirect_uris:
                self.signin_app.redirect_uris.append(uri)

    def _make_tls(self) -> tuple[Path, Path, Path]:
        tls = self.base_dir / "tls"
        tls.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="Sandbox tenant test CA")
        leaf = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca_file, cert_file, key_file = tls / "ca.pem", tls / "server.pem", tls / "server.key"
        ca.cert_pem.write_to_path(str(ca_file))
        leaf.private_key_pem.write_to_path(str(key_file))
        for i, blob in enumerate(leaf.cert_chain_pems):
            blob.write_to_path(str(cert_file), append=i > 0)
        key_file.chmod(0o600)
        return ca_file, cert_file, key_file

    def stop(self) -> None:
        if self.mail is not None:
            try:
                self.mail.stop()
            finally:
                self.mail = None
        if self._loop is not None:
            runners, self._runners = self._runners, []

            async def stop_all() -> None:
                for runner in runners:
                    await runner.cleanup()

            try:
                self._loop.run(stop_all(), timeout=10)
            finally:
                self._loop.stop()
                self._loop = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ strictness
    def unmodelled_requests(self) -> list[RequestLogEntry]:
        """Requests answered 501 because the sandbox does not model them, not yet acknowledged.
        The test fixtures fail a test that leaves any (sandbox/pytest_plugin.py, tests/e2e)."""
        found = [e for e in self.state.request_log() if (e.fault or "").startswith(UNMODELLED)]
        return found[self._unmodelled_seen :]

    def acknowledge_unmodelled(self) -> list[RequestLogEntry]:
        """For a test that makes unmodelled requests on purpose: returns them and clears the record."""
        found = self.unmodelled_requests()
        self._unmodelled_seen += len(found)
        return found

    def assert_all_modelled(self) -> None:
        found = self.unmodelled_requests()
        if found:
            asked = "; ".join(f"{e.service}: {(e.fault or '').split(': ', 1)[-1]}" for e in found)
            raise AssertionError(f"requests the sandbox does not model (answered 501): {asked}")

    # ------------------------------------------------------------ conveniences for tests
    @property
    def tenant_id(self) -> str:
        return self.state.tenant_id

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only the sandbox CA (for libraries that ignore SSL_CERT_FILE)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def trust_in_process(self) -> None:
        """Make aiohttp clients in this process trust the sandbox CA.

        ``SSL_CERT_FILE`` is read when a TLS context is built, and aiohttp builds its default one when
        it is imported - here, before the sandbox CA exists. So async azure-core clients (aiohttp
        transport) in the same process as the sandbox ignore ``SSL_CERT_FILE``; this adds the CA to
        that default context. A separate process started with ``sb.env`` needs nothing of the kind.
        """
        from aiohttp import connector

        context = getattr(connector, "_SSL_CONTEXT_VERIFIED", None)
        if isinstance(context, ssl.SSLContext):
            context.load_verify_locations(cafile=str(self.ca_file))

    def add_mailbox(self, address: str, imap_enabled: bool = True, pop_enabled: bool = True) -> Mailbox:
        box = self.state.add_mailbox(address, imap_enabled=imap_enabled, pop_enabled=pop_enabled)
        if self.mail is not None:
            self.mail.add_mailbox(address)
        return box

    def set_protocols(self, address: str, *, imap: bool | None = None, pop: bool | None = None) -> None:
        self.state.set_protocols(address, imap=imap, pop=pop)

    def api_caller(self, *roles: str, display_name: str = "ticketing system") -> ApiCaller:
        """A caller application of the function app's API holding ``roles`` (client credentials)."""
        api = register_function_api(self.state, self.function_api_client_id)
        return register_api_caller(self.state, api, roles, display_name)

    def set_identity_roles(
        self,
        *,
        graph: Iterable[str] | None = None,
        exchange: Iterable[str] | None = None,
        directory_roles: Iterable[str] | None = None,
        vault_role: str | None = None,
    ) -> None:
        """What the function app's managed identity holds; None leaves a resource as it is, "" removes the vault role."""
        self.state.set_principal_roles(
            self.identity.id,
            graph=graph,
            exchange=exchange,
            directory_roles=directory_roles,
            vault_role=vault_role,
        )

    def mint_token_for_tests(
        self,
        *,
        resource: str = "graph",
        roles: Iterable[str] = (),
        app_id: str | None = None,
        object_id: str | None = None,
        wids: Iterable[str] = (),
    ) -> str:
        """A token signed by the tenant for ``resource`` ("graph", "exchange", "keyvault", "arm" or a URL)."""
        audience = {
            "graph": self.state.graph_resource,
            "exchange": self.state.exchange_resource,
            "keyvault": self.state.vault_resource,
            "arm": self.state.arm_resource,
        }.get(resource, resource)
        token, _ = self.state.issuer.mint(
            audience=audience,
            app_id=app_id or self.identity.app_id,
            object_id=object_id or self.identity.id,
            roles=roles,
            wids=wids,
        )
        return token

    def create_client_app(
        self, display_name: str, *, roles: Iterable[str] = (), redirect_uris: Iterable[str] = ()
    ) -> tuple[str, str, str]:
        """An app with a service principal, the given Exchange app roles granted and a secret:
        (appId, service principal id, secret). For tests that need a ready-made mail client app."""
        state = self.state
        with state.lock:
            app = state.create_application(
                {"displayName": display_name, "web": {"redirectUris": list(redirect_uris)}}, owner=None
            )
            app.created_at = datetime(2020, 1, 1, tzinfo=UTC)
            sp = state.create_service_principal(app, owner=None)
            sp.created_at = app.created_at
            for value in roles:
                a = state.add_assignment(
                    sp.id, state.exchange_sp, state.role_by_value(state.exchange_sp, value).id
                )
                a.created_at = app.created_at
            secret = state.add_password(app, "test", None, None).secret_text
        return app.app_id, sp.id, secret
