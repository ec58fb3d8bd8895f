"""What each activity does, over the adapters. Each step is idempotent: Durable runs activities at
least once, so running one twice with the same input leaves the tenant as running it once does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from onboarding import emails
from onboarding.contracts import ExchangeRegistered, Pending, RolesConfirmed, SecretReader, ServicePrincipal
from onboarding.domain import (
    EXCHANGE_ONLINE_APP_ID,
    GRANTED_DETAIL,
    VERIFIED_DETAIL,
    AppRegistration,
    ConsentMode,
    CredentialType,
    ExchangeResource,
    MailboxResult,
    MailboxState,
    OnboardingRequest,
    OnboardingResult,
    Protocol,
    SecretRef,
    app_unique_name,
    vault_certificate_name,
    vault_secret_name,
)
from onboarding.errors import InvalidRequestError, NotFoundError, OnboardingError, TransientError
from onboarding.expiry import CREDENTIALS_CONTENT_TYPE
from onboarding.handoff import CREDENTIALS_SCHEMA_VERSION
from onboarding.ports import NewPasswordRecord, PasswordRecord, ServicesPort

if TYPE_CHECKING:
    from onboarding.adapters.mailprobe import LoginResult

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def password_label(onboarding_id: str) -> str:
    """The display name of the app's client secret: how a retried step recognises its own."""
    return f"mail-onboarding {onboarding_id}"


async def send_email(svc: ServicesPort, to: Sequence[str], message: emails.Email) -> None:
    """Send as the sender mailbox within its hourly recipient budget (``EMAILS_PER_HOUR``): over it,
    the email waits (a transient failure Durable retries) rather than going out."""
    from onboarding import admission

    settings = svc.settings
    limits = admission.limits_for(
        settings.onboardings_per_requester_per_hour, settings.onboardings_per_hour, settings.emails_per_hour
    )
    if not limits.admit_email(len(to)):
        raise TransientError(
            f"The sender mailbox has reached its budget of {settings.emails_per_hour} email recipients "
            "per hour; the email will be sent later.",
            retry_after=300,
            fix="Wait, or raise EMAILS_PER_HOUR if the volume is expected.",
            code="email_rate_limited",
        )
    await svc.graph.send_mail(settings.mail_sender, to, message.subject, message.html, message.text)


async def resolve_exchange(svc: ServicesPort, roles: Sequence[str]) -> ExchangeResource:
    return await svc.graph.get_resource(EXCHANGE_ONLINE_APP_ID, roles)


async def register_app(
    svc: ServicesPort,
    *,
    onboarding_id: str,
    display_name: str,
    roles: Sequence[str],
    resource: ExchangeResource,
    external_reference: str | None,
) -> AppRegistration:
    from onboarding.links import consent_redirect_uri

    reference = f" for {external_reference}" if external_reference else ""
    return await svc.graph.upsert_application(
        unique_name=app_unique_name(onboarding_id),
        display_name=display_name,
        resource=resource,
        resource_app_id=EXCHANGE_ONLINE_APP_ID,
        role_values=roles,
        redirect_uris=[consent_redirect_uri(svc.settings)],
        notes=f"IMAP/POP app-only access, created by mail onboarding {onboarding_id}{reference}.",
        tags=["mail-onboarding", f"mail-onboarding:{onboarding_id}"],
    )


async def ensure_service_principal(svc: ServicesPort, app_id: str) -> ServicePrincipal | Pending:
    try:
        return ServicePrincipal(await svc.graph.ensure_service_principal(app_id))
    except TransientError as exc:
        if exc.code != "replication":
            raise
        return Pending(
            "The new app is not visible to Microsoft Graph yet (directory replication).",
            fix="Usually resolves within minutes; if it does not, check Entra ID service health.",
        )


def build_document(
    settings: Any,
    tenant_id: str,
    client_id: str,
    secret_text: str,
    protocols: Sequence[str],
    expires_on: datetime,
) -> dict[str, Any]:
    """The Key Vault secret's JSON document: what the mail client reads (docs/client.md)."""
    return {
        "schemaVersion": CREDENTIALS_SCHEMA_VERSION,
        "tenantId": tenant_id,
        "clientId": client_id,
        "clientSecret": secret_text,
        "authorityHost": settings.authority_host,
        "tokenEndpoint": settings.token_endpoint(tenant_id),
        "scope": settings.exchange_scope,
        "imap": {"host": settings.imap_host, "port": settings.imap_port}
        if Protocol.IMAP in protocols
        else None,
        "pop": {"host": settings.pop_host, "port": settings.pop_port} if Protocol.POP in protocols else None,
        "expiresOn": expires_on.isoformat(),
    }


