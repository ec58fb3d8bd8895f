"""Conventions of the Bicep in infra/ (Azure Verified Modules style) and its security defaults."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.infra.conftest import INFRA, ROOT, Bicep, bicep_files

SECRET_NAME = re.compile(r"(?i)(secret|password|key(?!vault)|seed|token)")


def _resources(parsed: dict[str, Bicep], type_: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, tree in parsed.items():
        for name, resource in tree.get("resources", {}).items():
            if resource["type"].lower() == type_.lower():
                config = resource["config"]
                # A conditional or looped resource nests its body one level down.
                if "condition" in config and "config" in config:
                    config = config["config"]
                yield path, name, config


def _accessor(operands: dict[str, Any]) -> tuple[Any, Any]:
    return operands.get("operand_1"), operands.get("operand_2")


def test_every_bicep_file_parses(parsed: dict[str, Bicep]) -> None:
    assert set(parsed) == {str(path.relative_to(INFRA)) for path in bicep_files()}
    assert {"main.bicep", "app/function.bicep", "app/directory-permissions.bicep"} <= set(parsed)


def test_every_parameter_and_output_is_described(parsed: dict[str, Bicep]) -> None:
    undescribed = [
        f"{path}: {kind} {name}"
        for path, tree in parsed.items()
        for kind in ("parameters", "outputs")
        for name, item in tree.get(kind, {}).items()
        if not any(d["type"] == "description" and str(d["argument"]).strip() for d in item["decorators"])
    ]
    assert not undescribed


def test_secret_parameters_are_secure(parsed: dict[str, Bicep]) -> None:
    insecure = [
        f"{path}: {name}"
        for path, tree in parsed.items()
        for name, param in tree.get("parameters", {}).items()
        if param["type"] == "string"
        and SECRET_NAME.search(name)
        and not name.endswith(("Name", "Exists", "Uri"))
        and not any(d["type"] == "secure" for d in param["decorators"])
    ]
    assert not insecure


def test_role_assignment_names_are_guid_of_scope_principal_and_role(parsed: dict[str, Bicep]) -> None:
    found = list(_resources(parsed, "Microsoft.Authorization/roleAssignments"))
    assert len(found) >= 5  # blob, queue, table, Key Vault, telemetry
    for path, name, config in found:
        function = config["name"].get("function", {}) if isinstance(config["name"], dict) else {}
        assert function.get("type") == "guid", f"{path}: {name} is not named by guid(...)"
        scope_id, principal, role = list(function["parameters"].values())[:3]
        assert _accessor(scope_id["operator"]["operands"]) == (config["scope"], "id"), f"{path}: {name}"
        assert principal == "principalId", f"{path}: {name}"
        assert role == config["properties"]["roleDefinitionId"]["function"]["parameters"][
            "resource_name_1"
        ] or (role in json.dumps(config["properties"]["roleDefinitionId"])), (
            f"{path}: {name}: the guid's role is not the assigned role"
        )
        assert config["properties"]["principalType"] == "ServicePrincipal"


def test_no_shared_key_access_anywhere(parsed: dict[str, Bicep]) -> None:
    accounts = list(_resources(parsed, "Microsoft.Storage/storageAccounts"))
    assert accounts
    for path, name, config in accounts:
        properties = config["properties"]
        assert properties["allowSharedKeyAccess"] is False, f"{path}: {name}"
        assert properties["allowBlobPublicAccess"] is False, f"{path}: {name}"
        assert properties["minimumTlsVersion"] == "TLS1_2", f"{path}: {name}"
    for file in bicep_files():
        assert not re.search(r"allowSharedKeyAccess:\s*true", file.read_text(encoding="utf-8")), file


def test_key_vault_uses_rbac_soft_delete_and_purge_protection(parsed: dict[str, Bicep]) -> None:
    vaults = list(_resources(parsed, "Microsoft.KeyVault/vaults"))
    assert len(vaults) == 1
    properties = vaults[0][2]["properties"]
    assert properties["enableRbacAuthorization"] is True
    assert properties["enableSoftDelete"] is True
    assert properties["enablePurgeProtection"] is True
    assert "accessPolicies" not in properties


def test_identity_gets_only_the_secrets_and_certificates_officer_roles_and_the_delegation_on_the_vault(
    parsed: dict[str, Bicep],
) -> None:
    """Secrets Officer writes the hand-off secrets; Certificates Officer creates the certificates of
    certificate onboardings; and, for the mail product's access, the right to assign Key Vault Secrets
    User to service principals and no other role (a condition on the assignment). Nothing over keys."""
    vault_file = parsed["app/keyvault.bicep"]
    variables = vault_file["variables"]
    assignments = list(
        _resources({"app/keyvault.bicep": vault_file}, "Microsoft.Authorization/roleAssignments")
    )
    assert len(assignments) == 3
    assert variables["keyVaultSecretsOfficer"]["value"] == "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
    assert variables["keyVaultSecretsUser"]["value"] == "4633458b-17de-408a-b874-0445c86b69e6"
    assert variables["roleBasedAccessControlAdministrator"]["value"] == "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
    [(_, _, delegation)] = [a for a in assignments if "condition" in a[2]["properties"]]
    assert delegation["properties"]["conditionVersion"] == "2.0"
    source = (ROOT / "infra" / "app" / "keyvault.bicep").read_text(encoding="utf-8")
    condition = next(line for line in source.splitlines() if "onlySecretsUserForServicePrincipals =" in line)
    # Both the write and the delete are constrained, to the one role and to service principals.
    assert condition.count("GuidEquals {${keyVaultSecretsUser}}") == 2
    assert condition.count("StringEqualsIgnoreCase {\\'ServicePrincipal\\'}") == 2
    assert variables["keyVaultCertificatesOfficer"]["value"] == "a4417e6f-fecd-4de8-b567-7b0420556985"


def test_storage_roles_are_the_three_the_host_needs(parsed: dict[str, Bicep]) -> None:
    roles = parsed["app/storage.bicep"]["variables"]["roles"]["value"]
    assert set(roles.values()) == {
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",  # Storage Blob Data Owner
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",  # Storage Queue Data Contributor
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",  # Storage Table Data Contributor
    }


def test_function_app_runs_as_its_user_assigned_identity_only(parsed: dict[str, Bicep]) -> None:
    [(_, _, site)] = list(_resources(parsed, "Microsoft.Web/sites"))
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    properties = site["properties"]
    assert properties["httpsOnly"] is True
    assert properties["keyVaultReferenceIdentity"] == "identityId"
    config = properties["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "pythonVersion"}
    authentication = config["deployment"]["storage"]["authentication"]
    assert authentication == {"type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId"}
    [(_, _, plan)] = list(_resources(parsed, "Microsoft.Web/serverfarms"))
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert parsed["app/function.bicep"]["parameters"]["pythonVersion"]["default"] == "3.11"


def test_telemetry_uses_entra_authentication(parsed: dict[str, Bicep]) -> None:
    [(_, _, component)] = list(_resources(parsed, "Microsoft.Insights/components"))
    assert component["properties"]["DisableLocalAuth"] is True
    platform = parsed["app/function.bicep"]["variables"]["platformSettings"]["value"]
    assert "Authorization=AAD" in platform["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]


def test_link_signing_key_is_written_once(parsed: dict[str, Bicep]) -> None:
    """Re-provisioning must not rotate the key (every emailed link would break)."""
    resource = parsed["app/keyvault.bicep"]["resources"]["linkSigningKeySecret"]["config"]
    assert resource["condition"] == {
        "operator": {"type": "not", "operands": {"bool_value": "linkSigningKeyExists"}}
    }
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert parameters["linkSigningKeyExists"]["value"] == "${LINK_SIGNING_KEY_EXISTS=false}"


def test_graph_permissions_follow_the_consent_modes(parsed: dict[str, Bicep]) -> None:
    variables = parsed["main.bicep"]["variables"]
    assert variables["baseGraphAppRoles"]["value"] == ["Application.ReadWrite.OwnedBy"]
    grant = variables["grantModeAppRoles"]["value"]["operator"]["operands"]
    assert grant == {
        "condition": "enableGrantMode",
        "true_value": ["AppRoleAssignment.ReadWrite.All", "Application.Read.All"],
        "false_value": [],
    }
    mail = variables["mailAppRoles"]["value"]["operator"]["operands"]
    assert mail["true_value"] == ["Mail.Send"] and mail["false_value"] == []
    assert "applicationAccessPolicy" in json.dumps(mail["condition"])
    assert variables["exchangeAppRoles"]["value"] == ["Exchange.ManageAsApp"]
    assert parsed["main.bicep"]["parameters"]["enableGrantMode"]["default"] is False
    # Verified domains are read only when no explicit allow-list of admin domains is given.
    domains = variables["domainAppRoles"]["value"]["operator"]["operands"]
    assert domains["true_value"] == ["Domain.Read.All"] and domains["false_value"] == []
    assert "adminEmailDomains" in json.dumps(domains["condition"])


def test_graph_extension_is_configured(parsed: dict[str, Bicep]) -> None:
    text = (INFRA / "app" / "directory-permissions.bicep").read_text(encoding="utf-8")
    assert re.search(r"(?m)^extension microsoftGraphV1$", text)
    config = json.loads((INFRA / "bicepconfig.json").read_text(encoding="utf-8"))
    assert config["extensions"]["microsoftGraphV1"].startswith(
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:"
    )
    grants = parsed["app/directory-permissions.bicep"]["resources"]
    assert {resource["type"] for resource in grants.values() if not resource["existing"]} == {
        "Microsoft.Graph/appRoleAssignedTo"
    }


def test_cloud_presets_come_from_the_code_s_file(parsed: dict[str, Bicep]) -> None:
    clouds = json.loads((ROOT / "onboarding" / "clouds.json").read_text(encoding="utf-8"))
    presets = {name for name in clouds if not name.startswith("_")}
    [allowed] = [
        d["argument"]
        for d in parsed["main.bicep"]["parameters"]["azureCloud"]["decorators"]
        if d["type"] == "allowed"
    ]
    assert set(allowed) == presets | {""}
    assert "../onboarding/clouds.json" in json.dumps(parsed["main.bicep"]["variables"]["clouds"])
