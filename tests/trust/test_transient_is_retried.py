"""A service's transient failure must reach Durable as a transient failure (the activity raises, so
Durable retries it), never as a permanent error that ends the onboarding. Found by the 50-onboarding
fault run (docs/trust.md, "Found"): each test below pins one path that broke there."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import activities
from onboarding import activity_names as A
from onboarding import contracts as C
from sandbox import Sandbox, SandboxConfig
from tests.trust.test_activities_twice import activity_functions

OUTAGE_SECONDS = 9.0


@pytest.fixture
def sandbox_config(tmp_path: Path) -> SandboxConfig:
    return SandboxConfig(base_dir=tmp_path / "sandbox")


async def test_an_exchange_http_500_is_retried_not_reported_as_a_refused_cmdlet(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    """Exchange answers a server error with HTTP 500 and an error body; the body is no cmdlet
    refusal. Before fe23069 the adapter read any error text as ``CmdletError`` (permanent) before it
    looked at the status, so one 500 failed every mailbox of the batch for good."""
    grant = activity_functions()[A.GRANT_MAILBOXES]
    sandbox.faults.exchange.configure(error_rate=1.0, errors=(500,))
    with pytest.raises(activities.ActivityFailed):
        payload = C.GrantMailboxes(
            service_principal_id="00000000-0000-0000-0000-000000000001",
            mailboxes=("support@sandbox.example",),
            protocols=("IMAP",),
        )
        reply = await grant(payload.to_json())
        pytest.fail(f"a transient Exchange failure was reported as final: {reply}")


async def test_a_managed_identity_token_outage_during_a_graph_call_is_retried(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    """The managed identity endpoint answers 503 for a while: the token for Graph cannot be had
    now. Before fe23069 ``graph_error`` saw azure-identity's ``ClientAuthenticationError`` (not a
    Graph ``APIError``) and reported a permanent "Failed to ... (ClientAuthenticationError)"."""
    resolve = activity_functions()[A.RESOLVE_EXCHANGE]
    sandbox.faults.identity.configure(error_rate=1.0, errors=(503,), retry_after=0)
    # Long enough for azure-identity's own retries to give up once (about 6 s), short enough for
    # the adapter's retries to outlast it.
    outage = threading.Timer(OUTAGE_SECONDS, sandbox.faults.identity.reset)
    outage.start()
    try:
        reply = await resolve(C.ResolveExchange(roles=("IMAP.AccessAsApp",)).to_json())
    except activities.ActivityFailed:
        reply = {"raised": "ActivityFailed"}  # also fine: Durable retries it
    finally:
        outage.cancel()
    assert "error" not in reply, f"a token outage was reported as final: {reply}"
    identity = [e for e in sandbox.state.request_log() if e.service == "identity"]
    assert identity[0].status == 503 and identity[-1].status == 200