async def mint_password(
    svc: ServicesPort, object_id: str, label: str, end: datetime, held: Sequence[PasswordRecord]
) -> NewPasswordRecord:
    """Add the app's password credential ``label``, after removing any it already holds under that
    label (``held``: the app's credentials as just read).

    ``addPassword`` is never resent blindly: a failed one may still have minted a credential whose
    value nobody has. So a transient failure is retried here, up to the adapters' usual attempts and
    honouring Retry-After, by reading the app's credentials again, removing the orphan and adding
    anew, rather than by leaving the whole step to the orchestrator's few retries: with the add sent
    once per activity run, a service failing one call in five failed 5 runs in a row about once in
    3,000 onboardings (tests/trust/test_faults.py, seed 983079835)."""
    from onboarding.adapters._retry import retrying

    known: Sequence[PasswordRecord] | None = held

    async def attempt() -> NewPasswordRecord:
        nonlocal known
        current = known if known is not None else await svc.graph.list_passwords(object_id)
        known = None  # a retry reads them again: the failed add may have left one
        for orphan in (p for p in current if p.display_name == label):
            await svc.graph.remove_password(object_id, orphan.key_id)
        return await svc.graph.add_password(object_id, label, end)

    return await retrying(attempt)


async def create_secret(
    svc: ServicesPort,
    *,
    onboarding_id: str,
    tenant_id: str,
    app: AppRegistration,
    lifetime_days: int,
    protocols: Sequence[str],
    now: datetime | None = None,
    credential_type: CredentialType = CredentialType.SECRET,
) -> SecretRef:
    """Mint the client secret (or certificate: ``onboarding.certificates``) and put it in Key Vault,
    never handing it back.

    Idempotent: if the vault already holds a secret whose password credential is still on the app,
    that one stands. A credential carrying this onboarding's label but absent from the vault is an
    orphan of an interrupted attempt (its value was lost), so it is removed before a new one is made.
    """
    if credential_type is CredentialType.CERTIFICATE:
        from onboarding import certificates

        return await certificates.issue(
            svc,
            onboarding_id=onboarding_id,
            tenant_id=tenant_id,
            app=app,
            lifetime_days=lifetime_days,
            protocols=protocols,
            label=password_label(onboarding_id),
        )
    settings = svc.settings
    name = vault_secret_name(onboarding_id)
    label = password_label(onboarding_id)
    stored = await svc.vault.get(name)
    passwords = await svc.graph.list_passwords(app.object_id)
    on_app = {p.key_id for p in passwords}
    if stored is not None and stored.tags.get("keyId") in on_app:
        return SecretRef(
            vault_uri=settings.key_vault_uri,
            name=name,
            version=stored.version,
            expires_on=stored.expires_on.isoformat() if stored.expires_on else "",
            key_id=stored.tags["keyId"],
        )
    end = (now or utcnow()) + timedelta(days=lifetime_days)
    new = await mint_password(svc, app.object_id, label, end, passwords)
    document = build_document(settings, tenant_id, app.app_id, new.secret_text, protocols, new.end_date_time)
    try:
        version = await svc.vault.put(
            name,
            json.dumps(document),
            content_type=CREDENTIALS_CONTENT_TYPE,
            expires_on=new.end_date_time,
            tags={"keyId": new.key_id, "appId": app.app_id, "onboardingId": onboarding_id},
        )
    except BaseException:
        # The value exists nowhere else: a credential nobody can use must not stay on the app.
        await svc.graph.remove_password(app.object_id, new.key_id)
        raise
    return SecretRef(
        vault_uri=settings.key_vault_uri,
        name=name,
        version=version,
        expires_on=new.end_date_time.isoformat(),
        key_id=new.key_id,
    )


async def grant_secret_reader(
    svc: ServicesPort, *, onboarding_id: str, principal_id: str
) -> SecretReader | Pending:
    """Key Vault Secrets User for the mail product's principal on this onboarding's secret only
    (onboarding/adapters/rbac.py). Idempotent: the assignment's name is derived from the secret and the
    principal, and an existing one counts as made. A principal Azure Resource Manager does not find
    yet (a new one, still replicating) answers ``Pending``, so the orchestrator waits with backoff."""
    name = vault_secret_name(onboarding_id)
    try:
        assignment = await svc.secret_access.grant_secret_reader(name, principal_id)
    except TransientError as exc:
        if exc.code == "PrincipalNotFound":
            return Pending(exc.message, exc.fix)
        raise
    return SecretReader(principal_id=principal_id, secret_name=name, assignment=assignment)


