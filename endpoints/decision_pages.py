"""What the admin's pages and sign-in do (their triggers are in ``endpoints/decisions.py``, which says
what each page is for and what a decision needs).

A module of its own so that the worker's start does not compile it: each trigger imports it on its first
call (the same reason as ``onboarding/lazy.py``).
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlencode

import azure.durable_functions as df
import azure.functions as func

from endpoints.http import ONBOARDING_ID, EngineUnavailable, fetch_status, html, log
from onboarding import logcontext, pages, signin, status_view
from onboarding.domain import EVENT_DECISION, Decision, DecisionEvent, OnboardingRequest, WaitKind
from onboarding.errors import ConfigurationError
from onboarding.links import APPROVAL_PURPOSES, DECISIONS, LinkClaims, LinkError, LinkPurpose, LinkSigner
from onboarding.settings import Settings, load_settings
from onboarding.signin import Approver, CookieBox, SigninError
from onboarding.validation import text_problem

MAX_FORM_BYTES = 16 * 1024
MAILBOXES_PER_PAGE = 500
_ERROR_CODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class Refused(Exception):
    """A request that must not act; carries the page text and status."""

    def __init__(self, reason: str, status: int = HTTPStatus.BAD_REQUEST, *, title: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.title = title or "This link cannot be used"


def _refusal(refused: Refused) -> func.HttpResponse:
    return html(
        pages.page(
            refused.title,
            [
                refused.reason,
                "Nothing was changed. If you expected this to work, ask the requester for a new link.",
            ],
        ),
        refused.status,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _signer() -> LinkSigner:
    try:
        return LinkSigner.from_settings(load_settings())
    except (ConfigurationError, ValueError):
        log.error("link signing is not configured")
        raise Refused(
            "This service is not configured to accept links right now.", HTTPStatus.SERVICE_UNAVAILABLE
        ) from None


def _verify(token: str, purposes: frozenset[LinkPurpose] | set[LinkPurpose]) -> LinkClaims:
    try:
        claims = _signer().verify(token, purposes=purposes)
    except LinkError as exc:
        status = HTTPStatus.GONE if "expired" in exc.reason else HTTPStatus.FORBIDDEN
        raise Refused(exc.reason, status) from None
    if not ONBOARDING_ID.fullmatch(claims.onboarding_id):
        raise Refused("This link belongs to no onboarding.", HTTPStatus.FORBIDDEN)
    logcontext.bind_request(claims.onboarding_id, "decision")  # the rest of this call concerns it
    return claims


async def _check_waiting(client: df.DurableOrchestrationClient, claims: LinkClaims, kind: WaitKind) -> dict:
    try:
        status = await fetch_status(client, claims.onboarding_id, show_input=True)
    except EngineUnavailable:
        raise Refused(
            "The onboarding cannot be reached right now. Try the link again in a few minutes.",
            HTTPStatus.SERVICE_UNAVAILABLE,
        ) from None
    reason = status_view.decision_refusal(status, nonce=claims.nonce, kind=kind)
    if reason:
        raise Refused(reason, HTTPStatus.GONE)
    return status


def _form(req: func.HttpRequest) -> dict[str, str]:
    """First value of each field of an urlencoded form, strictly: no other media type, bounded size."""
    content_type = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise Refused("The form must be submitted from the page.", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
    body = req.get_body() or b""
    if len(body) > MAX_FORM_BYTES:
        raise Refused("The form is too large.", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    try:
        fields = parse_qs(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=20
        )
    except (UnicodeDecodeError, ValueError):
        raise Refused("The form could not be read.") from None
    return {name: values[0] for name, values in fields.items() if values}


def _entra_error(form_or_query: dict[str, str]) -> tuple[str | None, str | None]:
    """Entra's ``error`` (a code) and ``error_description`` (text), made safe to store and show."""
    error = form_or_query.get("error") or None
    description = form_or_query.get("error_description") or None
    if error is not None:
        error = error[:100]
        if not set(error) <= _ERROR_CODE_CHARS:
            error = "invalid_error_code"
    if description is not None:
        description = " ".join(description.split())[:1000]
        if text_problem(description, 1000):
            description = None
    return error, description


# -- who decides ----------------------------------------------------------------------------------


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError:
        log.error("the function app's settings are incomplete")
        raise Refused(
            "This service is not configured to accept decisions right now.", HTTPStatus.SERVICE_UNAVAILABLE
        ) from None


