"""The app settings in infra/ and the settings the code reads (onboarding.settings.SETTINGS) agree.

Every setting the code reads is set; every setting set is read by the code or is a documented
platform setting; secret settings are Key Vault references, never values.
"""

from __future__ import annotations

import json
import re
from typing import Any

from onboarding.settings import SETTINGS
from tests.infra.conftest import INFRA, ROOT, Bicep

# Settings the Functions platform reads, not our code (docs/deploy.md lists them).
PLATFORM_PREFIXES = (
    "AzureWebJobsStorage__",
    "APPLICATIONINSIGHTS_",
    "FUNCTIONS_",
    "WEBSITE_",
    "AzureFunctionsJobHost__",  # host.json overrides (the Durable backend choice)
    "DURABLE_TASK_SCHEDULER_",  # the scheduler's connection, read by the Durable extension
)
KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(SecretUri=\$\{[^}]+\}\)$")
# Settings whose value in main.bicep is a plain quoted literal: NAME: 'value'
LITERAL = re.compile(r"^\s+([A-Z][A-Z0-9_]+): '([^'$]*)'\s*$", re.MULTILINE)


def _code_settings() -> dict[str, Any]:
    return {spec.name: spec for spec in SETTINGS}


def _bicep_settings(parsed: dict[str, Bicep]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(settings for the code from main.bicep, site-derived ones, platform ones) as parsed values.

    Platform settings include the Durable Task Scheduler ones, which only that backend sets.
    """
    app = parsed["main.bicep"]["variables"]["appSettings"]["value"]
    function = parsed["app/function.bicep"]["variables"]
    site = function["siteSettings"]["value"]
    platform = {**function["platformSettings"]["value"], **function["schedulerSettings"]["value"]}
    return app, site, platform


def test_function_app_gets_every_setting_group(parsed: dict[str, Bicep]) -> None:
    union = parsed["app/function.bicep"]["resources"]["settings"]["config"]["properties"]
    assert union["function"]["type"] == "union"
    assert list(union["function"]["parameters"].values()) == [
        "platformSettings",
        "backendSettings",
        "appSettings",
        "siteSettings",
    ]
    assert parsed["main.bicep"]["modules"]["function"]["config"]["params"]["appSettings"] == "appSettings"


def test_every_setting_the_code_reads_is_set(parsed: dict[str, Bicep]) -> None:
    app, site, _ = _bicep_settings(parsed)
    assert set(_code_settings()) - (set(app) | set(site)) == set()


def test_every_setting_set_is_read_or_platform(parsed: dict[str, Bicep]) -> None:
    app, site, platform = _bicep_settings(parsed)
    assert (set(app) | set(site)) - set(_code_settings()) == set()
    assert [name for name in platform if not name.startswith(PLATFORM_PREFIXES)] == []
    assert set(platform).isdisjoint(set(app) | set(site))


def test_secret_settings_are_key_vault_references(parsed: dict[str, Bicep]) -> None:
    app, site, platform = _bicep_settings(parsed)
    every = {**platform, **app, **site}
    secrets = [spec.name for spec in SETTINGS if spec.secret]
    assert secrets, "expected at least LINK_SIGNING_KEY"
    for name in secrets:
        assert isinstance(every[name], str) and KEY_VAULT_REFERENCE.match(every[name]), name
    # No other setting looks like a secret being passed in plain.
    for name in every:
        if name not in secrets:
            assert not re.search(r"(?i)(secret|password|signing)", name), name


def test_identity_based_host_storage(parsed: dict[str, Bicep]) -> None:
    _, _, platform = _bicep_settings(parsed)
    assert platform["AzureWebJobsStorage__credential"] == "managedidentity"
    for service in ("blob", "queue", "table"):
        assert f"AzureWebJobsStorage__{service}ServiceUri" in platform
    assert "AzureWebJobsStorage__clientId" in platform
    assert "AzureWebJobsStorage" not in platform  # a connection string would carry a key


def test_literal_values_match_the_code_defaults() -> None:
    text = (INFRA / "main.bicep").read_text(encoding="utf-8")
    block = text[text.index("var appSettings = {") :]
    block = block[: block.index("\n}\n")]
    specs = _code_settings()
    literals = dict(LITERAL.findall(block))
    assert literals, "expected literal settings such as IMAP_PORT"
    for name, value in literals.items():
        default = specs[name].default
        assert default is None or value == default, (
            f"{name}: infra sets {value!r}, the code defaults to {default!r}"
        )


def test_cloud_endpoints_come_from_the_cloud_preset(parsed: dict[str, Bicep]) -> None:
    app, _, _ = _bicep_settings(parsed)
    clouds = json.loads((ROOT / "onboarding" / "clouds.json").read_text(encoding="utf-8"))
    preset_names = {name for preset in clouds.values() if isinstance(preset, dict) for name in preset}
    assert preset_names
    # Azure Resource Manager is the vault's, so the deployment's own cloud: the Microsoft 365 preset
    # may name another (docs/deploy.md, "National clouds"). Its preset value is the code's default.
    assert app["RESOURCE_MANAGER_ENDPOINT"] == {
        "function": {"type": "environment", "property_name": "resourceManager"}
    }
    for name in preset_names - {"RESOURCE_MANAGER_ENDPOINT"}:
        value = app[name]
        assert value == {
            "operator": {"type": "property_accessor", "operands": {"operand_1": "cloud", "operand_2": name}}
        }, name