async def send_decision_email(
    svc: ServicesPort,
    *,
    onboarding_id: str,
    request: OnboardingRequest,
    app_id: str,
    nonce: str,
    deadline: datetime,
    reminder: int,
    mailbox_count: int | None = None,
) -> None:
    """``request`` may carry only the mailboxes the email names, ``mailbox_count`` saying how many."""
    from onboarding import links

    settings = svc.settings
    signer = links.LinkSigner(settings.link_signing_key)
    if request.consent_mode is ConsentMode.CONSENT:
        state = signer.issue(onboarding_id, links.LinkPurpose.CONSENT, nonce, deadline)
        actions = {
            "consent": links.consent_url(settings, tenant_id=request.tenant_id, app_id=app_id, state=state),
            # Every mailbox, for the signed-in admin, who confirms the list there after consenting.
            "mailboxes": links.mailbox_list_url(settings, state),
        }
    else:
        decide = signer.issue(onboarding_id, links.LinkPurpose.DECIDE, nonce, deadline)
        actions = {
            "approve": links.approval_url(
                settings, signer.issue(onboarding_id, links.LinkPurpose.APPROVE, nonce, deadline)
            ),
            "reject": links.approval_url(
                settings, signer.issue(onboarding_id, links.LinkPurpose.REJECT, nonce, deadline)
            ),
            "mailboxes": links.approval_url(settings, decide),
        }
    message = emails.decision_request(
        request,
        app_id=app_id,
        actions=actions,
        deadline=deadline,
        reminder=reminder,
        mailbox_count=mailbox_count,
        brand=emails.Brand.from_settings(svc.settings),
    )
    await send_email(svc, request.admin_emails, message)


async def grant_app_roles(
    svc: ServicesPort, *, service_principal_id: str, resource: ExchangeResource, roles: Sequence[str]
) -> None:
    for role in roles:
        await svc.graph.assign_app_role(
            service_principal_id, resource.service_principal_id, resource.app_role_ids[role]
        )


async def check_app_roles(
    svc: ServicesPort, *, service_principal_id: str, resource: ExchangeResource, roles: Sequence[str]
) -> RolesConfirmed | Pending:
    try:
        assignments = await svc.graph.list_app_role_assignments(service_principal_id)
    except NotFoundError:
        # A service principal made moments ago may not have replicated to every directory replica.
        return Pending(
            "The app's service principal is not visible to Microsoft Graph yet (directory replication).",
            fix="Usually resolves within minutes; if it does not, check Entra ID service health.",
        )
    held = {a.app_role_id for a in assignments if a.resource_id == resource.service_principal_id}
    missing = [role for role in roles if resource.app_role_ids[role] not in held]
    if missing:
        return Pending(
            f"Microsoft Graph does not show the permission(s) {', '.join(missing)} as granted yet.",
            fix="Grant admin consent for the app in Entra ID (Enterprise applications > Permissions).",
        )
    return RolesConfirmed(tuple(roles))


async def register_in_exchange(
    svc: ServicesPort, *, app_id: str, service_principal_id: str, app_object_id: str, display_name: str
) -> ExchangeRegistered | Pending:
    """New-ServicePrincipal with the enterprise app's object id. Exchange reads Entra through its own
    replica, so a principal made minutes ago may not be found yet: that is a wait, not a failure.

    Exchange answers a wrong id the same way, so before waiting, Graph says which it is: the id must
    be the object id of the service principal Graph has for ``app_id``; anything else will never be
    found and fails now, with the fix, rather than after an hour of polling."""
    from onboarding.adapters.exchange import OBJECT_ID_FIX

    try:
        await svc.exchange.ensure_service_principal(
            app_id, service_principal_id, display_name, app_object_id=app_object_id
        )
    except TransientError as exc:
        if exc.code != "replication":
            raise
        in_graph = await svc.graph.find_service_principal(app_id)
        if in_graph is not None and in_graph.lower() != service_principal_id.lower():
            raise InvalidRequestError(
                f"Object id {service_principal_id} is not the service principal of app {app_id} "
                f"(Microsoft Graph has {in_graph}).",
                fix=OBJECT_ID_FIX,
                code="wrong_object_id",
            ) from None
        return Pending(
            "Exchange Online does not see the app's service principal yet (directory replication).",
            fix=exc.fix
            or "Usually resolves within minutes; check that the service principal exists in Entra ID.",
        )
    return ExchangeRegistered(service_principal_id)