def _signed_in(req: func.HttpRequest, settings: Settings) -> Approver | None:
    """The approver this browser signed in as (the session cookie), or None."""
    content = CookieBox.from_settings(settings).open(
        signin.read_cookie(settings, req.headers.get("Cookie")),
        kind="session",
        minutes=signin.SESSION_MINUTES,
        now=_now(),
    )
    try:
        return Approver.from_json(content["approver"]) if content else None
    except (KeyError, TypeError, ValueError):
        return None


def _requested_by(status: dict[str, Any]) -> str | None:
    """The requester's own object id, when an Entra caller (not a function key) asked: a user holding
    the API's role must not approve the request it made (OnboardingInput.requested_by)."""
    given = status.get("input")
    asked = given.get("requested_by") if isinstance(given, dict) else None
    value = asked.get("objectId") if isinstance(asked, dict) else None
    return value if isinstance(value, str) and value else None


def _decider(req: func.HttpRequest, settings: Settings, status: dict[str, Any]) -> Approver:
    """The signed-in user, if they may decide on this onboarding; else ``Refused``."""
    if not signin.is_configured(settings):
        raise _signin_unavailable()
    approver = _signed_in(req, settings)
    if approver is None:
        raise Refused(
            "Only a tenant admin signed in with Microsoft can decide. Open the link again and sign in.",
            HTTPStatus.UNAUTHORIZED,
            title="Sign-in required",
        )
    reason = signin.refusal(approver, settings, requested_by=_requested_by(status))
    if reason:
        raise Refused(
            f"You are signed in as {approver.label}. {reason}",
            HTTPStatus.FORBIDDEN,
            title="You cannot make this decision",
        )
    return approver


def _signin_unavailable() -> Refused:
    log.error("approver sign-in is not configured (SIGNIN_CLIENT_ID, SIGNIN_CLIENT_SECRET)")
    return Refused(
        "Admin sign-in is not configured for this service, so no decision can be made. Ask its operator.",
        HTTPStatus.SERVICE_UNAVAILABLE,
        title="Sign-in is not available",
    )


def _here(req: func.HttpRequest, **changes: str) -> str:
    """This page's path and query (relative: where a sign-in returns, and the list's page links)."""
    query = {k: v for k, v in req.params.items() if isinstance(v, str) and k != "page"}
    query.update(changes)
    path = "/api/" + req.url.split("/api/", 1)[1].split("?", 1)[0]
    return path + (f"?{urlencode(query)}" if query else "")


def _request_of(status: dict[str, Any]) -> OnboardingRequest:
    request = status_view.stored_request(status)
    if request is None:
        raise Refused("This link belongs to an onboarding that cannot be read.", HTTPStatus.GONE)
    return request


def _summary(request: OnboardingRequest, status: dict[str, Any], onboarding_id: str) -> dict[str, str]:
    """What is asked, in plain words: shown before and after sign-in."""
    count = len(request.mailboxes)
    protocols = " and ".join(p.value for p in request.protocols)
    submitted = (
        (status.get("input") or {}).get("submitted_at", "") if isinstance(status.get("input"), dict) else ""
    )
    asked = _requested_by(status)
    who = f"the user with object id {asked}" if asked else "a system holding this service's API key"
    if request.external_reference:
        who += f" (reference {request.external_reference})"
    return {
        "App name": request.display_name,
        "What it gets": (
            f"FullAccess to {count} mailbox{'es' if count != 1 else ''}: the app can read, change and delete "
            f"every message in each of them, signing in over {protocols} with its own credentials."
        ),
        "Protocols": protocols,
        "Client secret lifetime": f"{request.secret_lifetime_days} days",
        "Asked by": who + (f", on {submitted[:16].replace('T', ' ')} UTC" if submitted else ""),
        "Onboarding": onboarding_id,
    }


def _listing(req: func.HttpRequest, mailboxes: tuple[str, ...]) -> pages.Listing:
    pages_total = max(1, math.ceil(len(mailboxes) / MAILBOXES_PER_PAGE))
    try:
        number = min(max(int(req.params.get("page") or "1"), 1), pages_total)
    except ValueError:
        number = 1
    first = (number - 1) * MAILBOXES_PER_PAGE
    links = []
    if number > 1:
        links.append(pages.Link("previous", "Previous mailboxes", _here(req, page=str(number - 1))))
    if number < pages_total:
        links.append(pages.Link("next", "Next mailboxes", _here(req, page=str(number + 1))))
    heading = f"All {len(mailboxes)} mailboxes" + (
        f" (page {number} of {pages_total})" if pages_total > 1 else ""
    )
    return pages.Listing(heading, mailboxes[first : first + MAILBOXES_PER_PAGE], first + 1, tuple(links))


