"""Issue 14, item 3: the tenant's sender mailbox serves the tenant only.

Before: five POSTs in one second, each naming 20 outside addresses as admins, made the tenant's own
mailbox send 100 emails outside, and an app and a secret were created for each."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.e2e.conftest import Tenant

OUTSIDE = [f"victim{i}@evil.example" for i in range(20)]


def test_outside_admin_addresses_are_refused_before_anything_is_created(
    tenant_factory: Callable[..., Tenant],
) -> None:
    tenant = tenant_factory()
    for admins in (OUTSIDE, ["it-admin@sandbox.example", "it-admin@unverified.sandbox.example"]):
        response = tenant.http.post("/api/onboardings", json=tenant.request(adminEmails=admins))
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["type"].endswith("admin-outside-tenant")
        outside = [a for a in admins if not a.endswith("@sandbox.example")]
        assert [e["field"] for e in problem["errors"]] == [f"/adminEmails/{admins.index(a)}" for a in outside]
    assert tenant.live_apps() == [] and tenant.live_secrets() == []
    assert tenant.sandbox.state.outbox() == []
    # The tenant's verified domains came from Graph, read with Domain.Read.All.
    assert any(e.service == "graph" and "/domains" in e.path for e in tenant.sandbox.state.request_log())


def test_an_explicit_allow_list_of_admin_domains_replaces_the_verified_domains(
    tenant_factory: Callable[..., Tenant],
) -> None:
    tenant = tenant_factory(extra_env={"ADMIN_EMAIL_DOMAINS": "partner.example"})
    refused = tenant.http.post("/api/onboardings", json=tenant.request())  # sandbox.example: not listed
    assert refused.status_code == 422
    accepted = tenant.http.post("/api/onboardings", json=tenant.request(adminEmails=["it@partner.example"]))
    assert accepted.status_code == 202, accepted.text
    tenant.wait(accepted.headers["location"], lambda v: (v.get("waitingFor") or {}).get("kind") is not None)
    give_up = time.monotonic() + 30
    while not tenant.sandbox.state.outbox() and time.monotonic() < give_up:
        if not tenant.skip_to_next_timer():  # under the realistic profile, replication takes minutes
            time.sleep(0.05)
    assert [m.to for m in tenant.sandbox.state.outbox()] == [["it@partner.example"]]


def test_an_onboarding_burst_is_cut_off_by_the_requesters_rate_limit(
    tenant_factory: Callable[..., Tenant],
) -> None:
    tenant = tenant_factory(extra_env={"ONBOARDINGS_PER_REQUESTER_PER_HOUR": "2"})
    answers = [tenant.http.post("/api/onboardings", json=tenant.request()) for _ in range(5)]
    assert [a.status_code for a in answers] == [202, 202, 429, 429, 429]
    assert answers[2].headers["Retry-After"]
    assert answers[2].json()["type"].endswith("rate-limited")
    for answer in answers[:2]:
        tenant.wait_for_decision(answer.headers["location"])
    assert len(tenant.live_apps()) == 2
    assert len(tenant.sandbox.state.outbox()) == 2  # one consent request per admitted onboarding
