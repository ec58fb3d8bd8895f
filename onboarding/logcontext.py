"""The onboarding a log line concerns, as structured fields on every record logged while it is worked on.

The activity wrapper (activities/__init__.py) and the endpoints bind the onboarding id and the step in a
``ContextVar``; ``ContextFilter``, installed once on the root logger and its handlers (function_app.py),
copies them onto every record as ``onboarding_id`` and ``step``, whoever logs it: the project's own
loggers, azure-core, MSAL, httpx. In Azure, onboarding/telemetry.py exports a record's attributes to
Application Insights as customDimensions (docs/sandbox-facts.md, "Logging (issue 13)").

A ``ContextVar`` follows asyncio tasks and ``asyncio.to_thread`` (both copy the context) but not
``loop.run_in_executor`` or a plain thread; the project's activities and endpoints are coroutines that use
``to_thread`` only, so their lines and their libraries' lines carry the fields. Orchestrator code logs
through ``replay_safe``, which binds the fields around the one call and writes nothing on replay.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

# An onboarding's instance id, and the ids of the instances it starts (``<id>:mailboxes:3``, ``<id>:webhook``).
_ONBOARDING_ID = re.compile(r"onb-[0-9a-f]{32}")
FIELDS = ("onboarding_id", "step")
ENDPOINT_STEP = "api."  # the step of a line an HTTP trigger logs: api.start, api.status, api.decision...
_TAGGED = "_onboarding_log_context"
LOG_FIELDS = "log_fields"  # the payload key under which an orchestrator names them for an activity


@dataclass(frozen=True)
class LogContext:
    onboarding_id: str
    step: str


_current: ContextVar[LogContext | None] = ContextVar("onboarding_log_context", default=None)


def onboarding_id_of(instance_id: object) -> str | None:
    """The onboarding an instance id (or an onboarding id) belongs to; None for anything else."""
    head = str(instance_id or "").split(":", 1)[0]
    return head if _ONBOARDING_ID.fullmatch(head) else None


def current() -> LogContext | None:
    return _current.get()


@contextmanager
def bound(onboarding_id: object, step: str) -> Iterator[None]:
    """Lines logged inside carry ``onboarding_id`` and ``step``; nothing is bound for an id that is not an
    onboarding's (free text never becomes a field)."""
    found = onboarding_id_of(onboarding_id)
    token = _current.set(LogContext(found, step)) if found else None
    try:
        yield
    finally:
        if token is not None:
            _current.reset(token)


def bind_request(onboarding_id: object, endpoint: str) -> None:
    """For an HTTP trigger: the rest of this invocation concerns ``onboarding_id``, at step
    ``api.<endpoint>``. The worker runs each invocation of a coroutine function in its own task, so the
    binding ends with the invocation."""
    found = onboarding_id_of(onboarding_id)
    if found:
        _current.set(LogContext(found, ENDPOINT_STEP + endpoint))


def with_log_fields(context: Any, step: str, payload: dict[str, Any]) -> dict[str, Any]:
    """An activity's payload plus the onboarding and step its lines are to carry (under ``LOG_FIELDS``):
    an activity is not told its orchestration's instance id, so the orchestrator passes them."""
    onboarding_id = onboarding_id_of(context.instance_id)
    if onboarding_id is None:
        return payload
    return {**payload, LOG_FIELDS: {"onboarding_id": onboarding_id, "step": step}}


def fields_of(payload: dict[str, Any], default_step: str) -> tuple[str | None, str]:
    """The onboarding and step an activity's payload names (``with_log_fields``, else its own
    ``onboarding_id``)."""
    named = payload.get(LOG_FIELDS) if isinstance(payload, dict) else None
    named = named if isinstance(named, dict) else {}
    onboarding_id = onboarding_id_of(named.get("onboarding_id") or payload.get("onboarding_id"))
    step = named.get("step")
    return onboarding_id, step if isinstance(step, str) and step else default_step


def replay_safe(context: Any, step: str, write: Callable[[], object]) -> None:
    """Orchestrator code: ``write()`` a log line with the instance's onboarding and ``step``, once: the
    orchestrator replays its code after every awaited task, and a replay must not log again."""
    if context.is_replaying:
        return
    with bound(context.instance_id, step):
        write()


class ContextFilter(logging.Filter):
    """Copies the bound onboarding id and step onto each record; fields a caller passed in ``extra``
    win. Never drops a record.

    The fields also end the message, `` onboarding_id=<id> step=<step>``: the worker's default log
    path sends Application Insights the formatted message only (customDimensions get a record's
    extra fields only with OpenTelemetry enabled), and the queries read ``key=value`` pairs from the
    message where customDimensions lack them (infra/app/queries/_events.kql, docs/operations.md)."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound_now = _current.get()
        if bound_now is None or getattr(record, _TAGGED, False):
            return True
        if not hasattr(record, "onboarding_id"):
            record.onboarding_id = bound_now.onboarding_id
        if not hasattr(record, "step"):
            record.step = bound_now.step
        message = record.getMessage()
        if "onboarding_id=" not in message:  # an operational event names them itself
            fields = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS)
            record.msg = f"{message} {fields}"
            record.args = None
        setattr(record, _TAGGED, True)  # once, whichever handler's filter runs first
        return True


def install(target: logging.Logger | logging.Handler | None = None) -> None:
    """Attach the filter to a logger (default: the root) and its handlers, or to one handler (idempotent).
    On a logger itself it sees records logged there; on the handlers (the worker's, on the root logger)
    it sees every propagated record."""
    target = target or logging.getLogger()
    handlers = target.handlers if isinstance(target, logging.Logger) else []
    for holder in (target, *handlers):
        if not any(isinstance(f, ContextFilter) for f in holder.filters):
            holder.addFilter(ContextFilter())
