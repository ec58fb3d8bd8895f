"""Issue 14, item 7: only the project's own texts are stored and shown.

Graph answers a grant the identity may not make with 403 Authorization_RequestDenied, "Insufficient
privileges to complete the operation." (tests/sandbox/test_graph.py). That text used to reach the
stored step error, hence the status and the outcome email."""

from __future__ import annotations

import json
from typing import Any

import pytest

import activities
from onboarding import emails, steps
from onboarding.adapters.graph import GraphDirectory
from onboarding.domain import (
    EXCHANGE_ONLINE_APP_ID,
    ConsentMode,
    OnboardingRequest,
    OnboardingResult,
    Outcome,
    Protocol,
    StepError,
)
from onboarding.settings import Settings
from sandbox import Sandbox
from tests.adapters.conftest import RecordingSleep

GRAPH_TEXT = "Insufficient privileges"
ROLES = ["IMAP.AccessAsApp"]


async def test_a_graph_refusal_is_stored_and_mailed_in_the_projects_words_only(
    sb: Sandbox, settings: Settings, credential: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = GraphDirectory(settings, credential, sleep=RecordingSleep())
    resource = await graph.get_resource(EXCHANGE_ONLINE_APP_ID, ROLES)
    await graph.close()
    sb.set_identity_roles(graph=["Application.ReadWrite.OwnedBy"])  # no AppRoleAssignment.ReadWrite.All
    monkeypatch.setattr(activities, "load_settings", lambda: settings)

    reply = await activities._run(
        "grant_app_roles",
        lambda svc: steps.grant_app_roles(
            svc,
            service_principal_id=resource.service_principal_id,
            resource=resource,
            roles=ROLES,
        ),
    )

    stored = reply["error"]  # what the orchestration keeps: the status and the emails show it
    assert stored["code"] == "Authorization_RequestDenied"
    assert "may not assign the app role" in stored["message"]
    assert "AppRoleAssignment.ReadWrite.All" in stored["fix"]
    assert GRAPH_TEXT not in json.dumps(stored)
    request = OnboardingRequest(
        tenant_id=settings.tenant_id,
        display_name="Invoice scanner",
        protocols=(Protocol.IMAP,),
        mailboxes=("ceo@sandbox.example",),
        admin_emails=("admin@sandbox.example",),
        consent_mode=ConsentMode.GRANT,
    )
    error = StepError.from_json({**stored, "step": "admin_consent"})
    mail = emails.outcome(request, OnboardingResult("onb-1", Outcome.FAILED, error=error))
    assert "may not assign the app role" in mail.html
    assert GRAPH_TEXT not in mail.html
