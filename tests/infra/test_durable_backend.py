"""The two Durable backends: for each choice, host.json, the app settings and the Bicep agree.

azureStorage: host.json as it is (no storageProvider: the Azure Storage provider over
AzureWebJobsStorage, which is identity-based). durableTaskScheduler: app settings override
host.json's storageProvider (``AzureFunctionsJobHost__`` + the JSON path with ``__`` per level) and
point it at a connection string naming the scheduler endpoint and the user-assigned identity; Bicep
creates that scheduler, a task hub named like host.json's hub, and the identity's data role on it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.infra.conftest import ROOT, Bicep

OVERRIDE = "AzureFunctionsJobHost__"
DURABLE_TASK_DATA_CONTRIBUTOR = "0ad04412-c4d5-4796-b79c-f76d14c8d402"


def _host_json() -> dict[str, Any]:
    return json.loads((ROOT / "host.json").read_text(encoding="utf-8"))


def _effective_host_json(settings: dict[str, Any]) -> dict[str, Any]:
    """host.json as the Functions host sees it with these app settings (overrides applied)."""
    host = _host_json()
    for name, value in settings.items():
        if not name.startswith(OVERRIDE):
            continue
        *path, leaf = name[len(OVERRIDE) :].split("__")
        node = host
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = value
    return host


def _function_vars(parsed: dict[str, Bicep]) -> dict[str, Any]:
    return parsed["app/function.bicep"]["variables"]


def test_the_choice_is_one_parameter_defaulting_to_azure_storage(parsed: dict[str, Bicep]) -> None:
    parameter = parsed["main.bicep"]["parameters"]["durableBackend"]
    assert parameter["default"] == "azureStorage"
    [allowed] = [d["argument"] for d in parameter["decorators"] if d["type"] == "allowed"]
    assert allowed == ["azureStorage", "durableTaskScheduler"]
    given = json.loads((ROOT / "infra" / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert given["durableBackend"]["value"] == "${DURABLE_BACKEND=azureStorage}"
    use = parsed["main.bicep"]["variables"]["useScheduler"]["value"]
    assert use == {
        "operator": {
            "type": "equals",
            "operands": {"operand_1": "durableBackend", "operand_2": "durableTaskScheduler"},
        }
    }


def test_azure_storage_choice_runs_on_host_json_and_host_storage(parsed: dict[str, Bicep]) -> None:
    durable = _host_json()["extensions"]["durableTask"]
    # No storageProvider: the default, Azure Storage over AzureWebJobsStorage.
    assert "storageProvider" not in durable
    platform = _function_vars(parsed)["platformSettings"]["value"]
    assert platform["AzureWebJobsStorage__credential"] == "managedidentity"
    # No scheduler, and no override, unless the scheduler is chosen.
    module = parsed["main.bicep"]["modules"]["durableTask"]["config"]
    assert module["condition"] == "useScheduler"
    endpoint = parsed["main.bicep"]["modules"]["function"]["config"]["params"]["durableTaskSchedulerEndpoint"]
    operands = endpoint["operator"]["operands"]
    assert operands["condition"] == "useScheduler" and operands["false_value"] == ""
    backend = _function_vars(parsed)["backendSettings"]["value"]["operator"]["operands"]
    assert backend["true_value"] == {} and backend["false_value"] == "schedulerSettings"
    assert "durableTaskSchedulerEndpoint" in json.dumps(backend["condition"])
    assert _effective_host_json({}) == _host_json()


def test_scheduler_choice_settings_turn_host_json_into_the_azure_managed_provider(
    parsed: dict[str, Bicep],
) -> None:
    settings = _function_vars(parsed)["schedulerSettings"]["value"]
    effective = _effective_host_json(settings)["extensions"]["durableTask"]
    provider = effective["storageProvider"]
    assert provider["type"] == "azureManaged"
    connection = provider["connectionStringName"]
    assert connection == "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"
    # The setting it names exists, with the endpoint and the user-assigned identity's client id.
    assert settings[connection] == (
        "Endpoint=${durableTaskSchedulerEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}"
    )
    # The rest of host.json's durableTask section still applies (hub name, concurrency, tracing).
    original = _host_json()["extensions"]["durableTask"]
    assert {k: v for k, v in effective.items() if k != "storageProvider"} == original
    # Every override names a path that host.json has, bar the one leaf it adds.
    for name in settings:
        if name.startswith(OVERRIDE):
            assert name[len(OVERRIDE) :].startswith("extensions__durableTask__storageProvider__"), name


def test_scheduler_bicep_matches_the_settings(parsed: dict[str, Bicep]) -> None:
    tree = parsed["app/durabletask.bicep"]
    resources = tree["resources"]
    assert resources["scheduler"]["type"] == "Microsoft.DurableTask/schedulers"
    hub = resources["taskHub"]
    assert hub["type"] == "Microsoft.DurableTask/schedulers/taskHubs"
    assert hub["config"]["parent"] == "scheduler" and hub["config"]["name"] == "taskHubName"
    # The task hub is the one host.json names (the Azure Storage backend uses the same name).
    hub_name = _host_json()["extensions"]["durableTask"]["hubName"]
    assert re.fullmatch(r"[a-zA-Z0-9-]{3,64}", hub_name), "the scheduler's task hub name rule"
    main_hub = parsed["main.bicep"]["variables"]["durableTaskHubName"]["value"]
    assert "../host.json" in json.dumps(main_hub) and "hubName" in json.dumps(main_hub)
    assert parsed["main.bicep"]["modules"]["durableTask"]["config"]["config"]["params"]["taskHubName"] == (
        "durableTaskHubName"
    )
    # The identity may use that hub: Durable Task Data Contributor, scoped to the hub.
    assert tree["variables"]["durableTaskDataContributor"]["value"] == DURABLE_TASK_DATA_CONTRIBUTOR
    role = resources["dataContributor"]["config"]
    assert role["scope"] == "taskHub"
    assert role["properties"]["principalId"] == "principalId"
    # The endpoint the connection string uses is the scheduler's own.
    output = json.dumps(tree["outputs"]["endpoint"]["value"])
    assert re.search(r'"scheduler".*"properties".*"endpoint"', output), output
    endpoint = parsed["main.bicep"]["modules"]["function"]["config"]["params"]["durableTaskSchedulerEndpoint"]
    assert "durableTask" in json.dumps(endpoint["operator"]["operands"]["true_value"])
    # An empty allow list denies all traffic: the default must let the app in.
    assert tree["parameters"]["ipAllowlist"]["default"]
