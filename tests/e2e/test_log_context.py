"""Every log line of an onboarding's run that concerns it carries its id and step as structured fields.

"Concerns the onboarding" is decided here without the product's log context, by watching the host:
a record concerns it when it is emitted
- while the host runs an activity for one of its instances (the onboarding, its mailbox batches and
  its webhook delivery: ``<id>``, ``<id>:...``), whoever logs it: the project's loggers or the SDKs
  (azure-core, azure-identity, msgraph, httpx...), in the activity's task or a thread it starts;
- while the host runs an HTTP trigger whose route names the onboarding (status, cancel, callbacks);
- or when the function app (any thread but the test's own) logs a message naming the onboarding id
  (the start, a decision, the orchestrator's events).
The local host's own lines (logger ``funchost``) stand for the Functions host's, which in Azure do
not pass through the Python worker, and are left out; so are the lines of the test's own clients.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import funchost.http_api
from funchost import LocalHost
from onboarding import telemetry
from onboarding.logcontext import ENDPOINT_STEP, onboarding_id_of
from tests.e2e.conftest import Tenant

# What the host is running for, set by the wrappers below; read when a record is captured.
_running_for: ContextVar[str | None] = ContextVar("running_for", default=None)


@pytest.fixture
def watched_host(monkeypatch: pytest.MonkeyPatch) -> list[tuple[logging.LogRecord, str | None]]:
    """Each record logged during the test, with the onboarding the host was running something for."""
    seen: list[tuple[logging.LogRecord, str | None]] = []
    original_activity = LocalHost._activity
    original_invoke = funchost.http_api.invoke

    async def activity(self: LocalHost, work_id: int, instance_id: str, *rest: Any) -> None:
        token = _running_for.set(onboarding_id_of(instance_id))
        try:
            await original_activity(self, work_id, instance_id, *rest)
        finally:
            _running_for.reset(token)

    async def invoke(host: LocalHost, fn: Any, name: str, kwargs: dict[str, Any]) -> Any:
        req = kwargs.get("req")
        token = _running_for.set(onboarding_id_of(req.route_params.get("id")) if req is not None else None)
        try:
            return await original_invoke(host, fn, name, kwargs)
        finally:
            _running_for.reset(token)

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record, _running_for.get()))

    monkeypatch.setattr(LocalHost, "_activity", activity)
    monkeypatch.setattr(funchost.http_api, "invoke", invoke)
    watch = Watch(logging.DEBUG)
    logging.getLogger().addHandler(watch)
    yield seen
    logging.getLogger().removeHandler(watch)


@pytest.fixture
def exported() -> Iterator[InMemoryLogRecordExporter]:
    """The app's OpenTelemetry log export (onboarding/telemetry.py), into memory instead of Application
    Insights."""
    exporter = InMemoryLogRecordExporter()
    handler = telemetry.install(SimpleLogRecordProcessor(exporter))
    assert handler is not None
    yield exporter
    logging.getLogger().removeHandler(handler)


def test_every_line_of_an_onboarding_run_carries_its_id_and_step(
    watched_host: list[tuple[logging.LogRecord, str | None]],
    tenant: Tenant,
    exported: InMemoryLogRecordExporter,
):
    location = tenant.submit()
    onboarding_id = location.rstrip("/").rsplit("/", 1)[-1]
    tenant.wait_for_decision(location)
    tenant.consent(accept=True)
    assert tenant.finished(location)["status"] == "succeeded"

    concerning = [
        record
        for record, running_for in watched_host
        if not record.name.startswith("funchost")
        and (
            running_for == onboarding_id
            or (record.thread != threading.main_thread().ident and onboarding_id in record.getMessage())
        )
    ]
    missing = [
        (record.name, record.getMessage()[:120])
        for record in concerning
        if getattr(record, "onboarding_id", None) != onboarding_id
        or not getattr(record, "step", "")
        # and in the text, which is all the worker's default log path sends Application Insights
        or f"onboarding_id={onboarding_id}" not in record.getMessage()
    ]
    assert missing == [], "\n".join(map(str, missing))
    # The run was observed: lines from the project's activities, orchestrator and endpoints, and
    # from the SDKs under them, all with their step.
    loggers = {record.name.split(".")[0] for record in concerning}
    assert {"onboarding", "endpoints", "azure", "httpx"} <= loggers, loggers
    steps = {record.step for record in concerning}  # type: ignore[attr-defined]
    assert {
        "register_app",
        "client_secret",
        "verify_login",
        "finish",
        ENDPOINT_STEP + "start",
        ENDPOINT_STEP + "decision",
    } <= steps, steps
    # And exported with them as attributes, which Application Insights stores as customDimensions.
    attributes_by_body: dict[str, list[dict[str, Any]]] = {}
    for item in exported.get_finished_logs():
        attributes_by_body.setdefault(str(item.log_record.body), []).append(
            dict(item.log_record.attributes or {})
        )
    unexported = [
        (record.name, record.getMessage()[:120])
        for record in concerning
        if not any(
            attributes.get("onboarding_id") == onboarding_id and attributes.get("step") == record.step  # type: ignore[attr-defined]
            for attributes in attributes_by_body.get(record.getMessage(), [])
        )
    ]
    assert unexported == [], "\n".join(map(str, unexported))
    # Lines about no onboarding get no id made up for them.
    assert all(getattr(record, "onboarding_id", onboarding_id) == onboarding_id for record, _ in watched_host)
