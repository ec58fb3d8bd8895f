"""Recording mode: the product's adapters against a real tenant, every exchange saved as a redacted
fixture for the contract test (docs/recordings.md).

Runs only with ``LIVE_RECORD_DIR`` set, besides the live suite's own settings. The adapters act as the
function app would, with an app registration holding the managed identity's permissions
(``LIVE_CLIENT_ID`` / ``LIVE_CLIENT_SECRET``: Graph Application.ReadWrite.OwnedBy,
AppRoleAssignment.ReadWrite.All and Application.Read.All, Exchange.ManageAsApp with the Exchange
Administrator Entra role, Key Vault Secrets Officer on ``LIVE_KEY_VAULT_URI``; docs/deploy.md). The scenario makes
one app, grants it IMAP/POP and FullAccess on the first of ``LIVE_MAILBOXES``, logs in, and removes it
all again; waits for replication and propagation up to ``LIVE_RECORD_PATIENCE_MINUTES`` (default 90).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from onboarding.settings import Settings
from tests.contract import scenario
from tests.contract.recording import Recorder, Redactor

pytestmark = pytest.mark.live

RECORD_SETTINGS = ("LIVE_RECORD_DIR", "LIVE_CLIENT_ID", "LIVE_CLIENT_SECRET", "LIVE_KEY_VAULT_URI")
MISSING = [name for name in RECORD_SETTINGS if not os.environ.get(name)]


def live_settings() -> Settings:
    """The product's settings for the live tenant; what the scenario does not use gets a stand-in."""
    env = {
        "TENANT_ID": os.environ["LIVE_TENANT_ID"],
        "AZURE_CLOUD": os.environ.get("LIVE_AZURE_CLOUD", "AzurePublicCloud"),
        "KEY_VAULT_URI": os.environ["LIVE_KEY_VAULT_URI"],
        "MAIL_SENDER": os.environ["LIVE_ADMIN_EMAIL"],  # not used: the scenario sends no email
        "PUBLIC_BASE_URL": os.environ["LIVE_FUNCTION_BASE_URL"],  # not used: no consent link
        "LINK_SIGNING_KEY": secrets.token_urlsafe(32),  # not used: no signed link
    }
    return Settings.from_env(env)


@pytest.mark.skipif(
    bool(MISSING), reason=f"recording mode is off ({', '.join(MISSING)} unset; docs/recordings.md)"
)
async def test_record_one_onboardings_traffic_with_the_real_services():
    from azure.identity.aio import ClientSecretCredential

    settings = live_settings()
    directory = Path(os.environ["LIVE_RECORD_DIR"])
    made = scenario.Made(
        tenant_id=settings.tenant_id, mailbox=os.environ["LIVE_MAILBOXES"].split(",")[0].strip()
    )
    client_secret = os.environ["LIVE_CLIENT_SECRET"]
    redactor = Redactor(aliases={os.environ["LIVE_CLIENT_ID"]: "{function_app_id}"}, secrets=[client_secret])
    recorder = Recorder(
        directory,
        {
            "entra": settings.authority_host,
            "graph": settings.graph_endpoint,
            "exchange": settings.exchange_endpoint,
            "keyvault": settings.key_vault_uri,
        },
        redactor,
    )

    def learn(m: scenario.Made) -> None:
        redactor.aliases.update(m.aliases())
        redactor.secrets[:] = [client_secret, *m.secrets]

    credential = ClientSecretCredential(
        settings.tenant_id, os.environ["LIVE_CLIENT_ID"], client_secret, authority=settings.authority_host
    )
    patience = float(os.environ.get("LIVE_RECORD_PATIENCE_MINUTES", "90")) * 60
    try:
        with recorder.install():
            await scenario.run(
                settings,
                credential,
                made,
                suffix=secrets.token_hex(4),
                patience_s=patience,
                on_progress=learn,
            )
    finally:
        await credential.close()
    assert made.logins == {"IMAP": True, "POP": True}, made.logins
    assert any(directory.glob("*.json"))
