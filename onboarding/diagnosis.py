"""Diagnosis: the procedure's "Common issues", made executable.

An onboarded app reads mail only while every link of a chain holds, and each link breaks in its own
way, often long after the onboarding (an admin deletes the app, a secret expires, consent is revoked,
FullAccess is removed, IMAP is switched off). The diagnosis walks the chain in the order the mail
client depends on it and stops at the first broken link, naming it and its fix; the links after it
are reported as skipped, because their checks would only repeat the same cause (no app: no token;
no Exchange registration: Get-MailboxPermission cannot even name the app).

1. the app registration exists (Graph ``/applications(appId='...')``);
2. its service principal exists;
3. a credential is present and not expired, and Key Vault holds it (its secret's expiry too);
4. a token for Exchange Online, got with that stored secret, carries the roles asked for;
5. Exchange Online has the service principal registered with the service principal's object id;
6. each mailbox grants the app FullAccess and has its protocols enabled;
7. an IMAP EXAMINE and a POP STAT work on each mailbox (``onboarding.adapters.mailprobe``).

Nothing here changes the tenant: every question is a read. Nothing secret leaves: the stored secret
and the token live inside ``diagnose`` only, and details name ids, never values.

Transient failures (throttling, outages) are raised, not reported as broken links: a diagnosis that
could not ask is not a diagnosis, and the drift check must not report a breakage that is a blip.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

from onboarding.domain import Protocol, vault_secret_name
from onboarding.errors import NotFoundError, OnboardingError
from onboarding.expiry import CREDENTIALS_CONTENT_TYPE

if TYPE_CHECKING:
    from onboarding.adapters.identity import TokenInfo
    from onboarding.ports import CredentialRecord, ServicesPort

# Mailboxes a link's detail names; the others are counted.
SHOWN_MAILBOXES = 5


class Link(StrEnum):
    """The links, in the order the mail client depends on them (``LINKS``)."""

    APP = "app_registration"
    SERVICE_PRINCIPAL = "service_principal"
    CREDENTIAL = "credential"
    TOKEN_ROLES = "token_roles"  # noqa: S105 - a link name, not a password
    EXCHANGE_SERVICE_PRINCIPAL = "exchange_service_principal"
    MAILBOX_ACCESS = "mailbox_access"
    MAILBOX_LOGIN = "mailbox_login"


LINKS: tuple[Link, ...] = tuple(Link)


class LinkState(StrEnum):
    OK = "ok"
    BROKEN = "broken"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class LinkResult:
    name: Link
    state: LinkState
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name.value, "state": self.state.value, "detail": self.detail, "fix": self.fix}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(Link(data["name"]), LinkState(data["state"]), data.get("detail", ""), data.get("fix", ""))


def ok(name: Link, detail: str) -> LinkResult:
    return LinkResult(name, LinkState.OK, detail)


def broken(name: Link, detail: str, fix: str) -> LinkResult:
    return LinkResult(name, LinkState.BROKEN, detail, fix)


@dataclass(frozen=True)
class Diagnosis:
    """Every link, in ``LINKS`` order: ok up to the first broken one, skipped after it."""

    links: tuple[LinkResult, ...]

    @property
    def first_broken(self) -> LinkResult | None:
        return next((link for link in self.links if link.state is LinkState.BROKEN), None)

    def to_json(self) -> dict[str, Any]:
        first = self.first_broken
        return {
            "links": [link.to_json() for link in self.links],
            "firstBroken": first.name.value if first else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(tuple(LinkResult.from_json(link) for link in data["links"]))


def assemble(checked: Sequence[LinkResult]) -> Diagnosis:
    """The report from the links checked so far: they must be a prefix of ``LINKS`` in order, every
    one ok but possibly the last; the links not checked are skipped (after a broken one) -- a check
    that stopped early without a broken link is a bug, not a healthy chain."""
    names = [c.name for c in checked]
    if names != list(LINKS[: len(names)]):
        raise ValueError(f"links checked out of order: {names}")
    if any(c.state is not LinkState.OK for c in checked[:-1]) or any(
        c.state is LinkState.SKIPPED for c in checked
    ):
        raise ValueError("only the last link checked may be broken")
    if len(checked) < len(LINKS) and (not checked or checked[-1].state is not LinkState.BROKEN):
        raise ValueError("the chain stopped without a broken link")
    after = checked[-1].name if checked else None
    skipped = tuple(
        LinkResult(
            name, LinkState.SKIPPED, f"Not checked: {after.value if after else 'an earlier link'} is broken."
        )
        for name in LINKS[len(checked) :]
    )
    return Diagnosis((*checked, *skipped))


@dataclass(frozen=True)
class Target:
    """What to diagnose: an onboarding's app and mailboxes, or any app id and one mailbox.

    ``secret_name`` is the Key Vault secret holding the app's credential when known (an onboarding's);
    otherwise the vault is searched for this project's secret tagged with the app id. ``protocols``
    empty means: those the stored hand-off document names."""

    tenant_id: str
    app_id: str
    mailboxes: tuple[str, ...]
    protocols: tuple[Protocol, ...] = ()
    secret_name: str | None = None
    onboarding_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "app_id": self.app_id,
            "mailboxes": list(self.mailboxes),
            "protocols": [p.value for p in self.protocols],
            "secret_name": self.secret_name,
            "onboarding_id": self.onboarding_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            tenant_id=data["tenant_id"],
            app_id=data["app_id"],
            mailboxes=tuple(data["mailboxes"]),
            protocols=tuple(Protocol(p) for p in data.get("protocols") or ()),
            secret_name=data.get("secret_name"),
            onboarding_id=data.get("onboarding_id"),
        )

    @classmethod
    def of_onboarding(
        cls,
        onboarding_id: str,
        tenant_id: str,
        app_id: str,
        mailboxes: Sequence[str],
        protocols: Sequence[str],
    ) -> Self:
        return cls(
            tenant_id=tenant_id,
            app_id=app_id,
            mailboxes=tuple(mailboxes),
            protocols=tuple(Protocol(p) for p in protocols),
            secret_name=vault_secret_name(onboarding_id),
            onboarding_id=onboarding_id,
        )


# --- fixes (the project's words; PowerShell an admin can paste) ---------------------------------------

APP_FIX = (
    "Restore the app registration within 30 days of its deletion (Entra ID > App registrations > Deleted "
    "applications > Restore, or POST /directory/deletedItems/{{id}}/restore); after 30 days it is gone: "
    "onboard the mailboxes again. Application id: {app_id}."
)
SERVICE_PRINCIPAL_FIX = (
    "Create the app's service principal again (Entra ID > Enterprise applications, or "
    "New-MgServicePrincipal -AppId {app_id}), then grant admin consent again: the permissions were "
    "granted to the deleted service principal. Then register the new object id in Exchange Online "
    "(Remove-ServicePrincipal -Identity {app_id}; New-ServicePrincipal -AppId {app_id} -ObjectId "
    "<the new service principal's object id>) and grant FullAccess again."
)
CREDENTIAL_FIX = (
    "Add a new client secret to app {app_id} (Entra ID > App registrations > Certificates & secrets) "
    "and store it in Key Vault as a new version of {secret}, in the same JSON form; the mail product "
    "reads the new version."
)
CONSENT_FIX = (
    "Grant admin consent for {roles} (Office 365 Exchange Online, application permissions) to app "
    "{app_id}: Entra ID > Enterprise applications > the app > Permissions > Grant admin consent."
)


def _mailbox_list(mailboxes: Sequence[str]) -> str:
    shown = ", ".join(mailboxes[:SHOWN_MAILBOXES])
    more = len(mailboxes) - SHOWN_MAILBOXES
    return f"{shown} and {more} more" if more > 0 else shown


# --- the questions the links ask ----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredCredential:
    """The hand-off document in Key Vault, as far as the diagnosis needs it. The secret stays in
    ``secret`` (never printed: ``repr=False``) and goes nowhere but the token request."""

    name: str
    client_id: str
    key_id: str
    expires_on: datetime | None
    protocols: tuple[Protocol, ...]
    secret: str = field(repr=False, default="")  # the client secret, or a certificate's PEM
    credential_type: str = "secret"  # a CredentialType value: what ``secret`` holds

    @property
    def kind(self) -> str:
        """How an admin names the credential."""
        return "certificate" if self.credential_type == "certificate" else "client secret"


TokenSource = Callable[[str, str, str], Awaitable["TokenInfo"]]


async def app_token(svc: ServicesPort, tenant_id: str, client_id: str, secret: str) -> TokenInfo:
    """An app-only token for Exchange Online with the app's own credential, as the mail client gets it:
    a certificate's PEM (a client assertion signed with its private key) or a client secret."""
    from onboarding.adapters.identity import acquire_token, app_certificate_credential, app_secret_credential

    credential = (
        app_certificate_credential(svc.settings, tenant_id, client_id, secret)
        if secret.startswith("-----BEGIN")  # a PEM private key is never a client secret
        else app_secret_credential(svc.settings, tenant_id, client_id, secret)
    )
    try:
        return await acquire_token(credential, svc.settings.exchange_scope)
    finally:
        await credential.close()


