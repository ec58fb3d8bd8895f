"""What the OpenTelemetry export (onboarding/telemetry.py) sends Application Insights for an activity's work:
every record carries the onboarding id and step as attributes (customDimensions), and no attribute or
body carries a secret or token.

The export goes to an in-memory exporter instead of Azure Monitor; everything before it (the handler,
its filters, the SDK's record translation) is what runs in Azure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from onboarding import logcontext, opsevents, telemetry
from onboarding.settings import Settings
from sandbox import Sandbox
from tests.adapters.test_no_secrets_in_logs import ONBOARDING, _full_pass


@pytest.fixture
def exported() -> Iterator[InMemoryLogRecordExporter]:
    """The app's log export, installed as function_app.py does, into memory."""
    exporter = InMemoryLogRecordExporter()
    handler = telemetry.install(SimpleLogRecordProcessor(exporter))
    assert handler is not None
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)  # the libraries' debug output too: the widest net for a leak
    yield exporter
    root.setLevel(level)
    root.removeHandler(handler)


def _attributes(exporter: InMemoryLogRecordExporter) -> list[tuple[str, str, dict[str, Any]]]:
    """(logger, body, attributes) of each exported record."""
    return [
        (
            item.instrumentation_scope.name if item.instrumentation_scope else "",
            str(item.log_record.body),
            dict(item.log_record.attributes or {}),
        )
        for item in exporter.get_finished_logs()
    ]


async def test_an_activitys_exported_records_carry_its_onboarding_and_step_and_no_secret(
    sb: Sandbox, settings: Settings, credential: Any, exported: InMemoryLogRecordExporter
) -> None:
    with logcontext.bound(ONBOARDING, "verify_login"):
        caught = await _full_pass(settings, credential)
        # An operational event: its own fields are exported as attributes too.
        opsevents.emit(
            logging.getLogger("onboarding.test"), opsevents.OpsEvent.ONBOARDING_FINISHED, outcome="failed"
        )

    records = _attributes(exported)
    # The sandbox tenant's own lines, logged in its server threads, stand for Microsoft's side.
    ours = [(name, body, attributes) for name, body, attributes in records if not name.startswith("sandbox")]
    assert {"azure", "httpx", "onboarding"} <= {name.split(".")[0] for name, _, _ in ours}
    assert [
        (name, body[:80])
        for name, body, attributes in ours
        if attributes.get("onboarding_id") != ONBOARDING or attributes.get("step") != "verify_login"
    ] == []
    event = next(attributes for _, _, attributes in ours if attributes.get("event") == "onboarding.finished")
    assert event["outcome"] == "failed"
    # Only fields: no private marker a filter left on the record.
    assert not [key for _, _, attributes in records for key in attributes if key.startswith("_")]
    secrets = [*sb.state.issued_secrets(), *sb.state.issued_tokens()]
    assert len(secrets) > 3
    shipped = repr(records)
    for secret in secrets:
        assert secret not in shipped
    assert caught.value is not None


def test_a_secret_in_a_records_field_is_redacted_before_export(exported: InMemoryLogRecordExporter) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    logger = logging.getLogger("onboarding.test")
    with logcontext.bound(ONBOARDING, "client_secret"):
        logger.warning("token acquired", extra={"detail": f"Authorization: Bearer {token}"})
        try:
            raise RuntimeError(f"401: client_secret=abc123 {token}")
        except RuntimeError:
            logger.exception("call failed")
    records = _attributes(exported)
    assert len(records) == 2
    assert token not in repr(records) and "abc123" not in repr(records)
    assert records[0][2]["detail"] == "Authorization: [redacted]"
    assert all(attributes["step"] == "client_secret" for _, _, attributes in records)


def test_the_export_pipelines_own_lines_are_not_exported(exported: InMemoryLogRecordExporter) -> None:
    logging.getLogger("azure.monitor.opentelemetry.exporter.export._base").warning("retrying export")
    logging.getLogger("opentelemetry.sdk._logs").warning("dropped attribute")
    logging.getLogger("onboarding.test").warning("kept")
    assert [body for _, body, _ in _attributes(exported)] == ["kept"]


@pytest.mark.parametrize(
    "env",
    [
        {},  # a local run, the tests
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000"},
        {"PYTHON_ENABLE_OPENTELEMETRY": "true"},  # no Application Insights to send to
        {
            "PYTHON_ENABLE_OPENTELEMETRY": "false",
            "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
        },
    ],
)
def test_without_the_switch_and_a_connection_string_logging_is_unchanged(env: dict[str, str]) -> None:
    before = list(logging.getLogger().handlers)
    assert telemetry.install(env=env) is None
    assert logging.getLogger().handlers == before


def test_with_the_switch_and_a_connection_string_records_go_to_application_insights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection = (
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://ingest.invalid/"
    )
    env = {"PYTHON_ENABLE_OPENTELEMETRY": "true", "APPLICATIONINSIGHTS_CONNECTION_STRING": connection}
    exporter = InMemoryLogRecordExporter()
    monkeypatch.setattr(telemetry, "_application_insights", lambda: SimpleLogRecordProcessor(exporter))
    handler = telemetry.install(env=env)
    assert handler is not None
    try:
        with logcontext.bound(ONBOARDING, "finish"):
            logging.getLogger("onboarding.test").warning("exported")
    finally:
        logging.getLogger().removeHandler(handler)
    assert [
        dict(item.log_record.attributes or {})["onboarding_id"] for item in exporter.get_finished_logs()
    ] == [ONBOARDING]


def test_the_application_insights_exporter_takes_the_platform_connection_string(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exporter reads the connection string itself, and cannot start without one (hence the gate)."""
    monkeypatch.setenv("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")  # no call home from a test
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    with pytest.raises(ValueError, match="Instrumentation key"):
        telemetry._application_insights()
    monkeypatch.setenv(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://ingest.invalid/",
    )
    processor = telemetry._application_insights()
    processor.shutdown()


def test_application_insights_gets_the_fields_as_custom_dimensions(
    exported: InMemoryLogRecordExporter,
) -> None:
    """The last step before the wire: the Azure Monitor exporter turns an exported record into a trace
    (MessageData) whose properties are the customDimensions Application Insights stores."""
    from azure.monitor.opentelemetry.exporter.export.logs._exporter import _convert_log_to_envelope

    with logcontext.bound(ONBOARDING, "register_app"):
        logging.getLogger("onboarding.test").info("registered")
    (record,) = exported.get_finished_logs()
    envelope = _convert_log_to_envelope(record)
    assert envelope.data is not None and envelope.data.base_type == "MessageData"
    assert envelope.data.base_data.properties == {  # type: ignore[union-attr]
        "onboarding_id": ONBOARDING,
        "step": "register_app",
        "logger_name": "onboarding.test",
    }
