import json
from pathlib import Path
from urllib.parse import urlsplit

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


def test_the_previous_link_key_is_accepted_only_when_set_and_resolved():
    assert Settings.from_env(BASE).link_verification_keys == (b"k" * 40,)
    rotated = Settings.from_env({**BASE, "LINK_SIGNING_KEY_PREVIOUS": "p" * 40})
    assert rotated.link_verification_keys == (b"k" * 40, b"p" * 40)
    assert "p" * 40 not in repr(rotated)
    # The reference to a secret that was deleted after the rotation window stays unresolved: no key.
    gone = "@Microsoft.KeyVault(SecretUri=https://kv.example.test/secrets/link-signing-key-previous/)"
    assert Settings.from_env({**BASE, "LINK_SIGNING_KEY_PREVIOUS": gone}).link_verification_keys == (
        b"k" * 40,
    )
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({**BASE, "LINK_SIGNING_KEY_PREVIOUS": "short-old-key"})
    assert "LINK_SIGNING_KEY_PREVIOUS" in str(caught.value) and "short-old-key" not in str(caught.value)


def test_the_settings_reference_in_the_docs_is_current():
    from onboarding.settings import settings_table

    assert Path("docs/settings.md").read_text(encoding="utf-8") == settings_table(), (
        "regenerate with: .venv/bin/python -m onboarding.settings > docs/settings.md"
    )


ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted(k for k in json.loads((ROOT / "onboarding" / "clouds.json").read_text()) if k[0] != "_")


@pytest.mark.parametrize("cloud", PRESETS)
def test_each_cloud_preset_resolves_every_endpoint(cloud: str) -> None:
    settings = Settings.from_env({**BASE, "AZURE_CLOUD": cloud})
    assert settings.cloud == cloud
    for url in (settings.authority_host, settings.graph_endpoint, settings.exchange_endpoint):
        assert url.startswith("https://") and urlsplit(url).hostname
    exchange_host = urlsplit(settings.exchange_endpoint).hostname
    assert settings.imap_host == settings.pop_host == exchange_host  # IMAP/POP ride the Exchange host
    assert settings.exchange_scope == f"{settings.exchange_endpoint}/.default"
    assert settings.token_endpoint("t").startswith(settings.authority_host)


def test_the_presets_cover_gcc_high_dod_and_each_has_its_own_graph() -> None:
    assert {"AzurePublicCloud", "AzureUSGovernment", "AzureUSGovernmentDoD", "AzureChinaCloud"} <= set(
        PRESETS
    )
    graphs = [Settings.from_env({**BASE, "AZURE_CLOUD": c}).graph_endpoint for c in PRESETS]
    assert len(set(graphs)) == len(PRESETS)


def test_dod_differs_from_gcc_high_where_microsoft_365_does_and_only_there() -> None:
    gcc_high = Settings.from_env({**BASE, "AZURE_CLOUD": "AzureUSGovernment"})
    dod = Settings.from_env({**BASE, "AZURE_CLOUD": "AzureUSGovernmentDoD"})
    assert dod.authority_host == gcc_high.authority_host  # one sign-in for both
    # ... and one issuer of v1 tokens, which infra/main.bicep reads from every preset.
    assert dod.token_issuer_v1_host == gcc_high.token_issuer_v1_host == "https://sts.windows.net"
    for attr in ("graph_endpoint", "exchange_endpoint", "imap_host", "pop_host"):
        assert getattr(dod, attr) != getattr(gcc_high, attr)


def test_each_setting_default_is_written_once_in_the_settings_declaration() -> None:
    import dataclasses

    from onboarding.domain import WorkflowOptions
    from onboarding.settings import SETTINGS, Settings

    declared = {spec.name.lower() for spec in SETTINGS if spec.default is not None}
    settings_fields = {f.name: f for f in dataclasses.fields(Settings)}
    restated = [
        name
        for name in declared & set(settings_fields)
        if settings_fields[name].default is not dataclasses.MISSING
        or settings_fields[name].default_factory is not dataclasses.MISSING
    ]
    assert restated == []
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(WorkflowOptions))


def test_an_orchestration_input_without_options_runs_with_the_declared_defaults() -> None:
    from onboarding.domain import OnboardingInput
    from onboarding.settings import Settings, default_workflow_options

    minimal = Settings.from_env(
        {
            "TENANT_ID": "11111111-1111-1111-1111-111111111111",
            "KEY_VAULT_URI": "https://vault.example.test",
            "MAIL_SENDER": "onboarding@contoso.test",
            "PUBLIC_BASE_URL": "https://func.example.test",
            "LINK_SIGNING_KEY": "k" * 40,
        }
    )
    assert minimal.workflow_options() == default_workflow_options()
    assert default_workflow_options().consent_deadline_hours == 120
    raw = {
        "onboarding_id": "onb-1",
        "request": {
            "tenant_id": "t",
            "display_name": "d",
            "protocols": ["IMAP"],
            "mailboxes": ["a@x.test"],
            "admin_emails": ["b@x.test"],
        },
    }
    assert OnboardingInput.from_json(raw).options == default_workflow_options()
