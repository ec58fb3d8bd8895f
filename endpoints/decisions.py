"""Pages a tenant admin reaches from Entra or from an email, and the admin's sign-in.

The signed link routes the admin to the right decision; it does not authorise it. A decision is
accepted only from a user signed in with Entra ID (``/api/signin``, see ``onboarding.signin``) who
may make it: a user of this tenant holding an approver role, in the approver group if one is set,
and not the requester. The decision binds the mailbox list the page showed (its digest).

GET only ever shows a page (mail scanners and link previews follow links with GET); the decision is
a form POST, which re-verifies everything (link, wait, sign-in, the form's own token, the list)
before raising the decision event. A refused request changes nothing and gets a page that says why.

- ``/api/consent/callback``: Entra's redirect after admin consent. ``state`` is a ``consent`` link
  token; ``tenant`` is never trusted and the orchestration confirms the grant through Graph anyway.
  After Entra's consent, the signed-in admin confirms the mailbox list here before any FullAccess.
- ``/api/approvals/{token}``: grant mode. ``decide`` tokens offer Approve and Reject; ``approve`` and
  ``reject`` tokens offer only their own decision.
- ``/api/signin`` and ``/api/signin/callback``: the OpenID Connect code flow with PKCE (MSAL).
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from endpoints.registry import blueprint

# The triggers only: what they run (endpoints/decision_pages.py) is imported inside each on its first call,
# so the worker's start does not compile it (onboarding/lazy.py).


@blueprint.route(route="signin", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def signin_start(req: func.HttpRequest) -> func.HttpResponse:
    """Start the OpenID Connect code flow (MSAL: state, nonce, PKCE) and keep it in the cookie."""
    from endpoints import decision_pages

    return await decision_pages.signin_start(req)


@blueprint.route(route="signin/callback", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def signin_callback(req: func.HttpRequest) -> func.HttpResponse:
    """Entra's redirect: redeem the code, check the ID token, and keep who signed in (never a token)."""
    from endpoints import decision_pages

    return await decision_pages.signin_callback(req)


@blueprint.route(route="consent/callback", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
async def consent_callback(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from endpoints import decision_pages

    return await decision_pages.consent_callback(req, client)


@blueprint.route(route="approvals/{token}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
async def approval(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from endpoints import decision_pages

    return await decision_pages.approval(req, client)