async def bounded(limit: int, items: Iterable[T], work: Callable[[T], Awaitable[Any]]) -> list[Any]:
    """Run ``work`` on every item, at most ``limit`` at a time, keeping the order of ``items``."""
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> Any:
        async with gate:
            return await work(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


async def grant_mailboxes(
    svc: ServicesPort, *, service_principal_id: str, mailboxes: Sequence[str], protocols: Sequence[str]
) -> list[MailboxResult]:
    """One Exchange call per mailbox: Exchange's throttling budget goes to the grants themselves.
    Whether IMAP/POP is enabled is asked only where a login is refused (see ``verify_mailboxes``)."""

    async def grant(mailbox: str) -> MailboxResult:
        try:
            await svc.exchange.grant_full_access(mailbox, service_principal_id)
        except NotFoundError:
            return MailboxResult(
                mailbox,
                MailboxState.NOT_FOUND,
                "Exchange Online has no mailbox with this address. Fix: check the address, "
                "or create the mailbox and onboard it again.",
            )
        except InvalidRequestError as exc:
            # A refusal about this mailbox (one the adapter does not recognise): the other mailboxes
            # go on. Errors about the app itself (PermissionDeniedError, TransientError) still stop
            # the batch. Exchange's text is not repeated: it is unclassified upstream data.
            return MailboxResult(
                mailbox, MailboxState.FAILED, unrecognised_grant_refusal(exc, mailbox, service_principal_id)
            )
        return MailboxResult(mailbox, MailboxState.GRANTED, GRANTED_DETAIL)

    return await bounded(svc.settings.mailbox_concurrency, mailboxes, grant)


def unrecognised_grant_refusal(exc: InvalidRequestError, mailbox: str, service_principal_id: str) -> str:
    """What an admin needs about a grant Exchange refused for a reason the onboarding does not know."""
    status = getattr(exc, "status", None)
    answered = f" (HTTP {status})" if status else ""
    return (
        f"Exchange Online refused FullAccess on this mailbox{answered} with an error the onboarding does "
        f"not recognise. Fix: run Add-MailboxPermission -Identity {mailbox} -User {service_principal_id} "
        "-AccessRights FullAccess -AutoMapping $false in Exchange Online PowerShell "
        "to see Exchange's message, correct the mailbox, then onboard it again."
    )


async def explain_refusal(svc: ServicesPort, mailbox: str, protocols: Sequence[str]) -> MailboxResult | None:
    """A refused login whose protocol is disabled on the mailbox will never succeed: say so now."""
    try:
        enabled = await svc.exchange.protocols_enabled(mailbox)
    except NotFoundError:
        return MailboxResult(mailbox, MailboxState.NOT_FOUND, "Exchange Online no longer finds this mailbox.")
    off = [p for p in protocols if not enabled.get(p, False)]
    if not off:
        return None
    switches = " ".join(f"-{'Imap' if p == 'IMAP' else 'Pop'}Enabled $true" for p in off)
    return MailboxResult(
        mailbox,
        MailboxState.PROTOCOL_DISABLED,
        f"{' and '.join(off)} is disabled on this mailbox. Fix: Set-CASMailbox -Identity {mailbox} {switches}",
    )


async def verify_mailboxes(
    svc: ServicesPort,
    *,
    tenant_id: str,
    app: AppRegistration,
    secret: SecretRef,
    protocols: Sequence[str],
    mailboxes: Sequence[str],
) -> list[MailboxResult]:
    """Log in as the mail client will: its credential (secret or certificate) from Key Vault, a token
    for Exchange, XOAUTH2 per mailbox.

    A refusal leaves the mailbox GRANTED (the orchestrator tries again while permissions propagate);
    only a verified login on every protocol makes it VERIFIED.
    """
    from onboarding.adapters.identity import acquire_token, document_credential

    settings = svc.settings
    stored = await svc.vault.get(secret.name, secret.version)
    if stored is None:
        raise NotFoundError(
            f"Key Vault secret {secret.name} is missing.", fix="Restore it from the vault's deleted secrets."
        )
    document = json.loads(stored.value)
    try:
        credential = document_credential(settings, document, tenant_id)
    except (ValueError, KeyError, TypeError):
        # azure-identity parses the PEM here; its words are not passed on (they could quote it).
        raise OnboardingError(
            f"The credential in Key Vault secret {secret.name} cannot be used (malformed document or certificate).",
            fix="Rotate the onboarding's credential (POST .../rotate) to write a new one.",
            code="credential_unreadable",
        ) from None
    try:
        token = await acquire_token(credential, settings.exchange_scope)
    except TransientError as exc:
        return [MailboxResult(m, MailboxState.GRANTED, f"No token yet: {exc}") for m in mailboxes]
    finally:
        await credential.close()
    missing = [p for p in protocols if Protocol(p).app_role not in token.roles]
    if missing:
        detail = (
            f"The app's token does not carry {', '.join(Protocol(p).app_role for p in missing)} yet: "
            "consent may still be propagating."
        )
        return [MailboxResult(m, MailboxState.GRANTED, detail) for m in mailboxes]

    asked = [Protocol(name) for name in protocols]

    async def verify(mailbox: str) -> MailboxResult:
        logins = await log_in(svc, mailbox, asked, token.token)
        outcomes = {protocol.value: result.ok for protocol, result in zip(asked, logins, strict=True)}
        details = [result.detail for result in logins if not result.ok]
        if all(outcomes.values()):
            return MailboxResult(mailbox, MailboxState.VERIFIED, VERIFIED_DETAIL, outcomes)
        refused = [p for p, ok in outcomes.items() if not ok]
        return await explain_refusal(svc, mailbox, refused) or MailboxResult(
            mailbox, MailboxState.GRANTED, " ".join(details), outcomes
        )

    return await bounded(settings.mailbox_concurrency, mailboxes, verify)


async def log_in(
    svc: ServicesPort, mailbox: str, protocols: Sequence[Protocol], token: str
) -> list[LoginResult]:
    """The mail client's login to ``mailbox`` over each protocol, one after the other: one connection
    to the mailbox at a time (logging in over both at once was tried: finding 00000000)."""
    settings = svc.settings
    hosts = {
        Protocol.IMAP: (settings.imap_host, settings.imap_port),
        Protocol.POP: (settings.pop_host, settings.pop_port),
    }
    return [await svc.mail_probe(*hosts[p], p, mailbox, token) for p in protocols]


async def compensate(
    svc: ServicesPort,
    *,
    onboarding_id: str,
    app: AppRegistration | None,
    exchange_registered: bool,
    secret_reader: str | None = None,
    credential_type: CredentialType = CredentialType.SECRET,
) -> list[str]:
    """Undo an onboarding that will not complete, and say what was undone or is left for an admin.

    Each part is idempotent and tried on its own: the missing permission that failed the onboarding
    often refuses one part (e.g. Remove-ServicePrincipal without Exchange.ManageAsApp), and that must
    not keep the others (the vault secret, the app with its live credential) in place. A transient
    failure is raised, so Durable retries the whole, idempotent compensation.
    """
    name = vault_secret_name(onboarding_id)
    parts: list[tuple[Callable[[], Awaitable[None]], str, str]] = []
    if app is not None and exchange_registered:
        parts.append(
            (
                lambda: svc.exchange.remove_service_principal(app.app_id),
                f"Removed the Exchange Online service principal of app {app.app_id}.",
                f"Remove it with: Remove-ServicePrincipal -Identity {app.app_id}",
            )
        )
    if secret_reader:

        async def remove_reader() -> None:
            await svc.secret_access.remove_secret_reader(name, secret_reader)

        parts.append(
            (
                remove_reader,
                f"Removed the mail product's Key Vault Secrets User role on secret {name}.",
                f"Remove the role assignment of principal {secret_reader} on secret {name} (Access control).",
            )
        )
    parts.append(
        (
            lambda: svc.vault.delete(name),
            f"Deleted Key Vault secret {name} (recoverable while the vault's soft delete lasts).",
            f"Delete the Key Vault secret {name} in the vault.",
        )
    )
    if credential_type is CredentialType.CERTIFICATE:
        certificate = vault_certificate_name(onboarding_id)
        parts.append(
            (
                lambda: svc.certificates.delete(certificate),
                f"Deleted Key Vault certificate {certificate} and its private key (recoverable while the "
                "vault's soft delete lasts).",
                f"Delete the Key Vault certificate {certificate} in the vault.",
            )
        )
    if app is not None:
        parts.append(
            (
                lambda: svc.graph.delete_application(app.object_id),
                f"Deleted app registration {app.app_id} (restorable for 30 days in Entra ID).",
                f"Delete app registration {app.app_id} in Entra ID (App registrations).",
            )
        )
    report = []
    for undo, done, manual in parts:
        try:
            await undo()
        except TransientError:
            raise
        except OnboardingError as exc:
            report.append(f"Left in place: {exc.message} {manual}")
            continue
        report.append(done)
    return report


async def notify_outcome(
    svc: ServicesPort,
    *,
    request: OnboardingRequest,
    result: OnboardingResult,
    mailbox_count: int | None = None,
) -> None:
    message = emails.outcome(request, result, mailbox_count, emails.Brand.from_settings(svc.settings))
    await send_email(svc, request.admin_emails, message)
