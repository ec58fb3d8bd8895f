"""Pages a tenant admin reaches from Entra or from an email (anonymous: the signed token is the authority).

GET only ever shows a page (mail scanners and link previews follow links with GET); the decision is
a form POST, which re-verifies everything before raising the decision event. A refused link changes
nothing and gets a page that says why.

- ``/api/consent/callback``: Entra's redirect after admin consent. ``state`` is a ``consent`` link
  token; ``tenant`` is never trusted and the orchestration confirms the grant through Graph anyway.
- ``/api/approvals/{token}``: grant mode. ``decide`` tokens offer Approve and Reject; ``approve`` and
  ``reject`` tokens offer only their own decision.
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import parse_qs

import azure.durable_functions as df
import azure.functions as func

from endpoints.http import ONBOARDING_ID, EngineUnavailable, fetch_status, html, log
from endpoints.registry import blueprint
from onboarding import pages, status_view
from onboarding.domain import EVENT_DECISION, Decision, DecisionEvent
from onboarding.errors import ConfigurationError
from onboarding.links import APPROVAL_PURPOSES, DECISIONS, LinkClaims, LinkError, LinkPurpose, LinkSigner
from onboarding.settings import load_settings
from onboarding.validation import text_problem

MAX_FORM_BYTES = 16 * 1024
CONSENT_WAIT = "admin_consent"
APPROVAL_WAIT = "admin_approval"
_ERROR_CODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class Refused(Exception):
    """A request that must not act; carries the page text and status."""

    def __init__(self, reason: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _refusal(refused: Refused) -> func.HttpResponse:
    return html(
        pages.page(
            "This link cannot be used",
            [
                refused.reason,
                "Nothing was changed. If you expected this to work, ask the requester for a new link.",
            ],
        ),
        refused.status,
    )


def _signer() -> LinkSigner:
    try:
        return LinkSigner(load_settings().link_signing_key)
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
    return claims


async def _check_waiting(client: df.DurableOrchestrationClient, claims: LinkClaims, kind: str) -> dict:
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


# -- consent callback -----------------------------------------------------------------------------


# One function per route, dispatching on the method: the GET (page) and POST (action) of a link stay
# side by side, and hosts map one route to one function.
@blueprint.route(route="consent/callback", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
async def consent_callback(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if req.method == "POST":
        return await consent_callback_confirm(req, client)
    return await consent_callback_page(req, client)


@blueprint.route(route="approvals/{token}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
async def approval(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if req.method == "POST":
        return await approval_decide(req, client)
    return await approval_page(req, client)


async def consent_callback_page(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Summarise what Entra reported and offer the button that tells the onboarding; never acts."""
    query = {k: v for k, v in req.params.items() if isinstance(v, str)}
    try:
        state = query.get("state", "")
        if not state:
            raise Refused("This page expects the link Entra ID redirects to after admin consent (no state).")
        claims = _verify(state, {LinkPurpose.CONSENT})
        await _check_waiting(client, claims, CONSENT_WAIT)
    except Refused as refused:
        return _refusal(refused)
    error, description = _entra_error(query)
    hidden = {"state": state}
    if error:
        hidden["error"] = error
        if description:
            hidden["error_description"] = description
        return html(
            pages.form_page(
                "Admin consent was not granted",
                [
                    "Entra ID reported that admin consent was not granted. Report this to the onboarding so "
                    "that it stops and removes what it created."
                ],
                details={
                    "Error": error,
                    "Description": description or "(none)",
                    "Onboarding": claims.onboarding_id,
                },
                action="callback",
                hidden=hidden,
                buttons=[pages.Button("confirm", "Report that consent was declined")],
            )
        )
    return html(
        pages.form_page(
            "Admin consent granted",
            [
                "Entra ID reported that admin consent was granted. Press the button to let the onboarding "
                "continue; it checks the granted permissions with Microsoft Graph before going on."
            ],
            details={"Onboarding": claims.onboarding_id},
            action="callback",
            hidden=hidden,
            buttons=[pages.Button("confirm", "Continue the onboarding")],
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
        await _check_waiting(client, claims, CONSENT_WAIT)
        error, description = _entra_error(form)
        event = DecisionEvent(
            decision=Decision.DECLINED if error else Decision.CONSENTED,
            nonce=claims.nonce,
            error=error,
            error_description=description,
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
                "The onboarding continues. It confirms the permissions with Microsoft Graph, then sets up the "
                "mailboxes. You can close this page."
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
    log.info("onboarding %s: decision %s delivered", claims.onboarding_id, event.decision.value)


# -- approval pages (grant mode) ------------------------------------------------------------------


async def approval_page(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        claims = _verify(req.route_params.get("token", ""), APPROVAL_PURPOSES)
        status = await _check_waiting(client, claims, APPROVAL_WAIT)
    except Refused as refused:
        return _refusal(refused)
    request = status_view.stored_request(status)
    details = {"Onboarding": claims.onboarding_id}
    if request is not None:
        details.update(
            {
                "App name": request.display_name,
                "Protocols": ", ".join(p.value for p in request.protocols),
                "Mailboxes": str(len(request.mailboxes)),
                "Requester's reference": request.external_reference or "(none)",
                "Client secret lifetime": f"{request.secret_lifetime_days} days",
            }
        )
    allowed = DECISIONS[claims.purpose]
    buttons = [
        pages.Button(choice, label, name="decision", value=choice)
        for choice, label in (("approve", "Approve"), ("reject", "Reject"))
        if choice in allowed
    ]
    return html(
        pages.form_page(
            "Approve mailbox access for an app",
            [
                "An app asks for app-only IMAP/POP access to the mailboxes below. Approving grants the "
                "permissions and FullAccess on each mailbox; rejecting removes the app."
            ],
            details=details,
            action="",
            hidden={},
            buttons=buttons,
            note=f"This link is valid until {claims.expires_at:%Y-%m-%d %H:%M} UTC.",
        )
    )


async def approval_decide(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        claims = _verify(req.route_params.get("token", ""), APPROVAL_PURPOSES)
        choice = _form(req).get("decision", "")
        if choice not in ("approve", "reject"):
            raise Refused("The decision must be approve or reject.")
        if choice not in DECISIONS[claims.purpose]:
            raise Refused(f"This link does not allow the decision {choice!r}.", HTTPStatus.FORBIDDEN)
        await _check_waiting(client, claims, APPROVAL_WAIT)
        decision = Decision.APPROVED if choice == "approve" else Decision.REJECTED
        await _raise(client, claims, DecisionEvent(decision=decision, nonce=claims.nonce))
    except Refused as refused:
        return _refusal(refused)
    if decision is Decision.APPROVED:
        return html(pages.page("Approved", ["The onboarding continues. You can close this page."]))
    return html(
        pages.page("Rejected", ["The onboarding stops and removes what it created. You can close this page."])
    )
