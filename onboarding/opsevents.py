"""Operational events: the few log lines the alert rules and the workbook query (infra/app/alerts.bicep,
infra/app/workbook.json; docs/operations.md says what each means).

Each event is one log record whose message reads ``<event> key=value ...`` and whose ``extra`` carries
the same fields plus ``event``. Where the worker forwards structured fields, Application Insights keeps
them as customDimensions; the queries fall back to the message text where it does not, so they work
either way. Fields are identifiers, outcomes, counts and times only: a value that could be an address,
a URL or free text (it holds ``@``, ``/``, a space...) is replaced, so no caller can leak one by mistake.
"""

from __future__ import annotations

import json
import logging
import re
from enum import StrEnum

SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:+-]{1,100}$")
REPLACED = "(withheld)"


class OpsEvent(StrEnum):
    ONBOARDING_FINISHED = "onboarding.finished"  # outcome, mailbox_counts
    ONBOARDING_WAITING = "onboarding.waiting"  # an admin decision is awaited until deadline
    CALLBACK_GIVEN_UP = "callback.given_up"  # the completion callback was not delivered
    CREDENTIAL_EXPIRING = "credential.expiring"  # a client secret expires soon, not rotated yet
    EXCHANGE_THROTTLED = "exchange.throttled"  # Exchange Online answered 429/503


def _safe(value: object) -> str | int:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        # Counts per state: {"verified": 3}; keys and values checked like any other field.
        counts = {str(_safe(k)): _safe(v) for k, v in value.items()}
        return json.dumps(counts, separators=(",", ":"), sort_keys=True)
    text = str(value)
    return text if SAFE_VALUE.match(text) else REPLACED


def emit(
    log: logging.Logger, event: OpsEvent, level: int = logging.INFO, /, **fields: object
) -> dict[str, str | int]:
    """Log ``event`` with ``fields`` at ``level``; returns the fields as logged (for tests)."""
    safe = {name: _safe(value) for name, value in fields.items()}
    text = " ".join([event.value, *(f"{name}={value}" for name, value in safe.items())])
    log.log(level, "%s", text, extra={"event": event.value, **safe})
    return safe
