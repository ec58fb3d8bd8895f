"""The custom connector's Swagger 2.0 definition: valid, annotated, and in step with the 3.1 document."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

OPENAPI = Path(__file__).resolve().parents[2] / "openapi"
SWAGGER = json.loads((OPENAPI / "connector.swagger.json").read_text(encoding="utf-8"))
DOC = yaml.safe_load((OPENAPI / "openapi.yaml").read_text(encoding="utf-8"))
METHODS = {"get", "post", "put", "patch", "delete"}


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("connector", OPENAPI / "connector.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def v1_operations() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path.removeprefix("/api/v1")): op
        for path, item in DOC["paths"].items()
        if path.startswith("/api/v1/")
        for method, op in item.items()
        if method in METHODS
    }


def swagger_operations() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): op
        for path, item in SWAGGER["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def fields(document: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """Property names of a schema, following $ref within its own document."""
    while "$ref" in schema:
        *_, kind, name = schema["$ref"].split("/")
        schema = (document["definitions"] if kind == "definitions" else document["components"][kind])[name]
    props = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        props |= fields(document, part)
    return props


def resolve(kind: str, ref_or_item: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in ref_or_item:
        return dict(DOC["components"][kind][ref_or_item["$ref"].rsplit("/", 1)[1]])
    return ref_or_item


def test_the_connector_validates_as_swagger_2_and_the_validator_catches_3_1_constructs() -> None:
    validate(SWAGGER, cls=OpenAPIV2SpecValidator)
    broken = copy.deepcopy(SWAGGER)
    broken["definitions"]["StatusView"]["properties"]["app"] = {
        "oneOf": [{"type": "null"}, {"type": "object"}]
    }
    with pytest.raises(OpenAPIValidationError, match="oneOf"):
        validate(broken, cls=OpenAPIV2SpecValidator)


def test_the_connector_file_is_what_the_generator_makes_from_the_3_1_document() -> None:
    assert (OPENAPI / "connector.swagger.json").read_text(encoding="utf-8") == _generator().render(), (
        "run: .venv/bin/python openapi/connector.py"
    )


def test_the_connector_has_the_same_operations_and_fields_as_the_3_1_document() -> None:
    ours, theirs = v1_operations(), swagger_operations()
    assert set(ours) == set(theirs)
    for key, op in ours.items():
        connector = theirs[key]
        assert connector["operationId"].lower() == op["operationId"].lower().removesuffix("trigger"), key
        assert set(connector["responses"]) == set(op["responses"]), key
        params = [
            resolve("parameters", p)
            for p in [*DOC["paths"]["/api/v1" + key[1]].get("parameters", []), *op.get("parameters", [])]
        ]
        assert {p["name"] for p in connector["parameters"] if p["in"] != "body"} == {
            p["name"] for p in params
        }, key
        body = [p for p in connector["parameters"] if p["in"] == "body"]
        if "requestBody" in op:
            request = resolve("requestBodies", op["requestBody"])["content"]["application/json"]["schema"]
            assert fields(SWAGGER, body[0]["schema"]) == fields(DOC, request), key
        else:
            assert body == [], key
        for code, response in op["responses"].items():
            content = resolve("responses", response).get("content", {})
            media = content.get("application/json") or content.get("application/problem+json")
            if media:
                assert fields(SWAGGER, connector["responses"][code]["schema"]) == fields(
                    DOC, media["schema"]
                ), (key, code)
    for name, schema in DOC["components"]["schemas"].items():
        assert fields(SWAGGER, {"$ref": f"#/definitions/{name}"}) == fields(DOC, schema), name


def test_every_operation_and_field_carries_the_connector_annotations() -> None:
    for key, op in swagger_operations().items():
        assert op["operationId"] and op["summary"] and op["description"], key
        assert op["x-ms-visibility"] in {"important", "advanced", "internal"}, key
        for param in op["parameters"]:
            assert param["in"] == "body" or param["x-ms-summary"], (key, param["name"])
    for name, definition in SWAGGER["definitions"].items():
        for prop, schema in definition.get("properties", {}).items():
            assert schema["x-ms-summary"], (name, prop)


def test_the_webhook_trigger_puts_the_flows_url_in_callback_url() -> None:
    [(key, trigger)] = [(k, op) for k, op in swagger_operations().items() if "x-ms-trigger" in op]
    assert key == ("post", "/onboardings/trigger") and trigger["x-ms-trigger"] == "single"
    request = SWAGGER["definitions"][trigger["parameters"][-1]["schema"]["$ref"].rsplit("/", 1)[1]]
    callback = request["properties"]["callbackUrl"]
    assert callback["x-ms-notification-url"] is True and callback["x-ms-visibility"] == "internal"
    assert "callbackUrl" in request["required"]
    # The asynchronous actions declare the polling contract the connector follows.
    status = SWAGGER["paths"]["/onboardings/{id}"]["get"]["responses"]["202"]
    assert {"Location", "Retry-After"} <= set(status["headers"])