def _sign_in_first(
    req: func.HttpRequest,
    settings: Settings,
    details: dict[str, str],
    paragraphs: list[str],
    refused: Refused,
) -> func.HttpResponse:
    """Not signed in (or not someone who may decide): what is asked, and the way to sign in."""
    if not signin.is_configured(settings):
        return _refusal(_signin_unavailable())
    status = HTTPStatus.OK if refused.status == HTTPStatus.UNAUTHORIZED else refused.status
    label = "Sign in with Microsoft" if status == HTTPStatus.OK else "Sign in as another user"
    text = [*paragraphs, refused.reason] if status != HTTPStatus.OK else paragraphs
    return html(
        pages.link_page(
            refused.title if status != HTTPStatus.OK else "Sign in to review this request",
            [
                *text,
                "Only a tenant admin who could grant this consent (Global Administrator, Privileged Role "
                "Administrator, Cloud Application Administrator or Application Administrator) can decide. "
                "Sign in to see every mailbox and decide.",
            ],
            details=details,
            links=[pages.Link("signin", label, f"/api/signin?{urlencode({'next': _here(req)})}")],
        ),
        status,
    )


def _bound_form(
    settings: Settings, approver: Approver, claims: LinkClaims, digest: str, hidden: dict[str, str]
) -> dict[str, str]:
    token = CookieBox.from_settings(settings).form_token(approver, claims.onboarding_id, claims.nonce, digest)
    return {**hidden, "digest": digest, "form_token": token}


def _check_bound(
    settings: Settings,
    approver: Approver,
    claims: LinkClaims,
    form: dict[str, str],
    request: OnboardingRequest,
) -> str:
    """The form came from a page shown to this approver, for this wait, and lists this request's mailboxes."""
    digest = form.get("digest", "")
    if not CookieBox.from_settings(settings).form_token_matches(
        form.get("form_token", ""), approver, claims.onboarding_id, claims.nonce, digest
    ):
        raise Refused("The form was not the one shown to you. Open the page again.", HTTPStatus.FORBIDDEN)
    if digest != signin.mailbox_digest(request.mailboxes):
        raise Refused(
            "The mailbox list you confirmed is not the list this onboarding asks for.", HTTPStatus.CONFLICT
        )
    return digest


# -- sign-in --------------------------------------------------------------------------------------


async def signin_start(req: func.HttpRequest) -> func.HttpResponse:
    """Start the OpenID Connect code flow (MSAL: state, nonce, PKCE) and keep it in the cookie."""
    try:
        settings = _settings()
        if not signin.is_configured(settings):
            raise _signin_unavailable()
        back = signin.safe_return_path(req.params.get("next", ""))
        if back is None:
            raise Refused("Sign-in starts from a decision page. Open the link from the email again.")
        try:
            auth_uri, flow = await asyncio.to_thread(signin.start, settings)
        except Exception as exc:  # MSAL's discovery failed: its text may carry URLs; log the type only
            log.error("sign-in could not start (%s)", type(exc).__name__)
            raise Refused(
                "Microsoft Entra ID cannot be reached right now. Try again in a few minutes.",
                HTTPStatus.SERVICE_UNAVAILABLE,
                title="Sign-in failed",
            ) from None
    except Refused as refused:
        return _refusal(refused)
    sealed = CookieBox.from_settings(settings).seal({"kind": "flow", "flow": flow, "next": back}, _now())
    response = html(pages.page("Signing in", ["Continue to Microsoft to sign in."]), HTTPStatus.FOUND)
    response.headers["Location"] = auth_uri
    response.headers["Set-Cookie"] = signin.set_cookie(settings, sealed, signin.FLOW_MINUTES * 60)
    return response


async def signin_callback(req: func.HttpRequest) -> func.HttpResponse:
    """Entra's redirect: redeem the code, check the ID token, and keep who signed in (never a token)."""
    query = {k: v for k, v in req.params.items() if isinstance(v, str)}
    try:
        settings = _settings()
        if not signin.is_configured(settings):
            raise _signin_unavailable()
    except Refused as refused:
        return _refusal(refused)
    box = CookieBox.from_settings(settings)
    try:
        approver, back = await _finish_signin(settings, box, req, query)
    except Refused as refused:
        response = _refusal(refused)
        response.headers["Set-Cookie"] = signin.set_cookie(settings, "", 0)  # the flow is spent
        return response
    log.info("approver %s signed in", approver.object_id)
    sealed = box.seal({"kind": "session", "approver": approver.to_json()}, _now())
    response = html(pages.page("Signed in", ["Continue to the request."]), HTTPStatus.FOUND)
    response.headers["Location"] = back
    response.headers["Set-Cookie"] = signin.set_cookie(settings, sealed, signin.SESSION_MINUTES * 60)
    return response


