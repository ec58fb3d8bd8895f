"""A Logic Apps HTTP action with the asynchronous pattern gets the final result of a real onboarding.

The client below follows the documented rules and nothing else: POST; while the answer is 202, wait
``Retry-After`` seconds and GET the ``Location`` exactly as given (absolute), with the same credentials;
the first answer that is not 202 is the action's result (Microsoft Learn, "Asynchronous Request-Reply
pattern" and "Call external HTTP or HTTPS endpoints from workflows", asynchronous request-response
behavior). Time passes on the host's manual clock, so honouring ``Retry-After`` costs no real time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

import httpx

from tests.e2e.conftest import Tenant


@dataclass
class LogicAppsHttpAction:
    http: httpx.Client  # carries the action's authentication, sent again on every poll
    wait: Callable[[int], None]
    polls: list[tuple[int, int]] = field(default_factory=list)  # (status, Retry-After) per 202

    def run(self, url: str, body: dict, between_polls: Callable[[httpx.Response], None]) -> httpx.Response:
        response = self.http.post(url, json=body)
        while response.status_code == 202:
            location = response.headers["Location"]
            assert urlsplit(location).scheme in {"http", "https"}, "Location must be absolute"
            retry_after = int(response.headers["Retry-After"])
            self.polls.append((response.status_code, retry_after))
            between_polls(response)
            self.wait(retry_after)
            response = self.http.get(location)
        return response


def test_a_logic_apps_client_polls_a_real_onboarding_to_its_final_result(
    tenant_factory: Callable[..., Tenant],
) -> None:
    tenant = tenant_factory(manual_clock=True)
    clock = tenant.clock
    assert clock is not None

    def wait(seconds: int) -> None:
        clock.advance(timedelta(seconds=seconds))
        tenant.host.idle()

    consented: list[str] = []

    def admin_acts_meanwhile(response: httpx.Response) -> None:
        view = response.json()
        waiting = (view.get("waitingFor") or {}).get("kind") == "admin_consent"
        mailed = view.get("app") and any(view["app"]["appId"] in m.html for m in tenant.mails_to_admin())
        if waiting and mailed and not consented:
            tenant.consent(accept=True)
            consented.append(view["id"])

    action = LogicAppsHttpAction(tenant.http, wait)
    body = tenant.request(externalReference="INC-42")
    result = action.run(f"{tenant.host.base_url}/api/v1/onboardings", body, admin_acts_meanwhile)

    assert result.status_code == 200
    view = result.json()
    assert view["status"] == "succeeded" and consented == [view["id"]]
    assert view["externalReference"] == "INC-42"
    assert {r["mailbox"]: r["state"] for r in view["mailboxes"]["results"]} == {
        m: "verified" for m in body["mailboxes"]
    }
    assert view["secret"]["latestSecretUri"].endswith(f"/secrets/{view['secret']['name']}")
    # It waited on the service's terms: several polls, each after the Retry-After it was given.
    assert len(action.polls) >= 2 and {retry for _, retry in action.polls} == {10}