async def stored_credential(svc: ServicesPort, target: Target) -> StoredCredential | None:
    name = target.secret_name
    if name is None:
        mine = [
            s
            for s in await svc.vault.list_secrets()
            if s.content_type == CREDENTIALS_CONTENT_TYPE
            and s.tags.get("appId", "").lower() == target.app_id.lower()
        ]
        if not mine:
            return None
        name = mine[0].name
    stored = await svc.vault.get(name)
    if stored is None:
        return None
    try:
        document = json.loads(stored.value)
    except ValueError:
        document = {}
    protocols = tuple(p for p, key in ((Protocol.IMAP, "imap"), (Protocol.POP, "pop")) if document.get(key))
    return StoredCredential(
        name=name,
        client_id=str(document.get("clientId") or ""),
        key_id=stored.tags.get("keyId", ""),
        expires_on=stored.expires_on,
        protocols=protocols,
        secret=str(document.get("clientSecret") or document.get("clientCertificate") or ""),
        credential_type=str(document.get("credentialType") or "secret"),
    )


# --- the links ----------------------------------------------------------------------------------------


@dataclass
class _Chain:
    """What the links found so far, handed down the chain."""

    svc: ServicesPort
    target: Target
    now: datetime
    token_source: TokenSource
    service_principal_id: str = ""
    credential: StoredCredential | None = None
    protocols: tuple[Protocol, ...] = ()
    token: str = field(default="", repr=False)
    app_credentials: tuple[CredentialRecord, ...] = ()