async def _finish_signin(
    settings: Settings, box: CookieBox, req: func.HttpRequest, query: dict[str, str]
) -> tuple[Approver, str]:
    """Who signed in, and the decision page to return to."""
    pending = box.open(
        signin.read_cookie(settings, req.headers.get("Cookie")),
        kind="flow",
        minutes=signin.FLOW_MINUTES,
        now=_now(),
    )
    back = signin.safe_return_path(str((pending or {}).get("next", "")))
    if pending is None or back is None or not isinstance(pending.get("flow"), dict):
        raise Refused(
            "This sign-in was not started in this browser, or took too long. Open the link again.",
            title="Sign-in failed",
        )
    try:
        approver = await asyncio.to_thread(signin.finish, settings, pending["flow"], query, _now())
    except SigninError as exc:
        raise Refused(exc.reason, HTTPStatus.FORBIDDEN, title="Sign-in failed") from None
    except Exception as exc:  # the token endpoint could not be reached; its text may carry URLs
        log.error("sign-in could not be completed (%s)", type(exc).__name__)
        raise Refused(
            "Microsoft Entra ID cannot be reached right now. Try again in a few minutes.",
            HTTPStatus.SERVICE_UNAVAILABLE,
            title="Sign-in failed",
        ) from None
    return approver, back


# -- consent callback -----------------------------------------------------------------------------


