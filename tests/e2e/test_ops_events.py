"""The operational events the alert rules count are written once per onboarding, with its id."""

from __future__ import annotations

import re
from datetime import datetime

from tests.e2e.conftest import Tenant


def _events(tenant: Tenant, event: str) -> list[dict[str, str]]:
    """The fields of each ``event`` line the run logged, parsed as the alert queries parse them."""
    found = []
    for source, text in tenant.evidence.texts:
        if source.startswith("log ") and text.startswith(event + " "):
            found.append(dict(re.findall(r"(?:^| )([a-z_]+)=(\S+)", text)))
    return found


def test_a_rejected_onboarding_logs_its_wait_and_its_outcome_once_despite_replays(tenant: Tenant):
    location = tenant.submit(consentMode="grant")
    onboarding_id = location.rstrip("/").rsplit("/", 1)[-1]
    tenant.wait_for_decision(location)
    admin = tenant.admin_opens("reject-link")
    admin.press("reject")
    view = tenant.finished(location)
    assert view["status"] == "rejected"

    [waiting] = _events(tenant, "onboarding.waiting")
    assert waiting["onboarding_id"] == onboarding_id
    assert waiting["kind"] == "admin_approval"
    assert datetime.fromisoformat(waiting["deadline"]) > datetime.fromisoformat(view["createdAt"])
    # The orchestrator replays after every step; the line is written on the first pass only.
    [finished] = _events(tenant, "onboarding.finished")
    assert finished["onboarding_id"] == onboarding_id
    assert finished["outcome"] == "rejected"
    assert finished["step"] == "admin_consent"
    assert _events(tenant, "callback.given_up") == []