async def _app(chain: _Chain) -> LinkResult:
    app_id = chain.target.app_id
    app = await chain.svc.graph.application_credentials(app_id)
    if app is None:
        return broken(
            Link.APP,
            f"Entra ID has no app registration with application id {app_id}: it was deleted, or the id is wrong.",
            APP_FIX.format(app_id=app_id),
        )
    chain.app_credentials = tuple(app.credentials)
    return ok(Link.APP, f"App registration {app_id} exists (object id {app.object_id}).")


async def _service_principal(chain: _Chain) -> LinkResult:
    app_id = chain.target.app_id
    sp = await chain.svc.graph.find_service_principal(app_id)
    if sp is None:
        return broken(
            Link.SERVICE_PRINCIPAL,
            f"App {app_id} has no service principal (enterprise application) in the tenant.",
            SERVICE_PRINCIPAL_FIX.format(app_id=app_id),
        )
    chain.service_principal_id = sp
    return ok(Link.SERVICE_PRINCIPAL, f"Service principal {sp} exists.")


async def _credential(chain: _Chain) -> LinkResult:
    target, now = chain.target, chain.now
    stored = await stored_credential(chain.svc, target)
    secret = target.secret_name or f"the app's Key Vault secret (tagged appId={target.app_id})"
    fix = CREDENTIAL_FIX.format(app_id=target.app_id, secret=stored.name if stored else secret)
    if stored is None:
        return broken(
            Link.CREDENTIAL,
            f"Key Vault holds no credential for app {target.app_id} ({secret} is missing or deleted).",
            "Recover the deleted secret (Key Vault > Secrets > Manage deleted secrets), or "
            + fix[0].lower()
            + fix[1:],
        )
    if stored.client_id.lower() != target.app_id.lower() or not stored.secret:
        return broken(
            Link.CREDENTIAL,
            f"Key Vault secret {stored.name} does not hold a credential for app {target.app_id}.",
            fix,
        )
    on_app = {c.key_id.lower(): c for c in chain.app_credentials}
    mine = on_app.get(stored.key_id.lower())
    if mine is None:
        return broken(
            Link.CREDENTIAL,
            f"The {stored.kind} stored in Key Vault secret {stored.name} (key id {stored.key_id or 'unknown'}) is "
            f"no longer on app {target.app_id}: it was removed ({len(on_app)} other credential(s) on the app).",
            fix,
        )
    if mine.end_date_time <= now:
        return broken(
            Link.CREDENTIAL,
            f"The {stored.kind} of app {target.app_id} (key id {mine.key_id}) expired on "
            f"{mine.end_date_time.strftime('%Y-%m-%d')}.",
            fix,
        )
    if stored.expires_on is not None and stored.expires_on <= now:
        return broken(
            Link.CREDENTIAL,
            f"Key Vault secret {stored.name} expired on {stored.expires_on.strftime('%Y-%m-%d')}.",
            fix,
        )
    chain.credential = stored
    chain.protocols = chain.target.protocols or stored.protocols or tuple(Protocol)
    return ok(
        Link.CREDENTIAL,
        f"{stored.kind.capitalize()} {mine.key_id} is on the app and in Key Vault ({stored.name}); it expires on "
        f"{mine.end_date_time.strftime('%Y-%m-%d')}.",
    )