# One function per route, dispatching on the method: the GET (page) and POST (action) of a link stay
# side by side, and hosts map one route to one function.
async def consent_callback(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if req.method == "POST":
        return await consent_callback_confirm(req, client)
    return await consent_callback_page(req, client)


async def approval(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if req.method == "POST":
        return await approval_decide(req, client)
    return await approval_page(req, client)


async def consent_callback_page(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Summarise what Entra reported; for a signed-in admin, list the mailboxes and offer the
    confirmation that lets the onboarding grant FullAccess. Never acts."""
    query = {k: v for k, v in req.params.items() if isinstance(v, str)}
    try:
        state = query.get("state", "")
        if not state:
            raise Refused("This page expects the link Entra ID redirects to after admin consent (no state).")
        claims = _verify(state, {LinkPurpose.CONSENT})
        status = await _check_waiting(client, claims, WaitKind.ADMIN_CONSENT)
        settings = _settings()
        request = _request_of(status)
    except Refused as refused:
        return _refusal(refused)
    error, description = _entra_error(query)
    details = _summary(request, status, claims.onboarding_id)
    if error:
        details = {"Error": error, "Description": description or "(none)", **details}
        title = "Admin consent was not granted"
        said = [
            "Entra ID reported that admin consent was not granted. Report this to the onboarding so that it "
            "stops and removes what it created."
        ]
        button = pages.Button("confirm", "Report that consent was declined")
    else:
        title = "Confirm the mailboxes"
        first = (
            "Entra ID reported that admin consent was granted."
            if query.get("admin_consent")
            else "Grant admin consent in Entra ID first (the link in the email, or the app's Permissions "
            "page in the Entra admin center)."
        )
        said = [
            f"{first} No mailbox is opened to the app until a signed-in admin confirms the list below: "
            "then the onboarding checks the permissions with Microsoft Graph and grants FullAccess on "
            "exactly these mailboxes."
        ]
        button = pages.Button("confirm", "Confirm these mailboxes and continue")
    try:
        approver = _decider(req, settings, status)
    except Refused as refused:
        return _sign_in_first(req, settings, details, said, refused)
    hidden = {"state": state}
    if error:
        hidden["error"] = error
        if description:
            hidden["error_description"] = description
    digest = signin.mailbox_digest(request.mailboxes)
    return html(
        pages.review_page(
            title,
            said,
            details={**details, "Signed in as": approver.label},
            listing=_listing(req, request.mailboxes),
            action="callback",
            hidden=_bound_form(settings, approver, claims, digest, hidden),
            buttons=[button],
        )
    )


async def consent_callback_confirm(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    try:
        form = _form(req)
        state = form.get("state", "")
        if not state:
            raise Refused("The form is missing the consent state. Open the link from Entra ID again.")
        claims = _verify(state, {LinkPurpose.CONSENT})
        status = await _check_waiting(client, claims, WaitKind.ADMIN_CONSENT)
        settings = _settings()
        approver = _decider(req, settings, status)
        digest = _check_bound(settings, approver, claims, form, _request_of(status))
        error, description = _entra_error(form)
        event = DecisionEvent(
            decision=Decision.DECLINED if error else Decision.CONSENTED,
            nonce=claims.nonce,
            error=error,
            error_description=description,
            mailbox_digest=digest,
            approver=approver.object_id,
            approver_name=approver.label,
        )
        await _raise(client, claims, event)
    except Refused as refused:
        return _refusal(refused)
    if error:
        return html(
            pages.page("Consent declined", ["The onboarding was told; it stops and removes what it created."])
        )
    return html(
        pages.page(
            "Thank you",
            [
                "The onboarding continues. It confirms the permissions with Microsoft Graph, then grants "
                "FullAccess on the mailboxes you confirmed. You can close this page."
            ],
        )
    )


async def _raise(client: df.DurableOrchestrationClient, claims: LinkClaims, event: DecisionEvent) -> None:
    try:
        await client.raise_event(claims.onboarding_id, EVENT_DECISION, event.to_json())
    except Exception as exc:  # the SDK's text may carry the Durable API's URLs: log the type only
        log.error(
            "could not deliver the decision to onboarding %s (%s)", claims.onboarding_id, type(exc).__name__
        )
        raise Refused(
            "The onboarding could not be reached; it may have just finished. Nothing was changed.",
            HTTPStatus.SERVICE_UNAVAILABLE,
        ) from None
    log.info(
        "onboarding %s: decision %s delivered (approver %s)",
        claims.onboarding_id,
        event.decision.value,
        event.approver,
    )


# -- approval pages (grant mode) ------------------------------------------------------------------


async def approval_page(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        claims = _verify(req.route_params.get("token", ""), APPROVAL_PURPOSES)
        status = await _check_waiting(client, claims, WaitKind.ADMIN_APPROVAL)
        settings = _settings()
        request = _request_of(status)
    except Refused as refused:
        return _refusal(refused)
    details = _summary(request, status, claims.onboarding_id)
    said = [
        "An app asks for app-only mailbox access. Approving assigns its IMAP/POP permissions and grants "
        "FullAccess on every mailbox listed below; rejecting removes the app."
    ]
    try:
        approver = _decider(req, settings, status)
    except Refused as refused:
        return _sign_in_first(req, settings, details, said, refused)
    allowed = DECISIONS[claims.purpose]
    buttons = [
        pages.Button(choice, label, name="decision", value=choice)
        for choice, label in (("approve", "Approve"), ("reject", "Reject"))
        if choice in allowed
    ]
    return html(
        pages.review_page(
            "Approve mailbox access for an app",
            said,
            details={**details, "Signed in as": approver.label},
            listing=_listing(req, request.mailboxes),
            action="",
            hidden=_bound_form(settings, approver, claims, signin.mailbox_digest(request.mailboxes), {}),
            buttons=buttons,
            note=f"This link is valid until {claims.expires_at:%Y-%m-%d %H:%M} UTC.",
        )
    )


async def approval_decide(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        claims = _verify(req.route_params.get("token", ""), APPROVAL_PURPOSES)
        form = _form(req)
        choice = form.get("decision", "")
        if choice not in ("approve", "reject"):
            raise Refused("The decision must be approve or reject.")
        if choice not in DECISIONS[claims.purpose]:
            raise Refused(f"This link does not allow the decision {choice!r}.", HTTPStatus.FORBIDDEN)
        status = await _check_waiting(client, claims, WaitKind.ADMIN_APPROVAL)
        settings = _settings()
        approver = _decider(req, settings, status)
        digest = _check_bound(settings, approver, claims, form, _request_of(status))
        decision = Decision.APPROVED if choice == "approve" else Decision.REJECTED
        event = DecisionEvent(
            decision=decision,
            nonce=claims.nonce,
            mailbox_digest=digest,
            approver=approver.object_id,
            approver_name=approver.label,
        )
        await _raise(client, claims, event)
    except Refused as refused:
        return _refusal(refused)
    if decision is Decision.APPROVED:
        return html(pages.page("Approved", ["The onboarding continues. You can close this page."]))
    return html(
        pages.page("Rejected", ["The onboarding stops and removes what it created. You can close this page."])
    )
