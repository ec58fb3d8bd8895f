"""The worker's log records, exported to Application Insights through OpenTelemetry.

Why: the worker's default log path sends the Functions host the formatted message only, so a record's
structured fields (``onboarding_id`` and ``step`` from onboarding/logcontext.py, an operational event's
fields from onboarding/opsevents.py) never become customDimensions (docs/sandbox-facts.md, "Logging
(issue 13)"). With host.json ``"telemetryMode": "OpenTelemetry"`` and the app setting
``PYTHON_ENABLE_OPENTELEMETRY=true``, the host leaves the worker's logs to the worker, and the handler
installed here exports each record with its fields as attributes, which Application Insights stores as
customDimensions.

Why the Azure Monitor *exporter* and not the distro (``azure-monitor-opentelemetry``,
``configure_azure_monitor()``): the app needs logs only. The distro also installs and enables
instrumentations for web frameworks, databases and HTTP clients (requests the host already records:
Learn advises against request instrumentation in the worker, it duplicates request telemetry),
metrics and live metrics, all imported on every cold start; and each distro release pins
opentelemetry-sdk to one minor (none resolved with the pinned 1.45). Here: the exporter behind the
SDK's ``LoggerProvider``, and the logging handler of ``opentelemetry-instrumentation-logging`` (the
SDK's own ``LoggingHandler`` is deprecated in its favour). The exporter reads the platform settings
APPLICATIONINSIGHTS_CONNECTION_STRING and, for Entra authentication, APPLICATIONINSIGHTS_AUTHENTICATION_STRING
itself (infra/app/function.bicep sets both).

Nothing is installed unless ``settings.opentelemetry_export_enabled()``: local runs and tests log as
before.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from onboarding import logcontext, redaction
from onboarding.settings import opentelemetry_export_enabled

# The export pipeline's own loggers: exporting their lines would feed the exporter its own output.
_PIPELINE_LOGGERS = ("azure.monitor.opentelemetry", "opentelemetry")


class _NotThePipeline(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(
            record.name == name or record.name.startswith(name + ".") for name in _PIPELINE_LOGGERS
        )


def install(processor: Any | None = None, env: Mapping[str, str] | None = None) -> logging.Handler | None:
    """Export the root logger's records (so every propagating logger's) through OpenTelemetry, behind the
    same filters as the worker's own handler: redaction first (no token or secret reaches an attribute),
    then the onboarding id and step. Returns the handler, or None when export is off.

    ``processor``: a log record processor to export to instead of Application Insights (tests); the
    settings are then not consulted.
    """
    if processor is None:
        if not opentelemetry_export_enabled(env):
            return None
        processor = _application_insights()
    # Imported here, not at module level: a run without export (local, tests) does not pay for them.
    from opentelemetry.sdk._logs import LoggerProvider

    provider = LoggerProvider()
    provider.add_log_record_processor(processor)
    handler = _handler(provider)
    handler.addFilter(_NotThePipeline())
    redaction.install(handler)
    logcontext.install(handler)
    logging.getLogger().addHandler(handler)
    return handler


def _application_insights() -> Any:
    from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    # Batched on a background thread: an activity never waits for Application Insights.
    return BatchLogRecordProcessor(AzureMonitorLogExporter())


def _handler(provider: Any) -> logging.Handler:
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    class FieldsOnly(LoggingHandler):
        """Exports a record's fields but not the private markers filters leave on it (``_...``, such as
        logcontext's once-only tag), which would be noise in customDimensions."""

        def _get_attributes(self, record: logging.LogRecord) -> tuple[dict[str, Any], str | None]:
            attributes, event_name = super()._get_attributes(record)
            return {k: v for k, v in attributes.items() if not k.startswith("_")}, event_name

    return FieldsOnly(logger_provider=provider)