async def _token_roles(chain: _Chain) -> LinkResult:
    target, stored = chain.target, chain.credential
    assert stored is not None
    try:
        token = await chain.token_source(target.tenant_id, stored.client_id, stored.secret)
    except OnboardingError as exc:
        if exc.retryable:
            raise
        return broken(
            Link.TOKEN_ROLES,
            f"Entra ID would not issue a token to app {target.app_id} with the stored secret: {exc.message}",
            exc.fix or CREDENTIAL_FIX.format(app_id=target.app_id, secret=stored.name),
        )
    wanted = [p.app_role for p in chain.protocols]
    missing = [role for role in wanted if role not in token.roles]
    if missing:
        held = ", ".join(token.roles) or "none"
        return broken(
            Link.TOKEN_ROLES,
            f"The app's token for Exchange Online lacks {', '.join(missing)} (roles in the token: {held}).",
            CONSENT_FIX.format(roles=" and ".join(missing), app_id=target.app_id),
        )
    chain.token = token.token
    return ok(Link.TOKEN_ROLES, f"The app's token for Exchange Online carries {', '.join(wanted)}.")


async def _exchange_service_principal(chain: _Chain) -> LinkResult:
    from onboarding.adapters.exchange import OBJECT_ID_FIX

    app_id, sp = chain.target.app_id, chain.service_principal_id
    registered = await chain.svc.exchange.registered_service_principal(app_id)
    register = f"New-ServicePrincipal -AppId {app_id} -ObjectId {sp}"
    if registered is None:
        return broken(
            Link.EXCHANGE_SERVICE_PRINCIPAL,
            f"Exchange Online has no service principal registered for app {app_id}.",
            f"Register it in Exchange Online PowerShell: {register}",
        )
    if sp.lower() not in registered:
        return broken(
            Link.EXCHANGE_SERVICE_PRINCIPAL,
            f"Exchange Online has app {app_id} registered with object id {', '.join(sorted(registered))}, "
            f"not its service principal's {sp}.",
            f"Remove-ServicePrincipal -Identity {app_id}; {register}. {OBJECT_ID_FIX}",
        )
    return ok(Link.EXCHANGE_SERVICE_PRINCIPAL, f"Exchange Online has app {app_id} registered as {sp}.")


async def _mailbox_access(chain: _Chain) -> LinkResult:
    from onboarding.steps import bounded

    svc, sp = chain.svc, chain.service_principal_id
    protocols = chain.protocols

    async def check(mailbox: str) -> tuple[str, str, str] | None:
        try:
            granted = await svc.exchange.has_full_access(mailbox, sp)
            enabled = await svc.exchange.protocols_enabled(mailbox)
        except NotFoundError:
            return (mailbox, "missing", "Check the address; a deleted mailbox cannot be read.")
        if not granted:
            return (
                mailbox,
                "no FullAccess for the app",
                f"Add-MailboxPermission -Identity {mailbox} -User {sp} -AccessRights FullAccess -AutoMapping $false",
            )
        off = [p for p in protocols if not enabled.get(p.value, False)]
        if off:
            switches = " ".join(f"-{'Imap' if p is Protocol.IMAP else 'Pop'}Enabled $true" for p in off)
            return (
                mailbox,
                f"{' and '.join(p.value for p in off)} disabled",
                f"Set-CASMailbox -Identity {mailbox} {switches}",
            )
        return None

    problems = [
        p for p in await bounded(svc.settings.mailbox_concurrency, chain.target.mailboxes, check) if p
    ]
    if problems:
        detail = "; ".join(f"{m}: {what}" for m, what, _ in problems[:SHOWN_MAILBOXES])
        more = len(problems) - SHOWN_MAILBOXES
        fixes = " ".join(dict.fromkeys(fix for _, _, fix in problems[:SHOWN_MAILBOXES]))
        return broken(
            Link.MAILBOX_ACCESS,
            f"{len(problems)} of {len(chain.target.mailboxes)} mailbox(es) cannot be read by the app: {detail}"
            + (f"; and {more} more" if more > 0 else "")
            + ".",
            fixes,
        )
    return ok(
        Link.MAILBOX_ACCESS,
        f"FullAccess and {'/'.join(p.value for p in protocols)} on {_mailbox_list(chain.target.mailboxes)}.",
    )


