"""Write ``openapi/connector.swagger.json``: the Swagger 2.0 definition of a Logic Apps / Power Automate
custom connector, made from the version 1 operations of ``openapi/openapi.yaml``.

Custom connectors import OpenAPI 2.0 only, so the 3.1 document (the source of truth) is translated:
``components/schemas`` become ``definitions``, nullable types (``[T, 'null']``, ``oneOf`` with
``null``) become ``T`` with ``x-nullable``, ``const`` becomes a one-value ``enum``, request bodies
become a ``body`` parameter. Then the connector's annotations are added (Microsoft Learn, "Create a
custom connector with an OpenAPI extension"): ``summary``, ``description``, ``x-ms-summary``,
``x-ms-visibility``, and for the webhook trigger ``x-ms-trigger`` and ``x-ms-notification-url``.
Connectors follow a 202 answer's ``Location`` (honouring ``Retry-After``) on their own; that page lists
no extension for it, so the asynchronous operations say so with their 202 response and headers.

    .venv/bin/python openapi/connector.py          # rewrite the file
    .venv/bin/python openapi/connector.py --check  # exit 1 when the file is stale (tests do this)
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "openapi.yaml"
TARGET = HERE / "connector.swagger.json"
PREFIX = "/api/v1"
# Placeholder host: the importer replaces it with the function app's host name (docs/integrations.md).
HOST = "onboarding.contoso.com"
# Operation id in the 3.1 document -> (connector operationId, visibility).
OPERATIONS = {
    "startOnboarding": ("StartOnboarding", "important"),
    "getOnboarding": ("GetOnboarding", "important"),
    "listOnboardings": ("ListOnboardings", "advanced"),
    "cancelOnboarding": ("CancelOnboarding", "advanced"),
    "offboardOnboarding": ("OffboardOnboarding", "advanced"),
    "rotateOnboardingSecret": ("RotateOnboardingSecret", "advanced"),
    "retryOnboardingMailboxes": ("RetryOnboardingMailboxes", "advanced"),
    "addOnboardingMailboxes": ("AddOnboardingMailboxes", "advanced"),
    "onboardingCompletedTrigger": ("OnboardingCompleted", "important"),
}
TRIGGER = "onboardingCompletedTrigger"
_SKIP = {"examples", "example", "links", "deprecated", "tags"}


def title(name: str) -> str:
    """``externalReference`` -> ``External Reference`` (x-ms-summary is title case)."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").split()
    return " ".join(w[:1].upper() + w[1:] for w in words).replace("Url", "URL").replace("Id", "ID")


def schema2(schema: Any) -> Any:
    """A 3.1 schema as a Swagger 2.0 one (recursively), with x-ms-summary on every property."""
    if isinstance(schema, list):
        return [schema2(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SKIP:
            continue
        if key == "$ref":
            out[key] = value.replace("#/components/schemas/", "#/definitions/")
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out["type"] = types[0]
            if "null" in value:
                out["x-nullable"] = True
        elif key == "const":
            out["enum"] = [value]
        elif key == "oneOf" and any(s == {"type": "null"} for s in value):
            [other] = [s for s in value if s != {"type": "null"}]
            out.update(schema2(other))
            out["x-nullable"] = True
        elif key == "properties":
            out[key] = {name: {**schema2(p), "x-ms-summary": title(name)} for name, p in value.items()}
        else:
            out[key] = schema2(value)
    return out


def _responses(doc: dict[str, Any], responses: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for code, response in responses.items():
        if "$ref" in response:
            response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        item: dict[str, Any] = {"description": response["description"]}
        content = response.get("content", {})
        json_schema = (content.get("application/json") or content.get("application/problem+json") or {}).get(
            "schema"
        )
        if json_schema:
            item["schema"] = schema2(json_schema)
        if response.get("headers"):
            item["headers"] = {
                name: {"type": "string", "description": _header(doc, header).get("description", name)}
                for name, header in response["headers"].items()
            }
        out[code] = item
    return out


def _header(doc: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in header:
        return dict(doc["components"]["headers"][header["$ref"].rsplit("/", 1)[1]])
    return header


def _parameters(doc: dict[str, Any], path_item: dict[str, Any], operation: dict[str, Any]) -> list[Any]:
    params = []
    for param in [*path_item.get("parameters", []), *operation.get("parameters", [])]:
        if "$ref" in param:
            param = doc["components"]["parameters"][param["$ref"].rsplit("/", 1)[1]]
        schema = schema2(param["schema"])
        item = {
            "name": param["name"],
            "in": param["in"],
            "required": param.get("required", False),
            "description": param.get("description", ""),
            "x-ms-summary": title(param["name"]),
            **{k: v for k, v in schema.items() if k not in {"x-nullable", "description"}},
        }
        if param["in"] == "query":
            item["x-ms-visibility"] = "advanced"
        params.append(item)
    body = operation.get("requestBody")
    if body:
        if "$ref" in body:
            body = doc["components"]["requestBodies"][body["$ref"].rsplit("/", 1)[1]]
        params.append(
            {
                "name": "body",
                "in": "body",
                "required": True,
                "schema": schema2(body["content"]["application/json"]["schema"]),
            }
        )
    return params


def _trigger_definition(definitions: dict[str, Any]) -> dict[str, Any]:
    """The request of the trigger: the same fields, ``callbackUrl`` filled by the connector."""
    request = copy.deepcopy(definitions["OnboardingRequest"])
    request["required"] = [*request["required"], "callbackUrl"]
    request["properties"]["callbackUrl"].update(
        {"x-ms-notification-url": True, "x-ms-visibility": "internal"}
    )
    return request


def build(doc: dict[str, Any]) -> dict[str, Any]:
    definitions = {name: schema2(s) for name, s in doc["components"]["schemas"].items()}
    definitions["OnboardingTriggerRequest"] = _trigger_definition(definitions)
    paths: dict[str, Any] = {}
    for path, path_item in doc["paths"].items():
        for method, operation in path_item.items():
            if method == "parameters" or operation.get("operationId") not in OPERATIONS:
                continue
            op_id = operation["operationId"]
            connector_id, visibility = OPERATIONS[op_id]
            out: dict[str, Any] = {
                "operationId": connector_id,
                "summary": operation["summary"],
                "description": " ".join(operation.get("description", operation["summary"]).split()),
                "x-ms-visibility": visibility,
                "parameters": _parameters(doc, path_item, operation),
                "responses": _responses(doc, operation["responses"]),
            }
            if op_id == TRIGGER:
                out["x-ms-trigger"] = "single"
                out["parameters"][-1]["schema"] = {"$ref": "#/definitions/OnboardingTriggerRequest"}
            paths.setdefault(path.removeprefix(PREFIX), {})[method] = out
    return {
        "swagger": "2.0",
        "info": {
            "title": doc["info"]["title"],
            "version": doc["info"]["version"],
            "description": "Register an Entra ID app for app-only IMAP/POP access to Exchange Online "
            "mailboxes. Long-running: start answers 202 and the connector polls the status until it is final.",
        },
        "host": HOST,
        "basePath": PREFIX,
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
        },
        "security": [{"functionKey": []}],
        "paths": paths,
        "definitions": definitions,
    }


def render() -> str:
    return json.dumps(build(yaml.safe_load(SOURCE.read_text(encoding="utf-8"))), indent=2) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if TARGET.read_text(encoding="utf-8") == text else 1)
    TARGET.write_text(text, encoding="utf-8")
