"""Fixtures shared by every test folder (the sandbox tenant: ``sandbox``, ``sandbox_env``, ...), and
the switch for the live suite, which runs against a real Azure deployment when its settings are set."""

from __future__ import annotations

import os
from pathlib import Path

pytest_plugins = ["sandbox.pytest_plugin"]

LIVE_SETTINGS = (
    "LIVE_TENANT_ID",
    "LIVE_FUNCTION_BASE_URL",
    "LIVE_FUNCTION_KEY",
    "LIVE_MAILBOXES",
    "LIVE_ADMIN_EMAIL",
)


def missing_live_settings() -> list[str]:
    return [name for name in LIVE_SETTINGS if not os.environ.get(name)]


def pytest_report_header() -> str:
    missing = missing_live_settings()
    if missing:
        return f"live tests (tests/live): not run, no Azure deployment given ({', '.join(missing)} unset; see docs/deploy.md)"
    return f"live tests (tests/live): against {os.environ['LIVE_FUNCTION_BASE_URL']}"


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    if collection_path.name == "live" and collection_path.parent.name == "tests" and missing_live_settings():
        return True
    return None
