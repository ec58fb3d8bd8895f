"""The OpenAPI document of this API, as shipped in ``openapi/`` (YAML is the source; JSON is generated
from it, because the runtime has no YAML parser and a test keeps the two equal)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import azure.functions as func

from endpoints.registry import blueprint

OPENAPI_DIR = Path(__file__).resolve().parent.parent / "openapi"


@lru_cache(maxsize=2)
def _document(name: str) -> str:
    return (OPENAPI_DIR / name).read_text(encoding="utf-8")


def _serve(name: str, media_type: str) -> func.HttpResponse:
    return func.HttpResponse(
        _document(name),
        status_code=200,
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
        mimetype=media_type,
        charset="utf-8",
    )


@blueprint.route(route="openapi.yaml", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi_yaml(req: func.HttpRequest) -> func.HttpResponse:
    return _serve("openapi.yaml", "application/yaml")


@blueprint.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi_json(req: func.HttpRequest) -> func.HttpResponse:
    return _serve("openapi.json", "application/json")
