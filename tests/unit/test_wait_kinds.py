"""What a waiting onboarding can say it waits for is what the API documents, and nothing more."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from onboarding.domain import WaitKind

ROOT = Path(__file__).resolve().parents[2]


def documented_kinds(node: Any) -> set[str]:
    """The kinds named in the OpenAPI description of ``waitingFor.kind``."""
    if isinstance(node, dict):
        kind = node.get("properties", {}).get("kind", {}) if isinstance(node.get("properties"), dict) else {}
        if "admin_consent" in str(kind.get("description", "")):
            return set(re.findall(r"[a-z]+_[a-z_]+", kind["description"]))
        return set().union(*(documented_kinds(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(documented_kinds(v) for v in node))
    return set()


def test_the_openapi_document_names_exactly_the_wait_kinds_an_onboarding_publishes() -> None:
    spec = yaml.safe_load((ROOT / "openapi" / "openapi.yaml").read_text(encoding="utf-8"))
    assert documented_kinds(spec) == {k.value for k in WaitKind}


def test_the_api_page_names_exactly_the_wait_kinds_an_onboarding_publishes() -> None:
    [row] = [
        line for line in (ROOT / "docs" / "api.md").read_text().splitlines() if "| `waitingFor` |" in line
    ]
    assert set(re.findall(r"`([a-z]+_[a-z_]+)`", row)) == {k.value for k in WaitKind}
