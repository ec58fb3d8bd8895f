"""azd wiring: azure.yaml, the parameter file, host.json, and the hook scripts' behaviour.

The hooks run for real (bash) against a stand-in ``az``/``azd`` (fake_az.py) that keeps state, so
the tests show what an admin would see and that a second run changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.conftest import INFRA, INFRA_PYTHON, ROOT, Bicep

HOOKS = ROOT / "scripts" / "azd"
PUBLIC_CLOUD = json.loads((ROOT / "onboarding" / "clouds.json").read_text())["AzurePublicCloud"]
GRAPH = "00000003-0000-0000-c000-000000000000"
EXCHANGE = "00000002-0000-0ff1-ce00-000000000000"
EXCHANGE_ADMIN = "29232cdf-9323-42fd-ade2-1d097af3e4de"
PRINCIPAL = "11111111-1111-1111-1111-111111111111"


def test_azure_yaml_points_at_infra_and_the_python_function_app() -> None:
    config = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert config["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert (ROOT / config["infra"]["path"] / f"{config['infra']['module']}.bicep").is_file()
    [(name, service)] = config["services"].items()
    assert service["language"] == "python" and service["host"] == "function"
    project = ROOT / service["project"]
    for required in ("function_app.py", "host.json", "requirements.txt"):
        assert (project / required).is_file(), required
    # The Bicep tags the function app with this service name, which is how azd finds it.
    function = (INFRA / "main.bicep").read_text(encoding="utf-8")
    assert f"serviceName: '{name}'" in function


def test_hooks_exist_are_executable_and_parse() -> None:
    config = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    scripts = [ROOT / hook["posix"]["run"] for hook in config["hooks"].values()]
    scripts.append(HOOKS / "grant-directory-permissions.sh")
    for script in scripts:
        assert script.is_file(), script
        assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
        assert script.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")
        subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)


def test_parameter_file_matches_main_bicep(parsed: dict[str, Bicep]) -> None:
    declared = parsed["main.bicep"]["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(given) <= set(declared)
    required = {name for name, param in declared.items() if param.get("default") is None}
    assert required <= set(given), "azd must be able to fill every parameter without a default"
    assert given["mailSender"]["value"] == "${MAIL_SENDER}"


def test_host_json_keeps_inputs_and_outputs_out_of_telemetry() -> None:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["version"] == "2.0"
    assert re.fullmatch(r"\[4\.\*, 5\.0\.0\)", host["extensionBundle"]["version"])
    durable = host["extensions"]["durableTask"]
    assert durable["hubName"]
    assert durable["maxConcurrentActivityFunctions"] >= 1
    # Durable Functions 2.x reads these under "tracing"; at the top level they would be ignored.
    assert durable["tracing"] == {"traceInputsAndOutputs": False, "traceReplayEvents": False}
    assert "traceInputsAndOutputs" not in durable


def test_host_and_worker_both_export_opentelemetry(parsed: dict[str, Bicep]) -> None:
    """The host in OpenTelemetry mode and the worker exporting its own logs go together: the host alone
    would still get the worker's lines as plain messages, the worker alone would export every line twice
    (once itself, once through the host)."""
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["telemetryMode"] == "OpenTelemetry"
    settings = parsed["main.bicep"]["variables"]["appSettings"]["value"]
    assert settings["PYTHON_ENABLE_OPENTELEMETRY"] == "true"


# --- hook scripts against a stand-in az/azd -------------------------------------------------


def _service_principal(app_id: str, roles: dict[str, str]) -> dict[str, Any]:
    return {
        "id": f"sp-{app_id[:8]}",
        "appRoles": [
            {"id": role_id, "value": value, "allowedMemberTypes": ["Application"]}
            for value, role_id in roles.items()
        ]
        + [{"id": "delegated-only", "value": "Mail.Send", "allowedMemberTypes": ["User"]}],
    }


class Hooks:
    def __init__(self, tmp_path: Path) -> None:
        self.state_path = tmp_path / "state.json"
        self.log_path = tmp_path / "calls.jsonl"
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for program in ("az", "azd"):
            shim = self.bin / program
            fake = Path(__file__).with_name("fake_az.py")
            shim.write_text(f'#!/bin/sh\nFAKE_PROGRAM={program} exec "{INFRA_PYTHON}" "{fake}" "$@"\n')
            shim.chmod(0o755)
        self.state: dict[str, Any] = {
            "graph": PUBLIC_CLOUD["GRAPH_ENDPOINT"] + "/",
            "servicePrincipals": {
                GRAPH: _service_principal(
                    GRAPH,
                    {
                        "Application.ReadWrite.OwnedBy": "role-owned-by",
                        "AppRoleAssignment.ReadWrite.All": "role-assign",
                        "Application.Read.All": "role-read-apps",
                        "Mail.Send": "role-mail-send",
                    },
                ),
                EXCHANGE: _service_principal(EXCHANGE, {"Exchange.ManageAsApp": "role-manage-as-app"}),
            },
            "assignments": [],
            "directoryRoles": [],
            "resources": [],
        }
        self.env = {
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "FAKE_AZ_STATE": str(self.state_path),
            "FAKE_AZ_LOG": str(self.log_path),
            "MANAGED_IDENTITY_PRINCIPAL_ID": PRINCIPAL,
            "MANAGED_IDENTITY_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
            "MANAGED_IDENTITY_NAME": "id-func-test",
            "GRAPH_APP_ROLES": "Application.ReadWrite.OwnedBy",
            "EXCHANGE_APP_ROLES": "Exchange.ManageAsApp",
            "DIRECTORY_PERMISSIONS_DECLARED": "false",
            "MAIL_SENDER": "onboarding@contoso.example",
            "MAIL_SEND_SCOPING": "rbacForApplications",
        }

    def run(self, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        self.state_path.write_text(json.dumps(self.state))
        self.log_path.write_text("")
        result = subprocess.run(
            [str(HOOKS / script), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        self.state = json.loads(self.state_path.read_text())
        return result

    def calls(self, predicate: Callable[[dict[str, Any]], bool] = lambda call: True) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [call for call in map(json.loads, lines) if predicate(call)]

    def writes(self) -> list[dict[str, Any]]:
        return self.calls(
            lambda c: c["program"] == "az" and "--method" in c["args"] and "get" not in c["args"]
        )

    def stored(self) -> list[list[str]]:
        return [
            c["args"] for c in self.calls(lambda c: c["program"] == "azd" and c["args"][:2] == ["env", "set"])
        ]


@pytest.fixture
def hooks(tmp_path: Path) -> Hooks:
    return Hooks(tmp_path)


def test_first_provision_lets_the_template_create_the_signing_key(hooks: Hooks) -> None:
    result = hooks.run("preprovision.sh")
    assert result.returncode == 0, result.stderr
    assert hooks.stored() == [
        ["env", "set", "LINK_SIGNING_KEY_EXISTS", "false"],
        ["env", "set", "API_FUNCTION_KEY_EXISTS", "false"],
    ]


def test_reprovision_keeps_the_existing_signing_key(hooks: Hooks) -> None:
    env = {"AZURE_KEY_VAULT_NAME": "kv-x", "AZURE_RESOURCE_GROUP": "rg-x", "AZURE_SUBSCRIPTION_ID": "sub"}
    hooks.state["resources"] = [
        "/subscriptions/sub/resourceGroups/rg-x/providers/Microsoft.KeyVault/vaults/kv-x/secrets/link-signing-key"
    ]
    result = hooks.run("preprovision.sh", **env)
    assert result.returncode == 0, result.stderr
    assert hooks.stored() == [
        ["env", "set", "LINK_SIGNING_KEY_EXISTS", "true"],
        ["env", "set", "API_FUNCTION_KEY_EXISTS", "false"],
    ]


def test_reprovision_keeps_the_existing_api_function_key(hooks: Hooks) -> None:
    """A new API key would lock out every caller: an existing one is left alone."""
    env = {"AZURE_KEY_VAULT_NAME": "kv-x", "AZURE_RESOURCE_GROUP": "rg-x", "AZURE_SUBSCRIPTION_ID": "sub"}
    vault = "/subscriptions/sub/resourceGroups/rg-x/providers/Microsoft.KeyVault/vaults/kv-x/secrets"
    hooks.state["resources"] = [f"{vault}/link-signing-key", f"{vault}/api-function-key"]
    result = hooks.run("preprovision.sh", **env)
    assert result.returncode == 0, result.stderr
    assert hooks.stored() == [
        ["env", "set", "LINK_SIGNING_KEY_EXISTS", "true"],
        ["env", "set", "API_FUNCTION_KEY_EXISTS", "true"],
    ]


def test_a_deleted_signing_key_is_created_again(hooks: Hooks) -> None:
    env = {"AZURE_KEY_VAULT_NAME": "kv-x", "AZURE_RESOURCE_GROUP": "rg-x", "AZURE_SUBSCRIPTION_ID": "sub"}
    result = hooks.run("preprovision.sh", **env)
    assert result.returncode == 0, result.stderr
    assert hooks.stored() == [
        ["env", "set", "LINK_SIGNING_KEY_EXISTS", "false"],
        ["env", "set", "API_FUNCTION_KEY_EXISTS", "false"],
    ]


def test_unknown_signing_key_state_stops_provisioning(hooks: Hooks) -> None:
    """An expired login must not be mistaken for 'absent': that would overwrite the key."""
    env = {"AZURE_KEY_VAULT_NAME": "kv-x", "AZURE_RESOURCE_GROUP": "rg-x", "AZURE_SUBSCRIPTION_ID": "sub"}
    hooks.state["resourceError"] = "AADSTS700082: The refresh token has expired. Run 'az login'."
    result = hooks.run("preprovision.sh", **env)
    assert result.returncode == 1
    assert "cannot tell whether link-signing-key exists" in result.stderr
    assert hooks.stored() == []


def test_check_mode_reports_missing_grants_with_reasons_and_changes_nothing(hooks: Hooks) -> None:
    result = hooks.run("grant-directory-permissions.sh", "--check")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "+ Microsoft Graph Application.ReadWrite.OwnedBy" in result.stdout
    assert "+ Office 365 Exchange Online Exchange.ManageAsApp" in result.stdout
    assert "+ Entra role Exchange Administrator" in result.stdout
    assert result.stdout.count("  why: ") == 3
    assert hooks.writes() == []


def test_admin_run_grants_everything_once(hooks: Hooks) -> None:
    first = hooks.run("grant-directory-permissions.sh", "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    granted = {
        (a["resourceId"], a["appRoleId"]) for a in hooks.state["assignments"] if a["principalId"] == PRINCIPAL
    }
    assert granted == {(f"sp-{GRAPH[:8]}", "role-owned-by"), (f"sp-{EXCHANGE[:8]}", "role-manage-as-app")}
    assert hooks.state["directoryRoles"] == [
        {"principalId": PRINCIPAL, "roleDefinitionId": EXCHANGE_ADMIN, "directoryScopeId": "/"}
    ]

    second = hooks.run("grant-directory-permissions.sh", "--yes")
    assert second.returncode == 0, second.stdout + second.stderr
    assert hooks.writes() == []
    assert second.stdout.count("already") == 3
    assert "All Entra ID permissions are in place." in second.stdout


def test_grant_mode_adds_only_the_app_role_assignment_permissions(hooks: Hooks) -> None:
    result = hooks.run(
        "grant-directory-permissions.sh",
        "--yes",
        GRAPH_APP_ROLES="Application.ReadWrite.OwnedBy,AppRoleAssignment.ReadWrite.All,Application.Read.All",
    )
    assert result.returncode == 0, result.stderr
    roles = {a["appRoleId"] for a in hooks.state["assignments"]}
    assert roles == {"role-owned-by", "role-assign", "role-read-apps", "role-manage-as-app"}


def test_permissions_no_longer_needed_are_reported_and_pruned_on_request(hooks: Hooks) -> None:
    hooks.state["assignments"] = [
        {"id": "old", "principalId": PRINCIPAL, "resourceId": f"sp-{GRAPH[:8]}", "appRoleId": "role-assign"}
    ]
    reported = hooks.run("grant-directory-permissions.sh", "--yes")
    assert (
        "- Microsoft Graph AppRoleAssignment.ReadWrite.All is granted but no longer needed" in reported.stdout
    )
    assert any(a["id"] == "old" for a in hooks.state["assignments"])

    pruned = hooks.run("grant-directory-permissions.sh", "--yes", "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert not any(a["id"] == "old" for a in hooks.state["assignments"])


def test_mail_send_scoping_commands_name_the_sender_and_identity(hooks: Hooks) -> None:
    rbac = hooks.run("grant-directory-permissions.sh", "--check")
    assert (
        'New-ManagementScope -Name "Mail onboarding sender" -RecipientRestrictionFilter "PrimarySmtpAddress -eq \'onboarding@contoso.example\'"'
        in rbac.stdout
    )
    assert f'-App {PRINCIPAL} -Role "Application Mail.Send"' in rbac.stdout

    policy = hooks.run(
        "grant-directory-permissions.sh", "--check", MAIL_SEND_SCOPING="applicationAccessPolicy"
    )
    assert "New-ApplicationAccessPolicy -AppId 22222222-2222-2222-2222-222222222222" in policy.stdout
    assert "-AccessRight RestrictAccess" in policy.stdout


def test_without_a_terminal_nothing_is_granted_unasked(hooks: Hooks) -> None:
    result = hooks.run("grant-directory-permissions.sh")
    assert result.returncode == 1
    assert "re-run with --yes" in result.stdout
    assert hooks.writes() == []


def test_deploy_guide_names_every_azd_variable_and_live_setting() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    given = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    variables = {m for p in given.values() for m in re.findall(r"\$\{([A-Z_]+)", p["value"])}
    automatic = {"AZURE_ENV_NAME", "AZURE_LOCATION", "LINK_SIGNING_KEY_EXISTS", "API_FUNCTION_KEY_EXISTS"}
    missing = [name for name in sorted(variables - automatic) if f"`{name}`" not in guide]
    assert not missing, f"docs/deploy.md does not explain {missing}"
    for name in (
        "LIVE_TENANT_ID",
        "LIVE_FUNCTION_BASE_URL",
        "LIVE_FUNCTION_KEY",
        "LIVE_MAILBOXES",
        "LIVE_ADMIN_EMAIL",
    ):
        assert f"`{name}`" in guide, name


def test_the_deployment_package_leaves_out_everything_but_the_app():
    from pathlib import Path

    ignored = {
        line.strip() for line in Path(".funcignore").read_text().splitlines() if line and line[0] != "#"
    }
    for path in (
        ".venv/",
        ".venv-infra/",
        "tests/",
        "sandbox/",
        "funchost/",
        "bench/",
        "infra/",
        "scripts/",
        ".azure/",
        "local.settings.json",
        "demo/",
    ):
        assert path in ignored, f"{path} would be deployed"
    for shipped in (
        "activities/",
        "endpoints/",
        "orchestrations/",
        "onboarding/",
        "openapi/",
        "function_app.py",
    ):
        assert shipped not in ignored
