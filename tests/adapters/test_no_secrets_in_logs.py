"""Whatever the adapters and the libraries under them log, at any level, carries no secret or token."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from onboarding import logcontext
from onboarding.adapters.exchange import ExchangeAdmin
from onboarding.adapters.graph import GraphDirectory
from onboarding.adapters.identity import acquire_token, app_secret_credential
from onboarding.adapters.keyvault import CredentialVault
from onboarding.adapters.mailprobe import probe_login
from onboarding.domain import EXCHANGE_ONLINE_APP_ID, Protocol
from onboarding.errors import OnboardingError
from onboarding.settings import Settings
from sandbox import Sandbox

ONBOARDING = "onb-" + "5" * 32


async def test_a_full_pass_logs_no_secret(
    sb: Sandbox, settings: Settings, credential: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logcontext.install(caplog.handler)  # the structured fields an activity's lines carry in Azure
    with logcontext.bound(ONBOARDING, "verify_login"):
        caught = await _full_pass(settings, credential)

    loggers = {r.name.split(".")[0] for r in caplog.records}
    assert {"azure", "httpx"} <= loggers  # the libraries' debug output was captured too
    # Every line of the product and its libraries carries the onboarding (the sandbox tenant's own
    # lines, logged in its server threads, stand for Microsoft's side and carry nothing).
    ours = [r for r in caplog.records if not r.name.startswith("sandbox")]
    assert [r.name for r in ours if getattr(r, "onboarding_id", None) != ONBOARDING] == []
    secrets = [*sb.state.issued_secrets(), *sb.state.issued_tokens()]
    assert len(secrets) > 3
    # Every field of every record (message, arguments, extra, onboarding_id, step...): the worker
    # sends the extra ones to Application Insights as customDimensions.
    logged = caplog.text + "".join(repr(vars(r)) for r in caplog.records)
    for secret in secrets:
        assert secret not in logged
        assert secret not in str(caught.value)


async def _full_pass(settings: Settings, credential: Any) -> pytest.ExceptionInfo[OnboardingError]:
    """Every adapter once, as an onboarding uses them, ending with a failure whose text Durable stores."""
    graph = GraphDirectory(settings, credential)
    exchange = ExchangeAdmin(settings, credential)
    vault = CredentialVault(settings, credential, polling_interval=0.05)
    resource = await graph.get_resource(EXCHANGE_ONLINE_APP_ID, ["IMAP.AccessAsApp"])
    app = await graph.upsert_application(
        unique_name="mail-onboarding-logs",
        display_name="Logs",
        resource=resource,
        resource_app_id=EXCHANGE_ONLINE_APP_ID,
        role_values=["IMAP.AccessAsApp"],
        redirect_uris=["https://func.example/cb"],
        notes="",
        tags=[],
    )
    sp = await graph.ensure_service_principal(app.app_id)
    await graph.assign_app_role(sp, resource.service_principal_id, resource.app_role_ids["IMAP.AccessAsApp"])
    new = await graph.add_password(app.object_id, "label", datetime.now(UTC) + timedelta(days=30))
    await vault.put("mail-app-logs", new.secret_text, content_type="t", expires_on=new.end_date_time, tags={})
    stored = await vault.get("mail-app-logs")
    assert stored is not None
    await exchange.ensure_service_principal(app.app_id, sp, "Logs")
    await exchange.grant_full_access("support@sandbox.example", sp)
    app_credential = app_secret_credential(settings, settings.tenant_id, app.app_id, stored.value)
    token = await acquire_token(app_credential, settings.exchange_scope)
    result = await probe_login(
        settings.imap_host, settings.imap_port, Protocol.IMAP, "support@sandbox.example", token.token
    )
    assert result.ok, result.detail
    wrong = app_secret_credential(settings, settings.tenant_id, app.app_id, new.secret_text + "x")
    with pytest.raises(OnboardingError) as caught:  # and a failure whose text is stored by Durable
        await acquire_token(wrong, settings.exchange_scope)
    for closeable in (graph, exchange, vault, app_credential, wrong):
        await closeable.close()
    return caught