async def _mailbox_login(chain: _Chain) -> LinkResult:
    from onboarding.steps import bounded, log_in

    svc, settings = chain.svc, chain.svc.settings

    async def login(mailbox: str) -> list[str]:
        return [r.detail for r in await log_in(svc, mailbox, chain.protocols, chain.token) if not r.ok]

    refusals = [
        d
        for details in await bounded(settings.mailbox_concurrency, chain.target.mailboxes, login)
        for d in details
    ]
    if refusals:
        return broken(
            Link.MAILBOX_LOGIN,
            " ".join(refusals[:SHOWN_MAILBOXES])
            + (f" And {len(refusals) - SHOWN_MAILBOXES} more." if len(refusals) > SHOWN_MAILBOXES else ""),
            "Every earlier link holds, so Exchange Online is still applying a recent change: FullAccess "
            "and a new Exchange registration can take up to an hour. Diagnose again later; if it still "
            "fails, remove and add the FullAccess permission again.",
        )
    verbs = " and ".join("EXAMINE INBOX" if p is Protocol.IMAP else "STAT" for p in chain.protocols)
    return ok(Link.MAILBOX_LOGIN, f"{verbs} worked on {_mailbox_list(chain.target.mailboxes)}.")


_CHECKS: tuple[tuple[Link, Callable[[_Chain], Awaitable[LinkResult]]], ...] = (
    (Link.APP, _app),
    (Link.SERVICE_PRINCIPAL, _service_principal),
    (Link.CREDENTIAL, _credential),
    (Link.TOKEN_ROLES, _token_roles),
    (Link.EXCHANGE_SERVICE_PRINCIPAL, _exchange_service_principal),
    (Link.MAILBOX_ACCESS, _mailbox_access),
    (Link.MAILBOX_LOGIN, _mailbox_login),
)


async def diagnose(
    svc: ServicesPort, target: Target, *, now: datetime, token_source: TokenSource | None = None
) -> Diagnosis:
    """Check link by link, stopping at the first broken one."""

    async def default_tokens(tenant_id: str, client_id: str, secret: str) -> TokenInfo:
        return await app_token(svc, tenant_id, client_id, secret)

    chain = _Chain(svc, target, now, token_source or default_tokens)
    checked: list[LinkResult] = []
    for name, check in _CHECKS:
        result = await check(chain)
        assert result.name is name
        checked.append(result)
        if result.state is LinkState.BROKEN:
            break
    return assemble(checked)


# --- what to diagnose for an onboarding ---------------------------------------------------------------

ACTIVE_OUTCOMES = ("succeeded", "partial")


def target_of(status: dict[str, Any]) -> Target | str:
    """The target of an onboarding from its Durable status document (input and output), or why it has
    none: only a succeeded or partial onboarding left an app to diagnose. Its mailboxes are the ones
    that verified; those needing attention were reported broken at the end of the onboarding."""
    from onboarding.domain import MailboxState, OnboardingResult
    from onboarding.status_view import stored_request

    request = stored_request(status)
    output = status.get("output")
    try:
        result = OnboardingResult.from_json(output) if isinstance(output, dict) else None
    except (KeyError, TypeError, ValueError):
        result = None
    if request is None or result is None:
        return "The onboarding has not finished, or its record was purged: there is nothing to diagnose yet."
    if result.outcome.value not in ACTIVE_OUTCOMES or result.app is None:
        return f"The onboarding ended {result.outcome.value}: it left no app to diagnose."
    verified = [m.mailbox for m in result.mailbox_results(request) if m.state is MailboxState.VERIFIED]
    return Target.of_onboarding(
        result.onboarding_id,
        request.tenant_id,
        result.app.app_id,
        verified or list(request.mailboxes),
        [p.value for p in request.protocols],
    )
