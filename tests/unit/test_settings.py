from pathlib import Path

import pytest

from onboarding.errors import ConfigurationError
from onboarding.settings import SETTINGS, Settings

BASE = {
    "TENANT_ID": "11111111-1111-1111-1111-111111111111",
    "KEY_VAULT_URI": "https://vault.example.test",
    "MAIL_SENDER": "onboarding@contoso.test",
    "PUBLIC_BASE_URL": "https://func.example.test",
    "LINK_SIGNING_KEY": "k" * 40,
}


def test_public_cloud_defaults_come_from_the_cloud_preset():
    settings = Settings.from_env(BASE)
    assert settings.graph_endpoint.startswith("https://graph.")
    assert settings.exchange_scope == f"{settings.exchange_endpoint}/.default"
    assert settings.imap_port == 993 and settings.pop_port == 995


def test_national_cloud_changes_every_endpoint():
    public = Settings.from_env(BASE)
    usgov = Settings.from_env({**BASE, "AZURE_CLOUD": "AzureUSGovernment"})
    for attr in ("authority_host", "graph_endpoint", "exchange_endpoint", "imap_host", "pop_host"):
        assert getattr(public, attr) != getattr(usgov, attr)


def test_each_endpoint_can_be_overridden():
    settings = Settings.from_env({**BASE, "GRAPH_ENDPOINT": "https://127.0.0.1:8443/"})
    assert settings.graph_endpoint == "https://127.0.0.1:8443"


def test_every_problem_is_reported_by_name_at_once():
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(
            {"AZURE_CLOUD": "Moon", "IMAP_PORT": "x", "GRAPH_ENDPOINT": "http://graph.example.test"}
        )
    text = str(caught.value)
    for name in (
        "AZURE_CLOUD",
        "IMAP_PORT",
        "GRAPH_ENDPOINT",
        "TENANT_ID",
        "KEY_VAULT_URI",
        "LINK_SIGNING_KEY",
    ):
        assert name in text


def test_the_signing_key_never_shows_in_repr_or_errors():
    settings = Settings.from_env(BASE)
    assert "k" * 40 not in repr(settings)
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({**BASE, "LINK_SIGNING_KEY": "short-secret"})
    assert "short-secret" not in str(caught.value)


def test_every_declared_setting_is_used_by_from_env():
    names = {spec.name for spec in SETTINGS}
    source = Path("onboarding/settings.py").read_text(encoding="utf-8")
    for name in names:
        assert source.count(f'"{name}"') >= 2, f"{name} is declared but never read"


def test_an_unresolved_key_vault_reference_is_never_used_as_the_signing_key():
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.example.test/secrets/link-signing-key/)"
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({**BASE, "LINK_SIGNING_KEY": reference})
    assert "did not resolve" in str(caught.value)


def test_the_settings_reference_in_the_docs_is_current():
    from onboarding.settings import settings_table

    assert Path("docs/settings.md").read_text(encoding="utf-8") == settings_table(), (
        "regenerate with: .venv/bin/python -m onboarding.settings > docs/settings.md"
    )
