"""The recording scenario: the product's own adapters, driven step by step through one onboarding's
calls against a tenant, then undone. tests/live/test_record.py runs it against a real tenant with the
recorder on; tests/contract/test_recording.py runs the same code against the sandbox, so the
scenario and the recorder are tested before anyone points them at a real tenant.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from onboarding.adapters.exchange import ExchangeAdmin
from onboarding.adapters.graph import GraphDirectory
from onboarding.adapters.identity import app_secret_credential
from onboarding.adapters.keyvault import CredentialVault
from onboarding.adapters.mailprobe import probe_login
from onboarding.domain import EXCHANGE_ONLINE_APP_ID, Protocol
from onboarding.errors import TransientError
from onboarding.settings import Settings

T = TypeVar("T")
ROLES = ("IMAP.AccessAsApp", "POP.AccessAsApp")
TAG = "mail-onboarding-recording"


@dataclass
class Made:
    """What the scenario created, by real id: the recorder's placeholders, and what cleanup removes."""

    tenant_id: str
    mailbox: str
    app_id: str = ""
    app_object_id: str = ""
    sp_id: str = ""
    exchange_sp: str = ""  # Exchange Online's service principal in this tenant
    secret_name: str = ""
    secrets: list[str] = field(default_factory=list, repr=False)
    logins: dict[str, bool] = field(default_factory=dict)

    def aliases(self) -> dict[str, str]:
        pairs = {
            self.tenant_id: "{tenant}",
            self.app_id: "{app_id}",
            self.app_object_id: "{app_object_id}",
            self.sp_id: "{sp_id}",
            self.exchange_sp: "{exchange_sp}",
            EXCHANGE_ONLINE_APP_ID: "{exchange_app_id}",
            self.mailbox: "{mailbox}",
            self.secret_name: "{secret_name}",
        }
        return {real: placeholder for real, placeholder in pairs.items() if real}


async def patiently(call: Callable[[], Awaitable[T]], patience_s: float, step_s: float) -> T:
    """Retry a call that reports replication or propagation (TransientError) for up to ``patience_s``."""
    give_up = time.monotonic() + patience_s
    while True:
        try:
            return await call()
        except TransientError:
            if time.monotonic() >= give_up:
                raise
            await asyncio.sleep(step_s)


async def run(
    settings: Settings,
    credential: Any,
    made: Made,
    *,
    suffix: str,
    patience_s: float = 0.0,
    step_s: float = 15.0,
    on_progress: Callable[[Made], None] = lambda _: None,
) -> Made:
    """Register an app, its service principal, a secret in Key Vault, the IMAP/POP app roles, the
    Exchange registration and FullAccess on one mailbox, log in over IMAP and POP; then undo it all."""
    graph = GraphDirectory(settings, credential)
    exchange = ExchangeAdmin(settings, credential, tenant_id=made.tenant_id)
    vault = CredentialVault(settings, credential)
    try:
        resource = await graph.get_resource(EXCHANGE_ONLINE_APP_ID, ROLES)
        made.exchange_sp = resource.service_principal_id
        app = await graph.upsert_application(
            unique_name=f"{TAG}-{suffix}",
            display_name=f"Recording {suffix}",
            resource=resource,
            resource_app_id=EXCHANGE_ONLINE_APP_ID,
            role_values=ROLES,
            redirect_uris=[],
            notes="Made by the live recording scenario (tests/live/test_record.py); removed at its end.",
            tags=[TAG],
        )
        made.app_id, made.app_object_id = app.app_id, app.object_id
        on_progress(made)
        try:
            await _onboard(settings, made, graph, exchange, vault, resource, patience_s, step_s, on_progress)
        finally:
            await _undo(made, graph, exchange, vault)
    finally:
        for adapter in (graph, exchange, vault):
            await adapter.close()
    return made


async def _onboard(
    settings: Settings,
    made: Made,
    graph: GraphDirectory,
    exchange: ExchangeAdmin,
    vault: CredentialVault,
    resource: Any,
    patience_s: float,
    step_s: float,
    on_progress: Callable[[Made], None],
) -> None:
    made.sp_id = await patiently(lambda: graph.ensure_service_principal(made.app_id), patience_s, step_s)
    expires = datetime.now(UTC) + timedelta(days=1)
    password = await patiently(
        lambda: graph.add_password(made.app_object_id, "recording", expires), patience_s, step_s
    )
    made.secrets.append(password.secret_text)
    made.secret_name = f"{TAG}-{made.app_id}"
    on_progress(made)
    await vault.put(
        made.secret_name,
        json.dumps({"clientId": made.app_id, "clientSecret": password.secret_text}),
        content_type="application/json",
        expires_on=expires,
        tags={"purpose": TAG},
    )
    for role in ROLES:
        await patiently(
            lambda r=role: graph.assign_app_role(
                made.sp_id, resource.service_principal_id, resource.app_role_ids[r]
            ),
            patience_s,
            step_s,
        )
    await graph.list_app_role_assignments(made.sp_id)
    await patiently(
        lambda: exchange.ensure_service_principal(
            made.app_id, made.sp_id, f"Recording {made.app_id}", app_object_id=made.app_object_id
        ),
        patience_s,
        step_s,
    )
    await exchange.grant_full_access(made.mailbox, made.sp_id)
    await exchange.protocols_enabled(made.mailbox)
    await _log_in(settings, made, password.secret_text, patience_s, step_s)


async def _log_in(settings: Settings, made: Made, secret: str, patience_s: float, step_s: float) -> None:
    """IMAP and POP logins with the app's own token, until they work or patience runs out (roles in
    tokens and FullAccess take minutes: every refused attempt is recorded too)."""
    credential = app_secret_credential(settings, made.tenant_id, made.app_id, secret)
    try:
        give_up = time.monotonic() + patience_s
        targets = {
            Protocol.IMAP: (settings.imap_host, settings.imap_port),
            Protocol.POP: (settings.pop_host, settings.pop_port),
        }
        while True:
            token = (await credential.get_token(settings.exchange_scope)).token
            for protocol, (host, port) in targets.items():
                if not made.logins.get(protocol.value):
                    result = await probe_login(host, port, protocol, made.mailbox, token)
                    made.logins[protocol.value] = result.ok
            if all(made.logins.values()) or time.monotonic() >= give_up:
                return
            await asyncio.sleep(step_s)
    finally:
        await credential.close()


async def _undo(made: Made, graph: GraphDirectory, exchange: ExchangeAdmin, vault: CredentialVault) -> None:
    """Remove what was made, each step on its own so one failure leaves the rest to be removed."""
    steps: list[Callable[[], Awaitable[Any]]] = []
    if made.sp_id:
        steps.append(lambda: exchange.remove_full_access(made.mailbox, made.sp_id))
        steps.append(lambda: exchange.remove_service_principal(made.app_id))
    if made.secret_name:
        steps.append(lambda: vault.delete(made.secret_name))
    steps.append(lambda: graph.delete_application(made.app_object_id))
    problems = []
    for step in steps:
        try:
            await step()
        except Exception as exc:  # report all, after trying all
            problems.append(f"{type(exc).__name__}: {exc}")
    if problems:
        raise RuntimeError("cleanup left something behind: " + "; ".join(problems))
