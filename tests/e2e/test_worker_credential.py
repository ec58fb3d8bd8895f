"""One managed-identity credential per worker: the function app's tokens are fetched once per
resource for a whole onboarding, not once per activity (fewer round trips on the critical path, and
no throttling of the identity endpoint); the onboarded app's own credential is never shared."""

from __future__ import annotations

import math
from collections.abc import Callable

from sandbox.tokens import TOKEN_LIFETIME
from tests.e2e.conftest import Tenant

MAILBOXES = tuple(f"user{n:02d}@sandbox.example" for n in range(10))


def test_a_ten_mailbox_onboarding_fetches_the_identitys_token_once_per_resource(
    tenant_factory: Callable[..., Tenant],
) -> None:
    tenant = tenant_factory(mailboxes=MAILBOXES)
    started = tenant.clock.now() if tenant.clock is not None else None
    location = tenant.submit(consentMode="grant", mailboxes=list(MAILBOXES))
    tenant.wait_for_decision(location)
    tenant.admin_opens("approve-link").press("approve")
    view = tenant.finished(location, timeout=120)
    assert view["status"] == "succeeded", view

    log = tenant.sandbox.state.request_log()
    token_requests = [e for e in log if e.service == "identity"]
    # The resources the function app called as itself (the log keeps no query, so no scope: count
    # the services its identity's tokens were presented to).
    me = tenant.sandbox.env["AZURE_CLIENT_ID"]
    resources = {e.service for e in log if e.caller_app_id == me and e.service != "identity"}
    assert resources >= {"graph", "exchange", "keyvault"}
    # A token is fetched again only once it runs out (an hour, sandbox/tokens.py): on the realistic
    # profile's clock the onboarding spans hours of propagation, so once per resource per hour.
    hours = 1
    if started is not None and tenant.clock is not None:
        hours = math.ceil((tenant.clock.now() - started) / TOKEN_LIFETIME)
    assert 0 < len(token_requests) <= len(resources) * hours, (len(token_requests), sorted(resources), hours)
