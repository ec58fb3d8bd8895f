"""How the status views read Durable Functions' status documents: which runtime statuses mean an
instance has not finished, and the JSON values Durable hands back decoded or as JSON text. One place,
for the onboarding's, the rotation's, the mailbox operation's and the offboarding's views."""

from __future__ import annotations

import json
from typing import Any

# Not final: a suspended instance resumes where it stopped, and a pending one has not started.
RUNNING_STATES = frozenset({"Pending", "Running", "ContinuedAsNew", "Suspended"})


def is_running(status: dict[str, Any]) -> bool:
    """Whether the status document (``endpoints.http.status_json``) is of an unfinished instance."""
    return status.get("runtimeStatus") in RUNNING_STATES


def runtime_name(status: Any) -> str | None:
    """The runtime status's name of a Durable client's status object, None for an unknown instance."""
    runtime = getattr(status, "runtime_status", None) if status else None
    return runtime.name if runtime is not None else None


def json_object(value: Any) -> dict[str, Any]:
    """An input, output or custom status as a dict: Durable returns JSON values decoded or as JSON
    text, depending on how they were set; anything but a JSON object is ``{}``."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}
